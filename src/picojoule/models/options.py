"""The `--model/--data/--metric/--eval` options of the commands that take a model spec, as
typer annotations, so every command spells and documents them alike (`picojoule.models.spec`
resolves them). `picojoule study` keeps its own, longer help texts (picojoule/cli.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from picojoule.models.spec import MODEL_HELP

__all__ = ["ModelOption", "DataOption", "MetricOption", "EvalOption"]

ModelOption = Annotated[str, typer.Option(help=MODEL_HELP)]
DataOption = Annotated[
    str | None,
    typer.Option(
        metavar="PKG.MOD:LOADER",
        help="user models: loader() returns (inputs, targets) batches, or splits {'train', "
        "'calib', 'eval'} as in picojoule study; the first input is the model's example input",
    ),
]
MetricOption = Annotated[
    str | None,
    typer.Option(
        metavar="PKG.MOD:SCORE",
        help="user models: score(model, batches) -> float on the held-out batches",
    ),
]
EvalOption = Annotated[
    str | None,
    typer.Option("--eval", metavar="PKG.MOD:LOADER", help="user models: held-out batches"),
]
