"""`picojoule winograd study` and `transforms` through typer's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from picojoule.errors import ConfigError, FormatError
from picojoule.winograd import WinogradError
from picojoule.winograd.cli import app

runner = CliRunner()
FAST = ["--channels", "8", "--size", "8", "--batch", "1"]


def test_study_on_random_data_writes_json_and_png(tmp_path: Path) -> None:
    args = ["study", "--out", str(tmp_path), "--tiles", "2,4,6", "--no-real", "--no-accuracy"]
    result = runner.invoke(app, [*args, *FAST, "--formats", "fp32,fp16"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "winograd_study.json").read_text())
    assert report["config"]["tiles"] == [2, 4, 6]
    assert [c["multiply_reduction"] for c in report["costs"]] == [2.25, 4.0, 5.0625]
    assert len(report["errors"]) == 3 * 2 * 2  # tiles x point sets x formats
    fp16_f6 = {
        e["point_set"]: e["winograd"]["max_rel"]
        for e in report["errors"]
        if e["format"] == "fp16" and e["m"] == 6
    }
    assert fp16_f6["integer"] > 10 * fp16_f6["default"]
    assert "accuracy" not in report
    assert (tmp_path / "winograd_study.png").read_bytes()[:4] == b"\x89PNG"
    assert "F(4,3)" in result.output


def test_study_with_the_default_model(tmp_path: Path) -> None:
    args = ["study", "--out", str(tmp_path), "--tiles", "2", "--formats", "fp16"]
    extra = ["--point-sets", "default", "--accuracy-tiles", "4", "--real-samples", "8"]
    result = runner.invoke(app, [*args, *extra, *FAST])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "winograd_study.json").read_text())
    layers = [e["data"] for e in report["errors"]]
    assert layers == ["random", "digits 0", "digits 2", "digits 5"]
    acc = report["accuracy"]
    assert [(r["format"], r["tile"], r["converted"]) for r in acc["rows"]] == [
        ("fp16", None, 0),
        ("fp16", 4, 3),
    ]
    assert acc["float_model_pct"] > 90
    assert abs(acc["rows"][1]["accuracy_pct"] - acc["float_model_pct"]) < 1.0


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (["--formats", "fp17"], FormatError, "fp17"),
        (["--point-sets", "chebyshev"], ConfigError, "unknown 'chebyshev'"),
        (["--tiles", "2,x"], ConfigError, "comma-separated integers"),
        (["--tiles", "0"], ConfigError, "out of range 1..16"),
        (["--formats", " , "], ConfigError, "--formats is empty"),
    ],
)
def test_study_bad_input(tmp_path: Path, args: list[str], error: type, message: str) -> None:
    result = runner.invoke(
        app, ["study", "--out", str(tmp_path), "--no-real", "--no-accuracy", *args]
    )
    assert isinstance(result.exception, error)
    assert message in str(result.exception)
    assert not (tmp_path / "winograd_study.json").exists()


def test_transforms_prints_exact_matrices() -> None:
    result = runner.invoke(app, ["transforms", "4", "3", "--points", "0,1,-1,2,-2,inf"])
    assert result.exit_code == 0, result.output
    assert "-1/6" in result.output and "1/24" in result.output
    assert "4.00x" in result.output


def test_transforms_bad_points() -> None:
    result = runner.invoke(app, ["transforms", "2", "3", "--points", "0,1,1,inf"])
    assert isinstance(result.exception, WinogradError)
    assert "repeated" in str(result.exception)
