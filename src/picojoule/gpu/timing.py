"""Timing GPU work the way METHOD.md asks: device events, warm-up, median of many runs, and an
L2 flush before each timed run so that weights never come from cache (an H100 has 50 MB of L2,
more than a 4-bit 8192 x 8192 weight)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Timing", "time_cuda", "as_graph", "cpu_time", "first_line", "UNSUPPORTED"]

# What the GPU stack raises for a format or kernel it does not support on this device/library
# (torch raises NotImplementedError for missing kernels): benchmarks record "not run: ...".
UNSUPPORTED = (RuntimeError, NotImplementedError, TypeError)


def first_line(e: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (its type name if empty), for result notes."""
    text = str(e)
    return text.splitlines()[0][:limit] if text else type(e).__name__


_FLUSH_BYTES = 256 << 20  # 5x the H100's 50 MB L2


@dataclass(frozen=True, kw_only=True)
class Timing:
    """Median and spread of `reps` timed runs, in seconds."""

    median_s: float
    min_s: float
    max_s: float
    reps: int

    def rate(self, work: float) -> float:
        """`work` units (FLOP, bytes) per second at the median time."""
        return work / self.median_s


_flush_buf: dict[torch.device, torch.Tensor] = {}


def _flush(device: torch.device) -> None:
    buf = _flush_buf.get(device)
    if buf is None:
        buf = _flush_buf[device] = torch.empty(_FLUSH_BYTES // 4, dtype=torch.int32, device=device)
    buf.zero_()


def as_graph(fn: Callable[[], object], device: torch.device | None = None) -> Callable[[], None]:
    """Capture `fn`'s CUDA work in a graph; the returned closure replays it.

    Replaying costs the host a few microseconds, so a timed replay measures GPU time alone,
    not Python and launch overhead (which a 16-token decode GEMM would otherwise be dwarfed
    by). `fn` must not synchronize with the host."""
    dev = device or torch.device("cuda")
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up outside the capture: compilation, tuning, allocator
            fn()
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def time_cuda(
    fn: Callable[[], object],
    *,
    reps: int = 50,
    warmup: int = 5,
    flush_l2: bool = True,
    cuda_graph: bool = False,
    device: torch.device | None = None,
) -> Timing:
    """Time `fn` (which launches CUDA work) with CUDA events; median over `reps` runs.

    cuda_graph: time replays of a captured graph of `fn` (GPU time without host overhead)."""
    dev = device or torch.device("cuda")
    if cuda_graph:
        fn = as_graph(fn, dev)
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize(dev)
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for s, e in zip(starts, ends, strict=True):
        if flush_l2:
            _flush(dev)
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize(dev)
    ts = [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends, strict=True)]
    return Timing(median_s=statistics.median(ts), min_s=min(ts), max_s=max(ts), reps=reps)


def cpu_time(fn: Callable[[], object], *, reps: int = 5) -> Timing:
    """Wall-clock median for CPU-only work (used when no GPU is present)."""
    import time

    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return Timing(median_s=statistics.median(ts), min_s=min(ts), max_s=max(ts), reps=reps)
