"""Fake-quant on a busy machine: 1 vs torch's threads vs the per-chunk policy, against a clone.

A [4096, 4096] float32 tensor (a large linear layer's weight) is fake-quantized to e4m3,
MXFP4 and NVFP4 with
- `1 thread`: torch.set_num_threads(1);
- `N threads`: torch's intra-op threads (--threads, default 2), every chunk;
- `policy`: N threads and `picojoule.formats.cast.ChunkThreads`, which times the chunks and
  runs each with N threads or 1, whichever is faster now (the library default);
and `torch.clone` of the same tensor is the baseline (one op: one thread barrier), timed with
N threads and with 1. Each case runs `--repeats` interleaved rounds; the figure is the median.
The whole set runs twice: unloaded, then with `--load` busy-loop processes (default 2, one per
core of the project's machine) competing for the cores. The issue's target (issue 14,
section 5): the loaded slowdown of fake-quant at most about a clone's.

    python benchmarks/bench_loaded_fakequant.py [--repeats 5] [--load 2] [--threads 2]

Prints a table and writes benchmarks/results/loaded_fakequant.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from picojoule.formats import cast, get

FORMATS = ["e4m3", "mxfp4", "nvfp4"]
RESULTS = Path(__file__).parent / "results" / "loaded_fakequant.json"


def _spin() -> None:
    while True:
        pass


def _cases(
    x: torch.Tensor, threads: int, formats: list[str], fixed_many: bool
) -> dict[str, tuple[int, bool, Callable[[], object]]]:
    """name -> (torch threads, adaptive policy on, work)."""
    cases: dict[str, tuple[int, bool, Callable[[], object]]] = {
        f"clone, {threads} threads": (threads, False, lambda: torch.clone(x)),
        "clone, 1 thread": (1, False, lambda: torch.clone(x)),
    }
    for name in formats:
        fmt = get(name)
        work = lambda fmt=fmt: fmt.quantize(x)  # noqa: E731
        cases[f"{name}, 1 thread"] = (1, False, work)
        if fixed_many:
            cases[f"{name}, {threads} threads"] = (threads, False, work)
        cases[f"{name}, policy"] = (threads, True, work)
    return cases


def _time_s(threads: int, adapt: bool, fn: Callable[[], object]) -> float:
    torch.set_num_threads(threads)
    cast.ADAPT_THREADS = adapt
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        cast.ADAPT_THREADS = True


def run_phase(
    x: torch.Tensor, *, threads: int, repeats: int, load: int, formats: list[str], fixed_many: bool
) -> dict[str, object]:
    procs = [mp.Process(target=_spin, daemon=True) for _ in range(load)]
    for p in procs:
        p.start()
    try:
        time.sleep(1.0 if load else 0.0)  # let the spinners reach the cores
        load_before = os.getloadavg()[0]
        cases = _cases(x, threads, formats, fixed_many)
        for spec in cases.values():  # warm-up; the policy learns this load here
            _time_s(*spec)
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(repeats):
            for key, spec in cases.items():
                times[key].append(_time_s(*spec))
        load_after = os.getloadavg()[0]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
    return {
        "busy_processes": load,
        "load_average_1min": {"before": load_before, "after": load_after},
        "median_ms": {k: statistics.median(v) * 1e3 for k, v in times.items()},
        "all_ms": {k: [t * 1e3 for t in v] for k, v in times.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; median is kept")
    ap.add_argument("--load", type=int, default=2, help="busy-loop processes in the loaded run")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (N)")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--cols", type=int, default=4096)
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated formats")
    ap.add_argument(
        "--skip-fixed-many",
        action="store_true",
        help="leave out 'N threads every chunk' (the slowest cases: minutes under load)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    kw = {"threads": args.threads, "repeats": args.repeats, "formats": formats}
    kw["fixed_many"] = not args.skip_fixed_many
    x = torch.randn(args.rows, args.cols, generator=torch.Generator().manual_seed(0))
    phases = {
        "unloaded": run_phase(x, load=0, **kw),  # type: ignore[arg-type]
        "loaded": run_phase(x, load=args.load, **kw),  # type: ignore[arg-type]
    }
    clone_key = f"clone, {args.threads} threads"
    un, lo = phases["unloaded"]["median_ms"], phases["loaded"]["median_ms"]
    rows = []
    for key in un:
        rows.append(
            {
                "case": key,
                "unloaded_ms": un[key],
                "unloaded_x_clone": un[key] / un[clone_key],
                "loaded_ms": lo[key],
                "loaded_x_clone": lo[key] / lo[clone_key],
                "loaded_over_unloaded": lo[key] / un[key],
            }
        )
    t = Table(
        title=f"fake-quant of [{args.rows}, {args.cols}] float32, median of {args.repeats}; "
        f"x clone = ratio to a {args.threads}-thread clone in the same phase; "
        f"loaded = {args.load} busy-loop processes"
    )
    for col in ("case", "unloaded ms", "x clone", "loaded ms", "x clone", "loaded / unloaded"):
        t.add_column(col, justify="left" if col == "case" else "right")
    for r in rows:
        t.add_row(
            r["case"],
            f"{r['unloaded_ms']:.1f}",
            f"{r['unloaded_x_clone']:.2f}",
            f"{r['loaded_ms']:.1f}",
            f"{r['loaded_x_clone']:.2f}",
            f"{r['loaded_over_unloaded']:.2f}",
        )
    Console().print(t)
    for name, ph in phases.items():
        la = ph["load_average_1min"]
        print(f"{name}: load average (1 min) {la['before']:.2f} -> {la['after']:.2f}")
    result = {
        "command": f"python benchmarks/bench_loaded_fakequant.py --repeats {args.repeats} "
        f"--load {args.load} --threads {args.threads} --rows {args.rows} --cols {args.cols} "
        f"--formats {','.join(formats)}" + (" --skip-fixed-many" if args.skip_fixed_many else ""),
        "machine": {
            "logical_cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "shape": [args.rows, args.cols],
        "statistic": "median over interleaved rounds",
        "rows": rows,
        "phases": phases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
