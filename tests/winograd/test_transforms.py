"""Cook–Toom transforms: exact by symbolic proof and by rational differential testing."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picojoule.errors import PicojouleError
from picojoule.winograd import (
    INF,
    WinogradError,
    check_exact,
    cook_toom,
    default_points,
    integer_points,
    point_set,
)
from picojoule.winograd.transforms import correlate_exact, parse_points, winograd_exact

F_ = Fraction


def _frac(rows: list[list[object]]) -> tuple[tuple[Fraction, ...], ...]:
    return tuple(tuple(Fraction(v) for v in row) for row in rows)


@pytest.mark.parametrize("r", [2, 3, 5])
@pytest.mark.parametrize("m", range(1, 9))
@pytest.mark.parametrize("points", [default_points, integer_points])
def test_symbolic_identity_holds_for_every_basis_pair(m: int, r: int, points) -> None:
    at, g, bt = cook_toom(m, r, points(m + r - 1))
    assert (len(at), len(at[0]), len(g), len(g[0]), len(bt)) == (
        m,
        m + r - 1,
        m + r - 1,
        r,
        m + r - 1,
    )
    assert check_exact(at, g, bt)


def test_check_exact_rejects_a_perturbed_transform() -> None:
    at, g, bt = cook_toom(4, 3)
    broken = (bt[0], (bt[1][0] + 1, *bt[1][1:]), *bt[2:])
    assert not check_exact(at, g, broken)


rationals = st.fractions(min_value=-50, max_value=50, max_denominator=97)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 8),
    r=st.sampled_from([2, 3, 5]),
    data=st.data(),
)
def test_winograd_equals_direct_correlation_on_random_rationals(m: int, r: int, data) -> None:
    d = data.draw(st.lists(rationals, min_size=m + r - 1, max_size=m + r - 1))
    g = data.draw(st.lists(rationals, min_size=r, max_size=r))
    assert winograd_exact(d, g, cook_toom(m, r)) == correlate_exact(d, g)


@settings(max_examples=30, deadline=None)
@given(
    pts=st.lists(rationals, min_size=5, max_size=5, unique=True),
    with_inf=st.booleans(),
    data=st.data(),
)
def test_any_distinct_user_points_are_exact(pts: list[Fraction], with_inf: bool, data) -> None:
    points = [*pts[:4], INF] if with_inf else pts  # F(3, 3): 5 points
    d = data.draw(st.lists(rationals, min_size=5, max_size=5))
    g = data.draw(st.lists(rationals, min_size=3, max_size=3))
    mats = cook_toom(3, 3, points)
    assert check_exact(*mats)
    assert winograd_exact(d, g, mats) == correlate_exact(d, g)


def test_lavin_gray_f4x3_matrices_are_reproduced_exactly() -> None:
    # Lavin & Gray, CVPR 2016, Sec. 4.2, points 0, 1, -1, 2, -2 and infinity.
    at, g, bt = cook_toom(4, 3, [0, 1, -1, 2, -2, "inf"])
    assert at == _frac(
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
    )
    assert g == _frac(
        [
            ["1/4", 0, 0],
            ["-1/6", "-1/6", "-1/6"],
            ["-1/6", "1/6", "-1/6"],
            ["1/24", "1/12", "1/6"],
            ["1/24", "-1/12", "1/6"],
            [0, 0, 1],
        ]
    )
    assert bt == _frac(
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ]
    )


def test_f2x3_by_hand() -> None:
    # Points 0, 1, -1, inf: f_0 = -1, f_1 = f_-1 = 2; N_0 = x^2 - 1, N_1 = x^2 + x,
    # N_-1 = x^2 - x, M = x^3 - x.
    at, g, bt = cook_toom(2, 3)
    assert at == _frac([[1, 1, 1, 0], [0, 1, -1, 1]])
    assert g == _frac([[-1, 0, 0], ["1/2", "1/2", "1/2"], ["1/2", "-1/2", "1/2"], [0, 0, 1]])
    assert bt == _frac([[-1, 0, 1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]])


def test_every_entry_is_a_fraction() -> None:
    for mat in cook_toom(8, 3):
        assert all(type(v) is Fraction for row in mat for v in row)


def test_default_and_integer_point_sets() -> None:
    assert default_points(10) == (
        *(F_(v) for v in (0, 1, -1, F_(1, 2), F_(-1, 2), 2, -2, F_(1, 4), F_(-1, 4))),
        INF,
    )
    assert integer_points(8) == (*(F_(v) for v in (0, 1, -1, 2, -2, 3, -3)), INF)
    assert default_points(1) == (INF,)
    assert point_set("integer", 4) == integer_points(4)


def test_points_are_parsed_exactly() -> None:
    assert parse_points([0.5, "-1/4", 3, F_(2, 3), float("inf"), "∞"]) == (
        F_(1, 2),
        F_(-1, 4),
        F_(3),
        F_(2, 3),
        INF,
        INF,
    )
    assert parse_points([0.1]) == (F_(3602879701896397, 36028797018963968),)


@pytest.mark.parametrize(
    ("m", "r", "points", "message"),
    [
        (4, 3, [0, 1, -1, 1, 2, "inf"], "repeated"),
        (2, 3, [0, 1, "inf", "inf"], "repeated"),
        (2, 3, [0, 1, "inf"], "needs m \\+ r - 1 = 4"),
        (0, 3, None, "m \\(outputs per tile\\) must be a positive int"),
        (2, True, None, "r \\(filter taps\\) must be a positive int"),
        (2, 3, [0, 1, float("nan"), "inf"], "NaN"),
        (2, 3, [0, 1, "half", "inf"], "cannot read interpolation point 'half'"),
        (2, 3, [0, 1, True, "inf"], "bool"),
    ],
)
def test_bad_input_is_a_clear_error(m: int, r: int, points, message: str) -> None:
    with pytest.raises(WinogradError, match=message) as info:
        cook_toom(m, r, points)
    assert isinstance(info.value, PicojouleError)


def test_unknown_point_set_names_the_choices() -> None:
    with pytest.raises(WinogradError, match="default, integer"):
        point_set("chebyshev", 4)
