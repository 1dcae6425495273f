"""Packed-weight GEMM benchmarks against the baselines in the same run.

Cases (N = K = 8192 unless given):
- `decode_rows(m=16)`: bf16 cuBLAS, FP8 E4M3 row-wise `_scaled_mm`, dequantize-then-matmul
  (plain torch), the same under `torch.compile`, and the fused Triton kernels for every packed
  format (W4A16, W8A16, NVFP4, MXFP4, W4A8). Each row carries the memory bound: the bytes it
  must move (packed weight + activations + output) over the copy bandwidth measured here.
- `prefill_rows(m=8192)`: bf16, FP8 row-wise and the Triton W4A16 / W4A8 kernels.
- `m_sweep(ms)`: bf16, FP8 row-wise, W4A16 and W4A8 over M = 1 ... 8192.
Every row's output is checked against float64 (relative Frobenius error) before it is timed.
Times are GPU times: each method is captured in a CUDA graph and its replays are timed with the
L2 flushed in between, so host overhead (Python, launch) is excluded for every method alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from picojoule.gpu.ops import (
    last_trials,
    packed_matmul,
    quantize_rows_fp8,
    reference_matmul,
    tuning_key,
)
from picojoule.gpu.packing import PACKED_FORMATS, PackedWeight, dequant, pack
from picojoule.gpu.timing import UNSUPPORTED, first_line, time_cuda

__all__ = ["KernelRow", "decode_rows", "prefill_rows", "m_sweep", "Problem"]


@dataclass(frozen=True, kw_only=True)
class KernelRow:
    case: str
    method: str
    m: int
    n: int
    k: int
    time_s: float | None = None
    tflops: float | None = None
    ratio_to_bf16: float | None = None
    bytes_moved: int | None = None
    bound_tflops: float | None = None
    pct_of_bound: float | None = None
    rel_error: float | None = None
    config: str = ""
    note: str = ""


class Problem:
    """Random inputs for one (M, N, K): bf16 activations, bf16 weight, and its packings."""

    def __init__(self, m: int, n: int, k: int, *, seed: int = 0) -> None:
        dev = torch.device("cuda")
        g = torch.Generator(device=dev).manual_seed(seed)
        self.m, self.n, self.k = m, n, k
        self.x = torch.randn(m, k, device=dev, generator=g).to(torch.bfloat16)
        self.w = (torch.randn(n, k, device=dev, generator=g) * 0.02).to(torch.bfloat16)
        self.xq, self.sx = quantize_rows_fp8(self.x)
        self._packed: dict[str, PackedWeight] = {}

    def packed(self, fmt: str) -> PackedWeight:
        if fmt not in self._packed:
            self._packed[fmt] = pack(self.w, fmt).to(self.w.device)
        return self._packed[fmt]

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref).norm() / ref.norm())


def _row(
    case: str,
    method: str,
    p: Problem,
    fn: Callable[[], torch.Tensor],
    ref: Callable[[], torch.Tensor],
    *,
    weight_bytes: int,
    act_bytes_per_elem: int,
    copy_tbs: float | None,
    config: str = "",
    note: str = "",
) -> KernelRow:
    base = dict(case=case, method=method, m=p.m, n=p.n, k=p.k)
    moved = weight_bytes + p.m * p.k * act_bytes_per_elem + p.m * p.n * 2
    reps = 30 if p.m * p.n * p.k < 2**36 else 15
    try:
        err = _rel(fn(), ref())
    except UNSUPPORTED as e:
        return KernelRow(**base, bytes_moved=moved, note=f"not run: {first_line(e)}")
    try:
        t = time_cuda(fn, reps=reps, cuda_graph=True)
    except RuntimeError as e:  # capture refused (a host sync inside fn): time it eagerly
        t = time_cuda(fn, reps=reps)
        note = (note + "; " if note else "") + f"eager timing ({first_line(e, 80)})"
    bound = None
    if copy_tbs:
        bound = p.flops / (moved / (copy_tbs * 1e12)) / 1e12
    tflops = p.flops / t.median_s / 1e12
    return KernelRow(
        **base,
        time_s=t.median_s,
        tflops=tflops,
        bytes_moved=moved,
        bound_tflops=bound,
        pct_of_bound=None if bound is None else 100.0 * tflops / bound,
        rel_error=err,
        config=config,
        note=note,
    )


def _with_ratios(rows: list[KernelRow]) -> list[KernelRow]:
    from dataclasses import replace

    base = {(r.case, r.m): r.tflops for r in rows if r.method == "bf16 cuBLAS" and r.tflops}
    return [
        replace(r, ratio_to_bf16=r.tflops / base[(r.case, r.m)])
        if r.tflops and (r.case, r.m) in base
        else r
        for r in rows
    ]


def _baselines(case: str, p: Problem, copy_tbs: float | None) -> list[KernelRow]:
    wq = p.w.float()
    sw = wq.abs().amax(dim=1, keepdim=True) / 448.0
    w8 = (wq / sw).to(torch.float8_e4m3fn)
    sw_row = sw.reshape(1, -1).contiguous()
    mp = max(16, -(-p.m // 16) * 16)  # cuBLASLt FP8 wants M a multiple of 16
    xq = torch.zeros(mp, p.k, dtype=torch.float8_e4m3fn, device=p.x.device)
    xq[: p.m] = p.xq
    sx = torch.ones(mp, 1, device=p.x.device)
    sx[: p.m, 0] = p.sx

    def fp8() -> torch.Tensor:
        return torch._scaled_mm(xq, w8.t(), sx, sw_row, out_dtype=torch.bfloat16)[: p.m]

    def fp8_ref() -> torch.Tensor:
        return (p.xq.double() * p.sx.double()[:, None]) @ (w8.double() * sw.double()).T

    return [
        _row(
            case,
            "bf16 cuBLAS",
            p,
            lambda: p.x @ p.w.T,
            lambda: p.x.double() @ p.w.double().T,
            weight_bytes=p.w.numel() * 2,
            act_bytes_per_elem=2,
            copy_tbs=copy_tbs,
        ),
        _row(
            case,
            "fp8 e4m3 row-wise _scaled_mm",
            p,
            fp8,
            fp8_ref,
            weight_bytes=p.w.numel() + p.n * 4,
            act_bytes_per_elem=1,
            copy_tbs=copy_tbs,
            note="" if mp == p.m else f"M padded to {mp}",
        ),
    ]


def _packed_row(case: str, p: Problem, fmt: str, a8: bool, copy_tbs: float | None) -> KernelRow:
    w = p.packed(fmt)
    if a8:
        fn = lambda: packed_matmul(p.xq, w, x_scale=p.sx)  # noqa: E731
        ref = lambda: reference_matmul(p.xq, w, x_scale=p.sx)  # noqa: E731
    else:
        fn = lambda: packed_matmul(p.x, w)  # noqa: E731
        ref = lambda: reference_matmul(p.x, w)  # noqa: E731
    method = f"{fmt} {'W4A8' if a8 else f'W{w.element_bits}A16'} triton"
    try:
        fn()  # tunes on first call
    except Exception as e:  # recorded in the row: a kernel that cannot run is a result too
        return KernelRow(case=case, method=method, m=p.m, n=p.n, k=p.k, note=f"not run: {e}")
    from picojoule.gpu.ops import TUNING

    cfg = TUNING.get(tuning_key(w, p.m, a8, p.x.device))
    return _row(
        case,
        method,
        p,
        fn,
        ref,
        weight_bytes=w.storage_bytes,
        act_bytes_per_elem=1 if a8 else 2,
        copy_tbs=copy_tbs,
        config=cfg.label() if cfg else "",
    )


def decode_rows(
    m: int = 16, n: int = 8192, k: int = 8192, *, copy_tbs: float | None, compile_: bool = True
) -> list[KernelRow]:
    p = Problem(m, n, k)
    rows = _baselines("decode", p, copy_tbs)
    w4 = p.packed("vsq4_v16_s4")

    def deq() -> torch.Tensor:
        return p.x @ dequant(w4).to(torch.bfloat16).T

    ref = lambda: reference_matmul(p.x, w4)  # noqa: E731
    rows.append(
        _row("decode", "vsq4_v16_s4 dequantize+matmul (torch)", p, deq, ref,
             weight_bytes=w4.storage_bytes, act_bytes_per_elem=2, copy_tbs=copy_tbs)
    )  # fmt: skip
    if compile_:
        compiled = torch.compile(deq)
        rows.append(
            _row("decode", "vsq4_v16_s4 dequantize+matmul (torch.compile)", p, compiled, ref,
                 weight_bytes=w4.storage_bytes, act_bytes_per_elem=2, copy_tbs=copy_tbs)
        )  # fmt: skip
    for fmt in PACKED_FORMATS:
        rows.append(_packed_row("decode", p, fmt, False, copy_tbs))
    rows.append(_packed_row("decode", p, "vsq4_v16_s4", True, copy_tbs))
    return _with_ratios(rows)


def prefill_rows(m: int = 8192, n: int = 8192, k: int = 8192, *, copy_tbs: float | None):
    p = Problem(m, n, k)
    rows = _baselines("prefill", p, copy_tbs)
    rows.append(_packed_row("prefill", p, "vsq4_v16_s4", False, copy_tbs))
    rows.append(_packed_row("prefill", p, "vsq4_v16_s4", True, copy_tbs))
    return _with_ratios(rows)


def m_sweep(
    ms: list[int], n: int = 8192, k: int = 8192, *, copy_tbs: float | None
) -> list[KernelRow]:
    rows: list[KernelRow] = []
    for m in ms:
        p = Problem(m, n, k)
        rows += _baselines("msweep", p, copy_tbs)
        rows.append(_packed_row("msweep", p, "vsq4_v16_s4", False, copy_tbs))
        rows.append(_packed_row("msweep", p, "vsq4_v16_s4", True, copy_tbs))
        del p
        torch.cuda.empty_cache()
    return _with_ratios(rows)


def tuning_trials() -> dict[str, list[dict]]:
    """Every config timed by the tuner in this process (for the JSON record)."""
    return {
        key: [
            {"config": t.config.label(), "time_s": t.time_s, "error": t.error[:200]} for t in trials
        ]
        for key, trials in last_trials.items()
    }
