"""Per-format GEMM throughput, copy bandwidth, NVML board energy (pJ/op) and SOL% on this GPU.

Writes benchmarks/results/gpu.json (+ gpu_gemm.png) and prints a rich table. Ratios to the
bf16 cuBLAS row of the same run are in the JSON; without an NVIDIA GPU it prints why and exits.

    PYTHONPATH=src python benchmarks/bench_gpu.py [--sizes 2048 4096 8192] [--energy-s 0.5]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rich.console import Console

from picojoule.gpu.cli import gemm_table
from picojoule.gpu.device import GpuUnavailableError, require_cuda
from picojoule.gpu.report import gemm_report, plot_report, save_json

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192])
    parser.add_argument("--formats", nargs="+", default=None)
    parser.add_argument("--energy-s", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    console = Console()
    try:
        require_cuda(what="bench_gpu")
    except GpuUnavailableError as e:
        console.print(f"[yellow]skipped: {e}[/yellow]")
        return
    command = "python benchmarks/bench_gpu.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    data = gemm_report(args.sizes, args.formats, energy_s=args.energy_s, command=command)
    bf16 = {r["m"]: r["tflops"] for r in data["gemm"] if r["fmt"] == "bf16" and r["tflops"]}
    for r in data["gemm"]:
        r["ratio_to_bf16"] = r["tflops"] / bf16[r["m"]] if r["tflops"] and r["m"] in bf16 else None
    console.print(gemm_table(data))
    bw = data["bandwidth"]
    console.print(f"copy bandwidth {bw['tb_per_s']:.2f} TB/s")
    save_json(data, args.out / "gpu.json")
    plot_report(data, args.out)


if __name__ == "__main__":
    main()
