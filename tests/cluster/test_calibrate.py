"""`picojoule cluster calibrate`: the alpha-beta fit of real gloo collectives on 2-3 local
processes, its strict JSON, one-line errors, and a calibration that is interrupted and resumed
without measuring a point twice.

One module-scoped calibration does the expensive part (each launch of n ranks costs seconds of
`import torch` per rank): run 1, a subprocess, gets SIGINT (Ctrl-C) once its first points have
landed; run 2 resumes it to the end. The shape tests read run 2's JSON. Worker lifetimes
(SIGKILL of the calibration, workers that cannot start) are tested with torch-free stand-in
workers, in milliseconds. Processes are tagged through their environment, so one left behind
is found through /proc even after it was re-parented.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from picojoule.cluster import calibrate as cal
from picojoule.errors import ConfigError
from picojoule.procs import processes_with_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not Path("/proc/self/environ").exists(),
    reason="needs Linux /proc (process environments) and POSIX signals",
)

SRC = Path(cal.__file__).resolve().parents[2]
TAG_VAR = "PJ_TEST_CALIBRATE_TAG"
STOP_S = 5.0  # a signalled run (and its workers) must be gone within this
START_S = 60.0  # longest wait for a run's first point (imports torch in each rank)
# Small enough to be quick, wide enough (4 KiB .. 16 MiB) that bytes, not noise, set the slope.
SIZES = cal.log_sizes(4 * 1024, 16 * 1024**2, 5)  # 4K 32K 256K 2M 16M; 32K and 2M held out
CFG = cal.CalibrationConfig(procs=(2,), holdout_procs=(3,), sizes=SIZES, warmup=1, repeats=5)
ARGS = ["--procs", "2", "--holdout-procs", "3", "--min-bytes", "4KiB", "--max-bytes", "16MiB",
        "--sizes", "5", "--warmup", "1", "--repeats", "5"]  # fmt: skip  # == CFG

TOO_MANY = cal.max_procs("gloo") + 1  # 4 per usable core, at least 4

RUNNER = """
import sys, typer
from picojoule.cluster.calibrate import calibrate_command
from picojoule.errors import PicojouleError
from picojoule.interrupt import sigterm_as_interrupt
app = typer.Typer(pretty_exceptions_enable=False)
app.command()(calibrate_command)
with sigterm_as_interrupt():
    try:
        app()
    except PicojouleError as e:
        print(f"error: {e}")
        sys.exit(2)
