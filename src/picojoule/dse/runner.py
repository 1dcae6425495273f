"""Run a design space: propose, look up, evaluate, commit - until the search is done.

Public: `SweepJob`, `Evaluator`, `Sweep`, `RunSummary`, `RunProgress`, `RunInterrupted`,
`run_space`, `run_sweep`, `feasible`, `check_area_budget`.

Per batch of proposed designs the runner
1. takes what the run already holds (a resumed run) from the store,
2. skips designs over the area budget (area needs no mapping, so this costs microseconds;
   they are not stored, because "over budget" belongs to this run, not to the design),
3. per backend batch, just before sending it: links results any run computed for the same
   workload and cost model, claims the rest (`ResultsDB.claim`, a lease renewed by a
   heartbeat thread) and skips designs another live process has claimed,
4. commits each finished batch, and drops its claims, in one transaction,
5. waits for the designs other processes hold, adopting their results as they commit (or
   taking over the claim of one that died).
A SIGKILL therefore loses only batches still in flight, re-running with `resume=True`
evaluates exactly the designs that are missing, and two `resume` runs split them.

`run_sweep` runs the same loop on any fixed list of points (a `Sweep`) with any picklable
`SweepJob` - the store, the backends, claims, progress and interrupts are not tied to
accelerator designs (`picojoule.cluster.sweep` sweeps parallel training plans with it).

SIGINT and SIGTERM (`picojoule.interrupt`) stop a run at once: batches already finished are
committed, workers are killed rather than awaited, claims are released, and `RunInterrupted`
(a `KeyboardInterrupt`) carries the summary so far.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from picojoule.dse.backends import Backend, Batch, Outcome, batch_size, make_backend
from picojoule.dse.errors import InfeasibleError
from picojoule.dse.results import DB_FILENAME, Point, ResultsDB, RunInfo
from picojoule.dse.search import Observation, Strategy, _ListSearch, make_strategy, violations
from picojoule.dse.space import OBJECTIVES, Constraints, Design, DesignSpace
from picojoule.interrupt import sigterm_as_interrupt
from picojoule.procs import this_process

__all__ = [
    "SweepJob",
    "Evaluator",
    "Sweep",
    "RunSummary",
    "RunProgress",
    "RunInterrupted",
    "run_space",
    "run_sweep",
    "feasible",
    "check_area_budget",
]

LEASE_S = 30.0  # a claim's lease; the heartbeat renews it every third of that
_WAIT_S = 0.25  # poll interval while another process holds designs this run needs

_AREA_SAMPLE = 2000  # designs sampled to test an area budget on spaces too large to enumerate


class SweepJob(Protocol):
    """What the runner needs to evaluate points: a picklable function from a point's
    parameters to `(metrics, error)`, and the identity of what it evaluates them on.

    A stored result is reused for a point with the same parameters only under the same
    `workload_key` (everything else the numbers depend on) and `model_version` (the code)."""

    workload_name: str
    workload_key: str
    model_version: str

    def __call__(self, design: dict[str, Any]) -> Outcome: ...


class Evaluator(SweepJob, Protocol):
    """What the runner needs from a cost model (see `picojoule.dse.evaluate`)."""

    def area_mm2(self, design: dict[str, Any]) -> float: ...


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """A fixed list of points evaluated as one run by `run_sweep`.

    name: the run's id in the results file; digest: identity of what is swept (a resumed run
    with another digest is refused); source: JSON-able description stored with the run;
    designs: the points, in the order they are proposed; objective / metric: the progress
    label and the metrics key whose lowest value progress shows as best so far."""

    name: str
    digest: str
    source: dict[str, Any]
    designs: tuple[Design, ...]
    objective: str
    metric: str


@dataclass(frozen=True, kw_only=True)
class _Goal:
    """What `_Loop` needs to know of a run besides its points: how many it will propose, the
    metric progress reports, the budgets, and the area function (for an area budget)."""

    planned: int
    objective: str
    metric: str
    constraints: Constraints
    area: Callable[[dict[str, Any]], float] | None = None


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    run: RunInfo
    db_path: Path
    evaluated: int  # evaluated by this call
    reused: int  # found in the store (this run resumed, or another run's cache)
    over_budget: int  # proposals skipped for the area budget
    failed: int  # points whose design could not be mapped
    points: int  # points the run holds now


@dataclass(frozen=True, kw_only=True)
class RunProgress:
    """Where a run stands, passed to the `progress` callback after every change."""

    done: int  # designs handled: evaluated, reused, or skipped over the area budget
    planned: int  # designs the search will propose (at least `done`)
    evaluated: int  # evaluated by this call (the rate to estimate time left from)
    objective: str  # the space's first objective ("energy", ...)
    best: float | None  # its lowest metric among points meeting the budgets so far


ProgressFn = Callable[[RunProgress], None]


class RunInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM stopped the run; every finished point is committed (`summary`)."""

    def __init__(self, summary: RunSummary, signum: int) -> None:
        super().__init__(f"run {summary.run.run_id!r} interrupted")
        self.summary = summary
        self.signum = signum


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
    lease_s: float = LEASE_S,
) -> RunSummary:
    """Evaluate `space` into `out/results.sqlite` (see the module docstring).

    Raises `InfeasibleError` when, at the end, no evaluated design meets the budgets (the
    points stay stored, so `picojoule dse show` can still display them), and
    `RunInterrupted` on SIGINT / SIGTERM."""
    with sigterm_as_interrupt():
        return _run_space(
            space, evaluator, Path(out), (backend, workers, address), resume, progress, lease_s
        )


