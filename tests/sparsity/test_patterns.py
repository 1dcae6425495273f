import pytest

from picojoule.errors import ConfigError
from picojoule.sparsity import Pattern, parse_pattern


@pytest.mark.parametrize(
    ("text", "kind", "density"),
    [
        ("2:4", "nm", 0.5),
        ("1:4", "nm", 0.25),
        ("4:8", "nm", 0.5),
        ("unstructured:0.3", "unstructured", 0.3),
        ("block:4x4:0.5", "block", 0.5),
        ("channel:0.75", "channel", 0.75),
    ],
)
def test_parse_and_round_trip(text: str, kind: str, density: float) -> None:
    p = parse_pattern(text)
    assert p.kind == kind
    assert p.density == pytest.approx(density)
    assert parse_pattern(p.name) == p


def test_block_shape_is_parsed() -> None:
    assert parse_pattern("block:2x8:0.25").block == (2, 8)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("4:4", "N >= M"),
        ("5:4", "N >= M"),
        ("0:4", "positive"),
        ("unstructured:1.5", "(0, 1]"),
        ("unstructured:abc", "bad density"),
        ("block:4:0.5", "4x4"),
        ("block:0x4:0.5", "positive"),
        ("diagonal:0.5", "unknown sparsity pattern"),
        ("2:four", "bad integer"),
    ],
)
def test_bad_patterns_name_the_problem(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace("]", r"\]")):
        parse_pattern(text)


def test_nm_density_is_derived_not_given() -> None:
    assert Pattern(kind="nm", n=3, m=8, density=0.9).density == pytest.approx(3 / 8)
