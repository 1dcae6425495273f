"""`picojoule explain ...`: the energy ledger behind the hardware-efficiency levers.

Commands:
- `gpus`: the GPU generations table, TOPS/W, and a peak-throughput speedup (default: the
  seed's 317x, K20X FP32 -> A100 sparse INT8) split into hardware factors and levers.
- `overhead`: instruction energy = 30 pJ overhead + math for HFMA, HDP4A, HMMA, IMMA; both
  definitions of "overhead" against the published figures.
- `formats`: energy of one MAC per format, with its parts and the node scaling applied.
- `nodes`: the process-node energy factors and their sources.
- `roofline`: per-layer speed of light (time and energy) of a built-in model on a GPU.
- `interconnect`: NVLink bandwidth per generation (P100 -> B200) and the share of a
  data-parallel step its gradient all-reduce takes (`picojoule.cluster`).
Bad input raises a `PicojouleError` subclass; the main CLI prints it as one line. Each command
imports what it needs (tables load pydantic and numpy), so `explain --help` starts fast.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from picojoule.energy.defaults import DEFAULT_REDUCTION, OVERHEAD_PJ
from picojoule.errors import ConfigError
from picojoule.options import check_choice, check_options
from picojoule.termtable import FitTable

__all__ = ["app", "DEFAULT_FORMATS"]

app = typer.Typer(help="Energy ledger: per-op and per-format energy, GPUs, speed of light.")
console = Console()

DEFAULT_FORMATS = (
    "fp32,tf32,bf16,fp16,e5m2,e4m3,mxfp8_e4m3,int8,int8/channel,mxint8,e3m2,e2m3,mxfp6_e2m3,"
    "e2m1,mxfp4,nvfp4,int4,vsq4_v16,vsq4_v16_s4,lns8,codebook16"
)


def _uncited(labels: set[str] | tuple[str, ...]) -> None:
    if labels:
        console.print(f"[yellow]† uncited data used:[/] {'; '.join(sorted(labels))}")


def _acc_label(notes: tuple[str, ...]) -> str:
    """Short form of the accumulation note: 'fixed 28 b / 4096', 'fp32', 'fp16 (forced)'."""
    note = next((n.split(": ", 1)[1] for n in notes if n.startswith("accumulate:")), "")
    if m := re.search(r"(\d+)-bit fixed-point sum of (\d+)", note):
        return f"fixed {m[1]} b / {m[2]}"
    if note.startswith("fp32 sum"):
        return "fp32"
    return note.split(";")[0].replace(" accumulator", "")


def _split(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError("give a comma-separated list of format names, e.g. int8,e4m3,nvfp4")
    return items


@app.command()
def gpus(
    base: Annotated[str, typer.Option(help="GPU of the baseline")] = "k20x",
    target: Annotated[str, typer.Option(help="GPU compared with it")] = "a100",
    base_format: Annotated[str, typer.Option(help="baseline format")] = "fp32",
    target_format: Annotated[str, typer.Option(help="target format")] = "int8",
    dense: Annotated[bool, typer.Option("--dense", help="no 2:4 sparsity on the target")] = False,
    table: Annotated[Path | None, typer.Option(help="user GPU table (YAML/CSV)")] = None,
) -> None:
    """GPU generations, TOPS/W, and where a speedup came from (default: 317x)."""
    from picojoule.energy.gpu_specs import gpu as get_gpu
    from picojoule.energy.gpu_specs import gpus as all_gpus
    from picojoule.energy.gpu_specs import speedup
    from picojoule.energy.scaling import node_scaling
    from picojoule.energy.tables import load_table

    tab = load_table("gpus", table) if table else None
    for name in (base, target):
        get_gpu(name, tab)  # an unknown name fails before the table prints
    t = FitTable(title="GPU generations (datasheet peaks; TOPS = 10^12 op/s, FMA = 2 ops)")
    for col in ("GPU", "arch", "year", "process", "SMs", "MHz", "best dense", "best 2:4",
                "GB/s", "W", "TOPS/W dense", "TOPS/W 2:4"):  # fmt: skip
        # narrow terminals: the peaks and TOPS/W first, the chip's make-up in a second table
        t.add_column(col, justify="left" if col in ("GPU", "arch", "process") else "right",
                     rank=1 if col in ("arch", "year", "process", "SMs", "MHz") else 0)  # fmt: skip
    uncited = set()
    for g in all_gpus(tab):
        key, peak = g.best()
        skey, speak = g.best(sparse=True) if g.sparse_tops else ("-", 0.0)
        mark = "" if g.citation else " †"
        if not g.citation:
            uncited.add(f"gpu table: {g.name}")
        t.add_row(
            g.title + mark, g.arch, str(g.year), g.process, str(g.sms or "-"),
            f"{g.clock_mhz:g}" if g.clock_mhz else "-", f"{peak:g} {key}",
            f"{speak:g} {skey}" if g.sparse_tops else "-", f"{g.bandwidth_gbs:g}",
            f"{g.tdp_w:g}", f"{peak / g.tdp_w:.2f}",
            f"{speak / g.tdp_w:.2f}" if g.sparse_tops else "-",
        )  # fmt: skip
    console.print(t)
    s = speedup(base, target, base_format=base_format, target_format=target_format,
                sparse=not dense, table=tab)  # fmt: skip
    b, g = get_gpu(s.base, tab), get_gpu(s.target, tab)
    what = f"{s.target} {s.target_key}{' 2:4 sparse' if s.sparse else ''}"
    top, bottom = g.peak(s.target_key, sparse=s.sparse) / 1e12, b.peak(s.base_key) / 1e12
    console.print(
        f"\n[bold]{what} / {s.base} {s.base_key}[/] = {top:g} / {bottom:g} TOPS"
        f" = [bold]{s.total:.1f}x[/]"
    )
    for title, factors in (("hardware", s.hardware), ("levers", s.levers)):
        if not factors:
            console.print(f"({title} split not available: the datasheets lack the rates it needs)")
            continue
        ft = FitTable(title=f"{title}: factors multiply to {s.product(factors):.1f}x")
        ft.add_column("factor")
        ft.add_column("x", justify="right")
        ft.add_column("from")
        for f in factors:
            ft.add_row(f.name, f"{f.value:.3g}", f.detail)
        console.print(ft)
    ratio = node_scaling().ratio(g.node_nm, b.node_nm)
    line = (
        f"Process alone (Stillmaker & Baas energy per op, {b.node_nm:g} -> {g.node_nm:g} nm): "
        f"{ratio:.1f}x fewer pJ per op"
    )
    if g.has("fp32") and b.has("fp32"):
        per_joule = (g.peak("fp32") / g.tdp_w) / (b.peak("fp32") / b.tdp_w)
        line += f"; datasheet FP32 ops per joule grew {per_joule:.1f}x"
    console.print(line + ".")
    _uncited(uncited)


@app.command()
def overhead(
    math: Annotated[
        str, typer.Option(help="'published' (Dally) or 'bottom-up' (Horowitz ops)")
    ] = "published",
    overhead_pj: Annotated[float, typer.Option(help="fixed pJ per instruction")] = OVERHEAD_PJ,
    node: Annotated[float, typer.Option(help="process node, nm")] = 45.0,
    plot: Annotated[Path | None, typer.Option(help="write the breakdown plot (PNG) here")] = None,
) -> None:
    """Instruction energy = fixed overhead + math; both definitions of 'overhead'."""
    from picojoule.energy.overhead import INSTRUCTIONS, instruction_energy

    check_choice("math", math, ("published", "bottom-up"))
    check_options(overhead_pj=overhead_pj, node=node)
    t = FitTable(
        title=f"Instruction energy at {node:g} nm (overhead {overhead_pj:g} pJ, math {math})"
    )
    for col in ("instr", "ops", "math pJ", "overhead pJ", "pJ/op", "overhead/math",
                "overhead/total", "published", "matches (nearest %)"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("instr", "matches (nearest %)") else "right")
    for name, inst in INSTRUCTIONS.items():
        e = instruction_energy(name, math=math, overhead_pj=overhead_pj, node_nm=node)  # type: ignore[arg-type]
        om, ot = 100 * e.overhead_over_math, 100 * e.overhead_over_total
        pub = inst.published_overhead_pct
        hits = [
            lbl
            for lbl, v in (("overhead/math", om), ("overhead/total", ot))
            if round(v) == round(pub)
        ]
        t.add_row(
            name, str(inst.ops), f"{e.math_pj:.4g}", f"{e.overhead_pj:.4g}", f"{e.pj_per_op:.3g}",
            f"{om:.1f}%", f"{ot:.1f}%", f"{pub:g}%", " and ".join(hits) or "neither",
        )  # fmt: skip
    console.print(t)
    console.print(
        "Published overheads (Dally 2023) mix definitions: 2000% and 500% are overhead/math, "
        "16% is overhead/total; 22% for HMMA is 30/(30+110) = 21.4% rounded up."
    )
    if plot:
        from picojoule.energy.plots import plot_instructions

        console.print(f"plot: {plot_instructions(plot, math=math)}")


@app.command()
def formats(
    names: Annotated[str, typer.Argument(help="comma-separated format names")] = DEFAULT_FORMATS,
    node: Annotated[float, typer.Option(help="process node, nm")] = 45.0,
    reduction: Annotated[int, typer.Option(help="dot-product length K")] = DEFAULT_REDUCTION,
    accumulator: Annotated[str, typer.Option(help="'auto' or a format (fp32, int32..)")] = "auto",
    fit: Annotated[bool, typer.Option("--fit", help="show the model's fit on the anchors")] = False,
    plot: Annotated[Path | None, typer.Option(help="write the ledger plot (PNG) here")] = None,
) -> None:
    """Energy of one multiply-accumulate per format, with its parts."""
    from picojoule.energy.arith import calibrate
    from picojoule.energy.mac import mac_energy
    from picojoule.energy.scaling import node_scaling
    from picojoule.formats import get

    check_options(node=node, reduction=reduction)
    for f in _split(names):
        get(f)  # unknown names fail before anything prints, with suggestions
    cal = calibrate()
    scaling = node_scaling()
    console.print(
        f"node scaling 45 -> {node:g} nm: x{scaling.ratio(45, node):.4g} ({scaling.citation(node)})"
    )
    fmts = _split(names)
    results = [
        mac_energy(f, node_nm=node, reduction=reduction, accumulator=accumulator) for f in fmts
    ]
    base = results[fmts.index("fp32")].energy_pj if "fp32" in fmts else None
    t = FitTable(
        title=f"Energy per MAC at {node:g} nm, K={reduction}, accumulator {accumulator} (pJ)"
    )
    for col in ("format", "bits/elem", "MAC pJ", "multiply", "accumulate", "scale", "decode",
                "vs fp32", "accumulate in"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("format", "accumulate in") else "right")
    uncited: set[str] = set()
    for f, r in zip(fmts, results, strict=True):
        group = {"multiply": 0.0, "accumulate": 0.0, "scale": 0.0, "decode": 0.0}
        for key, value in r.breakdown.items():
            head = key.split(":")[0].split("/")[0].split(" ")[0]
            group[head if head in group else "decode"] += value
        t.add_row(
            f, f"{get(f).bits_per_element:g}", f"{r.energy_pj:.4f}",
            *(f"{group[k]:.4f}" if group[k] else "-" for k in group),
            f"{r.energy_pj / base:.3f}" if base else "-", _acc_label(r.notes),
        )  # fmt: skip
        uncited.update(r.uncited)
    console.print(t)
    if fit:
        ft = FitTable(title="Model vs cited anchors (45 nm)")
        for col in ("op", "dtype", "table pJ", "model pJ", "error", "source"):
            ft.add_column(col, justify="right" if col.endswith(("pJ", "error")) else "left")
        for a in cal.anchors:
            ft.add_row(a.op, a.dtype, f"{a.table_pj:g}", f"{a.model_pj:.4f}", f"{a.error:+.1%}",
                       a.citation or "uncited †")  # fmt: skip
        console.print(ft)
        console.print(f"max |error| on anchors: {cal.max_abs_error:.1%}")
    if plot:
        from picojoule.energy.plots import plot_formats

        console.print(f"plot: {plot_formats(plot, fmts, node_nm=node)}")
    _uncited(uncited)


@app.command()
def nodes() -> None:
    """Process-node energy factors (relative to 45 nm, 0.9 V) and their sources."""
    from picojoule.energy.scaling import node_scaling

    scaling = node_scaling()
    t = FitTable(title="Energy per operation relative to 45 nm")
    for col in ("node nm", "factor", "45 nm / factor", "source"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for node, factor in scaling.factors:
        t.add_row(f"{node:g}", f"{factor:.4g}", f"{1 / factor:.2f}x", scaling.citation(node))
    console.print(t)


@app.command()
def roofline(
    model: Annotated[
        str, typer.Option(help="built-in workload, e.g. digits-cnn, resnet50")
    ] = "digits-cnn",
    gpu: Annotated[str, typer.Option(help="GPU name (picojoule explain gpus)")] = "h100",
    recipe: Annotated[str | None, typer.Option(help="quant recipe, e.g. 'w:nvfp4,a:e4m3'")] = None,
    batch: Annotated[int, typer.Option(help="batch size")] = 1,
    plot: Annotated[Path | None, typer.Option(help="write the roofline plot (PNG) here")] = None,
) -> None:
    """Per-layer speed of light: FLOPs, bytes, intensity, bound, least time and energy."""
    from picojoule.energy.gpu_specs import gpu as get_gpu
    from picojoule.energy.speed_of_light import roofline as compute_roofline
    from picojoule.workload import apply_recipe, builtin

    check_options(batch=batch)
    get_gpu(gpu)  # an unknown name fails before the workload is built
    workload = builtin(model, batch=batch)
    if recipe:
        workload = apply_recipe(workload, recipe)
    spec = get_gpu(gpu)
    roof = compute_roofline(workload, spec)
    t = FitTable(title=f"{roof.workload} (batch {batch}) on {spec.title}: speed of light")
    for col in ("layer", "formats w x a", "GFLOP", "MB", "FLOP/B", "ridge", "rate", "bound",
                "min time us", "min energy uJ", "math %"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("layer", "formats w x a", "bound") else "right")
    for b in roof.layers:
        t.add_row(
            b.name, f"{b.weight_format} x {b.input_format}", f"{b.flops / 1e9:.4g}",
            f"{b.bytes_moved / 1e6:.4g}", f"{b.intensity:.1f}", f"{b.ridge:.0f}",
            f"{b.compute_key}{' 2:4' if b.sparse else ''}", b.bound,
            f"{b.min_time_s * 1e6:.3g}", f"{b.min_energy_pj / 1e6:.4g}",
            f"{100 * b.math_energy_pj / b.min_energy_pj:.0f}",
        )  # fmt: skip
    console.print(t)
    console.print(
        f"total: {roof.flops / 1e9:.4g} GFLOP, at least {roof.min_time_s * 1e6:.4g} us and "
        f"{roof.min_energy_pj / 1e6:.4g} uJ (math at {roof.node_nm:g} nm + DRAM at "
        f"{roof.dram_kind}); no implementation on {spec.name} can do better."
    )
    if plot:
        from picojoule.energy.plots import plot_roofline

        console.print(f"plot: {plot_roofline(roof, spec, plot)}")
    _uncited(roof.uncited)


@app.command()
def interconnect(
    model: Annotated[str, typer.Option(help="model preset or HF config.json")] = "gpt3-1.3b",
    gpus: Annotated[int, typer.Option(help="data-parallel GPUs in one node")] = 8,
    seq_len: Annotated[int, typer.Option(help="tokens per GPU per step")] = 2048,
) -> None:
    """NVLink per generation and the gradient all-reduce's share of a data-parallel step."""
    from picojoule.cluster.cli import explain_interconnect

    explain_interconnect(model, gpus, seq_len, console)
