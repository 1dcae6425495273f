"""Plots of the energy ledger and the roofline (matplotlib, Agg backend, PNG files).

Public: `plot_instructions(path)`, `plot_formats(path, formats)`, `plot_roofline(roof, gpu,
path)`. Each writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from picojoule.energy.gpu_specs import GpuSpec  # noqa: E402
from picojoule.energy.ledger import format_ledger  # noqa: E402
from picojoule.energy.overhead import INSTRUCTIONS, instruction_energy  # noqa: E402
from picojoule.energy.speed_of_light import Roofline  # noqa: E402
from picojoule.fsio import save_figure  # noqa: E402

__all__ = ["plot_instructions", "plot_formats", "plot_roofline", "DEFAULT_PLOT_FORMATS"]

DEFAULT_PLOT_FORMATS = (
    "fp32", "bf16", "fp16", "e4m3", "mxfp8_e4m3", "int8", "mxfp6_e2m3", "nvfp4", "mxfp4",
    "vsq4_v16_s4", "int4", "lns8",
)  # fmt: skip
_MAX_LABELLED_LAYERS = 12
_COLORS = {"math": "#4c72b0", "overhead": "#dd8452", "memory": "#55a868"}


def _save(fig: plt.Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, out, dpi=120, bbox_inches="tight")  # atomic; never through a symlink
    plt.close(fig)
    return out


def plot_instructions(path: str | Path, *, math: str = "published") -> Path:
    """Math vs overhead per instruction: share of energy, and pJ per op (log scale)."""
    rows = [instruction_energy(n, math=math) for n in INSTRUCTIONS]  # type: ignore[arg-type]
    names = [r.instruction.name for r in rows]
    fig, (share, per_op) = plt.subplots(1, 2, figsize=(10, 4))
    math_share = [100 * r.math_pj / r.total_pj for r in rows]
    over_share = [100 * r.overhead_over_total for r in rows]
    share.bar(names, math_share, color=_COLORS["math"], label="math")
    share.bar(names, over_share, bottom=math_share, color=_COLORS["overhead"], label="overhead")
    share.set_ylabel("share of instruction energy (%)")
    share.set_title("overhead / total")
    share.legend(loc="lower left")
    per_op.bar(names, [r.math_pj / r.instruction.ops for r in rows], color=_COLORS["math"])
    per_op.bar(
        names,
        [r.overhead_pj / r.instruction.ops for r in rows],
        bottom=[r.math_pj / r.instruction.ops for r in rows],
        color=_COLORS["overhead"],
    )
    per_op.set_yscale("log")
    # log axes clip bars that start at 0: give the axis an explicit floor below the smallest
    per_op.set_ylim(bottom=0.5 * min(r.math_pj / r.instruction.ops for r in rows))
    per_op.set_ylabel("pJ per op (45 nm)")
    per_op.set_title(f"energy per op, math = {math}")
    fig.suptitle("Instruction overhead (30 pJ fetch/decode/operands, Dally 2023)")
    return _save(fig, path)


def plot_formats(
    path: str | Path,
    formats: Sequence[str] = DEFAULT_PLOT_FORMATS,
    *,
    node_nm: float = 45.0,
    macs_per_instruction: int = 512,
) -> Path:
    """Per format: math (by part) vs amortized instruction overhead vs operand delivery."""
    ledgers = [
        format_ledger(f, node_nm=node_nm, macs_per_instruction=macs_per_instruction)
        for f in formats
    ]
    names = [led.name for led in ledgers]
    fig, ax = plt.subplots(figsize=(max(8, 0.8 * len(names)), 4.5))
    bottom = [0.0] * len(ledgers)
    parts = sorted({k for led in ledgers for k in led.math_parts})
    shades = plt.get_cmap("Blues")
    for i, part in enumerate(parts):
        values = [led.math_parts.get(part, 0.0) for led in ledgers]
        ax.bar(names, values, bottom=bottom, color=shades(0.4 + 0.5 * i / max(len(parts), 1)),
               label=f"math: {part}")  # fmt: skip
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for key in ("overhead", "memory"):
        values = [getattr(led, f"{key}_pj") for led in ledgers]
        ax.bar(names, values, bottom=bottom, color=_COLORS[key], label=key)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel(f"pJ per MAC ({node_nm:g} nm)")
    ax.set_title(
        f"Energy per MAC: overhead = 30 pJ / {macs_per_instruction} MACs per instruction, "
        "memory = both operands from an 8 KB SRAM"
    )
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_roofline(roof: Roofline, gpu: GpuSpec, path: str | Path) -> Path:
    """Log-log roofline of `gpu` with every layer of `roof` at its intensity and bound."""
    fig, ax = plt.subplots(figsize=(7, 5))
    bw = gpu.bandwidth_bytes_per_s
    xs = [b.intensity for b in roof.layers]
    lo, hi = min(xs + [1.0]) / 4, max(xs + [b.ridge for b in roof.layers]) * 4
    for key, sparse in sorted({(b.compute_key, b.sparse) for b in roof.layers}):
        peak = gpu.peak(key, sparse=sparse)
        ridge = peak / bw
        label = f"{key}{' 2:4' if sparse else ''} {peak / 1e12:g} T/s"
        ax.plot([lo, ridge, hi], [lo * bw, peak, peak], label=label)
    label_layers = len(roof.layers) <= _MAX_LABELLED_LAYERS  # beyond that, names overlap
    for b in roof.layers:
        attained = b.flops / b.min_time_s
        ax.scatter([b.intensity], [attained], zorder=3)
        if label_layers:
            ax.annotate(b.name, (b.intensity, attained), fontsize=8, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte of DRAM traffic)")
    ax.set_ylabel("attainable FLOP/s")
    ax.set_title(f"{roof.workload} on {gpu.title}: speed of light per layer")
    ax.legend(fontsize=8)
    return _save(fig, path)
