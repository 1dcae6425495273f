"""`picojoule cluster calibrate`: time this machine's collectives with torch.distributed and fit
the alpha-beta model's alpha (seconds per latency step) and beta (seconds per byte moved) per
collective, then say how well the fit predicts what it was not fitted on.

Public: `COLLECTIVES`, `BACKENDS`, `coefficients(op, n)`, `CalibrationConfig`, `log_sizes`,
`parse_bytes`, `check_config`, `calibrate`, `fit`, `predict`, `default_out`,
`calibrate_command` (a typer command: `app.command("calibrate")(calibrate_command)`).

Model: t = alpha * steps(op, n) + beta * bytes * factor(op, n), with steps and factor taken from
`picojoule.cluster.collectives.coefficients` (ring; pairwise all-to-all), so bandwidth = 1/beta
is what that model's `bandwidth` means. `bytes` follows its (nccl-tests') convention: the
reduced buffer (all_reduce), the full input of reduce_scatter, the full output of all_gather,
one rank's send buffer (all_to_all), the broadcast buffer.

How it measures: for each process count n, n worker processes (`python -c`, one rank each, one
intra-op thread) rendezvous on 127.0.0.1 at a port found by binding port 0, and time every
(collective, size) point still missing, one collective at a time: `warmup` calls per size (at
least one, each timed: the fastest sets `inner`), then `repeats` rounds, each timing every size
once - interleaved, so a burst of other work lands on all sizes alike, not on one point. A
sample is a barrier then `inner` back-to-back calls (`inner` makes a sample last >= ~10 ms, so
the barrier's release skew and a scheduler time slice do not swamp a small message), taken as
the slowest rank's time per call; a point's time is its median sample. Rank 0 reports each
collective's points on stdout as they land and the parent rewrites the JSON atomically at once,
so a killed calibration keeps every finished point and `--resume` measures only the rest.

Held out: every second size (from the second: interpolation, never extrapolation past the
measured range) at the fitted process counts, and every size at `holdout_procs`. Least squares
on relative residuals (times span four decades; plain least squares would fit only the largest
messages), with alpha, beta >= 0.

Lifetime: workers run in their own sessions (a terminal's Ctrl-C reaches the parent only), ignore
SIGINT, and die with the parent (PR_SET_PDEATHSIG, plus a thread that watches for re-parenting);
on Ctrl-C, SIGTERM or any failure the parent SIGKILLs their process groups before returning.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import typer

from picojoule.errors import ConfigError, PicojouleError, did_you_mean, suggest

__all__ = [
    "ALGORITHM",
    "BACKENDS",
    "COLLECTIVES",
    "SCHEMA",
    "CalibrationConfig",
    "WorkerError",
    "calibrate",
    "calibrate_command",
    "check_config",
    "coefficients",
    "default_out",
    "fit",
    "log_sizes",
    "parse_bytes",
    "predict",
]

SCHEMA = "picojoule.cluster.calibration/1"
COLLECTIVES = ("all_reduce", "reduce_scatter", "all_gather", "broadcast", "all_to_all")
BACKENDS = ("gloo", "nccl")
TARGET_REL_ERR = 0.15  # the bar for held-out prediction error
_GLOO_RANKS_PER_CORE = 4  # more ranks than this per core times the scheduler, not the network
_PORT_TRIES = 3  # a port found free can be taken before rank 0 binds it: try a new one
_SAMPLE_S = 1e-2  # a timed sample lasts at least this long (inner loop of small messages)
_MAX_INNER = 200
_INIT_TIMEOUT_S = 120.0  # rendezvous and any single collective (gloo's default is 30 min)
_LINE = "PJ-CAL "  # rank 0's stdout protocol prefix (libraries may print too)
_ERR = "PJ-CAL-ERROR "  # a worker's last stderr line when it fails


# --- the model ---------------------------------------------------------------------------------


# The algorithm whose coefficients model each collective: the ring (and, for all_to_all, one
# peer per step), as gloo runs them on one machine and as NCCL's ring does.
ALGORITHM = {
    "all_reduce": "ring",
    "reduce_scatter": "ring",
    "all_gather": "ring",
    "broadcast": "ring",
    "all_to_all": "pairwise",
}


def coefficients(op: str, n: int) -> tuple[float, float]:
    """(latency steps, bytes factor) of collective `op` on `n` ranks, from the cost model
    itself (`picojoule.cluster.collectives.coefficients`, algorithm `ALGORITHM[op]`), so the
    calibration fits exactly the form the model predicts with: ring all-reduce 2(n-1) steps and
    2(n-1)/n bytes; reduce-scatter, all-gather and pairwise all-to-all n-1 and (n-1)/n; ring
    (chain) broadcast n-1 and 1."""
    if op not in COLLECTIVES:
        raise ConfigError(f"unknown collective {op!r}{suggest(op, COLLECTIVES)}")
    from picojoule.cluster.collectives import coefficients as model

    c = model(op, ALGORITHM[op], 0, n)
    return float(c.latency_steps), float(c.bytes_factor)


def predict(alpha: float, beta: float, op: str, n: int, nbytes: float) -> float:
    """Seconds the alpha-beta model gives `op` over `n` ranks on a `nbytes` buffer."""
    steps, factor = coefficients(op, n)
    return alpha * steps + beta * nbytes * factor


# --- configuration -----------------------------------------------------------------------------

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3,
}  # fmt: skip


def parse_bytes(text: str | int, *, option: str = "size") -> int:
    """`4096`, `64KiB`, `1MB`, `16M` (decimal M, binary MiB) -> bytes."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _UNITS:
        raise ConfigError(f"{option} {text!r}: give a byte count such as 4096, 64KiB or 16MiB")
    return int(float(m.group(1)) * _UNITS[unit])


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def log_sizes(min_bytes: int, max_bytes: int, count: int) -> tuple[int, ...]:
    """`count` log-spaced sizes from `min_bytes` to `max_bytes`, multiples of 4 bytes (float32
    elements), ascending, no duplicates."""
    if count == 1:
        return (max(4, max_bytes // 4 * 4),)
    ratio = (max_bytes / min_bytes) ** (1.0 / (count - 1))
    out: list[int] = []
    for i in range(count):
        s = max(4, int(round(min_bytes * ratio**i / 4.0)) * 4)
        if not out or s > out[-1]:
            out.append(s)
    return tuple(out)


@dataclass(frozen=True)
class CalibrationConfig:
    """What to measure. `procs` are fitted on; `holdout_procs` only predicted."""

    backend: str = "gloo"
    procs: tuple[int, ...] = (2, 3)
    holdout_procs: tuple[int, ...] = (4,)
    sizes: tuple[int, ...] = field(default_factory=lambda: log_sizes(1024, 64 * 1024**2, 9))
    collectives: tuple[str, ...] = COLLECTIVES
    warmup: int = 2
    repeats: int = 7

    @property
    def all_procs(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.procs) | set(self.holdout_procs)))

    @property
    def fit_sizes(self) -> tuple[int, ...]:
        """Every second size from the first (both ends when the count is odd); all of them
        when there are fewer than 3."""
        return self.sizes if len(self.sizes) < 3 else self.sizes[::2]

    @property
    def holdout_sizes(self) -> tuple[int, ...]:
        return () if len(self.sizes) < 3 else self.sizes[1::2]

    def points(self) -> list[tuple[str, int, int]]:
        """Every (collective, processes, size) point, in measuring order."""
        return [(op, n, s) for n in self.all_procs for op in self.collectives for s in self.sizes]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_procs(backend: str) -> int:
    """The most ranks `backend` may run here: one per GPU (NCCL), a few per core (gloo)."""
    if backend == "nccl":
        import torch

        return torch.cuda.device_count()
    return max(4, _GLOO_RANKS_PER_CORE * _usable_cpus())


