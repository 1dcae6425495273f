"""Operation and storage accounting of Winograd F(m, r) against direct convolution.

Public: `TransformOps`, `WinogradCost`, `winograd_cost`, `transform_ops`, `LayerOps`,
`layer_ops`.

Counts come from the exact transform matrices (`cook_toom`), not from tables:

* multiplies: an F(m, r) tile in `dims` dimensions does n^dims element-wise products
  (n = m + r - 1) for m^dims outputs, where direct convolution does (m r)^dims; in 2-D this is
  the 2.25x / 4x / 5.06x reduction of F(2,3) / F(4,3) / F(6,3) (Lavin & Gray, CVPR 2016).
* transform additions and constant multiplies: a 1-D transform T @ x costs, per output row,
  (non-zeros - 1) additions and one constant multiply per entry outside {0, +1, -1}. The count
  is naive (no common-subexpression elimination), so it is an upper bound on what a hand-tuned
  or hardware transform needs. Multi-dimensional transforms are nested 1-D transforms along each
  axis in turn (Lavin & Gray 2016, Sec. 4.1).
* data expansion: transform-domain tiles do not overlap, so each input tile becomes n^dims
  words where the spatial input amortizes to m^dims words per tile, and each r^dims filter
  becomes n^dims stored words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from picojoule.winograd.errors import WinogradError
from picojoule.winograd.transforms import Matrix, Point, cook_toom, default_points, parse_points

__all__ = [
    "LayerOps",
    "TransformOps",
    "WinogradCost",
    "layer_ops",
    "transform_ops",
    "winograd_cost",
]


@dataclass(frozen=True, kw_only=True)
class TransformOps:
    """Cost of one 1-D matrix-vector transform `T @ x` with a constant matrix T."""

    adds: int
    const_mults: int
    """Multiplies by constants outside {0, +1, -1} (powers of two among them are shifts)."""
    shift_mults: int
    """The subset of `const_mults` by a power of two (a shift in fixed point)."""


def _is_power_of_two(v: Fraction) -> bool:
    a = abs(v)
    if a.numerator == 1:
        return a.denominator & (a.denominator - 1) == 0
    return a.denominator == 1 and a.numerator & (a.numerator - 1) == 0


def transform_ops(mat: Matrix) -> TransformOps:
    """Naive additions and constant multiplies of `mat @ x` (no shared subexpressions)."""
    adds = sum(max(sum(1 for v in row if v != 0) - 1, 0) for row in mat)
    consts = [v for row in mat for v in row if v not in (0, 1, -1)]
    return TransformOps(
        adds=adds,
        const_mults=len(consts),
        shift_mults=sum(1 for v in consts if _is_power_of_two(v)),
    )


def _nested(per_axis: int, sizes_done: int, sizes_todo: int, dims: int) -> int:
    """Applications of a 1-D transform when nested over `dims` axes.

    Transforming axis j (0-based) of a tensor whose first j axes are already transformed to
    `sizes_done` and whose other dims-1-j axes are still `sizes_todo` long takes
    sizes_done^j * sizes_todo^(dims-1-j) applications.
    """
    return per_axis * sum(sizes_done**j * sizes_todo ** (dims - 1 - j) for j in range(dims))


@dataclass(frozen=True, kw_only=True)
class WinogradCost:
    """Per-tile operation counts of Winograd F(m^dims, r^dims) and direct convolution.

    Input-transform counts are per tile per input channel (shared by all output channels);
    output-transform counts are per tile per output channel (after the channel sum);
    weight-transform counts are per (output, input) channel pair and are paid once, offline.
    """

    m: int
    r: int
    dims: int
    points: tuple[Point, ...]
    multiplies_per_tile: int
    direct_multiplies_per_tile: int
    outputs_per_tile: int
    input_transform: TransformOps
    output_transform: TransformOps
    weight_transform: TransformOps

    @property
    def n(self) -> int:
        """Transform-domain tile side, m + r - 1."""
        return self.m + self.r - 1

    @property
    def multiplies_per_output(self) -> float:
        return self.multiplies_per_tile / self.outputs_per_tile

    @property
    def direct_multiplies_per_output(self) -> int:
        return self.r**self.dims

    @property
    def multiply_reduction(self) -> float:
        """Direct multiplies / Winograd multiplies: (m r)^dims / (m + r - 1)^dims."""
        return self.direct_multiplies_per_tile / self.multiplies_per_tile

    @property
    def input_expansion(self) -> float:
        """Transform-domain input words per spatial input word: n^dims / m^dims."""
        return self.n**self.dims / self.m**self.dims

    @property
    def weight_expansion(self) -> float:
        """Transform-domain filter words per spatial filter word: n^dims / r^dims."""
        return self.n**self.dims / self.r**self.dims


def winograd_cost(
    m: int, r: int, *, dims: int = 2, points: tuple[object, ...] | None = None
) -> WinogradCost:
    """Accounting of F(m, r) nested over `dims` axes (2 for image convolution).

    Args:
        m: outputs per tile side. r: filter taps per side. dims: 1 or more.
        points: interpolation points (see `cook_toom`); they change the transform constants,
            never the multiply count.
    """
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise WinogradError(f"dims must be a positive int, got {dims!r}")
    at, g, bt = cook_toom(m, r, points)
    n = m + r - 1
    one_at, one_g, one_bt = transform_ops(at), transform_ops(g), transform_ops(bt)

    def nest(ops: TransformOps, done: int, todo: int) -> TransformOps:
        return TransformOps(
            adds=_nested(ops.adds, done, todo, dims),
            const_mults=_nested(ops.const_mults, done, todo, dims),
            shift_mults=_nested(ops.shift_mults, done, todo, dims),
        )

    pts = default_points(n) if points is None else parse_points(points)
    return WinogradCost(
        m=m,
        r=r,
        dims=dims,
        points=pts,
        multiplies_per_tile=n**dims,
        direct_multiplies_per_tile=(m * r) ** dims,
        outputs_per_tile=m**dims,
        # BT is n x n: every axis stays n long.
        input_transform=nest(one_bt, n, n),
        # AT maps n -> m: axes already done are m long, the rest still n.
        output_transform=nest(one_at, m, n),
        # G maps r -> n.
        weight_transform=nest(one_g, n, r),
    )


@dataclass(frozen=True, kw_only=True)
class LayerOps:
    """Whole-layer operation counts of a stride-1 conv run as Winograd, edge tiles included."""

    tiles: int
    """Tiles per image and channel: ceil(P / m_h) * ceil(Q / m_w)."""
    multiplies: int
    transform_adds: int
    """Input- plus output-transform additions (weight transform excluded: done offline)."""
    accumulate_adds: int
    """Adds of the channel sums in the transform domain."""
    transform_const_mults: int
    direct_macs: int

    @property
    def multiply_reduction(self) -> float:
        """Direct MACs / Winograd multiplies, including the waste of partial edge tiles."""
        return self.direct_macs / self.multiplies


def layer_ops(
    *,
    batch: int,
    in_channels: int,
    out_channels: int,
    groups: int = 1,
    out_hw: tuple[int, int],
    kernel_hw: tuple[int, int],
    tile: tuple[int, int],
    points: tuple[object, ...] | None = None,
) -> LayerOps:
    """Counts for a conv producing `out_hw` outputs per channel, tiled by `tile`.

    Partial tiles at the right and bottom edges are computed in full (then cropped), which
    is why small feature maps lose part of the nominal reduction.
    """
    (p, q), (r_h, r_w), (m_h, m_w) = out_hw, kernel_hw, tile
    if in_channels % groups or out_channels % groups:
        raise WinogradError(
            f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
        )
    n_h, n_w = m_h + r_h - 1, m_w + r_w - 1
    tiles = math.ceil(p / m_h) * math.ceil(q / m_w)
    c_g = in_channels // groups
    at_h, _, bt_h = cook_toom(m_h, r_h, points)
    at_w, _, bt_w = cook_toom(m_w, r_w, points)
    bt_h_ops, bt_w_ops = transform_ops(bt_h), transform_ops(bt_w)
    at_h_ops, at_w_ops = transform_ops(at_h), transform_ops(at_w)
    # Input: BT_h along rows (n_w columns), then BT_w along columns (n_h rows).
    in_adds = n_w * bt_h_ops.adds + n_h * bt_w_ops.adds
    in_consts = n_w * bt_h_ops.const_mults + n_h * bt_w_ops.const_mults
    # Output: AT_h on n_w columns (n_h -> m_h), then AT_w on m_h rows (n_w -> m_w).
    out_adds = n_w * at_h_ops.adds + m_h * at_w_ops.adds
    out_consts = n_w * at_h_ops.const_mults + m_h * at_w_ops.const_mults
    images = batch * tiles
    return LayerOps(
        tiles=tiles,
        multiplies=images * out_channels * c_g * n_h * n_w,
        transform_adds=images * (in_channels * in_adds + out_channels * out_adds),
        accumulate_adds=images * out_channels * (c_g - 1) * n_h * n_w,
        transform_const_mults=images * (in_channels * in_consts + out_channels * out_consts),
        direct_macs=batch * out_channels * c_g * p * q * r_h * r_w,
    )