"""


# --- processes ---------------------------------------------------------------------------------


def _tagged(tag: str) -> dict[int, str]:
    """Live processes whose environment holds the tag: pid -> command."""
    return {pid: cmd[:120] for pid, (_, cmd) in processes_with_env(TAG_VAR, tag).items()}


def _wait_gone(tag: str, timeout: float = STOP_S) -> dict[int, str]:
    end = time.monotonic() + timeout
    while (left := _tagged(tag)) and time.monotonic() < end:
        time.sleep(0.05)
    return left


def _start(out: Path, tag: str, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC), COLUMNS="200")
    env[TAG_VAR] = tag
    return subprocess.Popen(
        [sys.executable, "-c", RUNNER, *ARGS, "--out", str(out), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _points(out: Path) -> list[dict[str, Any]]:
    try:
        return json.loads(out.read_text())["measurements"]
    except (OSError, ValueError, KeyError):
        return []  # not written yet


def _wait_points(proc: subprocess.Popen[str], out: Path, more_than: int) -> int:
    end = time.monotonic() + START_S
    while time.monotonic() < end:
        if len(pts := _points(out)) > more_than:
            return len(pts)
        if proc.poll() is not None:
            pytest.fail(f"run ended (status {proc.returncode}) before measuring: "
                        f"{proc.communicate()[0][-2000:]}")  # fmt: skip
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no new point within {START_S:.0f} s")


def _strict(text: str) -> Any:
    def refuse(token: str) -> None:
        raise ValueError(f"non-JSON token {token}")

    return json.loads(text, parse_constant=refuse)


@dataclass
class Lifecycle:
    out: Path
    interrupted_points: list[dict[str, Any]]  # what run 1 left when Ctrl-C stopped it
    interrupted_complete: bool
    interrupt_status: int
    interrupt_s: float  # SIGINT to exit
    interrupt_output: str
    interrupt_strays: dict[int, str]  # its workers still alive STOP_S after it exited
    final: dict[str, Any]
    final_text: str


@pytest.fixture(scope="module")
def life(tmp_path_factory: pytest.TempPathFactory) -> Lifecycle:
    out = tmp_path_factory.mktemp("calibrate") / "cal.json"
    # run 1: SIGINT (Ctrl-C) once points have landed
    tag = uuid.uuid4().hex
    proc = _start(out, tag)
    _wait_points(proc, out, 0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    stop_s = time.monotonic() - t0
    strays = _wait_gone(tag)
    for pid in strays:  # do not leave them running for the rest of the suite
        os.kill(pid, signal.SIGKILL)
    doc1 = json.loads(out.read_text())
    # run 2: --resume to the end, in this process
    final = cal.calibrate(CFG, out, resume=True)
    return Lifecycle(
        out=out, interrupted_points=doc1["measurements"], interrupted_complete=doc1["complete"],
        interrupt_status=proc.returncode, interrupt_s=stop_s, interrupt_output=output,
        interrupt_strays=strays, final=final, final_text=out.read_text(),
    )  # fmt: skip


# --- the model's coefficients (no processes) ---------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4, 8])
def test_coefficients_are_the_cost_models_ring_forms(n: int) -> None:
    from picojoule.cluster import collectives

    assert cal.coefficients("all_reduce", n) == pytest.approx((2 * (n - 1), 2 * (n - 1) / n))
    for op in ("reduce_scatter", "all_gather", "all_to_all"):
        assert cal.coefficients(op, n) == pytest.approx((n - 1, (n - 1) / n))
    assert cal.coefficients("broadcast", n) == pytest.approx((n - 1, 1))  # a pipelined chain
    for op in cal.COLLECTIVES:  # the very form the cost model predicts with
        c = collectives.coefficients(op, cal.ALGORITHM[op], 1 << 20, n)
        assert cal.coefficients(op, n) == (c.latency_steps, c.bytes_factor)
    with pytest.raises(ConfigError, match="all_gather"):
        cal.coefficients("allgather", n)
    big = 1 << 30
    assert cal.predict(2e-6, 1e-9, "all_reduce", n, big) == pytest.approx(
        2e-6 * 2 * (n - 1) + 1e-9 * big * 2 * (n - 1) / n
    )


def test_fit_recovers_known_alpha_beta_and_scores_held_out_points() -> None:
    """Synthetic times from alpha=30 us, beta=0.5 ns/B (+-3% alternating): the fit must find
    them, mark each point's role, and score the held-out ones near the noise."""
    cfg = replace(CFG, procs=(2, 3), holdout_procs=(4,))
    doc: dict[str, Any] = {"measurements": []}
    for i, (op, n, size) in enumerate(cfg.points()):
        t = cal.predict(30e-6, 0.5e-9, op, n, size) * (1.03 if i % 2 else 0.97)
        doc["measurements"].append({"op": op, "n": n, "size": size, "bytes": size, "median_s": t})
    res = cal.fit(doc, cfg)
    assert set(res) == set(cal.COLLECTIVES)
    for f in res.values():
        assert f["alpha_s"] == pytest.approx(30e-6, rel=0.06)
        assert f["beta_s_per_byte"] == pytest.approx(0.5e-9, rel=0.06)
        assert f["heldout_sizes"]["points"] == 2 * len(cfg.holdout_sizes)
        assert f["heldout_procs"]["points"] == len(cfg.sizes)
        assert f["heldout_max_rel_err"] < 0.08
        assert f["within_target"] is True
    roles = {(m["n"], m["size"]): m["role"] for m in doc["measurements"]}
    assert roles[(4, SIZES[0])] == "heldout_procs"
    assert roles[(2, SIZES[1])] == "heldout_size"
    assert roles[(3, SIZES[0])] == "fit"


