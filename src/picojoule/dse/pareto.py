"""Pareto fronts over minimised objectives.

Public: `dominates`, `pareto_mask`, `pareto_indices`, `knee_index`, `hypervolume_2d`.

A point a dominates b when a is no worse in every objective and strictly better in at least
one. The front is the set of points no other point dominates; duplicates of a front point are
all on the front (none strictly beats the other).
"""

from __future__ import annotations

import numpy as np

__all__ = ["dominates", "pareto_mask", "pareto_indices", "knee_index", "hypervolume_2d"]


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True when `a` is <= `b` everywhere and < somewhere (minimisation)."""
    return bool(np.all(a <= b) and np.any(a < b))


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of `points` [n_points, n_objectives].

    Sort by the first objective (ties by the rest), then keep a row unless an earlier kept
    row dominates it: O(n * front) instead of O(n^2), exact for any number of objectives.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2:
        raise ValueError(f"points must be [n, k], got shape {pts.shape}")
    n = pts.shape[0]
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    if np.isnan(pts).any():
        raise ValueError("points contain NaN; drop unevaluated designs first")
    order = np.lexsort(pts.T[::-1])
    front: list[int] = []
    for i in order:
        p = pts[i]
        if front:
            kept = pts[front]
            if np.any(np.all(kept <= p, axis=1) & np.any(kept < p, axis=1)):
                continue
        front.append(int(i))
    mask[front] = True
    return mask


def pareto_indices(points: np.ndarray) -> np.ndarray:
    """Indices of the front, ordered by the first objective."""
    pts = np.asarray(points, dtype=np.float64)
    idx = np.flatnonzero(pareto_mask(pts))
    return idx[np.lexsort(pts[idx].T[::-1])]


def knee_index(points: np.ndarray) -> int:
    """The balanced front point: smallest Euclidean distance to the ideal point after
    normalising every objective to [0, 1] over the front (objectives of equal weight).

    Returns an index into `points`.
    """
    pts = np.asarray(points, dtype=np.float64)
    idx = pareto_indices(pts)
    if idx.size == 0:
        raise ValueError("no points")
    front = pts[idx]
    lo, hi = front.min(axis=0), front.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    dist = np.linalg.norm((front - lo) / span, axis=1)
    return int(idx[int(np.argmin(dist))])


def hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by `points` [n, 2] and bounded by `reference` (minimisation): a single
    number that grows as a 2-objective front improves."""
    pts = np.asarray(points, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"hypervolume_2d needs [n, 2] points, got {pts.shape}")
    inside = pts[np.all(pts < ref, axis=1)]
    if inside.size == 0:
        return 0.0
    front = inside[pareto_indices(inside)]  # ascending x, hence descending y
    xs = np.append(front[1:, 0], ref[0])
    return float(np.sum((xs - front[:, 0]) * (ref[1] - front[:, 1])))
