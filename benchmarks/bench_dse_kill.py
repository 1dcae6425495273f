"""DSE runs survive kill -9: a `picojoule dse run` killed again and again loses nothing, repeats
nothing, leaves no process behind, and ends with the numbers of a run never interrupted.

Linux only (it reads /proc). What it does:

1. Writes a grid space - tests/dse/conftest.py's TINY_SPACE (the digits CNN on a 2x2-PE MAGNet
   at 16 nm) widened to 384 designs, about 60-120 s on 2 cores - and runs it once, never
   interrupted: the reference.
2. `--kills` times, into a second directory: starts
   `python -m picojoule.dse.cli run SPACE --out DIR --workers W [--resume]` in its own process
   group with PJ_BENCH_TAG=<fresh uuid> in its environment, waits a random time (seeded:
   uniform from half the reference's time to first commit S, to S + 1.5 x its evaluation time
   per kill - so some kills hit the pool's start-up, and all of them a run still in
   progress; `--min-after`/`--max-after` override), SIGKILLs the run's main process only, and
   checks
   (a) within 5 s none of the run's processes is alive: every process whose /proc/<pid>/environ
       holds the tag (forkserver, resource tracker, pool workers - they must die by themselves);
   (b) `PRAGMA integrity_check` is ok;
   (c) no design key is in the run twice, and every point committed before this attempt is
       still there with the same metrics (so each resume leaves earlier points alone).
   The file is only ever read read-only here: a read-write connection, closing as the last
   one, would checkpoint the killed run's WAL into the main file and so hide what the next
   `--resume` really finds. (It finds the run's `application_id` only in the WAL and refuses
   the file as "not written by picojoule": `--checkpoint-after-kill` checkpoints after each
   kill, as any read-write SQLite client would, to measure everything else past that bug.)
3. Finishes the run with `--resume`: every design of the space exactly once, with the design
   keys and metrics JSON of the reference run.
4. One Ctrl-C: a fresh run gets SIGINT on its whole process group (as a terminal sends it) a
   random 0-2 s after its first committed batch; measured: signal to exit (target < 2 s), exit
   status 130, the resume command on stderr, no process left, committed points intact.

    python benchmarks/bench_dse_kill.py                    # --kills 10 --workers 2 --seed 0
    python benchmarks/bench_dse_kill.py --checkpoint-after-kill
    python benchmarks/bench_dse_kill.py --kills 3 --tiny   # smoke test: 18 designs

The runs import a snapshot of src/ taken at the start, so edits to the working tree while the
benchmark runs (which change the cost model's version) do not disturb it. Prints a table and
writes benchmarks/results/dse_kill.json (dse_kill_checkpoint.json with
--checkpoint-after-kill); exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from picojoule.dse.params import catalog
from picojoule.dse.spacefile import load_space
from picojoule.fsio import write_json
from picojoule.procs import processes_with_env

RESULTS = Path(__file__).parent / "results" / "dse_kill.json"
RESULTS_CHECKPOINT = RESULTS.with_name("dse_kill_checkpoint.json")
SRC = Path(__file__).resolve().parents[1] / "src"
TAG_VAR = "PJ_BENCH_TAG"
GONE_S = 5.0  # (a): the run's processes must all be gone this soon after the kill
SIGINT_TARGET_S = 2.0

TINY_SPACE: dict[str, Any] = {  # tests/dse/conftest.py
    "name": "tiny",
    "workload": "digits-cnn",
    "preset": "magnet",
    "objectives": ["energy", "latency", "area"],
    "search": {"method": "grid"},
    "parameters": {
        "vector_width": [4, 8],
        "dataflow": ["ws", "local-ws"],
        "pe_x": 2,
        "pe_y": 2,
        "node_nm": 16,
    },
}
WIDE = {  # 4 x 3 x 4 x 2 x 2 x 2 = 384 designs
    "vector_width": [4, 8, 16, 32],
    "vector_units": [2, 4, 8],
    "dataflow": ["ws", "os", "local-ws", "local-os"],
    "pe_x": [2, 4],
    "pe_y": [2, 4],
    "weight_format": ["int8", "int4"],
}
SMOKE = {"vector_width": [4, 8, 16], "vector_units": [2, 4], "dataflow": ["ws", "os", "local-ws"]}


def _space(tiny: bool) -> dict[str, Any]:
    space = copy.deepcopy(TINY_SPACE)
    space["name"] = "kill-bench"
    space["parameters"].update(SMOKE if tiny else WIDE)
    return space


# --- the run's processes -------------------------------------------------------------------------


def _tagged(tag: str) -> dict[int, tuple[int, str]]:
    """Live processes whose environment holds the tag: pid -> (ppid, cmd)."""
    return processes_with_env(TAG_VAR, tag)


def _roles(procs: dict[int, tuple[int, str]], main: int) -> dict[str, int]:
    roles = {"main": 0, "forkserver": 0, "resource_tracker": 0, "workers": 0}
    for pid, (ppid, cmd) in procs.items():
        if pid == main:
            roles["main"] += 1
        elif "resource_tracker" in cmd:
            roles["resource_tracker"] += 1
        elif ppid == main:
            roles["forkserver"] += 1
        else:
            roles["workers"] += 1
    return roles


def _wait_gone(tag: str, seconds: float) -> tuple[float | None, list[str]]:
    """Seconds until none of the run's processes is alive (None if some outlived `seconds`:
    those are listed, then killed - they are this benchmark's own children's children)."""
    start = time.monotonic()
    while True:
        left = _tagged(tag)
        if not left:
            return time.monotonic() - start, []
        if time.monotonic() - start > seconds:
            strays = [f"{pid} (ppid {ppid}): {cmd[:120]}" for pid, (ppid, cmd) in left.items()]
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            return None, strays
        time.sleep(0.01)


# --- the results file, read as any SQLite client would -------------------------------------------


def _sql(db: Path, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read-only: a read-write connection would, on closing as the last one, checkpoint the
    WAL a killed run left into the main file - repairing what the next run should find."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query, args).fetchall()
    finally:
        conn.close()


def _points(db: Path, run_id: str) -> list[tuple[str, str | None]]:
    """(design key, metrics JSON or error) of the run, in commit order."""
    if not db.exists():
        return []
    try:
        return [
            (k, v)
            for k, v in _sql(
                db,
                "SELECT p.design_key, COALESCE(r.metrics_json, r.error) FROM run_points p "
                "JOIN runs u ON u.run_id = p.run_id JOIN results r ON r.design_key = "
                "p.design_key AND r.workload_key = u.workload_key AND r.model_version = "
                "u.model_version WHERE p.run_id = ? ORDER BY p.seq",
                (run_id,),
            )
        ]
    except sqlite3.OperationalError:
        return []  # killed before the schema was written


def _integrity(db: Path) -> str:
    if not db.exists():
        return "no file yet"
    rows = _sql(db, "PRAGMA integrity_check")
    return "ok" if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows)


def _duplicates(db: Path, points: list[tuple[str, str | None]]) -> int:
    """Design keys held twice: in the run's points, or in the results table."""
    keys = [k for k, _ in points]
    twice = len(keys) - len(set(keys))
    if db.exists() and points:
        twice += len(
            _sql(db, "SELECT design_key FROM results GROUP BY design_key HAVING COUNT(*) > 1")
        )
    return twice


