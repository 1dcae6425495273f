"""`picojoule --help`, `formats` and `explain ...` must not import the heavy libraries (torch,
optuna, ray, matplotlib): each is seconds of start-up for a command that lists or computes a
table. Checked in a fresh interpreter, by the modules the command leaves in `sys.modules`
(start-up times: benchmarks/bench_cli_startup.py, BENCHMARKS.md)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "optuna", "ray", "matplotlib")

_PROBE = """
import json, sys
heavy_names = set(json.loads(sys.argv[2]))
sys.argv = ["picojoule", *json.loads(sys.argv[1])]
from picojoule import cli
try:
    cli.main()
except SystemExit as e:
    code = e.code or 0
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & heavy_names)
print("\\nPROBE", json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("PROBE ")]
    assert line, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(line[-1].removeprefix("PROBE "))


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        (),
        ("formats",),
        ("formats", "mxfp4", "nvfp4", "vsq4_v16_s4", "int8/channel", "lns8"),
        ("explain", "--help"),
        ("explain", "formats"),
        ("explain", "nodes"),
        ("explain", "gpus"),
    ],
    ids=lambda a: " ".join(a) or "(no args)",
)
def test_light_commands_do_not_import_heavy_libraries(args: tuple[str, ...]) -> None:
    got = _probe(*args)
    assert got["code"] == (2 if not args else 0)  # click: no command prints help, exits 2
    assert got["heavy"] == [], f"picojoule {' '.join(args)} imported {got['heavy']}"


def test_probe_sees_a_heavy_import() -> None:
    """The probe itself works: a command that needs torch shows it."""
    got = _probe("sparsity", "--help")
    assert "torch" in got["heavy"]


def test_a_sub_app_mounted_after_the_stubs_replaces_its_stub() -> None:
    """`--help` mounts stubs; a later command line naming a sub-app mounts the real one."""
    from typer.testing import CliRunner

    from picojoule import cli

    cli._mount(["picojoule", "--help"])
    cli._mount(["picojoule", "explain", "--help"])
    out = CliRunner().invoke(cli.app, ["explain", "--help"]).output
    assert "roofline" in out and "formats" in out
