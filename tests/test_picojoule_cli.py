"""The top-level CLI: user errors print one line (exit 2), never a traceback."""

from __future__ import annotations

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
        (("study", "--target", "eyriss"), "did you mean eyeriss"),
        (("study", "--recipes", "nope"), "unknown recipe preset"),
        (("study", "--model", "no_such_pkg.mod:build", "--data", "a:b", "--metric", "a:c"),
         "cannot import"),
        (("study", "--model", "pkg:build"), "needs --data"),
        (("study", "--threads", "-1"), "--threads"),
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
    for name in ("study", "formats", "winograd", "map", "dse", "bench", "explain", "sparsity"):
        assert name in out
