"""A mapping: how a layer's loops are tiled, ordered and unrolled over an architecture.

Public: `Mapping`, `MappingError`, `MappingBatch`, `check_mapping`.

Level indices run outermost first (0 = DRAM), as in `Arch.levels`. For each level `l`:
`temporal[l][d]` is the trip count of loop `d` iterating *at* level `l` (over data resident
there); `spatial_x[l][d]`/`spatial_y[l][d]` unroll loop `d` across the fanout under level `l`;
`order[l]` lists the loop names outermost first; `bypass[l]` (empty tuple: none anywhere) the
operands routed past level `l` (each in its `bypassable`). The index of loop `d` composes outer
levels as the more significant digits, so every tile is a contiguous box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from picojoule.arch.spec import Arch
from picojoule.errors import ConfigError
from picojoule.workload.layer import DIMS, OPERANDS, Layer, touched_extent

__all__ = [
    "RELEVANT",
    "Mapping",
    "MappingError",
    "MappingBatch",
    "check_mapping",
    "held_operands",
    "tile_elems",
]

_DIM_INDEX = {d: i for i, d in enumerate(DIMS)}


class MappingError(ConfigError):
    """A mapping that does not fit the layer or the architecture."""


def tile_elems(operand: str, ext: dict[str, int], strides: tuple[int, int]) -> int:
    """Distinct elements of `operand` touched by a box of loop extents `ext`."""
    if operand == "weights":
        return ext["G"] * ext["K"] * ext["C"] * ext["R"] * ext["S"]
    if operand == "outputs":
        return ext["N"] * ext["G"] * ext["K"] * ext["P"] * ext["Q"]
    h = touched_extent(ext["P"], ext["R"], strides[0])
    w = touched_extent(ext["Q"], ext["S"], strides[1])
    return ext["N"] * ext["G"] * ext["C"] * h * w


def held_operands(arch: Arch, bypass: tuple[tuple[str, ...], ...] = ()) -> list[tuple[str, ...]]:
    """Per level, the operands it keeps: its `holds` less those `bypass` routes past it."""
    if not bypass:
        return [level.holds for level in arch.levels]
    return [
        tuple(op for op in level.holds if op not in skip)
        for level, skip in zip(arch.levels, bypass, strict=True)
    ]


@dataclass(frozen=True, kw_only=True)
class Mapping:
    """Per-level temporal factors, fanout unrolling along x and y, loop order, and the
    operands routed past each level (`bypass`, one tuple per level; empty: none)."""

    temporal: tuple[tuple[int, ...], ...]
    spatial_x: tuple[tuple[int, ...], ...]
    spatial_y: tuple[tuple[int, ...], ...]
    order: tuple[tuple[str, ...], ...]
    bypass: tuple[tuple[str, ...], ...] = ()

    @property
    def levels(self) -> int:
        return len(self.temporal)

    def spatial(self, level: int, dim: str) -> int:
        i = _DIM_INDEX[dim]
        return self.spatial_x[level][i] * self.spatial_y[level][i]

    def factor_product(self, dim: str) -> int:
        i = _DIM_INDEX[dim]
        return math.prod(
            self.temporal[l][i] * self.spatial_x[l][i] * self.spatial_y[l][i]
            for l in range(self.levels)
        )

    def extents(self, level: int) -> dict[str, int]:
        """Loop extents of the tile held by one instance of `level` (its loops and below)."""
        return {
            d: math.prod(
                self.temporal[l][i] * self.spatial_x[l][i] * self.spatial_y[l][i]
                for l in range(level, self.levels)
            )
            for i, d in enumerate(DIMS)
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for JSON): per level, non-unit factors and the loop order."""
        out = []
        for l in range(self.levels):
            out.append(
                {
                    "temporal": {
                        d: f for d, f in zip(DIMS, self.temporal[l], strict=True) if f > 1
                    },
                    "spatial_x": {
                        d: f for d, f in zip(DIMS, self.spatial_x[l], strict=True) if f > 1
                    },
                    "spatial_y": {
                        d: f for d, f in zip(DIMS, self.spatial_y[l], strict=True) if f > 1
                    },
                    "order": "".join(self.order[l]),
                }
            )
            if self.bypass and self.bypass[l]:
                out[-1]["bypass"] = list(self.bypass[l])
        return {"levels": out}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Mapping:
        """Inverse of `to_dict`; missing factors are 1, a missing order is DIMS order."""
        levels = data.get("levels")
        if not isinstance(levels, list) or not levels:
            raise MappingError("mapping: expected {'levels': [{temporal:..., order:...}, ...]}")

        def row(entry: dict[str, Any], key: str) -> tuple[int, ...]:
            factors = entry.get(key, {}) or {}
            unknown = set(factors) - set(DIMS)
            if unknown:
                raise MappingError(
                    f"mapping: {key} names unknown loops {sorted(unknown)}; loops are "
                    f"{' '.join(DIMS)}"
                )
            return tuple(int(factors.get(d, 1)) for d in DIMS)

        bypass = tuple(tuple(e.get("bypass", ()) or ()) for e in levels)
        return cls(
            temporal=tuple(row(e, "temporal") for e in levels),
            spatial_x=tuple(row(e, "spatial_x") for e in levels),
            spatial_y=tuple(row(e, "spatial_y") for e in levels),
            order=tuple(tuple(e.get("order", "".join(DIMS))) for e in levels),
            bypass=bypass if any(bypass) else (),
        )

    def describe(self, arch: Arch) -> str:
        """The loop nest as indented text, outermost first (unit loops omitted)."""
        lines: list[str] = []
        indent = 0
        kept_by_level = held_operands(arch, self.bypass)
        for l, (level, kept) in enumerate(zip(arch.levels, kept_by_level, strict=True)):
            skipped = (
                f"; bypassed: {', '.join(self.bypass[l])}" if self.bypass and self.bypass[l] else ""
            )
            lines.append("  " * indent + f"[{level.name}: {', '.join(kept)}{skipped}]")
            for d in self.order[l]:
                f = self.temporal[l][_DIM_INDEX[d]]
                if f > 1:
                    lines.append("  " * indent + f"for {d.lower()}{l} in [0,{f}):")
                    indent += 1
            for axis, factors in (("x", self.spatial_x[l]), ("y", self.spatial_y[l])):
                for d, f in zip(DIMS, factors, strict=True):
                    if f > 1:
                        lines.append(
                            "  " * indent + f"spatial_for {d.lower()}{l}{axis} in [0,{f}):"
                        )
                        indent += 1
        lines.append("  " * indent + "mac")
        return "\n".join(lines)


