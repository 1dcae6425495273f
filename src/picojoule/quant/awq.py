"""AWQ's activation-aware weight scaling and clipping search, as pure functions.

AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration", MLSys 2024, arXiv:2306.00978) protects the weights that meet large activations.
For a linear layer y = x W^T and any positive s [in], x W^T = (x diag(s)^-1) (W diag(s))^T, so
quantizing W diag(s) instead of W and dividing the input by s (folded into the module that
produces x: `picojoule.quant.smooth.fold_scales_`) gives

    y' = (x diag(s)^-1) Q(W diag(s))^T = x (Q(W diag(s)) diag(s)^-1)^T      (paper eq. 4-5)

Scaling up a salient channel shrinks its relative rounding error. s is searched (section 3.3,
eq. 5) over a one-parameter family, s = s_X^alpha with s_X the average activation magnitude
mean_t |x_tj|, alpha on a grid in [0, 1), minimising the output error on calibration data.
A second search (the reference implementation's `auto_clip`) shrinks each (row, group)'s
max-clip, trading clipping error for finer rounding.

- `awq_search_scale`: the scale search for the linears that share one input (q/k/v, gate/up).
- `awq_clip` and `apply_clip_`: the clip search for one linear and clamping its weight.

`quant_w` is any function [out, in] -> fake-quantized [out, in], e.g.
`lambda w: resolve_format("int4/block128", "weight").quantize(w)`. Everything here assumes it
acts on each row (and each block along in) independently, as per-channel, int/block, MX and
VS-Quant formats do; NVFP4's per-tensor FP32 scale is the one exception (a second-order
coupling through the tensor's amax).

How the pieces fit (the caller's orchestration, in the reference's order, per block):
1. res = awq_search_scale(x, [q, k, v], quant_w); fold_scales_(input_norm, [q, k, v], res.s)
2. for each linear: max_val = awq_clip(x / res.s, linear.weight, quant_w, group=...);
   apply_clip_(linear, max_val) (the reference skips q and k: their errors are amplified by the
   attention softmax, which a per-linear output error does not see);
3. fake-quantize the weights as usual.

Importable with torch alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.errors import ConfigError
from picojoule.quant.api import is_quantized

__all__ = ["AWQScale", "awq_search_scale", "awq_clip", "apply_clip_", "AWQ_SCALE_FLOOR"]

AWQ_SCALE_FLOOR = 1e-4
"""s = mean|x|^alpha is clamped to >= 1e-4 before normalisation (as the reference does)."""

_CHUNK = 1 << 24  # elements of the largest temporary (64 MiB in float32)

QuantW = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class AWQScale:
    """The result of `awq_search_scale`.

    s: [in] the chosen scales (x / s feeds Q(W s)); alpha: the chosen exponent; loss: its
    output MSE; alphas / losses: every grid point and its MSE (losses[0] is alpha = 0);
    rtn_loss: the MSE at alpha = 0, where s = 1 and the weights are plain round-to-nearest.
    Loss units: squared output units (mean over tokens and output channels).
    """

    s: torch.Tensor
    alpha: float
    loss: float
    alphas: tuple[float, ...]
    losses: tuple[float, ...]
    rtn_loss: float


def _flat_x(x: torch.Tensor, n_in: int, fn: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ConfigError(f"{fn}: x must be a float tensor [tokens, in], got {got}")
    if x.shape[-1] != n_in:
        raise ConfigError(f"{fn}: x has {x.shape[-1]} channels, the weights take {n_in}")
    flat = x.detach().reshape(-1, n_in)
    if flat.shape[0] == 0:
        raise ConfigError(f"{fn}: x has no tokens; give calibration inputs")
    if not bool(torch.isfinite(flat).all()):
        raise ConfigError(f"{fn}: x holds NaN or inf")
    return flat


def _check_linear(lin: object, what: str, fn: str) -> nn.Linear:
    if not isinstance(lin, nn.Linear):
        raise ConfigError(f"{fn}: {what} is {type(lin).__name__}, not nn.Linear")
    if is_quantized(lin) or parametrize.is_parametrized(lin):
        raise ConfigError(
            f"{fn}: {what} is already fake-quantized or parametrized; search on the float model"
        )
    return lin


def _check_grid(grid: int, fn: str) -> int:
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ConfigError(f"{fn}: grid must be a positive integer, got {grid!r}")
    return grid


def _quant(quant_w: QuantW, w: torch.Tensor, fn: str) -> torch.Tensor:
    q = quant_w(w)
    if not isinstance(q, torch.Tensor) or q.shape != w.shape:
        got = tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__
        raise ConfigError(f"{fn}: quant_w returned {got} for a {tuple(w.shape)} weight")
    return q.to(w.dtype)


def _mean_abs(x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[in] mean_t |x_tj|, summed in float64 over token chunks."""
    rows = max(1, _CHUNK // x.shape[1])
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=device)
    for i in range(0, x.shape[0], rows):
        total += x[i : i + rows].to(device).abs().sum(0, dtype=torch.float64)
    return (total / x.shape[0]).to(dtype)


