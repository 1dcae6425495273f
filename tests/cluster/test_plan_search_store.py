"""`cluster plan --search --out DIR`: the plan search as a resumable DSE sweep.

The stored search gives the in-memory front exactly; an interrupted one keeps its finished
plans and `--resume` evaluates only the rest (each plan stored once); Ray gives the local
numbers; bad options are one-line ConfigErrors. The interrupt is a real SIGINT sent to this
process from the progress callback after k plans - what a Ctrl-C does mid-run (the runner
turns it into `RunInterrupted` after committing the finished batches).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from picojoule.cluster.cli import app
from picojoule.cluster.models import load_model
from picojoule.cluster.plan import pareto_front, plan_candidates, search_plans
from picojoule.cluster.sweep import in_memory, plan_sweep, sweep_plans
from picojoule.cluster.topology import system
from picojoule.dse.progress import ProgressView
from picojoule.dse.runner import RunProgress
from picojoule.errors import ConfigError

runner = CliRunner(env={"COLUMNS": "100"})
DGX_H100 = system("dgx-h100")
# llama2-7b on 16 H100s, 32 x 2048 tokens: 256 candidate plans, 4 rejected, 11 on the front
SEARCH = ["plan", "--model", "llama2-7b", "--gpus", "16", "--global-batch", "32",
          "--seq-len", "2048", "--search", "--limit", "3"]  # fmt: skip


def _candidates() -> int:
    return len(plan_candidates(load_model("llama2-7b"), DGX_H100, 16, global_batch=32,
                               seq_len=2048))  # fmt: skip


def _invoke(*args: str) -> Any:
    return runner.invoke(app, [*SEARCH, *args])


def _ok(*args: str) -> str:
    result = _invoke(*args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _canon(obj: Any) -> str:
    """JSON text independent of key order and of tuple vs list (the store sorts keys)."""
    return json.dumps(obj, sort_keys=True)


def _sql(db: Path, query: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


_SUMMARY = re.compile(r"(\d+) plans \((\d+) evaluated now, (\d+) reused, (\d+) rejected\)")


def _summary(output: str) -> tuple[int, ...]:
    m = _SUMMARY.search(" ".join(output.split()))
    assert m, output
    return tuple(int(g) for g in m.groups())


def test_pareto_front_is_the_dse_one() -> None:
    pts = [(1.0, 2.0, 3.0), (2.0, 1.0, 3.0), (2.0, 2.0, 3.0), (1.0, 2.0, 3.0), (3.0, 3.0, 0.5)]
    assert pareto_front(pts) == [True, True, False, True, True]
    assert pareto_front([]) == []


def test_stored_search_gives_the_in_memory_front(tmp_path: Path) -> None:
    """Same front, same order, same numbers (JSON); the store holds every candidate once,
    with its estimate or its rejection reason, and a second search reuses them all."""
    _ok("--json", str(tmp_path / "memory.json"))
    out = _ok("--out", str(tmp_path / "run"), "--workers", "2", "--json", str(tmp_path / "s.json"))
    n = _candidates()
    assert _summary(out) == (n, n, 0, 4)
    memory, stored = _json(tmp_path / "memory.json"), _json(tmp_path / "s.json")
    assert stored == memory
    assert len(stored["front"]) == 11 and stored["rejected"] == {"does not fit": 4}
    db = tmp_path / "run" / "results.sqlite"
    assert _sql(db, "SELECT COUNT(*), COUNT(DISTINCT design_key) FROM run_points") == [(n, n)]
    rows = _sql(db, "SELECT design_json, metrics_json, error FROM results")
    assert len(rows) == n
    fits = [json.loads(m) for _, m, e in rows if m is not None]
    assert len(fits) == n - 4
    for m in fits:  # what the issue asks to keep per plan
        assert m["step_time_s"] > 0 and 0 < m["mfu"] < 1
        assert set(m["energy"]) >= {"math_j", "memory_j", "other_j", "link_j", "wait_j", "total_j"}
        assert 0 < m["memory"]["total"] <= m["memory"]["capacity"]
    assert all(e.startswith("does not fit: ") for _, m, e in rows if m is None)
    assert {json.loads(d)["tp"] for d, _, _ in rows} == {1, 2, 4, 8, 16}
    # same search, another command: nothing evaluated again (the run is resumed)
    again = _ok("--out", str(tmp_path / "run"), "--resume", "--workers", "1")
    assert _summary(again) == (n, 0, n, 4)


def test_interrupted_search_keeps_its_plans_and_resumes_only_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop_after = 20
    calls = {"sent": False}
    view_call = ProgressView.__call__

    def ctrl_c_after_k(self: ProgressView, p: RunProgress) -> None:
        view_call(self, p)
        if p.evaluated >= stop_after and not calls["sent"]:
            calls["sent"] = True
            os.kill(os.getpid(), signal.SIGINT)  # raised as KeyboardInterrupt right here

    monkeypatch.setattr(ProgressView, "__call__", ctrl_c_after_k)
    run = tmp_path / "run"
    db = run / "results.sqlite"
    stopped = _invoke("--out", str(run), "--workers", "1")
    assert stopped.exit_code == 130, stopped.output + repr(stopped.exception)
    err = " ".join(stopped.stderr.split())
    assert "interrupted" in err and "plans kept in" in err, err
    assert (
        "resume with: picojoule cluster plan --model llama2-7b --gpus 16 --global-batch 32 "
        f"--seq-len 2048 --search --limit 3 --out {run} --workers 1 --resume"
    ) in err, err
    kept = _sql(db, "SELECT COUNT(*) FROM run_points")[0][0]
    n = _candidates()
    assert stop_after <= kept < n, kept
    assert _sql(db, "SELECT COUNT(*) FROM claims") == [(0,)], "claims were not released"
    before = dict(_sql(db, "SELECT design_key, COALESCE(metrics_json, error) FROM results"))

    monkeypatch.setattr(ProgressView, "__call__", view_call)
    resumed = _ok("--out", str(run), "--workers", "1", "--resume", "--json", str(tmp_path / "r"))
    assert _summary(resumed) == (n, n - kept, kept, 4)
    assert _sql(db, "SELECT COUNT(*), COUNT(DISTINCT design_key) FROM run_points") == [(n, n)]
    assert _sql(db, "SELECT COUNT(*) FROM results") == [(n,)]
    after = dict(_sql(db, "SELECT design_key, COALESCE(metrics_json, error) FROM results"))
    assert {k: after[k] for k in before} == before, "plans stored before the stop changed"
    _ok("--json", str(tmp_path / "memory.json"))
    assert _json(tmp_path / "r") == _json(tmp_path / "memory.json")


def test_library_sweep_equals_search_plans(tmp_path: Path) -> None:
    """`sweep_plans` in process (workers=1) against `search_plans`: the same ranked plans."""
    m = load_model("smollm2-135m")
    stored = sweep_plans(m, DGX_H100, 8, global_batch=16, out=tmp_path, workers=1)
    n = len(plan_candidates(m, DGX_H100, 8, global_batch=16))
    memory = in_memory(search_plans(m, DGX_H100, 8, global_batch=16), n)
    assert _canon(stored.plans) == _canon(memory.plans)
    assert stored.front == memory.front and stored.reasons == memory.reasons
    assert stored.summary is not None and stored.summary.evaluated == n == stored.candidates
    sweep, _ = plan_sweep(m, DGX_H100, 8, global_batch=32)  # another batch: another run
    assert sweep.name != stored.summary.run.run_id


@pytest.mark.ray
def test_ray_backend_gives_the_local_results(tmp_path: Path) -> None:
    """A local 2-CPU Ray against the process pool: the same stored plans and front."""
    pytest.importorskip("ray")
    m = load_model("smollm2-135m")
    got = {
        backend: sweep_plans(
            m, DGX_H100, 8, global_batch=16, out=tmp_path / backend, backend=backend, workers=2
        )  # fmt: skip
        for backend in ("local", "ray")
    }
    assert _canon(got["ray"].plans) == _canon(got["local"].plans)
    assert got["ray"].front == got["local"].front and got["ray"].reasons == got["local"].reasons
    stored = {
        b: dict(
            _sql(tmp_path / b / "results.sqlite", "SELECT design_key, metrics_json FROM results")
        )
        for b in got
    }
    assert stored["ray"] == stored["local"] and len(stored["ray"]) == got["ray"].candidates


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resume"], "--resume continues a stored search: add --out DIR"),
        (["--out", "FILE"], "is an existing file, not a directory"),
        (["--out", "DIR", "--workers", "-1"], "--workers -1: out of range"),
        (["--workers", "2"], "--workers runs a stored search: add --out DIR"),
        (["--out", "DIR", "--address", "10.0.0.1:6379"], "needs --backend ray"),
        (["--out", "DIR", "--backend", "dask"], "--backend 'dask': unknown"),
    ],
    ids=[
        "resume-without-out",
        "out-is-a-file",
        "negative-workers",
        "workers-without-out",
        "address-without-ray",
        "unknown-backend",
    ],  # fmt: skip
)
def test_bad_sweep_options_are_one_line_config_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "FILE").write_text("not a directory")
    args = [str(tmp_path / a) if a in ("FILE", "DIR") else a for a in args]
    result = _invoke(*args)
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError), repr(result.exception)
    text = str(result.exception)
    assert message in text and "\n" not in text, text
    assert not (tmp_path / "DIR").exists(), "a refused search created its directory"
    assert (tmp_path / "FILE").read_text() == "not a directory"


def test_sweep_options_need_search(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--out", str(tmp_path / "x"), "--resume"])
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception) == "--out, --resume store a plan search; add --search"


_PROBE = """
import sys
sys.argv = ["picojoule", "cluster", "plan", "--model", "smollm2-135m", "--search",
            "--out", sys.argv[1], "--workers", "1"]
from picojoule import cli
try:
    cli.main()
except SystemExit:
    pass
print("HEAVY", sorted({m.split(".")[0] for m in sys.modules} & {"torch", "matplotlib", "ray"}))
"""


def test_stored_search_does_not_import_torch(tmp_path: Path) -> None:
    """The DSE store, runner and pareto modules come without the DSE cost model (torch)."""
    done = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    line = [x for x in done.stdout.splitlines() if x.startswith("HEAVY")]
    assert line == ["HEAVY []"], done.stdout[-1500:] + done.stderr[-1500:]
    assert (tmp_path / "run" / "results.sqlite").exists()


def test_dse_show_refuses_a_plan_search_run_in_one_line(tmp_path: Path) -> None:
    """`dse show` renders accelerator-design runs; a plan search in the same store format
    gets one line naming what it is and which command shows it, never a traceback."""
    _ok("--out", str(tmp_path / "run"), "--workers", "1")
    proc = subprocess.run(
        [sys.executable, "-m", "picojoule.cli", "dse", "show", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in text
    assert "is a cluster plan search, not an accelerator design sweep" in text
    assert "picojoule cluster plan --search --out DIR" in text
