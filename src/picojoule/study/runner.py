"""The main job: recipes x model -> accuracy, bits, bytes, energy, latency, per layer.

`run(task, recipes, target=..., cache=...)` applies each recipe's levers to a fresh copy of the
FP32 model in a fixed order (Winograd, then sparsity masks, then quantization, then optional
fine-tuning), evaluates it once, and costs it on each target (an accelerator, a GPU, or several
to compare). Each finished recipe is written to the SQLite cache at once, so an interrupted
study resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.study.recipes import Recipe, check_recipes
from picojoule.study.store import ResultCache
from picojoule.study.tasks import Task, fingerprint

__all__ = [
    "RecipeResult",
    "StudyResult",
    "run",
    "apply_recipe",
    "skipped_result",
    "NoLayerError",
    "ALGORITHM_BATCHES",
]

# calibration batches for GPTQ/AWQ/SmoothQuant/SparseGPT (an LM task's are windows of --seq-len
# tokens: 16 x 512 = 8,192 tokens, 5x the widest Hessian's 1,536 columns). GPTQ's reference uses
# 128 x 2048 tokens, AWQ's 128 x 512; this keeps a calibration within minutes on 2 cores.
ALGORITHM_BATCHES = 16

RESULT_VERSION = 7  # bump when what a recipe result holds changes (invalidates cached rows)
# Everything that shapes a recipe's numbers: a change in any of them invalidates cached rows.
# (The report's rendering is not among them: re-rendering needs no recomputation.)
_RESULT_CODE = ("picojoule.formats", "picojoule.quant", "picojoule.sparsity", "picojoule.winograd",
                "picojoule.workload", "picojoule.arch", "picojoule.mapping", "picojoule.energy",
                "picojoule.models", "picojoule.study.runner", "picojoule.study.cost",
                "picojoule.study.targets", "picojoule.study.tasks", "picojoule.lm")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RecipeResult:
    recipe: Recipe
    metrics: dict[str, float]
    bits_per_weight: float
    model_bytes: int
    layers: list[dict[str, Any]]
    sparsity: list[dict[str, Any]]
    costs: dict[str, dict[str, Any]]  # target name -> its bill, in the study's target order
    applied: dict[str, list[str]]
    seconds: float
    # rotate:/smooth:/wcal: - wall time per step (s), online rotations, what each step did
    algorithms: dict[str, Any] = field(default_factory=dict)
    # "ok", or "skipped": a lever of the recipe applies to no layer of the model (never the
    # baseline); `skip_reason` says which and why, and the numbers above are empty
    status: str = "ok"
    skip_reason: str = ""
    cached: bool = False

    @property
    def cost(self) -> dict[str, Any]:
        """The bill on the study's first target ({} for a skipped recipe)."""
        return next(iter(self.costs.values()), {})

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        d = {k: v for k, v in self.__dict__.items() if k not in ("recipe", "cached")}
        d["recipe"] = asdict(self.recipe)
        return d


