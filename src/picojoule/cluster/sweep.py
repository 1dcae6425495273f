"""Parallel-plan searches as resumable sweeps on the DSE machinery.

Public: `PlanJob`, `PlanSearch`, `plan_sweep`, `sweep_plans`, `in_memory`, `estimate_dict`,
`rank_plans`.

`picojoule.cluster.plan.search_plans` evaluates every candidate plan in process and keeps the
results in memory. `sweep_plans` evaluates the same candidates (`plan_candidates`, same order)
as a job of `picojoule.dse.runner.run_sweep` instead:
- every plan - its `ParallelPlan` fields, and its estimate (step time, the energy split, memory
  per GPU, MFU, ...) or the reason it was rejected ("does not fit: ...", "invalid: ...") - is
  committed to `DIR/results.sqlite` (`picojoule.dse.results`, the `dse run` store) batch by
  batch, so a Ctrl-C or SIGTERM keeps every finished plan and `resume=True` evaluates only the
  rest;
- results are cached by (plan, `PlanJob.workload_key`, `PlanJob.model_version`): a plan
  evaluated before for the same model, cluster and assumptions by the same planner code is
  reused by any later search in that file, never recomputed;
- the plans run on the local process pool or a Ray cluster (`picojoule.dse.backends`).
Both paths rank plans and mark the Pareto front of (step time, energy per step, memory per
GPU) with `rank_plans` (`picojoule.dse.pareto`), so a stored search and an in-memory one give
the same front.

No torch import here (the DSE package imports its cost model lazily).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from picojoule.cluster.models import TransformerConfig
from picojoule.cluster.plan import (
    Assumptions,
    ParallelPlan,
    SearchResult,
    pareto_front,
    plan_candidates,
    plan_training,
    rejection,
)
from picojoule.cluster.topology import System
from picojoule.errors import ConfigError

if TYPE_CHECKING:  # the runner (numpy, SQLite) loads only when a sweep runs
    from picojoule.dse.backends import Outcome
    from picojoule.dse.runner import ProgressFn, RunSummary, Sweep

__all__ = [
    "PlanJob",
    "PlanSearch",
    "plan_sweep",
    "sweep_plans",
    "in_memory",
    "estimate_dict",
    "rank_plans",
    "OBJECTIVE",
]

OBJECTIVE = "step time"  # progress shows the fastest fitting plan so far, in seconds
_METRIC = "step_time_s"
# Code that decides a plan's numbers: an edit changes `PlanJob.model_version`, so stored
# results are never mixed with numbers from another version of the planner. Preset data
# (models, nodes, links, GPUs) enters `workload_key` by value instead.
_MODEL_CODE = (
    "picojoule.cluster.plan",
    "picojoule.cluster.collectives",
    "picojoule.cluster.topology",
    "picojoule.cluster.models",
    "picojoule.cluster.links",
    "picojoule.cluster.sweep",
    "picojoule.energy",
)


def estimate_dict(obj: Any) -> dict[str, Any]:
    """A training or serving estimate as plain data: its dataclass fields plus the derived
    numbers (mfu, hfu, tokens_per_s, j_per_token, ...; energy total_j in J, memory total in
    bytes per GPU). What `--json` writes and what a stored plan's metrics hold."""
    out = dataclasses.asdict(obj)
    for name in ("mfu", "hfu", "tokens_per_s", "j_per_token", "prefill_j_per_token"):
        if hasattr(obj, name):
            out[name] = getattr(obj, name)
    if "energy" in out:
        out["energy"]["total_j"] = obj.energy.total_j
    if "memory" in out:
        out["memory"]["total"] = obj.memory.total
    return out