def _run_space(
    space: DesignSpace,
    evaluator: Evaluator,
    out_dir: Path,
    backend_args: tuple[str, int | None, str | None],
    resume: bool,
    progress: ProgressFn | None,
    lease_s: float,
) -> RunSummary:
    check_area_budget(space, evaluator)
    s = space.search
    goal = _Goal(
        planned=space.size if s.method == "grid" else min(s.trials or 0, space.size),
        objective=space.objectives[0],
        metric=OBJECTIVES[space.objectives[0]],
        constraints=space.constraints,
        area=evaluator.area_mm2,
    )
    info = _run_info(space.name, space.digest, space.source, evaluator)
    summary, points = _execute(
        out_dir,
        info,
        evaluator,
        lambda: make_strategy(space),
        goal,
        backend_args,
        resume,
        progress,
        lease_s,
    )
    _check_feasible(space, points)
    return summary


def run_sweep(
    sweep: Sweep,
    job: SweepJob,
    *,
    out: str | Path,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
    lease_s: float = LEASE_S,
) -> RunSummary:
    """Evaluate every point of `sweep` with `job` into `out/results.sqlite`, as `run_space`
    does a grid: resumable, cached by (point, `job.workload_key`, `job.model_version`),
    claims shared with concurrent `resume` runs, `RunInterrupted` on SIGINT / SIGTERM.

    Points `job` cannot evaluate are stored with their error; no feasibility check is made
    (the caller reads the points back with `ResultsDB.points(sweep.name)`)."""
    goal = _Goal(
        planned=len({d.key for d in sweep.designs}),
        objective=sweep.objective,
        metric=sweep.metric,
        constraints=Constraints(),
    )
    info = _run_info(sweep.name, sweep.digest, sweep.source, job)
    with sigterm_as_interrupt():
        summary, _ = _execute(
            Path(out),
            info,
            job,
            lambda: _ListSearch(iter(sweep.designs)),
            goal,
            (backend, workers, address),
            resume,
            progress,
            lease_s,
        )
    return summary


def _run_info(name: str, digest: str, source: dict[str, Any], job: SweepJob) -> RunInfo:
    return RunInfo(
        run_id=name,
        space_digest=digest,
        space=source,
        workload=job.workload_name,
        workload_key=job.workload_key,
        model_version=job.model_version,
    )