@dataclass(frozen=True, kw_only=True)
class StudyResult:
    task: str
    primary_metric: str
    unit: str
    targets: tuple[str, ...]
    model_version: str
    results: list[RecipeResult]
    baseline: RecipeResult | None = field(default=None)
    higher_is_better: bool = True  # False for perplexity (and a user's loss)
    notes: tuple[str, ...] = ()  # what the task says about its model and data (report)
    # which data scored every row, in words; held_out False: the batches that also calibrate
    # and fine-tune (a user model without --eval), so fine-tuned rows scored their training data
    scored_on: str = ""
    held_out: bool = True
    # "difference" (metric - baseline) or "ratio" (metric / baseline); "" = by orientation:
    # a difference where higher is better, a ratio where lower is (perplexity)
    delta_kind: str = ""
    # How tables name each target (an accelerator YAML by its spec's name); () = as given
    target_labels: tuple[str, ...] = ()

    def label(self, target: str) -> str:
        """The display name of `target` (one of `targets`)."""
        if self.target_labels and target in self.targets:
            return self.target_labels[self.targets.index(target)]
        return target

    @property
    def ratio(self) -> bool:
        return (self.delta_kind or ("difference" if self.higher_is_better else "ratio")) == "ratio"

    def scored_on_training_data(self, r: RecipeResult) -> bool:
        """The row fine-tuned on the very batches that scored it (no held-out data)."""
        return not self.held_out and not r.skipped and r.recipe.finetune_steps > 0

    @property
    def target(self) -> str:
        """The first target: the one the plots and the Pareto front use."""
        return self.targets[0]

    @property
    def ran(self) -> list[RecipeResult]:
        """The recipes that ran (not skipped), in order."""
        return [r for r in self.results if not r.skipped]

    @property
    def skipped(self) -> list[RecipeResult]:
        """The recipes skipped because a lever of theirs applies to no layer of the model."""
        return [r for r in self.results if r.skipped]

    def delta(self, r: RecipeResult) -> float:
        """Change of the primary metric vs the baseline: a difference where higher is better
        (accuracy points), a ratio where lower is (perplexity x1.05). NaN for a skipped
        recipe."""
        if self.baseline is None or r.skipped:
            return float("nan")
        m, base = r.metrics[self.primary_metric], self.baseline.metrics[self.primary_metric]
        if not self.ratio:
            return m - base
        return m / base if base else float("nan")

    def delta_text(self, r: RecipeResult) -> str:
        if r.skipped:
            return ""
        if r.recipe.is_baseline:
            return "-"
        d = self.delta(r)
        return f"x{d:.4g}" if self.ratio else f"{d:+.3g}"

    def score(self, r: RecipeResult) -> float:
        """The primary metric oriented so that higher is better (Pareto fronts)."""
        m = r.metrics[self.primary_metric]
        return m if self.higher_is_better else -m


def apply_recipe(
    model: nn.Module, recipe: Recipe, task: Task, algorithms: dict[str, Any] | None = None
) -> dict[str, list[str]]:
    """Apply the recipe's levers in place; returns what each lever did per layer.

    algorithms: filled with the calibration algorithms' wall times (s) and online rotations
    when the recipe has rotate:/smooth:/wcal: keys."""
    done: dict[str, list[str]] = {}
    if recipe.winograd:
        from picojoule.winograd import winogradize_

        recs = winogradize_(model, tile=recipe.winograd)
        done["winograd"] = _summarise(recs, recipe, "winograd")
    if recipe.sparsity:
        from picojoule.sparsity import sparsify_
        from picojoule.sparsity.recipe import parse_recipe as parse_sparsity

        recs = sparsify_(model, recipe.sparsity)
        done["sparsity"] = _summarise(recs, recipe, "sparsity")
        if parse_sparsity(recipe.sparsity).method == "sparsegpt":
            from picojoule.sparsity.calibrated import sparsegpt_

            t0 = time.perf_counter()
            batches = task.calibration_batches(ALGORITHM_BATCHES)
            done["algorithms"] = sparsegpt_(model, batches)
            if algorithms is not None:
                algorithms.setdefault("seconds", {})["sparsegpt"] = time.perf_counter() - t0
                algorithms["calibration_batches"] = len(batches)
    if recipe.quant:
        from picojoule.quant import calibrate, quantize_
        from picojoule.quant.algorithms import apply_algorithms_, needs_algorithms
        from picojoule.quant.recipe import parse_recipe

        overrides = getattr(task, "quant_overrides", None)
        if needs_algorithms(parse_recipe(recipe.quant, overrides)):
            batches = task.calibration_batches(ALGORITHM_BATCHES)
            rep = apply_algorithms_(model, recipe.quant, batches, overrides=overrides)
            done["quant"] = _summarise(rep.applied, recipe, "quant")
            done["algorithms"] = [*done.get("algorithms", []), *rep.lines]
            if algorithms is not None:
                algorithms.setdefault("seconds", {}).update(rep.seconds)
                algorithms["online"] = [r.to_dict() for r in rep.online]
                algorithms["calibration_batches"] = len(batches)
        else:
            recs = quantize_(model, recipe.quant, overrides=overrides)
            done["quant"] = _summarise(recs, recipe, "quant")
        calibrate(model, task.calibration_batches(4))
    if recipe.finetune_steps:
        batches = getattr(task, "train_batches", lambda: None)()
        if batches is None:
            raise ConfigError(
                f"recipe {recipe.name!r} fine-tunes, but task {task.name} has no training data"
            )
        from picojoule.sparsity import finetune

        loss_fn = getattr(task, "loss_fn", None)  # tasks without one train on cross-entropy
        kw = {"loss_fn": loss_fn} if loss_fn is not None else {}
        finetune(model, batches, recipe.finetune_steps, recipe.finetune_lr, **kw)
        model.eval()
    return done


