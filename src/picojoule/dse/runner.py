"""Run a design space: propose, look up, evaluate, commit - until the search is done.

Public: `Evaluator`, `RunSummary`, `run_space`, `feasible`.

Per batch of proposed designs the runner
1. takes what the run already holds (a resumed run) from the store,
2. skips designs over the area budget (area needs no mapping, so this costs microseconds;
   they are not stored, because "over budget" belongs to this run, not to the design),
3. links results other runs computed for the same workload and cost model,
4. sends the rest to the backend and commits each finished batch in one transaction.
A SIGKILL therefore loses only batches still in flight, and re-running with `resume=True`
evaluates exactly the designs that are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from picojoule.dse.backends import Backend, Outcome, make_backend
from picojoule.dse.errors import InfeasibleError
from picojoule.dse.results import DB_FILENAME, Point, ResultsDB, RunInfo
from picojoule.dse.search import Observation, Strategy, make_strategy, violations
from picojoule.dse.space import Constraints, Design, DesignSpace

__all__ = ["Evaluator", "RunSummary", "run_space", "feasible", "check_area_budget"]

_AREA_SAMPLE = 2000  # designs sampled to test an area budget on spaces too large to enumerate


class Evaluator(Protocol):
    """What the runner needs from a cost model (see `picojoule.dse.evaluate`)."""

    workload_name: str
    workload_key: str
    model_version: str

    def __call__(self, design: dict[str, Any]) -> Outcome: ...

    def area_mm2(self, design: dict[str, Any]) -> float: ...


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    run: RunInfo
    db_path: Path
    evaluated: int  # evaluated by this call
    reused: int  # found in the store (this run resumed, or another run's cache)
    over_budget: int  # proposals skipped for the area budget
    failed: int  # points whose design could not be mapped
    points: int  # points the run holds now


ProgressFn = Callable[[int, int], None]  # (designs handled, designs planned)


def feasible(points: Sequence[Point], constraints: Constraints) -> list[Point]:
    """Evaluated points that meet every budget."""
    return [
        p
        for p in points
        if p.metrics is not None
        and all(v <= 0 for v in violations(p.metrics, constraints).values())
    ]


def check_area_budget(space: DesignSpace, evaluator: Evaluator) -> None:
    """Refuse a run whose area budget no design of the space meets, before evaluating any.

    Exact on spaces up to `_AREA_SAMPLE` designs, a uniform sample beyond."""
    budget = space.constraints.area_mm2
    if budget is None:
        return
    if space.size <= _AREA_SAMPLE:
        designs = list(space.grid())
        scope = f"all {len(designs)} designs"
    else:
        rng = np.random.default_rng(space.search.seed)
        designs = [
            space.design(
                {p.name: p.values[int(rng.integers(len(p.values)))] for p in space.parameters}
            )
            for _ in range(_AREA_SAMPLE)
        ]
        scope = f"{_AREA_SAMPLE} sampled designs (of {space.size:,})"
    areas = [evaluator.area_mm2(d.as_dict()) for d in designs]
    best = int(np.argmin(areas))
    if areas[best] > budget:
        raise InfeasibleError(
            f"no design meets the area budget of {budget:g} mm^2: the smallest of {scope} "
            f"takes {areas[best]:.3g} mm^2 ({_short(designs[best])}); raise "
            "constraints.area_mm2 or shrink the buffers / PE array in the space"
        )


def _short(design: Design) -> str:
    return ", ".join(f"{k}={v}" for k, v in design.params)


def run_space(
    space: DesignSpace,
    evaluator: Evaluator,
    *,
    out: str | Path,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> RunSummary:
    """Evaluate `space` into `out/results.sqlite` (see the module docstring).

    Raises `InfeasibleError` when, at the end, no evaluated design meets the budgets (the
    points stay stored, so `picojoule dse show` can still display them)."""
    out_dir = Path(out)
    check_area_budget(space, evaluator)
    with ResultsDB.open(out_dir / DB_FILENAME) as db:
        info = RunInfo(
            run_id=space.name,
            space_digest=space.digest,
            space=space.source,
            workload=evaluator.workload_name,
            workload_key=evaluator.workload_key,
            model_version=evaluator.model_version,
        )
        run = db.start_run(info, resume=resume)
        strategy = make_strategy(space)
        held = {p.design_key: p for p in db.points(run.run_id)}
        if held:
            strategy.replay(list(held.values()))
        loop = _Loop(space, evaluator, db, run, held, backend, workers, address, progress)
        try:
            loop.drive(strategy)
        finally:
            loop.close()
        points = db.points(run.run_id)
    summary = RunSummary(
        run=run,
        db_path=out_dir / DB_FILENAME,
        evaluated=loop.evaluated,
        reused=loop.reused,
        over_budget=loop.over_budget,
        failed=sum(1 for p in points if p.metrics is None),
        points=len(points),
    )
    _check_feasible(space, points)
    return summary


def _check_feasible(space: DesignSpace, points: Sequence[Point]) -> None:
    ok = [p for p in points if p.metrics is not None]
    if not ok:
        first = next((p.error for p in points if p.error), "no design was evaluated")
        raise InfeasibleError(
            f"no design of {space.name!r} could be evaluated; first error: {first}"
        )
    if feasible(ok, space.constraints):
        return
    c = space.constraints
    parts = []
    if c.area_mm2 is not None:
        parts.append(
            f"area <= {c.area_mm2:g} mm^2 (best {min(p.metrics['area_mm2'] for p in ok):.3g})"
        )
    if c.power_w is not None:
        parts.append(f"power <= {c.power_w:g} W (best {min(p.metrics['power_w'] for p in ok):.3g})")
    raise InfeasibleError(
        f"none of the {len(ok)} evaluated designs meets " + " and ".join(parts) + "; the "
        "points are stored: relax the constraints and run the space again under a new name "
        "with the same --out, and every design evaluated so far is reused, not recomputed"
    )


class _Loop:
    """The propose / look up / evaluate / commit loop of one `run_space` call."""

    def __init__(
        self,
        space: DesignSpace,
        evaluator: Evaluator,
        db: ResultsDB,
        run: RunInfo,
        held: dict[str, Point],
        backend: str,
        workers: int | None,
        address: str | None,
        progress: ProgressFn | None,
    ) -> None:
        self.space, self.evaluator, self.db, self.run, self.held = space, evaluator, db, run, held
        self._backend_args = (backend, workers, address)
        self._backend: Backend | None = None  # started on first need: a cached run starts none
        self._progress = progress
        self.evaluated = self.reused = self.over_budget = 0
        self._handled = 0

    def _planned(self) -> int:
        s = self.space.search
        return self.space.size if s.method == "grid" else min(s.trials or 0, self.space.size)

    def _tick(self, n: int) -> None:
        self._handled += n
        if self._progress is not None:
            self._progress(self._handled, max(self._planned(), self._handled))

    def backend(self) -> Backend:
        if self._backend is None:
            kind, workers, address = self._backend_args
            self._backend = make_backend(kind, self.evaluator, workers=workers, address=address)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    def drive(self, strategy: Strategy) -> None:
        while designs := strategy.propose():
            metrics = self._batch(designs, strategy.generation)
            strategy.observe([Observation(design=d, metrics=metrics.get(d.key)) for d in designs])

    def _batch(self, designs: list[Design], generation: int) -> dict[str, dict[str, Any] | None]:
        """Metrics (None: unevaluable or over budget) for every design of one proposal."""
        found: dict[str, dict[str, Any] | None] = {}
        todo: dict[str, Design] = {}
        budget = self.space.constraints.area_mm2
        for d in designs:
            key = d.key
            if key in found or key in todo:
                continue
            if key in self.held:
                found[key] = self.held[key].metrics
                self.reused += 1
            elif budget is not None and self.evaluator.area_mm2(d.as_dict()) > budget:
                found[key] = None
                self.over_budget += 1
            else:
                todo[key] = d
        self._tick(len(found))
        if todo:
            cached = self.db.adopt_cached(self.run, todo, generation=generation)
            for p in self.db.points(self.run.run_id, cached):
                self.held[p.design_key] = p
                found[p.design_key] = p.metrics
                todo.pop(p.design_key)
            self.reused += len(cached)
            self._tick(len(cached))
        if todo:
            items = [(k, d.as_dict()) for k, d in todo.items()]
            for results in self.backend().run(items):
                self.db.record(
                    self.run,
                    [(k, todo[k].as_dict(), m, e) for k, (m, e) in results],
                    generation=generation,
                )
                for k, (m, e) in results:
                    found[k] = m
                    self.held[k] = Point(
                        design_key=k,
                        design=todo[k].as_dict(),
                        metrics=m,
                        error=e,
                        seq=-1,
                        generation=generation,
                    )
                self.evaluated += len(results)
                self._tick(len(results))
        return found
