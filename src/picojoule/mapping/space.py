"""The map space of one layer on one architecture, as arrays the search moves through.

Public: `MapSpace`, `CANONICAL_ORDERS`, `prime_factors`, `bypass_choices`.

A candidate is a factor table `F[slot, dim]` (slots: each level's temporal loops, then the x
and y axes of its fanout) and a loop-order choice per level. Sound pruning, applied to every
search including the exhaustive one:
* Loop orders: only the relative order of a level's non-unit loops matters, and the reuse
  rules reward a trailing run of loops that do not index one operand. The operands' sets of
  non-indexing loops are disjoint (weights: N P Q; inputs: K; outputs: C R S), so any order
  rewards at most one operand per level, and the order that puts all of that operand's
  non-indexing loops innermost rewards it at least as much. Hence three orders per level
  (one per stationary operand) dominate all 8! orders; the innermost level's order never
  matters (the MACs re-read every cycle). A level with `stationary` set keeps that one.
* Factors: a factor may only sit in slots whose loops the level or fanout allows, and an
  axis's factors must fit its size; capacity is checked on the evaluated batch.
A space fixes one bypass pattern (`bypass`, see `Mapping.bypass`); `bypass_choices` lists the
patterns an architecture allows, and the search explores each.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from picojoule.arch.spec import Arch
from picojoule.errors import ConfigError
from picojoule.mapping.mapping import RELEVANT, Mapping, MappingBatch
from picojoule.workload.layer import DIMS, OPERANDS, Layer

__all__ = ["MapSpace", "CANONICAL_ORDERS", "prime_factors", "bypass_choices"]


def _canonical(op: str) -> tuple[int, ...]:
    """Loops indexing `op` outermost, the others innermost (so `op` stays in place)."""
    keep = [i for i, d in enumerate(DIMS) if d in RELEVANT[op]]
    free = [i for i, d in enumerate(DIMS) if d not in RELEVANT[op]]
    return tuple(keep + free)


CANONICAL_ORDERS = np.array([_canonical(op) for op in OPERANDS], dtype=np.int64)


def bypass_choices(arch: Arch) -> list[tuple[tuple[str, ...], ...]]:
    """Every bypass pattern `arch` allows, as `Mapping.bypass` values: per level a subset of
    its `bypassable` operands. The first, `()`, bypasses nothing."""
    per_level = [
        [
            combo
            for k in range(len(level.bypassable) + 1)
            for combo in itertools.combinations(level.bypassable, k)
        ]
        for level in arch.levels
    ]
    return [()] + [c for c in itertools.product(*per_level) if any(c)]


def prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


@dataclass(frozen=True)
class MapSpace:
    """Slots and order choices of `layer` on `arch` (build with `MapSpace.of`)."""

    layer: Layer
    arch: Arch
    slot_level: np.ndarray  # [S] level of each slot
    slot_kind: tuple[str, ...]  # "t", "x" or "y"
    slot_size: np.ndarray  # [S] axis size (0 = temporal, unbounded)
    allowed: np.ndarray  # [S, D] bool
    order_choices: tuple[tuple[int, ...], ...]  # per level, allowed canonical order indices
    bounds: np.ndarray  # [D]
    bypass: tuple[tuple[str, ...], ...] = ()  # the bypass pattern of every point

    @classmethod
    def of(cls, layer: Layer, arch: Arch, bypass: tuple[tuple[str, ...], ...] = ()) -> MapSpace:
        levels, kinds, sizes, allowed = [], [], [], []
        for l, level in enumerate(arch.levels):
            levels.append(l)
            kinds.append("t")
            sizes.append(0)
            allowed.append([d in level.temporal_dims for d in DIMS])
            if level.fanout is not None:
                for axis, size, dims in (
                    ("x", level.fanout.mesh_x, level.fanout.x_dims),
                    ("y", level.fanout.mesh_y, level.fanout.y_dims),
                ):
                    if size > 1:
                        levels.append(l)
                        kinds.append(axis)
                        sizes.append(size)
                        allowed.append([d in dims for d in DIMS])
        allowed_arr = np.array(allowed, dtype=bool)
        bounds = np.array(layer.bounds, dtype=np.int64)
        for i, d in enumerate(DIMS):
            if bounds[i] > 1 and not allowed_arr[:, i].any():
                raise ConfigError(
                    f"loop {d} (={bounds[i]}) of layer {layer.name!r} can be placed at no level "
                    f"of {arch.name!r}; add {d} to a level's temporal_dims or a fanout's dims"
                )
        choices = []
        for l, level in enumerate(arch.levels):
            if level.stationary is not None:
                choices.append((OPERANDS.index(level.stationary),))
            elif l == len(arch.levels) - 1:
                choices.append((0,))
            else:
                choices.append((0, 1, 2))
        return cls(
            layer=layer,
            arch=arch,
            slot_level=np.array(levels, dtype=np.int64),
            slot_kind=tuple(kinds),
            slot_size=np.array(sizes, dtype=np.int64),
            allowed=allowed_arr,
            order_choices=tuple(choices),
            bounds=bounds,
            bypass=bypass,
        )

    @property
    def n_slots(self) -> int:
        return len(self.slot_kind)

    @property
    def n_levels(self) -> int:
        return len(self.arch.levels)

    def initial(self) -> np.ndarray:
        """Every factor in the outermost slot allowed for its loop: `F[S, D]`."""
        F = np.ones((self.n_slots, len(DIMS)), dtype=np.int64)
        for i in range(len(DIMS)):
            if self.bounds[i] > 1:
                F[int(np.argmax(self.allowed[:, i])), i] = self.bounds[i]
        return F

    def spatial_seeds(self) -> np.ndarray:
        """Points that fill the fanout axes as fully as the loop bounds allow: `[K, S, D]`.

        Each axis in turn takes the largest product of divisors of the remaining bounds of
        its allowed loops that fits it (an exact subset-product search over divisors), and
        what is left of each loop sits in its outermost allowed temporal slot. Four
        variants: axes outermost-first or innermost-first, loops in DIMS order or reversed
        when two fills tie. Random sampling rarely fills several axes at once, which is
        what latency needs; the search descends from these as well.
        """
        sized = [s for s in range(self.n_slots) if self.slot_size[s] > 0]
        seeds = []
        for axis_order in (sized, sized[::-1]):
            for dim_order in (range(len(DIMS)), range(len(DIMS) - 1, -1, -1)):
                rem = [int(b) for b in self.bounds]
                F = np.ones((self.n_slots, len(DIMS)), dtype=np.int64)
                for slot in axis_order:
                    size = int(self.slot_size[slot])
                    reach: dict[int, tuple[tuple[int, int], ...]] = {1: ()}
                    for d in dim_order:
                        if not self.allowed[slot, d] or rem[d] == 1:
                            continue
                        divs = [f for f in range(1, min(rem[d], size) + 1) if rem[d] % f == 0]
                        nxt = dict(reach)
                        for prod, choice in reach.items():
                            for f in divs[1:]:
                                if prod * f <= size and prod * f not in nxt:
                                    nxt[prod * f] = (*choice, (d, f))
                        reach = nxt
                    for d, f in reach[max(reach)]:
                        F[slot, d] *= f
                        rem[d] //= f
                for d in range(len(DIMS)):
                    if rem[d] > 1:
                        slots = np.flatnonzero(self.allowed[:, d] & (self.slot_size == 0))
                        if not len(slots):
                            slots = np.flatnonzero(self.allowed[:, d])
                        F[int(slots[0]), d] *= rem[d]
                seeds.append(F)
        return np.unique(np.stack(seeds), axis=0)

    def spatial_ok(self, F: np.ndarray) -> np.ndarray:
        """`[B]` whether each axis's factors fit its size (F: `[B, S, D]`)."""
        prods = F.prod(axis=2)
        sized = self.slot_size > 0
        return (prods[:, sized] <= self.slot_size[sized]).all(axis=1)

    def to_batch(self, F: np.ndarray, orders: np.ndarray) -> MappingBatch:
        """Arrays for the cost model from factor tables `[B, S, D]` and order choices `[B, L]`."""
        B, L = F.shape[0], self.n_levels
        temporal = np.ones((B, L, len(DIMS)), dtype=np.int64)
        spatial = np.ones((B, L, len(DIMS)), dtype=np.int64)
        for s, (l, kind) in enumerate(zip(self.slot_level, self.slot_kind, strict=True)):
            if kind == "t":
                temporal[:, l] = F[:, s]
            else:
                spatial[:, l] *= F[:, s]
        bypass = None
        if self.bypass:
            row = [[op in skip for op in OPERANDS] for skip in self.bypass]
            bypass = np.broadcast_to(np.array(row, dtype=bool), (B, L, len(OPERANDS)))
        return MappingBatch(temporal, spatial, CANONICAL_ORDERS[orders], bypass)

    def to_mapping(self, F: np.ndarray, orders: np.ndarray) -> Mapping:
        L = self.n_levels
        rows = {k: [[1] * len(DIMS) for _ in range(L)] for k in ("t", "x", "y")}
        for s, (l, kind) in enumerate(zip(self.slot_level, self.slot_kind, strict=True)):
            rows[kind][l] = [int(v) for v in F[s]]
        return Mapping(
            temporal=tuple(tuple(r) for r in rows["t"]),
            spatial_x=tuple(tuple(r) for r in rows["x"]),
            spatial_y=tuple(tuple(r) for r in rows["y"]),
            order=tuple(tuple(DIMS[i] for i in CANONICAL_ORDERS[o]) for o in orders),
            bypass=self.bypass,
        )

    def count_factorings(self, stop_above: int | None = None) -> int:
        """Factor tables whose fanout axes fit (the exhaustive search's size before orders),
        counted combinatorially: nothing the size of the space is allocated.

        Rule: a loop's factorings are, per prime power p^e, the ways to spread e over its
        allowed slots; only the exponents landing on fanout axes matter for fitting, and
        for each such choice summing to s the temporal slots take the rest in
        C(e - s + t - 1, t - 1) ways (t temporal slots; none: s must be e). Each loop's
        choices are grouped by their products on the axes, and a dynamic programme over the
        loops keeps one count per vector of axis products that still fits. Equal to the
        number of tables `factor_chunks` yields (the tests hold the two equal).

        `stop_above`: return as soon as the count is known to exceed it (the tables counted
        so far, each extended by every all-temporal placement of the later loops, are
        distinct); the number returned is then a lower bound above `stop_above`.
        """
        sized = np.flatnonzero(self.slot_size > 0)
        limits = tuple(int(v) for v in self.slot_size[sized])
        ones = tuple(1 for _ in sized)
        options = [self._axis_projections(i, sized, limits) for i in range(len(DIMS))]
        # Any table of the loops so far extends to at least `later[i]` whole tables: each
        # later loop placed wholly in temporal slots (its options whose axis products are 1).
        later = [1] * (len(DIMS) + 1)
        for i in range(len(DIMS) - 1, -1, -1):
            later[i] = later[i + 1] * options[i].get(ones, 0)
        states: dict[tuple[int, ...], int] = {ones: 1}
        for i in range(len(DIMS)):
            nxt: dict[tuple[int, ...], int] = {}
            total = 0
            for state, n in states.items():
                for proj, m in options[i].items():
                    new = tuple(a * b for a, b in zip(state, proj, strict=True))
                    if all(v <= lim for v, lim in zip(new, limits, strict=True)):
                        nxt[new] = nxt.get(new, 0) + n * m
                        total += n * m
                # Every term counts distinct tables, so total x later[i + 1] is a lower
                # bound of the final count.
                if stop_above is not None and total * later[i + 1] > stop_above:
                    return total * later[i + 1]
            states = nxt
        return sum(states.values())

    def _axis_projections(
        self, i: int, sized: np.ndarray, limits: tuple[int, ...]
    ) -> dict[tuple[int, ...], int]:
        """Loop `i`'s factorings grouped by their products on the fanout axes: counts."""
        allowed = self.allowed[:, i]
        axes = [k for k, s in enumerate(sized) if allowed[s]]
        temporal = int(allowed.sum()) - len(axes)
        out: dict[tuple[int, ...], int] = {tuple(1 for _ in sized): 1}
        for p, e in _prime_powers(int(self.bounds[i])):
            # Exponent choices per axis, capped where p**x would overflow the axis.
            caps = [min(e, int(math.log(limits[k], p) + 1e-9)) for k in axes]
            ways: dict[tuple[int, ...], int] = {}
            for exps in itertools.product(*(range(c + 1) for c in caps)):
                s = sum(exps)
                if s > e or (temporal == 0 and s != e):
                    continue
                rest = math.comb(e - s + temporal - 1, temporal - 1) if temporal else 1
                proj = [1] * len(sized)
                for k, x in zip(axes, exps, strict=True):
                    proj[k] = p**x
                key = tuple(proj)
                ways[key] = ways.get(key, 0) + rest
            merged: dict[tuple[int, ...], int] = {}
            for a, n in out.items():
                for b, m in ways.items():
                    key = tuple(x * y for x, y in zip(a, b, strict=True))
                    if all(v <= lim for v, lim in zip(key, limits, strict=True)):
                        merged[key] = merged.get(key, 0) + n * m
            out = merged
        return out

    def _per_dim(self) -> list[np.ndarray]:
        """For each loop, every way to spread its prime factors over its allowed slots."""
        per_dim = []
        for i in range(len(DIMS)):
            slots = np.flatnonzero(self.allowed[:, i])
            options = [np.ones(self.n_slots, dtype=np.int64)]
            for p, e in _prime_powers(int(self.bounds[i])):
                new = []
                for split in _compositions(e, len(slots)):
                    row = np.ones(self.n_slots, dtype=np.int64)
                    row[slots] = p ** np.array(split)
                    new.append(row)
                options = [a * b for a in options for b in new]
            per_dim.append(np.array(options))
        return per_dim

    def _fitting(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Index of each loop's option in every combination whose axes fit: `[M, D]`, built
        loop by loop and pruned as soon as a partial product overflows an axis."""
        per_dim = self._per_dim()
        sized = np.flatnonzero(self.slot_size > 0)
        combos = np.zeros((1, 0), dtype=np.int64)
        prods = np.ones((1, len(sized)), dtype=np.int64)
        for options in per_dim:
            n = len(options)
            new_prods = (prods[:, None, :] * options[None, :, sized]).reshape(
                len(prods) * n, len(sized)
            )
            new_combos = np.concatenate(
                [np.repeat(combos, n, axis=0), np.tile(np.arange(n), len(combos))[:, None]],
                axis=1,
            )
            keep = (new_prods <= self.slot_size[sized]).all(axis=1)
            combos, prods = new_combos[keep], new_prods[keep]
        return combos, per_dim

    def factor_chunks(self, chunk: int) -> Iterator[np.ndarray]:
        """Every factor table `[M, S, D]` whose axes fit, in chunks of at most `chunk`."""
        combos, per_dim = self._fitting()
        for start in range(0, len(combos), chunk):
            part = combos[start : start + chunk]
            yield np.stack([per_dim[i][part[:, i]] for i in range(len(DIMS))], axis=2)

    def order_combos(self) -> np.ndarray:
        return np.array(list(itertools.product(*self.order_choices)), dtype=np.int64)


def _prime_powers(n: int) -> list[tuple[int, int]]:
    primes = prime_factors(n)
    return [(p, primes.count(p)) for p in sorted(set(primes))]


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """All ways to write `total` as an ordered sum of `parts` non-negative integers."""
    out = []
    for cuts in itertools.combinations(range(total + parts - 1), parts - 1):
        prev, split = -1, []
        for c in (*cuts, total + parts - 1):
            split.append(c - prev - 1)
            prev = c
        out.append(tuple(split))
    return out