class NoLayerError(ConfigError):
    """A recipe's lever applied to no layer (`lever`, the per-layer `lines`). `run` checks
    every recipe before it starts (`picojoule.study.reach`) and skips such recipes; this is
    what `apply_recipe` raises when called directly, and what a study turns into a skipped
    row should a lever still find nothing."""

    def __init__(self, message: str, lever: str, lines: list[str]) -> None:
        super().__init__(message)
        self.lever = lever
        self.lines = lines


def _summarise(recs: Sequence, recipe: Recipe, lever: str) -> list[str]:
    lines = [f"{r.name}: {r.action or 'skipped: ' + r.reason}" for r in recs]
    if not any(not r.skipped for r in recs):
        raise NoLayerError(
            f"recipe {recipe.name!r}: its {lever} setting applies to no layer of the model "
            f"({'; '.join(lines[:4]) or 'no eligible layers'})",
            lever,
            lines,
        )
    return lines


def skipped_result(
    recipe: Recipe, reason: str, applied: dict[str, list[str]], targets: Sequence[str]
) -> RecipeResult:
    """The row of a recipe that did not run: `reason` (one line) and what each lever would
    have done per layer; no metrics, no bytes, an empty bill on every target."""
    return RecipeResult(
        recipe=recipe, metrics={}, bits_per_weight=float("nan"), model_bytes=0, layers=[],
        sparsity=[], costs={t: {} for t in targets}, applied=applied, seconds=0.0,
        status="skipped", skip_reason=reason,
    )  # fmt: skip


def _skips(
    model: nn.Module, recipes: Sequence[Recipe], task: Task, targets: Sequence[str]
) -> dict[str, RecipeResult]:
    """recipe name -> its skipped row, for each recipe a lever of which reaches no layer of
    `model` (changed only by `expose_layers_`, as every recipe's copy is)."""
    from picojoule.quant import expose_layers_
    from picojoule.study.reach import misses

    if all(r.is_baseline for r in recipes):
        return {}
    expose_layers_(model)
    overrides = getattr(task, "quant_overrides", None)
    out = {}
    for r in recipes:
        found = misses(model, r, overrides)
        if found:
            applied: dict[str, list[str]] = {}
            for m in found:
                applied.setdefault(m.lever, []).extend(m.lines)
            out[r.name] = skipped_result(r, "; ".join(m.why for m in found), applied, targets)
    return out


