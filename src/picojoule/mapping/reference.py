"""Exact reference simulator: walks the tiled loop nest step by step and counts accesses.

Public: `simulate(layer, arch, mapping) -> Counts`, `Counts`.

For small layers only (it visits every temporal iteration and enumerates tiles as sets of
coordinates). It applies the reuse rules stated in `picojoule.mapping.model` literally: each
level instance remembers the origin of the tile it holds and refetches when the origin moves;
a fill moves the set union of the new tiles under one parent instance; partial sums are
drained on eviction and at the end, and a psum is read back only if that parent instance has
seen the element before. With `arch.mac.latch_operands` each MAC lane is such a level of one
element (it refetches, and drains its psum, only when its origin moves). A level the mapping
bypasses for an operand is left out of that operand's chain. Nothing here uses the model's
closed forms, so equal counts validate them.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from picojoule.arch.spec import Arch
from picojoule.mapping.mapping import RELEVANT, Mapping, held_operands
from picojoule.workload.layer import DIMS, OPERANDS, Layer

__all__ = ["Counts", "simulate"]

Coord = tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class Counts:
    """Element counts `[L, 3]` (operands in `OPERANDS` order), as in `BatchCost`."""

    reads: np.ndarray
    writes: np.ndarray
    deliveries: np.ndarray


@dataclass(frozen=True)
class _Loop:
    dim: int
    bound: int
    level: int
    spatial: bool


def _loops(mapping: Mapping) -> list[_Loop]:
    """Every loop in nest order: level 0's temporal loops, its fanout's x then y, level 1's..."""
    loops: list[_Loop] = []
    for l in range(mapping.levels):
        for name in mapping.order[l]:
            d = DIMS.index(name)
            loops.append(_Loop(d, mapping.temporal[l][d], l, False))
        for table in (mapping.spatial_x, mapping.spatial_y):
            loops.extend(_Loop(d, table[l][d], l, True) for d in range(len(DIMS)))
    return loops


def _coord(op: str, idx: list[int], strides: tuple[int, int]) -> Coord:
    n, g, k, c, p, q, r, s = idx
    if op == "weights":
        return (g, k, c, r, s)
    if op == "outputs":
        return (n, g, k, p, q)
    return (n, g, c, p * strides[0] + r, q * strides[1] + s)


class _Nest:
    def __init__(self, layer: Layer, mapping: Mapping) -> None:
        self.loops = _loops(mapping)
        self.strides = layer.strides
        # weight[i]: place value of loop i's digit in its dimension's index (mixed radix).
        self.weight = [1] * len(self.loops)
        for i, loop in enumerate(self.loops):
            self.weight[i] = int(
                np.prod([lp.bound for lp in self.loops[i + 1 :] if lp.dim == loop.dim])
            )
        self.temporal = [i for i, lp in enumerate(self.loops) if not lp.spatial]
        self.spatial = [i for i, lp in enumerate(self.loops) if lp.spatial]
        self._tiles: dict[tuple[object, ...], frozenset[Coord]] = {}

    def spatial_above(self, level: int) -> list[int]:
        return [i for i in self.spatial if self.loops[i].level < level]

    def instances(self, level: int) -> list[tuple[int, ...]]:
        return list(
            itertools.product(*(range(self.loops[i].bound) for i in self.spatial_above(level)))
        )

    def tile(self, op: str, level: int, digits: dict[int, int]) -> frozenset[Coord]:
        """Coordinates touched by every loop at or below `level`, the rest fixed by `digits`."""
        fixed = tuple(sorted(digits.items()))
        key = (op, level, fixed)
        if key not in self._tiles:
            inner = [i for i, lp in enumerate(self.loops) if lp.level >= level]
            base = [0] * len(DIMS)
            for i, v in digits.items():
                base[self.loops[i].dim] += v * self.weight[i]
            out = set()
            for combo in itertools.product(*(range(self.loops[i].bound) for i in inner)):
                idx = list(base)
                for i, v in zip(inner, combo, strict=True):
                    idx[self.loops[i].dim] += v * self.weight[i]
                out.add(_coord(op, idx, self.strides))
            self._tiles[key] = frozenset(out)
        return self._tiles[key]


