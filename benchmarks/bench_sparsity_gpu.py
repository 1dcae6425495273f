"""2:4 semi-structured vs dense matmul on the GPU: a size sweep and the digits CNN's layers.

Writes benchmarks/results/sparsity_gpu.json and prints a rich table of measured speedup
(dense ms / 2:4 ms, same run, same shapes) next to the predicted upper bound. Without CUDA every
row is recorded as skipped with the reason.

    python benchmarks/bench_sparsity_gpu.py                       # sweep + digits CNN
    python benchmarks/bench_sparsity_gpu.py --sizes 8192 --no-model
"""

from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console

from picojoule.sparsity.gpu_check import cuda_note, measure_2to4, render_gpu_table
from picojoule.sparsity.report import layer_gemms

RESULTS = Path(__file__).parent / "results" / "sparsity_gpu.json"


def _model_shapes(batch: int) -> tuple[list[tuple[int, int, int]], list[str]]:
    """Implicit-GEMM (m, k, n) of every digits-CNN layer for one batch of 8x8 digits."""
    from picojoule.models import digits

    model = digits.build().eval()
    gemms = layer_gemms(model, torch.zeros(batch, 1, 8, 8))
    shapes = [(g.m, g.k, g.n) for g in gemms.values()]
    # Convs are timed as their implicit GEMM: what a sparse conv kernel could do; torch's
    # semi-structured path itself has no conv kernel (see kernels.semi_structured_verdict).
    labels = [f"digits {name} b{batch}" for name in gemms]
    return shapes, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--dtypes", nargs="+", default=["fp16", "bf16", "int8"])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--no-model", action="store_true", help="skip the digits CNN layers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    shapes = [(s, s, s) for s in args.sizes]
    labels = [f"{s}^3" for s in args.sizes]
    if not args.no_model:
        for batch in args.batches:
            more, names = _model_shapes(batch)
            shapes += more
            labels += names
    rows = measure_2to4(shapes, args.dtypes, labels=labels)
    Console(width=160).print(render_gpu_table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
            "torch": torch.__version__,
            "host": platform.node(),
        },
        "note": cuda_note(),
        "rows": [asdict(r) for r in rows],
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
