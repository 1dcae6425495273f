"""Design-space exploration throughput: local process pool vs Ray, and time to a Pareto front.

Writes benchmarks/results/dse.json and prints rich tables.

1. Throughput: the same `--designs` designs (drawn with a fixed seed from the packaged
   `magnet-resnet18-500` space: MAGNet on ResNet-18, int8/int4 weights, 16 nm) evaluated
   in this process (the 1-core baseline), by the local process pool and by a local Ray, each
   with `--workers` workers. Wall time includes starting the backend (forkserver, or
   `ray.init` and its workers' imports), as a user pays it; ratios are against the baseline
   and Ray against the pool. All three must return identical numbers, and are checked to.
2. Time to a Pareto front: `run_space` on the whole 500-design space into a fresh database,
   then the front and the chosen design, with the local pool.

    python benchmarks/bench_dse.py                          # 2 workers, 24 designs, front
    python benchmarks/bench_dse.py --workers 2 --designs 24 --skip-front
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from picojoule.dse.backends import LocalBackend, RayBackend
from picojoule.dse.evaluate import DesignEvaluator, load_workload, model_version
from picojoule.dse.params import catalog
from picojoule.dse.report import build_report
from picojoule.dse.results import ResultsDB
from picojoule.dse.runner import run_space
from picojoule.dse.search import RandomSearch
from picojoule.dse.spacefile import find_space, load_space

RESULTS = Path(__file__).parent / "results" / "dse.json"
SPACE = "magnet-resnet18-500"


def _time_backend(backend: Any, items: list[tuple[str, dict[str, Any]]]) -> tuple[float, dict]:
    start = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        for batch in backend.run(items):
            out.update(batch)
    finally:
        backend.close()
    return time.perf_counter() - start, out


def throughput(workers: int, n: int, ray: bool, console: Console) -> dict[str, Any]:
    space = load_space(find_space(SPACE), catalog)
    job = DesignEvaluator(
        preset=space.preset, workload=load_workload(space.workload), mapper=space.mapper
    )
    designs = RandomSearch(space, trials=n, seed=1).propose()
    items = [(d.key, d.as_dict()) for d in designs]
    rows: dict[str, dict[str, float]] = {}
    serial_s, reference = _time_backend(LocalBackend(job, workers=1), items)
    rows["in-process (1 core)"] = {"seconds": serial_s, "designs_per_s": n / serial_s}
    pool_s, pooled = _time_backend(LocalBackend(job, workers=workers), items)
    assert pooled == reference, "process pool results differ from in-process ones"
    rows[f"local pool ({workers} workers)"] = {"seconds": pool_s, "designs_per_s": n / pool_s}
    if ray:
        t0 = time.perf_counter()
        backend = RayBackend(job, workers=workers)
        init_s = time.perf_counter() - t0
        ray_s, rayed = _time_backend(backend, items)
        assert rayed == reference, "Ray results differ from in-process ones"
        rows[f"ray ({workers} CPUs)"] = {
            "seconds": init_s + ray_s,
            "designs_per_s": n / (init_s + ray_s),
            "ray_init_s": init_s,
        }
    table = Table(title=f"{n} designs of {SPACE} (ResNet-18), identical results on every backend")
    for col in ("backend", "wall s", "designs/s", "x in-process"):
        table.add_column(col, justify="right" if col != "backend" else "left")
    for name, r in rows.items():
        table.add_row(
            name,
            f"{r['seconds']:.1f}",
            f"{r['designs_per_s']:.2f}",
            f"{r['designs_per_s'] / rows['in-process (1 core)']['designs_per_s']:.2f}",
        )
    console.print(table)
    out: dict[str, Any] = {"designs": n, "workers": workers, "backends": rows}
    ray_key = f"ray ({workers} CPUs)"
    if ray_key in rows:
        ratio = (
            rows[ray_key]["designs_per_s"]
            / rows[f"local pool ({workers} workers)"]["designs_per_s"]
        )
        out["ray_over_local"] = ratio
        console.print(f"Ray / local pool throughput: {ratio:.2f}")
    return out


def time_to_front(workers: int, console: Console) -> dict[str, Any]:
    space = load_space(find_space(SPACE), catalog)
    job = DesignEvaluator(
        preset=space.preset, workload=load_workload(space.workload), mapper=space.mapper
    )
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = run_space(space, job, out=tmp, workers=workers)
        with ResultsDB.open(tmp, create=False) as db:
            run = db.run(space.name)
            report = build_report(run, db.points(run.run_id))
        seconds = time.perf_counter() - start
    chosen = report.chosen.metrics if report.chosen is not None else None
    best = report.most_efficient.metrics if report.most_efficient is not None else None
    table = Table(title=f"time to a Pareto front: {space.size:,}-design space, 500 drawn")
    for col in ("designs", "workers", "seconds", "designs/s", "front", "best TOPS/W"):
        table.add_column(col, justify="right")
    table.add_row(
        str(summary.points),
        str(workers),
        f"{seconds:.0f}",
        f"{summary.points / seconds:.2f}",
        str(len(report.front)),
        f"{best['tops_per_w']:.2f}" if best else "-",
    )
    console.print(table)
    return {
        "designs": summary.points,
        "failed": summary.failed,
        "workers": workers,
        "seconds": seconds,
        "designs_per_s": summary.points / seconds,
        "front_size": len(report.front),
        "chosen": {"design": report.chosen.design, "metrics": _brief(chosen)} if chosen else None,
        "most_efficient": _brief(best) if best else None,
    }


def _brief(m: dict[str, Any] | None) -> dict[str, float] | None:
    if m is None:
        return None
    keys = ("energy_pj", "latency_s", "area_mm2", "tops_per_w", "onchip_tops_per_w")
    return {k: m[k] for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--designs", type=int, default=24, help="designs in the throughput test")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--skip-front", action="store_true")
    args = ap.parse_args()
    console = Console()
    result: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "command": "python " + " ".join(sys.argv),
        "model_version": model_version(),
        "throughput": throughput(args.workers, args.designs, not args.skip_ray, console),
    }
    if not args.skip_front:
        result["time_to_front"] = time_to_front(args.workers, console)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
