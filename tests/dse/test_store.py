"""Results database: identity checks that never touch a foreign or corrupt file, resume rules,
idempotent writes, and concurrent writers."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from picojoule.dse.errors import StoreError
from picojoule.dse.results import ResultsDB, RunInfo

SRC = Path(__file__).resolve().parents[2] / "src"


def _info(**over: object) -> RunInfo:
    base = dict(
        run_id="r",
        space_digest="d1",
        space={"name": "r"},
        workload="w",
        workload_key="wk",
        model_version="m1",
    )
    return RunInfo(**{**base, **over})  # type: ignore[arg-type]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_record_is_idempotent_and_ordered(tmp_path: Path) -> None:
    with ResultsDB.open(tmp_path / "db.sqlite") as db:
        run = db.start_run(_info(), resume=False)
        assert (
            db.record(run, [("k1", {"a": 1}, {"e": 1.5}, None), ("k2", {"a": 2}, None, "no")]) == 2
        )
        assert (
            db.record(
                run,
                [("k1", {"a": 1}, {"e": 9.9}, None), ("k3", {"a": 3}, {"e": 3}, None)],
                generation=4,
            )
            == 1
        )
    with ResultsDB.open(tmp_path / "db.sqlite", create=False) as db:
        pts = db.points("r")
    assert [(p.design_key, p.seq, p.generation) for p in pts] == [
        ("k1", 0, 0),
        ("k2", 1, 0),
        ("k3", 2, 4),
    ]
    assert pts[0].metrics == {"e": 1.5}  # the first write wins; a repeat changes nothing
    assert pts[1].metrics is None and pts[1].error == "no" and not pts[1].ok


def test_cache_is_shared_across_runs_of_the_same_workload_and_model(tmp_path: Path) -> None:
    with ResultsDB.open(tmp_path) as db:  # a directory means <dir>/results.sqlite
        a = db.start_run(_info(run_id="a"), resume=False)
        db.record(a, [("k1", {"a": 1}, {"e": 1.0}, None)])
        b = db.start_run(_info(run_id="b"), resume=False)
        assert db.adopt_cached(b, ["k1", "k9"]) == {"k1"}
        c = db.start_run(_info(run_id="c", model_version="m2"), resume=False)
        assert db.adopt_cached(c, ["k1"]) == set()
        assert [p.metrics for p in db.points("b")] == [{"e": 1.0}]
        assert db.points("b", ["k9"]) == []
    assert (tmp_path / "results.sqlite").exists()


def test_resume_rules(tmp_path: Path) -> None:
    with ResultsDB.open(tmp_path / "db.sqlite") as db:
        db.start_run(_info(), resume=False)
        with pytest.raises(StoreError, match="already exists.*--resume"):
            db.start_run(_info(), resume=False)
        assert db.start_run(_info(), resume=True).run_id == "r"
        with pytest.raises(StoreError, match="different design space"):
            db.start_run(_info(space_digest="d2"), resume=True)
        with pytest.raises(StoreError, match="another version of workload"):
            db.start_run(_info(workload_key="wk2"), resume=True)
        with pytest.raises(StoreError, match="cost model m1, this picojoule has m2"):
            db.start_run(_info(model_version="m2"), resume=True)
        with pytest.raises(StoreError, match="no run 'zz'.*runs there: r"):
            db.run("zz")
        db.start_run(_info(run_id="s"), resume=False)
        with pytest.raises(StoreError, match="several runs"):
            db.run()


def test_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no picojoule DSE results database"):
        ResultsDB.open(tmp_path / "nope.sqlite", create=False)
    assert not (tmp_path / "nope.sqlite").exists()


def test_garbage_file_is_refused_and_untouched(tmp_path: Path) -> None:
    p = tmp_path / "db.sqlite"
    p.write_bytes(b"not a database at all\n" * 100)
    before = _sha(p)
    with pytest.raises(StoreError, match="not an SQLite database.*left\\s+untouched"):
        ResultsDB.open(p)
    assert _sha(p) == before


def test_foreign_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    p = tmp_path / "db.sqlite"
    conn = sqlite3.connect(p)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    before = _sha(p)
    with pytest.raises(StoreError, match="another program"):
        ResultsDB.open(p)
    assert _sha(p) == before


def test_corrupt_page_is_refused_and_untouched(tmp_path: Path) -> None:
    p = tmp_path / "db.sqlite"
    with ResultsDB.open(p) as db:
        run = db.start_run(_info(), resume=False)
        db.record(run, [(f"k{i}", {"i": i}, {"e": float(i)}, None) for i in range(300)])
    data = bytearray(p.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    data[2 * page : 3 * page] = b"\xff" * page  # smash one b-tree page, keep the header
    p.write_bytes(bytes(data))
    before = _sha(p)
    with pytest.raises(StoreError, match="corrupt|integrity"), ResultsDB.open(p) as db:
        db.points("r")
    assert _sha(p) == before
    assert not Path(str(p) + "-wal").exists() or Path(str(p) + "-wal").stat().st_size == 0


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "db.sqlite"
    ResultsDB.open(p).close()
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA user_version=99")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        ResultsDB.open(p)


_WRITER = textwrap.dedent(
    """
    import sys
    from picojoule.dse.results import ResultsDB, RunInfo
    path, start = sys.argv[1], int(sys.argv[2])
    info = RunInfo(run_id="r", space_digest="d", space={}, workload="w", workload_key="wk",
                   model_version="m")
    with ResultsDB.open(path) as db:
        run = db.start_run(info, resume=True)
        for i in range(start, start + 60):
            db.record(run, [(f"k{i}", {"i": i}, {"e": float(i)}, None)])
    """
)


def test_concurrent_writers_neither_lose_nor_duplicate(tmp_path: Path) -> None:
    p = tmp_path / "db.sqlite"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    with ResultsDB.open(p) as db:
        db.start_run(
            RunInfo(
                run_id="r",
                space_digest="d",
                space={},
                workload="w",
                workload_key="wk",
                model_version="m",
            ),
            resume=False,
        )
    # Two processes, overlapping key ranges 0..59 and 30..89, writing at the same time.
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(p), str(s)], env=env) for s in (0, 30)
    ]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0]
    with ResultsDB.open(p) as db:
        pts = db.points("r")
    keys = [pt.design_key for pt in pts]
    assert sorted(keys, key=lambda k: int(k[1:])) == [f"k{i}" for i in range(90)]
    assert len({pt.seq for pt in pts}) == 90