def test_fit_keeps_alpha_and_beta_non_negative() -> None:
    """Times that fall with size would give a negative beta to plain least squares."""
    cfg = replace(CFG, procs=(2,), holdout_procs=(), collectives=("all_reduce",))
    doc = {"measurements": [{"op": "all_reduce", "n": 2, "size": s, "bytes": s,
                             "median_s": 1e-3 / (1 + i)} for i, s in enumerate(SIZES)]}  # fmt: skip
    f = cal.fit(doc, cfg)["all_reduce"]
    assert f["alpha_s"] > 0
    assert f["beta_s_per_byte"] == 0
    assert f["bandwidth_bytes_per_s"] is None


# --- one-line errors before anything starts ----------------------------------------------------


def _invoke(*args: str) -> BaseException | None:
    app = typer.Typer()
    app.command()(cal.calibrate_command)
    return CliRunner().invoke(app, list(args)).exception


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--backend", "glooo"], ["unknown --backend", "gloo"]),
        (["--procs", f"2,{TOO_MANY}"], [f"{TOO_MANY} processes", f"at most {TOO_MANY - 1}"]),
        (["--procs", "1"], ["at least 2"]),
        (["--procs", "2,3", "--holdout-procs", "3"], ["both"]),
        (["--min-bytes", "0"], ["positive"]),
        (["--sizes", "0"], ["--sizes 0"]),
        (["--max-bytes", "lots"], ["byte count"]),
        (["--collectives", "all_reduce,allgather"], ["allgather", "all_gather"]),
        (["--repeats", "0"], ["--repeats"]),
    ],
)
def test_bad_options_are_one_line_config_errors(
    tmp_path: Path, args: list[str], words: list[str]
) -> None:
    out = tmp_path / "cal.json"
    err = _invoke(*args, "--out", str(out))
    assert isinstance(err, ConfigError), err
    assert "\n" not in str(err)
    for w in words:
        assert w in str(err)
    assert not out.exists()


def test_nccl_without_gpus_says_so_before_launching(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA GPUs")
    err = _invoke("--backend", "nccl", "--out", str(tmp_path / "c.json"))
    assert isinstance(err, ConfigError)
    assert "nccl" in str(err) and "GPU" in str(err) and "\n" not in str(err)


# Stand-ins for the worker (`python -c BOOT SPEC RANK`), no torch: how the parent reports a
# worker that cannot start. (With torch, a taken port makes rank 0 fail with "DistNetworkError:
# The server socket has failed to listen on any local network address. port: P, ..., name:
# EADDRINUSE, message: address already in use" - the text the parent matches.)
FAKE_BOOT = """
import os, signal, sys, time
rank, what = int(sys.argv[2]), os.environ["PJ_FAKE"]
if what == "port" and rank == 0:
    sys.stderr.write("torch noise\\nPJ-CAL-ERROR DistNetworkError: The server socket has failed "
                     "to listen ... name: EADDRINUSE, message: address already in use\\n")
    sys.exit(3)
if what == "crash" and rank == 1:
    sys.stderr.write("PJ-CAL-ERROR RuntimeError: boom on rank one\\n")
    sys.exit(3)
if what == "killed" and rank == 1:
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(60)  # the others wait, as real ranks block in the rendezvous
"""


@pytest.mark.parametrize(
    ("what", "words", "tries"),
    [
        ("port", ["rank 0 could not listen", "EADDRINUSE"], 3),
        ("crash", ["rank 1 of 2", "RuntimeError: boom on rank one"], 1),
        ("killed", ["rank 1 of 2", "killed by SIGKILL"], 1),
    ],
)
def test_a_worker_that_cannot_start_is_one_line_and_leaves_no_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str, words: list[str], tries: int
) -> None:
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG_VAR, tag)
    monkeypatch.setenv("PJ_FAKE", what)
    monkeypatch.setattr(cal, "_BOOT", FAKE_BOOT)
    ports: list[int] = []
    free_port = cal._free_port
    monkeypatch.setattr(cal, "_free_port", lambda: ports.append(free_port()) or ports[-1])
    cfg = replace(CFG, holdout_procs=(), sizes=(4096, 8192), collectives=("all_reduce",))
    t0 = time.monotonic()
    with pytest.raises(cal.WorkerError) as e:
        cal.calibrate(cfg, tmp_path / "c.json")
    assert time.monotonic() - t0 < 30
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert len(ports) == tries  # a taken port is retried on a fresh one; a crash is not
    assert _wait_gone(tag) == {}
    assert json.loads((tmp_path / "c.json").read_text())["measurements"] == []


