"""Fuzzing accelerator and design-space YAML: random mutations of a valid document (a field set
to a random value, removed, added or duplicated, then the text cut, doubled or spliced) either
validate into a sane object or raise a `PicojouleError`; any other exception is a bug.

Parse + validate only (`load_yaml` -> `arch_from_dict` / `parse_space`, the layers the file
loaders call), so each example costs well under a millisecond to a few.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picojoule.arch.io import arch_from_dict, arch_to_yaml
from picojoule.arch.limits import LIMITS, MAX_LANES
from picojoule.arch.spec import Arch
from picojoule.dse.params import catalog
from picojoule.dse.space import MAX_GRID, DesignSpace
from picojoule.dse.spacefile import parse_space
from picojoule.errors import PicojouleError
from picojoule.yamlio import load_yaml

from .test_arch_inputs import BASE as ARCH
from .test_dse_inputs import BASE as SPACE

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # no .hypothesis/ in the tree; failures print their example
    suppress_health_check=[HealthCheck.too_slow],
)

# Values a user could type: numbers of every size and sign, NaN/inf, text, YAML-ish words,
# small lists and mappings, null and booleans.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["2:4", "weights", "inputs", "K", "dram", "int8", "grid", "nsga2", "ws"]),
    st.lists(st.integers(min_value=-5, max_value=70), max_size=3),
    st.dictionaries(
        st.sampled_from(["low", "high", "step", "pow2", "x"]), st.integers(-3, 64), max_size=3
    ),  # fmt: skip
)
KEYS = st.sampled_from(["name", "levels", "mesh_x", "capacity_bits", "parameters", "pe_x",
                        "search", "trials", "low", "x", "holds", "clock_ghz"])  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in a nested dict/list tree (the root excluded)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for k, v in items:
        out.append((*prefix, k))
        if isinstance(v, dict | list) and v:
            out.extend(_paths(v, (*prefix, k)))
    return out


@st.composite
def mutated_text(draw: st.DrawFn, base: dict[str, Any]) -> str:
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(data)
        if not paths:
            break
        *parent_path, key = draw(st.sampled_from(paths))
        parent: Any = data
        for p in parent_path:
            parent = parent[p]
        op = draw(st.sampled_from(["set", "set", "delete", "add", "copy"]))
        if op == "set":
            parent[key] = draw(VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
        elif op == "copy" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
    text = yaml.safe_dump(data, sort_keys=False)
    lines = text.splitlines(keepends=True)
    i = draw(st.integers(min_value=0, max_value=max(0, len(lines) - 1)))
    edit = draw(st.sampled_from(["none", "none", "dup-line", "drop-line", "cut", "splice"]))
    if edit == "dup-line" and lines:
        lines.insert(i, lines[i])  # often a duplicate key
    elif edit == "drop-line" and lines:
        del lines[i]
    elif edit == "cut":
        return text[: draw(st.integers(min_value=0, max_value=len(text)))]
    elif edit == "splice":
        lines.insert(i, draw(st.text(alphabet=" :-[]{}#'\"\t\nabc012.", max_size=12)))
    return "".join(lines)


def _arch_is_sane(arch: Arch) -> None:
    assert arch.lanes <= MAX_LANES
    for level in arch.levels:
        for bits in [level.capacity_bits, *(level.partition_bits or {}).values()]:
            assert bits is None or LIMITS["capacity_bits"].low <= bits <= 2**40
        assert 1 <= level.width_bits <= 4096
    assert math.isfinite(arch.clock_ghz) and 1e-3 <= arch.clock_ghz <= 10
    assert arch_from_dict(yaml.safe_load(arch_to_yaml(arch))) == arch  # round-trips


def _space_is_sane(space: DesignSpace) -> None:
    assert space.parameters or space.fixed
    for p in space.parameters:
        assert len(p.values) >= 2 and len(set(p.values)) == len(p.values)
        for v in p.values:
            assert isinstance(v, str) or math.isfinite(v)
    if space.search.method == "grid":
        assert space.size <= MAX_GRID


@FUZZ
@given(mutated_text(ARCH))
def test_mutated_arch_yaml(text: str) -> None:
    try:
        arch = arch_from_dict(load_yaml(text, "fuzz.yaml"), origin="fuzz.yaml")
    except PicojouleError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz.yaml"), str(e)
        return
    _arch_is_sane(arch)


@FUZZ
@given(mutated_text(SPACE))
def test_mutated_space_yaml(text: str) -> None:
    try:
        data = load_yaml(text, "fuzz.yaml")
        if data is None:
            return  # load_space reports an empty file itself
        space = parse_space(data, catalog, where="fuzz.yaml")
    except PicojouleError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz.yaml"), str(e)
        return
    _space_is_sane(space)


def test_the_bases_validate() -> None:
    _arch_is_sane(arch_from_dict(ARCH))
    _space_is_sane(parse_space(SPACE, catalog))
