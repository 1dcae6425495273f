"""The study's result cache: one SQLite database (WAL), one row per (study key, recipe).

A row is written in one transaction only after its recipe finished, so Ctrl-C or kill -9 loses
at most the recipe in flight and never leaves a half-written row. A file that is not our
database is refused with a clear message and never overwritten.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from picojoule.errors import PicojouleError
from picojoule.fsio import OutputPathError, check_cache_path

__all__ = ["ResultCache", "CacheError", "SCHEMA_VERSION", "check_cache"]

SCHEMA_VERSION = 1
_APP_ID = 0x706A6F75  # "pjou": marks the file as ours (PRAGMA application_id)


class CacheError(PicojouleError):
    """The cache file is unreadable, corrupt or not a picojoule study cache."""


def check_cache(path: Path) -> Path:
    """Refuse, before any work, a cache file picojoule did not write (empty, not SQLite,
    another program's database, a symlink); see `picojoule.fsio.check_cache_path`."""
    try:
        return check_cache_path(path, app_id=_APP_ID, kind="picojoule study cache")
    except OutputPathError as e:
        raise CacheError(str(e)) from None


class ResultCache:
    def __init__(self, path: Path) -> None:
        self.path = check_cache(Path(path))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheError(f"cannot create {self.path.parent}: {e.strerror}") from None
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            if fresh:
                self.db.execute(f"PRAGMA application_id={_APP_ID}")
                self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self.db.execute(
                    "CREATE TABLE IF NOT EXISTS results (study TEXT, recipe TEXT, payload TEXT,"
                    " created REAL, PRIMARY KEY (study, recipe))"
                )
            app_id = self.db.execute("PRAGMA application_id").fetchone()[0]
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise CacheError(
                f"{self.path} is not a readable picojoule cache ({e}); it was left untouched - "
                "move it away or pass --cache to use another file"
            ) from None
        if app_id != _APP_ID:
            self.db.close()
            raise CacheError(
                f"{self.path} is a database picojoule did not write; it was left untouched - "
                "pass --cache with another path"
            )
        if version != SCHEMA_VERSION:
            self.db.close()
            raise CacheError(
                f"{self.path} has cache schema {version}, this picojoule writes "
                f"{SCHEMA_VERSION}; delete the file to rebuild it"
            )

    def get(self, study: str, recipe: str) -> dict | None:
        row = self.db.execute(
            "SELECT payload FROM results WHERE study=? AND recipe=?", (study, recipe)
        ).fetchone()
        if row is None:
            return None
        try:
            return json.loads(row[0])
        except json.JSONDecodeError:
            return None  # an unreadable row is recomputed and replaced

    def put(self, study: str, recipe: str, payload: dict) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
            (study, recipe, json.dumps(payload), time.time()),
        )

    def close(self) -> None:
        self.db.close()
