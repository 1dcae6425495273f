"""`picojoule cluster ...`: links, nodes, models, collective costs and parallel plans.

Commands:
- `plan`: one training step (or `--serve`: prefill/decode) of a model on N GPUs, or `--search`
  for the Pareto front of valid (tp, pp, dp, micro-batch, ZeRO, recompute) plans - in memory,
  or with `--out DIR` as a resumable sweep in the DSE results store (`picojoule.cluster.sweep`;
  `--resume`, `--backend local|ray`, `--address`, `--workers`);
- `collective`: an nccl-tests-style table of one collective over message sizes;
- `links`, `nodes`, `models`: the preset tables with their sources;
- `calibrate`: time this machine's collectives (`picojoule.cluster.calibrate`, mounted when
  that module is present).
`explain_interconnect` backs `picojoule explain interconnect`. No torch import anywhere here.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import textwrap
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from picojoule.errors import ConfigError

__all__ = ["app", "explain_interconnect"]

app = typer.Typer(help="GPU clusters: links, collectives, parallel plans.", no_args_is_help=True)
console = Console()

Hardware = Annotated[
    Path | None, typer.Option("--hardware", help="YAML with links:/nodes:/models: rows")
]
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "kib": 2**10, "mib": 2**20,
          "gib": 2**30, "kb": 1e3, "mb": 1e6, "gb": 1e9}  # fmt: skip


def _bytes(text: str, option: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m[2].lower() not in _UNITS:
        raise ConfigError(f"{option} {text!r}: give a size such as 8, 64K, 16MiB or 8G")
    return float(m[1]) * _UNITS[m[2].lower()]


def _size(n: float) -> str:
    for unit, k in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n >= k:
            return f"{n / k:.3g}{unit}"
    return f"{n:.0f}"


def _t(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def _j(joules: float) -> str:
    units = (("GJ", 1e9), ("MJ", 1e6), ("kJ", 1e3), ("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6))
    for unit, k in units:
        if abs(joules) >= k:
            return f"{joules / k:.3g} {unit}"
    return f"{joules * 1e9:.3g} nJ"


def _kv(title: str, rows: list[tuple[str, str]]) -> Table:
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    for k, v in rows:
        t.add_row(k, v)
    return t


def _json(path: Path | None, obj: Any) -> None:
    if path is None:
        return
    from picojoule.fsio import write_json

    write_json(path, obj, indent=2)
    console.print(f"wrote {path}")


def _to_dict(obj: Any) -> Any:
    from picojoule.cluster.sweep import estimate_dict

    return estimate_dict(obj)


@app.command()
def links(hardware: Hardware = None) -> None:
    """Interconnect links: bandwidth, alpha, efficiency, energy, source."""
    from picojoule.cluster.links import links as all_links

    t = Table(title="Links (GB/s per direction; alpha per ring step)", title_justify="left")
    for col in ("link", "GB/s", "alpha us", "eff", "pJ/bit", "source"):
        t.add_column(col, justify="left" if col in ("link", "source") else "right")
    for lk in all_links(hardware).values():
        t.add_row(lk.name, f"{lk.bandwidth_gbs:g}", f"{lk.latency_us:g}", f"{lk.efficiency:g}",
                  f"{lk.energy_pj_per_bit:g}", lk.source)  # fmt: skip
    console.print(t)
    console.print("citations: src/picojoule/cluster/presets/links.yaml; "
                  "`picojoule cluster links --hardware FILE` overrides rows.")  # fmt: skip


@app.command()
def nodes(hardware: Hardware = None) -> None:
    """Node presets: GPUs per NVLink domain, links, in-switch reduction, NICs."""
    from picojoule.cluster.topology import nodes as all_nodes

    t = Table(title="Node presets", title_justify="left")
    for col in ("node", "GPU", "GPUs", "scale-up", "NVLS", "scale-out", "src"):
        t.add_column(col, justify="right" if col == "GPUs" else "left")
    for nd in all_nodes(hardware).values():
        nvls = f"{nd.nvls_efficiency:g}" if nd.nvls else "-"
        t.add_row(nd.name, nd.gpu, str(nd.gpus_per_node), nd.scale_up, nvls,
                  f"{nd.nics_per_node}x {nd.scale_out}", nd.source[:3])  # fmt: skip
    console.print(t)


@app.command()
def models(hardware: Hardware = None) -> None:
    """Transformer presets with their parameter counts."""
    from picojoule.cluster.models import model_presets

    t = Table(title="Model presets", title_justify="left")
    for col in ("model", "layers", "hidden", "heads/kv", "ffn", "vocab", "params/active"):
        t.add_column(col, justify="left" if col == "model" else "right")

    def count(n: float) -> str:
        return next(f"{n / k:.3g}{u}" for u, k in (("T", 1e12), ("B", 1e9), ("M", 1e6),
                                                   ("", 0)) if n >= k)  # fmt: skip

    for m in model_presets(hardware).values():
        active = f"/{count(m.params(active=True))}" if m.moe else ""
        t.add_row(m.name, str(m.layers), str(m.hidden), f"{m.heads}/{m.kv}", str(m.ffn),
                  str(m.vocab), f"{count(m.params())}{active}")  # fmt: skip
    console.print(t)


@app.command()
def collective(
    op: Annotated[str, typer.Option(help="all_reduce, all_gather, ...")] = "all_reduce",
    node: Annotated[str, typer.Option(help="node preset")] = "dgx-h100",
    gpus: Annotated[int, typer.Option(help="ranks, one per GPU")] = 8,
    algorithm: Annotated[str, typer.Option(help="auto (NCCL's choice) or a name")] = "auto",
    min_bytes: Annotated[str, typer.Option(help="smallest size")] = "8",
    max_bytes: Annotated[str, typer.Option(help="largest size")] = "8G",
    hardware: Hardware = None,
) -> None:
    """Time, algbw and busbw of one collective over sizes, as nccl-tests prints them."""
    from picojoule.cluster.collectives import cost
    from picojoule.cluster.topology import system

    sysm = system(node, override=hardware)
    gpn = sysm.gpus_per_node
    if gpus < 1 or (gpus > gpn and gpus % gpn):
        raise ConfigError(f"--gpus {gpus}: give 1..{gpn} or a multiple of {gpn} ({node})")
    per, k = min(gpus, gpn), max(1, gpus // gpn)
    group = sysm.group(per, k, concurrent=per)
    lo, hi = _bytes(min_bytes, "--min-bytes"), _bytes(max_bytes, "--max-bytes")
    if not 0 < lo <= hi:
        raise ConfigError(f"--min-bytes {min_bytes} must be > 0 and <= --max-bytes {max_bytes}")
    t = Table(title=f"{op} on {gpus} GPUs of {node} (model)", title_justify="left")
    for col in ("size", "algorithm", "time", "algbw GB/s", "busbw GB/s", "link energy"):
        t.add_column(col, justify="left" if col == "algorithm" else "right")
    size = lo
    while size <= hi:
        c = cost(op, size, group, algorithm=algorithm)
        t.add_row(_size(size), f"{c.algorithm}/{c.protocol}", _t(c.time_s), f"{c.algbw / 1e9:.3g}",
                  f"{c.busbw / 1e9:.3g}", _j(c.energy_pj * 1e-12))  # fmt: skip
        size *= 4
    console.print(t)


def _train_tables(e: Any, sysm: Any) -> None:
    p = e.plan
    vs = f"x{p.virtual_stages}" if p.virtual_stages > 1 else ""
    head = (f"{e.model} on {e.gpus}x {e.gpu} ({e.system}): tp {p.tp}, pp {p.pp}{vs}, dp {p.dp}, "
            f"ZeRO {p.zero}, {e.micro_batches} x {p.micro_batch} seq of {p.seq_len}, recompute "
            f"{p.recompute}{', seq. parallel' if p.sequence_parallel else ''}")  # fmt: skip
    console.print(textwrap.fill(head, 80), highlight=False)
    step = e.step_time_s
    rows = [("step time", _t(step)), ("tokens/s", f"{e.tokens_per_s:,.0f}"),
            ("MFU / HFU", f"{e.mfu:.1%} / {e.hfu:.1%}")]  # fmt: skip
    parts = (("compute", e.compute_s), ("TP/EP comm (exposed)", e.tp_comm_s),
             ("PP send/recv", e.p2p_s), ("pipeline bubble", e.bubble_s),
             ("DP comm exposed", e.dp_exposed_s), ("optimizer step", e.optimizer_s))  # fmt: skip
    for label, v in parts:
        if v > 0:
            rows.append((label, f"{_t(v)} ({v / step:.1%})"))
    console.print(_kv("Step", rows))
    if e.comms:
        t = Table(title="Collectives per step (per GPU)", title_justify="left")
        for col in ("what", "algorithm", "size", "calls", "time", "exposed"):
            t.add_column(col, justify="left" if col in ("what", "algorithm") else "right")
        for c in e.comms:
            t.add_row(c.name, f"{c.algorithm}/{c.protocol}", _size(c.nbytes), f"{c.calls:g}",
                      _t(c.time_s), _t(c.exposed_s))  # fmt: skip
        console.print(t)
    mem = e.memory
    gib = 2**30
    console.print(_kv("Memory per GPU (GiB)", [
        ("weights", f"{mem.weights / gib:.1f}"), ("gradients", f"{mem.grads / gib:.1f}"),
        ("optimizer states", f"{mem.optimizer / gib:.1f}"),
        ("activations", f"{mem.activations / gib:.1f}"), ("other", f"{mem.other / gib:.1f}"),
        ("total / capacity", f"{mem.total / gib:.1f} / {mem.capacity / gib:.0f}"),
    ]))  # fmt: skip
    _energy_table("Energy per step", e.energy, e.tokens, sysm)


def _energy_table(title: str, en: Any, tokens: float, sysm: Any) -> None:
    total = en.total_j
    rows = []
    for label, v in (("GPU math (MAC model)", en.math_j), ("GPU HBM traffic", en.memory_j),
                     ("GPU other (on-chip, static)", en.other_j),
                     ("links (NVLink, NICs, optics)", en.link_j),
                     ("GPUs waiting", en.wait_j)):  # fmt: skip
        rows.append((label, f"{_j(v)} ({v / total:.1%})"))
    rows += [("total", _j(total)), ("per token", _j(total / tokens))]
    console.print(_kv(title, rows))
    console.print(f"busy {sysm.busy_power_w:g} W, waiting {sysm.wait_power_w:.0f} W per GPU "
                  "(docs/cluster.md: Energy)", highlight=False)  # fmt: skip


@app.command()
def plan(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="preset (cluster models) or HF config.json")] = (
        "llama3-8b"
    ),
    gpus: Annotated[int, typer.Option(help="GPUs in total")] = 8,
    node: Annotated[str, typer.Option(help="node preset (cluster nodes)")] = "dgx-h100",
    gpu: Annotated[str | None, typer.Option(help="GPU replacing the node's own")] = None,
    tp: Annotated[int, typer.Option(help="tensor parallel")] = 1,
    pp: Annotated[int, typer.Option(help="pipeline parallel")] = 1,
    dp: Annotated[int, typer.Option(help="data parallel (0: the rest; --serve: replicas)")] = 0,
    ep: Annotated[int, typer.Option(help="expert parallel (MoE)")] = 1,
    zero: Annotated[int, typer.Option(help="ZeRO stage 0-3 (3 = FSDP)")] = 0,
    micro_batch: Annotated[int, typer.Option(help="sequences per micro-batch")] = 1,
    global_batch: Annotated[int, typer.Option(help="sequences per step (0: dp x mb)")] = 0,
    seq_len: Annotated[int, typer.Option(help="tokens per sequence (0: model's)")] = 0,
    recompute: Annotated[str, typer.Option(help="none | selective | full")] = "none",
    sequence_parallel: Annotated[bool, typer.Option("--sequence-parallel")] = False,
    virtual_stages: Annotated[int, typer.Option(help="interleaved 1F1B chunks")] = 1,
    no_flash: Annotated[bool, typer.Option("--no-flash", help="no flash attention")] = False,
    no_overlap: Annotated[bool, typer.Option("--no-overlap", help="DP comm not overlapped")] = (
        False
    ),
    fmt: Annotated[str, typer.Option("--format", help="math: bf16, fp16, e4m3")] = "bf16",
    grad_bits: Annotated[int, typer.Option(help="DP gradients on the wire: 16 or 8")] = 16,
    act_bits: Annotated[int, typer.Option(help="TP/PP activations on the wire")] = 16,
    search: Annotated[bool, typer.Option("--search", help="Pareto front of plans")] = False,
    limit: Annotated[int, typer.Option(help="--search: rows shown")] = 15,
    out: Annotated[
        Path | None, typer.Option(help="--search: store the sweep in DIR/results.sqlite")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="--search --out: continue a stopped sweep")
    ] = False,
    backend: Annotated[str, typer.Option(help="--search --out: local (processes) or ray")] = (
        "local"
    ),
    address: Annotated[
        str | None, typer.Option(help="--search --out: Ray cluster (with --backend ray)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="--search --out: processes / local Ray CPUs (default: all)")
    ] = None,
    serve: Annotated[bool, typer.Option("--serve", help="inference: prefill + decode")] = False,
    batch: Annotated[int, typer.Option(help="--serve: concurrent sequences")] = 1,
    prompt: Annotated[int, typer.Option(help="--serve: prompt tokens")] = 512,
    decode: Annotated[int, typer.Option(help="--serve: generated tokens")] = 128,
    weight_bits: Annotated[float, typer.Option(help="--serve: weight bits (4, 8, 16)")] = 16,
    kv_bits: Annotated[float, typer.Option(help="--serve: KV-cache bits")] = 16,
    math_efficiency: Annotated[float, typer.Option(help="of dense peak, GEMMs")] = 0.72,
    memory_efficiency: Annotated[float, typer.Option(help="of HBM bandwidth")] = 0.8,
    hardware: Hardware = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the result here")] = None,
) -> None:
    """Step time, memory, MFU and energy of a parallel training plan (or --serve, --search)."""
    from picojoule.cluster.models import load_model
    from picojoule.cluster.plan import Assumptions, ParallelPlan, ServingPlan
    from picojoule.cluster.topology import system
    from picojoule.options import check_choice

    check_choice("recompute", recompute, ("none", "selective", "full"))
    if search and serve:
        raise ConfigError("--search explores training plans; drop --serve or --search")
    sweep = _sweep_options(search, out, resume, backend, address, workers)
    if json_out is not None:
        from picojoule.fsio import check_out_file

        check_out_file(json_out, option="--json")
    m = load_model(model, hardware)
    sysm = system(node, gpu, hardware)
    a = Assumptions(math_efficiency=math_efficiency, memory_efficiency=memory_efficiency)
    if serve:
        from picojoule.cluster.plan import plan_serving

        # one TP group over all GPUs unless --tp or --dp (replicas) says otherwise
        serve_tp = tp if tp > 1 else (gpus // dp if dp > 0 else 0)
        sp = ServingPlan(tp=serve_tp, batch=batch, prompt=prompt, decode=decode,
                         weight_bits=weight_bits, kv_bits=kv_bits, act_bits=act_bits,
                         math_format=fmt)  # fmt: skip
        est = plan_serving(m, sysm, gpus, sp, a)
        _serve_tables(est, sysm)
        _json(json_out, _to_dict(est))
        return
    p = ParallelPlan(tp=tp, pp=pp, dp=dp, ep=ep, zero=zero, micro_batch=micro_batch,
                     global_batch=global_batch, seq_len=seq_len, recompute=recompute,  # type: ignore[arg-type]
                     sequence_parallel=sequence_parallel, virtual_stages=virtual_stages,
                     flash_attention=not no_flash, overlap_grad_reduce=not no_overlap,
                     math_format=fmt, grad_bits=grad_bits, act_bits=act_bits)  # fmt: skip
    if search:
        _search(m, sysm, gpus, p, a, limit, json_out, sweep, _resume_command(ctx))
        return
    from picojoule.cluster.plan import plan_training

    est = plan_training(m, sysm, gpus, p, a)
    _train_tables(est, sysm)
    _json(json_out, _to_dict(est))


@dataclasses.dataclass(frozen=True)
class _SweepOptions:
    """Where and how `--search --out DIR` stores and runs its sweep."""

    out: Path
    resume: bool
    backend: str
    address: str | None
    workers: int | None


def _sweep_options(
    search: bool,
    out: Path | None,
    resume: bool,
    backend: str,
    address: str | None,
    workers: int | None,
) -> _SweepOptions | None:
    """Check the sweep options before any work; None: search in memory (no --out)."""
    from picojoule.options import check_choice, check_options

    check_options(workers=workers)
    check_choice("backend", backend, ("local", "ray"))
    given = [name for name, on in (("--out", out is not None), ("--resume", resume),
             ("--backend", backend != "local"), ("--address", address is not None),
             ("--workers", workers is not None)) if on]  # fmt: skip
    if given and not search:
        verb = "stores" if len(given) == 1 else "store"
        raise ConfigError(f"{', '.join(given)} {verb} a plan search; add --search")
    if address is not None and backend != "ray":
        raise ConfigError(f"--address {address!r} needs --backend ray; add it or drop --address")
    if out is None:
        if given:
            what = "continues a stored search" if given[0] == "--resume" else "runs a stored search"
            raise ConfigError(f"{given[0]} {what}: add --out DIR (the search's directory)")
        return None
    if out.is_symlink() and not out.is_dir():
        raise ConfigError(f"--out {out} is a symbolic link that does not lead to a directory; "
                          "pass --out with a directory")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is an existing file, not a directory; pass --out with a "
                          "directory (it is created if missing)")  # fmt: skip
    return _SweepOptions(out=out, resume=resume, backend=backend, address=address, workers=workers)


def _search(m: Any, sysm: Any, gpus: int, p: Any, a: Any, limit: int, json_out: Path | None,
            sweep: _SweepOptions | None, again: list[str]) -> None:  # fmt: skip
    """Print the Pareto front of the plans (and write it with --json); `again`: the command
    that resumes a stored search, printed if it is interrupted."""
    from picojoule.cluster.plan import plan_candidates, search_plans
    from picojoule.cluster.sweep import in_memory

    if limit < 0:
        raise ConfigError(f"--limit {limit}: give 0 or more rows")
    gb = p.global_batch or gpus
    if sweep is None:
        n = len(plan_candidates(m, sysm, gpus, global_batch=gb, seq_len=p.seq_len, base=p))
        res = in_memory(search_plans(m, sysm, gpus, global_batch=gb, seq_len=p.seq_len, base=p,
                                     assumptions=a), n)  # fmt: skip
        where = ("evaluated in process; --out DIR stores the sweep (resumable, --backend ray for "
                 "large ones)")  # fmt: skip
    else:
        res = _stored_search(m, sysm, gpus, gb, p, a, sweep, again)
        assert res.summary is not None
        where = f"stored in {res.summary.db_path} (run {res.summary.run.run_id})"
    if not res.plans:
        raise ConfigError(f"no plan of {m.name} fits {gpus}x {sysm.gpu.name} with global batch "
                          f"{gb}; add GPUs or lower --seq-len")  # fmt: skip
    t = Table(title=f"{m.name} on {gpus}x {sysm.gpu.name}: {len(res.plans)} plans fit, "
              f"{res.rejected} rejected; * = Pareto front (time, energy, memory)",
              title_justify="left")  # fmt: skip
    for col in ("tp", "pp", "dp", "mb", "ZeRO", "recomp", "step s", "MFU", "kJ", "GiB", "*"):
        t.add_column(col, justify="left" if col == "recomp" else "right")
    front = res.front_plans()
    shown = front[:limit]
    for e in shown:
        q = e["plan"]
        t.add_row(str(q["tp"]), str(q["pp"]), str(q["dp"]), str(q["micro_batch"]), str(q["zero"]),
                  q["recompute"], f"{e['step_time_s']:.3g}", f"{e['mfu']:.1%}",
                  f"{e['energy']['total_j'] / 1e3:.4g}", f"{e['memory']['total'] / 2**30:.1f}",
                  "*")  # fmt: skip
    console.print(t)
    console.print(textwrap.fill(f"{len(front)} plans on the front ({len(shown)} shown, fastest "
                                f"first); {where}.", 80), highlight=False)  # fmt: skip
    _json(json_out, {"front": front, "rejected": res.reasons})


def _stored_search(m: Any, sysm: Any, gpus: int, gb: int, p: Any, a: Any,
                   sweep: _SweepOptions, again: list[str]) -> Any:  # fmt: skip
    """`--search --out DIR`: the sweep as a resumable job in DIR/results.sqlite, with `dse
    run`'s progress on stderr; Ctrl-C keeps finished plans and prints the resume command."""
    from contextlib import ExitStack

    from picojoule.cluster.sweep import OBJECTIVE, sweep_plans
    from picojoule.dse.errors import StoreError
    from picojoule.dse.progress import ProgressView
    from picojoule.dse.results import _APP_ID as RESULTS_APP_ID
    from picojoule.dse.results import DB_FILENAME
    from picojoule.fsio import OutputPathError, check_cache_path, prepare_out_dir

    try:  # before any evaluation: refuse a results file picojoule did not write (or a link)
        check_cache_path(sweep.out / DB_FILENAME, app_id=RESULTS_APP_ID,
                         kind="picojoule DSE results database", option="--out")  # fmt: skip
    except OutputPathError as e:
        raise StoreError(str(e)) from None
    with ExitStack() as stack:
        try:
            out_dir = stack.enter_context(prepare_out_dir(sweep.out, what="the plan search"))
        except OutputPathError as e:
            raise ConfigError(str(e)) from None
        progress = stack.enter_context(ProgressView(units={OBJECTIVE: (1.0, "s")}))
        try:
            res = sweep_plans(m, sysm, gpus, global_batch=gb, seq_len=p.seq_len, base=p,
                              assumptions=a, out=out_dir, backend=sweep.backend,
                              workers=sweep.workers, address=sweep.address, resume=sweep.resume,
                              progress=progress)  # fmt: skip
        except KeyboardInterrupt as e:  # SIGINT or SIGTERM: finished plans are committed
            progress.stop()
            _interrupted(e, out_dir / DB_FILENAME, again)
    s = res.summary
    console.print(f"{s.points} plans ({s.evaluated} evaluated now, {s.reused} reused, "
                  f"{s.failed} rejected) in {s.db_path}", highlight=False)  # fmt: skip
    return res