def _weights_summary(model: nn.Module) -> tuple[float, int, list[dict[str, Any]]]:
    """Bits per weight (parameter-weighted) and exact bytes as stored of the Linear/Conv
    layers' weights (their format with every scale, in the smallest sparse layout when a mask
    pruned it) and biases (FP32). Embeddings and normalization parameters are not counted."""
    from picojoule.formats import ScaledFormat
    from picojoule.quant import report as quant_report
    from picojoule.quant.api import weight_format_of
    from picojoule.quant.modules import reduction_last
    from picojoule.sparsity import mask_of

    rows = [r.to_dict() for r in quant_report(model)]
    total_bits = 0.0
    n_weights = 0
    layer_modules = dict(model.named_modules())
    for row in rows:
        m = layer_modules[row["name"]]
        w = reduction_last(m.weight.detach(), "weight")
        n = w.numel()
        fmt = weight_format_of(m)
        if isinstance(fmt, ScaledFormat):
            bits = float(fmt.storage_bits(tuple(w.shape)))
        elif fmt is not None:
            bits = fmt.bits_per_element * n
        else:
            bits = w.element_size() * 8.0 * n
        mask = mask_of(m)
        row["density"] = float(mask.mask.float().mean()) if mask is not None else 1.0
        row["layout"] = "dense"
        if mask is not None:
            row["layout"], sparse_bits = _sparse_storage_bits(w, mask.pattern, bits / n)
            bits = min(bits, sparse_bits)
        row["params"] = n
        row["stored_bits"] = bits
        total_bits += bits
        n_weights += n
    for row in rows:  # each layer's own bias, in FP32; a LayerNorm's is not a layer's
        bias = getattr(layer_modules[row["name"]], "bias", None)
        if isinstance(bias, torch.Tensor):
            total_bits += bias.numel() * 32
    bpw = total_bits / n_weights if n_weights else float("nan")
    return bpw, math.ceil(total_bits / 8), rows


def _sparse_storage_bits(w: torch.Tensor, pattern: str, value_bits: float) -> tuple[str, float]:
    """Smallest compressed layout of a pruned weight (N:M values + indices, else CSR or
    bitmask; `picojoule.sparsity.storage`), with values at the layer's bits per element."""
    from picojoule.sparsity import parse_pattern, storage

    nm = parse_pattern(pattern)
    layouts = [pattern] if nm.kind == "nm" else ["csr", "bitmask"]
    best = min((storage(lay, w, "fp32") for lay in layouts), key=lambda s: s.total_bytes)
    # storage() priced values at 32 bits; re-price them at the layer's own width
    kept = best.values_bytes * 8 / 32
    return best.layout, kept * value_bits + best.metadata_bytes * 8


def _evaluate_recipe(
    task: Task, recipe: Recipe, targets: Sequence[str], measured: dict | None
) -> RecipeResult:
    from picojoule.quant import expose_layers_
    from picojoule.study.cost import recipe_costs

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = task.model()
    # Every recipe, the baseline too: nn.MultiheadAttention's projections and products, and
    # GPT-2-style Conv1D projections, become modules and calls that levers and costs reach.
    exposed = expose_layers_(model)
    algorithms: dict[str, Any] = {}
    try:
        applied = apply_recipe(model, recipe, task, algorithms)
    except NoLayerError as e:  # what `reach` did not foresee: a skipped row, not a failure
        from picojoule.study.reach import headline

        why = headline(e.lever, recipe, e.lines)
        return skipped_result(recipe, why, {e.lever: e.lines}, targets)
    if exposed:
        applied = {"exposed": [f"{r.name}: {r.action or r.reason}" for r in exposed], **applied}
    model.eval()
    # fake-quantized weights are fixed from here on: round each once, not on every forward
    with torch.nn.utils.parametrize.cached():
        metrics = task.evaluate(model)
    bpw, nbytes, layers = _weights_summary(model)
    from picojoule.sparsity import report as sparsity_report
    from picojoule.sparsity import to_dict as sparsity_dict

    example = task.example_input()
    sp_rows = sparsity_report(
        model, example_input=example if isinstance(example, torch.Tensor) else None
    )
    phases = getattr(task, "phases", None)
    with torch.nn.utils.parametrize.cached():
        if phases is not None:  # a causal LM: prefill and decode, per token and per request
            from picojoule.lm.phases import lm_costs

            costs = lm_costs(model, targets, phases, measured)
        else:
            costs = recipe_costs(model, example, targets, measured)
    return RecipeResult(
        recipe=recipe,
        metrics=metrics,
        bits_per_weight=bpw,
        model_bytes=nbytes,
        layers=layers,
        sparsity=sparsity_dict(sp_rows)["layers"],  # type: ignore[index]
        costs=costs,
        applied=applied,
        seconds=time.perf_counter() - t0,
        algorithms=algorithms,
    )


