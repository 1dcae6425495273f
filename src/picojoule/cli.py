"""`picojoule` command line: typer + rich. Every user error prints one line, never a traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from picojoule.errors import PicojouleError
from picojoule.models.spec import MODEL_HELP

app = typer.Typer(
    help="What each hardware-efficiency lever costs in accuracy and buys in energy, area and "
    "speed - on your own model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# a terminal's own width, or COLUMNS when set; 130 for a pipe or file without COLUMNS
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 130)


def busy_cores(window_s: float = 0.2) -> float | None:
    """Cores other work keeps busy now: the non-idle share of /proc/stat's CPU time over
    `window_s`, times the CPU count. None where that cannot be read or does not describe the
    cores this process may use (no /proc, or a container that sees the host's CPUs)."""
    import os
    import time

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
        return ticks[3] + ticks[4], sum(ticks)  # (idle + iowait, all)

    try:
        with open("/proc/stat") as f:
            cpus = sum(1 for line in f if line.startswith("cpu") and line[3].isdigit())
        if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) != cpus:
            return None
        idle0, all0 = snap()
        time.sleep(window_s)
        idle1, all1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    if all1 <= all0:
        return None
    return cpus * (1.0 - (idle1 - idle0) / (all1 - all0))


def idle_threads(default: int) -> int:
    """Intra-op threads for a study: the cores other work leaves idle right now (sampled, not
    the load average, which still counts jobs that just ended), at most `default` (torch's own
    choice), at least 1. Fake-quant is many small ops; each waits for its slowest thread, so a
    thread sharing a core with other work stalls all of them (BENCHMARKS.md: a 2-core machine
    ran the default study in 25 s on 2 threads beside another job, 8 s on 1)."""
    import os

    busy = busy_cores()
    if busy is None:
        return default
    cores = len(os.sched_getaffinity(0))
    return max(1, min(default, cores - round(busy)))


def _lm_options(
    text: Path | None, calib: Path | None, tokens: int | None, seq_len: int | None,
    prompt: int | None, batch: int | None, context: int | None, decode: int | None,
    quantize_lm_head: bool,
) -> object | None:  # fmt: skip
    """The language-model options as one `LMOptions` (None when none was given)."""
    given = {k: v for k, v in (("text", text), ("calib", calib), ("tokens", tokens),
             ("seq_len", seq_len)) if v is not None}  # fmt: skip
    phase = {k: v for k, v in (("prompt", prompt), ("batch", batch), ("context", context),
             ("decode", decode)) if v is not None}  # fmt: skip
    if not given and not phase and not quantize_lm_head:
        return None
    from picojoule.lm.phases import Phases
    from picojoule.lm.task import LMOptions

    return LMOptions(**given, phases=Phases(**phase), quantize_lm_head=quantize_lm_head)


