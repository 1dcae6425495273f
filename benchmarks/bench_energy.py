"""Energy ledger per format and speed-of-light per recipe, as ratios to a baseline in the run.

Part 1: energy of one MAC (math) and the three-way ledger (math + instruction overhead +
operand delivery from an 8 KB SRAM) for each format at 45 nm and 7 nm, relative to FP32.
Part 2: speed of light (least time and energy) of ResNet-50 at batch 32 on H100 and B200 for
several recipes, relative to FP16 on the same GPU.
Writes benchmarks/results/energy.json and prints rich tables. CPU only, a few seconds.

    PYTHONPATH=src python benchmarks/bench_energy.py
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from picojoule.energy import format_ledger, gpu, mac_energy, roofline
from picojoule.workload import apply_recipe, builtin

RESULTS = Path(__file__).parent / "results"
FORMATS = ("fp32", "bf16", "fp16", "e4m3", "mxfp8_e4m3", "int8", "mxfp6_e2m3", "e2m1", "mxfp4",
           "nvfp4", "int4", "vsq4_v16", "vsq4_v16_s4", "lns8")  # fmt: skip
RECIPES = {
    "h100": ("w:fp16,a:fp16", "w:bf16,a:bf16", "w:int8,a:int8", "w:e4m3,a:e4m3"),
    "b200": ("w:fp16,a:fp16", "w:e4m3,a:e4m3", "w:nvfp4,a:e4m3", "w:nvfp4,a:nvfp4"),
}


def formats_part(console: Console) -> list[dict]:
    rows = []
    table = Table(title="Energy per MAC, ratio to fp32 (math only / full ledger)")
    for col in ("format", "45 nm pJ", "7 nm pJ", "math / fp32", "ledger pJ (7 nm)",
                "ledger / fp32"):  # fmt: skip
        table.add_column(col, justify="left" if col == "format" else "right")
    base45 = mac_energy("fp32").energy_pj
    base_ledger = format_ledger("fp32", node_nm=7).total_pj
    for fmt in FORMATS:
        e45, e7 = mac_energy(fmt).energy_pj, mac_energy(fmt, node_nm=7).energy_pj
        ledger = format_ledger(fmt, node_nm=7)
        rows.append(
            {
                "format": fmt,
                "mac_pj_45nm": e45,
                "mac_pj_7nm": e7,
                "math_ratio_to_fp32": e45 / base45,
                "ledger_pj_7nm": ledger.total_pj,
                "ledger_parts_pj_7nm": {
                    "math": ledger.math_pj,
                    "overhead": ledger.overhead_pj,
                    "memory": ledger.memory_pj,
                },
                "ledger_ratio_to_fp32": ledger.total_pj / base_ledger,
            }
        )
        table.add_row(fmt, f"{e45:.4f}", f"{e7:.5f}", f"{e45 / base45:.3f}",
                      f"{ledger.total_pj:.4f}", f"{ledger.total_pj / base_ledger:.3f}")  # fmt: skip
    console.print(table)
    return rows


def roofline_part(console: Console) -> list[dict]:
    rows = []
    table = Table(title="ResNet-50, batch 32: speed of light, ratio to fp16 on the same GPU")
    for col in ("GPU", "recipe", "min time us", "time / fp16", "min energy mJ", "energy / fp16",
                "compute-bound layers"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("GPU", "recipe") else "right")
    for name, recipes in RECIPES.items():
        spec = gpu(name)
        base = None
        for recipe in recipes:
            roof = roofline(apply_recipe(builtin("resnet50", batch=32), recipe), spec)
            base = base or roof
            bound = sum(b.bound == "compute" for b in roof.layers)
            rows.append(
                {
                    "gpu": name,
                    "recipe": recipe,
                    "min_time_s": roof.min_time_s,
                    "min_energy_pj": roof.min_energy_pj,
                    "time_ratio_to_fp16": roof.min_time_s / base.min_time_s,
                    "energy_ratio_to_fp16": roof.min_energy_pj / base.min_energy_pj,
                    "compute_bound_layers": bound,
                    "layers": len(roof.layers),
                }
            )
            table.add_row(
                name, recipe, f"{roof.min_time_s * 1e6:.1f}",
                f"{roof.min_time_s / base.min_time_s:.3f}", f"{roof.min_energy_pj / 1e9:.3f}",
                f"{roof.min_energy_pj / base.min_energy_pj:.3f}", f"{bound}/{len(roof.layers)}",
            )  # fmt: skip
    console.print(table)
    return rows


def main() -> None:
    console = Console()
    start = time.perf_counter()
    formats = formats_part(console)
    roofs = roofline_part(console)
    data = {
        "command": "PYTHONPATH=src python benchmarks/bench_energy.py",
        "machine": f"{platform.machine()} {platform.system()} python {platform.python_version()}",
        "baseline": {"formats": "fp32", "roofline": "w:fp16,a:fp16 on the same GPU"},
        "formats": formats,
        "roofline": roofs,
        "wall_s": time.perf_counter() - start,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "energy.json"
    out.write_text(json.dumps(data, indent=2) + "\n")
    console.print(f"wrote {out} in {data['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
