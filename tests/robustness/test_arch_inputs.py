"""Accelerator YAML on malformed input: every case is one `ArchError` line that names the file,
the field path and the fix (and, for numbers, the value and the allowed range), through the
API (`load_arch`) and the CLI (`picojoule map --arch FILE`, exit 2, no traceback).

Cases are edits of one valid spec (`BASE`, every feature used once), so each changes exactly
one thing a user could get wrong; `limits.LIMITS` supplies the ranges the messages quote.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from picojoule.arch.io import ArchError, arch_from_dict, load_arch
from picojoule.arch.limits import LIMITS
from picojoule.errors import PicojouleError

from .test_cli_options import assert_one_error, run_cli

BASE: dict[str, Any] = {
    "name": "toy",
    "node_nm": 45,
    "clock_ghz": 1.0,
    "levels": [
        {
            "name": "DRAM",
            "holds": ["weights", "inputs", "outputs"],
            "memory": "dram",
            "read_pj_per_bit": 12.5,
            "write_pj_per_bit": 12.5,
            "bandwidth_bits_per_cycle": 64,
        },
        {
            "name": "GlobalBuffer",
            "holds": ["weights", "inputs", "outputs"],
            "capacity_bits": 884736,
            "width_bits": 64,
            "read_pj_per_bit": {"weights": 0.4, "inputs": 0.4, "outputs": 0.5},
            "write_pj_per_bit": 0.4,
            "fanout": {"mesh_x": 14, "mesh_y": 12, "x_dims": ["K", "C"], "network_pj_per_bit": 0.1},
        },
        {
            "name": "RegisterFile",
            "holds": ["weights", "inputs", "outputs"],
            "partition_bits": {"weights": 3584, "inputs": 192, "outputs": 384},
            "width_bits": 16,
            "read_pj_per_bit": 0.06,
            "write_pj_per_bit": 0.06,
            "stationary": "weights",
        },
    ],
    "mac": {"format": "int8", "accumulator_bits": 24, "energy_pj": 0.2},
    "sparse": {"gate_zero_macs": True, "structured": "2:4"},
}

DROP = object()  # as a value: remove the key


def _edit(path: str, value: object) -> dict[str, Any]:
    """BASE with the field at dotted `path` (list indices as numbers) set to `value`."""
    data = copy.deepcopy(BASE)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = data
    for p in parents:
        node = node[p]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return data


NAN, INF = math.nan, math.inf
L1, L2 = "levels.1", "levels.2"

# (id, dotted path, new value, message fragment)
EDITS = [
    # capacities: 1..2^40 bits, whole numbers
    ("capacity-1e30", f"{L1}.capacity_bits", 10**30, "out of range 1..2^40 bits"),
    ("capacity-float-1e30", f"{L1}.capacity_bits", 1e30, "1e+30 bits is out of range"),
    ("capacity-zero", f"{L1}.capacity_bits", 0, "0 bits is out of range 1..2^40"),
    ("capacity-negative", f"{L1}.capacity_bits", -1024, "-1024 bits is out of range"),
    ("capacity-text", f"{L1}.capacity_bits", "1MB", "got text '1MB' (quoted?)"),
    ("capacity-fraction", f"{L1}.capacity_bits", 1024.5, "give a whole number"),
    ("capacity-nan", f"{L1}.capacity_bits", NAN, "give a finite value"),
    ("capacity-inf", f"{L1}.capacity_bits", INF, "give a finite value"),
    ("capacity-bool", f"{L1}.capacity_bits", True, "got true/false"),
    ("capacity-list", f"{L1}.capacity_bits", [1024], "got a list"),
    ("capacity-mapping", f"{L1}.capacity_bits", {"kb": 96}, "got a mapping"),
    ("partition-2^41", f"{L2}.partition_bits.weights", 2**41, "out of range 1..2^40"),
    ("partition-negative", f"{L2}.partition_bits.inputs", -1, "-1 bits is out of range"),
    ("partition-number", f"{L2}.partition_bits", 4096, "expected a mapping"),
    ("partition-operand", f"{L2}.partition_bits.psums", 64, "psums"),
    ("partition-and-capacity", f"{L2}.capacity_bits", 4096, "not both"),
    ("partition-lacks", f"{L2}.partition_bits.outputs", DROP, "partition_bits lacks"),
    # word widths 1..4096 bits
    ("width-zero", f"{L1}.width_bits", 0, "0 bits is out of range 1..4096"),
    ("width-8192", f"{L1}.width_bits", 8192, "8192 bits is out of range"),
    ("width-text", f"{L1}.width_bits", "wide", "expected a whole number of bits"),
    ("width-fraction", f"{L2}.width_bits", 15.5, "give a whole number"),
    # per-bit energies: 0 or 1e-6..1e6 pJ/bit
    ("read-1e9", f"{L1}.read_pj_per_bit.weights", 1e9, "weights: 1e+09 pJ/bit is out of range"),
    ("read-negative", "levels.0.read_pj_per_bit", -1, "-1 pJ/bit is out of range"),
    ("read-tiny", "levels.0.read_pj_per_bit", 1e-9, "1e-09 pJ/bit is out of range"),
    ("read-nan", f"{L2}.read_pj_per_bit", NAN, "give a finite value"),
    ("read-text", f"{L2}.read_pj_per_bit", "cheap", "got text 'cheap'"),
    ("read-list", f"{L2}.read_pj_per_bit", [0.1, 0.2], "got a list"),
    ("read-lacks-operand", f"{L1}.read_pj_per_bit.outputs", DROP, "lacks an energy for"),
    ("read-dict-text", f"{L1}.read_pj_per_bit.inputs", "low", "inputs: expected a number"),
    ("write-inf", "levels.0.write_pj_per_bit", INF, "give a finite value"),
    ("write-huge", f"{L2}.write_pj_per_bit", 2e6, "out of range 0 or 1e-06..1e+06 pJ/bit"),
    # bandwidth: finite, 1e-3..2^30 bits/cycle
    ("bandwidth-zero", "levels.0.bandwidth_bits_per_cycle", 0, "out of range 0.001..2^30"),
    ("bandwidth-negative", "levels.0.bandwidth_bits_per_cycle", -64, "-64 bits/cycle"),
    ("bandwidth-1e12", "levels.0.bandwidth_bits_per_cycle", 1e12, "1e+12 bits/cycle"),
    ("bandwidth-inf", "levels.0.bandwidth_bits_per_cycle", INF, "give a finite value"),
    ("bandwidth-text", "levels.0.bandwidth_bits_per_cycle", "25.6 GB/s", "got text"),
    # fanouts: 1..65536 per side, at most 2^32 lanes in all
    ("mesh-zero", f"{L1}.fanout.mesh_x", 0, "0 copies is out of range 1..65536"),
    ("mesh-1e6", f"{L1}.fanout.mesh_x", 1000000, "1,000,000 copies is out of range"),
    ("mesh-fraction", f"{L1}.fanout.mesh_y", 1.5, "give a whole number"),
    ("mesh-text", f"{L1}.fanout.mesh_y", "twelve", "got text 'twelve'"),
    ("mesh-missing", f"{L1}.fanout.mesh_x", DROP, "levels.1.fanout.mesh_x' is required"),
    ("mesh-typo", f"{L1}.fanout.mesh_xx", 4, "did you mean: mesh_x"),
    ("network-negative", f"{L1}.fanout.network_pj_per_bit", -0.1, "-0.1 pJ/bit is out of range"),
    ("fanout-list", f"{L1}.fanout", [14, 12], "expected a mapping of fields"),
    ("fanout-dims", f"{L1}.fanout.x_dims", ["Z"], "list loop names from N G K C P Q R S"),
    (
        "lanes-over-2^32",
        f"{L2}.fanout",
        {"mesh_x": 65536, "mesh_y": 65536},
        "more than 4,294,967,296",
    ),
    # MAC unit
    ("acc-zero", "mac.accumulator_bits", 0, "0 bits is out of range 1..256"),
    ("acc-1000", "mac.accumulator_bits", 1000, "1000 bits is out of range"),
    ("mac-energy-1e9", "mac.energy_pj", 1e9, "pJ/MAC is out of range"),
    ("mac-energy-negative", "mac.energy_pj", -1, "-1 pJ/MAC"),
    ("mac-text", "mac", "int8", "mac: expected a mapping of fields"),
    ("mac-typo", "mac.formt", "int8", "did you mean: format"),
    # sparse support
    ("metadata-100", "sparse.metadata_bits_per_element", 100, "out of range 0..64"),
    ("structured-reversed", "sparse.structured", "4:2", "need 0 < N < M"),
    ("structured-word", "sparse.structured", "dense", "is not an N:M pattern"),
    ("gate-text", "sparse.gate_zero_macs", "yes please", "expected true or false"),
    ("sparse-typo", "sparse.compresed", True, "did you mean: compressed"),
    # technology and clock
    ("node-zero", "node_nm", 0, "0 nm is out of range 1..1000"),
    ("node-1e6", "node_nm", 1e6, "1e+06 nm is out of range"),
    ("node-text", "node_nm", "7nm", "got text '7nm'"),
    ("clock-mhz", "clock_ghz", 1000, "check GHz vs MHz"),
    ("clock-zero", "clock_ghz", 0, "0 GHz is out of range 0.001..10"),
    ("clock-negative", "clock_ghz", -1, "-1 GHz"),
    ("clock-nan", "clock_ghz", NAN, "give a finite value"),
    # structure
    ("name-missing", "name", DROP, "field 'name' is required"),
    ("name-empty", "name", "", "at least 1 character"),
    ("name-list", "name", ["a"], "expected text, got a list"),
    ("levels-empty", "levels", [], "at least 1 item"),
    ("levels-mapping", "levels", {"DRAM": {"holds": ["weights"]}}, "expected a list"),
    ("level-text", "levels.1", "GlobalBuffer", "expected a mapping of fields"),
    ("level-name-empty", f"{L1}.name", "", "at least 1 character"),
    ("top-typo", "levls", [], "did you mean: levels"),
    ("level-typo", f"{L1}.capacity", 1024, "did you mean: capacity_bits"),
    ("holds-empty", f"{L1}.holds", [], "at least 1 item"),
    ("holds-twice", f"{L1}.holds", ["weights", "weights"], "lists an operand twice"),
    ("holds-typo", f"{L1}.holds", ["wieghts"], "list operands by their names"),
    ("holds-text", f"{L1}.holds", "weights", "expected a list"),
    ("memory-flash", f"{L1}.memory", "flash", "use dram or sram"),
    ("dram-capacity", "levels.0.capacity_bits", 2**30, "a dram level is unbounded"),
    ("outer-missing-operand", "levels.0.holds", ["weights", "inputs"], "must hold every operand"),
    ("level-names-repeat", f"{L2}.name", "GlobalBuffer", "level names must be unique"),
    ("stationary-psums", f"{L2}.stationary", "psums", "name one operand"),
    ("temporal-text", f"{L1}.temporal_dims", "NKC", "expected a list"),
]

# (id, raw file text, message fragment): what the YAML layer itself refuses
TEXTS = [
    ("empty-file", "", "the file is empty"),
    ("comment-only", "# my accelerator\n", "the file is empty"),
    ("top-list", "- name: toy\n", "expected a mapping with name, levels"),
    ("top-scalar", "eyeriss\n", "got str"),
    ("dup-name", "name: a\nname: b\nlevels: []\n", "key 'name' is given twice"),
    ("dup-levels", "name: a\nlevels: []\nlevels: []\n", "key 'levels' is given twice (first on"),
    (
        "dup-level-key",
        "name: a\nlevels:\n- name: D\n  holds: [weights]\n  holds: [inputs]\n",
        "key 'holds' is given twice",
    ),
    ("tab-indent", "name: a\nlevels:\n\t- name: D\n", "not valid YAML"),
    ("bad-indent", "name: x\nlevels:\n  - name: DRAM\n   holds: [weights]\n", "line 4"),
    ("unclosed", "name: [toy\n", "not valid YAML"),
    ("python-tag", "name: !!python/object:os.system x\n", "not valid YAML"),
    ("list-key", "? [a, b]\n: 1\n", "a mapping key must be a plain value"),
]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "arch.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _one_line(exc: PicojouleError, path: Path, fragment: str) -> None:
    text = str(exc)
    assert "\n" not in text, text
    assert str(path) in text, text
    assert fragment in text, f"{fragment!r} not in {text!r}"


def test_base_is_valid(tmp_path):
    arch = load_arch(_write(tmp_path, BASE))
    assert arch.lanes == 14 * 12


@pytest.mark.parametrize(("path", "value", "fragment"), [e[1:] for e in EDITS],
                         ids=[e[0] for e in EDITS])  # fmt: skip
def test_malformed_field(tmp_path, path, value, fragment):
    file = _write(tmp_path, _edit(path, value))
    with pytest.raises(ArchError) as exc:
        load_arch(file)
    _one_line(exc.value, file, fragment)
    # the field path is named, or the whole spec for a rule across levels
    field = path.rsplit(".", 1)[0] if fragment.startswith("did you mean") else path
    assert field.split(".")[0] in str(exc.value) or "(top level)" in str(exc.value)


@pytest.mark.parametrize(("text", "fragment"), [t[1:] for t in TEXTS], ids=[t[0] for t in TEXTS])
def test_malformed_file(tmp_path, text, fragment):
    file = _write(tmp_path, text)
    with pytest.raises(ArchError) as exc:
        load_arch(file)
    _one_line(exc.value, file, fragment)


def test_not_utf8(tmp_path):
    file = tmp_path / "arch.yaml"
    file.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ArchError, match="not UTF-8"):
        load_arch(file)


def test_range_messages_quote_the_table():
    """Every limit says why; the table, not the code, is where a bound changes."""
    for field, limit in LIMITS.items():
        assert limit.low <= limit.high and limit.why, field


def test_api_dict_gives_the_same_errors():
    with pytest.raises(ArchError, match=r"api: levels.1.capacity_bits: .*out of range"):
        arch_from_dict(_edit(f"{L1}.capacity_bits", 10**30), origin="api")


# End to end through `picojoule map --arch FILE`: exit 2, one line, no traceback, no work.
CLI = ["capacity-1e30", "read-nan", "clock-mhz", "mesh-typo", "lanes-over-2^32"]


@pytest.mark.parametrize("case", CLI)
def test_map_cli_refuses(monkeypatch, capsys, tmp_path, case):
    _, path, value, fragment = next(e for e in EDITS if e[0] == case)
    file = _write(tmp_path, _edit(path, value))
    code, out = run_cli(monkeypatch, capsys, ["map", "--arch", str(file)])
    assert_one_error(code, out, fragment)


@pytest.mark.parametrize("case", ["dup-levels", "empty-file"])
def test_map_cli_refuses_file(monkeypatch, capsys, tmp_path, case):
    _, text, fragment = next(t for t in TEXTS if t[0] == case)
    code, out = run_cli(monkeypatch, capsys, ["map", "--arch", str(_write(tmp_path, text))])
    assert_one_error(code, out, fragment)
