"""Design-space files: what parses, what each bad file says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from picojoule.dse.errors import SpaceError
from picojoule.dse.space import MAX_GRID, ParamSpec
from picojoule.dse.spacefile import load_space, parse_space
from picojoule.errors import FormatError


def _check_format(value: object) -> None:
    if value not in ("int8", "int4", "fp16"):
        raise FormatError(f"unknown format {value!r}")


CATALOG = {
    "vector_width": ParamSpec(name="vector_width", type="int", doc="lanes", minimum=1),
    "buffer_kb": ParamSpec(name="buffer_kb", type="float", doc="KB", minimum=0),
    "weight_format": ParamSpec(name="weight_format", type="str", doc="format", check=_check_format),
    "sparsity": ParamSpec(name="sparsity", type="str", doc="pattern"),
}


def _space(**params: Any) -> dict[str, Any]:
    return {"name": "t", "workload": "digits-cnn", "parameters": params}


def test_lists_ranges_pow2_and_fixed_values() -> None:
    space = parse_space(
        _space(
            vector_width={"low": 4, "high": 32, "pow2": True},
            buffer_kb={"low": 0.5, "high": 1.5, "step": 0.5},
            weight_format=["int8", "int4"],
            sparsity="dense",
        ),
        CATALOG,
    )
    swept = {p.name: p.values for p in space.parameters}
    assert swept == {
        "vector_width": (4, 8, 16, 32),
        "buffer_kb": (0.5, 1.0, 1.5),
        "weight_format": ("int8", "int4"),
    }
    assert space.fixed == (("sparsity", "dense"),)
    assert space.size == 24
    designs = list(space.grid())
    assert len({d.key for d in designs}) == 24
    assert all(d.as_dict()["sparsity"] == "dense" for d in designs)
    # first parameter varies slowest
    assert [d.as_dict()["vector_width"] for d in designs[:7]] == [4] * 6 + [8]


def test_float_steps_do_not_accumulate_error() -> None:
    space = parse_space(_space(buffer_kb={"low": 0.1, "high": 0.5, "step": 0.1}), CATALOG)
    assert space.parameters[0].values == (0.1, 0.2, 0.3, 0.4, 0.5)


def test_design_key_is_order_independent_and_value_sensitive() -> None:
    space = parse_space(_space(vector_width=[4, 8], sparsity="dense"), CATALOG)
    a, b = list(space.grid())
    assert a.key != b.key
    assert space.design({"vector_width": 4}).key == a.key
    assert len(a.key) == 16


def test_digest_tracks_the_space_not_the_object() -> None:
    one = parse_space(_space(vector_width=[4, 8]), CATALOG)
    two = parse_space(_space(vector_width=[4, 8]), CATALOG)
    three = parse_space(_space(vector_width=[4, 16]), CATALOG)
    assert one.digest == two.digest != three.digest


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "parameters is empty"),
        ({"vector_widht": [4]}, r"unknown parameter 'vector_widht' \(did you mean: vector_width"),
        ({"vector_width": {"low": 8, "high": 4}}, "low 8 > high 4; swap them"),
        ({"vector_width": {"low": 3, "high": 16, "pow2": True}}, "must be powers of two"),
        ({"buffer_kb": {"low": 0.5, "high": 2.0}}, "a float range needs a step"),
        ({"vector_width": {"low": 1, "high": 4, "step": 0}}, "step must be a positive number"),
        ({"vector_width": {"low": 1, "hi": 4}}, "a range is"),
        ({"vector_width": []}, "empty list"),
        ({"vector_width": [4, 8, 4]}, r"values repeat: \[4\]"),
        ({"vector_width": [4, "eight"]}, "expected a number"),
        ({"vector_width": [4.5]}, "expected a whole number"),
        ({"vector_width": [0]}, "must be >= 1"),
        ({"vector_width": [[4]]}, "nested structure"),
        ({"weight_format": ["int8", "int3"]}, "unknown format 'int3'"),
        ({"weight_format": [True]}, "expected text"),
        ({"sparsity": [124]}, "quote it: '2:4'"),
        ({"vector_width": {"low": 1, "high": MAX_GRID + 5}}, "use a larger step"),
    ],
)
def test_bad_parameters_say_what_to_fix(params: dict[str, Any], message: str) -> None:
    with pytest.raises(SpaceError, match=message):
        parse_space(_space(**params), CATALOG)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"objectives": []}, "objectives is empty"),
        ({"objectives": ["energy", "speed"]}, "unknown objective 'speed'"),
        ({"objectives": ["energy", "energy"]}, "repeat a name"),
        ({"constraints": {"area_mm2": 0}}, "constraints.area_mm2"),
        ({"constraints": {"power": 3}}, "constraints.power"),
        ({"search": {"method": "nsga2"}}, "needs search.trials"),
        ({"search": {"method": "anneal", "trials": 3}}, "search.method"),
        ({"name": "bad name!"}, "name"),
        ({"worklaod": "x"}, "worklaod"),
    ],
)
def test_bad_top_level_fields(extra: dict[str, Any], message: str) -> None:
    data = {**_space(vector_width=[4, 8]), **extra}
    with pytest.raises(SpaceError, match=message):
        parse_space(data, CATALOG)


def test_unquoted_nm_pattern_is_caught_from_yaml_text(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nworkload: w\nparameters:\n  sparsity: [dense, 2:4]\n")
    assert yaml.safe_load(path.read_text())["parameters"]["sparsity"] == ["dense", 124]
    with pytest.raises(SpaceError, match="base-60"):
        load_space(path, CATALOG)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(SpaceError, match="no such file"):
        load_space(tmp_path / "missing.yaml", CATALOG)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(SpaceError, match="is empty"):
        load_space(empty, CATALOG)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpaceError, match="not valid YAML"):
        load_space(broken, CATALOG)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SpaceError, match="expected a mapping"):
        load_space(listy, CATALOG)


def test_grid_refuses_to_enumerate_a_huge_space() -> None:
    big = {f"p{i}": list(range(20)) for i in range(5)}
    catalog = {k: ParamSpec(name=k, type="int", doc="") for k in big}
    with pytest.raises(SpaceError, match="the grid has 3,200,000 designs"):
        parse_space(_space(**big), catalog)  # refused up front, not when the run starts
    space = parse_space({**_space(**big), "search": {"method": "random", "trials": 9}}, catalog)
    assert space.size == 20**5
    with pytest.raises(SpaceError, match="use search.method random or nsga2"):
        next(space.grid())