def simulate(layer: Layer, arch: Arch, mapping: Mapping) -> Counts:
    """Walk every temporal iteration of `mapping` and count element accesses per level."""
    nest = _Nest(layer, mapping)
    L = len(arch.levels)
    reads = np.zeros((L, 3), dtype=np.int64)
    writes = np.zeros((L, 3), dtype=np.int64)
    deliv = np.zeros((L, 3), dtype=np.int64)
    loops = nest.loops
    latch = arch.mac.latch_operands  # lanes hold their operands like a one-element level

    kept = held_operands(arch, mapping.bypass)
    interfaces = []
    for o, op in enumerate(OPERANDS):
        holders = [l for l in range(L) if op in kept[l]]
        for j, p in enumerate(holders):
            c = holders[j + 1] if j + 1 < len(holders) else L
            interfaces.append((o, op, p, c))
    # Per interface: temporal loops above the child, spatial loops above it, its instances.
    plan = {
        (o, c): (
            [i for i in nest.temporal if loops[i].level < c],
            nest.spatial_above(c),
            nest.instances(c),
        )
        for o, _, _, c in interfaces
    }
    held: dict[tuple[int, int, tuple[int, ...]], tuple[object, frozenset[Coord]]] = {}
    seen: dict[tuple[int, int], set[tuple[tuple[int, ...], Coord]]] = defaultdict(set)

    def group(
        tiles: dict[tuple[int, ...], frozenset[Coord]], depth: int
    ) -> dict[tuple[int, ...], set[Coord]]:
        """Union of child tiles per ancestor, keyed by the first `depth` spatial digits."""
        out: dict[tuple[int, ...], set[Coord]] = defaultdict(set)
        for inst, t in tiles.items():
            out[inst[:depth]] |= t
        return out

    def move_down(o: int, op: str, p: int, c: int, tiles: dict) -> None:
        parents = group(tiles, len(nest.spatial_above(p)))
        if op != "outputs":
            for f in range(p, min(c, L)):
                if arch.levels[f].fanout is not None:
                    ports = group(tiles, len(nest.spatial_above(f + 1)))
                    deliv[f, o] += sum(len(s) for s in ports.values())
            reads[p, o] += sum(len(s) for s in parents.values())
            if c < L:
                writes[c, o] += sum(len(t) for t in tiles.values())
            return
        for pinst, elems in parents.items():
            for e in elems:
                if (pinst, e) in seen[(o, p)]:
                    reads[p, o] += 1
                    if c < L:
                        writes[c, o] += 1
                    for f in range(p, min(c, L)):
                        if arch.levels[f].fanout is not None:
                            deliv[f, o] += 1
                else:
                    seen[(o, p)].add((pinst, e))

    def drain(o: int, p: int, c: int, tiles: dict) -> None:
        for f in range(p, min(c, L)):
            if arch.levels[f].fanout is not None:
                ports = group(tiles, len(nest.spatial_above(f + 1)))
                deliv[f, o] += sum(len(s) for s in ports.values())
        writes[p, o] += sum(len(s) for s in group(tiles, len(nest.spatial_above(p))).values())
        if c < L:
            reads[c, o] += sum(len(t) for t in tiles.values())

    t_bounds = [loops[i].bound for i in nest.temporal]
    for step in itertools.product(*(range(b) for b in t_bounds)):
        tdig = dict(zip(nest.temporal, step, strict=True))
        for o, op, p, c in interfaces:
            above_t, sp, insts = plan[(o, c)]
            fresh: dict[tuple[int, ...], frozenset[Coord]] = {}
            old: dict[tuple[int, ...], frozenset[Coord]] = {}
            for inst in insts:
                digits = {i: tdig[i] for i in above_t}
                digits.update(zip(sp, inst, strict=True))
                if c == L and not latch:  # a MAC lane: one element, read every cycle
                    fresh[inst] = nest.tile(op, c, digits)
                    continue
                # The tile's origin along the loops that index this operand.
                origin = tuple(
                    v * nest.weight[i]
                    for i, v in sorted(digits.items())
                    if DIMS[loops[i].dim] in RELEVANT[op] and not loops[i].spatial
                )
                prev = held.get((o, c, inst))
                if prev is None or prev[0] != origin:
                    if prev is not None:
                        old[inst] = prev[1]
                    tile = nest.tile(op, c, digits)
                    held[(o, c, inst)] = (origin, tile)
                    fresh[inst] = tile
            if op == "outputs" and old:
                drain(o, p, c, old)
            if op == "outputs" and c == L and not latch:
                drain(o, p, c, fresh)
            if fresh:
                move_down(o, op, p, c, fresh)
    for o, op, p, c in interfaces:
        if op == "outputs" and (c < L or latch):
            final = {inst: v[1] for (oo, cc, inst), v in held.items() if oo == o and cc == c}
            drain(o, p, c, final)
    return Counts(reads=reads, writes=writes, deliveries=deliv)