def _targets(target: str | Sequence[str]) -> tuple[str, ...]:
    names = (target,) if isinstance(target, str) else tuple(target)
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not names:
        raise ConfigError("no target to cost the recipes on; give --target eyeriss (or several)")
    return names


def _measured_for(measured: Path | None, targets: tuple[str, ...]) -> dict | None:
    """The `picojoule bench gpu` run for the one target GPU it was taken on."""
    if not measured:
        return None
    from picojoule.study.targets import gpu_names, load_measured

    gpus = [t for t in targets if t in gpu_names()]
    if not gpus:
        raise ConfigError(
            f"--measured holds GPU measurements; none of the targets ({', '.join(targets)}) "
            "is a GPU"
        )
    errors = []
    for t in gpus:
        try:
            return {**load_measured(measured, t), "target": t}
        except ConfigError as e:  # taken on another GPU: try the next target
            errors.append(str(e))
    raise ConfigError(errors[-1])


def _factory_of(task: Task) -> Callable[[], Task]:
    """What builds `task` again in a Ray worker, without its model: the digits task's class,
    MiniLM's with its directory, a user task's callables (its built model dropped)."""
    import dataclasses
    import functools

    from picojoule.study.tasks import DigitsTask, MiniLMStudyTask, UserTask

    if type(task) is DigitsTask:
        return DigitsTask
    if type(task) is MiniLMStudyTask:
        return functools.partial(MiniLMStudyTask, task._task.model_dir)
    if type(task) is UserTask:
        return functools.partial(dataclasses.replace, dataclasses.replace(task, _model=None))
    raise ConfigError(
        f"backend 'ray' needs to rebuild task {getattr(task, 'name', type(task).__name__)!r} "
        "in each worker: pass factory=picojoule.study.tasks.task_factory(...) (or any "
        "picklable function that builds it)"
    )


def _run_on_ray(
    factory: Callable[[], Task],
    version: str,
    recipes: Sequence[Recipe],
    targets: tuple[str, ...],
    gpu_runs: dict | None,
    store: ResultCache | None,
    study_key: str,
    progress: Callable[[str, int, int], None] | None,
    address: str | None,
) -> list[RecipeResult]:
    """The cached recipes from `store`, the others from Ray, each written to `store` as it
    arrives (an interrupted run keeps them); returned in recipe order."""
    import contextlib
    import dataclasses

    from picojoule.study.backends import ray_results

    n = len(recipes)
    found: list[RecipeResult | None] = [None] * n
    for i, recipe in enumerate(recipes):
        hit = store.get(study_key, recipe.key()) if store else None
        if hit is not None:
            hit.pop("recipe", None)
            found[i] = RecipeResult(recipe=recipe, cached=True, **hit)
    missing = [i for i, r in enumerate(found) if r is None]
    done = n - len(missing)
    if missing:
        if progress:
            progress("on Ray", done, n)  # then each recipe as it finishes
        todo = [recipes[i] for i in missing]
        arrivals = ray_results(factory, version, todo, targets, gpu_runs, address=address)
        with contextlib.closing(arrivals):  # any error here cancels the tasks still out
            for j, r in arrivals:
                i = missing[j]
                r = dataclasses.replace(r, recipe=recipes[i])  # the caller's own Recipe object
                if store:
                    store.put(study_key, recipes[i].key(), r.to_dict())
                found[i] = r
                done += 1
                if progress:
                    progress(recipes[i].name, done, n)
    return [r for r in found if r is not None]


