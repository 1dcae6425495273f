"""Sparsity CPU benchmark: channel-permutation search, and mask + pack throughput.

1. A 4096x4096 layer: |w| kept by plain magnitude 2:4 vs 2:4 after `search_permutation`, and the
   search time as a multiple of computing the plain mask. Two matrices: i.i.d. Gaussian (every
   channel alike, so no permutation can help much) and Gaussian with log-normal per-channel
   scales (uneven input channels, as trained layers have; sigma 1).
2. Mask + pack throughput for 2:4 (N:M layout) and 10% unstructured (CSR), as a ratio to
   `w.clone()` of the same tensor in the same run.

Writes benchmarks/results/sparsity.json and prints rich tables.

    python benchmarks/bench_sparsity.py [--size 4096] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from picojoule.sparsity import nm_mask, pack, search_permutation, unstructured_mask

RESULTS = Path(__file__).parent / "results" / "sparsity.json"


def _best_s(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` wall-clock runs (the machine is shared; the minimum is the least
    disturbed)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _matrices(size: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    iid = torch.randn(size, size, generator=gen)
    scales = torch.exp(torch.randn(size, generator=gen))
    return {"iid gaussian": iid, "log-normal channel scales": iid * scales}


def bench_permutation(size: int, rounds: int) -> list[dict[str, object]]:
    rows = []
    for name, w in _matrices(size).items():
        mask_s = _best_s(lambda w=w: nm_mask(w, 2, 4), repeats=3)
        start = time.perf_counter()
        found = search_permutation(w, 2, 4, rounds=rounds)
        search_s = time.perf_counter() - start
        rows.append(
            {
                "matrix": name,
                "shape": [size, size],
                "kept_plain": found.kept_fraction_before,
                "kept_permuted": found.kept_fraction_after,
                "gain_pct": 100 * found.gain,
                "rounds": found.rounds,
                "accepted_splits": found.accepted,
                "plain_mask_s": mask_s,
                "search_s": search_s,
                "search_over_mask": search_s / mask_s,
            }
        )
    return rows


def bench_pack(size: int) -> list[dict[str, object]]:
    w = torch.randn(size, size, generator=torch.Generator().manual_seed(1))
    clone_s = _best_s(w.clone, repeats=5)
    cases: dict[str, Callable[[], object]] = {
        "2:4 mask + pack": lambda: pack("2:4", w * nm_mask(w, 2, 4)),
        "10% unstructured mask + CSR pack": lambda: pack("csr", w * unstructured_mask(w, 0.1)),
    }
    rows = []
    for name, fn in cases.items():
        seconds = _best_s(fn, repeats=3)
        rows.append(
            {
                "case": name,
                "seconds": seconds,
                "gb_per_s": w.numel() * w.element_size() / seconds / 1e9,
                "clone_seconds": clone_s,
                "over_clone": seconds / clone_s,
            }
        )
    return rows


def _tables(perm: list[dict[str, object]], packs: list[dict[str, object]]) -> list[Table]:
    t1 = Table(title="2:4 channel permutation, kept |w| fraction (baseline: plain magnitude 2:4)")
    for col in ("matrix", "plain", "permuted", "gain", "rounds", "mask s", "search s", "ratio"):
        t1.add_column(col, justify="left" if col == "matrix" else "right")
    for r in perm:
        t1.add_row(
            str(r["matrix"]),
            f"{r['kept_plain']:.4f}",
            f"{r['kept_permuted']:.4f}",
            f"{r['gain_pct']:+.2f}%",
            str(r["rounds"]),
            f"{r['plain_mask_s']:.3f}",
            f"{r['search_s']:.2f}",
            f"{r['search_over_mask']:.0f}x",
        )
    t2 = Table(title="mask + pack throughput (baseline: w.clone() of the same fp32 tensor)")
    for col in ("case", "seconds", "GB/s in", "clone s", "vs clone"):
        t2.add_column(col, justify="left" if col == "case" else "right")
    for r in packs:
        t2.add_row(
            str(r["case"]),
            f"{r['seconds']:.3f}",
            f"{r['gb_per_s']:.2f}",
            f"{r['clone_seconds']:.4f}",
            f"{r['over_clone']:.0f}x",
        )
    return [t1, t2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    perm = bench_permutation(args.size, args.rounds)
    packs = bench_pack(args.size)
    console = Console(width=140)
    for table in _tables(perm, packs):
        console.print(table)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine, "permutation": perm, "mask_pack": packs}
    args.out.write_text(json.dumps(payload, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
