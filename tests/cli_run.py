"""Run `picojoule ARGS` in-process, as a user would from a shell: through `cli.main()`, which
owns the exit code and the one-line rendering of errors. Importable from every test folder
(tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

import sys

import pytest
import torch

from picojoule import cli


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str
) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `picojoule ARGS`; torch's thread count is restored
    afterwards (`picojoule study` sets its own)."""
    monkeypatch.setattr(sys, "argv", ["picojoule", *args])
    threads = torch.get_num_threads()
    try:
        cli.main()
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        torch.set_num_threads(threads)
    cap = capsys.readouterr()
    return code, cap.out + cap.err