# --- killed, interrupted, resumed ----------------------------------------------------------------


def test_ctrl_c_stops_within_seconds_keeps_points_and_says_how_to_resume(
    life: Lifecycle,
) -> None:
    assert life.interrupt_status == 128 + signal.SIGINT, life.interrupt_output
    assert life.interrupt_s < STOP_S
    assert life.interrupt_strays == {}, "workers outlived an interrupted calibration"
    assert "interrupted" in life.interrupt_output and "--resume" in life.interrupt_output
    assert "Traceback" not in life.interrupt_output
    assert 1 <= len(life.interrupted_points) < len(CFG.points())
    assert life.interrupted_complete is False


def test_resume_measures_each_point_once_and_keeps_earlier_ones(life: Lifecycle) -> None:
    final = life.final["measurements"]
    keys = [(m["op"], m["n"], m["size"]) for m in final]
    assert len(keys) == len(set(keys)) == len(CFG.points())
    assert set(keys) == set(CFG.points())
    by_key = {(m["op"], m["n"], m["size"]): m for m in final}
    for old in life.interrupted_points:  # untouched: same samples, same run
        new = by_key[(old["op"], old["n"], old["size"])]
        assert (new["run"], new["samples_s"]) == (old["run"], old["samples_s"])
    assert len({m["run"] for m in final}) == 2  # the interrupted run, the run that finished
    assert life.final["complete"] is True


SIGKILLED = """
import sys
from pathlib import Path
from picojoule.cluster import calibrate as cal
cal._BOOT = sys.argv[1]
cfg = cal.CalibrationConfig(procs=(3,), holdout_procs=(), sizes=(4096, 8192))
cal.calibrate(cfg, Path(sys.argv[2]))
"""


@pytest.mark.parametrize("only", ["prctl", "watch"])
def test_workers_die_with_a_sigkilled_calibration(tmp_path: Path, only: str) -> None:
    """SIGKILL leaves the calibration no chance to clean up: its workers (their own sessions,
    so no terminal signal reaches them) must end by themselves. Each mechanism alone must do:
    the kernel's parent-death signal, and (where prctl is missing) the thread that notices the
    worker was re-parented."""
    tag = uuid.uuid4().hex
    ready = tmp_path / "ready"
    boot = f"""
import json, os, sys, time
from pathlib import Path
from picojoule.cluster import calibrate as cal
if {only!r} == "watch":  # no prctl: only the watching thread is left
    import ctypes
    def missing(*args, **kwargs):
        raise OSError("no prctl here")
    ctypes.CDLL = missing
else:  # no watching thread: only the kernel's parent-death signal is left
    class Idle:
        def __init__(self, *args, **kwargs): pass
        def start(self): pass
    cal.threading.Thread = Idle
cal._die_with_parent(int(json.loads(sys.argv[1])["parent"]))
Path({str(ready)!r} + sys.argv[2]).touch()
time.sleep(60)
"""
    env = dict(os.environ, PYTHONPATH=str(SRC), **{TAG_VAR: tag})
    proc = subprocess.Popen([sys.executable, "-c", SIGKILLED, boot, str(tmp_path / "c.json")],
                            env=env)  # fmt: skip
    end = time.monotonic() + START_S
    while not all(Path(f"{ready}{r}").exists() for r in range(3)):
        assert proc.poll() is None and time.monotonic() < end, "stand-in workers did not start"
        time.sleep(0.02)
    assert len(_tagged(tag)) == 4  # the calibration and its 3 workers
    proc.kill()
    proc.wait()
    assert _wait_gone(tag) == {}


