"""Which GPU kernel a sparsified layer would get, by torch's documented semi-structured rules.

Public: `KernelVerdict`, `semi_structured_verdict`, `is_nm`, `MIN_SHAPE`, `canonical_dtype`,
`SPEEDUP_2TO4`.

torch runs 2:4 sparsity through `torch.sparse.to_sparse_semi_structured` (cuSPARSELt, or
CUTLASS when cuSPARSELt is absent or `_FORCE_CUTLASS` is set). Its rules, as coded in
torch/sparse/semi_structured.py (torch 2.11-2.13):

- a 2-D weight used by mm/addmm/linear: there is no convolution dispatch, so a Conv layer runs
  dense cuDNN whatever its mask;
- exactly 2 of every 4 consecutive elements along each row (the Linear weight's in-features)
  -- the only pattern the fp16/bf16/int8 sparse tensor cores run;
- dtype: cuSPARSELt fp16, bf16, int8 (float8_e4m3fn only via `_scaled_mm`); CUTLASS adds fp32;
- shape: rows >= and a multiple of `sparse_min_rows`, columns likewise (`MIN_SHAPE`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from picojoule.errors import FormatError

__all__ = [
    "KernelVerdict",
    "semi_structured_verdict",
    "is_nm",
    "MIN_SHAPE",
    "canonical_dtype",
    "SPEEDUP_2TO4",
]

# Upper bound for a 2:4 layer: sparse tensor cores double the math rate (NVIDIA A100
# whitepaper, 2020). Real kernels fall short; gpu_check measures by how much.
SPEEDUP_2TO4 = 2.0

# (backend, canonical dtype) -> (sparse_min_rows, sparse_min_cols), copied from
# `_DTYPE_SHAPE_CONSTRAINTS` in torch/sparse/semi_structured.py (torch 2.11-2.13).
MIN_SHAPE: dict[tuple[str, str], tuple[int, int]] = {
    ("cusparselt", "float16"): (16, 16),
    ("cusparselt", "bfloat16"): (16, 16),
    ("cusparselt", "int8"): (32, 32),
    ("cutlass", "float16"): (32, 64),
    ("cutlass", "bfloat16"): (32, 64),
    ("cutlass", "int8"): (16, 128),
    ("cutlass", "float32"): (32, 32),
}
_BACKEND_NAME = {"cusparselt": "cuSPARSELt", "cutlass": "CUTLASS"}
_TORCH_NAMES = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int8: "int8",
    torch.float32: "float32",
}


def canonical_dtype(dtype: str | torch.dtype) -> str:
    """Canonical picojoule format name ("float16", "int8", ...) for a name or torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype in _TORCH_NAMES:
            return _TORCH_NAMES[dtype]
        raise FormatError(f"no semi-structured rule covers torch dtype {dtype}")
    from picojoule import formats  # deferred: the format registry is only needed for names

    return formats.get(dtype).name


@dataclass(frozen=True, kw_only=True)
class KernelVerdict:
    """Whether a layer gets torch's 2:4 kernel; `reasons` lists every rule it fails."""

    qualifies: bool
    kernel: str
    reasons: tuple[str, ...] = ()

    @property
    def why_not(self) -> str:
        return "; ".join(self.reasons)


def is_nm(w: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True if every group of `m` consecutive elements along dim 1 has at most `n` non-zeros."""
    if w.dim() < 2 or w.shape[1] % m:
        return False
    groups = (w.detach() != 0).movedim(1, -1).reshape(-1, m)
    return bool((groups.sum(dim=-1) <= n).all())


def semi_structured_verdict(
    kind: str,
    shape: tuple[int, ...],
    dtype: str | torch.dtype,
    pattern: str,
    *,
    backend: str = "cusparselt",
    mask_is_2to4: bool = True,
) -> KernelVerdict:
    """Apply torch's semi-structured rules to a layer.

    kind: "linear" or a conv kind ("conv2d", ...); shape: the weight's shape; pattern: the
    layer's sparsity pattern name ("dense" if none); mask_is_2to4: whether the actual weight
    holds the 2:4 pattern along its in-features (see `is_nm`).
    """
    if backend not in _BACKEND_NAME:
        raise FormatError(f"unknown backend {backend!r}; choose cusparselt or cutlass")
    name = canonical_dtype(dtype)
    dense_kernel = "dense cuBLAS" if kind == "linear" else "dense cuDNN"
    reasons: list[str] = []
    if kind != "linear":
        reasons.append(f"{kind}: torch 2:4 has no conv kernel")
    if pattern == "dense":
        reasons.append("not sparsified")
    elif pattern != "2:4":
        reasons.append(f"pattern {pattern} is not 2:4, the only one sparse tensor cores run")
    elif not mask_is_2to4:
        reasons.append("weight breaks 2:4 along in-features")
    limits = MIN_SHAPE.get((backend, name))
    if limits is None:
        served = sorted({d for b, d in MIN_SHAPE if b == backend})
        reasons.append(f"dtype {name} not served by {_BACKEND_NAME[backend]} ({', '.join(served)})")
    elif kind == "linear" and len(shape) == 2:
        rows, cols = shape
        min_r, min_c = limits
        if rows < min_r or rows % min_r:
            reasons.append(f"out features {rows} not a multiple of {min_r} (>= {min_r})")
        if cols < min_c or cols % min_c:
            reasons.append(f"in features {cols} not a multiple of {min_c} (>= {min_c})")
    if reasons:
        return KernelVerdict(qualifies=False, kernel=dense_kernel, reasons=tuple(reasons))
    kernel = f"{_BACKEND_NAME[backend]} 2:4 ({name})"
    return KernelVerdict(qualifies=True, kernel=kernel)
