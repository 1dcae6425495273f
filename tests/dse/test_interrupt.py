"""`picojoule dse run` stopped by a signal: Ctrl-C and SIGTERM stop it within seconds with the
resume command, SIGKILL of the run takes its workers with it, and two `--resume` runs of one
half-finished run split the remaining designs.

Every run is a real `python -m picojoule.dse.cli run` subprocess in its own session, with an
environment variable holding a fresh tag; the processes that belong to the run are those whose
/proc/<pid>/environ holds the tag (the forkserver, the resource tracker and the pool workers
inherit it), so a worker re-parented after its run died is still found. The results file is
only read read-only: a read-write connection closing last would checkpoint a killed run's WAL
and hide what the next run finds (a SIGKILLed run's `--resume` was once refused that way: the
id sat in the WAL only; `picojoule.dse.store` now checkpoints it at creation).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from picojoule.procs import processes_with_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not Path("/proc/self/environ").exists(),
    reason="needs Linux /proc (process environments) and POSIX signals",
)

SRC = Path(__file__).resolve().parents[2] / "src"
TAG_VAR = "PJ_TEST_RUN_TAG"
STOP_S = 5.0  # a signalled run must be gone within this (generous for a loaded CI machine)
START_S = 120.0  # longest wait for a run to start its workers and commit its first batch
DESIGNS = 18  # the space below: 3 vector widths x 2 vector-unit counts x 3 dataflows


SPACE18 = {  # conftest's TINY_SPACE, widened to 18 designs
    "name": "tiny",
    "workload": "digits-cnn",
    "preset": "magnet",
    "objectives": ["energy", "latency", "area"],
    "search": {"method": "grid"},
    "parameters": {
        "vector_width": [4, 8, 16],
        "vector_units": [2, 4],
        "dataflow": ["ws", "os", "local-ws"],
        "pe_x": 2,
        "pe_y": 2,
        "node_nm": 16,
    },
}


# --- processes ---------------------------------------------------------------------------------


def _tagged(tag: str) -> dict[int, tuple[int, str]]:
    """Live processes whose environment holds the tag: pid -> (ppid, cmd)."""
    return processes_with_env(TAG_VAR, tag)


def _workers(tag: str, main_pid: int) -> list[int]:
    """Pool workers: the run's processes whose parent is one of its processes other than the
    run itself (the forkserver)."""
    procs = _tagged(tag)
    return [p for p, (ppid, _) in procs.items() if ppid in procs and ppid != main_pid]


def _gone_within(tag: str, seconds: float) -> tuple[float | None, dict[int, tuple[int, str]]]:
    """Seconds until no process of the run is alive (None: some still were after `seconds`),
    and those left."""
    start = time.monotonic()
    while True:
        left = _tagged(tag)
        if not left:
            return time.monotonic() - start, {}
        if time.monotonic() - start > seconds:
            return None, left
        time.sleep(0.02)


def _kill_leftovers(tag: str) -> None:
    """After a failed test: end the processes this test started, by pid."""
    for pid in _tagged(tag):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class _Run:
    """One `dse run` subprocess in its own session, tagged, output in files; it imports
    picojoule from `src` (the fixture's snapshot of the tree)."""

    def __init__(self, space: Path, out: Path, *args: str, log: Path, src: Path = SRC) -> None:
        self.tag = uuid.uuid4().hex
        self.out, self.db = out, out / "results.sqlite"
        env = {
            **os.environ,
            TAG_VAR: self.tag,
            "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
        }
        self.stdout_path, self.stderr_path = log.with_suffix(".out"), log.with_suffix(".err")
        with open(self.stdout_path, "wb") as o, open(self.stderr_path, "wb") as e:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "picojoule.dse.cli", "run", str(space)]
                + ["--out", str(out), *args],
                env=env,
                stdout=o,
                stderr=e,
                start_new_session=True,
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def busy(self, *, points: int, workers: int = 2) -> bool:
        """At least `points` committed and `workers` pool workers alive (fails if the run
        already ended)."""
        if self.proc.poll() is not None:
            pytest.fail(f"the run ended (rc {self.proc.returncode}) first:\n{self.stderr}")
        return len(_points(self.db)) >= points and len(_workers(self.tag, self.proc.pid)) >= workers

    def stop(self, sig: int, *, group: bool) -> float:
        """Send `sig` (to the whole process group, as a terminal's Ctrl-C does, or to the run
        only, as `kill PID` does); seconds until the run exited."""
        start = time.monotonic()
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"signal {sig} did not stop the run within 60 s")
        return time.monotonic() - start


