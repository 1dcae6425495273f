"""Measure torch's 2:4 semi-structured matmul against dense on a real NVIDIA GPU.

Public: `GpuMeasurement`, `measure_2to4(shapes, dtypes, ...)`, `cuda_note()`,
`render_gpu_table(rows)`, `load_measurements(path)` (rows saved by
benchmarks/bench_sparsity_gpu.py, for `report(..., measured=...)`).

For each (m, k, n) and dtype: W[m, k] is pruned 2:4 along k, X[k, n] is dense (stored as the
transpose of row-major [n, k] activations, as F.linear passes it), and we time
`W @ X` dense (cuBLAS; `torch._int_mm` for int8) against the same product with W converted by
`torch.sparse.to_sparse_semi_structured`. Both results are compared before timing, so a broken
kernel cannot post a speedup. Two timings per operand pair, each the median over `repeats` of
CUDA-event time around `iters` back-to-back calls:

- call: eager `torch.mm`, what a user's forward pass pays. torch's cuSPARSELt path sets up a
  matmul plan on the host on every call (about 0.6-0.8 ms on our H100 host), so small and
  mid-size layers come out SLOWER than dense;
- kernel: the same calls captured once in a CUDA graph and replayed, so host work drops out and
  only GPU time remains -- what the sparse tensor cores themselves deliver.

Without CUDA (or on a GPU older than Ampere, compute capability 8.0, which has no sparse
tensor cores) every row comes back with `speedup=None` and a note saying why -- no exception.
Rows that break torch's shape/dtype rules (`kernels.semi_structured_verdict`) are skipped the
same way. int8 runs through cuSPARSELt only (the int8 output there differs from `_int_mm`'s
int32, see `_run_int8`).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from rich.markup import escape
from rich.table import Table

from picojoule.errors import ConfigError
from picojoule.sparsity.kernels import SPEEDUP_2TO4, canonical_dtype, semi_structured_verdict
from picojoule.sparsity.masks import nm_mask

__all__ = [
    "GpuMeasurement",
    "measure_2to4",
    "cuda_note",
    "render_gpu_table",
    "load_measurements",
]

# (dense call, 2:4 call, results agree, what was checked)
_Runner = tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor], bool, str]
# Bound on output memory held by one captured graph (bytes).
_GRAPH_BYTES = 4 * 1024**3
_TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8}


@dataclass(frozen=True, kw_only=True)
class GpuMeasurement:
    """One (shape, dtype) row: ms per call; speedups are dense time / 2:4 time.

    `*_ms`/`speedup`: eager calls; `*_kernel_ms`/`kernel_speedup`: CUDA-graph replay (GPU only).
    """

    label: str
    m: int
    k: int
    n: int
    dtype: str
    dense_ms: float | None
    sparse_ms: float | None
    speedup: float | None
    predicted_speedup: float
    dense_kernel_ms: float | None = None
    sparse_kernel_ms: float | None = None
    kernel_speedup: float | None = None
    kernel: str
    device: str
    note: str = ""


def cuda_note() -> str:
    """Empty if a 2:4-capable CUDA GPU is present, else why measurements are skipped."""
    if not torch.cuda.is_available():
        return "skipped: no CUDA device (torch.cuda.is_available() is False)"
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        return f"skipped: 2:4 sparse tensor cores need compute capability 8.0+, got {major}.{minor}"
    return ""


def _median_ms(run: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over `repeats` of CUDA-event ms of one `run()`, divided by the `calls` it makes."""
    samples = []
    for _ in range(repeats):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) / calls)
    return statistics.median(samples)