class _OutputSSE:
    """sum over tokens and outputs of (x dW^T)^2, for weight differences dW [out, in].

    With more tokens than channels it uses the Gram matrix G = x^T x [in, in]:
    ||x dW^T||_F^2 = sum((dW G) * dW), which costs out*in^2 instead of tokens*out*in and holds
    no [tokens, out] output; otherwise x dW^T directly, chunked over tokens."""

    def __init__(self, x: torch.Tensor, device: torch.device, dtype: torch.dtype) -> None:
        n, n_in = x.shape
        rows = max(1, _CHUNK // n_in)
        self.gram: torch.Tensor | None = None
        self.x: torch.Tensor | None = None
        if n > n_in:
            g = torch.zeros(n_in, n_in, dtype=torch.float64, device=device)
            for i in range(0, n, rows):
                c = x[i : i + rows].to(device=device, dtype=dtype)
                g += (c.T @ c).double()
            self.gram = g.to(dtype)
        else:
            self.x = x.to(device=device, dtype=dtype)

    def __call__(self, dw: torch.Tensor) -> float:
        if self.gram is not None:
            rows = max(1, _CHUNK // dw.shape[1])
            sse = sum(
                float(((d @ self.gram) * d).sum(dtype=torch.float64)) for d in dw.split(rows, dim=0)
            )
            return max(sse, 0.0)  # rounding can leave a tiny negative for dw ~ 0
        assert self.x is not None
        rows = max(1, _CHUNK // max(1, dw.shape[0]))
        return sum(
            float((c @ dw.T).pow(2).sum(dtype=torch.float64)) for c in self.x.split(rows, dim=0)
        )


@torch.no_grad()
def awq_search_scale(
    x: torch.Tensor,
    linears: Sequence[nn.Linear],
    quant_w: QuantW,
    *,
    grid: int = 20,
    forward: Callable[[Sequence[torch.Tensor]], torch.Tensor] | None = None,
) -> AWQScale:
    """AWQ's per-input-channel scale search (paper section 3.3, eq. 5) for linears sharing x.

    x: [tokens, in] (or [..., in]) calibration inputs of the linears, in the input's units; may
        live on the CPU while the weights sit on an accelerator (moved in chunks).
    linears: every nn.Linear reading x (e.g. q, k, v); they get one shared s.
    quant_w: [out, in] -> fake-quantized [out, in] (see the module docstring).
    grid: alpha runs over {0, 1/grid, ..., (grid-1)/grid} (the paper's 20 points: 0 .. 0.95).
    forward: optional; maps one candidate weight per linear (same order, [out, in] each) to a
        block output. Then the loss is MSE(forward(original weights), forward(candidates)) -
        the paper's choice, the real block output (e.g. an attention or MLP block using these
        weights on its own captured input). Without it the loss is the MSE of the concatenated
        outputs x W^T of the linears themselves (bias cancels), computed exactly through the
        Gram matrix x^T x when there are more tokens than channels.

    For each alpha: s = mean_t|x_tj|^alpha clamped >= 1e-4, normalised s / sqrt(max(s) min(s));
    each linear's candidate weight is Q(W diag(s)) diag(s)^-1; loss = MSE against the original
    output. The smallest loss wins (the first on ties). alpha = 0 gives s = 1, plain RTN, so
    the chosen loss is never above `rtn_loss` on this calibration objective.
    Computed in float32 (float64 if x is float64) on the first linear's device, one alpha and
    one linear at a time: memory is a few copies of the largest weight plus [in, in].
    Apply the result with `fold_scales_(prev, linears, result.s)`.
    """
    fn = "awq_search_scale"
    if isinstance(linears, nn.Module) or not isinstance(linears, Sequence) or not linears:
        raise ConfigError(f"{fn}: linears must be a non-empty list of nn.Linear")
    lins = [_check_linear(m, f"linears[{i}]", fn) for i, m in enumerate(linears)]
    if len({id(m) for m in lins}) != len(lins):
        raise ConfigError(f"{fn}: a linear is listed twice")
    n_in = lins[0].in_features
    for i, m in enumerate(lins):
        if m.in_features != n_in:
            raise ConfigError(
                f"{fn}: linears[{i}] has in_features {m.in_features}, linears[0] {n_in}; "
                "only linears sharing one input share a scale"
            )
    grid = _check_grid(grid, fn)
    if not callable(quant_w) or (forward is not None and not callable(forward)):
        raise ConfigError(f"{fn}: quant_w (and forward, if given) must be callables")
    flat = _flat_x(x, n_in, fn)
    device = lins[0].weight.device
    dtype = torch.float64 if flat.dtype == torch.float64 else torch.float32
    weights = [m.weight.detach().to(device=device, dtype=dtype) for m in lins]
    for i, w in enumerate(weights):
        if not bool(torch.isfinite(w).all()):
            raise ConfigError(f"{fn}: linears[{i}].weight holds NaN or inf")
    x_mean = _mean_abs(flat, device, dtype)

    def candidate(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return _quant(quant_w, w * s, fn) / s

    if forward is None:
        sse = _OutputSSE(flat, device, dtype)
        count = flat.shape[0] * sum(w.shape[0] for w in weights)

        def loss_of(s: torch.Tensor) -> float:
            return sum(sse(w - candidate(w, s)) for w in weights) / count

    else:
        ref = forward(weights).detach()

        def loss_of(s: torch.Tensor) -> float:
            out = forward([candidate(w, s) for w in weights]).detach()
            if out.shape != ref.shape:
                raise ConfigError(
                    f"{fn}: forward returned {tuple(out.shape)}, first {tuple(ref.shape)}"
                )
            diff = (out.to(ref.device) - ref).to(dtype)
            return float(diff.pow(2).sum(dtype=torch.float64)) / max(1, diff.numel())

    alphas = tuple(i / grid for i in range(grid))
    losses: list[float] = []
    best: tuple[float, float, torch.Tensor] | None = None
    for alpha in alphas:
        s = x_mean.pow(alpha).clamp(min=AWQ_SCALE_FLOOR)
        s = s / (s.max() * s.min()).sqrt()
        loss = loss_of(s)
        losses.append(loss)
        if math.isfinite(loss) and (best is None or loss < best[1]):
            best = (alpha, loss, s)
    if best is None:
        raise ConfigError(f"{fn}: every candidate's loss is NaN or inf; check quant_w")
    alpha, loss, s = best
    return AWQScale(
        s=s, alpha=alpha, loss=loss, alphas=alphas, losses=tuple(losses), rtn_loss=losses[0]
    )


def _subsample(x: torch.Tensor, max_tokens: int) -> torch.Tensor:
    """`max_tokens` evenly spaced rows of x (rows floor(k n / m), k < m), all if fewer."""
    n = x.shape[0]
    m = min(n, max_tokens)
    idx = torch.arange(m, dtype=torch.int64) * n // m
    return x[idx]


@torch.no_grad()
def awq_clip(
    x: torch.Tensor,
    weight: torch.Tensor,
    quant_w: QuantW,
    *,
    group: int,
    grid: int = 20,
    max_shrink: float = 0.5,
    max_tokens: int = 512,
) -> torch.Tensor:
    """AWQ's max-clip search: the clip value per (output row, input group), [out, n_groups].

    x: [tokens, in] (or [..., in]) the inputs this weight will actually see (after any scale
        fold: x / s); `max_tokens` evenly spaced tokens are used (deterministic, no RNG).
    weight: [out, in] (after any scale fold: W diag(s)).
    quant_w: [out, in] -> fake-quantized [out, in].
    group: the clip's group along in: the format's block size (32 for int4/block32, 16 for
        NVFP4), or in_features for a per-channel format. A ragged last group (in % group != 0)
        is zero-padded. n_groups = ceil(in / group).
    grid, max_shrink: candidate ratios r_i = 1 - i/grid for i = 0 .. floor(grid*max_shrink) - 1
        (the reference's 20 and 0.5: r = 1.0, 0.95, ..., 0.55).

    For each r, every group of W is clamped to +-r * amax(row, group) and the whole clamped
    matrix fake-quantized; the error of (row, group) is
        mean_t (sum_{k in group} x_tk (Q(W_r)_ok - W_ok))^2
    (the group's partial output error against the unclipped weight). Each (row, group) keeps
    the r with the smallest error (the largest r on ties); the result is r * amax.
    Computed in float32 (float64 if x is float64) on the weight's device; one candidate at a
    time, the error chunked over rows so no temporary exceeds 2^24 elements.

    Apply with `apply_clip_`. After clamping, each group's amax equals its clip value (the
    element that held the amax is clamped to exactly r * amax), so the format's own
    data-derived block scales reproduce the quantizer the search evaluated, provided every
    format block lies within one clip group (group a multiple of the block size).
    """
    fn = "awq_clip"
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.numel() == 0:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ConfigError(f"{fn}: weight must be a non-empty 2-D tensor [out, in], got {got}")
    n_out, n_in = weight.shape
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ConfigError(f"{fn}: group must be a positive integer (the block size), got {group!r}")
    grid = _check_grid(grid, fn)
    if not isinstance(max_shrink, int | float) or not 0.0 < max_shrink <= 1.0:
        raise ConfigError(f"{fn}: max_shrink must be in (0, 1], got {max_shrink!r}")
    n_cand = math.floor(grid * max_shrink + 1e-9)
    if n_cand < 1:
        raise ConfigError(f"{fn}: grid * max_shrink < 1 leaves no candidate; raise grid")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"{fn}: max_tokens must be a positive integer, got {max_tokens!r}")
    if not callable(quant_w):
        raise ConfigError(f"{fn}: quant_w must be a callable [out, in] -> [out, in]")
    flat = _flat_x(x, n_in, fn)
    device = weight.device
    dtype = torch.float64 if flat.dtype == torch.float64 else torch.float32
    w = weight.detach().to(dtype)
    if not bool(torch.isfinite(w).all()):
        raise ConfigError(f"{fn}: weight holds NaN or inf")
    n_groups = -(-n_in // group)
    pad = n_groups * group - n_in

    def grouped(t: torch.Tensor) -> torch.Tensor:  # [r, in] -> [r, n_groups, group]
        t = torch.nn.functional.pad(t, (0, pad)) if pad else t
        return t.reshape(t.shape[0], n_groups, group)

    xs = grouped(_subsample(flat, max_tokens).to(device=device, dtype=dtype))
    xs = xs.permute(1, 0, 2)  # [n_groups, tokens, group]
    n_tok = xs.shape[1]
    wg = grouped(w)
    amax = wg.abs().amax(-1)  # [out, n_groups]
    best_err = torch.full_like(amax, math.inf)
    best_val = amax.clone()
    rows = max(1, _CHUNK // (n_tok * n_groups))
    for i in range(n_cand):
        max_val = amax * (1.0 - i / grid)
        clipped = torch.clamp(wg, -max_val[..., None], max_val[..., None])
        q = _quant(quant_w, clipped.reshape(n_out, -1)[:, :n_in], fn)
        dw = grouped(q) - wg  # [out, n_groups, group]
        for r0 in range(0, n_out, rows):
            d = dw[r0 : r0 + rows].permute(1, 2, 0)  # [n_groups, group, r]
            err = torch.bmm(xs, d).pow(2).mean(1).T  # [r, n_groups]
            sl = slice(r0, r0 + d.shape[2])
            better = err < best_err[sl]
            best_err[sl] = torch.where(better, err, best_err[sl])
            best_val[sl] = torch.where(better, max_val[sl], best_val[sl])
    return best_val


@torch.no_grad()
def apply_clip_(linear: nn.Linear, max_val: torch.Tensor, *, group: int | None = None) -> None:
    """Clamp `linear.weight` in place to +-max_val per (row, group) (`awq_clip`'s result).

    max_val: [out, n_groups], finite and >= 0. group: the group size along in; by default
    in_features / n_groups (which must divide); give it for a ragged last group.
    """
    fn = "apply_clip_"
    lin = _check_linear(linear, "the module", fn)
    n_out, n_in = lin.weight.shape
    if not isinstance(max_val, torch.Tensor) or max_val.dim() != 2 or max_val.shape[0] != n_out:
        got = tuple(max_val.shape) if isinstance(max_val, torch.Tensor) else type(max_val)
        raise ConfigError(f"{fn}: max_val must be [{n_out}, n_groups], got {got}")
    n_groups = max_val.shape[1]
    if group is None:
        if n_groups == 0 or n_in % n_groups:
            raise ConfigError(
                f"{fn}: {n_groups} groups do not divide in_features {n_in}; pass group="
            )
        group = n_in // n_groups
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise ConfigError(f"{fn}: group must be a positive integer, got {group!r}")
    if -(-n_in // group) != n_groups:
        raise ConfigError(
            f"{fn}: group {group} makes {-(-n_in // group)} groups of in_features {n_in}, "
            f"max_val has {n_groups}"
        )
    if not bool(torch.isfinite(max_val).all()) or bool((max_val < 0).any()):
        raise ConfigError(f"{fn}: max_val must be finite and >= 0")
    w = lin.weight.data
    dt = torch.float64 if w.dtype == torch.float64 else torch.float32
    mv = max_val.detach().to(device=w.device, dtype=dt).repeat_interleave(group, dim=1)[:, :n_in]
    w.copy_(torch.clamp(w.to(mv.dtype), -mv, mv).to(w.dtype))