def torch_version() -> str:
    """The installed torch's version, without importing torch (seconds on a small machine)."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:  # a source build without metadata
        import torch

        return str(torch.__version__)


def check_backend(backend: str, procs: int = 2) -> None:
    """Refuse, before launching anything, a backend this machine cannot run (one line). gloo
    is in every torch build with torch.distributed; the workers check it (the parent does not
    import torch for it). NCCL needs one GPU per rank, checked here."""
    if backend not in BACKENDS:
        hint = did_you_mean(backend, BACKENDS)
        raise ConfigError(f"unknown --backend {backend!r}; give gloo (CPU, any machine) or "
                          f"nccl (NVIDIA GPUs){hint}")  # fmt: skip
    from importlib.util import find_spec

    if find_spec("torch") is None:
        raise ConfigError("calibrating needs torch (pip install torch)")
    if backend != "nccl":
        return
    import torch
    import torch.distributed as dist

    if not torch.cuda.is_available():
        raise ConfigError(f"--backend nccl needs NVIDIA GPUs, and torch {torch.__version__} "
                          "sees none here; use --backend gloo (CPU)")  # fmt: skip
    if not (dist.is_available() and dist.is_nccl_available()):
        raise ConfigError(f"this torch {torch.__version__} has no NCCL backend; use "
                          "--backend gloo or a CUDA build of torch")  # fmt: skip
    gpus = torch.cuda.device_count()
    if procs > gpus:
        raise ConfigError(f"--backend nccl runs one rank per GPU: {procs} processes need "
                          f"{procs} GPUs, this machine has {gpus}; give --procs and "
                          f"--holdout-procs at most {gpus}")  # fmt: skip


def check_config(cfg: CalibrationConfig) -> None:
    """Every option checked before any process starts; one `ConfigError` line each."""
    if not cfg.procs:
        raise ConfigError("--procs is empty; give the process counts to fit on, e.g. 2,3")
    if cfg.backend == "gloo":
        cap = max_procs("gloo")
        for n in cfg.all_procs:
            if n > cap:
                raise ConfigError(
                    f"{n} processes on {_usable_cpus()} CPU cores would time the scheduler, "
                    f"not the collectives; give at most {cap} (--procs, --holdout-procs)"
                )
    for n in cfg.all_procs:
        if n < 2:
            raise ConfigError(
                f"{n} process(es): a collective needs at least 2 ranks to move anything; give "
                "counts >= 2 in --procs and --holdout-procs"
            )
    both = sorted(set(cfg.procs) & set(cfg.holdout_procs))
    if both:
        raise ConfigError(f"process count(s) {','.join(map(str, both))} are in both --procs "
                          "and --holdout-procs; a count is either fitted or held out")  # fmt: skip
    if not cfg.sizes:
        raise ConfigError("no message sizes; give --sizes 1 or more")
    if min(cfg.sizes) <= 0:
        raise ConfigError(f"message size {min(cfg.sizes)} B: sizes must be positive (e.g. "
                          "--min-bytes 1KiB)")  # fmt: skip
    if not cfg.collectives:
        raise ConfigError(f"--collectives is empty; give some of {','.join(COLLECTIVES)}")
    for op in cfg.collectives:
        if op not in COLLECTIVES:
            known = ",".join(COLLECTIVES)
            raise ConfigError(f"unknown collective {op!r} in --collectives; known: {known}"
                              f"{did_you_mean(op, COLLECTIVES)}")  # fmt: skip
    if cfg.warmup < 0:
        raise ConfigError(f"--warmup {cfg.warmup}: give 0 or more calls (1 is made anyway)")
    if cfg.repeats < 1:
        raise ConfigError(f"--repeats {cfg.repeats}: give 1 or more timed samples")
    if len(cfg.procs) == 1 and len(cfg.fit_sizes) < 2:
        raise ConfigError("one fitted process count and one fitted size cannot separate alpha "
                          "from beta; give --sizes 2 or more, or two --procs")  # fmt: skip
    check_backend(cfg.backend, max(cfg.all_procs))


def default_out(backend: str) -> Path:
    from picojoule.paths import cache_dir

    return cache_dir() / "cluster" / f"calibration-{backend}.json"


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} {text!r}: give whole numbers, comma separated (2,3)") from None


# --- machine and document ----------------------------------------------------------------------


def machine_info(backend: str) -> dict[str, Any]:
    cpu_model = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "cpu_model": cpu_model or platform.processor() or None,
        "torch": torch_version(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
        "backend": backend,
        "gpus": [],
    }
    from picojoule.cli import busy_cores

    info["busy_cores_at_start"] = busy_cores()
    if backend == "nccl":
        import torch

        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda"] = torch.version.cuda
    return info


def _new_doc(cfg: CalibrationConfig, machine: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "complete": False,
        "machine": machine,
        "config": _config_dict(cfg),
        "model": _model_dict(cfg),
        "measurements": [],
        "fit": {},
        "notes": [],
    }


def _config_dict(cfg: CalibrationConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["fit_sizes"] = list(cfg.fit_sizes)
    d["holdout_sizes"] = list(cfg.holdout_sizes)
    return d


def _model_dict(cfg: CalibrationConfig) -> dict[str, Any]:
    return {
        "form": "t = alpha * steps(op, n) + beta * bytes * factor(op, n); bandwidth = 1/beta",
        "algorithms": {op: ALGORITHM[op] for op in cfg.collectives},
        "coefficients_from": "picojoule.cluster.collectives.coefficients",
        "coefficients": {
            op: {
                str(n): dict(zip(("steps", "factor"), coefficients(op, n), strict=True))
                for n in cfg.all_procs
            }
            for op in cfg.collectives
        },  # fmt: skip
        "target_rel_err": TARGET_REL_ERR,
    }


def _load_for_resume(path: Path, cfg: CalibrationConfig, machine: dict[str, Any]) -> dict:
    """The partial (or finished) calibration at `path`, checked to be one this machine and
    backend may continue."""
    fix = "run without --resume to start over (it replaces the file), or pass another --out"
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"--resume: cannot read {path} as a calibration ({e}); {fix}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"--resume: {path} is not a picojoule calibration; {fix}")
    if not isinstance(doc.get("measurements"), list):
        raise ConfigError(f"--resume: {path} has no measurement list; {fix}")
    old = doc.get("machine") or {}
    for key in ("backend", "torch", "cpu_count", "cpu_model", "gpus"):
        if old.get(key) != machine.get(key):
            raise ConfigError(f"--resume: {path} was measured with {key} {old.get(key)!r}, "
                              f"this run has {machine.get(key)!r}; {fix}")  # fmt: skip
    doc["config"] = _config_dict(cfg)
    doc["model"] = _model_dict(cfg)
    doc["complete"] = False
    doc.setdefault("notes", [])
    return doc


# --- fitting -----------------------------------------------------------------------------------


def _nnls2(rows: Sequence[tuple[float, float, float]]) -> tuple[float, float]:
    """alpha, beta >= 0 minimising sum(((alpha*s + beta*b) - t) / t)^2 over (s, b, t) rows."""
    import numpy as np

    a = np.array([[s / t, b / t] for s, b, t in rows], dtype=float)
    y = np.ones(len(rows))
    cands: list[tuple[float, float]] = []
    full, *_ = np.linalg.lstsq(a, y, rcond=None)
    if full[0] >= 0 and full[1] >= 0:
        cands.append((float(full[0]), float(full[1])))
    for j in (0, 1):  # one coefficient at zero, the other fitted alone (clipped at zero)
        col = a[:, j]
        v = max(0.0, float(col @ y / (col @ col))) if col @ col > 0 else 0.0
        cands.append((v, 0.0) if j == 0 else (0.0, v))
    return min(cands, key=lambda c: float(np.sum((a @ np.array(c) - y) ** 2)))


def _err_stats(errs: list[float]) -> dict[str, Any]:
    if not errs:
        return {"points": 0, "median_rel_err": None, "max_rel_err": None}
    s = sorted(errs)
    mid = len(s) // 2
    med = s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])
    return {"points": len(s), "median_rel_err": med, "max_rel_err": s[-1]}


def fit(doc: dict[str, Any], cfg: CalibrationConfig) -> dict[str, dict[str, Any]]:
    """alpha and beta per collective from the measurements of `cfg`'s grid, with relative
    prediction errors on the fitted points and on both held-out sets. Marks each measurement
    with its `role` and `predicted_s`."""
    fit_sizes, hold_sizes = set(cfg.fit_sizes), set(cfg.holdout_sizes)
    out: dict[str, dict[str, Any]] = {}
    for op in cfg.collectives:
        pts = [m for m in doc["measurements"] if m["op"] == op and m["size"] in cfg.sizes
               and m["n"] in cfg.all_procs and m.get("median_s")]  # fmt: skip
        for m in pts:
            if m["n"] in cfg.holdout_procs:
                m["role"] = "heldout_procs"
            elif m["size"] in hold_sizes:
                m["role"] = "heldout_size"
            else:
                m["role"] = "fit" if m["size"] in fit_sizes else "unused"
        rows = [(*coefficients(op, m["n"]), m) for m in pts if m["role"] == "fit"]
        if not rows or (len({r[0] for r in rows}) < 2 and len({m["bytes"] for *_, m in rows}) < 2):
            out[op] = {"alpha_s": None, "beta_s_per_byte": None, "bandwidth_bytes_per_s": None,
                       "note": "too few measured points to fit"}  # fmt: skip
            continue
        alpha, beta = _nnls2([(s, m["bytes"] * f, m["median_s"]) for s, f, m in rows])
        errs: dict[str, list[float]] = {"fit": [], "heldout_size": [], "heldout_procs": []}
        by_n: dict[str, list[float]] = {}
        for m in pts:
            m["predicted_s"] = predict(alpha, beta, op, m["n"], m["bytes"])
            e = abs(m["predicted_s"] - m["median_s"]) / m["median_s"]
            errs.setdefault(m["role"], []).append(e)
            if m["role"] == "heldout_procs":
                by_n.setdefault(str(m["n"]), []).append(e)
        held = errs["heldout_size"] + errs["heldout_procs"]
        worst = max(held) if held else None
        out[op] = {
            "alpha_s": alpha,
            "beta_s_per_byte": beta,
            "bandwidth_bytes_per_s": (1.0 / beta) if beta > 0 else None,
            "fit": _err_stats(errs["fit"]),
            "heldout_sizes": _err_stats(errs["heldout_size"]),
            "heldout_procs": {**_err_stats(errs["heldout_procs"]),
                              "by_n": {k: _err_stats(v) for k, v in sorted(by_n.items())}},
            "heldout_max_rel_err": worst,
            "within_target": None if worst is None else worst <= TARGET_REL_ERR,
        }  # fmt: skip
    return out


def _notes(cfg: CalibrationConfig, machine: dict[str, Any]) -> list[str]:
    notes = []
    cores = machine["usable_cpus"]
    over = [n for n in cfg.all_procs if n > cores]
    if cfg.backend == "gloo" and over:
        notes.append(
            f"cores < ranks at n={','.join(map(str, over))} ({cores} usable cores): ranks "
            "share cores, so those timings include the scheduler's time slices, which the "
            "alpha-beta model does not describe"
        )
    busy = machine.get("busy_cores_at_start")
    if busy is not None and busy >= 0.5:
        notes.append(
            f"other work kept ~{busy:.1f} of {machine['cpu_count']} cores busy when the "
            "calibration started: the timings include waiting for it (calibrate on an idle "
            "machine to model the hardware alone)"
        )
    if cfg.backend == "gloo":
        notes.append("gloo on one machine moves bytes through loopback TCP: beta is this "
                     "machine's memory/TCP-stack bandwidth, not a network's")  # fmt: skip
    return notes


# --- the worker (one rank) ---------------------------------------------------------------------


def _elements(size: int, n: int) -> int:
    """float32 elements for a `size`-byte buffer split evenly over `n` ranks."""
    return max(n, (size // 4) // n * n)


def _op(op: str, elems: int, n: int, device: Any) -> Callable[[], Any]:
    import torch
    import torch.distributed as dist

    def z(k: int) -> Any:
        return torch.zeros(k, dtype=torch.float32, device=device)  # zeros: sums never overflow

    if op == "all_reduce":
        x = z(elems)
        return lambda: dist.all_reduce(x)
    if op == "reduce_scatter":
        inp, out = z(elems), z(elems // n)
        rs = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        return lambda: rs(out, inp)
    if op == "all_gather":
        inp, out = z(elems // n), z(elems)
        ag = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: ag(out, inp)
    if op == "broadcast":
        x = z(elems)
        return lambda: dist.broadcast(x, src=0)
    if op == "all_to_all":
        inp, out = z(elems), z(elems)
        return lambda: dist.all_to_all_single(out, inp)
    raise ValueError(op)


def _time_group(fns: list[Callable[[], Any]], sync: Callable[[], None], warmup: int,
                repeats: int, device: Any) -> tuple[list[list[float]], list[int]]:  # fmt: skip
    """Samples (the slowest rank's seconds per call) and inner-loop counts of one collective
    at several sizes. The repeats are interleaved - round r times every size once - so a burst
    of other work on the machine lands on all sizes alike instead of on one point."""
    import torch
    import torch.distributed as dist

    est = []
    for fn in fns:
        calls = []  # warmup calls, timed one by one: the fastest sizes the inner loop (one
        for _ in range(max(1, warmup)):  # slow call must not leave a small message at 1)
            t0 = time.perf_counter()
            fn()
            sync()
            calls.append(time.perf_counter() - t0)
        est.append(min(calls))
    agreed = torch.tensor(est, dtype=torch.float64, device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)  # every rank must run the same inner counts
    inners = [int(min(_MAX_INNER, max(1, math.ceil(_SAMPLE_S / max(float(e), 1e-9)))))
              for e in agreed.tolist()]  # fmt: skip
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, inner, out in zip(fns, inners, samples, strict=True):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            out.append((time.perf_counter() - t0) / inner)
    t = torch.tensor(samples, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [[float(v) for v in row] for row in t.tolist()], inners


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(_LINE + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _worker(spec: dict[str, Any], rank: int) -> None:
    import warnings
    from datetime import timedelta

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    n, backend = spec["n"], spec["backend"]
    if not dist.is_available() or (backend == "gloo" and not dist.is_gloo_available()):
        raise RuntimeError(
            f"this torch {torch.__version__} has no {backend} backend (torch.distributed built "
            "without it); install a build with it"
        )
    device: Any = "cpu"
    sync: Callable[[], None] = lambda: None  # noqa: E731
    if backend == "nccl":
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
        sync = torch.cuda.synchronize
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{spec['port']}", rank=rank,
                            world_size=n, timeout=timedelta(seconds=spec["timeout_s"]))  # fmt: skip
    try:
        if rank == 0:
            _emit({"ready": True})
        groups: dict[str, list[int]] = {}
        for op, size in spec["points"]:
            groups.setdefault(op, []).append(size)
        for op, sizes in groups.items():
            elems = [_elements(size, n) for size in sizes]
            fns = [_op(op, e, n, device) for e in elems]
            rows, inners = _time_group(fns, sync, spec["warmup"], spec["repeats"], device)
            del fns
            if rank != 0:
                continue
            for size, e, samples, inner in zip(sizes, elems, rows, inners, strict=True):
                s = sorted(samples)
                mid = len(s) // 2
                med = s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])
                _emit({"op": op, "n": n, "size": size, "bytes": e * 4, "median_s": med,
                       "min_s": s[0], "samples_s": samples, "inner": inner,
                       "warmup": spec["warmup"], "repeats": spec["repeats"]})  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _die_with_parent(parent: int) -> None:
    """End this worker when its parent (the calibration) dies, however it dies: the kernel's
    `PR_SET_PDEATHSIG` (`picojoule.procs.die_with_parent`), plus a daemon thread that exits
    once this process is re-parented (portable)."""
    from picojoule.procs import die_with_parent

    die_with_parent()
    if os.getppid() != parent:  # it died before prctl took hold
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        os._exit(1)

    threading.Thread(target=watch, name="picojoule-parent-watch", daemon=True).start()


def _worker_main() -> None:
    """Entry point of a worker process: `python -c ... SPEC_JSON RANK`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    spec = json.loads(sys.argv[1])
    rank = int(sys.argv[2])
    _die_with_parent(int(spec["parent"]))
    try:
        _worker(spec, rank)
    except BaseException as e:  # one line the parent can show
        msg = " ".join(str(e).split()) or type(e).__name__
        sys.stderr.write(f"\n{_ERR}{type(e).__name__}: {msg[:600]}\n")
        sys.stderr.flush()
        os._exit(3)
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (gloo threads); the group is already destroyed


# --- launching ---------------------------------------------------------------------------------

_BOOT = "from picojoule.cluster.calibrate import _worker_main; _worker_main()"


class WorkerError(PicojouleError):
    """A calibration worker could not start or failed (one line: which rank, why)."""


class _PortTaken(Exception):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _error_line(f: IO[bytes], returncode: int | None) -> str:
    f.seek(0)
    text = f.read().decode(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(_ERR):
            return ln[len(_ERR) :]
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-returncode).name}"
    return lines[-1][:600] if lines else f"exited with status {returncode} and no message"


