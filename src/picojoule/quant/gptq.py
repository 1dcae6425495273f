"""GPTQ: one layer's weights rounded column by column with second-order error feedback.

Public: `gptq_quantize`, `GPTQResult`.

Frantar, Ashkboos, Hoefler & Alistarh, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", ICLR 2023. For a weight W [out, in] and the layer
Hessian H = 2/n X X^T (`picojoule.quant.hessian`), GPTQ minimises ||W X - Q X||^2 over Q in
the format's grid, one input column q at a time (Optimal Brain Quantization, the paper's Eq. 2
and 3):

    e = (w_q - quant(w_q)) / [H_F^-1]_qq          (w_q: column q, all rows at once)
    W[:, F] -= e [H_F^-1]_{q, F}                  (F: the columns after q)
    H_F^-1  <- Schur complement without q         (never formed: see below)

with three changes from OBQ, all exact or nearly so (section 3): a fixed column order (step 1:
every row uses the same order, so H_F^-1 is shared); lazy batch updates (step 2: updates
inside a block of `block_size` columns are applied at once, columns after the block get one
matrix product per block); and the Cholesky reformulation (step 3, Algorithm 1): with U the
upper Cholesky factor of (H + lambda I)^-1, row q of U is [H_F^-1]_{q, F} / sqrt([H_F^-1]_qq),
so e = (w_q - quant(w_q)) / U_qq and W[:, F] -= e U_{q, F} give the same updates.

`loss` is the reference's sum over rows and columns of (w_q - quant(w_q))^2 / U_qq^2, halved:
the OBS increase of the objective 1/2 dW H dW^T summed over rows, i.e. with our
H = 2/n X X^T the mean over calibration rows of ||(W - Q) x||^2 under the dampened Hessian
(the objective's exact value for a quadratic, up to rounding). Units: output units squared.

Scales. A column is quantized with the scales of its group, and scales are chosen:
- per-tensor and per-channel formats (`int8/tensor`, `int4/channel`, and `int4`, `e4m3` ...
  as `resolve_format(name, "weight")` scales them): once, from the whole W before the loop
  (the reference's groupsize = -1).
- block formats (`int4/block128`, `mxfp4`, `nvfp4`, `vsq4_v16_s4`: block G along the input
  dim): at each group's first column, from the group's CURRENT weights (error feedback from
  earlier columns applied) - the reference's groupsize = G. NVFP4's per-tensor scale and
  VS-Quant's per-row second-level scale come from the whole original W, passed as `amax`.
  With `static_groups=True` all group scales come from the original W before the loop (the
  reference's --static-groups), which act_order requires: act order visits a group's columns
  out of order, and our formats' groups are contiguous input columns.
- unscaled formats (`bf16`, `e4m3/none`, raw element formats): elementwise casts.
- codebooks are refused: k-means fits its values to the whole tensor, there is no per-column
  quantizer to feed errors to (use wcal:rtn).
Dead columns (H_ii == 0: an input that was zero in every sample) are zeroed first, as in the
reference, and the scales are fit after that.

Representability. `result.weight` holds values of the format under `result.scales`:
`fmt.quantize_fixed(result.weight, result.scales)` returns it bit for bit (float32 or float64
weights; not VS-Quant `_paper`, which rounds with a scale other than the one it stores).
Re-quantizing with data-derived scales, `fmt.quantize(result.weight)`, returns it unchanged
only for power-of-two scales (MX: a group's largest quantized value keeps the scale's exponent
or lowers it, and the finer grid holds the coarser one) and unscaled formats. For fp32-, E4M3-
or integer-scaled formats it changes values wherever a group's (row's, tensor's) largest
magnitude moved during the loop - so a model should apply GPTQ weights as they are, or with
`quantize_fixed(w, result.scales)`, not through another `quantize`.

Column order: the Hessian's rows and columns must index the weight's columns. A Linear weight
[out, in] pairs with its input's features; a convolution's weight view `reduction_last(w,
"weight")` [K, R*S*C] (C fastest) pairs with the unfolded input in that same (tap, channel)
order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from picojoule.errors import ConfigError, PicojouleError, ShapeError
from picojoule.formats.scaled import FixedScales, ScaledFormat
from picojoule.formats.spec import CodebookFormat, FloatFormat, IntFormat, LNSFormat
from picojoule.quant.hessian import dampened_inverse_cholesky, dead_columns

if TYPE_CHECKING:
    from picojoule.formats import Format

__all__ = ["GPTQResult", "gptq_quantize", "ROUNDINGS"]

ROUNDINGS = ("nearest_even", "stochastic", "toward_zero")


@dataclass(frozen=True, eq=False)
class GPTQResult:
    """weight: the quantized weight [out, in], the input's dtype (values of the format).
    loss: the GPTQ objective, output units squared (see the module docstring).
    seconds: wall time of `gptq_quantize`.
    scales: the scales every column was quantized with, for `fmt.quantize_fixed` (None for
        unscaled formats)."""

    weight: torch.Tensor
    loss: float
    seconds: float
    scales: FixedScales | None


def _resolve(fmt: Format | str) -> Format:
    if isinstance(fmt, str):
        from picojoule.quant.recipe import resolve_format

        fmt = resolve_format(fmt, "weight")
    if isinstance(fmt, CodebookFormat):
        raise ConfigError(
            f"{fmt.name}: GPTQ needs a scalar format; codebooks fit their values to the whole "
            "tensor, so there is no per-column rounding to correct - use wcal:rtn"
        )
    if not isinstance(fmt, ScaledFormat | FloatFormat | IntFormat | LNSFormat):
        raise ConfigError(f"GPTQ takes a picojoule format or its name, got {type(fmt).__name__}")
    return fmt


def check_layer(weight: torch.Tensor, hessian: torch.Tensor, block_size: int, who: str) -> None:
    """Shared argument checks of GPTQ and SparseGPT (ShapeError / ConfigError one-liners)."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.numel() == 0:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ShapeError(
            f"{who} takes a 2-D weight [out, in], got {got}; view a conv weight with "
            "reduction_last(w, 'weight')"
        )
    if not weight.is_floating_point():
        raise ShapeError(f"{who} takes a floating-point weight, got {weight.dtype}")
    cols = weight.shape[1]
    if not isinstance(hessian, torch.Tensor) or tuple(hessian.shape) != (cols, cols):
        got = tuple(hessian.shape) if isinstance(hessian, torch.Tensor) else type(hessian).__name__
        raise ShapeError(
            f"{who}: the Hessian is {got} but the weight has {cols} input columns; build it "
            f"from this layer's inputs [..., {cols}] (HessianAccumulator)"
        )
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ConfigError(f"{who}: block_size={block_size!r}: give a positive number of columns")
    if not torch.isfinite(weight).all():
        raise PicojouleError(f"{who}: the weight holds NaN/inf; fix the checkpoint first")


