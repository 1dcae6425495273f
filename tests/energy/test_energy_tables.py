"""Cited tables: look-ups return the published numbers; malformed user tables name the row."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from picojoule.energy import load_table, mac_energy, op_energy, op_energy_pj
from picojoule.energy.arith import calibrate
from picojoule.energy.tables import TABLE_KINDS, TableError, UncitedDataWarning

# Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V), as the seed brief quotes it
HOROWITZ_PJ = {
    ("add", "int8"): 0.03,
    ("add", "int16"): 0.05,
    ("add", "int32"): 0.1,
    ("add", "fp16"): 0.4,
    ("add", "fp32"): 0.9,
    ("mul", "int8"): 0.2,
    ("mul", "int32"): 3.1,
    ("mul", "fp16"): 1.1,
    ("mul", "fp32"): 3.7,
}


@pytest.mark.parametrize(("op", "dtype"), sorted(HOROWITZ_PJ))
def test_lookup_returns_the_cited_number(op: str, dtype: str) -> None:
    result = op_energy(op, dtype)
    assert result.energy_pj == HOROWITZ_PJ[op, dtype]
    assert result.source.startswith("table: Horowitz")
    assert op_energy_pj(op, dtype) == HOROWITZ_PJ[op, dtype]


def test_dally_hfma_and_memory_anchors() -> None:
    assert op_energy_pj("fma", "fp16") == 1.5
    sram = {(r.capacity_bytes, r.width_bits): r.read_energy_pj for r in load_table("sram").rows}
    assert sram[8192, 64] == 10
    assert sram[1048576, 64] == 100


def test_missing_rows_fall_back_to_the_model_and_say_so() -> None:
    result = op_energy("mul", "int16")
    assert result.source == "model"
    # the multiplier is k * bits^2 with k fitted on INT8/INT32: between the two anchors
    assert 0.2 < result.energy_pj < 3.1
    assert result.energy_pj == pytest.approx(calibrate().int_mul(16, 16))


@pytest.mark.parametrize("kind", TABLE_KINDS)
def test_every_builtin_row_is_cited(kind: str) -> None:
    table = load_table(kind)
    assert table.uncited == ()
    assert all(len(r.citation) > 10 for r in table.rows)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_malformed_yaml_row_is_named(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "ops.yaml",
        "rows:\n"
        "  - {op: add, dtype: int8, energy_pj: 0.03, citation: a}\n"
        "  - {op: mul, dtype: int8, energy_pj: -1, citation: b}\n",
    )
    with pytest.raises(TableError, match=r"ops.yaml: row 2 \(mul int8\).*energy_pj"):
        load_table("ops", path)


def test_unknown_format_in_a_row_names_row_and_nearest(tmp_path: Path) -> None:
    path = _write(tmp_path, "ops.yaml", "- {op: add, dtype: bfloat61, energy_pj: 0.1}\n")
    with pytest.raises(TableError, match=r"row 1 \(add bfloat61\).*dtype.*did you mean"):
        load_table("ops", path)


def test_unknown_column_and_bad_op_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.yaml", "- {kind: hbm3, pj_per_bit: 3, colour: red}\n")
    with pytest.raises(TableError, match=r"row 1 \(kind=hbm3\).*colour"):
        load_table("dram", path)
    path = _write(tmp_path, "o.csv", "op,dtype,energy_pj\ndiv,int8,1\n")
    with pytest.raises(TableError, match=r"row 1 \(div int8\).*op"):
        load_table("ops", path)


def test_bad_files_rejected_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="list of rows"):
        load_table("dram", _write(tmp_path, "a.yaml", "kind: hbm2\n"))
    with pytest.raises(TableError, match=".yaml, .yml or .csv"):
        load_table("dram", _write(tmp_path, "a.json", "[]"))
    with pytest.raises(TableError, match="no rows"):
        load_table("dram", _write(tmp_path, "b.yaml", "[]\n"))
    with pytest.raises(TableError, match="cannot read"):
        load_table("dram", tmp_path / "missing.yaml")
    with pytest.raises(TableError, match="did you mean: nodes"):
        load_table("node")


def test_csv_with_nested_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "g.csv",
        "name,title,arch,year,process,node_nm,memory,dram_energy,memory_gb,bandwidth_gbs,"
        "tdp_w,peak_tops.fp16,sparse_tops.fp16,citation\n"
        "x1,X1,Test,2030,N2,5,HBM4,hbm2,96,10000,800,5000,10000,vendor sheet\n",
    )
    (row,) = load_table("gpus", path).rows
    assert row.peak_tops == {"fp16": 5000.0}
    assert row.sparse_tops == {"fp16": 10000.0}


def test_uncited_rows_warn_and_mark_results(tmp_path: Path) -> None:
    builtin = load_table("ops").rows
    lines = [
        f'- {{op: {r.op}, dtype: {r.dtype}, energy_pj: {r.energy_pj}, citation: "{r.citation}"}}'
        for r in builtin
        if not (r.op == "mul" and r.dtype == "int32")
    ]
    lines.append("- {op: mul, dtype: int32, energy_pj: 3.1}")
    path = _write(tmp_path, "mine.yaml", "\n".join(lines) + "\n")
    with pytest.warns(UncitedDataWarning, match="mul int32"):
        table = load_table("ops", path)
    assert table.uncited == (f"{path}: mul int32",)
    looked_up = op_energy("mul", "int32", table=table)
    assert looked_up.uncited == (f"{path}: mul int32",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mac = mac_energy("int8", calibration=calibrate(table))
    assert mac.uncited == (f"{path}: mul int32",)
