"""The language-model study end to end: `picojoule study --model smollm2 --recipes
llm-shootout` from a cold cache (GGUF dequantized and cached, every recipe evaluated and
costed), then warm (everything cached). Wall time, peak RSS, and each recipe's seconds from
the report. Target (issue 15, 2 cores): the cold shootout in <= 15 minutes.

    python benchmarks/bench_lm.py [--recipes llm-shootout] [--target eyeriss,h100]
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

RESULTS = Path(__file__).parent / "results" / "lm.json"
TARGET_S = 15 * 60


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process (RSS: the largest child so far)."""
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--recipes", default="llm-shootout")
    ap.add_argument("--target", default="eyeriss,h100")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PICOJOULE_CACHE": tmp}
        out = Path(tmp) / "report"
        cmd = [sys.executable, "-m", "picojoule.cli", "study", "--model", args.model,
               "--recipes", args.recipes, "--target", args.target, "--out", str(out)]  # fmt: skip
        cold = _run(cmd, env)
        report = json.loads((out / "report.json").read_text())
        warm = _run(cmd, env)
    per_recipe = {r["name"]: r["seconds"] for r in report["recipes"]}
    t = Table(title=f"picojoule study --model {args.model} --recipes {args.recipes}")
    for col in ("run", "wall s", "peak RSS MiB", "target s"):
        t.add_column(col, justify="right")
    t.add_row("cold", f"{cold[0]:.0f}", f"{cold[1]:.0f}", str(TARGET_S))
    t.add_row("warm", f"{warm[0]:.1f}", f"{warm[1]:.0f}", "-")
    Console().print(t)
    r = Table(title="seconds per recipe (cold: load copy, levers, perplexity, phase costs)")
    r.add_column("recipe")
    r.add_column("s", justify="right")
    for name, s in per_recipe.items():
        r.add_row(name, f"{s:.1f}")
    Console().print(r)
    RESULTS.parent.mkdir(exist_ok=True)
    data = {
        "machine": platform.platform(), "cpus": os.cpu_count(), "model": args.model,
        "recipes": args.recipes, "target": args.target, "cold_wall_s": cold[0],
        "cold_peak_rss_mib": cold[1], "warm_wall_s": warm[0], "warm_peak_rss_mib": warm[1],
        "cold_vs_target": cold[0] / TARGET_S, "seconds_per_recipe": per_recipe,
    }  # fmt: skip
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
