"""The main job: recipes x model -> accuracy + energy + speed, one report.

Public: `run(model, data, metric, recipes, target)` (Python entry with your own callables),
`run_task`, `Recipe`, `PRESETS`, `load_recipes`, `load_task`, `write_report`, `summary_table`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.study.recipes import PRESETS, Recipe, check_recipes, load_recipes, preset
from picojoule.study.report import summary_table, to_json, write_report
from picojoule.study.runner import RecipeResult, StudyResult, apply_recipe
from picojoule.study.runner import run as run_task
from picojoule.study.tasks import DigitsTask, UserTask, load_task

__all__ = [
    "run",
    "run_task",
    "Recipe",
    "PRESETS",
    "preset",
    "load_recipes",
    "check_recipes",
    "load_task",
    "write_report",
    "summary_table",
    "to_json",
    "StudyResult",
    "RecipeResult",
    "DigitsTask",
    "UserTask",
    "apply_recipe",
]


def run(
    model: nn.Module | Callable[[], nn.Module],
    data: Iterable | Callable[[], Iterable],
    metric: Callable[[nn.Module, Iterable], float],
    recipes: str | Sequence[Recipe] = "formats-sweep",
    target: str | Sequence[str] = "eyeriss",
    *,
    cache: Path | None = None,
    measured: Path | None = None,
    eval_data: Iterable | Callable[[], Iterable] | None = None,
    metric_name: str = "metric",
    higher_is_better: bool = True,
) -> StudyResult:
    """Study your own model: `data` yields (inputs, targets) batches (or is a mapping of
    splits: "train", "calib", "eval"), `metric(model, batches)` returns one number, named
    `metric_name`, higher is better unless `higher_is_better=False`. `eval_data`: held-out
    batches the metric scores (without any, it scores `data`, and fine-tuned rows are marked
    as scored on their own training data). `target`: one name or several to compare."""
    if not (isinstance(model, nn.Module) or callable(model)):
        raise ConfigError(
            f"model must be an nn.Module or a function that builds one, not {type(model).__name__}"
        )
    if not (callable(data) or isinstance(data, Iterable)) or isinstance(data, str | bytes):
        raise ConfigError(
            f"data must be an iterable of (inputs, targets) batches or a function returning "
            f"one, not {type(data).__name__}"
        )
    if not callable(metric):
        raise ConfigError(
            f"metric must be a function metric(model, data) -> float, not {type(metric).__name__}"
        )
    if eval_data is not None and (
        isinstance(eval_data, str | bytes | Mapping)
        or not (callable(eval_data) or isinstance(eval_data, Iterable))
    ):
        raise ConfigError(
            "eval_data must be an iterable of held-out (inputs, targets) batches or a function "
            f"returning one, not {type(eval_data).__name__}"
        )
    if not isinstance(higher_is_better, bool):
        raise ConfigError(f"higher_is_better must be True or False, not {higher_is_better!r}")
    build = model if callable(model) and not isinstance(model, nn.Module) else (lambda: model)
    loader = data if callable(data) else (lambda: data)
    held = None if eval_data is None else eval_data if callable(eval_data) else (lambda: eval_data)
    task = UserTask(
        build=build, loader=loader, score=metric,  # type: ignore[arg-type]
        primary_metric=metric_name, higher_is_better=higher_is_better, eval_loader=held,
        eval_label="eval_data",
    )  # fmt: skip
    recs = load_recipes(recipes) if isinstance(recipes, str) else check_recipes(recipes)
    return run_task(task, recs, target=target, cache=cache, measured=measured)