def _plain(obj: Any) -> Any:
    """JSON-able form of presets (pydantic models, dataclasses) for hashing."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def _digest(obj: Any) -> str:
    text = json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class PlanJob:
    """The sweep's job (`picojoule.dse.runner.SweepJob`): a picklable function from a plan's
    `ParallelPlan` fields to `(estimate_dict, None)`, or `(None, reason)` for a plan the
    planner refuses (`"does not fit: ..."`, `"invalid: ..."`)."""

    model: TransformerConfig
    system: System
    gpus: int
    assumptions: Assumptions = field(default_factory=Assumptions)

    @property
    def workload_name(self) -> str:
        return f"{self.model.name} on {self.gpus}x {self.system.gpu.name} ({self.system.node.name})"

    @property
    def workload_key(self) -> str:
        """Hash of everything but the plan that the numbers depend on: the model config, the
        resolved node, GPU and links (overrides included), the GPU count, the assumptions."""
        return _digest(
            {
                "model": self.model,
                "system": self.system,
                "gpus": self.gpus,
                "assumptions": self.assumptions,
            }
        )

    @property
    def model_version(self) -> str:
        """`<picojoule version>+<hash of the planner's code>`."""
        import picojoule
        from picojoule.versioning import code_digest

        return f"{picojoule.__version__}+{code_digest(_MODEL_CODE)}"

    def __call__(self, design: dict[str, Any]) -> Outcome:
        plan = ParallelPlan(**design)
        try:
            est = plan_training(self.model, self.system, self.gpus, plan, self.assumptions)
        except ConfigError as e:
            return None, f"{rejection(e)}: {e}"
        return estimate_dict(est), None


@dataclass(frozen=True, kw_only=True)
class PlanSearch:
    """A finished search: every plan that fits (as `estimate_dict`, fastest first), which are
    on the Pareto front, and how many were rejected why. `summary` is set for a stored one."""

    plans: tuple[dict[str, Any], ...]
    front: tuple[bool, ...]
    reasons: dict[str, int]
    candidates: int  # plans enumerated
    summary: RunSummary | None = None

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def front_plans(self) -> list[dict[str, Any]]:
        return [p for p, f in zip(self.plans, self.front, strict=True) if f]


def rank_plans(
    plans: Sequence[dict[str, Any]], order: Sequence[int]
) -> tuple[tuple[dict[str, Any], ...], tuple[bool, ...]]:
    """`plans` sorted by step time (ties: by `order`, their place in the enumeration), and the
    Pareto front of (step time s, energy per step J, memory per GPU bytes) over them."""
    ranked = [p for _, _, p in sorted(zip([p[_METRIC] for p in plans], order, plans,
                                          strict=True), key=lambda t: (t[0], t[1]))]  # fmt: skip
    front = pareto_front(
        [(p[_METRIC], p["energy"]["total_j"], p["memory"]["total"]) for p in ranked]
    )
    return tuple(ranked), tuple(front)


def in_memory(result: SearchResult, candidates: int) -> PlanSearch:
    """A `search_plans` result in the form of a stored one."""
    plans = [estimate_dict(e) for e in result.estimates]
    ranked, front = rank_plans(plans, range(len(plans)))  # already fastest first, stable
    return PlanSearch(plans=ranked, front=front, reasons=dict(result.reasons),
                      candidates=candidates)  # fmt: skip


def plan_sweep(
    model: TransformerConfig,
    system: System,
    gpus: int,
    *,
    global_batch: int,
    seq_len: int = 0,
    base: ParallelPlan | None = None,
    assumptions: Assumptions | None = None,
) -> tuple[Sweep, PlanJob]:
    """The sweep over `plan_candidates` and the job that evaluates it. The run is named by
    what it depends on (model, cluster, assumptions, candidates and planner code), so a
    search with other options gets a run of its own in the same results file."""
    from picojoule.dse.runner import Sweep
    from picojoule.dse.space import Design

    job = PlanJob(model=model, system=system, gpus=gpus, assumptions=assumptions or Assumptions())
    plans = plan_candidates(model, system, gpus, global_batch=global_batch, seq_len=seq_len,
                            base=base)  # fmt: skip
    designs = tuple(Design.of(dataclasses.asdict(q)) for q in plans)
    digest = _digest([job.workload_key, job.model_version, [d.key for d in designs]])
    source = {
        "kind": "cluster plan search",
        "model": model.name,
        "gpus": gpus,
        "node": system.node.name,
        "gpu": system.gpu.name,
        "global_batch": global_batch,
        "seq_len": seq_len,
        "base": dataclasses.asdict(base or ParallelPlan()),
        "assumptions": dataclasses.asdict(job.assumptions),
        "candidates": len(designs),
    }
    sweep = Sweep(
        name=f"plans-{model.name}-{gpus}x{system.gpu.name}-{digest[:8]}",
        digest=digest,
        source=source,
        designs=designs,
        objective=OBJECTIVE,
        metric=_METRIC,
    )
    return sweep, job


def sweep_plans(
    model: TransformerConfig,
    system: System,
    gpus: int,
    *,
    global_batch: int,
    out: str | Path,
    seq_len: int = 0,
    base: ParallelPlan | None = None,
    assumptions: Assumptions | None = None,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> PlanSearch:
    """`search_plans`, evaluated into `out/results.sqlite` by `backend` (see the module
    docstring). Raises `picojoule.dse.runner.RunInterrupted` on SIGINT / SIGTERM (finished
    plans stay stored: call again with `resume=True`)."""
    from picojoule.dse.results import ResultsDB
    from picojoule.dse.runner import run_sweep

    sweep, job = plan_sweep(model, system, gpus, global_batch=global_batch, seq_len=seq_len,
                            base=base, assumptions=assumptions)  # fmt: skip
    summary = run_sweep(sweep, job, out=out, backend=backend, workers=workers, address=address,
                        resume=resume, progress=progress)  # fmt: skip
    with ResultsDB.open(summary.db_path, create=False) as db:
        points = db.points(sweep.name)
    index = {d.key: i for i, d in enumerate(sweep.designs)}
    ok = [(index[p.design_key], p.metrics) for p in points if p.metrics is not None]
    reasons: dict[str, int] = {}
    for p in points:
        if p.metrics is None:
            why = rejection(p.error or "")
            reasons[why] = reasons.get(why, 0) + 1
    ranked, front = rank_plans([m for _, m in ok], [i for i, _ in ok])
    return PlanSearch(plans=ranked, front=front, reasons=reasons, candidates=len(index),
                      summary=summary)  # fmt: skip
