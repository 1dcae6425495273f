"""Mapping search: `search(layer, arch, objective=..., time_budget_s=..., seed=0)`.

Public: `search`, `exhaustive`, `SearchResult`, `OBJECTIVES`, `NoMappingError`.

`search` is a multi-start variable-neighbourhood descent over the pruned map space
(`picojoule.mapping.space`). It draws `samples` random points, keeps the `starts` best
feasible ones plus the all-outer point (and, for latency and EDP, points that fill the
fanout axes), and descends from all of them at once: a step
evaluates, in one batch for every point, each move of one prime factor (or a loop's whole
factor) to another slot and each alternative loop order; at a local minimum it tries swaps
(two loops trade a factor between two slots, which crosses capacity walls), and stops when
neither improves. It is deterministic for a given seed. A time budget stops it early; the
result then says so and carries the best mapping found so far. `exhaustive` evaluates every
point of the pruned space (small layers only) and is the reference the benchmark holds
`search` to. On an architecture with `bypassable` operands both run once per bypass pattern
(`bypass_choices`, each its own map space) and keep the best, so each layer gets the bypass
that suits it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from picojoule.arch.energy import EnergyTable, operand_bits, resolve_energy
from picojoule.arch.spec import Arch
from picojoule.errors import ConfigError
from picojoule.mapping.cost import Cost, cost_from_batch
from picojoule.mapping.mapping import Mapping
from picojoule.mapping.model import BatchCost, evaluate_batch
from picojoule.mapping.space import MapSpace, bypass_choices, prime_factors
from picojoule.workload.layer import DIMS, Layer

__all__ = [
    "OBJECTIVES",
    "TIE_TOLERANCE",
    "SearchResult",
    "NoMappingError",
    "search",
    "exhaustive",
]

Objective = Literal["energy", "latency", "edp"]
OBJECTIVES: tuple[str, ...] = ("energy", "latency", "edp")


class NoMappingError(ConfigError):
    """No mapping of the layer fits the architecture."""


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    """The best mapping found, its cost and how the search went.

    `value` is the objective (pJ, cycles, or pJ x cycles); `score` is what the search
    minimised (the objective with near-ties broken by the other metric, see `_score`);
    `evaluated` counts cost-model evaluations; `timed_out` is True when the time budget
    stopped the search, and `note` says so in words.
    """

    mapping: Mapping
    cost: Cost
    objective: str
    value: float
    score: float
    evaluated: int
    elapsed_s: float
    timed_out: bool
    method: str
    note: str = ""


# Near-tie tolerance of each objective: the other metric decides between mappings whose
# objective values are within this fraction of each other (see `_score`). Latency: 1%, so
# the latency objective stops paying any energy for a fraction of a percent of cycles.
# Energy: 1e-9, i.e. exact ties up to rounding; a wider band (1e-6 to 1e-3 measured) steers
# the descent into a 3% worse energy basin on one ResNet-18 layer on Eyeriss.
TIE_TOLERANCE: dict[str, float] = {"latency": 0.01, "energy": 1e-9, "edp": 0.0}


def _value(batch: BatchCost, objective: str) -> np.ndarray:
    """The objective itself: pJ, cycles, or pJ x cycles."""
    if objective == "energy":
        return batch.energy_pj
    if objective == "latency":
        return batch.cycles
    return batch.energy_pj * batch.cycles


def _score(
    batch: BatchCost, objective: str, feasible: np.ndarray, ref: tuple[float, float]
) -> np.ndarray:
    """What the search minimises: the objective with ties broken by the other metric.

    latency: cycles x (1 + 0.01 g(energy)); energy: pJ x (1 + 1e-9 g(cycles)), with
    g(x) = x / (x + x0) in (0, 1) increasing and x0 the metric of the all-outer mapping
    (`ref` = (pJ, cycles) of that point, fixed per layer). A mapping better in the
    objective by more than the tolerance always wins; among mappings within it of each
    other the other metric decides (an exact tie always goes to the lower one). EDP is the
    plain product. Infeasible points score infinity.
    """
    value = _value(batch, objective)
    tol = TIE_TOLERANCE[objective]
    if objective == "latency":
        value = value * (1.0 + tol * batch.energy_pj / (batch.energy_pj + ref[0]))
    elif objective == "energy":
        value = value * (1.0 + tol * batch.cycles / (batch.cycles + ref[1]))
    return np.where(feasible & batch.fits, value, np.inf)


def _reference(space: MapSpace, energy: EnergyTable) -> tuple[float, float]:
    """(pJ, cycles) of the all-outer mapping: the fixed scale of the tie-break terms."""
    O0 = np.array([[c[0] for c in space.order_choices]], dtype=np.int64)
    b = evaluate_batch(space.layer, space.arch, space.to_batch(space.initial()[None], O0), energy)
    return float(b.energy_pj[0]), float(b.cycles[0])


def _check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective {objective!r}: use one of {', '.join(OBJECTIVES)}")


def _no_mapping(space: MapSpace, energy: EnergyTable) -> NoMappingError:
    """Explain why even the all-outer mapping (unit tiles below DRAM) does not fit."""
    bits = operand_bits(space.arch, space.layer)
    for level in space.arch.levels[1:]:
        need = {op: bits[op] for op in level.holds}
        if level.partition_bits is not None:
            for op, b in need.items():
                if b > level.partition_bits[op]:
                    return NoMappingError(
                        f"level {level.name!r}: one {op} element needs {b:g} bits but its "
                        f"partition holds {level.partition_bits[op]}; enlarge partition_bits"
                    )
        elif level.capacity_bits is not None and sum(need.values()) > level.capacity_bits:
            return NoMappingError(
                f"level {level.name!r}: one element of each of {list(need)} needs "
                f"{sum(need.values()):g} bits but capacity_bits is {level.capacity_bits}; "
                "enlarge it or hold fewer operands there"
            )
    return NoMappingError(
        f"no mapping of layer {space.layer.name!r} fits {space.arch.name!r}; check the "
        "levels' temporal_dims and capacities"
    )


class _Searcher:
    """Variable-neighbourhood descent of many points at once, one batch per step."""

    def __init__(
        self, space: MapSpace, energy: EnergyTable, objective: str, ref: tuple[float, float]
    ) -> None:
        self.space, self.energy, self.objective = space, energy, objective
        self.ref = ref
        self.evaluated = 0
        self.targets = [np.flatnonzero(space.allowed[:, d]) for d in range(len(DIMS))]
        self.primes = [sorted(set(prime_factors(int(n)))) for n in space.bounds]

    def score(self, F: np.ndarray, O: np.ndarray) -> np.ndarray:
        self.evaluated += len(F)
        batch = evaluate_batch(
            self.space.layer, self.space.arch, self.space.to_batch(F, O), self.energy
        )
        return _score(batch, self.objective, self.space.spatial_ok(F), self.ref)

    def _steps(self, F: np.ndarray) -> list[tuple[int, int, int]]:
        """(slot, dim, factor) that can leave a slot: each prime, and a loop's whole factor."""
        out = []
        for a, d in zip(*np.nonzero(F > 1), strict=True):
            f = int(F[a, d])
            out.extend((int(a), int(d), p) for p in self.primes[d] if f % p == 0)
            if len(prime_factors(f)) > 1:
                out.append((int(a), int(d), f))
        return out

    def moves(self, F: np.ndarray, O: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One factor to another slot, or one level's loop order changed."""
        moves = [
            (a, int(b), d, p, -1, -1, -1, 1)
            for a, d, p in self._steps(F)
            for b in self.targets[d]
            if b != a
        ]
        orders = [
            (l, c)
            for l, choices in enumerate(self.space.order_choices)
            for c in choices
            if c != O[l]
        ]
        return self._apply(F, O, moves, orders)

    def swaps(self, F: np.ndarray, O: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Two loops trade one factor each between two slots (escapes capacity limits)."""
        steps = [s for s in self._steps(F) if s[2] in self.primes[s[1]]]
        moves = []
        for a, d, p in steps:
            for b, d2, q in steps:
                if b != a and d2 != d and self.space.allowed[b, d] and self.space.allowed[a, d2]:
                    moves.append((a, b, d, p, b, a, d2, q))
        return self._apply(F, O, moves, [])

    def _apply(
        self, F: np.ndarray, O: np.ndarray, moves: list, orders: list
    ) -> tuple[np.ndarray, np.ndarray]:
        n = len(moves) + len(orders)
        Fs = np.repeat(F[None], n, axis=0)
        Os = np.repeat(O[None], n, axis=0)
        if moves:
            a, b, d, p, a2, b2, d2, q = np.array(moves, dtype=np.int64).T
            rows = np.arange(len(moves))
            Fs[rows, a, d] //= p
            Fs[rows, b, d] *= p
            two = a2 >= 0
            Fs[rows[two], a2[two], d2[two]] //= q[two]
            Fs[rows[two], b2[two], d2[two]] *= q[two]
        for k, (l, c) in enumerate(orders, start=len(moves)):
            Os[k, l] = c
        return Fs, Os

    def descend(
        self, F: np.ndarray, O: np.ndarray, V: np.ndarray, deadline: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """Descend every point of `F [K, S, D]`, `O [K, L]` (values `V [K]`) to a local
        minimum of moves then swaps; all neighbours of all points in one batch per step."""
        F, O, V = F.copy(), O.copy(), V.copy()
        active = np.ones(len(F), dtype=bool)
        use_swaps = np.zeros(len(F), dtype=bool)
        while active.any():
            if time.perf_counter() > deadline:
                return F, O, V, True
            parts = [
                (self.swaps if use_swaps[k] else self.moves)(F[k], O[k])
                for k in np.flatnonzero(active)
            ]
            sizes = [len(p[0]) for p in parts]
            if not sum(sizes):
                break
            scores = self.score(
                np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
            )
            offset = 0
            for k, (Fs, Os), size in zip(np.flatnonzero(active), parts, sizes, strict=True):
                seg = scores[offset : offset + size]
                offset += size
                i = int(np.argmin(seg)) if size else -1
                if size and seg[i] < V[k] * (1 - 1e-12):
                    F[k], O[k], V[k] = Fs[i], Os[i], seg[i]
                    use_swaps[k] = False
                elif not use_swaps[k]:
                    use_swaps[k] = True
                else:
                    active[k] = False
        return F, O, V, False

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`n` random points: each prime factor of each loop in a uniformly drawn allowed
        slot, each level's loop order drawn from its choices."""
        S, D = self.space.n_slots, len(DIMS)
        F = np.ones((n, S, D), dtype=np.int64)
        for d in range(D):
            for p in prime_factors(int(self.space.bounds[d])):
                slot = self.targets[d][rng.integers(len(self.targets[d]), size=n)]
                F[np.arange(n), slot, d] *= p
        O = np.stack([rng.choice(np.array(c), size=n) for c in self.space.order_choices], axis=1)
        return F, O.astype(np.int64)


def search(
    layer: Layer,
    arch: Arch,
    objective: Objective = "energy",
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    samples: int = 400,
    starts: int = 6,
    energy: EnergyTable | None = None,
) -> SearchResult:
    """The best mapping the search finds for `layer` on `arch`.

    Draws `samples` random points, descends from the `starts` best feasible ones and from
    the all-outer point at once (for latency and EDP also from up to four points that fill
    the fanout axes, `MapSpace.spatial_seeds`), and returns the best local minimum of the
    score (`_score`: the objective with near-ties broken by the other metric). Raises
    `NoMappingError` when not even unit tiles fit, `ConfigError` for a bad objective. With
    several bypass patterns each gets this search (and an equal share of what is left of
    the time budget); the best point over all of them wins.
    """
    _check_objective(objective)
    start = time.perf_counter()
    energy = energy or resolve_energy(arch, layer)
    base = MapSpace.of(layer, arch)
    ref = _reference(base, energy)  # one tie-break scale for every bypass pattern
    choices = bypass_choices(arch)
    best: tuple[float, MapSpace, np.ndarray, np.ndarray] | None = None
    evaluated, timed_out = 0, False
    for k, bypass in enumerate(choices):
        left = np.inf
        if time_budget_s is not None:
            left = time_budget_s - (time.perf_counter() - start)
        deadline = time.perf_counter() + max(left, 0.0) / (len(choices) - k)
        space = dataclasses.replace(base, bypass=bypass)  # same slots, other holders
        s = _Searcher(space, energy, objective, ref)
        found = _descend_space(s, objective, seed, samples, starts, deadline)
        evaluated += s.evaluated
        if found is None:
            continue
        F, O, V, out_of_time = found
        timed_out |= out_of_time
        i = int(np.argmin(V))
        if best is None or V[i] < best[0]:
            best = (float(V[i]), space, F[i], O[i])
    if best is None:
        raise _no_mapping(base, energy)
    _, space, F, O = best
    return _result(
        space, energy, objective, F, O, evaluated, start, timed_out, "local", time_budget_s, ref
    )


def _descend_space(
    s: _Searcher, objective: str, seed: int, samples: int, starts: int, deadline: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool] | None:
    """The multi-start descent of `search` in one map space: its local minima `(F, O, V,
    timed_out)`, or None where not even the all-outer point fits."""
    space = s.space
    F0 = space.initial()[None]
    O0 = np.array([[c[0] for c in space.order_choices]], dtype=np.int64)
    V0 = s.score(F0, O0)
    if not np.isfinite(V0[0]):
        return None
    rng = np.random.default_rng(seed)
    Fr, Or = s.sample(samples, rng)
    Vr = s.score(Fr, Or)
    keep = np.argsort(Vr, kind="stable")[:starts]
    keep = keep[np.isfinite(Vr[keep])]
    # Latency and EDP: also points filling the fanout axes (each level's first order).
    # (Letting them replace the weakest random starts instead cost 9.5% on one layer.)
    Fs = space.spatial_seeds() if objective != "energy" else F0[:0]
    Os = np.repeat(O0, len(Fs), axis=0)
    Vs = s.score(Fs, Os)
    F = np.concatenate([F0, Fr[keep], Fs])
    O = np.concatenate([O0, Or[keep], Os])
    V = np.concatenate([V0, Vr[keep], Vs])
    return s.descend(F, O, V, deadline)


def exhaustive(
    layer: Layer,
    arch: Arch,
    objective: Objective = "energy",
    *,
    limit: int = 2_000_000,
    chunk: int = 20_000,
    energy: EnergyTable | None = None,
) -> SearchResult:
    """Evaluate every point of the pruned map space; for layers small enough to exhaust.

    The space is counted combinatorially first (`MapSpace.count_factorings`, which allocates
    nothing the size of the space and stops counting once past the limit); a space over
    `limit` mappings raises a one-line `ConfigError` before anything is built.
    """
    _check_objective(objective)
    start = time.perf_counter()
    base = MapSpace.of(layer, arch)
    choices = bypass_choices(arch)
    n_orders = int(np.prod([len(c) for c in base.order_choices])) * len(choices)
    tables = base.count_factorings(stop_above=limit // n_orders)
    if tables * n_orders > limit:
        raise ConfigError(
            f"layer {layer.name!r} has more than {limit:,} mappings on {arch.name!r} (pruned; "
            f"at least {tables * n_orders:,}), over the exhaustive limit; use search() or "
            "raise limit"
        )
    energy = energy or resolve_energy(arch, layer)
    orders = base.order_combos()
    ref = _reference(base, energy)
    best_value, best_F, best_O, evaluated = np.inf, None, None, 0
    best_space = base
    for bypass in choices:
        space = dataclasses.replace(base, bypass=bypass)
        for Fc in space.factor_chunks(max(1, chunk // len(orders))):
            F = np.repeat(Fc, len(orders), axis=0)
            O = np.tile(orders, (len(Fc), 1))
            batch = evaluate_batch(layer, arch, space.to_batch(F, O), energy)
            scores = _score(batch, objective, np.ones(len(F), dtype=bool), ref)
            evaluated += len(F)
            i = int(np.argmin(scores)) if len(scores) else 0
            if len(scores) and scores[i] < best_value:
                best_value, best_F, best_O = float(scores[i]), F[i], O[i]
                best_space = space
    if best_F is None:
        raise _no_mapping(base, energy)
    return _result(
        best_space,
        energy,
        objective,
        best_F,
        best_O,
        evaluated,
        start,
        False,
        "exhaustive",
        None,
        ref,
    )


def _result(
    space: MapSpace,
    energy: EnergyTable,
    objective: str,
    F: np.ndarray,
    O: np.ndarray,
    evaluated: int,
    start: float,
    timed_out: bool,
    method: str,
    budget: float | None,
    ref: tuple[float, float],
) -> SearchResult:
    batch = evaluate_batch(space.layer, space.arch, space.to_batch(F[None], O[None]), energy)
    cost = cost_from_batch(space.layer, space.arch, batch, 0)
    value = float(_value(batch, objective)[0])
    score = float(_score(batch, objective, np.ones(1, dtype=bool), ref)[0])
    note = (
        f"time budget of {budget:g} s reached after {evaluated:,} evaluations; this is the "
        "best mapping found so far, not a converged one"
        if timed_out
        else ""
    )
    return SearchResult(
        mapping=space.to_mapping(F, O),
        cost=cost,
        objective=objective,
        value=value,
        score=score,
        evaluated=evaluated,
        elapsed_s=time.perf_counter() - start,
        timed_out=timed_out,
        method=method,
        note=note,
    )