def _checkpoint(db: Path) -> None:
    """What any read-write SQLite client does on closing: fold the WAL into the main file."""
    if db.exists():
        conn = sqlite3.connect(db)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()


def _header_app_id(db: Path) -> int | None:
    """`application_id` as the main file's header holds it (bytes 68-71) - what
    `picojoule.fsio.check_cache_path` reads before `dse run` opens a results file."""
    if not db.exists():
        return None
    with open(db, "rb") as f:
        head = f.read(100)
    return int.from_bytes(head[68:72], "big") if len(head) == 100 else None


def _reason(stderr: str) -> str:
    """The error line of a failed run (typer prints a traceback panel, then `Error: ...`)."""
    lines = [ln for ln in stderr.splitlines() if "Error:" in ln or "Error " in ln]
    i = stderr.rfind(lines[-1]) if lines else -1
    return " ".join(stderr[i:].split())[:300] if i >= 0 else " ".join(stderr.split())[-300:]


def _claims(db: Path) -> int:
    try:
        return _sql(db, "SELECT COUNT(*) FROM claims")[0][0] if db.exists() else 0
    except sqlite3.OperationalError:
        return 0


# --- one run -----------------------------------------------------------------------------------


class Run:
    """`python -m picojoule.dse.cli run` in its own process group, tagged, output to files."""

    src = SRC  # where the runs import picojoule from (main() points it at a snapshot)

    def __init__(self, space: Path, out: Path, workers: int, resume: bool, log: Path) -> None:
        self.tag = uuid.uuid4().hex
        self.argv = [sys.executable, "-m", "picojoule.dse.cli", "run", str(space)]
        self.argv += ["--out", str(out), "--workers", str(workers)]
        if resume:
            self.argv.append("--resume")
        env = {
            **os.environ,
            TAG_VAR: self.tag,
            "PYTHONPATH": os.pathsep.join([str(self.src), os.environ.get("PYTHONPATH", "")]),
        }
        self.err_path = log.with_suffix(".err")
        with open(log.with_suffix(".out"), "wb") as o, open(self.err_path, "wb") as e:
            self.start = time.monotonic()
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=o, stderr=e, start_new_session=True
            )

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_until(self, t: float) -> bool:
        """Sleep until `t` s after the start; False if the run ended first."""
        while time.monotonic() - self.start < t:
            if self.proc.poll() is not None:
                return False
            time.sleep(0.02)
        return self.proc.poll() is None


