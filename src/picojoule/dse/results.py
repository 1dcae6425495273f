"""The DSE results database: runs, and evaluated designs keyed by (design, workload, model).

Public: `RunInfo`, `Point`, `ResultsDB`, `DB_FILENAME`.

Three tables on a `SqliteStore`:
- `results`: one row per (design key, workload key, model version) - the cache. A design
  evaluated once under the same workload and cost-model version is never evaluated again,
  whichever run asks for it.
- `runs`: one row per run (a design space started in this file), with the space as written.
- `run_points`: which cached results belong to which run, in the order they finished, with
  the search round (NSGA-II generation) that proposed them - NSGA-II replays both on resume.
A result and its run link are written in one transaction, so a SIGKILL leaves either both or
neither; the primary keys make a second write of the same point a no-op.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from picojoule.dse.errors import StoreError
from picojoule.dse.store import SqliteStore

__all__ = ["RunInfo", "Point", "ResultsDB", "DB_FILENAME"]

DB_FILENAME = "results.sqlite"
_APP_ID = 0x706A6473  # "pjds": picojoule design-space results
_SCHEMA_VERSION = 1
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
)
"""


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
        )
        return cls(store)

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

    def record(
        self,
        run: RunInfo,
        items: Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any] | None, str | None]],
        *,
        generation: int = 0,
    ) -> int:
        """Store evaluated designs `(key, design, metrics, error)` and link them to `run`, in
        one transaction; returns how many new points the run gained (repeats add none)."""
        now = time.time()
        batch = list(items)
        with self._store.write() as conn:
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
