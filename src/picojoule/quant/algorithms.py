"""Run a recipe's post-training algorithms with calibration data: `apply_algorithms_`.

A recipe's `rotate:`, `smooth:` and `wcal:` keys need data (or, for rotations, a model-wide
change), so they run here, around the plain `quantize_`, in the order the papers compose them:

1. `rotate:hadamard` / `rotate:block<N>` - QuaRot-style rotations (`picojoule.quant.rotate`):
   offline parts folded into the weights, online Hadamards installed as hooks and returned as
   `OnlineRotation` records, which the study bills (`pj_rotation` on the module).
2. `smooth:ALPHA` - SmoothQuant scales (Xiao et al. 2022, eq. 4) from each stage's input
   channel maxima, folded into the module that produced the stage's input (a norm or linear).
3. `wcal:awq` - AWQ (Lin et al. 2023): activation-aware scales by grid search, folded the same
   way, then the weight-clipping search.
4. `quantize_` with the formats of the recipe (round to nearest, plus `a:`/`attn:`/`kv:`).
5. Static activation scales are calibrated (`calibrate`), so GPTQ sees the inputs as they are
   quantized at run time.
6. `wcal:gptq` - GPTQ (Frantar et al. 2022) layer by layer, each layer's Hessian from inputs
   that flow through the already-quantized earlier layers (`picojoule.quant.capture`); the
   solved values replace the round-to-nearest ones (`WeightFakeQuant.set_solved`).

Scales fold only where the stage's input comes straight from a norm or linear the stage alone
reads (Llama's q/k/v after `input_layernorm`, gate/up after `post_attention_layernorm`, and, as
the AWQ reference does, down_proj after up_proj and o_proj after v_proj when their shapes
match); elsewhere a stage keeps scale 1 and the report says so. Folded scales and offline
rotations cost nothing at run time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.quant.capture import (
    SharedInput,
    Stage,
    StageLayer,
    observe_all,
    sequential,
    trace_stages,
)
from picojoule.quant.recipe import QuantConfig, parse_recipe

__all__ = ["AlgorithmReport", "apply_algorithms_", "needs_algorithms", "TOKENS_PER_LAYER"]

TOKENS_PER_LAYER = 4096  # AWQ: input rows kept per layer for its searches (evenly spaced)
_GPTQ_BLOCK = 128  # columns per lazy-update block (Frantar et al. 2022, section 4, step 2)


@dataclass(frozen=True, kw_only=True)
class AlgorithmReport:
    """What the algorithms did: per-step lines, online rotations, and wall time per step (s)."""

    lines: tuple[str, ...] = ()
    online: tuple[Any, ...] = ()  # picojoule.quant.rotate.OnlineRotation records
    seconds: Mapping[str, float] = field(default_factory=dict)
    applied: tuple[Any, ...] = ()  # quantize_'s records

    @property
    def calibration_seconds(self) -> float:
        return float(sum(self.seconds.values()))


def needs_algorithms(cfg: QuantConfig) -> bool:
    """Whether a parsed recipe has keys only `apply_algorithms_` can run."""
    return cfg.wcal != "rtn" or cfg.smooth is not None or cfg.rotate is not None


def _plain(cfg: QuantConfig) -> QuantConfig:
    overrides = tuple(
        (g, None if c is None else replace(c, wcal="rtn", smooth=None, rotate=None))
        for g, c in cfg.overrides
    )
    return replace(cfg, wcal="rtn", smooth=None, rotate=None, overrides=overrides)


def apply_algorithms_(
    model: nn.Module,
    recipe: str | QuantConfig | Mapping[str, object],
    batches: Iterable[Any],
    *,
    overrides: Mapping[str, str | QuantConfig | Mapping[str, object] | None] | None = None,
    progress: Callable[[str], None] | None = None,
    expose: bool = True,
) -> AlgorithmReport:
    """Quantize `model` in place with the recipe's algorithms (see the module docstring).

    batches: calibration inputs (tensors, tuples or dicts of model inputs), the same for every
    step. Returns an `AlgorithmReport`; `quantize_` alone runs a recipe without algorithms.
    expose: as `quantize_`'s, done before the first algorithm so that GPT-2's Conv1D
    projections are Linear layers the algorithms see; the records lead `applied`.
    """
    from picojoule.config import check_model
    from picojoule.quant.api import SUPPORTED, quantize_
    from picojoule.quant.calibrate import calibrate
    from picojoule.quant.unfuse import check_expose, expose_layers_

    check_model(model, "apply_algorithms_")
    check_expose(expose, "apply_algorithms_")
    cfg = parse_recipe(recipe, overrides)
    batches = list(batches)
    if needs_algorithms(cfg) and not batches:
        raise ConfigError(f"{cfg}: wcal:/smooth:/rotate: need calibration batches; got none")
    exposed = expose_layers_(model) if expose else []
    say = progress or (lambda _msg: None)
    lines: list[str] = []
    seconds: dict[str, float] = {}
    online: list[Any] = []

    def quantized(name: str, m: nn.Module) -> QuantConfig | None:
        c = cfg.for_module(name)
        return c if c is not None and (c.weight is not None or c.activation is not None) else None

    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and quantized(n, m)]
    others = [
        n
        for n, m in model.named_modules()
        if isinstance(m, SUPPORTED) and not isinstance(m, nn.Linear) and quantized(n, m)
    ]
    if cfg.rotate == "hadamard" and not _llama_family(model):
        lines.append(
            "rotate:hadamard: skipped - it needs a Llama-family causal LM (residual stream, "
            "RMSNorm, q/k/v/o and gate/up/down); rotate:block<N> rotates any model's Linears"
        )
    elif cfg.rotate is not None:
        t0 = time.perf_counter()
        say(f"rotate:{cfg.rotate}")
        online += _rotate(model, cfg, set(linears))
        seconds["rotate"] = time.perf_counter() - t0
        lines.append(
            f"rotate:{cfg.rotate}: {len(online)} online Hadamard(s); the rest folded offline"
        )
    if cfg.smooth is not None:
        t0 = time.perf_counter()
        say(f"smooth:{cfg.smooth:g}")
        lines += _smooth(model, linears, batches, cfg.smooth)
        seconds["smooth"] = time.perf_counter() - t0
    if cfg.wcal == "awq":
        t0 = time.perf_counter()
        lines += _awq(model, cfg, linears, batches, say)
        seconds["awq"] = time.perf_counter() - t0
    applied = [*exposed, *quantize_(model, _plain(cfg), expose=False)]
    if cfg.wcal == "gptq":
        t0 = time.perf_counter()
        calibrate(model, batches)  # GPTQ sees activations as quantized at run time
        lines += _gptq(model, cfg, linears, batches, say)
        seconds["gptq"] = time.perf_counter() - t0
    if others and needs_algorithms(cfg):
        lines.append(
            f"{', '.join(others[:4])}{' ...' if len(others) > 4 else ''}: not Linear layers; "
            "rounded to nearest (the algorithms here run on Linear layers)"
        )
    _attach_costs(model, online)
    return AlgorithmReport(
        lines=tuple(lines), online=tuple(online), seconds=seconds, applied=tuple(applied)
    )


# --- rotations -------------------------------------------------------------------------------


def _rotate(model: nn.Module, cfg: QuantConfig, linears: set[str]) -> list[Any]:
    from picojoule.quant import rotate

    assert cfg.rotate is not None
    if cfg.rotate == "hadamard":
        return list(rotate.rotate_hadamard_(model, online_kv=cfg.kv is not None))
    block = int(cfg.rotate.removeprefix("block"))
    return list(rotate.rotate_block_(model, block, filter_fn=lambda m, n: n in linears))


def _llama_family(model: nn.Module) -> bool:
    from picojoule.errors import PicojouleError
    from picojoule.quant.rotate import _llama_parts

    try:
        _llama_parts(model)
    except PicojouleError:
        return False
    return True


def _attach_costs(model: nn.Module, online: Sequence[Any]) -> None:
    """Mark each module an online rotation runs on with its per-row cost, which
    `picojoule.study.cost.layer_counts` bills as transform additions (and multiplies)."""
    modules = dict(model.named_modules())
    for r in online:
        # queries and keys are rotated after RoPE: billed on the projection that makes them
        name = {"queries": f"{r.layer}.q_proj", "keys": f"{r.layer}.k_proj"}.get(r.where, r.layer)
        m = modules.get(name)
        if m is None:
            continue
        adds, macs = getattr(m, "pj_rotation", (0, 0))
        m.pj_rotation = (adds + r.cost.adds, macs + r.cost.macs)  # per token (input row)


# --- SmoothQuant and AWQ: scales folded into the producer ------------------------------------

# (consumer suffix, producer suffix) pairs the AWQ reference folds across: the consumer's input
# is an elementwise function of the producer's output that scales channel by channel
_PAIRS = (("mlp.down_proj", "mlp.up_proj"), ("self_attn.o_proj", "self_attn.v_proj"))


def _fold_target(
    stage: Stage, modules: dict[str, nn.Module], stages: Sequence[Stage]
) -> tuple[str, nn.Module] | None:
    """The module whose output channels can absorb the stage's input scales, if any; `stages`
    (all traced stages) tell whether another layer reads that module's output too."""
    layers = [modules[n] for n in stage.names]
    width = layers[0].in_features
    name = stage.producer
    if name is None and len(stage.names) == 1:
        for consumer, producer in _PAIRS:
            if stage.names[0].endswith(consumer):
                name = stage.names[0][: -len(consumer)] + producer
                break
    if name is None or name not in modules:
        return None
    prev = modules[name]
    from picojoule.quant.api import is_quantized

    if is_quantized(prev):
        return None
    if isinstance(prev, nn.Linear):
        ok = prev.out_features == width
    elif isinstance(prev, nn.LayerNorm) or type(prev).__name__.endswith("RMSNorm"):
        w = getattr(prev, "weight", None)
        ok = isinstance(w, torch.Tensor) and w.dim() == 1 and w.numel() == width
        ok = ok and "Gemma" not in type(prev).__name__
    else:
        ok = False
    if not ok:
        return None
    readers = {n for s in stages if s.producer == name for n in s.names}
    if readers - set(stage.names):  # another layer reads it too: scaling would hurt it
        return None
    return name, prev


