"""`picojoule explain`: every command runs and prints the figures it promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from picojoule.energy.cli import app
from picojoule.errors import ConfigError, FormatError

runner = CliRunner(env={"COLUMNS": "200"})


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_gpus_prints_317x_and_both_splits() -> None:
    out = _ok("gpus")
    assert "317.2x" in out
    assert out.count("factors multiply to 317.2x") == 2
    assert "Tesla K20X" in out and "B200" in out


def test_overhead_prints_both_definitions(tmp_path: Path) -> None:
    plot = tmp_path / "instr.png"
    out = _ok("overhead", "--plot", str(plot))
    assert "2000.0%" in out and "500.0%" in out and "21.4%" in out and "15.8%" in out
    assert plot.stat().st_size > 10_000


def test_formats_table_fit_and_plot(tmp_path: Path) -> None:
    plot = tmp_path / "formats.png"
    out = _ok("formats", "int8,e2m1,vsq4_v16_s4,lns8", "--node", "7", "--fit", "--plot", str(plot))
    assert "x0.06842" in out  # the node factor is printed where it is applied
    assert "vsq4_v16_s4" in out and "max |error| on anchors: 4.2%" in out
    assert plot.stat().st_size > 10_000


def test_nodes_and_roofline(tmp_path: Path) -> None:
    assert "Stillmaker" in _ok("nodes")
    plot = tmp_path / "roof.png"
    out = _ok("roofline", "--model", "digits-cnn", "--gpu", "h100", "--recipe", "w:int8,a:int8",
              "--batch", "32", "--plot", str(plot))  # fmt: skip
    assert "conv2" in out and "memory" in out and "no implementation on h100" in out
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["formats", "int8,nvfp5"], FormatError),
        (["formats", "int8", "--node", "6"], ConfigError),
        (["gpus", "--target", "a10"], ConfigError),
        (["roofline", "--model", "resnet51"], ConfigError),
        (["overhead", "--math", "guess"], ConfigError),
    ],
)
def test_bad_input_raises_a_picojoule_error(args: list[str], error: type[Exception]) -> None:
    result = runner.invoke(app, args)
    assert isinstance(result.exception, error), result.output
