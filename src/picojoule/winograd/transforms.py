"""Exact Cook–Toom transforms for 1-D Winograd minimal filtering F(m, r).

Public: `cook_toom`, `clear_cache`, `default_points`, `integer_points`, `point_set`, `POINT_SETS`,
`parse_points`, `INF`, `check_exact`, `correlate_exact`, `winograd_exact`, `Matrix`, `Point`.

F(m, r) computes m outputs of the r-tap correlation y_i = sum_k d_{i+k} g_k from n = m + r - 1
inputs with n general multiplies instead of m * r (Winograd, "Arithmetic complexity of
computations", SIAM 1980; Lavin & Gray, "Fast algorithms for convolutional neural networks",
CVPR 2016, arXiv:1509.09308):

    y = AT @ ((G @ g) * (BT @ d))        AT: m x n, G: n x r, BT: n x n

Derivation (Toom–Cook). The linear convolution s = g * h of polynomials of degree r-1 and m-1
is evaluated at n points and interpolated back: s = V^-1 ((V_r g) * (V_m h)), where V_k is the
n x k Vandermonde matrix of the points and the point at infinity "evaluates" a polynomial to its
leading coefficient. Correlation with g is the transpose of convolution with g, hence
AT = V_m^T, G = V_r and BT = V^-T. V^-1 comes from Lagrange interpolation: for a finite point
a_i its column is the coefficient vector of N_i(x) / f_i, N_i = prod_{j != i} (x - a_j) over the
other finite points and f_i = N_i(a_i); the column of the point at infinity is
M(x) = prod_j (x - a_j). The 1/f_i factors are moved from BT into G - the weight transform is
computed once, offline - so the run-time input transform BT has the simplest entries. This is
the convention of Lavin's wincnn and reproduces the published F(4, 3) matrices exactly.

All arithmetic is `fractions.Fraction`; no float appears anywhere in the derivation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from functools import lru_cache
from itertools import count
from typing import Final

from picojoule.winograd.errors import WinogradError

__all__ = [
    "INF",
    "Matrix",
    "Point",
    "POINT_SETS",
    "check_exact",
    "clear_cache",
    "cook_toom",
    "correlate_exact",
    "default_points",
    "integer_points",
    "parse_points",
    "point_set",
    "winograd_exact",
]


class _Infinity:
    """The projective point at infinity: a polynomial evaluated there is its leading coefficient.

    Using it as one of the n points saves a finite point (whose powers grow the transforms'
    entries) and is standard practice (Lavin & Gray 2016, Sec. 4).
    """

    def __repr__(self) -> str:
        return "inf"

    def __reduce__(self) -> str:
        return "INF"


INF: Final = _Infinity()
Point = Fraction | _Infinity
Matrix = tuple[tuple[Fraction, ...], ...]


def _ladder() -> Iterable[Fraction]:
    """0, 1, -1, 1/2, -1/2, 2, -2, 1/4, -1/4, 4, -4, ... : small magnitudes and reciprocal pairs.

    Points of magnitude near 1, and reciprocal pairs a, 1/a, keep the Vandermonde matrices well
    conditioned (Barabasz, Anderson, Soodhalter & Gregg, "Error analysis and improving the
    accuracy of Winograd convolution for deep neural networks", ACM TOMS 46(4), 2020, Sec. 6).
    """
    yield Fraction(0)
    yield Fraction(1)
    yield Fraction(-1)
    for k in count(1):
        for magnitude in (Fraction(1, 2**k), Fraction(2**k)):
            yield magnitude
            yield -magnitude


def _integers() -> Iterable[Fraction]:
    """0, 1, -1, 2, -2, 3, -3, ... : the integer-only point set (worse conditioned)."""
    yield Fraction(0)
    for k in count(1):
        yield Fraction(k)
        yield Fraction(-k)


def _take(points: Iterable[Fraction], n: int) -> tuple[Point, ...]:
    if n < 1:
        raise WinogradError(f"a point set needs n >= 1 points, got {n}")
    finite = [p for p, _ in zip(points, range(n - 1), strict=False)]
    return (*finite, INF)


def default_points(n: int) -> tuple[Point, ...]:
    """The n default points: the first n-1 of 0, ±1, ±1/2, ±2, ±1/4, ±4, ... plus infinity."""
    return _take(_ladder(), n)


def integer_points(n: int) -> tuple[Point, ...]:
    """The n integer-only points: the first n-1 of 0, ±1, ±2, ±3, ... plus infinity."""
    return _take(_integers(), n)


POINT_SETS: Final[dict[str, Callable[[int], tuple[Point, ...]]]] = {
    "default": default_points,
    "integer": integer_points,
}


def point_set(name: str, n: int) -> tuple[Point, ...]:
    """The named point set (`default` or `integer`) with n points."""
    if name not in POINT_SETS:
        raise WinogradError(f"unknown point set {name!r}; choose one of {', '.join(POINT_SETS)}")
    return POINT_SETS[name](n)


def _parse_point(value: object) -> Point:
    if isinstance(value, _Infinity):
        return value
    if isinstance(value, bool):
        raise WinogradError(f"interpolation point {value!r} is a bool; give a number or 'inf'")
    if isinstance(value, str) and value.strip().lower() in {"inf", "+inf", "infinity", "∞"}:
        return INF
    if isinstance(value, float) and math.isinf(value):
        return INF
    if isinstance(value, float) and math.isnan(value):
        raise WinogradError("interpolation point is NaN; give a number such as 1/2, or 'inf'")
    try:
        # Fraction(float) is exact: 0.5 -> 1/2, 0.1 -> 3602879701896397/36028797018963968.
        return Fraction(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        raise WinogradError(
            f"cannot read interpolation point {value!r}; use an int, a Fraction, a string such "
            "as '-1/2', or 'inf'"
        ) from None


def parse_points(values: Iterable[object]) -> tuple[Point, ...]:
    """Normalize user points (ints, Fractions, exact floats, strings like '1/2', 'inf')."""
    return tuple(_parse_point(v) for v in values)


def _poly_from_roots(roots: Sequence[Fraction]) -> list[Fraction]:
    """Coefficients (constant term first) of the monic polynomial prod (x - root)."""
    coeffs = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0), *coeffs]  # x * p(x)
        coeffs = [s - root * c for s, c in zip(shifted, [*coeffs, Fraction(0)], strict=True)]
    return coeffs


def _vandermonde_row(point: Point, width: int) -> tuple[Fraction, ...]:
    if isinstance(point, _Infinity):
        return tuple(Fraction(int(j == width - 1)) for j in range(width))
    return tuple(point**j for j in range(width))


def _check_args(m: int, r: int, points: tuple[Point, ...]) -> None:
    for label, value in (("m (outputs per tile)", m), ("r (filter taps)", r)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise WinogradError(f"{label} must be a positive int, got {value!r}")
    n = m + r - 1
    if len(points) != n:
        raise WinogradError(
            f"F({m}, {r}) needs m + r - 1 = {n} interpolation points, got {len(points)}; "
            "count the point at infinity ('inf') as one of them"
        )
    seen: set[Point] = set()
    for p in points:
        if p in seen:
            raise WinogradError(
                f"interpolation point {p} is repeated in {list(points)}: the Vandermonde matrix "
                "is singular; every point must be distinct"
            )
        seen.add(p)


@lru_cache(maxsize=256)
def _cook_toom(m: int, r: int, points: tuple[Point, ...]) -> tuple[Matrix, Matrix, Matrix]:
    n = m + r - 1
    finite = [p for p in points if not isinstance(p, _Infinity)]
    at_cols: list[tuple[Fraction, ...]] = []
    g_rows: list[tuple[Fraction, ...]] = []
    bt_rows: list[tuple[Fraction, ...]] = []
    for p in points:
        at_cols.append(_vandermonde_row(p, m))
        if isinstance(p, _Infinity):
            g_rows.append(_vandermonde_row(p, r))
            bt_rows.append(tuple(_poly_from_roots(finite)))  # M(x), degree n-1 when inf is used
            continue
        others = [q for q in finite if q != p]
        f = math.prod((p - q for q in others), start=Fraction(1))
        g_rows.append(tuple(v / f for v in _vandermonde_row(p, r)))
        n_i = _poly_from_roots(others)
        bt_rows.append(tuple(n_i + [Fraction(0)] * (n - len(n_i))))
    at = tuple(tuple(col[i] for col in at_cols) for i in range(m))
    return at, tuple(g_rows), tuple(bt_rows)


def cook_toom(
    m: int, r: int, points: Iterable[object] | None = None
) -> tuple[Matrix, Matrix, Matrix]:
    """Exact (AT, G, BT) of the 1-D Winograd algorithm F(m, r).

    Args:
        m: outputs per tile.
        r: filter taps.
        points: m + r - 1 distinct interpolation points (the point at infinity, `INF` or
            'inf', counts as one); default `default_points(m + r - 1)`.

    Returns:
        AT (m x n), G (n x r), BT (n x n) as tuples of `Fraction` rows, n = m + r - 1, with
        y = AT @ ((G @ g) * (BT @ d)) equal to the correlation y_i = sum_k d_{i+k} g_k.

    Raises:
        WinogradError: m or r not a positive int, wrong number of points, a repeated point.
    """
    pts = default_points(m + r - 1) if points is None else parse_points(points)
    _check_args(m, r, pts)
    return _cook_toom(m, r, pts)


def clear_cache() -> None:
    """Forget every derived transform, so that the next `cook_toom` call derives afresh."""
    _cook_toom.cache_clear()


def check_exact(at: Matrix, g: Matrix, bt: Matrix) -> bool:
    """Symbolic proof that (AT, G, BT) computes F(m, r) correlation exactly.

    Both sides are bilinear in (d, g), so they agree for every input iff they agree on every
    pair of basis vectors: sum_t AT[i][t] G[t][k] BT[t][j] == [j == i + k] for all i, k, j.
    """
    m, n, r = len(at), len(bt), len(g[0])
    for i in range(m):
        for k in range(r):
            for j in range(n):
                acc = sum((at[i][t] * g[t][k] * bt[t][j] for t in range(n)), start=Fraction(0))
                if acc != (1 if j == i + k else 0):
                    return False
    return True


def correlate_exact(d: Sequence[Fraction], g: Sequence[Fraction]) -> list[Fraction]:
    """Direct 'valid' correlation y_i = sum_k d_{i+k} g_k in exact arithmetic."""
    r = len(g)
    return [
        sum((d[i + k] * g[k] for k in range(r)), start=Fraction(0)) for i in range(len(d) - r + 1)
    ]


def _matvec(mat: Matrix, vec: Sequence[Fraction]) -> list[Fraction]:
    return [sum((a * b for a, b in zip(row, vec, strict=True)), start=Fraction(0)) for row in mat]


def winograd_exact(
    d: Sequence[Fraction], g: Sequence[Fraction], transforms: tuple[Matrix, Matrix, Matrix]
) -> list[Fraction]:
    """y = AT ((G g) * (BT d)) in exact arithmetic, for checking a transform triple."""
    at, gm, bt = transforms
    u, v = _matvec(gm, g), _matvec(bt, d)
    return _matvec(at, [a * b for a, b in zip(u, v, strict=True)])