# --- the fitted model --------------------------------------------------------------------------


def test_json_is_strict_and_holds_machine_and_held_out_errors(life: Lifecycle) -> None:
    doc = _strict(life.final_text)
    assert doc["schema"] == cal.SCHEMA
    m = doc["machine"]
    assert m["backend"] == "gloo" and m["cpu_count"] == os.cpu_count()
    assert isinstance(m["torch"], str) and m["torch"]
    assert set(doc["fit"]) == set(cal.COLLECTIVES)
    for op, f in doc["fit"].items():
        hs, hp = f["heldout_sizes"], f["heldout_procs"]
        assert hs["points"] == len(CFG.holdout_sizes), op  # at n=2
        assert hp["points"] == len(SIZES) and set(hp["by_n"]) == {"3"}, op
        for d in (hs, hp):
            assert 0 <= d["median_rel_err"] <= d["max_rel_err"], op
        assert f["heldout_max_rel_err"] == max(hs["max_rel_err"], hp["max_rel_err"])
        assert isinstance(f["within_target"], bool)


def test_time_grows_linearly_in_bytes(life: Lifecycle) -> None:
    """Measured on a shared 2-core machine, so the bounds are loose - but a model that did not
    describe the data (wrong factor, time not rising with bytes) would miss them."""
    for op, f in life.final["fit"].items():
        assert f["alpha_s"] >= 0, op
        assert f["beta_s_per_byte"] > 0, op
        assert f["fit"]["median_rel_err"] < 0.5, (op, f)
        pts = {m["size"]: m["median_s"] for m in life.final["measurements"]
               if m["op"] == op and m["n"] == 2}  # fmt: skip
        assert pts[SIZES[-1]] > 2 * pts[SIZES[0]], (op, pts)  # 4096x the bytes


def test_predictions_use_the_ring_all_reduce_bytes_factor(life: Lifecycle) -> None:
    """n=3 was held out: its predictions are the n=2 fit with 2(n-1)/n = 4/3 instead of 1,
    so at large sizes the predicted ratio tends to (4/3)/1."""
    f = life.final["fit"]["all_reduce"]
    a, b = f["alpha_s"], f["beta_s_per_byte"]
    assert life.final["model"]["coefficients"]["all_reduce"]["3"] == pytest.approx(
        {"steps": 4, "factor": 4 / 3}
    )
    huge = 1 << 40
    assert cal.predict(a, b, "all_reduce", 3, huge) / cal.predict(
        a, b, "all_reduce", 2, huge
    ) == pytest.approx(4 / 3, rel=0.01)
    for m in life.final["measurements"]:
        if m["op"] == "all_reduce" and m["n"] == 3:
            assert m["predicted_s"] == pytest.approx(a * 4 + b * m["bytes"] * 4 / 3)


def test_resume_refuses_another_backend_or_a_foreign_file(life: Lifecycle, tmp_path: Path) -> None:
    doc = json.loads(life.final_text)
    doc["machine"]["backend"] = "nccl"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="backend") as e:
        cal.calibrate(CFG, other, resume=True)
    assert "\n" not in str(e.value)
    other.write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not a picojoule calibration"):
        cal.calibrate(CFG, other, resume=True)
