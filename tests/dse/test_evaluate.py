"""evaluate_design: totals add up, levers move energy the way the model says, errors are
per-design outcomes."""

from __future__ import annotations

import pytest

from picojoule.dse.chip import chip_area, dot_product_width
from picojoule.dse.evaluate import (
    DesignEvaluator,
    design_area,
    evaluate_design,
    model_version,
    workload_key,
)
from picojoule.dse.params import build_arch, catalog
from picojoule.errors import ConfigError, PicojouleError
from picojoule.workload.layer import Workload

BASE = {"pe_x": 2, "pe_y": 2, "vector_width": 8, "vector_units": 4, "node_nm": 16}


def test_totals_are_sums_of_parts(tiny_workload: Workload) -> None:
    m = evaluate_design(BASE, tiny_workload, preset="magnet")
    assert m.energy_pj == pytest.approx(sum(m.energy_by_component_pj.values()))
    assert m.energy_pj == pytest.approx(sum(layer.energy_pj for layer in m.layers))
    assert m.macs == tiny_workload.macs
    assert m.tops_per_w == pytest.approx(2 * m.macs / m.energy_pj)
    assert m.power_w == pytest.approx(m.energy_pj * 1e-12 / m.latency_s)
    assert m.latency_s == pytest.approx(m.cycles / 1.8e9)  # the magnet preset's clock
    assert m.tops_per_mm2 == pytest.approx(2 * m.macs / m.latency_s / 1e12 / m.area_mm2)
    assert m.math_energy_fraction == pytest.approx(m.energy_by_component_pj["math"] / m.energy_pj)
    assert m.onchip_energy_pj == pytest.approx(m.energy_pj - m.energy_by_component_pj["DRAM"])
    assert 0 < m.math_energy_fraction < m.onchip_math_energy_fraction < 1
    assert m.sol_energy_pj <= m.energy_pj and m.sol_latency_s <= m.latency_s  # speed of light
    assert 0 < m.utilization <= 1
    assert m.area_mm2 == pytest.approx(design_area(BASE, tiny_workload, preset="magnet").total_mm2)


def test_area_matches_the_chip_model(tiny_workload: Workload) -> None:
    arch = build_arch("magnet", BASE)
    assert dot_product_width(arch) == 8
    want = chip_area(arch, weight_format="int8", input_format="int8").total_mm2
    assert evaluate_design(BASE, tiny_workload).area_mm2 == pytest.approx(want)


def test_two_four_sparsity_halves_math_energy(tiny_workload: Workload) -> None:
    dense = evaluate_design(BASE, tiny_workload)
    sparse = evaluate_design({**BASE, "sparsity": "2:4"}, tiny_workload)
    # gated MACs: every MAC with a zero weight costs nothing; density 0.5
    assert sparse.energy_by_component_pj["math"] == pytest.approx(
        0.5 * dense.energy_by_component_pj["math"]
    )
    assert sparse.energy_pj < dense.energy_pj
    assert sparse.macs == dense.macs  # dense-equivalent ops


def test_narrower_weights_cost_less(tiny_workload: Workload) -> None:
    int8 = evaluate_design({**BASE, "weight_format": "int8"}, tiny_workload)
    int4 = evaluate_design({**BASE, "weight_format": "int4"}, tiny_workload)
    assert int4.energy_pj < int8.energy_pj
    assert int4.area_mm2 < int8.area_mm2


def test_node_moves_area_by_the_logic_and_bitcell_tables(tiny_workload: Workload) -> None:
    a16 = evaluate_design(BASE, tiny_workload)
    a7 = evaluate_design({**BASE, "node_nm": 7}, tiny_workload)
    assert a7.area_by_component_mm2["mac"] == pytest.approx(
        a16.area_by_component_mm2["mac"] * 0.059 / 0.19
    )
    assert a7.energy_pj < a16.energy_pj


def test_a_design_that_cannot_map_is_an_outcome_not_a_crash(tiny_workload: Workload) -> None:
    bad = {**BASE, "accum_buffer_kb": 0.001}  # 8 bits: not one 24-bit partial sum
    with pytest.raises(PicojouleError, match="cannot run tiny: .*24 bits"):
        evaluate_design(bad, tiny_workload)
    ev = DesignEvaluator(preset="magnet", workload=tiny_workload)
    metrics, error = ev(bad)
    assert metrics is None and error is not None and "24 bits" in error
    metrics, error = ev(BASE)
    assert error is None and metrics is not None and metrics["macs"] == tiny_workload.macs


def test_catalogue_reads_the_preset_signature() -> None:
    cat = catalog("magnet")
    assert {"vector_width", "vector_units", "dataflow", "collector_words"} <= set(cat)
    assert {"weight_format", "activation_format", "sparsity", "node_nm"} <= set(cat)
    assert cat["vector_width"].type == "int" and cat["weight_buffer_kb"].type == "float"
    assert cat["dataflow"].check is not None
    with pytest.raises(ConfigError, match="use one of ws, os, local-ws, local-os"):
        cat["dataflow"].check("rs")  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown architecture preset 'magent'"):
        catalog("magent")


def test_keys_and_versions_are_stable(tiny_workload: Workload) -> None:
    assert workload_key(tiny_workload) == workload_key(tiny_workload)
    other = tiny_workload.with_formats(weight_format="int4", input_format="int8")
    assert workload_key(other) != workload_key(tiny_workload)
    assert model_version() == model_version()
    assert model_version().startswith("0.") and "+" in model_version()