def _smooth(model: nn.Module, linears: list[str], batches: list[Any], alpha: float) -> list[str]:
    from picojoule.quant.smooth import ChannelAbsMax, fold_scales_, smooth_scales

    modules = dict(model.named_modules())
    lines: list[str] = []
    folded = skipped = 0

    # the folds are exact, so one pass collects every stage's statistics
    stages, observers = observe_all(model, linears, batches, lambda n, m: ChannelAbsMax())

    def update(layers: Sequence[StageLayer], stage: Stage) -> None:
        nonlocal folded, skipped
        target = _fold_target(stage, modules, stages)
        if target is None:
            skipped += 1
            return
        stat = layers[0].observer
        s = smooth_scales(stat.absmax, [layer.module.weight.detach() for layer in layers], alpha)
        fold_scales_(target[1], [layer.module for layer in layers], s)
        folded += 1

    for stage in stages:
        update([StageLayer(n, modules[n], observers[n]) for n in stage.names], stage)
    lines.append(
        f"smooth:{alpha:g}: scales folded into {folded} producer(s); {skipped} stage(s) read an "
        "input no norm or linear alone produces, left unsmoothed"
    )
    return lines


class _TokenSample:
    """Keeps up to `limit` input rows (evenly spaced over the calibration set)."""

    def __init__(self, limit: int, total_rows: int) -> None:
        self.step = max(1, total_rows // limit)
        self.rows: list[torch.Tensor] = []
        self.seen = 0

    def add_batch(self, x: torch.Tensor) -> None:
        flat = x.reshape(-1, x.shape[-1])
        first = (-self.seen) % self.step
        self.rows.append(flat[first :: self.step].float().clone())
        self.seen += flat.shape[0]

    def tensor(self) -> torch.Tensor:
        return torch.cat(self.rows)


def _weight_quantizer(cfg: QuantConfig, name: str) -> tuple[Callable, int, Any]:
    """(fake-quant of a [out, in] weight, the format's group size along `in`, the format)."""
    from picojoule.formats import ScaledFormat

    c = cfg.for_module(name)
    assert c is not None and c.weight is not None
    fmt = c.weight.resolve("weight")
    rounding = c.weight.rounding

    def quant(w: torch.Tensor) -> torch.Tensor:
        if isinstance(fmt, ScaledFormat):
            return fmt.quantize(w, rounding=rounding, coarse="row")  # type: ignore[arg-type]
        return fmt.quantize(w, rounding=rounding)  # type: ignore[arg-type]

    block = fmt.block if isinstance(fmt, ScaledFormat) else None
    return quant, block or 0, fmt


def _awq(
    model: nn.Module,
    cfg: QuantConfig,
    linears: list[str],
    batches: list[Any],
    say: Callable[[str], None],
) -> list[str]:
    from picojoule.quant.awq import apply_clip_, awq_clip, awq_search_scale
    from picojoule.quant.smooth import fold_scales_

    modules = dict(model.named_modules())
    weighted = [n for n in linears if (c := cfg.for_module(n)) is not None and c.weight]
    rows = _rows_per_pass(model, batches)
    stages = trace_stages(model, weighted, batches[0]) if weighted else []
    folded, unfolded, clipped, alphas = 0, 0, 0, []

    def update(layers: Sequence[StageLayer], stage: Stage) -> None:
        nonlocal folded, unfolded, clipped
        x = layers[0].observer.stats.tensor()
        quant, _, _ = _weight_quantizer(cfg, layers[0].name)
        target = _fold_target(stage, modules, stages)
        if target is not None:
            found = awq_search_scale(x, [layer.module for layer in layers], quant)
            fold_scales_(target[1], [layer.module for layer in layers], found.s)
            x = x / found.s  # the stage's input after the fold
            alphas.append(found.alpha)
            folded += 1
        else:
            unfolded += 1
        for layer in layers:
            if layer.name.endswith(("q_proj", "k_proj")):
                continue  # the reference leaves q/k unclipped: their products are sensitive
            q, group, _ = _weight_quantizer(cfg, layer.name)
            w = layer.module.weight.detach()
            g = group or w.shape[1]
            apply_clip_(layer.module, awq_clip(x, w, q, group=g), group=g)
            clipped += 1
        say(f"awq: {','.join(stage.names)}")

    if weighted:
        sequential(
            model,
            weighted,
            batches,
            observer=SharedInput(lambda n, m: _TokenSample(TOKENS_PER_LAYER, rows)),
            update=update,
            stages=stages,
        )
    mean_alpha = sum(alphas) / len(alphas) if alphas else float("nan")
    return [
        f"wcal:awq: scales searched and folded for {folded} stage(s) (mean alpha "
        f"{mean_alpha:.2f}); {unfolded} stage(s) without a producer to fold into kept scale 1; "
        f"{clipped} layer(s) clip-searched"
    ]


def _rows_per_pass(model: nn.Module, batches: list[Any]) -> int:
    """About how many input rows a layer sees over all batches (for even subsampling): a
    batch of token ids gives one row per token, a batch of features one per sample."""
    total = 0
    for b in batches:
        if isinstance(b, dict):
            b = next((v for v in b.values() if isinstance(v, torch.Tensor)), None)
        elif isinstance(b, tuple | list):
            b = b[0] if b else None
        if not isinstance(b, torch.Tensor):
            total += 1
        elif b.is_floating_point():
            total += b.shape[0] if b.dim() else 1
        else:
            total += b.numel()
    return max(total, 1)


# --- GPTQ ------------------------------------------------------------------------------------


def _gptq(
    model: nn.Module,
    cfg: QuantConfig,
    linears: list[str],
    batches: list[Any],
    say: Callable[[str], None],
) -> list[str]:
    from picojoule.formats import CodebookFormat
    from picojoule.quant.api import weight_transforms
    from picojoule.quant.gptq import gptq_quantize
    from picojoule.quant.hessian import HessianAccumulator
    from picojoule.quant.modules import WeightFakeQuant
    from picojoule.sparsity import mask_of

    modules = dict(model.named_modules())
    names = []
    for n in linears:
        c = cfg.for_module(n)
        if c is None or c.weight is None:
            continue
        if isinstance(c.weight.resolve("weight"), CodebookFormat):
            raise ConfigError(
                f"wcal:gptq: layer {n} uses a codebook format; GPTQ needs a scalar format "
                "(use wcal:rtn for codebooks)"
            )
        names.append(n)
    losses: list[float] = []

    def update(layers: Sequence[StageLayer], stage: Stage) -> None:
        for layer in layers:
            m = layer.module
            plist = m.parametrizations["weight"]  # type: ignore[index]
            w = plist.original.detach().float()
            mask = mask_of(m)
            keep = mask.mask if mask is not None else None
            if keep is not None:
                w = w * keep.to(w.dtype)
            quant = next(t for t in weight_transforms(m) if isinstance(t, WeightFakeQuant))
            # a pruned weight stays zero inside the loop (SparseGPT section 3.5)
            res = gptq_quantize(
                w, layer.observer.stats.hessian().double(), quant.fmt, block_size=_GPTQ_BLOCK,
                rounding=quant.rounding, mask=keep,
            )  # fmt: skip
            q = res.weight
            quant.set_solved(q.to(plist.original.dtype))
            losses.append(float(res.loss))
        say(f"gptq: {','.join(stage.names)}")

    if names:
        sequential(
            model,
            names,
            batches,
            # float32 sums as the reference does (float64 doubles the time of the largest
            # GEMMs); layers reading one tensor (q/k/v, gate/up) share one Hessian
            observer=SharedInput(
                lambda n, m: HessianAccumulator(modules[n].in_features, dtype=torch.float32)
            ),
            update=update,
        )
    return [
        f"wcal:gptq: {len(losses)} layer(s) solved column by column (blocks of {_GPTQ_BLOCK}, "
        f"dampening 1% of mean diag H); total objective {sum(losses):.4g}"
    ]