# --- the benchmark -----------------------------------------------------------------------------


def reference(space: Path, out: Path, workers: int, run_id: str) -> dict[str, Any]:
    run = Run(space, out, workers, False, out.parent / "reference")
    first: float | None = None  # start -> its first committed batch
    while run.proc.poll() is None:
        if first is None and _points(out / "results.sqlite", run_id):
            first = time.monotonic() - run.start
        time.sleep(0.05)
    wall = time.monotonic() - run.start
    if run.proc.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{run.stderr()[-3000:]}")
    points = _points(out / "results.sqlite", run_id)
    return {
        "wall_s": wall,
        "first_commit_s": first if first is not None else wall,
        "points": len(points),
        "designs_per_s": len(points) / wall,
    }


def kill_once(
    i: int, space: Path, out: Path, workers: int, after: float, run_id: str, checkpoint: bool
) -> dict[str, Any]:
    db = out / "results.sqlite"
    before = _points(db, run_id)
    run = Run(space, out, workers, i > 0, out.parent / f"kill{i}")
    row: dict[str, Any] = {"kill": i + 1, "after_s": after, "points_before": len(before)}
    if not run.wait_until(after):  # ended by itself: finished, or failed
        rc = run.proc.wait()
        row.update(killed=False, rc=rc)
        if rc != 0:
            row["error"] = _reason(run.stderr())
    else:
        procs = _tagged(run.tag)
        row["run_processes"] = _roles(procs, run.proc.pid)
        row["pool_up"] = row["run_processes"]["workers"] > 0
        os.kill(run.proc.pid, signal.SIGKILL)  # the main process only
        run.proc.wait()
        row["gone_s"], row["strays"] = _wait_gone(run.tag, GONE_S)
        row.update(killed=True, rc=run.proc.returncode)
    after_points = _points(db, run_id)
    held = dict(after_points)
    row["points_after"] = len(after_points)
    row["integrity"] = _integrity(db)
    row["duplicates"] = _duplicates(db, after_points)
    row["changed"] = sum(1 for k, v in before if held.get(k, "<missing>") != v)
    row["stale_claims"] = _claims(db)  # the dead run's: the next resume takes them over
    row["header_app_id"] = _header_app_id(db)  # 0: still only in the WAL
    if checkpoint:
        _checkpoint(db)
    row["ok"] = (
        (row["killed"] or row["rc"] == 0)
        and not row.get("strays")
        and row["integrity"] in ("ok", "no file yet")
        and row["duplicates"] == 0
        and row["changed"] == 0
    )
    return row


def finish(
    space: Path, out: Path, workers: int, run_id: str, ref: dict[str, str | None], size: int
) -> dict[str, Any]:
    db = out / "results.sqlite"
    before = _points(db, run_id)
    run = Run(space, out, workers, True, out.parent / "finish")
    rc = run.proc.wait()
    wall = time.monotonic() - run.start
    gone_s, strays = _wait_gone(run.tag, GONE_S)
    points = _points(db, run_id)
    held = dict(points)
    res = {
        "rc": rc,
        "wall_s": wall,
        "points_before": len(before),
        "points": len(points),
        "space_size": size,
        "integrity": _integrity(db),
        "duplicates": _duplicates(db, points),
        "changed": sum(1 for k, v in before if held.get(k, "<missing>") != v),
        "same_keys_as_reference": set(held) == set(ref),
        "metrics_differ_from_reference": sum(1 for k, v in ref.items() if held.get(k) != v),
        "claims_left": _claims(db),
        "strays": strays,
        "error": _reason(run.stderr()) if rc != 0 else None,
    }
    res["ok"] = (
        rc == 0
        and len(points) == size
        and res["integrity"] == "ok"
        and res["duplicates"] == 0
        and res["changed"] == 0
        and res["same_keys_as_reference"]
        and res["metrics_differ_from_reference"] == 0
        and res["claims_left"] == 0
        and gone_s is not None
    )
    return res