def _interrupted(e: KeyboardInterrupt, db: Path, again: list[str]) -> NoReturn:
    """Say what was kept and the command that resumes; exit 130 (SIGINT) or 143 (SIGTERM)."""
    import shlex

    from picojoule.dse.runner import RunInterrupted
    from picojoule.interrupt import exit_code

    kept = f"{e.summary.points} plans kept" if isinstance(e, RunInterrupted) else "stopped"
    Console(stderr=True).print(
        f"[yellow]interrupted[/]: {kept} in {db}; resume with: " + shlex.join(again),
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(exit_code(e))


def _resume_command(ctx: typer.Context) -> list[str]:
    """This `cluster plan` command line with `--resume`: every option given a value other
    than its default, as the command line parsed it."""
    args = ["picojoule", "cluster", "plan"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.param_type_name != "option" or param.name == "resume" or not param.opts:
            continue
        if value is None or value == param.default:
            continue
        if getattr(param, "is_flag", False):
            args.append(param.opts[0])
        else:
            args += [param.opts[0], str(value)]
    return [*args, "--resume"]


def _serve_tables(e: Any, sysm: Any) -> None:
    p = e.plan
    head = (f"{e.model} serving on {e.gpus}x {e.gpu} ({e.system}): {e.replicas} replica(s) of "
            f"tp {e.gpus // e.replicas}, batch {p.batch}, prompt {p.prompt}, decode {p.decode}, "
            f"weights {p.weight_bits:g}-bit, KV {p.kv_bits:g}-bit")  # fmt: skip
    console.print(textwrap.fill(head, 80), highlight=False)
    gib = 2**30
    rows = [("prefill (batch of prompts)", _t(e.prefill_s)),
            ("decode step (all sequences)", _t(e.decode_step_s)),
            ("of which TP all-reduce", f"{_t(e.decode_comm_s)} "
             f"({e.decode_comm_s / e.decode_step_s:.1%})"),
            ("all-reduce per token", f"{e.comm.calls:g} x {_size(e.comm.nbytes)} "
             f"{e.comm.algorithm}/{e.comm.protocol}" if e.comm.calls else "none (tp 1)"),
            ("decode tokens/s (all replicas)", f"{e.tokens_per_s:,.0f}"),
            ("decode J/token", f"{e.j_per_token:.4g}"),
            ("prefill J/token", f"{e.prefill_j_per_token:.4g}"),
            ("weights + KV per GPU", f"{e.memory.weights / gib:.1f} + "
             f"{e.memory.activations / gib:.1f} / {e.memory.capacity / gib:.0f} GiB")]  # fmt: skip
    console.print(_kv("Serving", rows))
    _energy_table("Energy per decode step", e.decode_energy, e.replicas * p.batch, sysm)


GENERATIONS = ("dgx-1-p100", "dgx-1-v100", "dgx-a100", "dgx-h100", "dgx-b200")


def explain_interconnect(model: str, gpus: int, seq_len: int, out: Console) -> None:
    """Link bandwidth per NVLink generation and the share of a data-parallel step (one sequence
    per GPU) its gradient all-reduce takes, without and with overlap."""
    from picojoule.cluster.collectives import cost
    from picojoule.cluster.models import load_model
    from picojoule.cluster.plan import Assumptions, ParallelPlan, plan_training
    from picojoule.cluster.topology import system

    m = load_model(model)
    a = Assumptions(check_memory=False)
    t = Table(title=f"NVLink generations: {m.name} ({m.params() / 1e9:.2f}B), {gpus} GPUs, data "
              f"parallel, 1 x {seq_len} tokens per GPU", title_justify="left")  # fmt: skip
    for col in ("GPU", "link", "GB/s", "TFLOPS", "busbw", "AR ms", "step ms", "AR %", "exp %"):
        t.add_column(col, justify="left" if col in ("GPU", "link") else "right")
    first = None
    for name in GENERATIONS:
        sysm = system(name)
        if gpus > sysm.gpus_per_node:
            raise ConfigError(f"--gpus {gpus}: give 2..{sysm.gpus_per_node} (one node)")
        base = ParallelPlan(micro_batch=1, global_batch=gpus, seq_len=seq_len, math_format="bf16")
        ar = cost("all_reduce", m.params() * 2, sysm.group(gpus, 1))
        no = plan_training(m, sysm, gpus, dataclasses.replace(base, overlap_grad_reduce=False), a)
        ov = plan_training(m, sysm, gpus, base, a)
        peak = ov.peak_flops / 1e12
        first = first or (sysm.scale_up.bandwidth_gbs, peak)
        t.add_row(sysm.gpu.name, sysm.scale_up.name, f"{sysm.scale_up.bandwidth_gbs:g}",
                  f"{peak:g}", f"{ar.busbw / 1e9:.0f}", f"{ar.time_s * 1e3:.3g}",
                  f"{no.step_time_s * 1e3:.4g}", f"{ar.time_s / no.step_time_s:.0%}",
                  f"{ov.dp_exposed_s / ov.step_time_s:.1%}")  # fmt: skip
    out.print(t)
    assert first is not None
    out.print(textwrap.fill(
        f"NVLink per GPU grew {sysm.scale_up.bandwidth_gbs / first[0]:.3g}x from P100 to B200 "
        f"(doubling about every generation) while the 16-bit peak grew {peak / first[1]:.3g}x: "
        "the gradient all-reduce (AR %, not overlapped) takes a growing share of the step; "
        "overlapping it with the backward pass (exp %: what stays exposed) and in-switch "
        "reduction (NVLS, H100 on) win part of it back. GB/s per direction; busbw as "
        "nccl-tests; peaks from the GPU table (fp16 on P100/V100).", 80),
        highlight=False,
    )  # fmt: skip


def _mount_calibrate() -> None:
    """`picojoule cluster calibrate`, from picojoule.cluster.calibrate when it is installed."""
    if importlib.util.find_spec("picojoule.cluster.calibrate") is None:
        return
    try:
        mod = importlib.import_module("picojoule.cluster.calibrate")
    except ImportError:  # a broken optional module must not take `cluster plan` down with it
        return
    command = getattr(mod, "calibrate_command", None)
    if command is not None:
        app.command("calibrate")(command)


_mount_calibrate()
