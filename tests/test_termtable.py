"""Terminal tables read at 80 and at 200 columns (issue 17): `FitTable` and the commands that
print through it (`map`, `explain gpus/roofline/formats/overhead`, `sparsity report`, the study
summary). No cell is cut with "…", no line is wider than the console, every name is whole."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import pytest
import torch
import torch.nn as nn
from rich.console import Console

from picojoule.termtable import FitTable

WIDTHS = (80, 200)


def printed(renderable: object, width: int) -> str:
    console = Console(width=width, record=True)
    console.print(renderable)
    return console.export_text()


def check(text: str, width: int, names: Iterable[str]) -> None:
    """No ellipsis, no line past the width, each name's words whole on one line."""
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for name in names:
        for word in name.split():
            assert word in text, f"{word!r} of {name!r} not whole at width {width}"


def wide_table(rows: int = 4) -> FitTable:
    t = FitTable(title="a wide table")
    t.add_column("layer", kind="name")
    for k in range(12):
        t.add_column(f"metric number {k}", justify="right", rank=k % 2)
    t.add_column("why", kind="text")
    for r in range(rows):
        t.add_row(
            f"encoder.blocks.{r}.attention.out_proj",
            *(f"{1234.5678 * (k + 1) * (r + 1):,.2f}" for k in range(12)),
            "a reason given in a few words that wrap",
        )
    return t


@pytest.mark.parametrize("width", WIDTHS)
def test_fit_table_splits_instead_of_cutting(width: int) -> None:
    t = wide_table()
    text = printed(t, width)
    check(text, width, [f"encoder.blocks.{r}.attention.out_proj" for r in range(4)])
    for k in range(12):
        assert f"{1234.5678 * (k + 1):,.2f}" in text  # numbers never broken
    tables = text.count("┏")
    assert (tables > 1) == (width == 80)  # continuation tables only when narrow
    assert text.count("encoder.blocks.0.attention.out_proj") == tables  # the key repeated
    assert len(t.columns) == 14  # the table's own columns are untouched


def test_fit_table_goes_vertical_when_very_narrow() -> None:
    text = printed(wide_table(rows=2), 36)
    check(text, 36, ["encoder.blocks.1.attention.out_proj", "metric number 11"])
    assert "┏" not in text and text.count("metric number 3") == 2


# --- the commands --------------------------------------------------------------------------


def _run_energy(command: str, width: int, monkeypatch: pytest.MonkeyPatch) -> str:
    from picojoule.energy import cli

    console = Console(width=width, record=True)
    monkeypatch.setattr(cli, "console", console)
    getattr(cli, command)()
    return console.export_text()


@pytest.mark.parametrize("width", WIDTHS)
def test_explain_gpus(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from picojoule.energy.gpu_specs import gpus

    text = _run_energy("gpus", width, monkeypatch)
    check(text, width, [g.title for g in gpus()])
    assert "TOPS/W" in text and "317.2x" in text


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", ["roofline", "formats", "overhead"])
def test_explain_tables(command: str, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    names = {
        "roofline": ["conv1", "conv2", "conv3", "fc1", "fc2"],
        "formats": ["mxfp8_e4m3", "int8/channel", "vsq4_v16_s4", "codebook16"],
        "overhead": ["HFMA", "HMMA", "IMMA"],
    }[command]
    check(_run_energy(command, width, monkeypatch), width, names)


@pytest.mark.parametrize("width", WIDTHS)
def test_map_render(width: int) -> None:
    from picojoule.arch import presets
    from picojoule.mapping.cli import render
    from picojoule.mapping.network import map_workload
    from picojoule.workload import builtin

    arch = presets.eyeriss()
    result = map_workload(builtin("digits-cnn"), arch, "energy", time_budget_s=3, seed=0)
    console = Console(width=width, record=True)
    render(result, arch, console, mappings=False)
    text = console.export_text()
    check(text, width, [r.layer.name for r in result.layers] + ["GlobalBuffer", "RegisterFile"])
    assert "pJ/MAC over" in text


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(1, 16, 3, padding=1),
            act=nn.ReLU(),
            feature_extractor_block=nn.Conv2d(16, 32, 3, padding=1),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            projection_to_hidden=nn.Linear(32, 64),
            classifier=nn.Linear(64, 10),
        )
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_sparsity_report_table(width: int) -> None:
    from picojoule.sparsity import render_table, report, sparsify_

    model = _cnn()
    applied = sparsify_(model, "2:4")
    rows = report(model, applied, example_input=torch.randn(2, 1, 8, 8))
    text = printed(render_table(rows, title="cnn, recipe 2:4"), width)
    check(text, width, [r.name for r in rows] + ["skipped: first conv (kept dense)"])
    assert "math-bound upper bound" in text  # the caption, once, under the last table


@pytest.fixture(scope="module")
def two_target_study() -> object:
    from picojoule.study import DigitsTask, Recipe, run_task

    recipes = [
        Recipe(name="fp32"),
        Recipe(name="int8 weights and activations", quant="w:int8,a:int8"),
        Recipe(name="F(4,3)+fp16 products", winograd=4),
    ]
    return run_task(DigitsTask(), recipes, target=("eyeriss", "h100"), cache=None)


@pytest.mark.parametrize("width", (80, 160, 200))
def test_study_summary_two_targets(width: int, two_target_study: object) -> None:
    from picojoule.study import summary_table

    text = printed(summary_table(two_target_study), width)  # type: ignore[arg-type]
    names = ["fp32", "int8 weights and activations", "F(4,3)+fp16 products"]
    check(text, width, names + ["energy/inf", "eyeriss", "h100", "SOL"])
    if width >= 160:
        assert "int8 weights and activations" in text and text.count("┏") == 1


def test_fit_table_cells_may_be_rich_text() -> None:
    from rich.text import Text

    t = FitTable(title="styled")
    t.add_column("name", kind="name")
    t.add_column("value", justify="right")
    t.add_row(Text("styled.module.name", style="bold"), "[green]1.00[/green]")
    check(printed(t, 80), 80, ["styled.module.name", "1.00"])


@pytest.mark.parametrize("width", (80, 200))
def test_formats_table_fits(width: int) -> None:
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "picojoule.cli", "formats"], capture_output=True, text=True,
        timeout=120, env={**os.environ, "COLUMNS": str(width)},
    ).stdout  # fmt: skip
    check(out, width, ["fp32", "float8_e4m3fn", "mxfp4", "min subnormal", "canonical"])
