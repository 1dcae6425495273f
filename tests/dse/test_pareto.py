"""Pareto utilities: exact on known sets, and the defining properties on random ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from picojoule.dse.pareto import (
    dominates,
    hypervolume_2d,
    knee_index,
    pareto_indices,
    pareto_mask,
)


def test_known_front() -> None:
    pts = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [2, 2], [6, 6], [1, 6]])
    assert pareto_mask(pts).tolist() == [True, True, True, False, True, False, False]
    assert pareto_indices(pts).tolist() == [0, 1, 4, 2]


def test_dominates_is_strict() -> None:
    a, b = np.array([1.0, 2.0]), np.array([1.0, 3.0])
    assert dominates(a, b) and not dominates(b, a) and not dominates(a, a)


def test_hypervolume_of_a_staircase() -> None:
    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [3.5, 3.5]])
    # strips: x 1..2 height 4-3=1, x 2..3 height 2, x 3..4 height 3 -> 6
    assert hypervolume_2d(pts, np.array([4.0, 4.0])) == pytest.approx(6.0)
    assert hypervolume_2d(pts, np.array([0.5, 0.5])) == 0.0


def test_knee_is_the_balanced_point() -> None:
    pts = np.array([[0.0, 10.0], [1.0, 1.0], [10.0, 0.0], [9.0, 9.0]])
    assert knee_index(pts) == 1


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        pareto_mask(np.array([[1.0, np.nan]]))


points = arrays(
    np.float64,
    st.tuples(st.integers(1, 40), st.integers(1, 4)),
    elements=st.integers(0, 6).map(float),  # small integer grid: many ties and duplicates
)


@settings(max_examples=200, deadline=None)
@given(points)
def test_front_is_exactly_the_non_dominated_set(pts: np.ndarray) -> None:
    mask = pareto_mask(pts)
    for i in range(len(pts)):
        dominated = any(dominates(pts[j], pts[i]) for j in range(len(pts)))
        assert mask[i] == (not dominated)


@settings(max_examples=100, deadline=None)
@given(points)
def test_front_is_invariant_to_row_order(pts: np.ndarray) -> None:
    perm = np.random.default_rng(0).permutation(len(pts))
    assert pareto_mask(pts[perm]).tolist() == pareto_mask(pts)[perm].tolist()
