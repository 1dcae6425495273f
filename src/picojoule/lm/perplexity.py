"""Perplexity and next-token accuracy of a causal LM over a token sequence, in sliding windows.

Windows of `context` tokens start every `stride` tokens (window k covers positions
[k*stride, k*stride + context)). Each target token j >= 1 is scored once, in the first window
that contains it, from the tokens before it in that window - so after the first window every
prediction sees at least `context - stride` tokens of history (the method of the Hugging Face
"Perplexity of fixed-length models" guide). stride < context, so every target has history.

    perplexity = exp(-(1/N) * sum_j log p(x_j | x_{begin(j)} .. x_{j-1}))
    top-1      = (1/N) * #{j : argmax_v p(v | ...) == x_j}

N = `max_tokens` targets (x_1 .. x_N). Sums are accumulated in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from picojoule.errors import ConfigError

__all__ = ["LMScore", "score_lm", "windows"]


@dataclass(frozen=True, kw_only=True)
class LMScore:
    perplexity: float  # exp(mean NLL in nats); lower is better
    top1: float  # next-token accuracy, percent
    tokens: int  # targets scored (N)
    nll_nats: float  # sum of -log p over the targets
    context: int  # window length, tokens
    stride: int  # window step, tokens


def windows(n: int, context: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first_target) for a sequence of `n` tokens: the window is ids[begin:end]
    and it scores targets first_target .. end-1."""
    if context < 2:
        raise ConfigError(f"context {context}: a window needs at least 2 tokens")
    if not 1 <= stride < context:
        # stride == context (plain chunking) would leave each chunk's first token without
        # history in any window; every target here is predicted from >= 1 token.
        raise ConfigError(f"stride {stride}: give 1 <= stride < context ({context})")
    out: list[tuple[int, int, int]] = []
    scored_to = 1  # token 0 has no history and is never a target
    begin = 0
    while scored_to < n:
        end = min(begin + context, n)
        if end > scored_to:  # begin < scored_to holds: stride < context
            out.append((begin, end, scored_to))
            scored_to = end
        begin += stride
    return out


def _logits(model: Callable[..., Any], ids: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids, use_cache=False)
    logits = out.logits if hasattr(out, "logits") else out
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise ConfigError("the model must return logits shaped [batch, tokens, vocab]")
    return logits


@torch.no_grad()
def score_lm(
    model: Callable[..., Any],
    ids: torch.Tensor,
    *,
    context: int,
    stride: int | None = None,
    max_tokens: int | None = None,
    batch: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> LMScore:
    """Score `ids` (1-D token ids) with `model` (HF causal LM or any callable taking
    `input_ids=[B, T]` and returning `.logits` [B, T, V]). `stride` defaults to context // 2;
    `max_tokens` caps the number of targets. Full-length windows run `batch` at a time."""
    if ids.dim() != 1:
        raise ConfigError(f"token ids must be 1-D, got shape {tuple(ids.shape)}")
    stride = stride or max(1, context // 2)
    if max_tokens is not None:
        ids = ids[: max_tokens + 1]
    if ids.numel() < 2:
        raise ConfigError("the text has fewer than 2 tokens; give a longer text")
    plan = windows(ids.numel(), context, stride)
    nll = 0.0
    hits = 0
    n = 0
    i = 0
    while i < len(plan):
        # Group windows of equal length into one batch (all but possibly the last are full).
        length = plan[i][1] - plan[i][0]
        group = [plan[i]]
        while (
            len(group) < batch
            and i + len(group) < len(plan)
            and plan[i + len(group)][1] - plan[i + len(group)][0] == length
        ):
            group.append(plan[i + len(group)])
        x = torch.stack([ids[b:e] for b, e, _ in group])
        logp = torch.log_softmax(_logits(model, x).double(), dim=-1)  # [B, T, V]
        for row, (b, e, first) in enumerate(group):
            pos = torch.arange(first - b - 1, e - b - 1)  # logits that predict targets
            target = ids[first:e]
            lp = logp[row, pos]
            nll -= lp.gather(1, target[:, None]).sum().item()
            hits += int((lp.argmax(dim=1) == target).sum())
            n += target.numel()
        i += len(group)
        if progress is not None:
            progress(i, len(plan))
    if not math.isfinite(nll):
        raise ConfigError("the model produced non-finite log-probabilities; check its weights")
    return LMScore(
        perplexity=math.exp(nll / n),
        top1=100.0 * hits / n,
        tokens=n,
        nll_nats=nll,
        context=context,
        stride=stride,
    )