@app.command()
def study(
    model: str = typer.Option("digits", help=MODEL_HELP + " and --metric"),
    data: str = typer.Option(
        None,
        metavar="PKG.MOD:LOADER",
        help="user models: loader() returns (inputs, targets) batches, or a dict of splits "
        "{'train': ..., 'calib': ..., 'eval': ...}: 'train' fine-tunes (and calibrates "
        "unless 'calib' is given), 'eval' scores (held out)",
    ),
    metric: str = typer.Option(
        None,
        metavar="PKG.MOD:SCORE",
        help="user models: score(model, batches) -> float, given the held-out batches "
        "(--eval or the 'eval' split; else the --data batches)",
    ),
    eval_data: str = typer.Option(
        None,
        "--eval",
        metavar="PKG.MOD:LOADER",
        help="user models: held-out (inputs, targets) batches that score every recipe; "
        "without held-out data, fine-tuned rows are scored on their own training data (marked)",
    ),
    metric_name: str = typer.Option(
        None, help="user models: the metric's name in the report [metric]"
    ),
    higher_is_better: bool = typer.Option(
        None,
        "--higher-is-better/--lower-is-better",
        help="user models: the metric's direction (Pareto front; delta = metric - baseline) "
        "[higher]",
    ),
    recipes: str = typer.Option("default", help="preset name or recipes YAML file"),
    target: str = typer.Option(
        "eyeriss",
        help="accelerator preset (eyeriss, simba, ...), GPU (h100, a100, ...) or arch YAML; "
        "several, comma-separated, to compare (eyeriss,h100)",
    ),
    out: Path = typer.Option(Path("picojoule-report"), help="output directory"),
    cache: Path = typer.Option(None, help="result cache (SQLite); default: user cache dir"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute every recipe"),
    measured: Path = typer.Option(
        None, help="`picojoule bench gpu` JSON from the target GPU: bill measured pJ/op too"
    ),
    threads: int = typer.Option(
        0, help="torch CPU threads (0: the cores other work leaves idle, sampled at start)"
    ),
    text: Path = typer.Option(None, help="LMs: evaluation text file (default: pydoc topics)"),
    calib: Path = typer.Option(None, help="LMs: text file for calibration and fine-tuning"),
    tokens: int = typer.Option(None, help="LMs: tokens scored for perplexity [2048]"),
    seq_len: int = typer.Option(None, help="LMs: evaluation window, tokens [512]"),
    prompt: int = typer.Option(None, help="LMs: prefill prompt length P [512]"),
    batch: int = typer.Option(None, help="LMs: decode batch B [1]"),
    context: int = typer.Option(None, help="LMs: context L before decoding [1024]"),
    decode: int = typer.Option(None, help="LMs: tokens decoded T [128]"),
    quantize_lm_head: bool = typer.Option(
        False, "--quantize-lm-head", help="LMs: quantize the LM head too (default: float)"
    ),
    backend: str = typer.Option(
        "local",
        help="local (this process) | ray (recipes as Ray tasks, one CPU each, one GPU each "
        "where the cluster has GPUs; same results, same cache)",
    ),
    address: str = typer.Option(
        None,
        metavar="HOST:PORT",
        help="with --backend ray: join the Ray cluster there (default: start a local Ray)",
    ),
) -> None:
    """Run recipes on a model: accuracy, bits, energy, latency per recipe; write a report."""
    if threads < 0:
        raise PicojouleError(f"--threads {threads}: give 0 (default) or a positive count")
    from picojoule.study.backends import check_backend

    check_backend(backend, address)  # an unknown backend or a silent address: one line, now
    import torch

    from picojoule.study.tasks import set_study_threads

    # picojoule's own work; build(), loaders and the metric keep the process's count
    set_study_threads(threads or idle_threads(torch.get_num_threads()))
    from picojoule.fsio import prepare_out_dir
    from picojoule.paths import cache_dir
    from picojoule.study import load_recipes, summary_table, write_report
    from picojoule.study.runner import run
    from picojoule.study.store import check_cache
    from picojoule.study.targets import check_target
    from picojoule.study.tasks import task_factory

    targets = [t.strip() for t in target.split(",") if t.strip()]
    if not targets:
        raise PicojouleError("--target is empty; give one (eyeriss) or several (eyeriss,h100)")
    for t in targets:
        check_target(t)
    # Every input is checked before --out is created or a model is built: a typo costs seconds.
    recs = load_recipes(recipes)
    lm = _lm_options(text, calib, tokens, seq_len, prompt, batch, context, decode,
                     quantize_lm_head)  # fmt: skip
    make_task = task_factory(
        model, data, metric, lm=lm, eval_data=eval_data, metric_name=metric_name,
        higher_is_better=higher_is_better,
    )  # fmt: skip
    db = None if no_cache else (cache or cache_dir() / "study.sqlite")
    if db is not None:
        check_cache(db)
    # Created (and proved writable) now, not after the study; removed again if it fails.
    with prepare_out_dir(out, what="the report") as out_dir:
        task = make_task()
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            job = bar.add_task("recipes", total=len(recs))

            def progress(name: str, i: int, n: int) -> None:
                bar.update(job, completed=i, total=n, description=f"recipe {name}")
                if not console.is_terminal:  # a log file gets one line per step, not a bar
                    console.print(f"[{i}/{n} done] {name}", highlight=False)

            try:
                result = run(task, recs, target=targets, cache=db, progress=progress,
                             measured=measured, backend=backend, address=address,
                             factory=make_task)  # fmt: skip
            except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (`main`): typer would say
                from picojoule.interrupt import exit_code  # only "Aborted!"

                _interrupted(db)
                raise typer.Exit(exit_code(e)) from None
        console.print(summary_table(result))
        jpath, hpath = write_report(result, out_dir)
    console.print(f"report: {hpath}  data: {jpath}")
    levers = [r for r in result.results if not r.recipe.is_baseline]
    if levers and all(r.skipped for r in levers):
        console.print(
            "[yellow]warning:[/] every recipe but the baseline was skipped (reasons above): "
            "choose levers for this model's layers, e.g. --recipes formats-sweep",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def formats(
    name: list[str] = typer.Argument(None, help="format names (default: one of each family)"),
) -> None:
    """Every format family with bits, range and precision."""
    from picojoule.formats import FloatFormat, IntFormat, LNSFormat, ScaledFormat, get, names
    from picojoule.termtable import FitTable

    # fits the console: when narrow, the canonical names move to a continuation table
    t = FitTable(title="picojoule number formats", title_justify="left")
    t.add_column("name", kind="name")
    t.add_column("canonical", kind="name", rank=1)
    t.add_column("family", kind="text")
    for col in ("bits/elem", "max", "min normal", "min subnormal", "eps"):
        t.add_column(col, justify="right")
    for n in name or names():
        f = get(n)
        el = f.element if isinstance(f, ScaledFormat) else f
        fam = {
            FloatFormat: "float",
            IntFormat: "int",
            LNSFormat: "lns",
        }.get(type(el), "codebook")
        if isinstance(f, ScaledFormat):
            fam = f"{f.kind} {fam}" + (f" /{f.block}" if f.block else "")
        if isinstance(el, FloatFormat | IntFormat | LNSFormat):
            rng = [f"{el.max:.4g}", f"{el.min_normal:.4g}", f"{el.min_subnormal:.4g}",
                   f"{el.eps:.4g}"]  # fmt: skip
        else:
            rng = ["-"] * 4
        t.add_row(n, f.name, fam, f"{f.bits_per_element:g}", *rng)
    console.print(t)


# name -> (module holding a typer `app`, help). Mounted on demand: `picojoule study` need not
# import the mapper, Ray or matplotlib-heavy modules of the other commands.
SUBAPPS = {
    "winograd": ("picojoule.winograd.cli", "Winograd transforms and error study."),
    "map": ("picojoule.mapping.cli", "Map a model onto an accelerator preset."),
    "dse": ("picojoule.dse.cli", "Design-space exploration (Pareto, SQLite, Ray)."),
    "bench": ("picojoule.gpu.cli", "Measure the local NVIDIA GPU."),
    "explain": ("picojoule.energy.cli", "Energy ledger: formats, GPUs, roofline."),
    "sparsity": ("picojoule.sparsity.cli", "N:M pruning, layouts, sparse costs."),
    "arch": ("picojoule.arch.cli", "Accelerator presets: list, show, export YAML."),
    "cluster": ("picojoule.cluster.cli", "GPU clusters: links, collectives, parallel plans."),
}


_MOUNTED: dict[str, str] = {}  # name -> "stub" | "app"


def _mount(argv: list[str]) -> None:
    """Mount the sub-app the command line names. For anything else (--help, no command, a
    typo) mount every sub-app as a stub that holds only its help line: listing the commands
    imports none of their modules, so no torch, optuna, ray or matplotlib (tests/
    test_cli_imports.py; start-up times in BENCHMARKS.md). A real mount after a stub wins:
    typer keeps the last group registered under a name."""
    import importlib

    if len(argv) < 2 or argv[1] not in SUBAPPS:
        for name, (_, help_text) in SUBAPPS.items():
            if name not in _MOUNTED:
                _MOUNTED[name] = "stub"
                app.add_typer(typer.Typer(help=help_text), name=name, help=help_text)
        return
    name = argv[1]
    if _MOUNTED.get(name) == "app":
        return
    _MOUNTED[name] = "app"
    module, help_text = SUBAPPS[name]
    sub = importlib.import_module(module)
    if name == "bench":  # one command today: mount it as `bench gpu`, not collapsed
        bench = typer.Typer(help=help_text, no_args_is_help=True)
        bench.command("gpu")(sub.gpu)
        bench.callback()(lambda: None)
        app.add_typer(bench, name=name, help=help_text)
    else:
        app.add_typer(sub.app, name=name, help=help_text)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("study", "formats"):
        pass  # core commands: no sub-app needed
    else:
        _mount(sys.argv)
    from picojoule.interrupt import exit_code, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # `kill` stops a study as Ctrl-C does: cleanly, resumable
            app()
    except PicojouleError as e:
        from rich.markup import escape

        # the message is user data: `round:up` must not become an emoji, `[x]` not markup
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, emoji=False)
        sys.exit(2)
    except KeyboardInterrupt as e:
        console.print("[yellow]interrupted[/]")
        sys.exit(exit_code(e))


def _interrupted(db: object) -> None:
    console.print(
        "[yellow]interrupted[/]: "
        + (
            "finished recipes are in the cache; run the same command again to resume"
            if db is not None
            else "nothing was cached (--no-cache): a rerun starts over"
        )
    )


__all__ = ["app", "main"]


if __name__ == "__main__":
    main()
