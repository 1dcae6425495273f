"""Output and cache paths of every command that writes files (`study`, `dse run/show`, `map`,
`winograd study`, `sparsity report`, `bench gpu`, `explain --plot`):

- symlinks planted under every name a command writes (pointing at files outside the output
  directory) are replaced, and their targets stay byte-for-byte untouched, after a real run;
- `--out` an existing file, `--json` a directory, `--cache` a file picojoule did not write:
  exit 2 with one `error:` line naming the problem, no traceback, before any work;
- a run that fails leaves no empty output directory behind.

Runs `cli.main()` in-process (it owns the exit code and the one-line rendering of
`PicojouleError`) with the smallest options each command has.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cli_run import run_main
from picojoule import cli

STUDY_FIXTURES = Path(__file__).parents[1] / "study"  # user_model_fixture.py
USER = "user_model_fixture"
VICTIM_TEXT = "outside the output directory: must survive\n"

TINY_SPACE = {
    "name": "tiny",
    "workload": "digits-cnn",
    "preset": "magnet",
    "objectives": ["energy", "latency", "area"],
    "search": {"method": "grid"},
    "parameters": {"vector_width": [4, 8], "dataflow": ["ws"], "pe_x": 2, "pe_y": 2,
                   "node_nm": 16},
}  # fmt: skip


@pytest.fixture(autouse=True)
def _fast_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    # idle_threads samples /proc/stat for 0.2 s per call; no case here depends on it
    monkeypatch.setattr(cli, "busy_cores", lambda: None)
    monkeypatch.syspath_prepend(str(STUDY_FIXTURES))


def _main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    return run_main(monkeypatch, capsys, *args)


def _assert_one_error(code: int, out: str, fragment: str) -> None:
    flat = " ".join(out.split())  # rich wraps long lines at the console width
    assert code == 2, out
    assert "Traceback" not in out, out
    assert flat.count("error:") == 1, out
    assert fragment in flat, f"{fragment!r} not in {flat!r}"


def _space(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY_SPACE, sort_keys=False))
    return p


def _recipes(tmp_path: Path) -> Path:
    p = tmp_path / "recipes.yaml"
    p.write_text("- name: int8\n  quant: w:int8,a:int8\n")
    return p


def _study_args(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    return ["study", "--model", f"{USER}:build", "--data", f"{USER}:loader",
            "--metric", f"{USER}:score", "--recipes", str(_recipes(tmp_path)),
            "--threads", "1", "--out", str(out), *extra]  # fmt: skip


WINOGRAD_FAST = ["--tiles", "2", "--no-real", "--no-accuracy", "--channels", "4", "--size", "4",
                 "--batch", "1", "--formats", "fp32", "--point-sets", "default"]  # fmt: skip


def _plant(directory: Path, names: list[str], victims: Path) -> dict[Path, Path]:
    """A symlink per name in `directory`, each to its own victim file in `victims`."""
    directory.mkdir(parents=True, exist_ok=True)
    victims.mkdir(exist_ok=True)
    links = {}
    for name in names:
        victim = victims / f"victim-{name}"
        victim.write_text(VICTIM_TEXT)
        (directory / name).symlink_to(victim)
        links[directory / name] = victim
    return links


def _assert_untouched(links: dict[Path, Path]) -> None:
    for victims in {v.parent for v in links.values()}:
        assert sorted(p.name for p in victims.iterdir()) == sorted(
            v.name for v in links.values() if v.parent == victims
        ), "a file was created next to the victims"
    for victim in links.values():
        assert victim.read_text() == VICTIM_TEXT, f"{victim} was written through a symlink"


# --- planted symlinks: (id, args(tmp, out), names written in out, names that stay links) -----


def _stored_run(tmp: Path, run: Callable[..., None]) -> Path:
    """A finished tiny DSE run to `show` (its own directory, not the one under test)."""
    run_dir = tmp / "stored-run"
    run("dse", "run", str(_space(tmp)), "--out", str(run_dir), "--workers", "1")
    return run_dir


SYMLINK_CASES = [
    ("study", lambda tmp, out, run: _study_args(tmp, out, "--no-cache"),
     ["report.json", "report.html"]),
    ("dse-run", lambda tmp, out, run: ["dse", "run", str(_space(tmp)), "--out", str(out),
                                       "--workers", "1"],
     ["front.json", "pareto.png", "energy_split.png", "report.html"]),
    ("dse-show", lambda tmp, out, run: ["dse", "show", str(_stored_run(tmp, run)),
                                        "--out", str(out)],
     ["front.json", "pareto.png", "energy_split.png", "report.html"]),
    ("map-json", lambda tmp, out, run: ["map", "--model", "digits-cnn", "--no-mappings",
                                        "--time-budget", "0.3", "--json", str(out / "map.json")],
     ["map.json"]),
    ("winograd", lambda tmp, out, run: ["winograd", "study", "--out", str(out), *WINOGRAD_FAST],
     ["winograd_study.json", "winograd_study.png"]),
    ("sparsity-json", lambda tmp, out, run: ["sparsity", "report", "--finetune-steps", "0",
                                             "--dtype", "int8", "--json",
                                             str(out / "rows.json")],
     ["rows.json"]),
    ("explain-plot", lambda tmp, out, run: ["explain", "overhead", "--plot", str(out / "o.png")],
     ["o.png"]),
]  # fmt: skip


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys) -> Callable[..., None]:
    """Run a picojoule command that must succeed (to set up a case)."""

    def go(*args: str) -> None:
        code, out = _main(monkeypatch, capsys, *args)
        assert code == 0, out

    return go


@pytest.mark.parametrize("make_args, names", [c[1:] for c in SYMLINK_CASES],
                         ids=[c[0] for c in SYMLINK_CASES])  # fmt: skip
def test_planted_symlinks_are_replaced_not_followed(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path, run, make_args, names: list[str]
) -> None:
    out = tmp_path / "out"
    args = make_args(tmp_path, out, run)
    links = _plant(out, names, tmp_path / "victims")
    code, text = _main(monkeypatch, capsys, *args)
    assert code == 0, text
    assert "Traceback" not in text
    _assert_untouched(links)
    for link in links:
        assert link.is_file() and not link.is_symlink(), f"{link.name} not written"
        assert link.stat().st_size > 0
        if link.suffix == ".json":
            json.loads(link.read_text(), parse_constant=_no_constant)  # strict JSON
    assert not [p for p in out.iterdir() if p.name.startswith(".picojoule-")], "temp files left"


def _no_constant(token: str) -> None:
    raise AssertionError(f"non-standard JSON token {token}")


def test_study_cache_written_next_to_planted_links_stays_ours(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    """The cache itself is SQLite (not replaceable atomically): a planted link is refused, and
    a fresh cache beside planted report links is a regular file."""
    out, cache = tmp_path / "out", tmp_path / "cache" / "c.sqlite"
    links = _plant(out, ["report.json", "report.html"], tmp_path / "victims")
    code, text = _main(monkeypatch, capsys, *_study_args(tmp_path, out, "--cache", str(cache)))
    assert code == 0, text
    _assert_untouched(links)
    assert cache.read_bytes()[:16] == b"SQLite format 3\x00" and not cache.is_symlink()


# --- bad --out / --json paths: (id, args(tmp, path), how to make path, message) ------------------


def _file(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(VICTIM_TEXT)
    return p


def _dangling(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(p.parent / "nowhere")
    return p


def _below_file(p: Path) -> Path:
    _file(p.parent / "plain")
    return p.parent / "plain" / "sub"


def _directory(p: Path) -> Path:
    p.mkdir(parents=True)
    return p


def _no_parent(p: Path) -> Path:
    return p.parent / "missing" / "x.json"


OUT_CASES = [
    ("study-out-file", lambda t, p, run: _study_args(t, p, "--no-cache"), _file,
     "is an existing file, not a directory"),
    ("study-out-dangling-link", lambda t, p, run: _study_args(t, p, "--no-cache"), _dangling,
     "symbolic link that does not lead to a directory"),
    ("study-out-below-file", lambda t, p, run: _study_args(t, p, "--no-cache"), _below_file,
     "a parent is not a directory"),
    ("dse-run-out-file", lambda t, p, run: ["dse", "run", str(_space(t)), "--out", str(p)], _file,
     "is an existing file, not a directory"),
    ("dse-show-out-file", lambda t, p, run: ["dse", "show", str(_stored_run(t, run)),
                                             "--out", str(p)],
     _file, "is an existing file, not a directory"),
    ("winograd-out-file", lambda t, p, run: ["winograd", "study", "--out", str(p), *WINOGRAD_FAST],
     _file, "is an existing file, not a directory"),
    ("winograd-out-below-file",
     lambda t, p, run: ["winograd", "study", "--out", str(p), *WINOGRAD_FAST], _below_file,
     "a parent is not a directory"),
    ("bench-gpu-out-file", lambda t, p, run: ["bench", "gpu", "--out", str(p)], _file,
     "is an existing file, not a directory"),
    ("map-json-directory", lambda t, p, run: ["map", "--model", "digits-cnn", "--json", str(p)],
     _directory, "is a directory"),
    ("map-json-no-parent", lambda t, p, run: ["map", "--model", "digits-cnn", "--json", str(p)],
     _no_parent, "does not exist"),
    ("sparsity-json-directory", lambda t, p, run: ["sparsity", "report", "--json", str(p)],
     _directory, "is a directory"),
    ("sparsity-json-no-parent", lambda t, p, run: ["sparsity", "report", "--json", str(p)],
     _no_parent, "does not exist"),
    ("explain-plot-directory", lambda t, p, run: ["explain", "overhead", "--plot", str(p)],
     _directory, "is a directory"),
]  # fmt: skip


@pytest.mark.parametrize("make_args, make_path, fragment", [c[1:] for c in OUT_CASES],
                         ids=[c[0] for c in OUT_CASES])  # fmt: skip
def test_bad_output_path_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path, run, make_args, make_path,
    fragment: str,
) -> None:  # fmt: skip
    path = make_path(tmp_path / "o" / "target")
    args = make_args(tmp_path, path, run)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, out = _main(monkeypatch, capsys, *args)
    _assert_one_error(code, out, fragment)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before, "a refused run changed a file"


# --- --cache files picojoule did not write -------------------------------------------------------


def _sqlite(p: Path, app_id: int = 0) -> None:
    con = sqlite3.connect(p)
    con.execute(f"PRAGMA application_id={app_id}")
    con.execute("CREATE TABLE notes (x)")
    con.commit()
    con.close()


CACHE_MAKERS: dict[str, tuple[Callable[[Path], object], str]] = {
    "empty-file": (lambda p: p.write_bytes(b""), "empty file picojoule did not write"),
    "text-file": (lambda p: p.write_text("my notes\n" * 40), "is not an SQLite database"),
    "short-file": (lambda p: p.write_bytes(b"SQLite format 3\x00"), "is not an SQLite database"),
    "foreign-sqlite": (_sqlite, "SQLite database picojoule did not write"),
    "other-app-sqlite": (lambda p: _sqlite(p, 0x12345678), "application_id 0x12345678"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "symlink-to-db": (lambda p: p.symlink_to(_file(p.with_name("real.sqlite"))), "symbolic link"),
    "symlinked-wal": (lambda p: Path(f"{p}-wal").symlink_to(_file(p.with_name("w"))),
                      "symbolic link"),
}  # fmt: skip


def _snapshot(root: Path) -> dict[str, tuple[bool, bytes | str]]:
    snap = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            snap[rel] = (True, str(p.readlink()))
        elif p.is_file():
            snap[rel] = (False, p.read_bytes())
    return snap


@pytest.mark.parametrize("kind", list(CACHE_MAKERS))
def test_study_refuses_a_cache_it_did_not_write(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path, kind: str
) -> None:
    make, fragment = CACHE_MAKERS[kind]
    (tmp_path / "c").mkdir()
    cache = tmp_path / "c" / "study.sqlite"
    make(cache)
    before = _snapshot(tmp_path / "c")
    code, out = _main(monkeypatch, capsys, *_study_args(tmp_path, tmp_path / "o", "--cache",
                                                       str(cache)))  # fmt: skip
    _assert_one_error(code, out, fragment)
    assert _snapshot(tmp_path / "c") == before
    assert not (tmp_path / "o").exists(), "refused before the output directory was made"


def test_study_refuses_a_dse_results_database_as_its_cache(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    code, out = _main(monkeypatch, capsys, "dse", "run", str(_space(tmp_path)), "--out",
                      str(run_dir), "--workers", "1")  # fmt: skip
    assert code == 0, out
    db = run_dir / "results.sqlite"
    code, out = _main(monkeypatch, capsys, *_study_args(tmp_path, tmp_path / "o", "--cache",
                                                       str(db)))  # fmt: skip
    _assert_one_error(code, out, "picojoule did not write as a picojoule study cache")


@pytest.mark.parametrize("kind", ["empty-file", "text-file", "foreign-sqlite", "symlink-to-db",
                                  "symlinked-wal"])  # fmt: skip
def test_dse_run_refuses_a_results_file_it_did_not_write(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path, kind: str
) -> None:
    make, fragment = CACHE_MAKERS[kind]
    out = tmp_path / "run"
    out.mkdir()
    make(out / "results.sqlite")
    before = _snapshot(out)
    code, text = _main(monkeypatch, capsys, "dse", "run", str(_space(tmp_path)), "--out",
                       str(out), "--workers", "1")  # fmt: skip
    _assert_one_error(code, text, fragment)
    assert _snapshot(out) == before


def test_dse_run_refuses_a_study_cache_as_its_results(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cache = out / "results.sqlite"
    code, text = _main(monkeypatch, capsys, *_study_args(tmp_path, tmp_path / "o", "--cache",
                                                        str(cache)))  # fmt: skip
    assert code == 0, text
    code, text = _main(monkeypatch, capsys, "dse", "run", str(_space(tmp_path)), "--out",
                       str(out), "--workers", "1")  # fmt: skip
    _assert_one_error(code, text, "did not write as a picojoule DSE results database")


# --- failed runs leave no empty output directory -------------------------------------------------


def _broken_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "pj_out_broken.py").write_text(
        "def score(model, batches):\n    raise RuntimeError('metric crashed')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "pj_out_broken"


FAILED_RUNS = [
    ("study-bad-recipe-file",
     lambda t, out, mp: _study_args(t, out, "--no-cache", "--recipes", str(_file(t / "r.yaml"))),
     "recipe"),
    ("study-metric-raises",
     lambda t, out, mp: [*_study_args(t, out, "--no-cache"), "--metric",
                         f"{_broken_module(t, mp)}:score"], "metric crashed"),
    ("winograd-bad-format",
     lambda t, out, mp: ["winograd", "study", "--out", str(out), *WINOGRAD_FAST,
                         "--formats", "fp33"], "fp33"),
    ("bench-gpu-without-gpu", lambda t, out, mp: ["bench", "gpu", "--out", str(out),
                                                  "--stages", "gemm"], ""),
    ("dse-run-bad-space", lambda t, out, mp: ["dse", "run", str(_file(t / "s.yaml")),
                                              "--out", str(out)], ""),
]  # fmt: skip


@pytest.mark.parametrize("nested", [False, True], ids=["out", "out-nested"])
@pytest.mark.parametrize("make_args, fragment", [c[1:] for c in FAILED_RUNS],
                         ids=[c[0] for c in FAILED_RUNS])  # fmt: skip
def test_failed_run_leaves_no_empty_output_directory(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path, make_args, fragment: str,
    nested: bool,
) -> None:  # fmt: skip
    parent = tmp_path / "outs"
    parent.mkdir()
    out = parent / "a" / "b" / "c" if nested else parent / "report"
    args = make_args(tmp_path, out, monkeypatch)
    if args[0] == "bench" and _has_cuda():
        pytest.skip("a GPU is present: the benchmark would run")
    code, text = _main(monkeypatch, capsys, *args)
    assert code != 0, text
    assert "Traceback" not in text
    assert fragment in " ".join(text.split())
    assert list(parent.iterdir()) == [], "the failed run left an output directory behind"


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