def check_mapping(mapping: Mapping, layer: Layer, arch: Arch, bits: dict[str, float]) -> None:
    """Raise `MappingError` naming the first violated rule (shape, fanout, dataflow, capacity).

    `bits` are the stored bits per element of each operand (see `picojoule.mapping.model`).
    """
    L = len(arch.levels)
    for name, table in (
        ("temporal", mapping.temporal),
        ("spatial_x", mapping.spatial_x),
        ("spatial_y", mapping.spatial_y),
    ):
        if len(table) != L or any(len(row) != len(DIMS) for row in table):
            raise MappingError(
                f"mapping.{name} must have {L} rows (one per level) of {len(DIMS)} factors"
            )
        if any(f < 1 for row in table for f in row):
            raise MappingError(f"mapping.{name} has a factor below 1; factors are >= 1")
    if mapping.bypass:
        if len(mapping.bypass) != L:
            raise MappingError(f"mapping.bypass must have {L} rows (one per level) or none")
        for level, skip in zip(arch.levels, mapping.bypass, strict=True):
            bad = sorted(set(skip) - set(level.bypassable))
            if bad:
                raise MappingError(
                    f"level {level.name!r}: {bad} cannot bypass it (bypassable: "
                    f"{list(level.bypassable) or 'none'})"
                )
    kept = held_operands(arch, mapping.bypass)
    for d in DIMS:
        got = mapping.factor_product(d)
        if got != getattr(layer, d):
            raise MappingError(
                f"loop {d}: factors multiply to {got} but layer {layer.name!r} has "
                f"{d}={getattr(layer, d)}; make the factors multiply to the loop bound"
            )
    for l, level in enumerate(arch.levels):
        if sorted(mapping.order[l]) != sorted(DIMS):
            raise MappingError(
                f"level {level.name!r}: order {''.join(mapping.order[l])!r} must list each of "
                f"{''.join(DIMS)} once"
            )
        for i, d in enumerate(DIMS):
            if mapping.temporal[l][i] > 1 and d not in level.temporal_dims:
                raise MappingError(
                    f"level {level.name!r}: loop {d} may not iterate here (temporal_dims="
                    f"{''.join(level.temporal_dims)}); move its factor to another level"
                )
        fan = level.fanout
        sx, sy = mapping.spatial_x[l], mapping.spatial_y[l]
        if fan is None:
            if math.prod(sx) * math.prod(sy) > 1:
                raise MappingError(
                    f"level {level.name!r} has no fanout; its spatial factors must be 1"
                )
        else:
            for axis, factors, size, dims in (
                ("x", sx, fan.mesh_x, fan.x_dims),
                ("y", sy, fan.mesh_y, fan.y_dims),
            ):
                if math.prod(factors) > size:
                    raise MappingError(
                        f"level {level.name!r}: spatial_{axis} uses {math.prod(factors)} copies "
                        f"but the fanout has {size}; reduce the unrolling"
                    )
                for i, d in enumerate(DIMS):
                    if factors[i] > 1 and d not in dims:
                        raise MappingError(
                            f"level {level.name!r}: loop {d} cannot unroll along {axis} "
                            f"(allowed: {''.join(dims)})"
                        )
        ext = mapping.extents(l)
        used = 0.0
        for op in kept[l]:
            need = tile_elems(op, ext, layer.strides) * bits[op]
            cap = level.capacity_of(op)
            if level.partition_bits is not None and cap is not None and need > cap:
                raise MappingError(
                    f"level {level.name!r}: the {op} tile needs {need:.0f} bits but its "
                    f"partition holds {cap}; move factors of loops touching {op} outward"
                )
            used += need
        if (
            level.partition_bits is None
            and level.capacity_bits is not None
            and (used > level.capacity_bits)
        ):
            raise MappingError(
                f"level {level.name!r}: tiles need {used:.0f} bits but capacity is "
                f"{level.capacity_bits}; move factors outward"
            )


