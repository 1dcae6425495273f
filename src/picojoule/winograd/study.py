"""The Winograd precision study: error vs tile, point set and number format; model accuracy.

Public: `ErrorStats`, `ErrorRow`, `AccuracyRow`, `ConvOperands`, `relative_error`,
`direct_conv_in_format`, `winograd_conv_in_format`, `error_rows`, `random_operands`,
`capture_conv_operands`, `eligible_convs`, `accuracy_rows`.

Precision model (the same for every format, so rows are comparable):

* direct baseline: input and weight rounded to the format exactly as a `quantize_` recipe
  `w:FMT,a:FMT` rounds them (`picojoule.quant`: a bare 8-bit float or integer is scaled per
  output channel for weights and per tensor for activations), products exact, sums in
  float64 - a direct-convolution datapath with multipliers in the format, wide accumulators;
* Winograd: the same rounded input and weight, transforms in float64, the transformed tiles
  U = G g G^T and V = BT d BT^T rounded to the format again (they are what the multipliers
  see), products and sums in float64, output transform in float64.

So Winograd's extra error comes from rounding U and V and from the output transform AT, whose
large entries for big tiles amplify it (Barabasz et al., ACM TOMS 46(4), 2020). The reference is
float64 direct convolution of the unrounded operands.

Errors are normwise so that outputs near zero do not dominate: max_rel = max|y - ref| / max|ref|
and mean_rel = mean|y - ref| / mean|ref|.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.quant import ActivationFakeQuant, WeightFakeQuant, quantize_, resolve_format
from picojoule.quant.capture import run_batch
from picojoule.winograd.conv import Padding, winograd_conv2d
from picojoule.winograd.convert import winogradize_
from picojoule.winograd.cost import winograd_cost
from picojoule.winograd.errors import WinogradError
from picojoule.winograd.transforms import point_set

__all__ = [
    "AccuracyRow",
    "ConvOperands",
    "ErrorRow",
    "ErrorStats",
    "accuracy_pct",
    "accuracy_rows",
    "capture_conv_operands",
    "direct_conv_in_format",
    "eligible_convs",
    "error_rows",
    "random_operands",
    "relative_error",
    "winograd_conv_in_format",
]


@dataclass(frozen=True, kw_only=True)
class ErrorStats:
    """Normwise relative errors (dimensionless) of an output against its reference."""

    max_rel: float
    mean_rel: float


@dataclass(frozen=True, kw_only=True)
class ConvOperands:
    """One convolution's operands: a random draw or a layer's real input and weight."""

    name: str
    x: torch.Tensor
    weight: torch.Tensor
    padding: Padding
    groups: int = 1


@dataclass(frozen=True, kw_only=True)
class ErrorRow:
    """Errors of F(m x m, r x r) in one format against float64 direct convolution."""

    data: str
    m: int
    r: int
    point_set: str
    format: str
    multiply_reduction: float
    winograd: ErrorStats
    direct: ErrorStats

    @property
    def error_growth(self) -> float | None:
        """Winograd max error / direct max error in the same format; None when the direct
        error is exactly zero (data already representable in the format, e.g. fp32)."""
        return self.winograd.max_rel / self.direct.max_rel if self.direct.max_rel else None


@dataclass(frozen=True, kw_only=True)
class AccuracyRow:
    """The model's metric with every eligible conv converted: top-1 test accuracy in percent
    (`accuracy_pct`), or the `score` `accuracy_rows` was given."""

    format: str
    tile: int | None
    """None: direct convolution (operands in `format`), the baseline for this format."""
    value: float
    converted: int

    @property
    def accuracy_pct(self) -> float:
        """`value`, by its name where the metric is top-1 accuracy in percent."""
        return self.value


def relative_error(y: torch.Tensor, ref: torch.Tensor) -> ErrorStats:
    """Normwise max and mean relative error of `y` against `ref` (computed in float64)."""
    err = (y.double() - ref.double()).abs()
    scale_max, scale_mean = ref.double().abs().max().item(), ref.double().abs().mean().item()
    if scale_max == 0:
        raise WinogradError("reference output is all zeros; relative error is undefined")
    return ErrorStats(max_rel=err.max().item() / scale_max, mean_rel=err.mean().item() / scale_mean)


def _rounded_operands(op: ConvOperands, fmt_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, weight) in float64, rounded as `quantize_(model, "w:FMT,a:FMT")` rounds them."""
    x_fmt, w_fmt = resolve_format(fmt_name, "activation"), resolve_format(fmt_name, "weight")
    x = ActivationFakeQuant(x_fmt)(op.x.double())
    return x, WeightFakeQuant(w_fmt)(op.weight.double())


def direct_conv_in_format(op: ConvOperands, fmt_name: str) -> torch.Tensor:
    """Direct convolution with input and weight rounded to `fmt_name`, in float64."""
    x, w = _rounded_operands(op, fmt_name)
    return F.conv2d(x, w, padding=op.padding, groups=op.groups)


def winograd_conv_in_format(
    op: ConvOperands, fmt_name: str, m: int, points: Sequence[object] | None
) -> torch.Tensor:
    """F(m x m) Winograd with operands and transformed tiles rounded to `fmt_name`."""
    x, w = _rounded_operands(op, fmt_name)
    return _winograd(replace(op, x=x, weight=w), fmt_name, m, points)


def _winograd(
    rounded: ConvOperands, fmt_name: str, m: int, points: Sequence[object] | None
) -> torch.Tensor:
    return winograd_conv2d(
        rounded.x,
        rounded.weight,
        padding=rounded.padding,
        groups=rounded.groups,
        tile=m,
        points=points,
        transform_format=fmt_name,
    )


