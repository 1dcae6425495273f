"""`picojoule map`: map a network onto an accelerator and print where the energy goes.

Public: `app` (a Typer app with a single command, mounted by the main CLI as `map`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from picojoule.arch.io import load_arch
from picojoule.arch.spec import Arch
from picojoule.fsio import check_out_file, write_json
from picojoule.mapping.network import WorkloadCost, map_workload
from picojoule.mapping.search import OBJECTIVES
from picojoule.options import check_choice, check_options
from picojoule.workload.builtin import BUILTINS, builtin
from picojoule.workload.from_torch import apply_recipe
from picojoule.workload.layer import OPERANDS

__all__ = ["app", "render"]

app = typer.Typer(help="Map a network onto an accelerator: energy by level and operand, latency.")


def _uj(pj: float) -> str:
    return f"{pj / 1e6:,.2f}"


def render(result: WorkloadCost, arch: Arch, console: Console, *, mappings: bool = True) -> None:
    """Per-layer table, energy by level x operand, totals against the speed of light."""
    levels = list(result.energy_by_level_pj)
    table = Table(title=f"{result.workload} on {result.arch} (objective: {result.objective})")
    for col in (
        "layer",
        "x",
        "MMACs",
        "energy uJ",
        "pJ/MAC",
        *levels,
        "MAC uJ",
        "cycles",
        "util",
        "bound",
    ):
        left = col == "layer"
        table.add_column(
            col,
            justify="left" if left else "right",
            no_wrap=True,
            overflow="ellipsis",
            max_width=22 if left else None,
        )
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

    ops = Table(title="energy by level and operand (uJ)")
    ops.add_column("level")
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

    console.print(
        f"total {_uj(result.energy_pj)} uJ, {result.pj_per_mac:.3f} pJ/MAC over "
        f"{result.macs / 1e9:.3f} GMACs; {result.cycles:,.0f} cycles = "
        f"{result.latency_s * 1e3:.3f} ms; utilization {result.utilization:.2f}\n"
        f"speed of light: {_uj(result.sol_energy_pj)} uJ "
        f"({result.energy_pj / result.sol_energy_pj:.2f}x above), "
        f"{result.sol_cycles:,.0f} cycles ({result.cycles / result.sol_cycles:.2f}x above); "
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
    model: Annotated[str, typer.Option(help=f"one of {', '.join(BUILTINS)}")] = "resnet18",
    recipe: Annotated[str | None, typer.Option(help='formats, e.g. "w:int8,a:int8"')] = None,
    objective: Annotated[str, typer.Option(help="energy, latency or edp")] = "energy",
    batch: Annotated[int, typer.Option(help="batch size")] = 1,
    time_budget: Annotated[float | None, typer.Option(help="seconds for the whole run")] = None,
    seed: Annotated[int, typer.Option(help="search seed")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="write results as JSON")] = None,
    mappings: Annotated[bool, typer.Option(help="print each layer's loop nest")] = True,
) -> None:
    """Map MODEL onto ARCH and print energy by level and operand, latency and mappings."""
    check_choice("objective", objective, OBJECTIVES)
    check_options(batch=batch, time_budget=time_budget, seed=seed)
    if json_out is not None:
        check_out_file(json_out, option="--json")  # before the search, not after it
    spec = load_arch(arch)
    workload = builtin(model, batch=batch)
    if recipe:
        workload = apply_recipe(workload, recipe)
    result = map_workload(workload, spec, objective, time_budget_s=time_budget, seed=seed)
    render(result, spec, Console(), mappings=mappings)
    if json_out is not None:
        write_json(json_out, result.to_dict(), indent=1)
        Console().print(f"wrote {json_out}")