class _ColumnQuantizer:
    """Quantizes one column of W with its group's scales (module docstring, "Scales")."""

    def __init__(
        self,
        fmt: Format,
        w: torch.Tensor,
        *,
        static_groups: bool,
        rounding: str,
        generator: torch.Generator | None,
    ) -> None:
        self.fmt = fmt
        self.kw = {"rounding": rounding, "generator": generator}
        self.fixed: FixedScales | None = None  # scales chosen before the loop
        self.group: int | None = None  # G when scales are refit at each group's first column
        self.amax: torch.Tensor | None = None  # coarse amax of the original W for refits
        self.parts: list[FixedScales] = []
        self.start = 0
        if isinstance(fmt, ScaledFormat):
            if fmt.block is None or static_groups:
                self.fixed = fmt.fit_scales(w, coarse="row")
            else:
                self.group = fmt.block
                if fmt.kind == "nvfp4":
                    self.amax = w.abs().amax()
                elif fmt.kind == "vsq" and fmt.scale_bits:
                    self.amax = w.abs().amax(dim=1)

    def refit(self, group_w: torch.Tensor, start: int) -> None:
        """Fit the scales of the group starting at column `start` on its current weights."""
        fmt = self.fmt
        assert isinstance(fmt, ScaledFormat)
        self.parts.append(fmt.fit_scales(group_w, amax=self.amax, coarse="row"))
        self.start = start

    def __call__(self, col: torch.Tensor, c: int) -> torch.Tensor:
        """quant(col) for the column `c` of the original (unpermuted) W; col: [rows]."""
        fmt = self.fmt
        if not isinstance(fmt, ScaledFormat):
            return fmt.quantize(col, **self.kw)  # type: ignore[arg-type]
        if self.group is not None:
            scales, c = self.parts[-1], c - self.start
        else:
            assert self.fixed is not None
            scales = self.fixed
        return fmt.quantize_fixed(col[:, None], scales, cols=c, **self.kw)[:, 0]  # type: ignore[arg-type]

    def scales(self, cols: int) -> FixedScales | None:
        """Every column's scales as one FixedScales over [rows, cols]."""
        if self.group is None:
            return self.fixed
        parts = self.parts

        def cat(ts: list[torch.Tensor | None]) -> torch.Tensor | None:
            return None if ts[0] is None else torch.cat(ts, dim=1)  # type: ignore[arg-type]

        return FixedScales(
            divisor=torch.cat([p.divisor for p in parts], dim=1),
            mult=torch.cat([p.mult for p in parts], dim=1),
            mult2=cat([p.mult2 for p in parts]),
            block=self.group,
            cols=cols,
            format=self.fmt.name,
        )


