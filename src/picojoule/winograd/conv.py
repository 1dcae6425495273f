"""2-D Winograd convolution: a functional reference and a drop-in `nn.Conv2d` subclass.

Public: `winograd_conv2d`, `WinogradConv2d`, `transform_tensors`.

Algorithm (Lavin & Gray, CVPR 2016, Sec. 4, Eq. 8), for a stride-1 conv with kernel
r_h x r_w, tile m_h x m_w and n = m + r - 1:

1. pad the input (the conv's own padding, then zeros at the bottom/right so that the output is a
   whole number of tiles; the extra outputs are cropped), cut it into overlapping n_h x n_w tiles
   with stride m: d [N, C, T_h, T_w, n_h, n_w];
2. input transform V = BT_h d BT_w^T, weight transform U = G_h g G_w^T [K, C/groups, n_h, n_w];
3. for each of the n_h * n_w transform-domain coordinates, one GEMM over input channels:
   M[k, tile] = sum_c U[k, c] V[c, tile] - the element-wise products of the algorithm;
4. output transform Y = AT_h M AT_w^T [N, K, T_h, T_w, m_h, m_w], untiled and cropped.

Transforms and the GEMMs run in the input's dtype. With `transform_format` set, U and V are
fake-quantized to that picojoule format right before the products - a datapath whose
multipliers take that format and whose transforms and accumulators are wide. The name means
what it means in a `quantize_` recipe (`picojoule.quant.resolve_format`): U is a weight and V an
activation, so a bare 8-bit float or integer name is scaled per row for U and per tensor for V
(`e4m3/none` is the raw cast). Both are laid out as [n_h * n_w, groups, rows, C/groups], the
GEMM's reduction (input channels) last: blocks run along channels and a U row - one scale in
`/channel` formats - is one (transform coordinate, output channel) pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.formats import Format, ScaledFormat
from picojoule.quant import resolve_format
from picojoule.winograd.errors import WinogradError
from picojoule.winograd.transforms import Point, cook_toom, parse_points

__all__ = ["WinogradConv2d", "transform_tensors", "winograd_conv2d"]

Padding = int | tuple[int, int] | str


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in pair):
        raise WinogradError(f"{what} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


def _tile(tile: int | Sequence[int]) -> tuple[int, int]:
    pair = _pair(tile, "tile")
    if min(pair) < 1:
        raise WinogradError(f"tile must be positive (outputs per tile side), got {tile!r}")
    return pair


@lru_cache(maxsize=128)
def transform_tensors(
    m: int,
    r: int,
    points: tuple[Point, ...] | None,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(AT, G, BT) of F(m, r) as tensors, each entry the nearest `dtype` value of the exact one.

    Fractions are rounded once to float64 (correctly, by `Fraction.__float__`) and then to
    `dtype`. Cached: the derivation and conversion run once per (m, r, points, dtype, device).
    """
    mats = cook_toom(m, r, points)
    return tuple(  # type: ignore[return-value]
        torch.tensor([[float(v) for v in row] for row in mat], dtype=torch.float64)
        .to(dtype)
        .to(device)
        for mat in mats
    )


