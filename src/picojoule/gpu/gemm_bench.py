"""Per-format GEMM throughput, memory bandwidth and board energy on the local GPU.

`gemm_sweep(sizes)` times `C[m, n] = A[m, k] @ B[k, n]` (square sizes) in every format the
GPU's libraries run: FP32 (TF32 off), TF32, FP16, BF16 (cuBLAS), FP8 E4M3 and E5M2 x E4M3
through `torch._scaled_mm` with one scale per tensor, E4M3 with one scale per row/column
(bf16 out), INT8 through `torch._int_mm` (int32 out) and FP16 with a 2:4 semi-structured
sparse A (cuSPARSELt). For each: median time (L2 flushed), TFLOPS (2mnk / t; for 2:4 the dense
equivalent, as NVIDIA quotes it), SOL% against the datasheet peak, board power and pJ/op from
NVML, and the relative error of a 64-row slice against float64 (a wrong kernel never passes
as a fast one). A format the GPU or library cannot run is kept as a row with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from picojoule.gpu.power import measure_energy, nvml_available
from picojoule.gpu.spec import GpuPeaks
from picojoule.gpu.timing import UNSUPPORTED, first_line, time_cuda

__all__ = ["GEMM_FORMATS", "GemmResult", "gemm_sweep", "measure_bandwidth", "BandwidthResult"]

# label -> (peak-table key, uses 2:4 sparsity)
GEMM_FORMATS: dict[str, tuple[str, bool]] = {
    "fp32": ("fp32", False),
    "tf32": ("tf32", False),
    "fp16": ("fp16", False),
    "bf16": ("bf16", False),
    "e4m3 tensor": ("e4m3", False),
    "e4m3 row": ("e4m3", False),
    "e5m2xe4m3 tensor": ("e5m2", False),
    "int8": ("int8", False),
    "fp16 2:4": ("fp16", True),
}


@dataclass(frozen=True, kw_only=True)
class GemmResult:
    fmt: str
    m: int
    n: int
    k: int
    time_s: float | None = None
    tflops: float | None = None
    peak_tflops: float | None = None
    sol_pct: float | None = None
    power_w: float | None = None
    energy_pj_per_op: float | None = None
    rel_error: float | None = None
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class BandwidthResult:
    bytes_moved: int
    time_s: float
    tb_per_s: float
    peak_tb_per_s: float | None
    sol_pct: float | None


def _prune_2to4(w: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest-magnitude of every 4 consecutive elements along the last dim."""
    g = w.reshape(-1, 4)
    keep = g.abs().topk(2, dim=1).indices
    mask = torch.zeros_like(g, dtype=torch.bool).scatter_(1, keep, True)
    return (g * mask).reshape(w.shape)


def _setup(
    fmt: str, m: int, n: int, k: int, dev: torch.device
) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """(fn, reference of fn()[:64] in float64)."""
    g = torch.Generator(device=dev).manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=dev, generator=g)

    if fmt in ("fp32", "tf32", "fp16", "bf16"):
        dt = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(fmt, torch.float32)
        a, b = randn(m, k).to(dt), randn(k, n).to(dt)
        return (lambda: a @ b), (lambda: a[:64].double() @ b.double())
    if fmt.startswith(("e4m3", "e5m2")):
        a_dt = torch.float8_e5m2 if fmt.startswith("e5m2") else torch.float8_e4m3fn
        a = randn(m, k).to(a_dt)
        b = randn(n, k).to(torch.float8_e4m3fn).t()  # column-major, as cuBLASLt FP8 requires
        if fmt == "e4m3 row":
            sa = torch.ones(m, 1, device=dev)
            sb = torch.ones(1, n, device=dev)
        else:
            sa = sb = torch.ones((), device=dev)
        return (
            lambda: torch._scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16),
            lambda: a[:64].double() @ b.double(),
        )
    if fmt == "int8":
        a = torch.randint(-64, 64, (m, k), device=dev, dtype=torch.int8, generator=g)
        b = torch.randint(-64, 64, (n, k), device=dev, dtype=torch.int8, generator=g).t()
        return (lambda: torch._int_mm(a, b)), (lambda: a[:64].double() @ b.double())
    if fmt == "fp16 2:4":
        from torch.sparse import to_sparse_semi_structured

        dense = _prune_2to4(randn(m, k)).half()
        a = to_sparse_semi_structured(dense)
        b = randn(k, n).half()
        return (lambda: torch.mm(a, b)), (lambda: dense[:64].double() @ b.double())
    raise ValueError(fmt)


def _one(
    fmt: str, size: int, dev: torch.device, peaks: GpuPeaks | None, energy_s: float
) -> GemmResult:
    m = n = k = size
    key, sparse = GEMM_FORMATS[fmt]
    peak = peaks.peak(key, sparse=sparse) if peaks else None
    prev_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = fmt == "tf32"
    try:
        fn, ref = _setup(fmt, m, n, k, dev)
        out = fn()
        r = ref()
        err = float((out[:64].double() - r).norm() / r.norm())
        t = time_cuda(fn, reps=20 if size >= 8192 else 40)
        flops = 2.0 * m * n * k
        tflops = flops / t.median_s / 1e12
        power = pj = None
        if energy_s > 0:
            e = measure_energy(fn, min_duration_s=energy_s, device=dev)
            power, pj = e.mean_power_w, e.pj_per_op(flops)
        return GemmResult(
            fmt=fmt,
            m=m,
            n=n,
            k=k,
            time_s=t.median_s,
            tflops=tflops,
            peak_tflops=peak,
            sol_pct=None if peak is None else 100.0 * tflops / peak,
            power_w=power,
            energy_pj_per_op=pj,
            rel_error=err,
        )
    except UNSUPPORTED as e:
        return GemmResult(
            fmt=fmt, m=m, n=n, k=k, peak_tflops=peak, note=f"not run: {first_line(e)}"
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev_tf32


def gemm_sweep(
    sizes: list[int],
    formats: list[str] | None = None,
    *,
    peaks: GpuPeaks | None = None,
    energy_s: float = 0.5,
    on_result: Callable[[GemmResult], None] | None = None,
) -> list[GemmResult]:
    """Time every format at every size; `energy_s` > 0 also measures board energy."""
    dev = torch.device("cuda")
    if energy_s > 0 and not nvml_available():
        energy_s = 0.0
    fmts = formats or list(GEMM_FORMATS)
    unknown = [f for f in fmts if f not in GEMM_FORMATS]
    if unknown:
        from picojoule.errors import ConfigError

        raise ConfigError(f"unknown GEMM format(s) {unknown}; choose from {list(GEMM_FORMATS)}")
    out = []
    for size in sizes:
        for fmt in fmts:
            r = _one(fmt, size, dev, peaks, energy_s)
            out.append(r)
            if on_result is not None:
                on_result(r)
            torch.cuda.empty_cache()
    return out


def measure_bandwidth(peaks: GpuPeaks | None = None, size_bytes: int = 1 << 30) -> BandwidthResult:
    """Device-to-device copy of `size_bytes`; bytes moved = read + write."""
    dev = torch.device("cuda")
    src = torch.empty(size_bytes // 4, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    t = time_cuda(lambda: dst.copy_(src), reps=30, flush_l2=False)
    moved = 2 * size_bytes
    tbs = moved / t.median_s / 1e12
    peak = peaks.bandwidth_gbs / 1000.0 if peaks else None
    return BandwidthResult(
        bytes_moved=moved,
        time_s=t.median_s,
        tb_per_s=tbs,
        peak_tb_per_s=peak,
        sol_pct=None if peak is None else 100.0 * tbs / peak,
    )
