import json

import pytest
from typer.testing import CliRunner

from picojoule.errors import ConfigError
from picojoule.sparsity.cli import app

runner = CliRunner(env={"COLUMNS": "200"})


def test_costs_table() -> None:
    result = runner.invoke(app, ["costs", "--gemm", "64x256x8", "--density", "0.25"])
    assert result.exit_code == 0, result.output
    assert "zero_gating" in result.output and "2.00x" in result.output


def test_layouts_table_shows_closed_form_ratios() -> None:
    result = runner.invoke(app, ["layouts", "--shape", "32x64", "--dtype", "int8"])
    assert result.exit_code == 0, result.output
    assert "0.6250" in result.output  # 2:4 int8


def test_report_on_default_model(tmp_path) -> None:
    out = tmp_path / "report.json"
    args = ["report", "--finetune-steps", "0", "--dtype", "bf16", "--json", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["totals"]["layers_on_2to4_kernel"] == 1
    assert data["accuracy_pct"]["one_shot"] == data["accuracy_pct"]["finetuned"]


@pytest.mark.parametrize(
    "args",
    [["costs", "--gemm", "64x0x8"], ["layouts", "--shape", "64"], ["report", "--recipe", "2:2"]],
)
def test_bad_input_raises_config_error(args) -> None:
    result = runner.invoke(app, args)
    assert isinstance(result.exception, ConfigError)
