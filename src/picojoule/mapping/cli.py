"""`picojoule map`: map a network onto an accelerator and print where the energy goes.

Public: `app` (a Typer app with a single command, mounted by the main CLI as `map`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from picojoule.arch.io import load_arch
from picojoule.arch.spec import Arch
from picojoule.fsio import check_out_file, write_json
from picojoule.mapping.network import WorkloadCost, map_workload
from picojoule.mapping.search import OBJECTIVES
from picojoule.models.options import DataOption
from picojoule.models.spec import resolve, workload_help
from picojoule.options import check_choice, check_options
from picojoule.quant.recipe import parse_recipe
from picojoule.termtable import FitTable
from picojoule.workload.builtin import BUILTINS
from picojoule.workload.from_torch import apply_recipe
from picojoule.workload.layer import OPERANDS

__all__ = ["app", "render"]

app = typer.Typer(help="Map a network onto an accelerator: energy by level and operand, latency.")


def _uj(pj: float) -> str:
    return f"{pj / 1e6:,.2f}"


def render(result: WorkloadCost, arch: Arch, console: Console, *, mappings: bool = True) -> None:
    """Per-layer table, energy by level x operand, totals against the speed of light.

    The tables fit the console's width (`FitTable`): when the per-layer columns do not all
    fit, the energy per memory level and the MAC energy move to a second table."""
    levels = list(result.energy_by_level_pj)
    table = FitTable(title=f"{result.workload} on {result.arch} (objective: {result.objective})")
    table.add_column("layer", kind="name")
    for col in ("x", "MMACs", "energy uJ", "pJ/MAC"):
        table.add_column(col, justify="right")
    for col in (*levels, "MAC uJ"):  # the energy split: second when narrow
        table.add_column(col, justify="right", rank=1)
    table.add_column("cycles", justify="right")
    table.add_column("util", justify="right")
    table.add_column("bound", kind="text")
    for r in result.layers:
        c = r.result.cost
        per_level = [_uj(sum(c.energy_by_level_pj[lv].values()) * r.layer.repeat) for lv in levels]
        table.add_row(
            r.layer.name + (" (timed out)" if r.result.timed_out else ""),
            str(r.layer.repeat),
            f"{r.layer.macs / 1e6:,.2f}",
            _uj(r.energy_pj),
            f"{c.pj_per_mac:.3f}",
            *per_level,
            _uj(c.mac_energy_pj * r.layer.repeat),
            f"{r.cycles:,.0f}",
            f"{c.utilization:.2f}",
            c.bound_by,
        )
    console.print(table)

    ops = FitTable(title="energy by level and operand (uJ)")
    ops.add_column("level", kind="name")
    for op in OPERANDS:
        ops.add_column(op, justify="right")
    ops.add_column("total", justify="right")
    for lv, row in result.energy_by_level_pj.items():
        ops.add_row(
            lv, *(_uj(row[op]) if op in row else "-" for op in OPERANDS), _uj(sum(row.values()))
        )
    ops.add_row("network", "", "", "", _uj(result.network_energy_pj))
    ops.add_row("MACs", "", "", "", _uj(result.mac_energy_pj))
    console.print(ops)

    console.print(  # one fact a line: each reads whole at 80 columns
        f"total {_uj(result.energy_pj)} uJ, {result.pj_per_mac:.3f} pJ/MAC over "
        f"{result.macs / 1e9:.3f} GMACs\n"
        f"{result.cycles:,.0f} cycles = {result.latency_s * 1e3:.3f} ms; "
        f"utilization {result.utilization:.2f}\n"
        f"speed of light: {_uj(result.sol_energy_pj)} uJ "
        f"({result.energy_pj / result.sol_energy_pj:.2f}x above), "
        f"{result.sol_cycles:,.0f} cycles ({result.cycles / result.sol_cycles:.2f}x above)\n"
        f"mapped in {result.elapsed_s:.2f} s"
    )
    if result.timed_out:
        console.print(
            f"[yellow]time budget reached for {len(result.timed_out)} layer(s): "
            "their mappings are the best found so far[/yellow]"
        )
    for line in result.warnings:
        console.print(f"utilization warning: {line}", style="yellow", markup=False)
    if mappings:
        seen: set[str] = set()
        for r in result.layers:
            key = r.layer.describe()
            if key in seen:
                continue
            seen.add(key)
            console.print(f"\n[bold]{r.layer.name}[/bold] ({key})")
            console.print(r.result.mapping.describe(arch), markup=False)


@app.callback(invoke_without_command=True)
def map_command(
    arch: Annotated[str, typer.Option(help="preset name or YAML file")] = "eyeriss",
    model: Annotated[str, typer.Option(help=workload_help(BUILTINS))] = "resnet18",
    data: DataOption = None,
    recipe: Annotated[str | None, typer.Option(help='formats, e.g. "w:int8,a:int8"')] = None,
    objective: Annotated[str, typer.Option(help="energy, latency or edp")] = "energy",
    batch: Annotated[int, typer.Option(help="batch size")] = 1,
    time_budget: Annotated[float | None, typer.Option(help="seconds for the whole run")] = None,
    seed: Annotated[int, typer.Option(help="search seed")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write results as JSON")] = None,
    mappings: Annotated[bool, typer.Option(help="print each layer's loop nest")] = True,
) -> None:
    """Map MODEL onto ARCH and print energy by level and operand, latency and mappings.

    MODEL is a built-in workload (layer shapes) or a model (picojoule.models.spec): a model
    runs once on its example input, repeated to --batch, and its layers are mapped."""
    check_choice("objective", objective, OBJECTIVES)
    check_options(batch=batch, time_budget=time_budget, seed=seed)
    # Every input is checked before a model loads or the search starts.
    source = resolve(model, data, workloads=True, needs_metric=False)
    if recipe:
        parse_recipe(recipe)
    if json_out is not None:
        check_out_file(json_out, option="--json")  # before the search, not after it
    spec = load_arch(arch)
    console = Console()
    workload = source.workload(
        batch, warn=lambda line: console.print(f"note: {line}", style="yellow", markup=False)
    )
    if recipe:
        workload = apply_recipe(workload, recipe)
    result = map_workload(workload, spec, objective, time_budget_s=time_budget, seed=seed)
    render(result, spec, console, mappings=mappings)
    if json_out is not None:
        write_json(json_out, result.to_dict(), indent=1)
        console.print(f"wrote {json_out}")
