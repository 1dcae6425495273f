"""picojoule.fsio: atomic writes that never follow a planted symlink, strict JSON, and the
up-front checks of --out / --json / --cache paths."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from picojoule.errors import PicojouleError
from picojoule.fsio import (
    OutputPathError,
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    check_cache_path,
    check_out_file,
    dumps_json,
    prepare_out_dir,
    save_figure,
    write_json,
)

APP_ID = 0x706A7465  # any id: the tests stamp it into "our" databases


def _stray(d: Path) -> list[str]:
    """Temporary or probe files left behind in `d`."""
    return [p.name for p in d.iterdir() if p.name.startswith(".picojoule-")]


def test_atomic_write_replaces_a_planted_symlink_not_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    atomic_write_text(link, "new")
    assert victim.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "new"
    assert _stray(tmp_path) == []


def test_atomic_write_of_a_dangling_symlink_creates_nothing_at_its_target(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "created.txt"
    link = tmp_path / "report.html"
    link.symlink_to(target)
    atomic_write_bytes(link, b"x")
    assert not target.exists() and not target.parent.exists()
    assert link.read_bytes() == b"x" and not link.is_symlink()


def test_temp_file_is_removed_when_the_writer_fails(tmp_path: Path) -> None:
    final = tmp_path / "model.pt"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(final) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert final.read_bytes() == b"old"
    assert _stray(tmp_path) == []


def test_temp_file_is_removed_on_keyboard_interrupt(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_writer(tmp_path / "a.json") as f:
        f.write(b"{")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_umask_default_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    p = atomic_write_text(tmp_path / "r.json", "{}")
    mask = os.umask(0o022)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_refuses_a_directory(tmp_path: Path) -> None:
    (tmp_path / "front.json").mkdir()
    with pytest.raises(OutputPathError, match="is a directory"):
        atomic_write_text(tmp_path / "front.json", "{}")


def test_atomic_write_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="cannot write"):
        atomic_write_text(tmp_path / "nope" / "x.json", "{}")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_strict_json_has_no_nan_or_infinity_tokens(value: float) -> None:
    text = dumps_json({"a": value, "b": [1.5, value, (value,)], "c": {"d": value}})
    for token in ("NaN", "Infinity"):
        assert token not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None, [None]], "c": {"d": None}}


def test_strict_json_cleans_values_from_default() -> None:
    class Scalar:
        def __init__(self, v: float) -> None:
            self.v = v

    text = dumps_json([Scalar(math.nan), Scalar(2.0)], default=lambda s: s.v)
    assert json.loads(text) == [None, 2.0]


def test_strict_json_keeps_finite_numbers_exact() -> None:
    values = [0.1, -0.0, 1e-308, 1.7976931348623157e308, 3]
    assert json.loads(dumps_json(values)) == values


def test_write_json_output_parses_with_a_strict_parser(tmp_path: Path) -> None:
    p = write_json(tmp_path / "x.json", {"sol_pct": math.nan, "peak": math.inf}, indent=1)

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard token {token}")

    assert json.loads(p.read_text(), parse_constant=refuse) == {"sol_pct": None, "peak": None}


def test_save_figure_writes_png_through_memory(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "plot.png").symlink_to(victim)
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    save_figure(fig, tmp_path / "plot.png", dpi=50)
    plt.close(fig)
    assert victim.read_bytes() == b"keep"
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


# --- --out directories ---------------------------------------------------------------------------


def test_prepare_out_dir_creates_and_keeps_a_directory_that_was_written(tmp_path: Path) -> None:
    with prepare_out_dir(tmp_path / "a" / "b") as d:
        atomic_write_text(d / "r.json", "{}")
    assert (tmp_path / "a" / "b" / "r.json").read_text() == "{}"
    assert _stray(d) == []


def test_failed_run_removes_the_directories_it_created(tmp_path: Path) -> None:
    with pytest.raises(ValueError), prepare_out_dir(tmp_path / "a" / "b" / "c"):
        raise ValueError("model raised")
    assert list(tmp_path.iterdir()) == []


def test_failed_run_keeps_a_directory_that_existed(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    with pytest.raises(ValueError), prepare_out_dir(out):
        raise ValueError("model raised")
    assert out.is_dir()


def test_failed_run_keeps_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with pytest.raises(ValueError), prepare_out_dir(out) as d:
        atomic_write_text(d / "results.sqlite", "partial results")
        raise ValueError("budget not met")
    assert (out / "results.sqlite").exists()


@pytest.mark.parametrize("kind", ["file", "dangling-link", "below-a-file", "link-to-file"])
def test_prepare_out_dir_refuses_in_one_line(tmp_path: Path, kind: str) -> None:
    f = tmp_path / "f"
    f.write_text("data")
    out = {"file": f, "below-a-file": f / "sub", "dangling-link": tmp_path / "l",
           "link-to-file": tmp_path / "l"}[kind]  # fmt: skip
    if kind == "dangling-link":
        out.symlink_to(tmp_path / "missing")
    if kind == "link-to-file":
        out.symlink_to(f)
    with pytest.raises(OutputPathError) as e, prepare_out_dir(out, option="--out"):
        pass
    assert "\n" not in str(e.value) and "--out" in str(e.value)
    assert f.read_text() == "data"


def test_prepare_out_dir_follows_a_symlinked_directory_explicitly(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with prepare_out_dir(tmp_path / "link") as d:
        assert d == real.resolve()


def test_write_probe_uses_a_random_name_never_a_planted_one(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".write-test").symlink_to(victim)  # the old fixed probe name
    with prepare_out_dir(out):
        pass
    assert victim.read_text() == "keep" and (out / ".write-test").is_symlink()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_directory_is_one_line(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(OutputPathError, match="cannot write"), prepare_out_dir(ro):
        pass


def test_check_out_file(tmp_path: Path) -> None:
    assert check_out_file(tmp_path / "x.json", option="--json") == tmp_path / "x.json"
    with pytest.raises(OutputPathError, match="is a directory"):
        check_out_file(tmp_path, option="--json")
    with pytest.raises(OutputPathError, match="does not exist"):
        check_out_file(tmp_path / "no" / "x.json", option="--json")
    assert list(tmp_path.iterdir()) == []


# --- --cache files -------------------------------------------------------------------------------


def _db(path: Path, app_id: int | None, table: bool = True) -> Path:
    con = sqlite3.connect(path)
    if app_id is not None:
        con.execute(f"PRAGMA application_id={app_id}")
    if table:
        con.execute("CREATE TABLE t (x)")
    else:
        con.execute("PRAGMA user_version=0")
        con.execute("VACUUM")  # writes a header page, as a crash before the schema would
    con.commit()
    con.close()
    return path


def _check(p: Path) -> Path:
    return check_cache_path(p, app_id=APP_ID, kind="test cache")


def test_cache_check_accepts_missing_ours_and_blank_databases(tmp_path: Path) -> None:
    assert _check(tmp_path / "new.sqlite") == tmp_path / "new.sqlite"
    _check(_db(tmp_path / "ours.sqlite", APP_ID))
    _check(_db(tmp_path / "blank.sqlite", None, table=False))
    assert not (tmp_path / "new.sqlite").exists()


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("my notes\n" * 50), "not an SQLite database"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00"), "not an SQLite database"),
        (lambda p: _db(p, None), "did not write"),
        (lambda p: _db(p, APP_ID + 1), "did not write"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: os.mkfifo(p), "not a regular file"),
        (lambda p: p.symlink_to(_db(p.with_name("real.sqlite"), APP_ID)), "symbolic link"),
        (lambda p: Path(f"{p}-wal").symlink_to(p.with_name("x")), "symbolic link"),
        (lambda p: Path(f"{p}-journal").symlink_to(p.with_name("x")), "symbolic link"),
    ],
)  # fmt: skip
def test_cache_check_refuses_files_it_did_not_write(tmp_path: Path, make, fragment: str) -> None:
    p = tmp_path / "c.sqlite"
    make(p)
    before = {q.name: (q.lstat().st_size, q.lstat().st_mtime_ns) for q in tmp_path.iterdir()}
    with pytest.raises(OutputPathError, match=fragment) as e:
        _check(p)
    assert "\n" not in str(e.value) and "untouched" in str(e.value)
    assert isinstance(e.value, PicojouleError)
    after = {q.name: (q.lstat().st_size, q.lstat().st_mtime_ns) for q in tmp_path.iterdir()}
    assert after == before


def test_fsio_imports_without_torch_or_third_party_packages() -> None:
    code = (
        "import sys, picojoule.fsio; "
        "bad = [m for m in ('torch', 'numpy', 'yaml', 'pydantic', 'matplotlib') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cache_whose_id_is_still_in_the_wal_is_accepted(tmp_path: Path) -> None:
    """A run killed before its first checkpoint leaves the id in the WAL only: the header
    reads 0, SQLite reads the id; the file is picojoule's and must be accepted."""
    import sqlite3

    from picojoule.fsio import check_cache_path, sqlite_application_id

    p = tmp_path / "results.sqlite"
    con = sqlite3.connect(p)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("PRAGMA application_id=1234")
        con.execute("CREATE TABLE t(x)")
        con.commit()
        assert sqlite_application_id(p.read_bytes()[:100]) == 0  # still in the WAL
        assert check_cache_path(p, app_id=1234, kind="results") == p
        with pytest.raises(OutputPathError, match="did not write"):
            check_cache_path(p, app_id=999, kind="results")
    finally:
        con.close()