def gptq_quantize(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    fmt: Format | str,
    *,
    block_size: int = 128,
    damp: float = 0.01,
    act_order: bool = False,
    static_groups: bool = False,
    rounding: str = "nearest_even",
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
) -> GPTQResult:
    """Quantize one layer's weight [out, in] with GPTQ (Frantar et al. 2023, Algorithm 1).

    hessian: [in, in], H = 2/n X X^T of the layer's inputs (`HessianAccumulator.hessian()`),
        indexed like the weight's columns. fmt: a format or a recipe's weight format name
        (resolved with `resolve_format(name, "weight")`: `int4` is `int4/channel`).
    block_size: columns per lazy batch update (section 3, step 2; 128 in the paper). With a
        block format of group G it is rounded to a multiple of G (at least G) so each group
        lies in one block; the result does not depend on it beyond float rounding.
    damp: lambda as a fraction of the mean diagonal of H (section 4: 1%).
    act_order: visit columns by decreasing H_ii (the reference's --act-order, "desc_act");
        with a block format it needs static_groups=True.
    static_groups: fit every group's scales on the original W before the loop.
    rounding: the element rounding of `fmt` (stochastic draws from `generator`).
    mask: bool [out, in], True = kept (a sparsity mask, `picojoule.sparsity`): pruned weights
        are held at zero inside the loop and their error is fed to the kept ones, as
        SparseGPT's joint pruning + quantization does (SparseGPT section 3.5); scales are fit
        on the masked weights. Zeroing pruned weights after GPTQ instead loses their update.
    Works in float64 for float64 weights, else float32 (H^-1 is always factored in float64);
    the result is cast back to the weight's dtype, so pass float32 (or float64) weights for
    values exactly on the format's grid (a bf16 weight gets them rounded to bf16).
    """
    start_time = time.perf_counter()
    fmt = _resolve(fmt)
    check_layer(weight, hessian, block_size, "gptq_quantize")
    if rounding not in ROUNDINGS:
        raise ConfigError(f"rounding={rounding!r}: use one of {', '.join(ROUNDINGS)}")
    if act_order and isinstance(fmt, ScaledFormat) and fmt.block and not static_groups:
        raise ConfigError(
            f"{fmt.name}: act_order visits a block's columns out of order; pass "
            "static_groups=True (scales from the original weights) or act_order=False"
        )
    if mask is not None and (mask.dtype != torch.bool or mask.shape != weight.shape):
        raise ShapeError(
            f"gptq_quantize: mask must be bool {tuple(weight.shape)} like the weight (True = "
            f"kept), got {mask.dtype} {tuple(mask.shape)}"
        )
    wd = torch.float64 if weight.dtype == torch.float64 else torch.float32
    w = weight.detach().to(wd).clone()
    rows, cols = w.shape
    h = hessian.detach().to(device=w.device)
    dead = dead_columns(h)
    w[:, dead] = 0.0
    if mask is not None:
        mask = mask.to(w.device)
        w = torch.where(mask, w, 0.0)
    quant = _ColumnQuantizer(
        fmt, w, static_groups=static_groups, rounding=rounding, generator=generator
    )
    group = quant.group
    if group is not None:  # each group inside one lazy block
        block_size = max(group, block_size // group * group)

    perm: torch.Tensor | None = None
    if act_order:
        diag = torch.diagonal(h).clone()
        diag[dead] = 1.0  # the reference orders after setting dead H_ii to 1
        perm = torch.argsort(diag, descending=True, stable=True)
        h = h[perm][:, perm]
        w = w[:, perm]
        mask = mask[:, perm] if mask is not None else None
    order = perm.tolist() if perm is not None else range(cols)
    u = dampened_inverse_cholesky(h, damp).to(wd)

    q_all = torch.zeros_like(w)
    losses = torch.zeros(rows, dtype=wd, device=w.device)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()  # this block's columns, updated eagerly
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            c = i1 + i
            if group is not None and c % group == 0:  # fit on the group's current weights
                gw = w1[:, i : i + group]
                quant.refit(gw if mask is None else torch.where(mask[:, c : c + group], gw, 0), c)
            col = w1[:, i]
            q = quant(col, order[c])
            if mask is not None:
                q = torch.where(mask[:, c], q, 0.0)
            q_all[:, c] = q
            e = (col - q) / u1[i, i]  # Algorithm 1: E = (W - Q) / [U]_jj
            losses.addcmul_(e, e)
            w1[:, i + 1 :].addr_(e, u1[i, i + 1 :], alpha=-1.0)
            err1[:, i] = e
        if i2 < cols:  # lazy batch update of the columns after the block
            w[:, i2:].addmm_(err1, u[i1:i2, i2:], alpha=-1.0)

    if perm is not None:
        q_all = q_all[:, torch.argsort(perm)]
    loss = float(losses.sum()) / 2.0
    return GPTQResult(
        weight=q_all.to(weight.dtype),
        loss=loss,
        seconds=time.perf_counter() - start_time,
        scales=quant.scales(cols),
    )