def random_operands(
    *, batch: int = 2, channels: int = 32, size: int = 16, r: int = 3, seed: int = 0
) -> ConvOperands:
    """Standard-normal input and He-scaled weight (std sqrt(2 / fan_in), He et al. 2015)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, size, size, generator=gen, dtype=torch.float64)
    w = torch.randn(channels, channels, r, r, generator=gen, dtype=torch.float64)
    return ConvOperands(
        name="random", x=x, weight=w * (2 / (channels * r * r)) ** 0.5, padding=r // 2
    )


def error_rows(
    operands: Iterable[ConvOperands],
    *,
    tiles: Sequence[int],
    point_sets: Sequence[str],
    format_names: Sequence[str],
) -> list[ErrorRow]:
    """Winograd and direct errors for every operand set x tile x point set x format."""
    rows = []
    for op in operands:
        r_h, r_w = op.weight.shape[-2:]
        if r_h != r_w:
            raise WinogradError(f"{op.name}: the study takes square kernels, got {r_h}x{r_w}")
        ref = F.conv2d(op.x.double(), op.weight.double(), padding=op.padding, groups=op.groups)
        for fmt_name in format_names:
            # Round the operands once per format: every tile and point set sees the same ones.
            x_q, w_q = _rounded_operands(op, fmt_name)
            rounded = replace(op, x=x_q, weight=w_q)
            direct = relative_error(F.conv2d(x_q, w_q, padding=op.padding, groups=op.groups), ref)
            for m in tiles:
                reduction = winograd_cost(m, r_h).multiply_reduction
                for ps in point_sets:
                    y = _winograd(rounded, fmt_name, m, point_set(ps, m + r_h - 1))
                    rows.append(
                        ErrorRow(
                            data=op.name,
                            m=m,
                            r=r_h,
                            point_set=ps,
                            format=fmt_name,
                            multiply_reduction=reduction,
                            winograd=relative_error(y, ref),
                            direct=direct,
                        )
                    )
    return rows


def eligible_convs(
    model: nn.Module, kernel_sizes: Sequence[int] = (3,)
) -> list[tuple[str, nn.Conv2d]]:
    """(name, conv) of every conv the study converts: nn.Conv2d, stride 1, dilation 1, zero
    padding, both kernel sides in `kernel_sizes`."""
    return [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Conv2d)
        and tuple(mod.stride) == (1, 1)
        and tuple(mod.dilation) == (1, 1)
        and mod.padding_mode == "zeros"
        and all(r in kernel_sizes for r in mod.kernel_size)
    ]


def capture_conv_operands(
    model: nn.Module, x: Any, *, kernel_sizes: Sequence[int] = (3,)
) -> list[ConvOperands]:
    """The real input and weight of every eligible conv of `model` on the batch `x` (a
    tensor, a tuple of positional inputs or a dict of keyword inputs)."""
    captured: list[ConvOperands] = []
    handles = []
    convs = eligible_convs(model, kernel_sizes)
    if not convs:
        return captured
    for name, conv in convs:

        def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], name: str = name) -> None:
            captured.append(
                ConvOperands(
                    name=name,
                    x=args[0].detach().double(),
                    weight=mod.weight.detach().double(),
                    padding=mod.padding,  # type: ignore[arg-type]
                    groups=mod.groups,
                )
            )

        handles.append(conv.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run_batch(model.eval(), x)
    finally:
        for h in handles:
            h.remove()
    return captured


def _operands_in_format(model: nn.Module, fmt_name: str, kernel_sizes: Sequence[int]) -> int:
    """`quantize_` the eligible convs' weights and inputs to `fmt_name`; returns how many."""
    names = {name for name, _ in eligible_convs(model, kernel_sizes)}
    applied = quantize_(
        model, f"w:{fmt_name},a:{fmt_name}", filter_fn=lambda mod, name: name in names
    )
    return sum(not a.skipped for a in applied)


def accuracy_pct(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> float:
    correct = total = 0
    model.eval()
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(dim=-1) == y).sum())
            total += int(y.numel())
    if total == 0:
        raise WinogradError("the test loader yielded no samples")
    return 100.0 * correct / total


def accuracy_rows(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    *,
    tiles: Sequence[int],
    format_names: Sequence[str],
    kernel_sizes: Sequence[int] = (3,),
    score: Callable[[nn.Module], float] | None = None,
) -> list[AccuracyRow]:
    """Accuracy with convs direct (operands in the format) and winogradized for each tile:
    top-1 percent on `loader`'s (inputs, labels), or `score(model)` where given (a task's
    metric).

    The model is copied for each row; the caller's model is not modified. Each row first
    `quantize_`s the eligible convs with the recipe `w:FMT,a:FMT` (the direct baseline), then,
    for a tile, `winogradize_`s them with `transform_format=FMT`. Other layers stay in float, so
    the rows isolate the convolutions.
    """
    if score is None:
        if loader is None:
            raise WinogradError("accuracy_rows needs a loader of (inputs, labels) or a score")
        batches = loader

        def score(m: nn.Module) -> float:
            return accuracy_pct(m, batches)

    rows = []
    for fmt_name in format_names:
        for m in (None, *tiles):
            variant = copy.deepcopy(model)
            _operands_in_format(variant, fmt_name, kernel_sizes)
            converted = 0
            if m is not None:
                applied = winogradize_(
                    variant, m, kernel_sizes=kernel_sizes, transform_format=fmt_name
                )
                converted = sum(not a.skipped for a in applied)
            rows.append(
                AccuracyRow(
                    format=fmt_name,
                    tile=m,
                    value=score(variant),
                    converted=converted,
                )
            )
    return rows
