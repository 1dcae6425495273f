"""`picojoule bench gpu`: per-format GEMM throughput, bandwidth, board pJ/op and SOL%, and the
packed-weight Triton kernels against bf16 and FP8, written as JSON + PNG plots."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from picojoule.errors import ConfigError

app = typer.Typer(help="Measure the local NVIDIA GPU.", no_args_is_help=False)
console = Console()

_STAGES = ("gemm", "decode", "prefill", "msweep", "e2e")


def _f(v: float | None, fmt: str = ".1f") -> str:
    return "-" if v is None else format(v, fmt)


def gemm_table(data: dict[str, Any]) -> Table:
    t = Table(title=f"GEMM on {data['device']['name']} (driver {data['device']['driver']})")
    for c in ("format", "size", "TFLOPS", "peak", "SOL %", "board W", "pJ/op", "rel err", "note"):
        t.add_column(c, overflow="fold")
    for r in data["gemm"]:
        t.add_row(
            r["fmt"],
            str(r["m"]),
            _f(r["tflops"]),
            _f(r["peak_tflops"]),
            _f(r["sol_pct"]),
            _f(r["power_w"], ".0f"),
            _f(r["energy_pj_per_op"], ".3f"),
            _f(r["rel_error"], ".1e"),
            r["note"],
        )
    return t


def kernel_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for c in ("method", "M", "us", "TFLOPS", "x bf16", "% of mem bound", "rel err", "config/note"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(
            r["method"],
            str(r["m"]),
            _f(None if r["time_s"] is None else r["time_s"] * 1e6, ".1f"),
            _f(r["tflops"]),
            _f(r["ratio_to_bf16"], ".2f"),
            _f(r["pct_of_bound"], ".0f"),
            _f(r["rel_error"], ".1e"),
            r["config"] or r["note"],
        )
    return t


@app.command("gpu")
def gpu(
    out: Annotated[
        Path, typer.Option(help="Folder for gpu.json, gpu_kernels.json and plots")
    ] = Path("picojoule-gpu"),
    sizes: Annotated[
        str, typer.Option(help="GEMM sizes (square), comma separated")
    ] = "2048,4096,8192",
    formats: Annotated[str, typer.Option(help="GEMM formats, comma separated; empty: all")] = "",
    stages: Annotated[str, typer.Option(help=f"Stages to run: {','.join(_STAGES)}")] = ",".join(
        _STAGES
    ),
    energy_s: Annotated[
        float, typer.Option(help="Seconds of NVML energy reading per GEMM (0: off)")
    ] = 0.5,
    compile_baseline: Annotated[bool, typer.Option(help="Time the torch.compile baseline")] = True,
) -> None:
    """Benchmark this GPU: GEMM formats, bandwidth, pJ/op, SOL%, and the packed kernels."""
    from picojoule.fsio import prepare_out_dir
    from picojoule.gpu.report import gemm_report, kernel_report, plot_report, save_json

    chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
    bad = [s for s in chosen if s not in _STAGES]
    if bad:
        raise ConfigError(f"unknown stage(s) {bad}; choose from {', '.join(_STAGES)}")
    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError as e:
        raise ConfigError(f"--sizes takes integers separated by commas, got {sizes!r}") from e
    fmt_list = [f.strip() for f in formats.split(",") if f.strip()] or None
    command = "picojoule bench gpu " + " ".join(shlex.quote(a) for a in sys.argv[3:])
    # Checked (and created) before the benchmark; removed again if it fails (e.g. no GPU).
    with prepare_out_dir(out, what="the benchmark") as out:
        written: list[Path] = []
        if "gemm" in chosen:
            data = gemm_report(size_list, fmt_list, energy_s=energy_s, command=command)
            console.print(gemm_table(data))
            bw = data["bandwidth"]
            console.print(f"copy bandwidth: {bw['tb_per_s']:.2f} TB/s (SOL {_f(bw['sol_pct'])} %)")
            save_json(data, out / "gpu.json")
            written += [out / "gpu.json", *plot_report(data, out)]
        kstages = tuple(s for s in chosen if s != "gemm")
        if kstages:
            kdata = kernel_report(
                stages=kstages, compile_baseline=compile_baseline, command=command
            )
            for name in ("decode", "prefill", "msweep"):
                sec = kdata.get(name)
                if isinstance(sec, list):
                    console.print(kernel_table(sec, f"{name} (N = K = 8192)"))
                elif isinstance(sec, dict):
                    console.print(f"[red]{name}: {sec['error']}[/red]")
            for e in kdata.get("e2e", []) if isinstance(kdata.get("e2e"), list) else []:
                console.print(
                    f"MiniLM b{e['batch']}x{e['seq_len']}: bf16 {e['bf16_sentences_per_s']:.0f}/s, "
                    f"{e['fmt']} {e['packed_sentences_per_s']:.0f}/s ({e['speedup']:.2f}x), "
                    f"cos to emulation {e['cosine_to_emulated']:.5f}"
                )
            save_json(kdata, out / "gpu_kernels.json")
            written += [out / "gpu_kernels.json", *plot_report(kdata, out)]
        console.print("wrote " + ", ".join(str(p) for p in written))
