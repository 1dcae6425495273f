"""A crash-safe SQLite file that refuses to touch anything it did not create.

Public: `SqliteStore`.

The pattern (kept free of DSE specifics so other result caches can reuse it):
- **Identity.** Every file carries `PRAGMA application_id` (which program) and `user_version`
  (which schema). A file without our id that already holds tables is foreign; a file that is
  not SQLite, or fails `PRAGMA quick_check`, is corrupt. Both raise `StoreError` *before*
  anything is written - in particular before `journal_mode=WAL`, which rewrites the header.
- **Versions.** An older file is brought up to date by the caller's `migrations` (version ->
  statements that make it version + 1), inside the same write lock, so two processes opening
  it at once migrate it once; a file with no migration path, or from a newer picojoule, is
  refused untouched.
- **Crash safety.** WAL journal, one short `BEGIN IMMEDIATE` transaction per batch of
  results. A process killed with SIGKILL loses at most the batch it had not committed; WAL
  with `synchronous=NORMAL` is durable across process death (only power loss can drop the
  last commits - https://www.sqlite.org/wal.html, "synchronous").
- **Concurrency.** Any number of processes may open the file; readers never block, writers
  queue on SQLite's lock with a busy timeout. Uniqueness comes from primary keys plus
  `INSERT OR IGNORE`, never from checking first and writing later.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from picojoule.dse.errors import StoreError

__all__ = ["SqliteStore"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
_BUSY_TIMEOUT_S = 60.0


class SqliteStore:
    """One SQLite file with a checked identity; use `open`, then `read()` / `write()`."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        app_id: int,
        schema_version: int,
        schema: str,
        kind: str,
        create: bool = True,
        migrations: Mapping[int, str] | None = None,
    ) -> SqliteStore:
        """Open (or, with `create`, initialise) the store at `path`.

        app_id: 32-bit id stamped into the header; schema: CREATE statements run once, on a
        new file; kind: what the file is, for messages ("picojoule DSE results");
        migrations: version v -> statements taking a version-v file to v + 1.
        """
        migrations = dict(migrations or {})
        p = Path(path)
        if not p.exists():
            if not create:
                raise StoreError(f"no {kind} at {p}; run `picojoule dse run` first")
            p.parent.mkdir(parents=True, exist_ok=True)
        elif p.is_dir():
            raise StoreError(f"{p} is a directory, not a {kind} file")
        else:
            _check_magic(p, kind)
        try:
            conn = sqlite3.connect(p, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {p} as a {kind}: {e}") from None
        try:
            _check_identity(
                conn,
                p,
                app_id=app_id,
                schema_version=schema_version,
                kind=kind,
                migratable=set(migrations),
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            with _immediate(conn):
                if conn.execute("PRAGMA application_id").fetchone()[0] != app_id:
                    for statement in _statements(schema):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA application_id={int(app_id)}")
                    conn.execute(f"PRAGMA user_version={int(schema_version)}")
                # Re-read under the lock: another process may have migrated it meanwhile.
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                for v in range(version, schema_version):
                    for statement in _statements(migrations[v]):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={v + 1}")
            # The id and schema now sit in the WAL; copy them into the main file at once, so a
            # process killed before SQLite's first automatic checkpoint leaves a file whose
            # header already says what it is (readers that check the header accept it).
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except StoreError:
            conn.close()
            raise
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreError(f"{p} is corrupt or not a {kind} ({e}); left untouched") from None
        return cls(p, conn)

    def another(self) -> SqliteStore:
        """A second connection to this (already checked) file, e.g. for another thread.

        Never re-`open` a store this process already has open: `open` reads the header with
        a plain file descriptor, and closing any descriptor of a file drops every POSIX lock
        the process holds on it - including the first connection's WAL locks, after which
        other processes read a stale snapshot (and a checkpoint can corrupt the file).
        SQLite's own connections share their locks safely."""
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return SqliteStore(self.path, conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction (`BEGIN IMMEDIATE`: take the write lock up front, so
        two writers queue instead of deadlocking on a read-to-write upgrade)."""
        try:
            if self._conn.in_transaction:  # left open by an interrupt between BEGIN and try
                self._conn.execute("ROLLBACK")
            with _immediate(self._conn):
                yield self._conn
        except sqlite3.DatabaseError as e:
            raise StoreError(f"write to {self.path} failed: {e}") from None

    def read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"read from {self.path} failed: {e}") from None


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _statements(schema: str) -> list[str]:
    """Split a schema of CREATE statements (no string literals) on ';'. Not `executescript`:
    it would COMMIT first and run the schema outside the IMMEDIATE lock."""
    return [s.strip() for s in schema.split(";") if s.strip()]


def _check_magic(p: Path, kind: str) -> None:
    try:
        with p.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise StoreError(f"cannot read {p}: {e.strerror}") from None
    if head and head != _SQLITE_MAGIC:  # an empty file holds no data: safe to initialise
        raise StoreError(
            f"{p} is not an SQLite database (corrupt, or some other file); it was left "
            f"untouched - move it away or choose another path for the {kind}"
        )


def _check_identity(
    conn: sqlite3.Connection,
    p: Path,
    *,
    app_id: int,
    schema_version: int,
    kind: str,
    migratable: set[int],
) -> None:
    found_id = conn.execute("PRAGMA application_id").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if found_id != app_id and (found_id != 0 or tables):
        raise StoreError(
            f"{p} is an SQLite database of another program (application_id {found_id:#x}, "
            f"{tables} schema objects), not a {kind}; it was left untouched"
        )
    if found_id == app_id:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        # An older version with a migration path is migrated under the write lock, later.
        path_up = all(v in migratable for v in range(version, schema_version))
        if version > schema_version or not path_up:
            raise StoreError(
                f"{p} uses {kind} schema version {version}; this picojoule reads version "
                f"{schema_version}. Open it with the picojoule that wrote it, or start anew"
            )
        status = conn.execute("PRAGMA quick_check").fetchone()[0]
        if status != "ok":
            raise StoreError(f"{p} failed its integrity check ({status}); left untouched")
