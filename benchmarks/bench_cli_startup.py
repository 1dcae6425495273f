"""Start-up time of light `picojoule` commands, each in a fresh interpreter.

Every command runs `--runs` times as `python -m picojoule.cli ...` (stdout discarded), rounds
interleaved so that other processes' load hits all commands alike; the figure is the median
wall time. The baseline is `python -c pass` in the same rounds; `import torch` is timed too, as
the cost each light command must not pay. The issue's target (issue 14, section 5): `--help`,
`formats` and `explain ...` under 0.5 s.

    python benchmarks/bench_cli_startup.py [--runs 9]

Prints a rich table and writes benchmarks/results/cli_startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

TARGET_S = 0.5  # issue 14, section 5
RESULTS = Path(__file__).parent / "results" / "cli_startup.json"
CLI = [sys.executable, "-m", "picojoule.cli"]
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "picojoule --help": [*CLI, "--help"],
    "picojoule formats": [*CLI, "formats"],
    "picojoule explain --help": [*CLI, "explain", "--help"],
    "picojoule explain formats": [*CLI, "explain", "formats"],
    "picojoule explain nodes": [*CLI, "explain", "nodes"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}
LIGHT = {k for k in COMMANDS if k.startswith("picojoule")}


def _wall_s(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9, help="interleaved rounds; median is kept")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    for argv in COMMANDS.values():  # warm-up: page cache, .pyc files
        _wall_s(argv)
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    load_before = os.getloadavg()[0]
    for _ in range(args.runs):
        for key, argv in COMMANDS.items():
            times[key].append(_wall_s(argv))
    load_after = os.getloadavg()[0]
    base = statistics.median(times["python -c pass"])
    rows = []
    for key, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            {
                "command": key,
                "median_s": med,
                "min_s": min(ts),
                "max_s": max(ts),
                "over_baseline_s": med - base,
                "meets_target": med <= TARGET_S if key in LIGHT else None,
            }
        )
    t = Table(
        title=f"start-up, median of {args.runs} runs (load {load_before:.1f}-{load_after:.1f})"
    )
    for col in ("command", "median s", "min s", "max s", "- python s", f"<= {TARGET_S:g} s"):
        t.add_column(col, justify="left" if col == "command" else "right")
    for r in rows:
        ok = r["meets_target"]
        t.add_row(
            r["command"],
            f"{r['median_s']:.3f}",
            f"{r['min_s']:.3f}",
            f"{r['max_s']:.3f}",
            f"{r['over_baseline_s']:.3f}",
            "-" if ok is None else ("yes" if ok else "[red]no[/red]"),
        )
    Console().print(t)
    result = {
        "command": f"python benchmarks/bench_cli_startup.py --runs {args.runs}",
        "machine": {
            "cpu": _cpu_model(),
            "logical_cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "statistic": "median wall time over interleaved rounds, fresh interpreter each",
        "load_average_1min": {"before": load_before, "after": load_after},
        "target_s": TARGET_S,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
