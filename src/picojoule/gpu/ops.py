"""`packed_matmul(x, w)`: the fused Triton GEMM on a packed weight, with its checks and tuning.

x [..., K] bf16 (W*A16), or float8_e4m3fn with one fp32 scale per row (W4A8, `x_scale`).
Returns [..., N] in bf16. Activations of other float dtypes are cast to bf16 first (the
kernel's 16-bit operand). `quantize_rows_fp8` makes the W4A8 input: per-row (per-token) scale
amax / 448 and RNE E4M3 elements - the arithmetic of `picojoule.formats` "e4m3/channel".

`reference_matmul` is the same function in plain torch (dequantize, then matmul in float64 or
the activation dtype), the oracle of the tests and the "dequantize then matmul" baseline.
"""

from __future__ import annotations

import functools

import torch

from picojoule.errors import ShapeError
from picojoule.gpu.autotune import (
    DEFAULT_CONFIG,
    KernelConfig,
    TuneTrial,
    TuningCache,
    candidates,
    m_bucket,
    tune,
)
from picojoule.gpu.device import interpret_mode, require_cuda, require_triton
from picojoule.gpu.packing import PackedWeight, dequant

__all__ = [
    "packed_matmul",
    "reference_matmul",
    "quantize_rows_fp8",
    "launch",
    "tuning_key",
    "TUNING",
    "last_trials",
]

TUNE_MIN_WEIGHTS = 1 << 22  # weights below which the bucket's first candidate is used untuned
E4M3_MAX = 448.0  # largest finite float8_e4m3fn (OCP OFP8 v1.0, table 1)
TUNING = TuningCache()
last_trials: dict[str, list[TuneTrial]] = {}
_RESOLVED: dict[str, KernelConfig] = {}  # key -> config, tuned or default (no re-lookup per call)
_READY: set[int] = set()  # CUDA devices already checked for Triton and compute capability