# --- the results file, read as any SQLite client would -----------------------------------------


def _points(db: Path) -> dict[str, str | None]:
    """The run's points: design key -> metrics JSON (error text for an unmappable design);
    fails on a design key the run holds twice."""
    if not db.exists():
        return {}
    conn = _read_only(db)
    try:
        rows = conn.execute(
            "SELECT p.design_key, COALESCE(r.metrics_json, r.error) FROM run_points p "
            "JOIN runs u ON u.run_id = p.run_id JOIN results r ON r.design_key = p.design_key "
            "AND r.workload_key = u.workload_key AND r.model_version = u.model_version "
            "ORDER BY p.seq"
        ).fetchall()
    except sqlite3.OperationalError:
        return {}  # schema not created yet
    finally:
        conn.close()
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)), f"a design key appears twice: {keys}"
    return dict(rows)


def _read_only(db: Path) -> sqlite3.Connection:
    """Never read-write: such a connection, closing as the last one, checkpoints a killed
    run's WAL into the main file and so changes what the next run finds."""
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def _sql(db: Path, query: str) -> list[tuple[Any, ...]]:
    conn = _read_only(db)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def _assert_intact(db: Path, before: dict[str, str | None]) -> dict[str, str | None]:
    assert _sql(db, "PRAGMA integrity_check") == [("ok",)]
    after = _points(db)
    assert before, "nothing was committed before the signal: the check would prove nothing"
    assert {k: after.get(k) for k in before} == before, "committed points changed or vanished"
    return after


_SUMMARY = re.compile(r"(\d+) points \((\d+) evaluated now, (\d+) reused")


def _summary(stdout: str) -> tuple[int, int, int]:
    """(points, evaluated now, reused) from the run's closing line."""
    m = _SUMMARY.search(" ".join(stdout.split()))
    assert m, f"no summary line in:\n{stdout}"
    points, evaluated, reused = (int(g) for g in m.groups())
    return points, evaluated, reused


# --- tests -------------------------------------------------------------------------------------


@dataclass
class _Stopped:
    """What one signalled run left: how it ended, and its points just before the signal."""

    run: _Run
    before: dict[str, str | None]  # points committed when the signal was sent
    took_s: float  # signal -> the run exited
    gone_s: float | None  # the run exited -> none of its processes alive (None: not in time)
    left: dict[int, tuple[int, str]]  # its processes still alive after STOP_S
    followers: list[_Run] = field(default_factory=list)  # `--resume` runs started right after


# name -> (signal, sent to the whole process group?, points committed before sending it)
_CASES = {
    "sigint": (signal.SIGINT, True, 1),  # Ctrl-C in a terminal reaches the whole group
    "sigterm": (signal.SIGTERM, False, 1),  # `kill PID`, a supervisor stopping the run
    "sigkill": (signal.SIGKILL, False, 1),  # `kill -9 PID`: the workers must go by themselves
}


def _follow(name: str, space: Path, run: _Run, base: Path) -> list[_Run]:
    """The `--resume` runs each case is followed by, started at once (no file is opened
    read-write in between): SIGKILL - one, in place; SIGINT - two at once on a copy."""
    resume = ("--resume", "--workers", "1")
    if name == "sigkill":
        return [_Run(space, run.out, *resume, log=base / "resumed", src=base / "src")]
    if name == "sigint":
        split = base / "split"
        split.mkdir()
        for f in run.out.glob("results.sqlite*"):
            shutil.copy2(f, split / f.name)
        return [_Run(space, split, *resume, log=base / n, src=base / "src") for n in "ab"]
    return []


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, _Stopped]:
    """One run per case, started at once (their start-up, mostly imports, overlaps), each
    signalled as soon as its 2 pool workers are alive and it has committed its first batch,
    then followed by its `--resume` runs (`_follow`)."""
    base = tmp_path_factory.mktemp("signals")
    space = base / "space18.yaml"
    space.write_text(yaml.safe_dump(SPACE18, sort_keys=False))
    # A snapshot of the tree: an edit to the cost model while the runs go on would change its
    # version, and --resume rightly refuses to mix versions in one run.
    shutil.copytree(
        SRC / "picojoule", base / "src" / "picojoule", ignore=shutil.ignore_patterns("__pycache__")
    )
    runs = {
        name: _Run(space, base / name, "--workers", "2", log=base / name, src=base / "src")
        for name in _CASES
    }
    result: dict[str, _Stopped] = {}
    try:
        deadline = time.monotonic() + START_S
        while len(result) < len(runs):
            if time.monotonic() > deadline:
                pytest.fail(f"runs not busy after {START_S:.0f} s: {set(runs) - set(result)}")
            for name, run in runs.items():
                sig, group, points = _CASES[name]
                if name in result or not run.busy(points=points):
                    continue
                before = _points(run.db)
                took = run.stop(sig, group=group)
                gone_s, left = _gone_within(run.tag, STOP_S)
                followers = _follow(name, space, run, base)
                result[name] = _Stopped(run, before, took, gone_s, left, followers)
            time.sleep(0.05)
        for s in result.values():
            for f in s.followers:
                f.proc.wait(timeout=120)
    finally:
        for run in [*runs.values(), *(f for s in result.values() for f in s.followers)]:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait()
            _kill_leftovers(run.tag)
    return result


