"""The DSE results database: runs, and evaluated designs keyed by (design, workload, model).

Public: `RunInfo`, `Point`, `Claimed`, `ResultsDB`, `DB_FILENAME`.

Four tables on a `SqliteStore`:
- `results`: one row per (design key, workload key, model version) - the cache. A design
  evaluated once under the same workload and cost-model version is never evaluated again,
  whichever run asks for it.
- `runs`: one row per run (a design space started in this file), with the space as written.
- `run_points`: which cached results belong to which run, in the order they finished, with
  the search round (NSGA-II generation) that proposed them - NSGA-II replays both on resume.
- `claims` (schema 2): which process is evaluating which design of a run, until when. Two
  processes resuming one run split its designs: each claims a batch before evaluating it and
  skips designs another live process holds. A claim is taken over once its lease expired or,
  on the same host, once its holder is dead (pid + start time, `picojoule.procs`); so a
  design is evaluated twice only when a holder stalls past its lease, never after its commit.
A result, its run link and the release of its claim are written in one transaction, so a
SIGKILL leaves either all or none; the primary keys make a second write of the same point a
no-op. A schema-1 file (no claims) is migrated in place when opened.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from picojoule.dse.errors import StoreError
from picojoule.dse.store import SqliteStore
from picojoule.procs import ProcessId, alive

__all__ = ["RunInfo", "Point", "Claimed", "ResultsDB", "DB_FILENAME"]

DB_FILENAME = "results.sqlite"
_APP_ID = 0x706A6473  # "pjds": picojoule design-space results
_SCHEMA_VERSION = 2
_KIND = "picojoule DSE results database"
_CHUNK = 500  # keys per IN (...) query: under SQLite's bound-parameter limit
_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    space_digest TEXT NOT NULL,
    space_json TEXT NOT NULL,
    workload TEXT NOT NULL,
    workload_key TEXT NOT NULL,
    model_version TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE results (
    design_key TEXT NOT NULL,
    workload_key TEXT NOT NULL,
    model_version TEXT NOT NULL,
    design_json TEXT NOT NULL,
    metrics_json TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (design_key, workload_key, model_version)
);
CREATE TABLE run_points (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    design_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    PRIMARY KEY (run_id, design_key)
);
CREATE TABLE claims (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    design_key TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (run_id, design_key)
)
"""
# version -> statements that take a file of that version to the next
_MIGRATIONS = {
    1: """
CREATE TABLE claims (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    design_key TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (run_id, design_key)
)
"""
}


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """A run: one design space evaluated on one workload by one cost-model version."""

    run_id: str
    space_digest: str
    space: dict[str, Any]
    workload: str
    workload_key: str
    model_version: str
    created_at: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Point:
    """One evaluated design: metrics, or the error that made it unmappable."""

    design_key: str
    design: dict[str, Any]
    metrics: dict[str, Any] | None
    error: str | None
    seq: int
    generation: int  # search round that proposed it (NSGA-II generation; 0 otherwise)

    @property
    def ok(self) -> bool:
        return self.metrics is not None


@dataclass(frozen=True, kw_only=True)
class Claimed:
    """What `ResultsDB.claim` found for each asked-for design key."""

    mine: list[str] = field(default_factory=list)  # now held by the caller: evaluate these
    cached: list[str] = field(default_factory=list)  # already computed: linked to the run
    busy: list[str] = field(default_factory=list)  # held by another live process


