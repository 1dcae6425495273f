"""Magnitude masks: N:M, unstructured, block and channel. All return bool tensors (True = kept).

Public: `nm_mask`, `unstructured_mask`, `block_mask`, `channel_mask`, `gemm_view`,
`from_gemm_view`, `weight_mask`, `check_nm`.

Masks run along the REDUCTION dimension, because that is where sparse hardware skips work:
a 2:4 sparse tensor core reads 4 consecutive reduction elements of the weight operand and
multiplies only 2 (NVIDIA A100 whitepaper, 2020, "Fine-Grained Structured Sparsity").
For a weight we use the implicit-GEMM view (`gemm_view`): Linear [out, in] stays as is;
Conv [K, C, R, S] becomes [K, R*S*C] with C fastest, the NHWC implicit-GEMM order, so an
N:M group holds M consecutive input channels of one filter tap -- the grouping NVIDIA's ASP
uses for convolutions (apex/contrib/sparsity/sparse_masklib.py).
"""

from __future__ import annotations

import math

import torch

from picojoule.errors import ShapeError
from picojoule.sparsity.patterns import Pattern

__all__ = [
    "nm_mask",
    "unstructured_mask",
    "block_mask",
    "channel_mask",
    "gemm_view",
    "from_gemm_view",
    "weight_mask",
    "check_nm",
    "check_mask_shape",
]


def check_nm(size: int, n: int, m: int, what: str = "dimension") -> None:
    """Raise `ShapeError` naming the fix if an N:M pattern cannot serve a dim of `size`."""
    if n < 1 or m < 1 or n >= m:
        raise ShapeError(f"N:M needs 1 <= N < M, got {n}:{m}; e.g. 2:4 keeps 2 of every 4")
    if size % m:
        raise ShapeError(
            f"{what} of size {size} is not divisible by M={m}: an {n}:{m} group would straddle "
            f"its end; pad it to {size + (-size) % m} or skip this layer"
        )


def nm_mask(w: torch.Tensor, n: int, m: int, dim: int = -1) -> torch.Tensor:
    """Keep the `n` largest-magnitude of every `m` consecutive elements along `dim`.

    Exactly `n` are kept in every group, even under ties (`torch.topk` breaks them).
    """
    if w.dim() == 0:
        raise ShapeError("an N:M mask needs a tensor with at least one dimension, got a scalar")
    dim = dim % w.dim()
    check_nm(w.shape[dim], n, m, what=f"dim {dim} of shape {tuple(w.shape)}")
    moved = w.detach().abs().movedim(dim, -1)
    groups = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, groups.topk(n, dim=-1).indices, True)
    return keep.reshape(moved.shape).movedim(-1, dim)


def _count(density: float, total: int) -> int:
    if not 0.0 < density <= 1.0:
        raise ShapeError(f"density must be in (0, 1] (the fraction kept), got {density}")
    return max(1, round(density * total))


def unstructured_mask(w: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the `round(density * numel)` largest-magnitude elements (at least one)."""
    flat = w.detach().abs().flatten()
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[flat.topk(_count(density, flat.numel())).indices] = True
    return keep.reshape(w.shape)


def block_mask(w2d: torch.Tensor, rows: int, cols: int, density: float) -> torch.Tensor:
    """Keep the highest-L1 `density` fraction of `rows x cols` tiles of a 2-D matrix."""
    if w2d.dim() != 2:
        raise ShapeError(f"block masks need a 2-D [out, reduction] matrix, got {tuple(w2d.shape)}")
    out, red = w2d.shape
    if out % rows or red % cols:
        raise ShapeError(
            f"block {rows}x{cols} does not tile matrix {out}x{red}; "
            f"choose a block that divides both sides"
        )
    tiles = w2d.detach().abs().reshape(out // rows, rows, red // cols, cols).sum(dim=(1, 3))
    keep = torch.zeros(tiles.numel(), dtype=torch.bool, device=w2d.device)
    keep[tiles.flatten().topk(_count(density, tiles.numel())).indices] = True
    keep = keep.reshape(tiles.shape)
    return keep.repeat_interleave(rows, 0).repeat_interleave(cols, 1)


def channel_mask(w: torch.Tensor, density: float, dim: int = 1) -> torch.Tensor:
    """Keep the highest-L1 `density` fraction of slices along `dim` (input channels by default)."""
    dim = dim % w.dim()
    other = [d for d in range(w.dim()) if d != dim]
    norms = w.detach().abs().sum(dim=other) if other else w.detach().abs()
    keep = torch.zeros_like(norms, dtype=torch.bool)
    keep[norms.topk(_count(density, norms.numel())).indices] = True
    shape = [1] * w.dim()
    shape[dim] = -1
    return keep.reshape(shape).expand_as(w).clone()


def gemm_view(w: torch.Tensor) -> torch.Tensor:
    """[out, reduction] view of a Linear ([out, in]) or Conv ([K, C, *kernel]) weight.

    Conv reduction order is (kernel taps..., C) with C fastest, as in NHWC implicit GEMM.
    """
    if w.dim() < 2:
        raise ShapeError(
            f"tensor of shape {tuple(w.shape)} has no reduction dimension: masks apply to "
            "Linear [out, in] or Conv [out, in, *kernel] weights, not biases or norm scales"
        )
    if w.dim() == 2:
        return w
    return w.movedim(1, -1).reshape(w.shape[0], -1)


def from_gemm_view(mat: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Inverse of `gemm_view` for a weight of `shape`."""
    if len(shape) == 2:
        return mat.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return mat.reshape(moved).movedim(-1, 1)


def check_mask_shape(shape: tuple[int, ...], pattern: Pattern) -> None:
    """Raise `ShapeError` (naming the fix) if `weight_mask` cannot mask a weight of `shape`
    under `pattern`; shapes only, no tensor (a meta tensor would load torch's compiler)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ShapeError(
            f"tensor of shape {shape} has no reduction dimension: masks apply to "
            "Linear [out, in] or Conv [out, in, *kernel] weights, not biases or norm scales"
        )
    if pattern.kind == "nm":
        check_nm(shape[1], pattern.n, pattern.m, what=f"input channels of weight {shape}")
    elif pattern.kind == "block":
        rows, cols = pattern.block
        out, red = shape[0], math.prod(shape[1:])
        if out % rows or red % cols:
            raise ShapeError(
                f"block {rows}x{cols} does not tile matrix {out}x{red}; "
                f"choose a block that divides both sides"
            )


def weight_mask(w: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """Mask for a Linear/Conv weight under `pattern`, computed in the GEMM view.

    N:M groups run over input channels (dim 1), so a conv needs C divisible by M.
    """
    check_mask_shape(tuple(w.shape), pattern)
    mat = gemm_view(w)
    if pattern.kind == "nm":
        return nm_mask(w, pattern.n, pattern.m, dim=1)
    if pattern.kind == "unstructured":
        return unstructured_mask(w, pattern.density)
    if pattern.kind == "channel":
        return channel_mask(w, pattern.density, dim=1)
    rows, cols = pattern.block
    return from_gemm_view(block_mask(mat, rows, cols, pattern.density), w.shape)