def _kill(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGKILL each worker's process group (its own session), then reap it."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5.0)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # the picojoule this process runs
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    if sys.platform.startswith("linux"):  # loopback by name: a hostname that resolves to
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # nothing (or afar) cannot break gloo
    env.pop("MASTER_ADDR", None)
    env.pop("MASTER_PORT", None)
    return env


def _run_group(spec: dict[str, Any], on_line: Callable[[dict[str, Any]], None]) -> None:
    """Run spec["n"] workers to completion, passing rank 0's lines to `on_line`. Workers are
    killed on return, whatever the reason."""
    n = spec["n"]
    spec = {**spec, "parent": os.getpid()}
    arg = json.dumps(spec)
    env = _worker_env()
    procs: list[subprocess.Popen[bytes]] = []
    lines: queue.Queue[str | None] = queue.Queue()
    with contextlib.ExitStack() as stack:
        errs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(n)]
        try:
            _watch(procs, errs, spec, arg, env, lines, on_line)
        finally:
            _kill(procs)
            for p in procs:
                if p.stdout is not None:
                    p.stdout.close()


def _watch(
    procs: list[subprocess.Popen[bytes]], errs: list[IO[bytes]], spec: dict[str, Any], arg: str,
    env: dict[str, str], lines: queue.Queue[str | None],
    on_line: Callable[[dict[str, Any]], None],
) -> None:  # fmt: skip
    """Start the workers into `procs` and follow them until all exit 0 (or one fails)."""
    n = spec["n"]
    for rank in range(n):
        procs.append(subprocess.Popen(
            [sys.executable, "-c", _BOOT, arg, str(rank)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL,
            stderr=errs[rank], env=env, start_new_session=True,
        ))  # fmt: skip

    def read(stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode(errors="replace"))
        lines.put(None)

    assert procs[0].stdout is not None
    threading.Thread(target=read, args=(procs[0].stdout,), daemon=True).start()
    eof = False
    while True:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            line = ""
        if line is None:
            eof = True
        elif line.startswith(_LINE):
            on_line(json.loads(line[len(_LINE) :]))
            continue  # drain what is there before checking the processes
        failed = [(r, p) for r, p in enumerate(procs) if p.poll() not in (None, 0)]
        if failed:
            time.sleep(0.3)  # let the failure's peers notice too, then report the lowest rank
            failed = [(r, p) for r, p in enumerate(procs) if p.poll() not in (None, 0)]
            rank, proc = failed[0]
            why = _error_line(errs[rank], proc.returncode)
            if re.search(r"EADDRINUSE|address already in use", why, re.IGNORECASE):
                raise _PortTaken(why)
            raise WorkerError(f"calibration worker rank {rank} of {n} ({spec['backend']}) "
                              f"failed: {why}")  # fmt: skip
        if eof and all(p.poll() == 0 for p in procs):
            return


def _launch(spec: dict[str, Any], on_line: Callable[[dict[str, Any]], None]) -> None:
    last = ""
    for _ in range(_PORT_TRIES):
        try:
            _run_group({**spec, "port": _free_port()}, on_line)
            return
        except _PortTaken as e:
            last = str(e)
    raise WorkerError(f"rank 0 could not listen for the rendezvous ({_PORT_TRIES} free "
                      f"port(s) tried, each taken before it bound): {last}")  # fmt: skip


# --- the calibration ---------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]  # (description, done, total)


def calibrate(
    cfg: CalibrationConfig, out: Path, *, resume: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Measure every point of `cfg` not yet in `out` (with `resume`), writing `out` after each
    point, then fit; returns the final document (also written to `out`)."""
    from picojoule.fsio import check_out_file, write_json

    check_config(cfg)
    out = Path(out)
    if not out.parent.exists() and out == default_out(cfg.backend):
        out.parent.mkdir(parents=True, exist_ok=True)  # the cache dir: ours to create
    check_out_file(out, option="--out")
    machine = machine_info(cfg.backend)
    resuming = resume and out.exists()
    doc = _load_for_resume(out, cfg, machine) if resuming else _new_doc(cfg, machine)
    doc["notes"] = _notes(cfg, machine)
    have = {(m["op"], m["n"], m["size"]) for m in doc["measurements"]}
    todo = [p for p in cfg.points() if p not in have]
    total, done = len(cfg.points()), len(cfg.points()) - len(todo)
    write_json(out, doc, indent=1)
    run_id = uuid.uuid4().hex[:12]
    state = {"done": done}
    for n in cfg.all_procs:
        pts = [(op, s) for op, m, s in todo if m == n]
        if not pts:
            continue
        if progress:
            progress(f"n={n}: starting {n} processes", state["done"], total)

        def on_line(msg: dict[str, Any], n: int = n) -> None:
            if msg.get("ready"):
                if progress:
                    progress(f"n={n}: measuring", state["done"], total)
                return
            msg.update(run=run_id, measured_at=time.time())
            doc["measurements"].append(msg)
            write_json(out, doc, indent=1)
            state["done"] += 1
            if progress:
                progress(f"n={n} {msg['op']} {fmt_bytes(msg['size'])}", state["done"], total)

        spec = {"n": n, "backend": cfg.backend, "points": pts, "warmup": cfg.warmup,
                "repeats": cfg.repeats, "timeout_s": _INIT_TIMEOUT_S}  # fmt: skip
        _launch(spec, on_line)
    doc["fit"] = fit(doc, cfg)
    doc["complete"] = True
    write_json(out, doc, indent=1)
    return doc


# --- the command -------------------------------------------------------------------------------


def fit_table(doc: dict[str, Any]) -> Any:
    from rich.table import Table

    cfg = doc["config"]
    hold = ",".join(map(str, cfg["holdout_procs"])) or "-"
    fitted = ",".join(map(str, cfg["procs"]))
    t = Table(title=f"alpha-beta fit, {doc['machine']['backend']} on "
                    f"{doc['machine']['usable_cpus']} cores (fit n={fitted}, held out n={hold})",
              title_justify="left")  # fmt: skip
    for c in (
        "collective",
        "alpha us",
        "beta ns/B",
        "GB/s",
        "fit err med",
        "held-out sizes med/max",
        "held-out n med/max",
        f"<= {TARGET_REL_ERR:.0%}",
    ):
        t.add_column(c, justify="left" if c == "collective" else "right")  # fmt: skip

    def pct(d: dict[str, Any] | None, key: str) -> str:
        v = None if d is None else d.get(key)
        return "-" if v is None else f"{100 * v:.1f}%"

    def both(d: dict[str, Any]) -> str:
        return f"{pct(d, 'median_rel_err')} / {pct(d, 'max_rel_err')}"

    for op, f in doc["fit"].items():
        if f.get("alpha_s") is None:
            t.add_row(op, "-", "-", "-", "-", "-", "-", f.get("note", "-"))
            continue
        bw = f["bandwidth_bytes_per_s"]
        t.add_row(
            op,
            f"{f['alpha_s'] * 1e6:.2f}",
            f"{f['beta_s_per_byte'] * 1e9:.4f}",
            "-" if bw is None else f"{bw / 1e9:.2f}",
            pct(f["fit"], "median_rel_err"),
            both(f["heldout_sizes"]),
            both(f["heldout_procs"]),
            {True: "yes", False: "no", None: "-"}[f["within_target"]],
        )  # fmt: skip
    return t


def calibrate_command(
    backend: str = typer.Option("gloo", help="gloo (CPU, any machine) | nccl (one rank per GPU)"),
    procs: str = typer.Option("2,3", help="process counts the fit uses, comma separated"),
    holdout_procs: str = typer.Option(
        "4", help="process counts measured only to test the fit's predictions ('' for none)"
    ),
    min_bytes: str = typer.Option("1KiB", help="smallest message (4096, 64KiB, 16MiB, ...)"),
    max_bytes: str = typer.Option("64MiB", help="largest message; bounds time and memory"),
    sizes: int = typer.Option(
        9,
        help="log-spaced sizes from --min-bytes to --max-bytes; every second one (from the "
        "second) is held out of the fit",
    ),
    collectives: str = typer.Option(",".join(COLLECTIVES), help="collectives to time"),
    warmup: int = typer.Option(
        2, help="calls before each point's samples (at least 1; the fastest sizes the inner loop)"
    ),
    repeats: int = typer.Option(7, help="timed samples per point; the median counts"),
    out: Path = typer.Option(
        None, help="calibration JSON; default: <user cache>/cluster/calibration-BACKEND.json"
    ),
    resume: bool = typer.Option(
        False, "--resume", help="keep the points --out already holds, measure only the rest"
    ),
) -> None:
    """Time this machine's collectives over torch.distributed and fit alpha (latency) and beta
    (1/bandwidth) per collective; report the error on held-out sizes and process counts."""
    import sys as _sys

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from picojoule.interrupt import exit_code

    console = Console(width=None if _sys.stdout.isatty() else 130)
    lo = parse_bytes(min_bytes, option="--min-bytes")
    hi = parse_bytes(max_bytes, option="--max-bytes")
    if lo <= 0 or hi <= 0:
        raise ConfigError(f"--min-bytes {min_bytes} / --max-bytes {max_bytes}: sizes must be "
                          "positive (e.g. 1KiB and 64MiB)")  # fmt: skip
    if lo > hi:
        raise ConfigError(f"--min-bytes {min_bytes} is above --max-bytes {max_bytes}")
    if sizes < 1:
        raise ConfigError(f"--sizes {sizes}: give 1 or more message sizes")
    cfg = CalibrationConfig(
        backend=backend.strip().lower(),
        procs=_ints(procs, "--procs"),
        holdout_procs=_ints(holdout_procs, "--holdout-procs"),
        sizes=log_sizes(lo, hi, sizes),
        collectives=tuple(c.strip() for c in collectives.split(",") if c.strip()),
        warmup=warmup,
        repeats=repeats,
    )
    check_config(cfg)
    path = out or default_out(cfg.backend)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed}/{task.total} points"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:  # fmt: skip
        job = bar.add_task("calibrating", total=len(cfg.points()))
        last_n = [""]

        def progress(desc: str, done: int, total: int) -> None:
            bar.update(job, completed=done, total=total, description=desc)
            head = desc.split(":")[0].split(" ")[0]
            if not console.is_terminal and head != last_n[0]:  # a log: one line per n
                last_n[0] = head
                console.print(f"[{done}/{total} points] {desc}", highlight=False)

        try:
            doc = calibrate(cfg, path, resume=resume, progress=progress)
        except KeyboardInterrupt as e:
            console.print(f"[yellow]interrupted[/]: the points measured so far are in {path}; "
                          "run the same command with --resume to measure only the rest",
                          highlight=False)  # fmt: skip
            raise typer.Exit(exit_code(e)) from None
    console.print(fit_table(doc))
    for note in doc["notes"]:
        console.print(f"note: {note}", highlight=False)
    console.print(f"calibration: {path}", highlight=False)