def run(
    task: Task,
    recipes: Sequence[Recipe],
    *,
    target: str | Sequence[str] = "eyeriss",
    cache: ResultCache | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    measured: Path | None = None,
    backend: str = "local",
    address: str | None = None,
    factory: Callable[[], Task] | None = None,
) -> StudyResult:
    """Run every recipe on `task` (cached, resumable); the first baseline recipe is the FP32
    reference for deltas (one is added if none is given). `target`: one name or several (each
    recipe is evaluated once and costed on every target). `measured`: a `picojoule bench gpu`
    JSON from one of the target GPUs, whose board pJ/op then bills each layer there too.

    `backend="ray"` runs the recipes the cache lacks as Ray tasks (`picojoule.study.backends`;
    a new local Ray, or the cluster at `address`), writing each to the cache as it finishes;
    the results are the local backend's, in recipe order. Workers build their own task with
    `factory` (what `task_factory` returns; derived from `task` for the digits, MiniLM and
    user-callable tasks), so no model is shipped."""
    from picojoule.study.backends import check_backend

    check_backend(backend, address)  # before any work: a bad backend or address fails at once
    recipes = check_recipes(recipes)  # before the model is built: a typo fails in a second
    if not any(r.is_baseline for r in recipes):
        recipes.insert(0, Recipe(name="fp32"))
    targets = _targets(target)
    from picojoule.study.targets import check_target, target_id, target_label
    from picojoule.versioning import code_digest

    for t in targets:
        check_target(t)
    gpu_runs = _measured_for(measured, targets)
    store = ResultCache(cache) if isinstance(cache, Path | str) else cache
    probe = task.model()
    version = fingerprint(probe)
    # Before the first recipe runs: a recipe a lever of which reaches no layer is skipped
    # with its reason (a structural check, no weights read), never a failure minutes in.
    skips = _skips(probe, recipes, task, targets)
    del probe
    todo = [r for r in recipes if r.name not in skips]
    mtag = f"|measured:{gpu_runs['target']}:{gpu_runs['digest']}" if gpu_runs else ""
    code = code_digest(_RESULT_CODE)
    where = ",".join(target_id(t) for t in targets)
    tag = getattr(task, "cache_tag", "")  # a user model's data, metric name and direction
    user = f"|{tag}" if tag else ""
    study_key = f"v{RESULT_VERSION}+{code}|{task.name}{user}|{version}|{where}{mtag}"
    results: list[RecipeResult] = []
    try:
        if backend == "ray":
            make = factory if factory is not None else _factory_of(task)
            results = _run_on_ray(make, version, todo, targets, gpu_runs, store, study_key,
                                  progress, address)  # fmt: skip
        else:
            for i, recipe in enumerate(todo):
                if progress:
                    progress(recipe.name, i, len(todo))
                hit = store.get(study_key, recipe.key()) if store else None
                if hit is not None:
                    hit.pop("recipe", None)
                    results.append(RecipeResult(recipe=recipe, cached=True, **hit))
                    continue
                r = _evaluate_recipe(task, recipe, targets, gpu_runs)
                if store:
                    store.put(study_key, recipe.key(), r.to_dict())
                results.append(r)
        if progress:
            progress("done", len(todo), len(todo))
    finally:
        if store is not None and store is not cache:
            store.close()
    by_name = {r.recipe.name: r for r in results}
    results = [skips.get(r.name) or by_name[r.name] for r in recipes]
    baseline = next(r for r in results if r.recipe.is_baseline)
    return StudyResult(
        task=task.name,
        primary_metric=task.primary_metric,
        unit=getattr(task, "unit", ""),
        targets=targets,
        model_version=version,
        results=results,
        baseline=baseline,
        higher_is_better=getattr(task, "higher_is_better", True),
        notes=tuple(getattr(task, "notes", ())),
        scored_on=getattr(task, "scored_on", ""),
        held_out=getattr(task, "held_out", True),
        delta_kind=getattr(task, "delta_kind", ""),
        target_labels=tuple(target_label(t) for t in targets),
    )
