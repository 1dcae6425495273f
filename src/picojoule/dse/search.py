"""Search strategies: which designs to evaluate next.

Public: `Strategy`, `GridSearch`, `RandomSearch`, `Nsga2Search`, `make_strategy`,
`objective_values`, `violations`.

A strategy proposes a batch of designs, is told their outcomes in proposal order, and
proposes the next batch, until it returns an empty batch. The runner decides what is
evaluated, looked up in the results store, or skipped as over the area budget; strategies
only see `Observation`s.

- grid: every design, in a fixed order.
- random: `trials` distinct designs drawn uniformly with `seed`.
- nsga2: Optuna's NSGA-II (Deb et al., IEEE TEC 2002) through its ask/tell interface; one
  generation of `population` designs per batch, until `trials` distinct designs have been
  proposed (a design proposed again is looked up, not re-evaluated, and does not count) or
  ten generations in a row propose nothing new; area and power budgets as constraints
  (constrained domination: feasible beats infeasible, then smaller violation wins). Numeric
  parameters are searched by their index in the value list, so crossover and mutation keep
  their order; text parameters are categorical. Outcomes are told in proposal order, so a
  seed gives the same designs whichever backend evaluated them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from picojoule.dse.results import Point
from picojoule.dse.space import MAX_GRID, OBJECTIVES, Constraints, Design, DesignSpace

__all__ = [
    "Observation",
    "Strategy",
    "GridSearch",
    "RandomSearch",
    "Nsga2Search",
    "make_strategy",
    "objective_values",
    "violations",
]

_GRID_CHUNK = 1024  # designs per grid batch: bounded memory, regular commits
_MAX_STALLED = 10  # NSGA-II generations in a row without a new design: it has converged


@dataclass(frozen=True, kw_only=True)
class Observation:
    """What a strategy learns about one proposed design."""

    design: Design
    metrics: dict[str, Any] | None  # None: not evaluable (mapping error) or over the area budget


def objective_values(metrics: dict[str, Any], objectives: Sequence[str]) -> list[float]:
    return [float(metrics[OBJECTIVES[o]]) for o in objectives]


def violations(metrics: dict[str, Any], constraints: Constraints) -> dict[str, float]:
    """Budget excess per constraint (<= 0 means met), for the constraints that are set."""
    out: dict[str, float] = {}
    if constraints.area_mm2 is not None:
        out["area_mm2"] = float(metrics["area_mm2"]) - constraints.area_mm2
    if constraints.power_w is not None:
        out["power_w"] = float(metrics["power_w"]) - constraints.power_w
    return out


class Strategy(Protocol):
    generation: int  # index of the batch `propose` returned last

    def propose(self) -> list[Design]: ...

    def observe(self, observations: Sequence[Observation]) -> None: ...

    def replay(self, points: Sequence[Point]) -> None:
        """Resume: learn from points a previous, interrupted run stored."""
        ...


def _categorical(values: Sequence[Any]) -> bool:
    return all(isinstance(v, str) for v in values)


def _decode(space: DesignSpace, flat: int) -> Design:
    """Design number `flat` of the grid (mixed radix, first parameter most significant)."""
    choice: dict[str, Any] = {}
    for p in reversed(space.parameters):
        flat, i = divmod(flat, len(p.values))
        choice[p.name] = p.values[i]
    return space.design(choice)


class _ListSearch:
    """A fixed list of designs handed out in chunks; nothing to learn from outcomes."""

    def __init__(self, designs: Iterator[Design]) -> None:
        self._designs = designs
        self.generation = -1

    def propose(self) -> list[Design]:
        batch = [d for _, d in zip(range(_GRID_CHUNK), self._designs, strict=False)]
        if batch:
            self.generation += 1
        return batch

    def observe(self, observations: Sequence[Observation]) -> None:
        return None

    def replay(self, points: Sequence[Point]) -> None:
        return None  # the runner skips designs the run already holds


class GridSearch(_ListSearch):
    def __init__(self, space: DesignSpace) -> None:
        super().__init__(space.grid())


class RandomSearch(_ListSearch):
    """`trials` distinct designs, uniformly at random (the whole grid if it is smaller)."""

    def __init__(self, space: DesignSpace, *, trials: int, seed: int) -> None:
        super().__init__(iter(_sample(space, trials, seed)))


def _sample(space: DesignSpace, trials: int, seed: int) -> list[Design]:
    size = space.size
    rng = np.random.default_rng(seed)
    if trials >= size:
        return list(space.grid())
    if size <= MAX_GRID:
        picks = rng.choice(size, size=trials, replace=False)
        return [_decode(space, int(i)) for i in picks]
    # A huge space: rejection sampling of index tuples; collisions are rare (trials << size).
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < trials:
        idx = tuple(int(rng.integers(len(p.values))) for p in space.parameters)
        seen.setdefault(idx, None)
    return [
        space.design({p.name: p.values[i] for p, i in zip(space.parameters, idx, strict=True)})
        for idx in seen
    ]


class Nsga2Search:
    """Optuna NSGA-II, one generation per batch (see the module docstring)."""

    def __init__(self, space: DesignSpace, *, trials: int, population: int, seed: int) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self._space = space
        self._trials = trials
        self._population = population
        self._sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
        self._study = optuna.create_study(
            directions=["minimize"] * len(space.objectives), sampler=self._sampler
        )
        self._by_name = {p.name: p for p in space.parameters}
        self._dists: dict[str, Any] = {}
        for p in space.parameters:
            if _categorical(p.values):
                self._dists[p.name] = CategoricalDistribution(p.values)
            else:
                self._dists[p.name] = IntDistribution(0, len(p.values) - 1)
        self._seen: set[str] = set()  # distinct designs proposed so far
        self._stalled = 0  # consecutive generations that proposed no new design
        self._pending: list[Any] = []
        self.generation = -1

    def _value(self, name: str, raw: Any) -> Any:
        """Optuna's parameter value -> the design's value (numeric ones travel as indices)."""
        p = self._by_name[name]
        return raw if _categorical(p.values) else p.values[int(raw)]

    def _params(self, design: Design) -> dict[str, Any]:
        """The inverse of `_value`, for replaying stored designs."""
        d = design.as_dict()
        return {
            p.name: d[p.name] if _categorical(p.values) else p.values.index(d[p.name])
            for p in self._space.parameters
        }

    def propose(self) -> list[Design]:
        if self._pending:
            raise RuntimeError("observe the previous generation before proposing the next")
        n = min(self._population, self._trials - len(self._seen))
        if n <= 0 or self._stalled >= _MAX_STALLED:
            return []
        self._pending = [self._study.ask(self._dists) for _ in range(n)]
        self.generation += 1
        designs = [
            self._space.design({k: self._value(k, v) for k, v in t.params.items()})
            for t in self._pending
        ]
        new = {d.key for d in designs} - self._seen
        self._stalled = 0 if new else self._stalled + 1
        self._seen |= new
        return designs

    def observe(self, observations: Sequence[Observation]) -> None:
        if len(observations) != len(self._pending):
            raise RuntimeError(
                f"told {len(observations)} outcomes for {len(self._pending)} proposals"
            )
        for trial, obs in zip(self._pending, observations, strict=True):
            self._tell(trial, obs.metrics)
        self._pending = []

    def _tell(self, trial: Any, metrics: dict[str, Any] | None) -> None:
        state = self._optuna.trial.TrialState
        if metrics is None:
            self._study.tell(trial, state=state.FAIL)
            return
        for key, excess in violations(metrics, self._space.constraints).items():
            trial.set_constraint(key, excess)
        self._study.tell(trial, objective_values(metrics, self._space.objectives))

    def replay(self, points: Sequence[Point]) -> None:
        """Add stored points as finished trials, each in the generation that proposed it
        (NSGA-II picks parents per generation; the generation tag is Optuna's own attr)."""
        from optuna.trial import TrialState, create_trial

        key = self._sampler._get_generation_key()
        for pt in points:
            design = Design.of(pt.design)
            attrs = {key: pt.generation}
            if pt.metrics is None:
                trial = create_trial(
                    state=TrialState.FAIL,
                    params=self._params(design),
                    distributions=self._dists,
                    system_attrs=attrs,
                )
            else:
                trial = create_trial(
                    params=self._params(design),
                    distributions=self._dists,
                    values=objective_values(pt.metrics, self._space.objectives),
                    constraints=violations(pt.metrics, self._space.constraints) or None,
                    system_attrs=attrs,
                )
            self._study.add_trial(trial)
        self._seen |= {p.design_key for p in points}
        self.generation = max((p.generation for p in points), default=-1)


def make_strategy(space: DesignSpace) -> Strategy:
    """The strategy `space.search` asks for (trials default to the whole space)."""
    s = space.search
    if s.method == "grid":
        return GridSearch(space)
    trials = s.trials if s.trials is not None else space.size
    if s.method == "random":
        return RandomSearch(space, trials=trials, seed=s.seed)
    if trials >= space.size:  # the budget covers the space: enumerate it, exactly
        return GridSearch(space)
    return Nsga2Search(space, trials=trials, population=s.population, seed=s.seed)