class ResultsDB:
    """Runs and results in one SQLite file (see the module docstring)."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.path = store.path

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> ResultsDB:
        p = Path(path)
        if p.is_dir():
            p = p / DB_FILENAME
        store = SqliteStore.open(
            p,
            app_id=_APP_ID,
            schema_version=_SCHEMA_VERSION,
            schema=_SCHEMA,
            kind=_KIND,
            create=create,
            migrations=_MIGRATIONS,
        )
        return cls(store)

    def another(self) -> ResultsDB:
        """A second connection to the same file, for another thread (see `SqliteStore.another`
        for why this, not `open`, inside a process that has the file open)."""
        return ResultsDB(self._store.another())

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- runs ---------------------------------------------------------------------------------

    def runs(self) -> list[RunInfo]:
        rows = self._store.read(
            "SELECT run_id, space_digest, space_json, workload, workload_key, model_version, "
            "created_at FROM runs ORDER BY created_at"
        )
        return [
            RunInfo(
                run_id=r[0],
                space_digest=r[1],
                space=json.loads(r[2]),
                workload=r[3],
                workload_key=r[4],
                model_version=r[5],
                created_at=r[6],
            )
            for r in rows
        ]

    def run(self, run_id: str | None = None) -> RunInfo:
        """The run named `run_id`, or the only run in the file when `run_id` is None."""
        runs = self.runs()
        if run_id is None:
            if len(runs) == 1:
                return runs[0]
            if not runs:
                raise StoreError(f"{self.path} holds no run yet")
            names = ", ".join(r.run_id for r in runs)
            raise StoreError(f"{self.path} holds several runs ({names}); name one with --run")
        for r in runs:
            if r.run_id == run_id:
                return r
        names = ", ".join(r.run_id for r in runs) or "none"
        raise StoreError(f"no run {run_id!r} in {self.path}; runs there: {names}")

    def start_run(self, info: RunInfo, *, resume: bool) -> RunInfo:
        """Create the run, or with `resume` continue it; refuses anything ambiguous."""
        with self._store.write() as conn:
            row = conn.execute(
                "SELECT space_digest, workload_key, model_version FROM runs WHERE run_id = ?",
                (info.run_id,),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        info.run_id,
                        info.space_digest,
                        json.dumps(info.space, sort_keys=True),
                        info.workload,
                        info.workload_key,
                        info.model_version,
                        time.time(),
                    ),
                )
                return self._fresh(info)
        if not resume:
            raise StoreError(
                f"run {info.run_id!r} already exists in {self.path}; pass --resume to continue "
                "it, or --out another directory to start over"
            )
        digest, workload_key, model_version = row
        if digest != info.space_digest:
            raise StoreError(
                f"run {info.run_id!r} in {self.path} was started from a different design space; "
                "resume with the original file, or rename the space (its `name`) to start a new "
                "run in this file - designs evaluated before are reused from its cache"
            )
        if workload_key != info.workload_key:
            raise StoreError(
                f"run {info.run_id!r} was evaluated on another version of workload "
                f"{info.workload!r}; start a new run (rename the space or use another --out)"
            )
        if model_version != info.model_version:
            raise StoreError(
                f"run {info.run_id!r} was evaluated by cost model {model_version}, this "
                f"picojoule has {info.model_version}; mixing them would compare unlike numbers. "
                "Start a new run (rename the space or use another --out)"
            )
        return self.run(info.run_id)

    def _fresh(self, info: RunInfo) -> RunInfo:
        return RunInfo(**{**info.__dict__, "created_at": time.time()})

    # --- results ------------------------------------------------------------------------------

    def points(self, run_id: str, keys: Iterable[str] | None = None) -> list[Point]:
        """The run's points in the order they were stored (only `keys`, when given)."""
        sql = (
            "SELECT p.design_key, r.design_json, r.metrics_json, r.error, p.seq, p.generation "
            "FROM run_points p JOIN runs u ON u.run_id = p.run_id "
            "JOIN results r ON r.design_key = p.design_key AND r.workload_key = u.workload_key "
            "AND r.model_version = u.model_version WHERE p.run_id = ?"
        )
        if keys is None:
            rows = self._store.read(sql + " ORDER BY p.seq", (run_id,))
        else:
            wanted, rows = list(keys), []
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows += self._store.read(sql + f" AND p.design_key IN ({marks})", (run_id, *chunk))
            rows.sort(key=lambda r: r[4])
        return [
            Point(
                design_key=k,
                design=json.loads(d),
                metrics=json.loads(m) if m is not None else None,
                error=e,
                seq=s,
                generation=n,
            )
            for k, d, m, e, s, n in rows
        ]

    def done_keys(self, run_id: str) -> set[str]:
        rows = self._store.read("SELECT design_key FROM run_points WHERE run_id = ?", (run_id,))
        return {r[0] for r in rows}

    def adopt_cached(self, run: RunInfo, keys: Iterable[str], *, generation: int = 0) -> set[str]:
        """Link results already computed (by any run, same workload and model) to `run`;
        returns the keys found in the cache."""
        wanted = list(dict.fromkeys(keys))
        found: set[str] = set()
        with self._store.write() as conn:
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                hits = conn.execute(
                    f"SELECT design_key FROM results WHERE workload_key = ? AND model_version = ? "
                    f"AND design_key IN ({marks})",
                    (run.workload_key, run.model_version, *chunk),
                ).fetchall()
                found.update(h[0] for h in hits)
                _link(conn, run.run_id, [h[0] for h in hits], generation)
        return found

    def claim(
        self,
        run: RunInfo,
        keys: Iterable[str],
        *,
        holder: ProcessId,
        lease_s: float,
        generation: int = 0,
    ) -> Claimed:
        """In one transaction: link the keys already computed (as `adopt_cached`), then claim
        the rest for `holder` for `lease_s` seconds - each unclaimed, or claimed by `holder`,
        or by a holder whose lease expired or who is dead. The others are busy."""
        wanted = list(dict.fromkeys(keys))
        mine: list[str] = []
        cached: list[str] = []
        busy: list[str] = []
        me = str(holder)
        dead: dict[str, bool] = {}  # holder -> known dead (one liveness check per holder)
        with self._store.write() as conn:
            now = time.time()
            for i in range(0, len(wanted), _CHUNK):
                chunk = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(chunk))
                hits = {
                    h[0]
                    for h in conn.execute(
                        f"SELECT design_key FROM results WHERE workload_key = ? AND "
                        f"model_version = ? AND design_key IN ({marks})",
                        (run.workload_key, run.model_version, *chunk),
                    )
                }
                held = {
                    k: (h, exp)
                    for k, h, exp in conn.execute(
                        f"SELECT design_key, holder, expires_at FROM claims WHERE run_id = ? "
                        f"AND design_key IN ({marks})",
                        (run.run_id, *chunk),
                    )
                }
                found = [k for k in chunk if k in hits]
                _link(conn, run.run_id, found, generation)
                cached += found
                free: list[str] = []
                for k in chunk:
                    if k in hits:
                        continue
                    if k in held:
                        other, expires_at = held[k]
                        if other != me and expires_at > now:
                            if other not in dead:
                                pid = ProcessId.parse(other)
                                dead[other] = pid is not None and alive(pid) is False
                            if not dead[other]:
                                busy.append(k)
                                continue
                    free.append(k)
                conn.executemany(
                    "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?)",
                    [(run.run_id, k, me, now + lease_s) for k in free],
                )
                mine += free
        return Claimed(mine=mine, cached=cached, busy=busy)

    def renew(self, run_id: str, holder: ProcessId, lease_s: float) -> int:
        """Extend every claim `holder` has on the run by `lease_s` from now; returns how many."""
        with self._store.write() as conn:
            cur = conn.execute(
                "UPDATE claims SET expires_at = ? WHERE run_id = ? AND holder = ?",
                (time.time() + lease_s, run_id, str(holder)),
            )
            return cur.rowcount

    def release(self, run_id: str, holder: ProcessId) -> int:
        """Drop every claim `holder` has on the run (it stops); returns how many."""
        with self._store.write() as conn:
            cur = conn.execute(
                "DELETE FROM claims WHERE run_id = ? AND holder = ?", (run_id, str(holder))
            )
            return cur.rowcount

    def claims(self, run_id: str) -> dict[str, tuple[str, float]]:
        """design key -> (holder, lease end) of the run's open claims."""
        rows = self._store.read(
            "SELECT design_key, holder, expires_at FROM claims WHERE run_id = ?", (run_id,)
        )
        return {k: (h, e) for k, h, e in rows}

    def record(
        self,
        run: RunInfo,
        items: Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any] | None, str | None]],
        *,
        generation: int = 0,
    ) -> int:
        """Store evaluated designs `(key, design, metrics, error)`, link them to `run` and
        drop their claims, in one transaction; returns how many new points the run gained
        (repeats add none)."""
        now = time.time()
        batch = list(items)
        with self._store.write() as conn:
            for i in range(0, len(batch), _CHUNK):
                chunk = [key for key, *_ in batch[i : i + _CHUNK]]
                conn.execute(
                    f"DELETE FROM claims WHERE run_id = ? AND design_key IN "
                    f"({','.join('?' * len(chunk))})",
                    (run.run_id, *chunk),
                )
            conn.executemany(
                "INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        run.workload_key,
                        run.model_version,
                        json.dumps(dict(design), sort_keys=True),
                        json.dumps(dict(metrics), sort_keys=True) if metrics is not None else None,
                        error,
                        now,
                    )
                    for key, design, metrics, error in batch
                ],
            )
            return _link(conn, run.run_id, [key for key, *_ in batch], generation)


def _link(conn: Any, run_id: str, keys: list[str], generation: int) -> int:
    """Append `keys` to the run's points with dense sequence numbers; keys the run already
    holds are skipped. Returns how many were added."""
    start = conn.execute(
        "SELECT COALESCE(MAX(seq), -1) + 1 FROM run_points WHERE run_id = ?", (run_id,)
    ).fetchone()[0]
    added = 0
    for key in keys:
        cur = conn.execute(
            "INSERT OR IGNORE INTO run_points VALUES (?, ?, ?, ?)",
            (run_id, key, start + added, generation),
        )
        added += cur.rowcount
    return added