def ctrl_c(space: Path, out: Path, workers: int, run_id: str, rng: random.Random) -> dict[str, Any]:
    db = out / "results.sqlite"
    run = Run(space, out, workers, False, out.parent / "sigint")
    while not _points(db, run_id):  # its first batch committed
        if run.proc.poll() is not None:
            return {"ok": False, "rc": run.proc.returncode, "error": _reason(run.stderr())}
        time.sleep(0.02)
    extra = rng.uniform(0.0, 2.0)
    if not run.wait_until(time.monotonic() - run.start + extra):
        return {"ok": False, "rc": run.proc.wait(), "note": "finished before the signal"}
    before = _points(db, run_id)
    procs = _roles(_tagged(run.tag), run.proc.pid)
    sent = time.monotonic()
    os.killpg(run.proc.pid, signal.SIGINT)
    rc = run.proc.wait()
    stop_s = time.monotonic() - sent
    gone_s, strays = _wait_gone(run.tag, GONE_S)
    held = dict(_points(db, run_id))
    err = " ".join(run.stderr().split())
    tail = err[err.find("interrupted") :] if "interrupted" in err else err[-600:]
    res = {
        "after_s": sent - run.start,
        "run_processes": procs,
        "points_at_signal": len(before),
        "points_kept": len(held),
        "stop_s": stop_s,
        "target_s": SIGINT_TARGET_S,
        "rc": rc,
        "resume_command_on_stderr": "resume with: picojoule dse run" in err and "--resume" in err,
        "traceback_on_stderr": "Traceback" in err,
        "stderr": tail,
        "gone_s": gone_s,
        "strays": strays,
        "integrity": _integrity(db),
        "changed": sum(1 for k, v in before if held.get(k, "<missing>") != v),
        "claims_left": _claims(db),
    }
    res["ok"] = (
        rc == 130
        and stop_s < SIGINT_TARGET_S
        and res["resume_command_on_stderr"]
        and not res["traceback_on_stderr"]
        and gone_s is not None
        and res["integrity"] == "ok"
        and res["changed"] == 0
        and res["claims_left"] == 0
    )
    return res


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ended(row: dict[str, Any]) -> str:
    if row["rc"] == 0:
        return "finished"
    return "refused" if "did not write" in (row.get("error") or "") else f"failed ({row['rc']})"


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kills", type=int, default=10, help="SIGKILLs before the run may finish")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    ap.add_argument("--min-after", type=float, help="earliest kill, s after the start")
    ap.add_argument("--max-after", type=float, help="latest kill, s after the start")
    ap.add_argument("--tiny", action="store_true", help="18-design space (a smoke test)")
    ap.add_argument(
        "--checkpoint-after-kill",
        action="store_true",
        help="after each kill's checks, fold the WAL into the main file (as any read-write\n"
        "SQLite client does on closing) - the workaround for a killed run's file being\n"
        "refused on --resume; results go to dse_kill_checkpoint.json",
    )
    args = ap.parse_args()
    if not Path("/proc/self/environ").exists():
        raise SystemExit("needs Linux /proc")
    console = Console(width=None if sys.stdout.isatty() else 130)  # as picojoule.cli
    rng = random.Random(args.seed)
    load_start = os.getloadavg()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pj-kill-") as tmp:
        base = Path(tmp)
        # The runs import a snapshot of src/: an edit to the tree meanwhile would change the
        # cost model's version, and --resume (rightly) refuses to mix two versions in a run.
        shutil.copytree(
            SRC / "picojoule",
            base / "src" / "picojoule",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        Run.src = base / "src"
        space_path = base / "space.yaml"
        space_path.write_text(yaml.safe_dump(_space(args.tiny), sort_keys=False))
        sp = load_space(space_path, catalog)
        console.print(
            f"space {sp.name}: {sp.size} designs (grid), digits-cnn on magnet, "
            f"{args.workers} workers, {args.kills} kills, seed {args.seed}"
        )

        ref_dir, kill_dir, int_dir = base / "reference", base / "killed", base / "sigint"
        ref = reference(space_path, ref_dir, args.workers, sp.name)
        ref_points = dict(_points(ref_dir / "results.sqlite", sp.name))
        version = _sql(ref_dir / "results.sqlite", "SELECT model_version FROM runs")[0][0]
        console.print(
            f"reference run: {ref['points']} points in {ref['wall_s']:.1f} s "
            f"({ref['designs_per_s']:.2f} designs/s), first batch committed after "
            f"{ref['first_commit_s']:.1f} s"
        )

        # Kill times: from half the reference's start-up (time to its first commit, S) to S
        # plus 1.5x its evaluation time per kill, so about a third of the kills land in the
        # start-up (forkserver and pool starting) and the attempts together evaluate about
        # half of the space: every kill finds a run in progress, --resume finishes it.
        s = ref["first_commit_s"]
        lo = args.min_after if args.min_after is not None else 0.5 * s
        hi = args.max_after
        if hi is None:
            hi = s + 1.5 * (ref["wall_s"] - s) / max(1, args.kills)
        console.print(f"kill times: uniform in [{lo:.1f}, {hi:.1f}] s after each start")
        kills = []
        for i in range(args.kills):
            after = rng.uniform(lo, hi)
            kills.append(
                kill_once(
                    i,
                    space_path,
                    kill_dir,
                    args.workers,
                    after,
                    sp.name,
                    args.checkpoint_after_kill,
                )
            )
        done = finish(space_path, kill_dir, args.workers, sp.name, ref_points, sp.size)
        sigint = ctrl_c(space_path, int_dir, args.workers, sp.name, rng)

    table = Table(title=f"SIGKILL of `dse run` ({sp.size} designs, {args.workers} workers)")
    for col in (
        "kill #",
        "after s",
        "points before",
        "points after",
        "run",
        "gone after ms",
        "strays",
        "integrity",
        "dup keys",
        "changed",
    ):
        table.add_column(col, justify="right")
    for k in kills:
        procs = k.get("run_processes")
        table.add_row(
            str(k["kill"]),
            f"{k['after_s']:.1f}",
            str(k["points_before"]),
            str(k["points_after"]),
            f"killed ({sum(procs.values())} procs)" if procs else _ended(k),
            _fmt(k["gone_s"] * 1e3 if k.get("gone_s") is not None else None, ".0f"),
            str(len(k.get("strays", []))),
            k["integrity"],
            str(k["duplicates"]),
            str(k["changed"]),
        )
    console.print(table)
    for k in kills:
        if k.get("error"):
            console.print(f"kill #{k['kill']}: the run failed: {k['error']}", highlight=False)
    if done.get("error"):
        console.print(f"finish: the run failed: {done['error']}", highlight=False)
    console.print(
        f"finish (--resume): {done['points_before']} -> {done['points']} of {sp.size} points in "
        f"{done['wall_s']:.1f} s, integrity {done['integrity']}, duplicates "
        f"{done['duplicates']}, same keys as the reference: {done['same_keys_as_reference']}, "
        f"reference points missing or different: {done['metrics_differ_from_reference']}"
    )
    if "stop_s" in sigint:
        console.print(
            f"Ctrl-C (SIGINT to the group {sigint['after_s']:.1f} s after start, "
            f"{sigint['points_at_signal']} points committed): exit {sigint['rc']} after "
            f"{sigint['stop_s']:.3f} s (target < {SIGINT_TARGET_S:g} s), processes gone "
            f"{_fmt(sigint['gone_s'], '.3f')} s later, {sigint['points_kept']} points kept, "
            f"resume command on stderr: {sigint['resume_command_on_stderr']}"
        )
        console.print(f"  stderr: {sigint['stderr']}", highlight=False, soft_wrap=True)
    ok = all(k["ok"] for k in kills) and done["ok"] and sigint["ok"]
    result = {
        "machine": {
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load_start,
            "load_average_at_end": os.getloadavg(),
        },
        "command": "python " + " ".join(sys.argv),
        "model_version": version,
        "space": {"size": sp.size, "parameters": _space(args.tiny)["parameters"]},
        "workers": args.workers,
        "seed": args.seed,
        "checkpoint_after_kill": args.checkpoint_after_kill,
        "reference": ref,
        "kill_after_range_s": [lo, hi],
        "kills": kills,
        "finish": done,
        "sigint": sigint,
        "total_wall_s": time.monotonic() - t0,
        "all_checks_passed": ok,
    }
    path = RESULTS_CHECKPOINT if args.checkpoint_after_kill else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result, indent=2)
    console.print(f"{'all checks passed' if ok else 'CHECKS FAILED'}; wrote {path}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
