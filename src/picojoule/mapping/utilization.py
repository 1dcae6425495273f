"""Why a layer cannot fill an array: `utilization_warnings(layer, arch)`.

Public: `UtilizationWarning`, `spatial_bound`, `utilization_warnings`, `POOR_UTILIZATION`.

Rule. Loop factors divide their loops exactly, so a fanout axis of size A that may unroll
loops d1..dk can use at most the largest product of divisors of their bounds that is <= A
(an exact subset-product search). The product over all axes of that fill is an upper bound
on the lanes any mapping keeps busy (`spatial_bound`; exact when no loop is shared by two
axes). Below `POOR_UTILIZATION` (0.5) the cause is structural, not the search: the warning
names the axis, the loops it may unroll and their bounds, and the fix: a grouped or
depthwise layer whose channels are in G needs an array that unrolls G (or another preset);
a bound that is prime or smaller than the axis can be padded to the value that fills it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from picojoule.arch.spec import Arch
from picojoule.workload.layer import Layer

__all__ = ["UtilizationWarning", "spatial_bound", "utilization_warnings", "POOR_UTILIZATION"]

POOR_UTILIZATION = 0.5


@dataclass(frozen=True)
class UtilizationWarning:
    """One structural limit on the lanes a layer can use: what, why, and the fix."""

    layer: str
    best_utilization: float  # upper bound over all mappings (spatial)
    reason: str
    fix: str

    def __str__(self) -> str:
        return (
            f"{self.layer}: at most {self.best_utilization:.3g} of the MAC lanes can be busy: "
            f"{self.reason}; {self.fix}"
        )


@dataclass(frozen=True)
class _Axis:
    level: str
    name: str  # "x" or "y"
    size: int
    dims: tuple[str, ...]


def _axes(arch: Arch) -> list[_Axis]:
    out = []
    for level in arch.levels:
        fan = level.fanout
        if fan is None:
            continue
        for name, size, dims in (("x", fan.mesh_x, fan.x_dims), ("y", fan.mesh_y, fan.y_dims)):
            if size > 1:
                out.append(_Axis(level.name, name, size, tuple(dims)))
    return out


def _best_fill(size: int, bounds: list[int]) -> int:
    """Largest product of one divisor of each bound that is <= size."""
    reach = {1}
    for b in bounds:
        divs = [f for f in range(1, min(b, size) + 1) if b % f == 0]
        reach = {r * f for r in reach for f in divs if r * f <= size}
    return max(reach)


def spatial_bound(layer: Layer, arch: Arch) -> float:
    """Upper bound on the fraction of MAC lanes any mapping of `layer` keeps busy."""
    frac = 1.0
    for ax in _axes(arch):
        frac *= _best_fill(ax.size, [getattr(layer, d) for d in ax.dims]) / ax.size
    return frac


def _pad_to(bound: int, size: int) -> int:
    """Smallest padded bound that fills an axis of `size` evenly: a divisor of `size` at or
    above `bound` when the bound is smaller, else the next multiple of `size`."""
    if bound < size:
        return next(v for v in range(bound, size + 1) if size % v == 0)
    return -(-bound // size) * size


def utilization_warnings(layer: Layer, arch: Arch) -> list[UtilizationWarning]:
    """Structural reasons (one per poorly filled axis) why `layer` cannot reach half of
    `arch`'s lanes; empty when it can."""
    best = spatial_bound(layer, arch)
    if best >= POOR_UTILIZATION:
        return []
    fills = []
    for ax in _axes(arch):
        bounds = {d: getattr(layer, d) for d in ax.dims}
        fills.append((_best_fill(ax.size, list(bounds.values())) / ax.size, ax, bounds))
    poor = [f for f in fills if f[0] < POOR_UTILIZATION] or [f for f in fills if f[0] < 1]
    out = []
    for frac, ax, bounds in sorted(poor, key=lambda f: f[0]):
        fill = round(frac * ax.size)
        where = f"the {ax.size}-wide {ax.name} axis under {ax.level} unrolls only " + ", ".join(
            f"{d}={b}" for d, b in bounds.items()
        )
        grouped = layer.G > 1 and "G" not in ax.dims
        if grouped and _best_fill(ax.size, [*bounds.values(), layer.G]) > fill:
            reason = (
                f"{where} (a grouped/depthwise layer: its {layer.G} groups are in G), so it "
                f"uses {fill} of {ax.size}"
            )
            fix = (
                f"use an array that unrolls G (add G to {ax.level}'s fanout {ax.name}_dims) or "
                "another preset (eyeriss unrolls G on both axes)"
            )
        elif math.prod(bounds.values()) < ax.size:  # no padding of one loop can fill it
            total = math.prod(bounds.values())
            reason = (
                f"{where}; together they give only {total} of {ax.size} lanes (the layer is "
                "smaller than the axis)"
            )
            more = "raise the batch (N is on this axis) or " if "N" in ax.dims else ""
            fix = f"{more}pick an array whose {ax.name} axis unrolls other loops, or a smaller one"
        else:
            d, b = max(bounds.items(), key=lambda kv: kv[1])
            padded = _pad_to(b, ax.size)
            cause = "is prime" if b > 3 and all(b % k for k in range(2, b)) else "does not divide"
            reason = f"{where}; {d}={b} {cause} into the axis, so it uses {fill} of {ax.size}"
            fix = (
                f"pad {d} from {b} to {padded} ({padded / b - 1:.0%} more MACs, "
                f"up to {min(padded, ax.size)} of {ax.size} lanes on this axis) or pick an "
                f"array whose {ax.name} axis unrolls other loops"
            )
        out.append(UtilizationWarning(layer.name, best, reason, fix))
    return out