def _time_eager(fn: Callable[[], torch.Tensor], warmup: int, iters: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()

    def run() -> None:
        for _ in range(iters):
            fn()

    return _median_ms(run, iters, repeats)


def _time_graph(fn: Callable[[], torch.Tensor], calls: int, repeats: int) -> float:
    """Capture `calls` calls of `fn` in a CUDA graph (after a side-stream warm-up) and time
    replays. Every captured call keeps its output alive, so callers bound `calls` by memory."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    return _median_ms(graph.replay, calls, repeats)


def _operands(
    m: int, k: int, n: int, dtype: torch.dtype, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    dev = torch.device("cuda")
    if dtype == torch.int8:
        w = torch.randint(-8, 8, (m, k), generator=gen, device=dev, dtype=torch.int8)
        x_rows = torch.randint(-8, 8, (n, k), generator=gen, device=dev, dtype=torch.int8)
    else:
        w = torch.randn(m, k, generator=gen, device=dev).to(dtype)
        x_rows = torch.randn(n, k, generator=gen, device=dev).to(dtype)
    w = w * nm_mask(w.float(), 2, 4, dim=-1).to(dtype)
    # X is the transpose of a row-major [n, k] activation (tokens x features), the layout
    # F.linear hands the kernel; cuSPARSELt's int8 path refuses a row-major [k, n] B.
    return w.contiguous(), x_rows.contiguous().t()


def _run_float(w: torch.Tensor, x: torch.Tensor, sw: torch.Tensor) -> _Runner:
    dense = lambda: torch.mm(w, x)  # noqa: E731 - a closure to time
    sparse = lambda: torch.mm(sw, x)  # noqa: E731
    ref = dense().float()
    err = (sparse().float() - ref).abs().max().item() / max(ref.abs().max().item(), 1e-30)
    tol = 1e-2 if w.dtype == torch.bfloat16 else 2e-3
    return dense, sparse, err <= tol, f"relative error {err:.1e}"


def _run_int8(w: torch.Tensor, x: torch.Tensor, sw: torch.Tensor) -> _Runner:
    # Dense int8 GEMM in torch is `_int_mm` (int32 out). cuSPARSELt's int8 mm returns int8;
    # we check it against the int32 result saturated to int8, and time both as they are.
    dense = lambda: torch._int_mm(w, x)  # noqa: E731
    sparse = lambda: torch.mm(sw, x)  # noqa: E731
    ref = dense().clamp(-128, 127).to(torch.int8)
    ok = torch.equal(sparse(), ref)
    return dense, sparse, ok, "int8 out vs saturated int32" + ("" if ok else " MISMATCH")


def _measure_one(
    label: str, m: int, k: int, n: int, dtype: str, cfg: dict[str, int], seed: int
) -> GpuMeasurement:
    name = canonical_dtype(dtype)
    verdict = semi_structured_verdict("linear", (m, k), name, "2:4")
    base = {"label": label, "m": m, "k": k, "n": n, "dtype": name}
    skipped = {**base, "dense_ms": None, "sparse_ms": None, "speedup": None}
    if not verdict.qualifies or name not in _TORCH_DTYPES:
        note = f"skipped: {verdict.why_not or 'dtype not measured'}"
        return GpuMeasurement(
            **skipped, predicted_speedup=1.0, kernel=verdict.kernel, device="", note=note
        )
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w, x = _operands(m, k, n, _TORCH_DTYPES[name], gen)
    sw = torch.sparse.to_sparse_semi_structured(w)
    runner = _run_int8 if name == "int8" else _run_float
    dense, sparse, ok, check = runner(w, x, sw)
    device = torch.cuda.get_device_name()
    kernel = f"{type(sw).__name__.removeprefix('SparseSemiStructuredTensor')} 2:4"
    if not ok:
        return GpuMeasurement(
            **skipped,
            predicted_speedup=SPEEDUP_2TO4,
            kernel=kernel,
            device=device,
            note=f"not timed: sparse result disagrees with dense ({check})",
        )
    dense_ms = _time_eager(dense, **cfg)
    sparse_ms = _time_eager(sparse, **cfg)
    # Captured outputs stay allocated: keep them under _GRAPH_BYTES (int32 is the widest out).
    calls = max(1, min(cfg["iters"], _GRAPH_BYTES // (m * n * 4)))
    dense_k = _time_graph(dense, calls, cfg["repeats"])
    sparse_k = _time_graph(sparse, calls, cfg["repeats"])
    return GpuMeasurement(
        **base,
        dense_ms=dense_ms,
        sparse_ms=sparse_ms,
        speedup=dense_ms / sparse_ms,
        predicted_speedup=SPEEDUP_2TO4,
        dense_kernel_ms=dense_k,
        sparse_kernel_ms=sparse_k,
        kernel_speedup=dense_k / sparse_k,
        kernel=kernel,
        device=device,
        note=check,
    )


def measure_2to4(
    shapes: Sequence[tuple[int, int, int]],
    dtypes: Sequence[str] = ("fp16", "bf16", "int8"),
    *,
    labels: Sequence[str] | None = None,
    warmup: int = 10,
    iters: int = 50,
    repeats: int = 5,
    seed: int = 0,
) -> list[GpuMeasurement]:
    """Dense vs 2:4 time of W[m, k] @ X[k, n] for every (m, k, n) in `shapes` and dtype."""
    labels = list(labels) if labels is not None else [f"{m}x{k}x{n}" for m, k, n in shapes]
    note = cuda_note()
    cfg = {"warmup": warmup, "iters": iters, "repeats": repeats}
    out: list[GpuMeasurement] = []
    for label, (m, k, n) in zip(labels, shapes, strict=True):
        for dtype in dtypes:
            if note:
                out.append(
                    GpuMeasurement(
                        label=label,
                        m=m,
                        k=k,
                        n=n,
                        dtype=canonical_dtype(dtype),
                        dense_ms=None,
                        sparse_ms=None,
                        speedup=None,
                        predicted_speedup=SPEEDUP_2TO4,
                        kernel="",
                        device="",
                        note=note,
                    )
                )
                continue
            out.append(_measure_one(label, m, k, n, dtype, cfg, seed))
    return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render_gpu_table(rows: Sequence[GpuMeasurement]) -> Table:
    """Rich table: eager-call and kernel-only speedups next to the predicted bound."""
    table = Table(
        title=escape("2:4 semi-structured vs dense, W[m,k] @ X[k,n]"),
        caption="call = eager torch.mm (host plan setup included); "
        "kernel = CUDA-graph replay (GPU time only); predicted = math-bound upper bound",
    )
    timings = ("dense ms", "2:4 ms", "call x", "dense kern ms", "2:4 kern ms", "kernel x")
    for col in ("shape", "dtype", *timings, "predicted", "note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r.label,
            r.dtype,
            _ms(r.dense_ms),
            _ms(r.sparse_ms),
            _x(r.speedup),
            _ms(r.dense_kernel_ms),
            _ms(r.sparse_kernel_ms),
            _x(r.kernel_speedup),
            _x(r.predicted_speedup),
            r.note,
        )
    return table


def load_measurements(path: str | Path) -> list[GpuMeasurement]:
    """Rows of a sparsity_gpu.json written by benchmarks/bench_sparsity_gpu.py."""
    try:
        payload = json.loads(Path(path).read_text())
        names = {f.name for f in fields(GpuMeasurement)}
        return [
            GpuMeasurement(**{k: v for k, v in r.items() if k in names}) for r in payload["rows"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read GPU measurements from {path} ({type(exc).__name__}: {exc}); "
            "write them with benchmarks/bench_sparsity_gpu.py"
        ) from None
