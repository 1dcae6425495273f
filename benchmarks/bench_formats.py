"""Fake-quant throughput of the reference casts, as a ratio to `torch.clone` of the same tensor.

A [4096, 4096] float32 tensor (16M elements, 64 MiB) is quantized to each format; every
timing is the minimum over `--repeats` rounds, and the rounds are interleaved (clone, then
every format, then ml_dtypes, then again) so that load from other processes hits all cases
alike. ml_dtypes' `astype` is timed as the equivalent fake-quant round trip
(float32 -> format -> float32) for the formats it has; it is single-threaded.

    python benchmarks/bench_formats.py [--threads 2 [1 ...]] [--repeats 7] [--size 4096]

Prints a rich table per thread count and writes benchmarks/results/formats.json. The issue's
target (issue 3, section 6): every format within 4x of a clone on 2 CPU cores. On a shared
machine, compare thread counts: a 2-thread run pays a thread-pool barrier per elementwise op
(~10 ops per 64K-element chunk), which other processes' load stretches.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from picojoule.formats import get

FORMATS = ["e4m3", "e2m1", "mxfp4", "nvfp4", "vsq4_v16_s4", "int8/channel"]
ML_DTYPES = {"e4m3": ml_dtypes.float8_e4m3fn, "e2m1": ml_dtypes.float4_e2m1fn}
TARGET_X_CLONE = 4.0  # issue 3, section 6
RESULTS = Path(__file__).parent / "results" / "formats.json"


@dataclass(frozen=True, kw_only=True)
class Row:
    format: str
    time_ms: float
    x_clone: float
    ml_dtypes_ms: float | None
    x_ml_dtypes: float | None  # our time / ml_dtypes' time (below 1: faster)
    meets_target: bool


def _time_s(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, object]:
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "ml_dtypes": ml_dtypes.__version__,
    }


def run(*, size: int, repeats: int, threads: int) -> tuple[float, list[Row]]:
    """Minimum seconds of clone and of every case over `repeats` interleaved rounds."""
    torch.set_num_threads(threads)
    x = torch.randn(size, size, generator=torch.Generator().manual_seed(0))
    x_np = x.numpy()
    cases: dict[str, Callable[[], object]] = {"clone": lambda: torch.clone(x)}
    for name in FORMATS:
        fmt = get(name)
        cases[name] = lambda fmt=fmt: fmt.quantize(x)
    for name, dt in ML_DTYPES.items():
        cases[f"ml_dtypes:{name}"] = lambda dt=dt: x_np.astype(dt).astype(np.float32)
    for fn in cases.values():  # warm-up: allocator, lazy tables, code paths
        fn()
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeats):
        for key, fn in cases.items():
            best[key] = min(best[key], _time_s(fn))
    clone = best["clone"]
    rows = []
    for name in FORMATS:
        ml = best.get(f"ml_dtypes:{name}")
        rows.append(
            Row(
                format=name,
                time_ms=best[name] * 1e3,
                x_clone=best[name] / clone,
                ml_dtypes_ms=None if ml is None else ml * 1e3,
                x_ml_dtypes=None if ml is None else best[name] / ml,
                meets_target=best[name] / clone <= TARGET_X_CLONE,
            )
        )
    return clone, rows


def table(clone_s: float, rows: list[Row], *, size: int, threads: int) -> Table:
    t = Table(
        title=f"fake-quant of [{size}, {size}] float32, {threads} thread(s); "
        f"clone = {clone_s * 1e3:.1f} ms"
    )
    for col in (
        "format",
        "ms",
        "x clone",
        "ml_dtypes ms",
        "x ml_dtypes",
        f"<= {TARGET_X_CLONE:g}x",
    ):
        t.add_column(col, justify="left" if col == "format" else "right")
    for r in rows:
        t.add_row(
            r.format,
            f"{r.time_ms:.1f}",
            f"{r.x_clone:.2f}",
            "-" if r.ml_dtypes_ms is None else f"{r.ml_dtypes_ms:.1f}",
            "-" if r.x_ml_dtypes is None else f"{r.x_ml_dtypes:.3f}",
            "yes" if r.meets_target else "[red]no[/red]",
        )
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--threads", type=int, nargs="+", default=[2], help="torch intra-op threads (default 2)"
    )
    ap.add_argument("--repeats", type=int, default=7, help="interleaved rounds; min is kept")
    ap.add_argument("--size", type=int, default=4096, help="square tensor side")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    runs = []
    for threads in args.threads:
        load_before = os.getloadavg()[0]
        clone_s, rows = run(size=args.size, repeats=args.repeats, threads=threads)
        load_after = os.getloadavg()[0]
        Console().print(table(clone_s, rows, size=args.size, threads=threads))
        print(f"load average (1 min) before/after: {load_before:.2f} / {load_after:.2f}")
        runs.append(
            {
                "threads": threads,
                "load_average_1min": {"before": load_before, "after": load_after},
                "clone_ms": clone_s * 1e3,
                "results": [asdict(r) for r in rows],
            }
        )
    threads_arg = " ".join(map(str, args.threads))
    result = {
        "command": f"python benchmarks/bench_formats.py --threads {threads_arg} "
        f"--repeats {args.repeats} --size {args.size}",
        "machine": machine(),
        "shape": [args.size, args.size],
        "dtype": "float32",
        "repeats": args.repeats,
        "statistic": "min over interleaved rounds",
        "target_x_clone": TARGET_X_CLONE,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
