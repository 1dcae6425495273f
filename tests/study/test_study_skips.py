"""A recipe whose lever reaches no layer of the model is skipped with its reason, before any
recipe runs; the study goes on, the baseline is never skipped, and the report (terminal, HTML,
strict JSON) says why in place of numbers."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from rich.console import Console

from picojoule.errors import ConfigError
from picojoule.study import Recipe, apply_recipe, run, summary_table, write_report
from picojoule.study.tasks import UserTask


class MatmulOnly(nn.Module):
    """No Linear or Conv: nothing to quantize, prune or convert."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    # 6 inputs: no 2:4 group fits; the last Linear is the classifier, kept dense
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _data():
    return [(torch.randn(8, 6, generator=torch.Generator().manual_seed(1)), torch.zeros(8))]


def _counting_metric(calls: list[str]):
    def score(model: nn.Module, batches) -> float:
        calls.append("score")
        return 1.0

    return score


RECIPES = [
    Recipe(name="fp32"),
    Recipe(name="F(4,3)", winograd=4),
    Recipe(name="2:4", sparsity="2:4"),
    Recipe(name="F(4,3)+fp16", winograd=4, quant="w:fp16,a:fp16"),
    Recipe(name="int8", quant="w:int8"),
    Recipe(name="int8+kv", quant="w:int8,kv:e4m3"),
]


@pytest.fixture(scope="module")
def study():
    calls: list[str] = []
    res = run(_mlp, _data, _counting_metric(calls), RECIPES, target="eyeriss")
    return res, calls


def test_recipes_that_reach_no_layer_are_skipped_before_any_work(study):
    res, calls = study
    by = {r.recipe.name: r for r in res.results}
    assert [r.recipe.name for r in res.results] == [r.name for r in RECIPES]  # order kept
    assert {r.recipe.name for r in res.skipped} == {"F(4,3)", "2:4", "F(4,3)+fp16", "int8+kv"}
    assert not by["fp32"].skipped and not by["int8"].skipped
    assert calls == ["score", "score"]  # only the two that ran were evaluated
    assert by["F(4,3)"].skip_reason == "no 3x3 stride-1 Conv2d (winograd)"
    assert by["2:4"].skip_reason == "2:4 prunes no layer (sparsity)"
    assert by["2:4"].applied["sparsity"] == [
        "0: skipped: 2:4 cannot serve it: input channels of weight (8, 6) of size 6 is not "
        "divisible by M=4: an 2:4 group would straddle its end; pad it to 8 or skip this layer",
        "2: skipped: classifier (kept dense)",
    ]
    # a recipe with one lever that reaches nothing would be another recipe under its name
    assert by["F(4,3)+fp16"].skip_reason == "no 3x3 stride-1 Conv2d (winograd)"
    assert by["int8+kv"].skip_reason == "no KV cache (quant kv:)"
    assert by["F(4,3)"].metrics == {} and by["F(4,3)"].costs == {"eyeriss": {}}
    assert res.delta(by["F(4,3)"]) != res.delta(by["F(4,3)"])  # NaN, not a number


def test_skipped_rows_in_terminal_json_and_html(study, tmp_path):
    res, _ = study
    con = Console(width=200, record=True)
    con.print(summary_table(res))
    text = con.export_text()
    line = next(ln for ln in text.splitlines() if "F(4,3)+fp16" in ln)
    assert "skipped: no 3x3 stride-1 Conv2d (winograd)" in line
    assert not any(ch.isdigit() for ch in line.replace("F(4,3)+fp16", "").replace("3x3", "")
                   .replace("stride-1", "").replace("Conv2d", ""))  # fmt: skip
    jpath, hpath = write_report(res, tmp_path)
    raw = jpath.read_text()
    assert "NaN" not in raw and "Infinity" not in raw  # strict JSON
    doc = json.loads(raw)
    rows = {r["name"]: r for r in doc["recipes"]}
    assert rows["int8"]["status"] == "ok" and rows["int8"]["skip_reason"] == ""
    sk = rows["2:4"]
    assert sk["status"] == "skipped" and sk["skip_reason"] == "2:4 prunes no layer (sparsity)"
    assert sk["delta"] is None and sk["bits_per_weight"] is None and sk["model_bytes"] is None
    assert sk["metrics"] == {} and sk["pareto_front"] is False
    page = hpath.read_text()
    assert (
        "<td colspan=12 class=skip>skipped: 2:4 prunes no layer (sparsity) (2:4 cannot serve it:"
        in page
    )
    assert "classifier (kept dense))</td>" in page


def test_nothing_to_quantize_is_a_skip_and_the_baseline_always_runs():
    calls: list[str] = []
    recipes = [Recipe(name="int4", quant="w:int4"), Recipe(name="2:4", sparsity="2:4")]
    res = run(MatmulOnly, lambda: [(torch.randn(2, 4), torch.zeros(2))], _counting_metric(calls),
              recipes)  # fmt: skip
    assert [r.recipe.name for r in res.results] == ["fp32", "int4", "2:4"]  # baseline added
    assert res.baseline is not None and not res.baseline.skipped and calls == ["score"]
    by = {r.recipe.name: r for r in res.results}
    assert by["int4"].skip_reason == "no Linear or Conv layer to quantize (quant)"
    assert by["2:4"].skip_reason == "no Linear or Conv layer to prune (sparsity)"


def test_a_lever_that_still_finds_nothing_is_skipped_not_fatal(monkeypatch):
    """The check before the run is the levers' own logic; should a lever still apply to no
    layer when it runs, that recipe's row is skipped, not the study failed."""
    import picojoule.study.reach as reach

    monkeypatch.setattr(reach, "misses", lambda *a, **k: [])  # the check foresees nothing
    res = run(_mlp, _data, lambda m, d: 1.0, [Recipe(name="w", winograd=4)])
    w = res.results[1]
    assert w.skipped and w.skip_reason == "no 3x3 stride-1 Conv2d (winograd)"
    # apply_recipe itself (the Python verb) still says so as an error
    task = UserTask(build=_mlp, loader=_data, score=lambda m, d: 1.0)
    with pytest.raises(ConfigError, match="applies to no layer"):
        apply_recipe(_mlp(), Recipe(name="w", winograd=4), task)


def test_cli_warns_when_every_recipe_is_skipped(monkeypatch, capsys, tmp_path):
    import sys
    from pathlib import Path

    from picojoule import cli

    monkeypatch.setattr(cli, "busy_cores", lambda: None)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    mod = "user_model_fixture"
    monkeypatch.setattr(sys, "argv", [
        "picojoule", "study", "--model", f"{mod}:build", "--data", f"{mod}:loader", "--metric",
        f"{mod}:score", "--recipes", "winograd", "--out", str(tmp_path / "o"), "--no-cache",
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    assert out.count("skipped: no 3x3 stride-1") == 4
    flat = " ".join(out.split())
    assert "warning: every recipe but the baseline was skipped" in flat
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [r["status"] for r in doc["recipes"]] == ["ok"] + ["skipped"] * 4


def test_skipped_recipes_never_reach_evaluation(monkeypatch):
    """The check runs before the first recipe: a skipped one is never built, levered, scored."""
    import picojoule.study.runner as runner

    evaluated = []
    real = runner._evaluate_recipe

    def spy(task, recipe, targets, measured):
        evaluated.append(recipe.name)
        return real(task, recipe, targets, measured)

    monkeypatch.setattr(runner, "_evaluate_recipe", spy)
    res = run(_mlp, _data, lambda m, d: 1.0, RECIPES)
    assert evaluated == ["fp32", "int8"]
    assert len(res.skipped) == 4
