"""`picojoule winograd ...`: the precision study and the exact transforms.

Commands:
- `study`: error of F(m x m, r x r) vs float64 direct convolution for a range of tiles, point
  sets and formats, on random data and on a model's real layer data; the model's metric with
  every eligible conv winogradized. Writes JSON and a PNG plot. `--model` takes every model
  spec (`picojoule.models.spec`; default: the digits CNN); a model without an eligible conv
  (3x3, stride 1) gets "no eligible layer" in place of the model part, never an error.
- `transforms`: print the exact AT, G, BT of F(m, r) and its accounting.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from picojoule.errors import ConfigError
from picojoule.fsio import prepare_out_dir, write_json
from picojoule.models.options import DataOption, EvalOption, MetricOption, ModelOption
from picojoule.options import check_int_list, check_options
from picojoule.winograd.conv import operand_formats
from picojoule.winograd.cost import WinogradCost, winograd_cost
from picojoule.winograd.plot import plot_errors
from picojoule.winograd.study import (
    AccuracyRow,
    ConvOperands,
    ErrorRow,
    accuracy_rows,
    capture_conv_operands,
    eligible_convs,
    error_rows,
    random_operands,
)
from picojoule.winograd.transforms import POINT_SETS, cook_toom

__all__ = ["app"]

app = typer.Typer(help="Winograd convolution: exact transforms and the precision study.")
console = Console()


def _split(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{what} is empty; give a comma-separated list")
    return items


def _fmt_err(value: float) -> str:
    return f"{value:.1e}"


def _cost_table(costs: Sequence[WinogradCost]) -> Table:
    table = Table(title="F(m x m, r x r) accounting (per tile; transform counts naive, no CSE)")
    columns = (
        "tile",
        "mults/output",
        "reduction",
        "input exp.",
        "weight exp.",
        "in-transform adds",
        "out-transform adds",
    )
    for col in columns:
        table.add_column(col, justify="right")
    for c in costs:
        table.add_row(
            f"F({c.m}x{c.m},{c.r}x{c.r})",
            f"{c.multiplies_per_output:.2f}",
            f"{c.multiply_reduction:.2f}x",
            f"{c.input_expansion:.2f}x",
            f"{c.weight_expansion:.2f}x",
            str(c.input_transform.adds),
            str(c.output_transform.adds),
        )
    return table


def _error_table(rows: Sequence[ErrorRow], title: str, fmts: Sequence[str]) -> Table:
    """One row per (tile, point set), one column per format; several data sets: the worst."""
    table = Table(title=f"{title} (growth over direct conv in the same format)")
    table.add_column("tile", justify="right")
    table.add_column("points")
    for fmt in fmts:
        table.add_column(fmt, justify="right")
    direct = {f: max(r.direct.max_rel for r in rows if r.format == f) for f in fmts}
    table.add_row("direct", "", *(_fmt_err(direct[f]) for f in fmts), style="dim")
    for m, ps in dict.fromkeys((r.m, r.point_set) for r in rows):
        cells = []
        for fmt in fmts:
            group = [r for r in rows if (r.m, r.point_set, r.format) == (m, ps, fmt)]
            growths = [g for g in (r.error_growth for r in group) if g is not None]
            growth = f" ({max(growths):.2g}x)" if growths else ""
            cells.append(_fmt_err(max(r.winograd.max_rel for r in group)) + growth)
        table.add_row(f"F({m},{rows[0].r})", ps, *cells)
    return table


def _accuracy_table(
    baseline: float, rows: Sequence[AccuracyRow], *, label: str, metric: str, unit: str
) -> Table:
    def shown(v: float) -> str:
        return f"{v:.2f}%" if unit == "%" else f"{v:.4g}"

    table = Table(title=f"{label} {metric} (float model: {shown(baseline)})")
    table.add_column("format")
    tiles = list(dict.fromkeys(r.tile for r in rows))
    for t in tiles:
        table.add_column("direct" if t is None else f"F({t}x{t},3x3)", justify="right")
    for fmt in dict.fromkeys(r.format for r in rows):
        by_tile = {r.tile: r for r in rows if r.format == fmt}
        table.add_row(fmt, *(shown(by_tile[t].value) for t in tiles))
    return table


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run with `threads` torch intra-op threads, then restore the caller's setting.

    The study's tensors are small: one thread is as fast on an idle machine and avoids OpenMP
    threads spinning on busy cores (measured 50x slower on a loaded 2-core machine).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _accuracy_dict(task: object, base: float, rows: Sequence[AccuracyRow]) -> dict[str, object]:
    """The JSON "accuracy" section: the metric, the float model's value and one row per
    (format, tile); a percentage also under its former keys (float_model_pct, accuracy_pct)."""
    unit = getattr(task, "unit", "")
    out: dict[str, object] = {
        "metric": getattr(task, "primary_metric", "accuracy"),
        "unit": unit,
        "higher_is_better": getattr(task, "higher_is_better", True),
        "float_model": base,
        "rows": [asdict(a) | ({"accuracy_pct": a.value} if unit == "%" else {}) for a in rows],
    }
    if unit == "%":
        out["float_model_pct"] = base
    return out


def _check_names(formats: str, point_sets: str) -> tuple[list[str], list[str]]:
    """Format and point-set names, checked before any work is done."""
    fmts = _split(formats, "formats")
    for fmt in fmts:
        operand_formats(fmt)  # an unknown name fails here, with the registry's suggestions
    sets = _split(point_sets, "point-sets")
    for ps in sets:
        if ps not in POINT_SETS:
            raise ConfigError(f"--point-sets: unknown {ps!r}; choose from {', '.join(POINT_SETS)}")
    return fmts, sets


@app.command()
def study(
    out: Annotated[Path, typer.Option(help="Folder for winograd_study.json and .png")] = Path(
        "winograd-study"
    ),
    tiles: Annotated[str, typer.Option(help="Tile sizes m of F(m x m, r x r)")] = "2,3,4,5,6,7,8",
    r: Annotated[int, typer.Option(help="Kernel size r of the random layer")] = 3,
    formats: Annotated[str, typer.Option(help="picojoule formats")] = "fp32,fp16,bf16,e4m3",
    point_sets: Annotated[
        str, typer.Option(help=f"of {', '.join(POINT_SETS)}")
    ] = "default,integer",
    channels: Annotated[int, typer.Option(help="Random layer: channels in = out")] = 32,
    size: Annotated[int, typer.Option(help="Random layer: input height = width")] = 16,
    batch: Annotated[int, typer.Option(help="Random layer: batch")] = 2,
    seed: Annotated[int, typer.Option(help="Random layer: seed")] = 0,
    real: Annotated[bool, typer.Option(help="Also use the model's layer data")] = True,
    real_samples: Annotated[
        int, typer.Option(help="Inputs for the real data (digits: test images)")
    ] = 64,
    accuracy: Annotated[bool, typer.Option(help="Evaluate the winogradized model")] = True,
    accuracy_tiles: Annotated[str, typer.Option(help="Tiles for the accuracy run")] = "2,4,6",
    threads: Annotated[int, typer.Option(help="torch intra-op threads during the study")] = 1,
    model: ModelOption = "digits",
    data: DataOption = None,
    metric: MetricOption = None,
    eval_data: EvalOption = None,
) -> None:
    """Error vs tile, point set and format; the model's metric; JSON + PNG in OUT."""
    from picojoule.models.spec import resolve, sample_inputs

    check_options(threads=threads, r=r, channels=channels, size=size, batch=batch, seed=seed)
    if real or accuracy:
        check_options(real_samples=real_samples)
    if size < r:
        raise ConfigError(f"--size {size} is smaller than the kernel --r {r}; give size >= r")
    tile_list = check_int_list("tiles", tiles)
    acc_tiles = check_int_list("accuracy-tiles", accuracy_tiles)
    fmts, sets = _check_names(formats, point_sets)
    source = resolve(model, data, metric, eval_data=eval_data, needs_metric=accuracy)
    label = source.spec
    with _torch_threads(threads):
        task = net = None
        if real or accuracy:  # built (or refused) before --out is created
            with console.status(f"loading {label}"):
                task, net = source.load()
        # The folder is checked (and created) before the sweep, and removed if the run fails.
        with prepare_out_dir(out, what="the study") as out_dir:
            started = time.perf_counter()
            operands = [random_operands(batch=batch, channels=channels, size=size, r=r, seed=seed)]
            real_ops: list[ConvOperands] = []
            eligible = len(eligible_convs(net)) if net is not None else 0
            if net is not None and not eligible:
                console.print(
                    f"{label}: no eligible layer (nn.Conv2d 3x3, stride 1, dilation 1): real "
                    "layer data and the accuracy of the winogradized model are skipped",
                    style="yellow",
                    markup=False,
                )
            if real and eligible:
                ops = capture_conv_operands(net, sample_inputs(task, real_samples))
                real_ops = [replace(op, name=f"{label} {op.name}") for op in ops]
                operands += real_ops
            with console.status("error sweep"):
                rows = error_rows(operands, tiles=tile_list, point_sets=sets, format_names=fmts)
            costs = [winograd_cost(m, r) for m in tile_list]
            console.print(_cost_table(costs))
            random_rows = [row for row in rows if row.data == "random"]
            real_rows = [row for row in rows if row.data != "random"]
            console.print(_error_table(random_rows, "max relative error, random layer", fmts))
            if real_rows:
                title = f"worst max relative error over {len(real_ops)} {label} layers"
                console.print(_error_table(real_rows, title, fmts))
            report: dict[str, object] = {
                "config": {
                    "tiles": tile_list,
                    "r": r,
                    "formats": fmts,
                    "point_sets": sets,
                    "random": {"batch": batch, "channels": channels, "size": size, "seed": seed},
                    "real_samples": real_samples if real and eligible else 0,
                    "model": label if net is not None else None,
                    "eligible_layers": eligible,
                },
                "costs": [_cost_dict(c) for c in costs],
                "errors": [_row_dict(row) for row in rows],
            }
            if accuracy and task is not None and net is not None:
                if not eligible:
                    report["accuracy"] = {"skipped": f"no eligible layer in {label}"}
                else:
                    name = task.primary_metric
                    with console.status(f"{name} of the winogradized {label}"):
                        base = task.evaluate(net)[name]
                        acc = accuracy_rows(
                            net,
                            tiles=acc_tiles,
                            format_names=fmts,
                            score=lambda m: task.evaluate(m)[name],
                        )
                    unit = getattr(task, "unit", "")
                    console.print(_accuracy_table(base, acc, label=label, metric=name, unit=unit))
                    report["accuracy"] = _accuracy_dict(task, base, acc)
            json_path = write_json(out_dir / "winograd_study.json", report, indent=2)
            png = plot_errors(rows, out_dir / "winograd_study.png")
            elapsed = time.perf_counter() - started
            console.print(f"wrote {json_path} and {png} in {elapsed:.1f} s")


