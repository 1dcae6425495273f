"""Masked fine-tuning and gradual (iterative) pruning.

Public: `FinetuneResult`, `finetune`, `GradualResult`, `prune_gradually`, `gradual_density`.

`finetune` trains the unmasked weights under FIXED masks: the masks are buffers, not
parameters, and `SparsityMask` passes zero gradient to pruned entries, so the effective weight
of a pruned entry stays exactly zero whatever the optimizer does to the hidden original.

`prune_gradually` follows Zhu & Gupta, "To prune, or not to prune" (arXiv:1710.01878, eq. 1):
kept density falls from 1 to the target d_f as d(t) = d_f + (1 - d_f) * (1 - t)^3 over
`events` pruning events, with fine-tuning between them. N:M patterns step through the
coarser patterns the schedule passes, rounding N up so no event prunes more than the schedule
says (1:4 over 6 events: 3:4, 2:4, 2:4, 2:4, 2:4, 1:4).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.config import Applied
from picojoule.errors import ConfigError
from picojoule.sparsity.patterns import Pattern, parse_pattern
from picojoule.sparsity.recipe import DENSE, SparsityConfig, parse_recipe
from picojoule.sparsity.sparsify import sparsify_

__all__ = ["FinetuneResult", "finetune", "GradualResult", "prune_gradually", "gradual_density"]

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class FinetuneResult:
    """Optimizer steps taken and the mean training loss over the first and last 10% of steps."""

    steps: int
    first_loss: float
    last_loss: float


def _endless(loader: Iterable[Batch]) -> Iterator[Batch]:
    """Batches from `loader`, re-iterated every epoch (so a shuffling loader reshuffles)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ConfigError("the fine-tuning loader yielded no batches")


def finetune(
    model: nn.Module,
    loader: Iterable[Batch],
    steps: int,
    lr: float,
    *,
    loss_fn: LossFn = F.cross_entropy,
) -> FinetuneResult:
    """Train `model` for `steps` Adam steps on `(input, target)` batches, masks held fixed.

    `input` is a tensor or a tuple of the model's positional arguments. Fake-quantized layers
    train through the straight-through estimator, so this is also quantization-aware training.

    The loader is re-iterated as often as `steps` needs. Restores the train/eval mode.
    """
    if steps < 1 or lr <= 0:
        raise ConfigError(f"finetune needs steps >= 1 and lr > 0, got steps={steps}, lr={lr}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("model has no trainable parameters to fine-tune")
    device = params[0].device
    opt = torch.optim.Adam(params, lr=lr)
    was_training = model.training
    model.train()
    losses: list[float] = []
    batches = _endless(loader)
    for _ in range(steps):
        x, y = next(batches)
        # A tuple input is the model's positional arguments (e.g. token ids and mask).
        out = (
            model(*(t.to(device) for t in x))
            if isinstance(x, tuple | list)
            else model(x.to(device))
        )
        loss = loss_fn(out, y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.train(was_training)
    tail = max(1, steps // 10)
    return FinetuneResult(
        steps=steps,
        first_loss=sum(losses[:tail]) / tail,
        last_loss=sum(losses[-tail:]) / tail,
    )


def gradual_density(final: float, progress: float) -> float:
    """Zhu & Gupta's cubic schedule: kept density at `progress` in [0, 1] toward `final`."""
    return final + (1.0 - final) * (1.0 - progress) ** 3


def _pattern_at(pattern: Pattern, progress: float) -> str:
    density = gradual_density(pattern.density, progress)
    if pattern.kind == "nm":
        n = min(pattern.m - 1, max(pattern.n, math.ceil(density * pattern.m - 1e-9)))
        return f"{n}:{pattern.m}"
    return replace(pattern, density=density).name


def _config_at(cfg: SparsityConfig, progress: float) -> SparsityConfig:
    layers = tuple(
        (glob, value if value == DENSE else _pattern_at(parse_pattern(value), progress))
        for glob, value in cfg.layers
    )
    return replace(cfg, pattern=_pattern_at(parse_pattern(cfg.pattern), progress), layers=layers)


@dataclass(frozen=True, kw_only=True)
class GradualResult:
    """Default pattern at each pruning event, the final per-layer records, and training losses."""

    schedule: tuple[str, ...]
    applied: tuple[Applied, ...]
    finetunes: tuple[FinetuneResult, ...]


def prune_gradually(
    model: nn.Module,
    recipe: str | SparsityConfig,
    loader: Iterable[Batch],
    *,
    events: int = 4,
    steps_per_event: int = 50,
    lr: float = 1e-3,
    loss_fn: LossFn = F.cross_entropy,
) -> GradualResult:
    """Prune to `recipe` over `events` cubic-schedule steps, fine-tuning after each."""
    if events < 1:
        raise ConfigError(f"prune_gradually needs events >= 1, got {events}")
    cfg = parse_recipe(recipe) if isinstance(recipe, str) else recipe
    schedule: list[str] = []
    tuned: list[FinetuneResult] = []
    applied: list[Applied] = []
    for i in range(events):
        step_cfg = _config_at(cfg, (i + 1) / events)
        schedule.append(step_cfg.pattern)
        applied = sparsify_(model, step_cfg)
        tuned.append(finetune(model, loader, steps_per_event, lr, loss_fn=loss_fn))
    return GradualResult(schedule=tuple(schedule), applied=tuple(applied), finetunes=tuple(tuned))
