"""`make demo` end to end: cold (fresh caches: trains the digits CNN, maps every recipe) and
warm (everything cached), wall time and peak memory. Targets (issue 9, 2 cores): <= 3 min cold,
<= 30 s warm.

    python benchmarks/bench_study.py [--recipes default] [--target eyeriss]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results" / "study.json"


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--recipes", default="default")
    ap.add_argument("--target", default="eyeriss")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PICOJOULE_CACHE": tmp}
        cmd = [sys.executable, "-m", "picojoule.cli", "study", "--recipes", args.recipes,
               "--target", args.target, "--out", str(Path(tmp) / "report")]  # fmt: skip
        cold = _run(cmd, env)
        warm = _run(cmd, env)
    rows = {"cold": cold, "warm": warm}
    t = Table(title=f"picojoule study --recipes {args.recipes} --target {args.target}")
    for col in ("run", "wall s", "peak RSS MiB", "target s"):
        t.add_column(col, justify="right")
    for name, (wall, rss) in rows.items():
        t.add_row(name, f"{wall:.1f}", f"{rss:.0f}", "180" if name == "cold" else "30")
    Console().print(t)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": platform.platform(), "cpus": os.cpu_count(), "recipes": args.recipes,
        "target": args.target,
        **{f"{k}_wall_s": v[0] for k, v in rows.items()},
        **{f"{k}_peak_rss_mib": v[1] for k, v in rows.items()},
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
