"""Fused Triton GEMMs on packed weights vs bf16 cuBLAS and FP8 `_scaled_mm` in the same run.

Decode (M=16, N=K=8192), prefill (8192^3), an M sweep 1..8192 and MiniLM end to end. Writes
benchmarks/results/gpu_kernels.json (+ gpu_msweep.png), prints rich tables, and with
--save-tuning copies the tuned configs to src/picojoule/gpu/tuned_h100.json's format.

    PYTHONPATH=src python benchmarks/bench_gpu_kernels.py [--stages decode prefill msweep e2e]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from picojoule.gpu.cli import kernel_table
from picojoule.gpu.device import GpuUnavailableError, require_cuda
from picojoule.gpu.report import M_SWEEP, kernel_report, plot_report, save_json

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["decode", "prefill", "msweep", "e2e"])
    parser.add_argument("--ms", type=int, nargs="+", default=M_SWEEP)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--save-tuning", type=Path, default=None)
    parser.add_argument(
        "--retune", action="store_true", help="ignore shipped and cached configs: time every one"
    )
    args = parser.parse_args()
    console = Console()
    try:
        require_cuda((8, 0), what="bench_gpu_kernels")
    except GpuUnavailableError as e:
        console.print(f"[yellow]skipped: {e}[/yellow]")
        return
    if args.retune:
        from picojoule.gpu.ops import forget_tuning

        forget_tuning()
    command = "python benchmarks/bench_gpu_kernels.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    data = kernel_report(
        stages=tuple(args.stages), ms=args.ms, compile_baseline=not args.no_compile, command=command
    )
    for name in ("decode", "prefill", "msweep"):
        sec = data.get(name)
        if isinstance(sec, list):
            console.print(kernel_table(sec, name))
        elif isinstance(sec, dict):
            console.print(f"[red]{name}: {sec['error']}[/red]")
    if isinstance(data.get("e2e"), list):
        for e in data["e2e"]:
            console.print(e)
    save_json(data, args.out / "gpu_kernels.json")
    plot_report(data, args.out)
    if args.save_tuning:
        from picojoule.gpu.ops import TUNING

        tuned = {k: asdict(v) for k, v in TUNING.items().items()}
        args.save_tuning.write_text(json.dumps(tuned, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