@pytest.mark.parametrize(("name", "code"), [("sigint", 130), ("sigterm", 143)])
def test_signal_stops_the_run_within_seconds(
    stopped: dict[str, _Stopped], name: str, code: int
) -> None:
    s = stopped[name]
    assert s.run.proc.returncode == code, s.run.stderr
    assert s.took_s < STOP_S, f"the run took {s.took_s:.1f} s to stop"
    assert s.gone_s is not None, f"alive {STOP_S:.0f} s after the run exited: {s.left}"
    stderr = " ".join(s.run.stderr.split())
    assert "interrupted" in stderr and "resume with: picojoule dse run" in stderr, stderr
    assert f"--out {s.run.out} --resume --workers 2" in stderr, stderr
    kept = _assert_intact(s.run.db, s.before)
    assert len(kept) < DESIGNS, "the run finished before the signal: enlarge the space"
    assert _sql(s.run.db, "SELECT COUNT(*) FROM claims") == [(0,)], "claims were not released"


def test_sigkill_of_the_run_takes_its_workers_with_it(stopped: dict[str, _Stopped]) -> None:
    s = stopped["sigkill"]
    assert s.run.proc.returncode == -signal.SIGKILL
    assert s.gone_s is not None, f"alive {STOP_S:.0f} s after the run was killed: {s.left}"
    assert _sql(s.run.db, "PRAGMA integrity_check") == [("ok",)]
    _points(s.run.db)  # no design key twice


def test_a_sigkilled_run_resumes_and_completes_the_space(stopped: dict[str, _Stopped]) -> None:
    """`--resume` straight after the SIGKILL, with nothing opening the file in between."""
    s = stopped["sigkill"]
    (resumed,) = s.followers
    assert resumed.proc.returncode == 0, resumed.stderr[-3000:]
    done = _assert_intact(s.run.db, s.before)
    assert len(done) == DESIGNS
    assert _summary(resumed.stdout)[0] == DESIGNS


def test_two_resumes_after_ctrl_c_split_the_rest_and_complete_the_space(
    stopped: dict[str, _Stopped],
) -> None:
    """The Ctrl-C'd run (a copy) resumed by two concurrent `--resume` runs: every missing
    design is evaluated by exactly one of them, both end with the whole space, the points
    committed before the signal are untouched."""
    s = stopped["sigint"]
    runs = s.followers
    db = runs[0].db
    codes = [r.proc.returncode for r in runs]
    assert codes == [0, 0], [(c, r.stderr[-3000:]) for c, r in zip(codes, runs, strict=True)]
    kept = _points(s.run.db)  # the original, as the signal left it
    missing = DESIGNS - len(kept)
    summaries = [_summary(r.stdout) for r in runs]  # (points, evaluated now, reused)
    evaluated = [e for _, e, _ in summaries]
    assert sum(evaluated) == missing, f"designs evaluated twice: {summaries}, {missing} missing"
    assert min(evaluated) > 0, (
        f"one run evaluated nothing ({summaries}): they did not overlap, so this proves "
        "nothing - enlarge the space"
    )
    assert [p for p, _, _ in summaries] == [DESIGNS, DESIGNS], summaries
    done = _assert_intact(db, _assert_intact(s.run.db, s.before))
    assert len(done) == DESIGNS
    assert _sql(db, "SELECT COUNT(*) FROM results") == [(DESIGNS,)]
    assert _sql(db, "SELECT COUNT(*) FROM claims") == [(0,)]