def _execute(
    out_dir: Path,
    info: RunInfo,
    job: SweepJob,
    strategy_of: Callable[[], Strategy],
    goal: _Goal,
    backend_args: tuple[str, int | None, str | None],
    resume: bool,
    progress: ProgressFn | None,
    lease_s: float,
) -> tuple[RunSummary, list[Point]]:
    """Start (or resume) the run in `out_dir`, drive its strategy to the end; the summary
    and every point the run holds."""
    with ResultsDB.open(out_dir / DB_FILENAME) as db:
        run = db.start_run(info, resume=resume)
        strategy = strategy_of()
        held = {p.design_key: p for p in db.points(run.run_id)}
        if held:
            strategy.replay(list(held.values()))
        loop = _Loop(goal, job, db, run, held, backend_args, progress, lease_s)
        try:
            loop.drive(strategy)
        except KeyboardInterrupt as e:
            loop.stop()
            points = db.points(run.run_id)
            raise RunInterrupted(
                _summary(loop, run, out_dir, points), int(getattr(e, "signum", 2))
            ) from None
        finally:
            loop.close()
        points = db.points(run.run_id)
    return _summary(loop, run, out_dir, points), points


def _summary(loop: _Loop, run: RunInfo, out_dir: Path, points: Sequence[Point]) -> RunSummary:
    return RunSummary(
        run=run,
        db_path=out_dir / DB_FILENAME,
        evaluated=loop.evaluated,
        reused=loop.reused,
        over_budget=loop.over_budget,
        failed=sum(1 for p in points if p.metrics is None),
        points=len(points),
    )


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