@lru_cache(maxsize=128)
def _transforms_2d(
    tile: tuple[int, int],
    kernel: tuple[int, int],
    points: tuple[Point, ...] | None,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2-D transforms as Kronecker products, kron(T_h, T_w), acting on row-major flattened
    tiles: kron(BT_h, BT_w) @ vec(d) = vec(BT_h d BT_w^T). Built in float64, then cast once.

    One GEMM with the Kronecker matrix replaces the nested pair of small matmuls: the same
    result (up to rounding of the products of two entries) and far faster in torch.
    """
    one_h = transform_tensors(tile[0], kernel[0], points, torch.float64, torch.device("cpu"))
    one_w = transform_tensors(tile[1], kernel[1], points, torch.float64, torch.device("cpu"))
    return tuple(  # type: ignore[return-value]
        torch.kron(a, b).to(dtype=dtype, device=device) for a, b in zip(one_h, one_w, strict=True)
    )


def _same_padding(r: int) -> tuple[int, int]:
    # torch's convention for padding="same": the odd extra pad goes after (bottom/right).
    total = r - 1
    return total // 2, total - total // 2


def _pad_amounts(padding: Padding, r_h: int, r_w: int) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding, the order `F.pad` takes for the last two dims."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            return (*_same_padding(r_w), *_same_padding(r_h))
        raise WinogradError(f"padding {padding!r}: use an int, a pair, 'same' or 'valid'")
    p_h, p_w = _pair(padding, "padding")
    if min(p_h, p_w) < 0:
        raise WinogradError(f"padding must be non-negative, got {padding!r}")
    return p_w, p_w, p_h, p_h


def _check_operands(x: torch.Tensor, weight: torch.Tensor, groups: int) -> None:
    if x.dim() != 4:
        raise WinogradError(f"input must be [N, C, H, W] or [C, H, W], got shape {list(x.shape)}")
    if weight.dim() != 4:
        raise WinogradError(f"weight must be [K, C/groups, r_h, r_w], got {list(weight.shape)}")
    if not x.is_floating_point() or x.dtype != weight.dtype:
        raise WinogradError(
            f"input ({x.dtype}) and weight ({weight.dtype}) must share one floating dtype"
        )
    k, c_g = weight.shape[:2]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or k % groups:
        raise WinogradError(f"groups={groups!r} must be a positive int dividing K={k}")
    if x.shape[1] != c_g * groups:
        raise WinogradError(
            f"input has {x.shape[1]} channels; weight {list(weight.shape)} with groups={groups} "
            f"expects {c_g * groups}"
        )


def winograd_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    padding: Padding = 0,
    groups: int = 1,
    tile: int | Sequence[int] = (4, 4),
    points: Sequence[object] | None = None,
    transform_format: str | None = None,
) -> torch.Tensor:
    """Stride-1 `F.conv2d(x, weight, bias, padding=padding, groups=groups)` by Winograd.

    Args:
        x: [N, C, H, W] or unbatched [C, H, W].
        weight: [K, C/groups, r_h, r_w]; any kernel size (r=1 works but saves nothing).
        padding: zero padding, as in `F.conv2d` (int, pair, 'same', 'valid').
        tile: outputs per tile, (m_h, m_w) or one int for both.
        points: interpolation points for both axes (see `cook_toom`); default well conditioned.
        transform_format: picojoule format name for the transform-domain products, or None.

    Raises:
        WinogradError: bad shapes or arguments, or a kernel larger than the padded input.
        FormatError: unknown `transform_format`.
    """
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    _check_operands(x, weight, groups)
    m_h, m_w = _tile(tile)
    k, c_g, r_h, r_w = weight.shape
    pts = None if points is None else parse_points(points)
    fmts = None if transform_format is None else operand_formats(transform_format)

    x = F.pad(x, _pad_amounts(padding, r_h, r_w))
    n, c, h, w = x.shape
    p, q = h - r_h + 1, w - r_w + 1
    if p < 1 or q < 1:
        raise WinogradError(
            f"kernel {r_h}x{r_w} is larger than the padded input {h}x{w}; pad the input or "
            "use a smaller kernel"
        )
    n_h, n_w = m_h + r_h - 1, m_w + r_w - 1
    t_h, t_w = math.ceil(p / m_h), math.ceil(q / m_w)
    x = F.pad(x, (0, t_w * m_w + r_w - 1 - w, 0, t_h * m_h + r_h - 1 - h))
    at2, g2, bt2 = _transforms_2d((m_h, m_w), (r_h, r_w), pts, x.dtype, x.device)
    nn_, tiles, g_k = n_h * n_w, t_h * t_w, k // groups

    # Input transform as one GEMM on flattened tiles: [n_h*n_w, N*C*T] (copy of the unfold view).
    d = x.unfold(2, n_h, m_h).unfold(3, n_w, m_w)  # [N, C, T_h, T_w, n_h, n_w]
    v = bt2 @ d.permute(4, 5, 0, 1, 2, 3).reshape(nn_, -1)
    # GEMM layout: [coordinate, group, rows, C/g] with the channel reduction last.
    v = v.view(nn_, n, groups, c_g, tiles).permute(0, 2, 1, 4, 3).reshape(nn_, groups, -1, c_g)
    u = (weight.reshape(k * c_g, r_h * r_w) @ g2.T).T.reshape(nn_, groups, g_k, c_g)
    if fmts is not None:
        u, v = _fake_quant(fmts[0], u, "row"), _fake_quant(fmts[1], v, "tensor")
    prod = u @ v.transpose(-1, -2)  # [n_h*n_w, groups, K/g, N*T]: the element-wise products
    y = at2 @ prod.reshape(nn_, -1)  # [m_h*m_w, K*N*T]
    y = y.view(m_h, m_w, k, n, t_h, t_w).permute(3, 2, 4, 0, 5, 1)  # [N, K, T_h, m_h, T_w, m_w]
    y = y.reshape(n, k, t_h * m_h, t_w * m_w)[:, :, :p, :q]
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y.squeeze(0) if unbatched else y


def operand_formats(name: str) -> tuple[Format, Format]:
    """(format of U, format of V) for a transform-format name, as a quant recipe reads it."""
    return resolve_format(name, "weight"), resolve_format(name, "activation")


def _fake_quant(fmt: Format, t: torch.Tensor, coarse: str) -> torch.Tensor:
    """`fmt.quantize(t)` in the forward pass; the gradient passes straight through the rounding
    (the straight-through estimator, Bengio, Leonard & Courville, arXiv:1308.3432).

    coarse: the second-level scale of two-level VS-Quant formats, per row for the weight-side U
    and per tensor for the activation-side V, as `picojoule.quant` does for weights/inputs.
    """
    detached = t.detach()
    if isinstance(fmt, ScaledFormat):
        q = fmt.quantize(detached, coarse=coarse)  # type: ignore[arg-type]
    else:
        q = fmt.quantize(detached)
    return t + (q - detached)


def set_winograd_attrs(
    module: nn.Conv2d,
    *,
    tile: int | Sequence[int],
    points: Sequence[object] | None,
    transform_format: str | None,
) -> None:
    """Validate and store the Winograd settings on a (Winograd)Conv2d."""
    if tuple(module.stride) != (1, 1):
        raise WinogradError(
            f"stride {tuple(module.stride)}: Winograd F(m, r) here is stride-1 only; keep this "
            "layer a Conv2d"
        )
    if tuple(module.dilation) != (1, 1):
        raise WinogradError(
            f"dilation {tuple(module.dilation)}: Winograd F(m, r) needs dilation 1; keep this "
            "layer a Conv2d"
        )
    module.tile = _tile(tile)
    module.points = None if points is None else parse_points(points)
    for m, r in zip(module.tile, module.kernel_size, strict=True):
        cook_toom(m, r, module.points)  # fail early on a wrong count or a repeated point
    if transform_format is not None:
        operand_formats(transform_format)  # fail early with the registry's own message
    module.transform_format = transform_format


class WinogradConv2d(nn.Conv2d):
    """`nn.Conv2d` computed by Winograd F(m x m, r x r); same parameters and state dict.

    Drop-in: the constructor takes Conv2d's arguments (stride and dilation must be 1) plus
    `tile`, `points` and `transform_format`. `forward` reads `self.weight` and `self.bias`, so
    weight parametrizations (sparsity masks, fake-quant) and forward pre-hooks (activation
    fake-quant) apply unchanged.
    """

    tile: tuple[int, int]
    points: tuple[Point, ...] | None
    transform_format: str | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: Padding = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        tile: int | Sequence[int] = (4, 4),
        points: Sequence[object] | None = None,
        transform_format: str | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        set_winograd_attrs(self, tile=tile, points=points, transform_format=transform_format)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding: Padding = self.padding  # type: ignore[assignment]
        if self.padding_mode != "zeros":
            # Same pre-padding as nn.Conv2d._conv_forward, then a valid convolution.
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return winograd_conv2d(
            x,
            self.weight,
            self.bias,
            padding=padding,
            groups=self.groups,
            tile=self.tile,
            points=self.points,
            transform_format=self.transform_format,
        )

    def extra_repr(self) -> str:
        m_h, m_w = self.tile
        r_h, r_w = self.kernel_size
        extra = f", winograd=F({m_h}x{m_w},{r_h}x{r_w})"
        if self.points is not None:
            extra += f", points={list(self.points)}"
        if self.transform_format is not None:
            extra += f", transform_format={self.transform_format}"
        return super().extra_repr() + extra
