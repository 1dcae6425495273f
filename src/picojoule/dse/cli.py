"""`picojoule dse`: run a design space, show a stored run.

    picojoule dse run SPACE [--model SPEC [--data L]] [--out DIR] [--resume]
                            [--backend local|ray] [--address A] [--workers N]
    picojoule dse show RUN [--run NAME] [--out DIR] [--limit N]

SPACE is a YAML file or a packaged space (magnet-resnet50, magnet-resnet18-500,
formats-digits). `run` evaluates into DIR/results.sqlite (default `dse-runs/<space name>`)
and writes front.json, pareto.png, energy_split.png and report.html beside it. `show`
re-renders those from the database alone - nothing is re-evaluated.

The workload is the space's `workload:` or `--model`: a built-in workload or any model spec
(`picojoule.models.spec`: digits, minilm, smollm2, st:DIR, hf:DIR, pkg.mod:build with --data),
which runs once on its example input at the space's batch.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from picojoule.dse.errors import InfeasibleError, StoreError
from picojoule.dse.evaluate import DesignEvaluator
from picojoule.dse.params import catalog
from picojoule.dse.progress import ProgressView
from picojoule.dse.report import RunReport, build_report, front_table, write_outputs
from picojoule.dse.results import _APP_ID as RESULTS_APP_ID
from picojoule.dse.results import DB_FILENAME, ResultsDB
from picojoule.dse.runner import RunInterrupted, run_space
from picojoule.dse.spacefile import find_space, load_space
from picojoule.errors import ConfigError
from picojoule.fsio import OutputPathError, check_cache_path, prepare_out_dir
from picojoule.models.options import DataOption
from picojoule.models.spec import resolve, workload_help
from picojoule.options import check_choice, check_options
from picojoule.workload.builtin import BUILTINS

__all__ = ["app"]

app = typer.Typer(
    help="Design-space exploration: sweep accelerator parameters, keep the Pareto front.",
    no_args_is_help=True,
)
console = Console(width=None if sys.stdout.isatty() else 130)  # as picojoule.cli
_KIND = "picojoule DSE results database"


def _split_table(report: RunReport) -> Table | None:
    if report.chosen is None or report.chosen.metrics is None:
        return None
    m = report.chosen.metrics
    split = m["energy_by_component_pj"]
    total = sum(split.values())
    table = Table(title="chosen design: energy per inference by component")
    table.add_column("component")
    table.add_column("uJ", justify="right")
    table.add_column("share", justify="right")
    for name in sorted(split, key=split.get, reverse=True):
        table.add_row(name, f"{split[name] * 1e-6:.4g}", f"{100 * split[name] / total:.1f}%")
    return table


def _render(db_path: Path, run_name: str | None, out: Path, limit: int) -> RunReport:
    with ResultsDB.open(db_path, create=False) as db:
        run = db.run(run_name)
        points = db.points(run.run_id)
    kind = run.space.get("kind") if isinstance(run.space, dict) else None
    if kind is not None:  # another tool's sweep in the same store, e.g. cluster plan --search
        raise StoreError(
            f"run {run.run_id!r} in {db_path} is a {kind}, not an accelerator design sweep; "
            "show it with the command that made it (picojoule cluster plan --search --out DIR)"
        )
    report = build_report(run, points)
    written = write_outputs(report, points, out)
    console.print(front_table(report, limit=limit))
    split = _split_table(report)
    if split is not None:
        console.print(split)
    if report.chosen is not None and report.chosen.metrics is not None:
        design = ", ".join(f"{k}={v}" for k, v in sorted(report.chosen.design.items()))
        console.print(f"[bold]chosen[/bold] {design}")
    for label, point in (
        ("most efficient", report.most_efficient),
        ("most efficient on chip", report.most_efficient_onchip),
    ):
        if point is not None and point.metrics is not None:
            m = point.metrics
            console.print(
                f"[bold]{label}[/bold] {m['tops_per_w']:.3g} TOPS/W "
                f"({m['onchip_tops_per_w']:.3g} on chip, DRAM excluded), "
                f"{100 * m['math_energy_fraction']:.0f}% of energy in math "
                f"({100 * m['onchip_math_energy_fraction']:.0f}% on chip), "
                f"{m['area_mm2']:.3g} mm^2"
            )
    console.print("wrote " + ", ".join(str(p) for p in written))
    return report


@app.command()
def run(
    space: Annotated[str, typer.Argument(help="design-space YAML file, or a packaged space name")],
    out: Annotated[
        Path | None, typer.Option(help="run directory (default dse-runs/<name>)")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue a stopped run")] = False,
    backend: Annotated[str, typer.Option(help="local (process pool) or ray")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (with --backend ray)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="processes / local Ray CPUs (default: all)")
    ] = None,
    limit: Annotated[int, typer.Option(help="front rows to print")] = 20,
    model: Annotated[
        str | None,
        typer.Option(help="the workload, in place of the space's: " + workload_help(BUILTINS)),
    ] = None,
    data: DataOption = None,
) -> None:
    """Evaluate a design space (resumable; results cached in SQLite)."""
    check_options(workers=workers, limit=limit)
    check_choice("backend", backend, ("local", "ray"))
    if address is not None and backend != "ray":
        raise ConfigError(f"--address {address!r} needs --backend ray; add it or drop --address")
    sp = load_space(find_space(space), catalog)
    if model is not None:  # the run records (and resumes) the workload it evaluated
        sp = replace(sp, workload=model.strip(), source={**sp.source, "workload": model.strip()})
    option = "--model" if model is not None else f"{sp.name}: workload:"
    source = resolve(sp.workload, data, workloads=True, needs_metric=False, option=option)
    workload = source.workload(
        sp.batch, warn=lambda line: console.print(f"note: {line}", style="yellow", markup=False)
    )
    evaluator = DesignEvaluator(preset=sp.preset, workload=workload, mapper=sp.mapper)
    out_dir = out if out is not None else Path("dse-runs") / sp.name
    # Before any evaluation: refuse a results file picojoule did not write (or a symlink).
    try:
        check_cache_path(out_dir / DB_FILENAME, app_id=RESULTS_APP_ID, kind=_KIND, option="--out")
    except OutputPathError as e:
        raise StoreError(str(e)) from None
    console.print(
        f"[bold]{sp.name}[/bold]: preset {sp.preset}, workload {workload.name} "
        f"({len(workload.layers)} layers), {sp.size:,} designs, search {sp.search.method}, "
        f"backend {backend}"
    )
    with (
        prepare_out_dir(out_dir, what="the run") as out_dir,  # removed if nothing got written
        ProgressView() as progress,  # on stderr: live bar on a terminal, a line per 10 s else
    ):
        try:
            summary = run_space(
                sp,
                evaluator,
                out=out_dir,
                backend=backend,
                workers=workers,
                address=address,
                resume=resume,
                progress=progress,
            )
        except KeyboardInterrupt as e:  # SIGINT or SIGTERM: finished points are committed
            progress.stop()
            model_args = [a for o, v in (("--model", model), ("--data", data)) if v for a in (o, v)]
            _interrupted(e, [space, *model_args], out_dir, backend, workers, address)
        except InfeasibleError:
            # Budgets nobody met: still render what was stored, then report the error.
            if (out_dir / DB_FILENAME).exists():
                progress.stop()
                _render(out_dir / DB_FILENAME, sp.name, out_dir, limit)
            raise
    console.print(
        f"{summary.points} points ({summary.evaluated} evaluated now, {summary.reused} reused, "
        f"{summary.failed} unmappable, {summary.over_budget} proposals over the area budget) "
        f"in {summary.db_path}"
    )
    _render(summary.db_path, sp.name, out_dir, limit)


def _interrupted(
    e: KeyboardInterrupt,
    space: list[str],  # SPACE and the options that chose its workload (--model, --data)
    out_dir: Path,
    backend: str,
    workers: int | None,
    address: str | None,
) -> NoReturn:
    """Say what was kept and the command that resumes; exit 130 (SIGINT) or 143 (SIGTERM)."""
    from picojoule.interrupt import exit_code

    kept = f"{e.summary.points} points kept" if isinstance(e, RunInterrupted) else "stopped"
    again = ["picojoule", "dse", "run", *space, "--out", str(out_dir), "--resume"]
    if backend != "local":
        again += ["--backend", backend]
    if address is not None:
        again += ["--address", address]
    if workers is not None:
        again += ["--workers", str(workers)]
    Console(stderr=True).print(
        f"[yellow]interrupted[/]: {kept} in {out_dir / DB_FILENAME}; resume with: "
        + shlex.join(again),
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(exit_code(e))


@app.command()
def show(
    run_path: Annotated[
        Path, typer.Argument(metavar="RUN", help="run directory or results.sqlite")
    ],
    run_name: Annotated[
        str | None, typer.Option("--run", help="which run, if the file holds several")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="where to write outputs (default: beside the DB)")
    ] = None,
    limit: Annotated[int, typer.Option(help="front rows to print")] = 20,
) -> None:
    """Re-render tables, plots and JSON of a stored run, without evaluating anything."""
    check_options(limit=limit)
    db_path = run_path / DB_FILENAME if run_path.is_dir() else run_path
    if not db_path.exists():
        raise StoreError(f"no results database at {db_path}; give a run directory or its .sqlite")
    with prepare_out_dir(out if out is not None else db_path.parent) as out_dir:
        _render(db_path, run_name, out_dir, limit)


if __name__ == "__main__":
    app()
