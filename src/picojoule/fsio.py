"""How picojoule writes files: atomically, never through a planted symlink, strict JSON.

Public:
- `atomic_write_bytes(path, data)`, `atomic_write_text(path, text)`, `atomic_writer(path)`
  (a binary file object for streaming writers such as `torch.save`), `save_figure(fig, path)`;
- `dumps_json(obj, **kw)`, `write_json(path, obj, **kw)`: strict JSON (RFC 8259);
- `prepare_out_dir(path)`: validate an `--out` directory up front; a context manager that
  removes the directories it created if the run fails before writing into them;
- `check_out_file(path)`: validate a single output file option (`--json`, `--plot`);
- `check_cache_path(path, app_id=..., kind=...)`: refuse a `--cache` file picojoule did not
  write, before any work; `SQLITE_MAGIC`, `sqlite_application_id(path)`.

Why: every final file is written as a fresh `mkstemp` file in the target directory (O_EXCL,
mode 0600 then chmod to the umask default), fsynced, then `os.replace`d onto the final name.
The final path is never opened for writing, so a symlink planted under that name is replaced
by the new file, not followed, and a crash leaves either the old file or the new one, never a
truncated one. SQLite caches cannot be written that way, so `check_cache_path` refuses a
symlink (or a symlinked `-wal`/`-shm`/`-journal` side file) instead.

Stdlib only: importable from `picojoule.gpu` (torch + numpy only) and at CLI start-up.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import os
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from picojoule.errors import PicojouleError

__all__ = [
    "OutputPathError",
    "SQLITE_MAGIC",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "save_figure",
    "dumps_json",
    "write_json",
    "prepare_out_dir",
    "check_out_file",
    "check_cache_path",
    "sqlite_application_id",
]

SQLITE_MAGIC = b"SQLite format 3\x00"  # first 16 bytes of every SQLite 3 database file
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
_TMP_PREFIX = ".picojoule-"


class OutputPathError(PicojouleError):
    """An output or cache path picojoule cannot (or must not) write."""


@functools.cache
def _umask() -> int:
    # os.umask can only be read by setting it; read once, restore at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that becomes `path` only if the `with` body finishes.

    The temporary file lives in `path`'s directory (same file system, so `os.replace` is
    atomic) and is removed on any failure, Ctrl-C included.
    """
    target = Path(path)
    if target.is_dir() and not target.is_symlink():
        raise OutputPathError(f"{target} is a directory; picojoule writes a file there")
    try:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".tmp", dir=target.parent or ".")
    except OSError as e:
        raise OutputPathError(f"cannot write {target}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide reports from the group
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (see module docstring); returns `path`."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def save_figure(fig: Any, path: str | Path, **savefig_kw: Any) -> Path:
    """`fig.savefig` into memory, then an atomic write: matplotlib itself opens the final path
    with a plain `open(..., "wb")`, which follows symlinks."""
    target = Path(path)
    buf = io.BytesIO()
    savefig_kw.setdefault("format", target.suffix.lstrip(".") or "png")
    fig.savefig(buf, **savefig_kw)
    return atomic_write_bytes(target, buf.getvalue())


# --- strict JSON -------------------------------------------------------------------------------


def _finite(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON null)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def dumps_json(obj: Any, *, default: Callable[[Any], Any] | None = None, **kw: Any) -> str:
    """Strict JSON text: NaN and +-Infinity become `null`, never the bare `NaN`/`Infinity`
    tokens Python emits by default (which `JSON.parse`, jq and most other readers reject).

    Null, not an error: a non-finite number in a report means "not available" (a ratio with
    a zero denominator, a peak the datasheet lacks); refusing would throw away a finished
    long run, and the HTML report renders null as a blank cell. Values produced by `default`
    (e.g. numpy scalars) are cleaned the same way.
    """
    wrapped = None if default is None else (lambda value: _finite(default(value)))
    return json.dumps(_finite(obj), allow_nan=False, default=wrapped, **kw)


def write_json(path: str | Path, obj: Any, **kw: Any) -> Path:
    """`dumps_json(obj, **kw)` plus a final newline, written atomically to `path`."""
    return atomic_write_text(path, dumps_json(obj, **kw) + "\n")


# --- output directories and files ---------------------------------------------------------------


def _probe(directory: Path, option: str, what: str) -> None:
    """Prove `directory` writable with a random-named file (a fixed name could be a planted
    symlink)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".probe", dir=directory)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise OutputPathError(
            f"cannot write {what} to {directory}: {e.strerror}; pass {option} with a writable "
            "directory"
        ) from None


def _make_dirs(d: Path, option: str, what: str) -> list[Path]:
    """mkdir -p `d`; returns the directories created, outermost first."""
    missing: list[Path] = []
    p = d
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created: list[Path] = []
    try:
        for m in reversed(missing):
            os.mkdir(m)
            created.append(m)
    except OSError as e:
        _remove_empty(created)
        reason = "a parent is not a directory" if e.errno == 20 else e.strerror
        raise OutputPathError(
            f"cannot write {what} to {d}: {reason}; pass {option} with a writable directory"
        ) from None
    return created


def _remove_empty(created: list[Path]) -> None:
    """Remove the directories we created, innermost first, while they are empty."""
    for d in reversed(created):
        try:
            os.rmdir(d)
        except OSError:
            return  # something was written (or someone else uses it): keep it


@contextlib.contextmanager
def prepare_out_dir(
    path: str | Path, *, option: str = "--out", what: str = "the output"
) -> Iterator[Path]:
    """Check and create the output directory `path` before a long run; yields the directory
    to write into.

    Refuses, with one `OutputPathError` line: an existing file, a dangling symlink, a path
    below a file, a directory that is not writable. A symlink to a directory is followed
    explicitly (the yielded path is its target). If the `with` body raises, directories this
    call created are removed again as long as they are empty, so a failed run leaves no empty
    output directory behind.
    """
    d = Path(path)
    if d.is_symlink():
        if not d.is_dir():
            raise OutputPathError(
                f"{option} {d} is a symbolic link that does not lead to a directory; pass "
                f"{option} with a directory"
            )
        d = d.resolve()
    if os.path.lexists(d) and not d.is_dir():
        raise OutputPathError(
            f"{option} {d} is an existing file, not a directory; pass {option} with a "
            "directory (it is created if missing)"
        )
    created = _make_dirs(d, option, what)
    try:
        _probe(d, option, what)
        yield d
    except BaseException:
        _remove_empty(created)
        raise


def check_out_file(path: str | Path, *, option: str) -> Path:
    """Check a single output file option (`--json FILE`, `--plot FILE`) before a long run:
    its directory exists and is writable, and the path is not a directory. An existing file
    is replaced at the end (atomically; a symlink there is replaced, not followed)."""
    p = Path(path)
    if p.is_dir():
        raise OutputPathError(f"{option} {p} is a directory; pass {option} with a file name")
    parent = p.parent
    if not parent.is_dir():
        raise OutputPathError(
            f"{option} {p}: directory {parent} does not exist; create it or pass another path"
        )
    _probe(parent, option, str(p))
    return p


# --- caches ------------------------------------------------------------------------------------


def sqlite_application_id(head: bytes) -> int:
    """`PRAGMA application_id` read straight from a database header (bytes 68-71, big
    endian; https://www.sqlite.org/fileformat.html#application_id) - no connection, so
    checking a file never changes it."""
    return int.from_bytes(head[68:72], "big")


def _has_tables(p: Path) -> bool:
    """True unless `p` is an SQLite database with no tables (read-only peek)."""
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            return con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        finally:
            con.close()
    except sqlite3.Error:
        return True


def _application_id_via_sqlite(p: Path) -> int:
    """`PRAGMA application_id` as SQLite reads it (the WAL included); 0 if unreadable."""
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
        try:
            return int(con.execute("PRAGMA application_id").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def check_cache_path(path: str | Path, *, app_id: int, kind: str, option: str = "--cache") -> Path:
    """Refuse, before any work, a cache path picojoule must not open: a symlink (SQLite would
    write through it), a directory or other non-regular file, an empty file, a file that is
    not SQLite, or an SQLite database whose `application_id` is not `app_id`. A missing file
    is fine (it is created); so is a database with no tables and no id (the same rule as
    `picojoule.dse.store`: it holds no data). Returns `path`.
    """
    p = Path(path)
    fix = f"it was left untouched - pass {option} with another path"
    for side in ("", *_SQLITE_SIDE_FILES):
        q = Path(f"{p}{side}")
        if q.is_symlink():
            raise OutputPathError(f"{q} is a symbolic link; picojoule never writes its {kind} "
                                  f"through a link - {fix}")  # fmt: skip
    if not os.path.lexists(p):
        return p
    try:
        st = os.stat(p)
    except OSError as e:
        raise OutputPathError(f"cannot read {p}: {e.strerror}; {fix}") from None
    if stat.S_ISDIR(st.st_mode):
        raise OutputPathError(f"{p} is a directory, not a {kind} file; {fix}")
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"{p} is not a regular file; {fix}")
    if st.st_size == 0:
        raise OutputPathError(f"{p} is an empty file picojoule did not write; {fix}")
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            head = f.read(100)
    except OSError as e:
        raise OutputPathError(f"cannot read {p}: {e.strerror}; {fix}") from None
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise OutputPathError(f"{p} is not an SQLite database, so not a {kind}; {fix}")
    found = sqlite_application_id(head)
    if found == 0 and os.path.exists(f"{p}-wal"):
        # a process killed before its first checkpoint: the id is still in the WAL only
        found = _application_id_via_sqlite(p)
    if found != app_id and (found != 0 or _has_tables(p)):
        raise OutputPathError(
            f"{p} is an SQLite database picojoule did not write as a {kind} "
            f"(application_id {found:#x}); {fix}"
        )
    return p
