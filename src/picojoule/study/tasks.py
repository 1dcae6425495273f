"""What a study runs on: a model, its data, its metric.

A task gives a fresh FP32 model per recipe, evaluates a (transformed) model into named metrics
(`primary_metric` first), provides calibration batches, an example input for cost extraction,
and (optionally) training batches for fine-tuning.

Built in: `digits` (the default CNN) and `minilm` (extra `minilm`). A user's own model:
`--model pkg.module:build --data pkg.module:loader --metric pkg.module:score`:
`build()` returns an nn.Module (trained), `loader()` an iterable of `(inputs, targets)` batches
and `score(model, loader) -> float` (higher is better).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn

from picojoule.errors import ConfigError, PicojouleError

__all__ = ["Task", "DigitsTask", "UserTask", "load_task", "fingerprint"]


class Task(Protocol):
    name: str
    primary_metric: str
    metrics: tuple[str, ...]

    def model(self) -> nn.Module: ...
    def evaluate(self, model: nn.Module) -> dict[str, float]: ...
    def example_input(self) -> Any: ...
    def calibration_batches(self, n: int) -> list: ...


def fingerprint(model: nn.Module) -> str:
    """Hash of a model's parameters and buffers: the result cache's model version."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class DigitsTask:
    """The default: the digits CNN (trained once, cached), test accuracy in percent."""

    name = "digits-cnn"
    primary_metric = "accuracy"
    metrics = ("accuracy",)
    unit = "%"

    def __init__(self) -> None:
        from picojoule.models import digits

        self._digits = digits
        self._model, self.data = digits.load_default()

    def model(self) -> nn.Module:
        return copy.deepcopy(self._model)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return {"accuracy": self._digits.evaluate(model, self.data)}

    def example_input(self) -> torch.Tensor:
        return self.data.x_test[:1]

    def calibration_batches(self, n: int) -> list[torch.Tensor]:
        return [xb for xb, _ in self.data.loader("train", batch_size=128)][:n]

    def train_batches(self) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        return self.data.loader("train", batch_size=64, shuffle=True)


class MiniLMStudyTask:
    """Sentence embeddings on the shipped paraphrase set (metrics in [0, 1], x100 = %):
    all-MiniLM-L6-v2 from its package, or the user's own model from a local directory."""

    primary_metric = "paraphrase_top1"
    metrics = ("paraphrase_top1", "cosine_to_fp32")
    unit = ""

    def __init__(self, model_dir: str | Path | None = None) -> None:
        from picojoule.models.minilm import MiniLMTask

        self.name = "minilm" if model_dir is None else f"st:{model_dir}"
        self._task = MiniLMTask(model_dir=model_dir)

    def model(self) -> nn.Module:
        return self._task.model()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self._task.evaluate(model)

    def example_input(self) -> Any:
        return self._task.example_input()

    def calibration_batches(self, n: int) -> list:
        return self._task.calibration_batches(n)

    def train_batches(self) -> list[tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """Distillation data for QAT: held-out calibration sentences (never the evaluated
        pairs) with the FP32 model's embeddings as targets."""
        batches = self._task.calibration_batches(5)
        reference = self._task.model().eval()
        with torch.no_grad():
            return [(b, reference(*b)) for b in batches]

    @staticmethod
    def loss_fn(emb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cosine distance to the FP32 embedding: the metric the study reports."""
        return (1.0 - torch.nn.functional.cosine_similarity(emb, target, dim=-1)).mean()


def _resolve(spec: str, what: str) -> Callable:
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"--{what} {spec!r}: expected 'package.module:function'")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:
        raise ConfigError(
            f"--{what} {spec!r}: cannot import {mod_name!r} ({type(e).__name__}: {e}); "
            "check the module path and that it is on PYTHONPATH"
        ) from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise ConfigError(f"--{what} {spec!r}: {mod_name} has no callable {attr!r}")
    return fn


@dataclass
class UserTask:
    """A user's model, data and metric, given as three callables."""

    build: Callable[[], nn.Module]
    loader: Callable[[], Iterable]
    score: Callable[[nn.Module, Iterable], float]
    name: str = "user-model"
    primary_metric: str = "metric"
    metrics: tuple[str, ...] = ("metric",)
    unit: str = ""
    _model: nn.Module | None = field(default=None, repr=False)

    def _base(self) -> nn.Module:
        if self._model is None:
            m = self.build()
            if not isinstance(m, nn.Module):
                raise ConfigError(f"the model builder returned {type(m).__name__}, not nn.Module")
            self._model = m.eval()
        return self._model

    def model(self) -> nn.Module:
        return copy.deepcopy(self._base())

    def _batches(self) -> list:
        batches = list(self.loader())
        if not batches:
            raise ConfigError("the data loader yielded no batches")
        for b in batches[:1]:
            if not isinstance(b, tuple | list) or len(b) != 2:
                raise ConfigError("the data loader must yield (inputs, targets) pairs")
        return batches

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        try:
            with torch.no_grad():
                value = float(self.score(model.eval(), self._batches()))
        except PicojouleError:
            raise
        except Exception as e:
            raise ConfigError(
                f"the metric function failed: {type(e).__name__}: {e}; check that the loader's "
                "batches fit the model"
            ) from None
        if math.isnan(value):
            raise ConfigError("the metric function returned NaN; it must return a finite number")
        return {"metric": value}

    def example_input(self) -> Any:
        return self._batches()[0][0][:1]

    def calibration_batches(self, n: int) -> list:
        return [b[0] for b in self._batches()[:n]]

    def train_batches(self) -> Iterable:
        return self._batches()


def load_task(model: str = "digits", data: str | None = None, metric: str | None = None) -> Task:
    """`digits`, `minilm`, `st:DIR` (a local sentence-embedding model on MiniLM's paraphrase
    task), or a user's `pkg.module:build` with `--data` and `--metric`."""
    if model in ("digits", "digits-cnn"):
        return DigitsTask()
    if model == "minilm":
        return MiniLMStudyTask()
    if model.startswith("st:"):
        path = Path(model[3:]).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"--model {model}: {path} is not a directory; give st:DIR, a sentence-"
                "transformers or Hugging Face encoder saved locally"
            )
        return MiniLMStudyTask(path)
    if ":" not in model:
        raise ConfigError(
            f"--model {model!r}: use 'digits', 'minilm', 'st:DIR' (your sentence-embedding "
            "model) or 'package.module:build' (with --data and --metric)"
        )
    if not data or not metric:
        raise ConfigError(
            "a user model needs --data pkg.module:loader and --metric pkg.module:score"
        )
    return UserTask(
        build=_resolve(model, "model"),
        loader=_resolve(data, "data"),
        score=_resolve(metric, "metric"),
        name=model,
    )