class _Heartbeat:
    """Renews this process's claims on a run every `lease_s / 3`, on its own connection (the
    main thread may be inside a long batch when the lease would run out)."""

    def __init__(self, db: ResultsDB, run_id: str, lease_s: float) -> None:
        self._stop = threading.Event()
        self._args = (db, run_id, lease_s)
        self._thread = threading.Thread(target=self._beat, name="picojoule-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        first, run_id, lease_s = self._args
        me = this_process()
        with first.another() as db:  # sqlite3 connections belong to the thread that made them
            while not self._stop.wait(lease_s / 3):
                db.renew(run_id, me, lease_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


class _Loop:
    """The propose / claim / evaluate / commit loop of one `run_space` call."""

    def __init__(
        self,
        goal: _Goal,
        evaluator: SweepJob,
        db: ResultsDB,
        run: RunInfo,
        held: dict[str, Point],
        backend_args: tuple[str, int | None, str | None],
        progress: ProgressFn | None,
        lease_s: float,
    ) -> None:
        self.goal, self.evaluator, self.db, self.run, self.held = goal, evaluator, db, run, held
        self._backend_args = backend_args
        self._backend: Backend | None = None  # started on first need: a cached run starts none
        self._progress = progress
        self._lease_s = lease_s
        self._me = this_process()
        self._heartbeat: _Heartbeat | None = None
        self._sent: dict[str, tuple[Design, int]] = {}  # in flight: key -> (design, generation)
        self.evaluated = self.reused = self.over_budget = 0
        self._handled = 0
        self._objective = goal.objective
        self._best: float | None = None
        for p in held.values():
            self._consider(p.metrics)

    def _planned(self) -> int:
        return self.goal.planned

    def _consider(self, metrics: dict[str, Any] | None) -> None:
        if metrics is None or any(
            v > 0 for v in violations(metrics, self.goal.constraints).values()
        ):
            return
        value = float(metrics[self.goal.metric])
        if self._best is None or value < self._best:
            self._best = value

    def _tick(self, n: int) -> None:
        self._handled += n
        if self._progress is not None:
            self._progress(
                RunProgress(
                    done=self._handled,
                    planned=max(self._planned(), self._handled),
                    evaluated=self.evaluated,
                    objective=self._objective,
                    best=self._best,
                )
            )

    def backend(self) -> Backend:
        if self._backend is None:
            kind, workers, address = self._backend_args
            self._backend = make_backend(kind, self.evaluator, workers=workers, address=address)
        return self._backend

    def _workers(self) -> int:
        if self._backend is not None:
            return self._backend.workers
        return max(1, self._backend_args[1] or os.cpu_count() or 1)

    def stop(self) -> None:
        """After an interrupt: commit batches that finished but were not consumed, and stop
        the workers without waiting for the batches they run."""
        if self._backend is not None:
            for results in self._backend.drain():
                self._commit(results)
            self._backend.close(now=True)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self.db.release(self.run.run_id, self._me)

    def drive(self, strategy: Strategy) -> None:
        while designs := strategy.propose():
            metrics = self._batch(designs, strategy.generation)
            strategy.observe([Observation(design=d, metrics=metrics.get(d.key)) for d in designs])

    def _batch(self, designs: list[Design], generation: int) -> dict[str, dict[str, Any] | None]:
        """Metrics (None: unevaluable or over budget) for every design of one proposal."""
        found: dict[str, dict[str, Any] | None] = {}
        todo: dict[str, Design] = {}
        budget = self.goal.constraints.area_mm2
        area = self.goal.area
        for d in designs:
            key = d.key
            if key in found or key in todo:
                continue
            if key in self.held:
                found[key] = self.held[key].metrics
                self.reused += 1
            elif budget is not None and area is not None and area(d.as_dict()) > budget:
                found[key] = None
                self.over_budget += 1
            else:
                todo[key] = d
        self._tick(len(found))
        while todo:
            busy = self._evaluate(todo, generation)
            for k in list(todo):
                if k in self.held:
                    found[k] = self.held[k].metrics
            todo = {k: todo[k] for k in busy}
            if todo:  # another live process holds these: wait for its commits (or its death)
                time.sleep(_WAIT_S)
        return found

    def _evaluate(self, todo: dict[str, Design], generation: int) -> list[str]:
        """Evaluate (or adopt) what can be claimed of `todo`; returns the keys other live
        processes hold."""
        busy: list[str] = []
        feed = self._claims(todo, generation, busy)
        first = next(feed, None)
        if first is not None:  # something to evaluate: only now start the backend
            for results in self.backend().run_batches(_chain(first, feed)):
                self._commit(results)
        return busy

    def _claims(self, todo: dict[str, Design], generation: int, busy: list[str]) -> Iterator[Batch]:
        """Batches of `todo` this process claimed, each claimed just before it is sent."""
        keys = list(todo)
        i = 0
        while i < len(keys):
            size = batch_size(len(keys), self._workers())
            chunk, i = keys[i : i + size], i + size
            got = self.db.claim(
                self.run, chunk, holder=self._me, lease_s=self._lease_s, generation=generation
            )
            if got.cached:
                for p in self.db.points(self.run.run_id, got.cached):
                    self.held[p.design_key] = p
                    self._consider(p.metrics)
                self.reused += len(got.cached)
                self._tick(len(got.cached))
            busy += got.busy
            if got.mine:
                if self._heartbeat is None:
                    self._heartbeat = _Heartbeat(self.db, self.run.run_id, self._lease_s)
                for k in got.mine:
                    self._sent[k] = (todo[k], generation)
                yield [(k, todo[k].as_dict()) for k in got.mine]

    def _commit(self, results: list[tuple[str, Outcome]]) -> None:
        by_generation: dict[int, list[tuple[str, Outcome]]] = {}
        for k, outcome in results:
            by_generation.setdefault(self._sent[k][1], []).append((k, outcome))
        for generation, items in by_generation.items():
            self.db.record(
                self.run,
                [(k, self._sent[k][0].as_dict(), m, e) for k, (m, e) in items],
                generation=generation,
            )
        for k, (m, e) in results:
            design, generation = self._sent.pop(k)
            self.held[k] = Point(
                design_key=k,
                design=design.as_dict(),
                metrics=m,
                error=e,
                seq=-1,
                generation=generation,
            )
            self._consider(m)
        self.evaluated += len(results)
        self._tick(len(results))


def _chain(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield from rest
