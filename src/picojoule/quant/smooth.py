"""SmoothQuant's per-channel scales and the exact folding they rely on.

SmoothQuant (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training Quantization for
Large Language Models", ICML 2023, arXiv:2211.10438) moves activation outliers into the
weights. For a linear layer Y = X W^T (X [tokens, in], W [out, in]) and any positive s [in]:

    Y = (X diag(s)^-1) (W diag(s))^T                                        (paper eq. 3)

so dividing input channel j by s_j and multiplying weight column j by s_j changes nothing in
exact arithmetic, while the quantizers now see X' = X / s and W' = W s. The paper picks

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)                            (paper eq. 4)

with max|X_j| calibrated over a few batches and alpha the migration strength (0.5 for most
models). X / s is never computed at run time: the division is folded into the module that
produces X (a LayerNorm's weight and bias, an RMSNorm's weight, or a preceding Linear's output
rows) - `fold_scales_`. AWQ (picojoule.quant.awq) folds its scales the same way.

Building blocks (the caller decides which modules share an input and where folding applies):
- `ChannelAbsMax`: running per-input-channel max|x| and mean|x| over calibration batches.
- `smooth_scales`: eq. 4 for the linears that share one input.
- `fold_scales_`: the exact fold X' = X diag(s)^-1, W' = W diag(s), in place.

Importable with torch alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.errors import ConfigError
from picojoule.quant.api import is_quantized

__all__ = ["ChannelAbsMax", "smooth_scales", "fold_scales_", "SCALE_FLOOR"]

SCALE_FLOOR = 1e-5
"""Clamp of eq. 4, as the reference implementation (mit-han-lab/smoothquant, `smooth_ln_fcs`)
does: the per-channel weight max is clamped to >= 1e-5 before the power, and the scale itself
to >= 1e-5 after the division. The activation max is not clamped (a channel never seen
non-zero gets alpha > 0 -> s = 1e-5; alpha = 0 -> s = 1 / max|W_j|)."""


class ChannelAbsMax:
    """Running per-input-channel statistics of a layer's input over calibration batches.

    `add_batch(x)` takes x [..., in] (any leading dims: [tokens, in], [batch, seq, in]); every
    index of the leading dims is one sample (a token). Kept on x's device:
    - `absmax` [in]: max_t |x_tj| (SmoothQuant's max|X_j|, eq. 4), float32;
    - `mean_abs` [in]: mean_t |x_tj| (AWQ's activation magnitude), accumulated in float64;
    - `count`: samples seen.
    A NaN in x makes that channel's statistics NaN (`smooth_scales` then refuses them).
    """

    def __init__(self) -> None:
        self._max: torch.Tensor | None = None
        self._sum: torch.Tensor | None = None
        self.count: int = 0

    @torch.no_grad()
    def add_batch(self, x: torch.Tensor) -> None:
        """Fold one batch x [..., in] into the statistics."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() == 0:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x)
            raise ConfigError(f"ChannelAbsMax.add_batch: give a float tensor [..., in], got {got}")
        n_in = x.shape[-1]
        if self._max is not None and n_in != self._max.numel():
            raise ConfigError(
                f"ChannelAbsMax.add_batch: {n_in} channels, but earlier batches had "
                f"{self._max.numel()}; use one ChannelAbsMax per layer input"
            )
        flat = x.detach().reshape(-1, n_in)
        if self._max is None:
            self._max = torch.zeros(n_in, dtype=torch.float32, device=x.device)
            self._sum = torch.zeros(n_in, dtype=torch.float64, device=x.device)
        if flat.shape[0] == 0:
            return
        a = flat.abs()
        self._max = torch.maximum(self._max, a.amax(0).to(self._max))
        self._sum += a.sum(0, dtype=torch.float64).to(self._sum.device)  # type: ignore[operator]
        self.count += flat.shape[0]

    def _need(self) -> None:
        if self._max is None or self.count == 0:
            raise ConfigError("ChannelAbsMax: no samples yet; add_batch calibration inputs first")

    @property
    def in_features(self) -> int:
        """Number of channels (0 before the first batch)."""
        return 0 if self._max is None else self._max.numel()

    @property
    def absmax(self) -> torch.Tensor:
        """[in] max|x_j| over every sample seen (float32)."""
        self._need()
        return self._max.clone()  # type: ignore[union-attr]

    @property
    def mean_abs(self) -> torch.Tensor:
        """[in] mean|x_j| over every sample seen (float32; summed in float64)."""
        self._need()
        return (self._sum / self.count).float()  # type: ignore[operator]


def _check_alpha(alpha: float) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        a = float("nan")
    if not 0.0 <= a <= 1.0:  # NaN fails too
        raise ConfigError(f"SmoothQuant alpha {alpha!r}: give the migration strength in [0, 1]")
    return a


@torch.no_grad()
def smooth_scales(
    act_absmax: torch.Tensor, weights: Sequence[torch.Tensor], alpha: float = 0.5
) -> torch.Tensor:
    """SmoothQuant's per-input-channel scales s [in] (paper eq. 4).

        s_j = max|X_j|^alpha / (max_l max_o |W^l_oj|)^(1 - alpha)

    act_absmax: [in] calibrated max|X_j| (`ChannelAbsMax.absmax`), in the input's units.
    weights: the [out, in] weights of every linear that reads this input (e.g. q, k, v): they
        share one s, so the weight max runs over all of them (as the reference does).
    alpha: migration strength in [0, 1]; 0 leaves activations alone (s_j = 1 / max|W_j|),
        1 moves all of max|X_j| into the weights.
    Clamping (reference behaviour, `SCALE_FLOOR`): the weight max >= 1e-5, then s >= 1e-5.
    Computed in float32 (float64 if act_absmax is float64) on act_absmax's device.
    """
    a = _check_alpha(alpha)
    if not isinstance(act_absmax, torch.Tensor) or act_absmax.dim() != 1:
        got = tuple(act_absmax.shape) if isinstance(act_absmax, torch.Tensor) else act_absmax
        raise ConfigError(f"smooth_scales: act_absmax must be a 1-D tensor [in], got {got!r}")
    n_in = act_absmax.numel()
    if isinstance(weights, torch.Tensor) or not isinstance(weights, Sequence) or not weights:
        raise ConfigError("smooth_scales: weights must be a non-empty list of [out, in] tensors")
    for i, w in enumerate(weights):
        if not isinstance(w, torch.Tensor) or w.dim() != 2 or w.shape[1] != n_in:
            got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ConfigError(f"smooth_scales: weights[{i}] is {got}, expected [out, {n_in}]")
    dtype = torch.float64 if act_absmax.dtype == torch.float64 else torch.float32
    x_max = act_absmax.detach().to(dtype)
    if not bool(torch.isfinite(x_max).all()) or bool((x_max < 0).any()):
        raise ConfigError("smooth_scales: act_absmax holds a negative or non-finite value")
    w_max = torch.stack(
        [w.detach().abs().amax(0).to(device=x_max.device, dtype=dtype) for w in weights]
    ).amax(0)
    if not bool(torch.isfinite(w_max).all()):
        raise ConfigError("smooth_scales: a weight holds a non-finite value")
    w_max = w_max.clamp(min=SCALE_FLOOR)
    return (x_max.pow(a) / w_max.pow(1.0 - a)).clamp(min=SCALE_FLOOR)


def _is_rmsnorm(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return type(m).__name__.endswith("RMSNorm") and isinstance(w, torch.Tensor) and w.dim() == 1


def _refuse_changed(m: nn.Module, what: str) -> None:
    if is_quantized(m):
        raise ConfigError(f"fold_scales_: {what} is already fake-quantized; fold before quantize_")
    if parametrize.is_parametrized(m):
        raise ConfigError(
            f"fold_scales_: {what} has parametrizations on its weight (sparsity mask, "
            "quantizer); fold on the plain float model"
        )


@torch.no_grad()
def _scale_(t: torch.Tensor, s: torch.Tensor, divide: bool) -> None:
    """t <- t / s or t * s, s broadcast as given; computed in float32 (float64 for float64)."""
    dt = torch.float64 if t.dtype == torch.float64 else torch.float32
    s = s.to(device=t.device, dtype=dt)
    v = t.to(dt)
    t.copy_((v / s if divide else v * s).to(t.dtype))


def _probe(prev: nn.Module, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed input for prev and prev's output (hooks bypassed: calling `.forward`)."""
    w = prev.weight
    g = torch.Generator(device="cpu").manual_seed(0)
    p = torch.randn(4, n, generator=g, dtype=torch.float32).to(device=w.device, dtype=w.dtype)
    return p, prev.forward(p)


@torch.no_grad()
def fold_scales_(prev: nn.Module, linears: Sequence[nn.Linear], s: torch.Tensor) -> None:
    """Fold per-channel scales s [in] into a model, in place: X' = X diag(s)^-1, W' = W diag(s).

    The linears' shared input X is produced by `prev`, whose output channels are divided by s;
    each linear's weight columns are multiplied by s (bias unchanged), so every linear's
    output is unchanged up to float rounding (SmoothQuant eq. 3; AWQ section 3.2).

    prev:
    - `nn.LayerNorm` [in] with an affine weight: weight and bias divided by s;
    - an RMSNorm (a class whose name ends in "RMSNorm" with a 1-D `.weight`: torch's
      `nn.RMSNorm`, transformers' `LlamaRMSNorm`, `Qwen2RMSNorm`, ...): weight (and a 1-D
      bias, if any) divided by s. Gemma-style norms compute x_hat * (1 + w) and cannot be folded
      by dividing w: refused by name ("Gemma" in the class name) and, for any other RMSNorm,
      caught by a check that prev's output on a fixed probe input scaled by exactly 1/s
      (otherwise prev is restored and the fold refused);
    - `nn.Linear` with out_features == len(s): output rows (weight[j, :], bias[j]) divided by
      s_j. Exact only where prev's output reaches the linears through per-channel-linear ops:
      directly, or up_proj -> (act(gate) * up) -> down_proj, or v_proj -> attention -> o_proj
      when V's channels map one-to-one onto o_proj's inputs (as many KV heads as query heads).
      The caller decides where that holds.
    linears: every `nn.Linear` that reads prev's output (e.g. q, k, v), in_features == len(s).
    s: [in] positive finite scales (`smooth_scales`, or `awq_search_scale(...).s`).

    Refused (ConfigError, nothing changed): mismatched shapes, s not positive and finite, a
    module listed twice or prev among the linears, a module already fake-quantized
    (`picojoule.quant.api.is_quantized`) or with parametrizations on its weight.
    Weights are updated in float32 (float64 for float64 weights) and rounded to their dtype.
    """
    if not isinstance(s, torch.Tensor) or s.dim() != 1 or not s.is_floating_point():
        got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
        raise ConfigError(f"fold_scales_: s must be a 1-D float tensor [in], got {got}")
    n = s.numel()
    if n == 0 or not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ConfigError("fold_scales_: s must be positive and finite in every channel")
    if isinstance(linears, nn.Module) or not isinstance(linears, Sequence) or not linears:
        raise ConfigError("fold_scales_: linears must be a non-empty list of nn.Linear")
    if not isinstance(prev, nn.Module):
        raise ConfigError(f"fold_scales_: prev must be an nn.Module, got {type(prev).__name__}")
    ids = [id(m) for m in linears]
    if len(set(ids)) != len(ids) or id(prev) in ids:
        raise ConfigError("fold_scales_: a module is listed twice (or prev is also a linear)")
    for i, lin in enumerate(linears):
        if not isinstance(lin, nn.Linear):
            raise ConfigError(f"fold_scales_: linears[{i}] is {type(lin).__name__}, not nn.Linear")
        _refuse_changed(lin, f"linears[{i}]")
        if lin.in_features != n:
            raise ConfigError(
                f"fold_scales_: linears[{i}] has in_features {lin.in_features}, len(s) is {n}"
            )
    kind = type(prev).__name__
    _refuse_changed(prev, f"prev ({kind})")
    probe = None
    if isinstance(prev, nn.Linear):
        if prev.out_features != n:
            raise ConfigError(
                f"fold_scales_: prev Linear has out_features {prev.out_features}, len(s) is {n}"
            )
        params = [(prev.weight, s[:, None])]
        if prev.bias is not None:
            params.append((prev.bias, s))
    elif isinstance(prev, nn.LayerNorm):
        if prev.weight is None:
            raise ConfigError("fold_scales_: prev LayerNorm has no affine weight to fold into")
        if tuple(prev.normalized_shape) != (n,):
            raise ConfigError(
                f"fold_scales_: prev LayerNorm normalizes {tuple(prev.normalized_shape)}, "
                f"len(s) is {n}"
            )
        params = [(prev.weight, s)] + ([(prev.bias, s)] if prev.bias is not None else [])
    elif "Gemma" in kind:
        raise ConfigError(
            f"fold_scales_: {kind} multiplies by (1 + weight): dividing its weight would not "
            "divide its output by s; refusing to fold"
        )
    elif _is_rmsnorm(prev):
        if prev.weight.numel() != n:
            raise ConfigError(
                f"fold_scales_: prev {kind} has {prev.weight.numel()} channels, len(s) is {n}"
            )
        params = [(prev.weight, s)]
        bias = getattr(prev, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.shape == (n,):
            params.append((bias, s))
        try:
            probe = _probe(prev, n)
        except Exception as e:  # any failure: the fold cannot be verified
            raise ConfigError(f"fold_scales_: cannot run prev {kind} on a probe: {e}") from None
    else:
        raise ConfigError(
            f"fold_scales_: prev {kind} is not nn.LayerNorm, an RMSNorm or nn.Linear; fold "
            "into the module that produces the linears' input"
        )
    saved = [p.detach().clone() for p, _ in params]
    for p, scale in params:
        _scale_(p.data, scale, divide=True)
    if probe is not None:
        p_in, y0 = probe
        y1 = prev.forward(p_in)
        tol = 1e-4 if prev.weight.dtype in (torch.float32, torch.float64) else 3e-2
        ok = y1.shape == y0.shape and _close(y1.double() * s.double().to(y1.device), y0, tol)
        if not ok:
            for (p, _), old in zip(params, saved, strict=True):
                p.data.copy_(old)
            raise ConfigError(
                f"fold_scales_: dividing {kind}'s weight by s did not divide its output by s "
                "(a (1 + weight) norm?); refusing to fold"
            )
    for lin in linears:
        _scale_(lin.weight.data, s[None, :], divide=False)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    """a == b to `tol` relative to b's largest magnitude (a norm's rounding)."""
    b = b.double()
    scale = float(b.abs().max())
    if not (bool(torch.isfinite(a).all()) and math.isfinite(scale)):
        return False
    return float((a - b).abs().max()) <= tol * (scale or 1.0)