@functools.cache
def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def quantize_rows_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row E4M3: (codes float8_e4m3fn [M, K], scale fp32 [M]) with x ~= codes * scale."""
    x32 = x.float()
    s = x32.abs().amax(dim=-1, keepdim=True) / E4M3_MAX
    s = torch.where(s == 0, 1.0, s)
    q = (x32 / s).clamp_(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    return q, s.reshape(-1)


def reference_matmul(
    x: torch.Tensor,
    w: PackedWeight,
    bias: torch.Tensor | None = None,
    *,
    x_scale: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """x @ dequant(w).T (+ bias) computed in `dtype` (float64: the oracle)."""
    xf = x.to(dtype)
    if x_scale is not None:
        xf = xf * x_scale.to(dtype)[:, None]
    y = xf @ dequant(w).to(dtype).T
    return y if bias is None else y + bias.to(dtype)


def tuning_key(w: PackedWeight, m: int, act_fp8: bool, device: torch.device) -> str:
    if device.type == "cpu":
        name = "interpreter"
    else:
        name = _device_name(device.index if device.index is not None else 0)
    act = "a8" if act_fp8 else "a16"
    return f"{name}|{w.fmt}|{act}|m{m_bucket(m)}|n{w.out_features}|k{w.padded_in_features}"


def _check(x: torch.Tensor, w: PackedWeight, x_scale: torch.Tensor | None) -> None:
    if x.shape[-1] != w.in_features:
        raise ShapeError(
            f"activation has K={x.shape[-1]} but the packed {w.fmt} weight expects "
            f"K={w.in_features} (weight [{w.out_features}, {w.in_features}])"
        )
    fp8 = x.dtype == torch.float8_e4m3fn
    if fp8 != (x_scale is not None):
        raise ShapeError(
            "W4A8 takes float8_e4m3fn activations together with x_scale (fp32, one per row); "
            "make both with quantize_rows_fp8(x)"
        )
    if fp8 and w.fmt != "vsq4_v16_s4":
        raise ShapeError(f"FP8 activations are supported with vsq4_v16_s4 weights, not {w.fmt}")
    if x.device != w.qweight.device:
        raise ShapeError(f"activation on {x.device} but packed weight on {w.qweight.device}")


def launch(
    x2: torch.Tensor,
    w: PackedWeight,
    cfg: KernelConfig,
    bias: torch.Tensor | None = None,
    x_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """One kernel launch with an explicit config; x2 is [M, K] contiguous."""
    from picojoule.gpu.triton_gemm import FMT_CODES, packed_gemm_kernel

    if cfg.path == "dequant+cublas":
        return _dequant_then_cublas(x2, w, bias, x_scale, cfg)

    m, k = x2.shape
    n, kp = w.out_features, w.padded_in_features
    act_fp8 = x_scale is not None
    if cfg.split_k > 1:
        out = torch.zeros((m, n), dtype=torch.float32, device=x2.device)
    else:
        out = torch.empty((m, n), dtype=torch.bfloat16, device=x2.device)
    unread_ptr = w.scales  # never read: the constexpr branches that would read it are compiled out
    grid = (
        triton_cdiv(m, cfg.block_m) * triton_cdiv(n, cfg.block_n),
        cfg.split_k,
    )
    packed_gemm_kernel[grid](
        x2,
        w.qweight,
        w.scales,
        w.gamma if w.gamma is not None else unread_ptr,
        x_scale if x_scale is not None else unread_ptr,
        bias if bias is not None else unread_ptr,
        out,
        m,
        n,
        k,
        kp,
        x2.stride(0),
        w.qweight.stride(0),
        w.scales.stride(0),
        out.stride(0),
        w.tensor_scale if w.tensor_scale is not None else unread_ptr,
        FMT=FMT_CODES[w.fmt],
        ACT_FP8=act_fp8,
        HAS_BIAS=bias is not None,
        EVEN_K=k == kp,
        SWAP_AB=cfg.swap_ab,
        SPLIT_K=cfg.split_k,
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k,
        GROUP_M=cfg.group_m,
        DEQ_ASM=cfg.deq_asm and not interpret_mode(),
        PREFETCH=cfg.prefetch,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    return out.to(torch.bfloat16) if cfg.split_k > 1 else out


def dequant_partial(
    w: PackedWeight, *, deq_asm: bool = True, block_n: int = 64, block_k: int = 128
) -> torch.Tensor:
    """bf16 [N, Kp] exact partial products of a 4-bit packed weight (Triton kernel)."""
    from picojoule.gpu.triton_gemm import FMT_CODES, dequant_kernel

    n, kp = w.out_features, w.padded_in_features
    out = torch.empty((n, kp), dtype=torch.bfloat16, device=w.qweight.device)
    bk = block_k
    while kp % bk:
        bk //= 2
    dequant_kernel[(triton_cdiv(n, block_n), kp // bk)](
        w.qweight,
        w.scales,
        out,
        n,
        w.qweight.stride(0),
        w.scales.stride(0),
        out.stride(0),
        FMT=FMT_CODES[w.fmt],
        DEQ_ASM=deq_asm and not interpret_mode(),
        BLOCK_N=block_n,
        BLOCK_K=bk,
        num_warps=4,
    )
    return out


_MM_OUT_DTYPE: list[bool] = [True]  # torch.mm(..., out_dtype=fp32) works here (until it fails)


def _mm_fp32_out(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """bf16 x bf16 -> fp32 GEMM. torch.mm's out_dtype keeps cuBLAS's fp32 result; a torch
    without it rounds to bf16 first (one extra rounding, 2^-9 relative, then documented)."""
    if _MM_OUT_DTYPE[0]:
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (TypeError, RuntimeError):
            _MM_OUT_DTYPE[0] = False
    return torch.mm(a, b).float()


def _dequant_then_cublas(
    x2: torch.Tensor,
    w: PackedWeight,
    bias: torch.Tensor | None,
    x_scale: torch.Tensor | None,
    cfg: KernelConfig,
) -> torch.Tensor:
    """Large-M path: exact bf16 partial products, one cuBLAS bf16 GEMM with fp32 output
    (fp32 accumulation, as in the fused kernel), then the fp32 scales, bias, bf16 cast."""
    wd = dequant_partial(w, deq_asm=cfg.deq_asm, block_n=cfg.block_n, block_k=cfg.block_k)
    xb = x2.to(torch.bfloat16)  # E4M3 -> bf16 is exact
    if x2.shape[1] != wd.shape[1]:
        xb = torch.nn.functional.pad(xb, (0, wd.shape[1] - x2.shape[1]))
    y = _mm_fp32_out(xb, wd.T)
    if w.gamma is not None:
        y.mul_(w.gamma)
    if w.tensor_scale is not None:
        y.mul_(w.tensor_scale)
    if x_scale is not None:
        y.mul_(x_scale[:, None])
    if bias is not None:
        y.add_(bias)
    return y.to(torch.bfloat16)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def packed_matmul(
    x: torch.Tensor,
    w: PackedWeight,
    bias: torch.Tensor | None = None,
    *,
    x_scale: torch.Tensor | None = None,
    config: KernelConfig | None = None,
) -> torch.Tensor:
    """x [..., K] @ dequant(w)[N, K]^T (+ bias) -> bf16 [..., N], fused on the GPU."""
    _check(x, w, x_scale)
    dev_index = -1 if x.device.type != "cuda" else (x.device.index or 0)
    if dev_index not in _READY:
        require_triton("packed_matmul")
        if not interpret_mode():
            require_cuda((8, 0), what="packed_matmul (bf16 tensor cores)")
        _READY.add(dev_index)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if x2.dtype not in (torch.bfloat16, torch.float8_e4m3fn):
        x2 = x2.to(torch.bfloat16)
    x2 = x2.contiguous()
    if bias is not None:
        bias = bias.contiguous()
    if x_scale is not None:
        x_scale = x_scale.reshape(-1).float().contiguous()
    m = x2.shape[0]
    if m == 0:
        return torch.empty((*lead, w.out_features), dtype=torch.bfloat16, device=x.device)
    cfg = config or _config_for(x2, w, bias, x_scale)
    if cfg.path == "dequant+cublas" and w.fmt == "vsq8_v16_s4":
        raise ShapeError("the dequant+cublas path serves 4-bit formats (W8 q*s_q is not bf16)")
    if cfg.path == "fused" and (w.padded_in_features % cfg.block_k or cfg.block_k % 32):
        raise ShapeError(
            f"block_k={cfg.block_k} must be a multiple of 32 dividing the packed K="
            f"{w.padded_in_features}"
        )
    return launch(x2, w, cfg, bias, x_scale).reshape(*lead, w.out_features)


def forget_tuning() -> None:
    """Time every candidate again on the next call per shape (shipped and cached configs and
    this process's choices are dropped; new winners are cached as usual)."""
    TUNING.forget()
    _RESOLVED.clear()


def _config_for(
    x2: torch.Tensor,
    w: PackedWeight,
    bias: torch.Tensor | None,
    x_scale: torch.Tensor | None,
) -> KernelConfig:
    if interpret_mode():
        return DEFAULT_CONFIG
    m = x2.shape[0]
    key = tuning_key(w, m, x_scale is not None, x2.device)
    found = _RESOLVED.get(key) or TUNING.get(key)
    if found is not None:
        _RESOLVED[key] = found
        return found
    cands = candidates(m, w.out_features, w.padded_in_features, fmt=w.fmt)
    if w.out_features * w.padded_in_features < TUNE_MIN_WEIGHTS:
        _RESOLVED[key] = cands[0]  # too small to repay compiling and timing every candidate
        return cands[0]
    if torch.cuda.is_current_stream_capturing():
        return cands[0]  # no timing inside someone's graph capture; tuned on an eager call
    from picojoule.gpu.timing import time_cuda

    best, trials = tune(
        lambda cfg: lambda: launch(x2, w, cfg, bias, x_scale),
        cands,
        lambda fn: time_cuda(fn, reps=15, warmup=2, cuda_graph=True).median_s,
    )
    last_trials[key] = trials
    TUNING.put(key, best)
    _RESOLVED[key] = best
    return best
