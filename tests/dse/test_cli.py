"""`picojoule dse run/show`: outputs written, show never evaluates, bad input is one message,
and a run killed with SIGKILL resumes without losing or repeating a point."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from picojoule.dse import evaluate
from picojoule.dse.cli import app
from picojoule.dse.errors import SpaceError, StoreError
from picojoule.dse.results import ResultsDB

SRC = Path(__file__).resolve().parents[2] / "src"
runner = CliRunner()


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=True)


def test_run_then_show_renders_from_the_database_alone(
    tmp_path: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    res = _run("run", str(space_file), "--out", str(out), "--workers", "1")
    assert res.exit_code == 0, res.output
    assert "Pareto front" in res.output and "chosen" in res.output
    for name in ("results.sqlite", "front.json", "pareto.png", "energy_split.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    front = json.loads((out / "front.json").read_text())
    assert front["points"] == 4 and front["evaluated"] == 4 and front["chosen"] is not None
    assert "data:image/png;base64," in (out / "report.html").read_text()
    first = (out / "front.json").read_text()

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("show must not evaluate")

    monkeypatch.setattr(evaluate, "evaluate_design", boom)
    (out / "front.json").unlink()
    res = _run("show", str(out))
    assert res.exit_code == 0, res.output
    assert (out / "front.json").read_text() == first


def test_bad_inputs_are_picojoule_errors(tmp_path: Path, space_file: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "workload": "digits-cnn", "parameters": {}}))
    res = _run("run", str(bad), "--out", str(tmp_path / "o"))
    assert isinstance(res.exception, SpaceError) and "parameters is empty" in str(res.exception)
    res = _run("run", "no-such-space", "--out", str(tmp_path / "o"))
    assert isinstance(res.exception, SpaceError) and "packaged space" in str(res.exception)
    corrupt = tmp_path / "c"
    corrupt.mkdir()
    (corrupt / "results.sqlite").write_bytes(b"\x00garbage" * 64)
    digest = hashlib.sha256((corrupt / "results.sqlite").read_bytes()).hexdigest()
    for args in (("run", str(space_file), "--out", str(corrupt)), ("show", str(corrupt))):
        res = _run(*args)
        assert isinstance(res.exception, StoreError), res.output
    assert hashlib.sha256((corrupt / "results.sqlite").read_bytes()).hexdigest() == digest
    res = _run("show", str(tmp_path / "nothing"))
    assert isinstance(res.exception, StoreError)


def _points(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)  # a plain reader, as another tool would open it
    try:
        return conn.execute(
            "SELECT p.design_key, r.metrics_json FROM run_points p JOIN results r "
            "ON r.design_key = p.design_key ORDER BY p.seq"
        ).fetchall()
    except sqlite3.OperationalError:
        return []  # schema not created yet
    finally:
        conn.close()


def test_sigkill_mid_run_loses_nothing_and_repeats_nothing(
    tmp_path: Path, tiny_space: dict[str, Any]
) -> None:
    tiny_space["parameters"]["vector_width"] = [4, 8, 16]
    tiny_space["parameters"]["vector_units"] = [2, 4]
    tiny_space["parameters"]["dataflow"] = ["ws", "os", "local-ws"]  # 18 designs
    space = tmp_path / "kill.yaml"
    space.write_text(yaml.safe_dump(tiny_space))
    out = tmp_path / "run"
    db = out / "results.sqlite"
    cmd = [sys.executable, "-m", "picojoule.dse.cli", "run", str(space), "--out", str(out)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen([*cmd, "--workers", "1"], env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists() and len(_points(db)) >= 5:  # the first batch (of 5) is committed
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; enlarge the space"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = dict(_points(db))
    assert 5 <= len(before) < 18
    done = subprocess.run([*cmd, "--workers", "1", "--resume"], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    after = _points(db)
    keys = [k for k, _ in after]
    assert len(keys) == len(set(keys)) == 18
    assert {k: m for k, m in after if k in before} == before  # finished points kept as they were
    with ResultsDB.open(out, create=False) as rdb:
        assert len(rdb.points("tiny")) == 18
