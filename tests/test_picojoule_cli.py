"""The top-level CLI: user errors print one line (exit 2), never a traceback."""

from __future__ import annotations

import json
import sys

import pytest

from picojoule import cli


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["picojoule", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out + out.err


def test_formats_lists_families(monkeypatch, capsys):
    code, out = _main(monkeypatch, capsys, "formats", "e4m3", "nvfp4", "vsq4_v16_s4")
    assert code == 0
    assert "float8_e4m3fn" in out and "448" in out and "4.5" in out and "4.25" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (("formats", "e9m9x"), "unknown number format"),
        (("study", "--target", "eyriss"), "did you mean: eyeriss"),
        (("study", "--target", "eyeriss,h1000"), "unknown target 'h1000'"),
        (("study", "--recipes", "nope"), "unknown recipe preset"),
        (("study", "--model", "no_such_pkg.mod:build", "--data", "a:b", "--metric", "a:c"),
         "cannot import"),
        (("study", "--model", "pkg:build"), "needs --data"),
        (("study", "--threads", "-1"), "--threads"),
        (("study", "--out", "/proc/picojoule-report"), "cannot write the report"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line(monkeypatch, capsys, args, fragment):
    code, out = _main(monkeypatch, capsys, *args)
    assert code == 2
    assert fragment in out
    assert "Traceback" not in out


def test_subcommands_are_mounted(monkeypatch, capsys):
    code, out = _main(monkeypatch, capsys, "--help")
    assert code == 0
    for name in ("study", "formats", "winograd", "map", "dse", "bench", "explain", "sparsity",
                 "arch"):  # fmt: skip
        assert name in out


def test_study_on_a_user_model(monkeypatch, capsys, tmp_path):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "study"))
    recipes = tmp_path / "r.yaml"
    recipes.write_text("- name: int8\n  quant: w:int8,a:int8\n- name: nvfp4\n  quant: w:nvfp4\n")
    mod = "user_model_fixture"
    code, out = _main(
        monkeypatch, capsys, "study", "--model", f"{mod}:build", "--data", f"{mod}:loader",
        "--metric", f"{mod}:score", "--recipes", str(recipes), "--out", str(tmp_path / "o"),
        "--no-cache", "--threads", "1", "--target", "simba,a100",
    )  # fmt: skip
    assert code == 0, out
    assert "int8" in out and "nvfp4" in out and "report:" in out
    assert "on simba, a100" in out
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["targets"] == ["simba", "a100"]
    assert (tmp_path / "o" / "report.html").exists()
    code, out = _main(
        monkeypatch, capsys, "study", "--model", f"{mod}:build", "--data", f"{mod}:bad_loader",
        "--metric", f"{mod}:score", "--out", str(tmp_path / "o"), "--no-cache",
    )  # fmt: skip
    assert code == 2 and "loader's batches fit the model" in out


def test_idle_threads_leave_busy_cores_alone(monkeypatch):
    import os

    import picojoule.cli as cli

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    for busy, expect in ((0.1, 4), (1.4, 3), (2.6, 1), (9.0, 1)):
        monkeypatch.setattr(cli, "busy_cores", lambda busy=busy: busy)
        assert cli.idle_threads(4) == expect
    monkeypatch.setattr(cli, "busy_cores", lambda: 0.0)
    assert cli.idle_threads(2) == 2  # never above torch's own choice
    monkeypatch.setattr(cli, "busy_cores", lambda: None)
    assert cli.idle_threads(3) == 3  # unknown: torch's choice


def test_busy_cores_reads_proc_stat():
    import os

    from picojoule.cli import busy_cores

    busy = busy_cores(0.05)
    if not os.path.exists("/proc/stat"):
        assert busy is None
    elif busy is not None:
        assert 0.0 <= busy <= len(os.sched_getaffinity(0))
