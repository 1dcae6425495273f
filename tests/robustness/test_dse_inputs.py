"""Design-space YAML on malformed input: every case is one `SpaceError` line naming the file,
the field or parameter and the fix, raised by `load_space` before any design is evaluated;
a sample goes end to end through `picojoule dse run FILE` (exit 2, no traceback).

Cases are edits of one valid space on the magnet preset (`BASE`), so each is one mistake a
user could make; the raw-text table covers what only the YAML layer sees (duplicate keys).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from picojoule.dse.errors import SpaceError
from picojoule.dse.params import catalog
from picojoule.dse.spacefile import load_space

from .test_cli_options import assert_one_error, run_cli

BASE: dict[str, Any] = {
    "name": "toy-space",
    "workload": "resnet18",
    "preset": "magnet",
    "objectives": ["energy", "latency"],
    "mapper": {"objective": "energy", "samples": 100, "starts": 4},
    "search": {"method": "grid"},
    "constraints": {"area_mm2": 30, "power_w": 5},
    "parameters": {
        "vector_width": [4, 8],
        "pe_x": {"low": 2, "high": 4, "step": 2},
        "weight_buffer_kb": {"low": 8, "high": 32, "pow2": True},
        "dataflow": "ws",
        "node_nm": 16,
    },
}

DROP = object()


def _edit(path: str, value: object) -> dict[str, Any]:
    """BASE with the field at dotted `path` set to `value` (DROP removes it)."""
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = data
    for p in parents:
        node = node[p]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return data


NAN, INF = math.nan, math.inf
P = "parameters"

# (id, dotted path, new value, message fragment)
EDITS = [
    # top level
    ("name-missing", "name", DROP, "name: Field required"),
    ("name-spaces", "name", "my space!", "String should match pattern"),
    ("name-number", "name", 5, "Input should be a valid string"),
    ("workload-missing", "workload", DROP, "workload: Field required"),
    ("workload-empty", "workload", "", "workload: String should have at least 1 character"),
    ("batch-zero", "batch", 0, "batch: Input should be greater than or equal to 1"),
    ("batch-huge", "batch", 10**7, "batch: Input should be less than or equal to 65536"),
    ("batch-bool", "batch", True, "batch: Input should be a valid integer (got True)"),
    ("batch-text", "batch", "1", "batch: Input should be a valid integer (got '1')"),
    ("batch-float", "batch", 1.5, "batch: Input should be a valid integer"),
    ("preset-typo", "preset", "magnett", "did you mean: magnet"),
    ("preset-empty", "preset", "", "preset: String should have at least 1 character"),
    ("top-typo", "serch", {"method": "grid"}, "serch: unknown field (did you mean: search"),
    ("objectives-empty", "objectives", [], "objectives is empty"),
    ("objectives-unknown", "objectives", ["power"], "unknown objective 'power'"),
    ("objectives-repeat", "objectives", ["energy", "energy"], "repeat a name"),
    ("objectives-text", "objectives", "energy", "objectives: Input should be a valid list"),
    # search
    ("method-unknown", "search.method", "bayes", "search.method: Input should be 'grid'"),
    ("trials-zero", "search", {"method": "random", "trials": 0}, "greater than or equal to 1"),
    ("trials-text", "search", {"method": "random", "trials": "300"}, "(got '300')"),
    ("trials-huge", "search", {"method": "random", "trials": 10**9}, "less than or equal to"),
    ("trials-missing", "search", {"method": "nsga2"}, "search.method nsga2 needs search.trials"),
    ("population-one", "search.population", 1, "search.population: Input should be greater"),
    ("seed-negative", "search.seed", -1, "search.seed: Input should be greater than or equal"),
    ("seed-huge", "search.seed", 2**40, "search.seed: Input should be less than or equal"),
    ("search-text", "search", "nsga2", "search: expected a mapping ({method: nsga2"),
    ("search-typo", "search.trails", 10, "unknown field (did you mean: trials?)"),
    # mapper
    ("mapper-objective", "mapper.objective", "power", "mapper.objective: Input should be"),
    ("mapper-samples-zero", "mapper.samples", 0, "mapper.samples: Input should be greater"),
    ("mapper-starts-zero", "mapper.starts", 0, "mapper.starts: Input should be greater"),
    ("mapper-starts-over", "mapper.starts", 1000, "give starts <= samples"),
    ("mapper-typo", "mapper.sampels", 10, "did you mean: samples"),
    ("mapper-seed-float", "mapper.seed", 0.5, "mapper.seed: Input should be a valid integer"),
    # constraints: positive, finite budgets under 1e6
    ("area-zero", "constraints.area_mm2", 0, "constraints.area_mm2: Input should be greater"),
    ("area-negative", "constraints.area_mm2", -5, "greater than 0 (got -5)"),
    ("area-nan", "constraints.area_mm2", NAN, "constraints.area_mm2: Input should be a finite"),
    ("area-inf", "constraints.area_mm2", INF, "Input should be a finite number"),
    ("area-expression", "constraints.area_mm2", "< 30", "(got '< 30')"),
    ("area-huge", "constraints.area_mm2", 1e9, "less than or equal to 1000000"),
    ("power-huge", "constraints.power_w", 1e7, "constraints.power_w: Input should be less"),
    ("constraints-text", "constraints", "area_mm2 < 30", "budgets are numbers, not expressions"),
    ("constraints-typo", "constraints.area", 30, "did you mean: area_mm2"),
    ("constraints-latency", "constraints.latency_s", 0.01, "known: area_mm2, power_w"),
    # parameters: block
    ("parameters-missing", P, DROP, "parameters: Field required"),
    ("parameters-empty", P, {}, "parameters is empty"),
    ("parameters-list", P, ["vector_width"], "parameters: expected a mapping"),
    ("param-typo", f"{P}.vector_widht", [4], "did you mean: vector_width"),
    ("param-unknown", f"{P}.frequency", [1], "unknown parameter 'frequency'"),
    # parameters: value lists
    ("list-empty", f"{P}.vector_width", [], "empty list"),
    ("list-repeat", f"{P}.vector_width", [4, 8, 4], "values repeat: [4]"),
    ("list-repeat-float", f"{P}.clock_ghz", [1, 1.0], "values repeat"),
    ("list-nested", f"{P}.vector_width", [[4, 8]], "not a nested structure"),
    ("list-bool", f"{P}.vector_width", [True], "not a yes/no value"),
    ("list-text-for-int", f"{P}.vector_width", ["4"], "expected a number (int)"),
    ("list-fraction", f"{P}.vector_width", [4.5], "expected a whole number"),
    ("list-nan", f"{P}.vector_width", [NAN], "expected a finite number"),
    ("list-inf", f"{P}.clock_ghz", [INF], "expected a finite number"),
    ("list-zero", f"{P}.vector_width", [0, 4], "must be >= 1"),
    ("list-null", f"{P}.vector_width", None, "expected a value, a list, or a range"),
    # parameters: ranges
    ("range-reversed", f"{P}.pe_x", {"low": 8, "high": 4}, "range low 8 > high 4; swap them"),
    ("range-no-high", f"{P}.pe_x", {"low": 2}, "a range is {low, high, step}"),
    ("range-extra-key", f"{P}.pe_x", {"low": 2, "high": 4, "by": 2}, "got keys ['by',"),
    ("range-step-zero", f"{P}.pe_x", {"low": 2, "high": 4, "step": 0}, "positive number"),
    ("range-step-negative", f"{P}.pe_x", {"low": 2, "high": 4, "step": -1}, "positive number"),
    ("range-step-nan", f"{P}.pe_x", {"low": 2, "high": 4, "step": NAN}, "positive number"),
    ("range-low-nan", f"{P}.pe_x", {"low": NAN, "high": 4}, "must be finite numbers"),
    ("range-high-inf", f"{P}.pe_x", {"low": 2, "high": INF}, "must be finite numbers"),
    ("range-text-ends", f"{P}.pe_x", {"low": "2", "high": "4"}, "must be finite numbers"),
    ("range-float-no-step", f"{P}.clock_ghz", {"low": 0.5, "high": 2.0}, "needs a step"),
    ("range-too-many", f"{P}.pe_x", {"low": 1, "high": 10**9}, "use a larger step"),
    ("pow2-not-pow2", f"{P}.pe_x", {"low": 3, "high": 16, "pow2": True}, "powers of two"),
    ("pow2-and-step", f"{P}.pe_x", {"low": 2, "high": 8, "pow2": True, "step": 2}, "not both"),
    ("pow2-text", f"{P}.pe_x", {"low": 2, "high": 8, "pow2": "yes"}, "pow2 is true or false"),
    # parameters: values the preset or the evaluator refuses
    ("buffer-1e27-kb", f"{P}.weight_buffer_kb", [8, 1e27], "out of range 1..2^40 bits"),
    ("pe-x-huge", f"{P}.pe_x", [2, 10**6], "1,000,000 copies is out of range"),
    ("clock-mhz", f"{P}.clock_ghz", [1000], "check GHz vs MHz"),
    ("node-unknown", f"{P}.node_nm", 17, "no area data for 17 nm"),
    ("format-typo", f"{P}.weight_format", "int77", "int77"),
    ("dataflow-unknown", f"{P}.dataflow", ["ws", "xyz"], "use one of"),
    ("sparsity-base-60", f"{P}.sparsity", [124], "quote it: '2:4'"),
    ("sparsity-bad", f"{P}.sparsity", ["5:4"], "parameter 'sparsity' value '5:4'"),
    (
        "grid-too-large",
        P,
        {f"{k}": list(range(1, 41)) for k in ("vector_width", "vector_units", "pe_x", "pe_y")},
        "the grid has 2,560,000 designs",
    ),
]

# (id, raw file text, message fragment)
TEXTS = [
    ("empty-file", "", "is empty; a space needs name, workload and parameters"),
    ("top-list", "- name: a\n", "expected a mapping with name, workload and parameters"),
    (
        "two-parameters-blocks",
        "name: a\nworkload: resnet18\nparameters:\n  pe_x: [2, 4]\nparameters:\n  pe_y: [2]\n",
        "key 'parameters' is given twice (first on line 3)",
    ),
    (
        "dup-parameter",
        "name: a\nworkload: resnet18\nparameters:\n  pe_x: [2, 4]\n  pe_x: [8]\n",
        "key 'pe_x' is given twice",
    ),
    (
        "dup-search-key",
        "name: a\nworkload: resnet18\nsearch: {method: grid, method: random}\nparameters:\n"
        "  pe_x: [2]\n",
        "key 'method' is given twice",
    ),
    ("unclosed", "name: [a\n", "not valid YAML"),
    ("tab-indent", "name: a\nparameters:\n\tpe_x: [2]\n", "not valid YAML"),
    ("python-tag", "name: !!python/name:os.system a\n", "not valid YAML"),
]


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _check(tmp_path: Path, data: object, fragment: str) -> None:
    file = _write(tmp_path, data)
    with pytest.raises(SpaceError) as exc:
        load_space(file, catalog)
    text = str(exc.value)
    assert "\n" not in text, text
    assert str(file) in text, text
    assert fragment in text, f"{fragment!r} not in {text!r}"


def test_base_is_valid(tmp_path):
    space = load_space(_write(tmp_path, BASE), catalog)
    assert space.size == 2 * 2 * 3


@pytest.mark.parametrize(("path", "value", "fragment"), [e[1:] for e in EDITS],
                         ids=[e[0] for e in EDITS])  # fmt: skip
def test_malformed_field(tmp_path, path, value, fragment):
    _check(tmp_path, _edit(path, value), fragment)


@pytest.mark.parametrize(("text", "fragment"), [t[1:] for t in TEXTS], ids=[t[0] for t in TEXTS])
def test_malformed_file(tmp_path, text, fragment):
    _check(tmp_path, text, fragment)


def test_missing_and_directory(tmp_path):
    with pytest.raises(SpaceError, match="no such file"):
        load_space(tmp_path / "nope.yaml", catalog)
    with pytest.raises(SpaceError, match="is a directory"):
        load_space(tmp_path, catalog)


# End to end: `picojoule dse run FILE` exits 2 with the one line, writes nothing.
CLI = ["buffer-1e27-kb", "trials-text", "area-nan", "param-typo", "range-reversed"]


@pytest.mark.parametrize("case", CLI)
def test_dse_run_refuses(monkeypatch, capsys, tmp_path, case):
    _, path, value, fragment = next(e for e in EDITS if e[0] == case)
    file = _write(tmp_path, _edit(path, value))
    out_dir = tmp_path / "run"
    code, out = run_cli(monkeypatch, capsys, ["dse", "run", str(file), "--out", str(out_dir)])
    assert_one_error(code, out, fragment)
    assert not out_dir.exists()


def test_dse_run_refuses_duplicate_blocks(monkeypatch, capsys, tmp_path):
    _, text, fragment = next(t for t in TEXTS if t[0] == "two-parameters-blocks")
    code, out = run_cli(monkeypatch, capsys, ["dse", "run", str(_write(tmp_path, text))])
    assert_one_error(code, out, fragment)


def test_dse_run_refuses_unknown_workload(monkeypatch, capsys, tmp_path):
    file = _write(tmp_path, _edit("workload", "resnet19"))
    code, out = run_cli(monkeypatch, capsys, ["dse", "run", str(file)])
    assert_one_error(code, out, "did you mean: resnet18")