@dataclass(frozen=True)
class MappingBatch:
    """`B` mappings as arrays: temporal/spatial `[B, L, D]` int64, order `[B, L, D]` dim indices
    (outermost first). Spatial holds the product of the x and y factors. `bypass` `[B, L, 3]`
    bool (`OPERANDS` order): operand routed past the level; None: nothing bypassed."""

    temporal: np.ndarray
    spatial: np.ndarray
    order: np.ndarray
    bypass: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.temporal.shape[0])

    @classmethod
    def of(cls, mappings: list[Mapping]) -> MappingBatch:
        t = np.array([m.temporal for m in mappings], dtype=np.int64)
        s = np.array([m.spatial_x for m in mappings], dtype=np.int64) * np.array(
            [m.spatial_y for m in mappings], dtype=np.int64
        )
        o = np.array(
            [[[_DIM_INDEX[d] for d in row] for row in m.order] for m in mappings], dtype=np.int64
        )
        bypass = None
        if any(m.bypass for m in mappings):
            bypass = np.array(
                [
                    [[op in row for op in OPERANDS] for row in m.bypass]
                    if m.bypass
                    else [[False] * len(OPERANDS)] * m.levels
                    for m in mappings
                ],
                dtype=bool,
            )
        return cls(temporal=t, spatial=s, order=o, bypass=bypass)

    def take(self, index: np.ndarray) -> MappingBatch:
        bypass = None if self.bypass is None else self.bypass[index]
        return MappingBatch(self.temporal[index], self.spatial[index], self.order[index], bypass)


# Which loops index each operand (the relevance the reuse rules turn on).
RELEVANT: dict[str, frozenset[str]] = {
    "weights": frozenset("GKCRS"),
    "inputs": frozenset("NGCPQRS"),
    "outputs": frozenset("NGKPQ"),
}