def _cost_dict(c: WinogradCost) -> dict[str, object]:
    return {
        "m": c.m,
        "r": c.r,
        "dims": c.dims,
        "multiplies_per_output": c.multiplies_per_output,
        "direct_multiplies_per_output": c.direct_multiplies_per_output,
        "multiply_reduction": c.multiply_reduction,
        "input_expansion": c.input_expansion,
        "weight_expansion": c.weight_expansion,
        "input_transform": asdict(c.input_transform),
        "output_transform": asdict(c.output_transform),
        "weight_transform": asdict(c.weight_transform),
    }


def _row_dict(row: ErrorRow) -> dict[str, object]:
    out = asdict(row)
    out["error_growth"] = row.error_growth
    return out


@app.command()
def transforms(
    m: Annotated[int, typer.Argument(help="Outputs per tile")],
    r: Annotated[int, typer.Argument(help="Filter taps")],
    points: Annotated[
        str | None, typer.Option(help="m+r-1 comma-separated points, e.g. 0,1,-1,1/2,inf")
    ] = None,
) -> None:
    """Print the exact AT, G, BT of F(m, r) and its 2-D accounting."""
    check_options(m=m, r=r)
    pts = None if points is None else _split(points, "points")
    mats = cook_toom(m, r, pts)
    for label, mat in zip(("AT", "G", "BT"), mats, strict=True):
        table = Table(title=label, show_header=False)
        for _ in mat[0]:
            table.add_column(justify="right")
        for row in mat:
            table.add_row(*(str(v) for v in row))
        console.print(table)
    console.print(_cost_table([winograd_cost(m, r, points=pts)]))
