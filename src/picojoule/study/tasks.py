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
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn

from picojoule.errors import ConfigError, nearest

__all__ = [
    "Task",
    "DigitsTask",
    "UserTask",
    "load_task",
    "task_factory",
    "metric_value",
    "fingerprint",
]


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


def _one_line(e: BaseException, limit: int = 200) -> str:
    """`Type: message` on one line, cut to `limit` characters (a user's exception may carry a
    multi-line message or a whole tensor)."""
    text = " ".join(str(e).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _resolve(spec: str, what: str) -> Callable:
    """The callable `package.module:function` names; `ConfigError` naming `--{what}` if not."""
    if not isinstance(spec, str):
        raise ConfigError(f"--{what}: expected 'package.module:function', got {spec!r}")
    mod_name, sep, attr = spec.strip().partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"--{what} {spec!r}: expected 'package.module:function'")
    try:
        mod = importlib.import_module(mod_name)
    except (Exception, SystemExit) as e:  # a user's module may fail any way, exit() included
        raise ConfigError(
            f"--{what} {spec!r}: cannot import {mod_name!r} ({_one_line(e)}); "
            "check the module path and that it is on PYTHONPATH"
        ) from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        found = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
        raise ConfigError(
            f"--{what} {spec!r}: {mod_name} has no callable {attr!r} "
            f"(did you mean {nearest(attr, found)}?)"
        )
    return fn


def metric_value(value: object, label: str = "the metric") -> float:
    """`value` as a finite float, or one `ConfigError` line saying what the metric returned
    instead and how to reduce it (a one-element tensor or array is accepted)."""
    if isinstance(value, torch.Tensor | np.ndarray):
        shape = tuple(value.shape)
        if (value.size if isinstance(value, np.ndarray) else value.numel()) != 1:
            raise ConfigError(
                f"{label} returned a {type(value).__name__} of shape {shape}, not one number; "
                "reduce it, e.g. return float(scores.mean())"
            )
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if value is None:
        raise ConfigError(f"{label} returned None; it must return a number (missing return?)")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(
            f"{label} returned a {type(value).__name__} ({_short(value)}), not a real number; "
            "return a float where higher is better"
        )
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(
            f"{label} returned {out}; it must return a finite number (check it on the FP32 "
            "model first)"
        )
    return out


def _short(v: object, limit: int = 40) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class UserTask:
    """A user's model, data and metric, given as three callables.

    Whatever one of them raises is reported as one `ConfigError` line naming it (`labels`: the
    CLI passes `--model pkg.mod:build` etc.) and the exception; the metric must return a finite
    real number (`metric_value`)."""

    build: Callable[[], nn.Module]
    loader: Callable[[], Iterable]
    score: Callable[[nn.Module, Iterable], float]
    name: str = "user-model"
    primary_metric: str = "metric"
    metrics: tuple[str, ...] = ("metric",)
    unit: str = ""
    labels: tuple[str, str, str] = ("the model builder", "the data loader", "the metric")
    _model: nn.Module | None = field(default=None, repr=False)

    def _base(self) -> nn.Module:
        if self._model is None:
            label = self.labels[0]
            try:
                m = self.build()
            except (Exception, SystemExit) as e:
                raise ConfigError(f"{label} raised {_one_line(e)}; fix the builder") from None
            if not isinstance(m, nn.Module):
                raise ConfigError(
                    f"{label} returned {type(m).__name__}, not a torch nn.Module; return the "
                    "model itself"
                )
            self._model = m.eval()
        return self._model

    def model(self) -> nn.Module:
        return copy.deepcopy(self._base())

    def _batches(self) -> list:
        label = self.labels[1]
        try:
            batches = list(self.loader())
        except TypeError as e:
            raise ConfigError(
                f"{label} failed ({_one_line(e)}); it must return an iterable of "
                "(inputs, targets) batches"
            ) from None
        except (Exception, SystemExit) as e:
            raise ConfigError(f"{label} raised {_one_line(e)}; fix the loader") from None
        if not batches:
            raise ConfigError(f"{label} yielded no batches; give at least one (inputs, targets)")
        for b in batches[:1]:
            if not isinstance(b, tuple | list) or len(b) != 2:
                raise ConfigError(
                    f"{label} must yield (inputs, targets) pairs; its first batch is a "
                    f"{type(b).__name__}" + (f" of {len(b)}" if isinstance(b, tuple | list) else "")
                )
        return batches

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        batches = self._batches()
        try:
            with torch.no_grad():
                value = self.score(model.eval(), batches)
        except (Exception, SystemExit) as e:
            raise ConfigError(
                f"{self.labels[2]} failed: {_one_line(e)}; check that the loader's batches fit "
                "the model"
            ) from None
        return {"metric": metric_value(value, self.labels[2])}

    def example_input(self) -> Any:
        inputs = self._batches()[0][0]
        try:
            return inputs[:1]  # one example: the costs are per inference
        except (TypeError, KeyError, IndexError):  # a dict of tensors, a scalar, None
            raise ConfigError(
                f"{self.labels[1]}: the inputs of a batch must be a tensor batched along its "
                f"first dimension, not {type(inputs).__name__}; yield (inputs, targets)"
            ) from None

    def calibration_batches(self, n: int) -> list:
        return [b[0] for b in self._batches()[:n]]

    def train_batches(self) -> Iterable:
        return self._batches()


_BUILT_IN = ("digits", "digits-cnn", "minilm")


def task_factory(
    model: str = "digits",
    data: str | None = None,
    metric: str | None = None,
    *,
    lm: Any = None,
) -> Callable[[], Task]:
    """Check the `--model/--data/--metric` specs (syntax, directories, imports and callables)
    without building anything; returns what builds the task. The CLI checks every input this
    way before it creates `--out` or trains a model."""
    for what, spec in (("model", model), ("data", data), ("metric", metric)):
        if (spec is not None or what == "model") and (
            not isinstance(spec, str) or not spec.strip()
        ):
            raise ConfigError(f"--{what} is empty; give 'package.module:function'")
    is_lm = model == "smollm2" or model.startswith("hf:")
    if model in _BUILT_IN or model.startswith("st:") or is_lm:
        extra = [f"--{w}" for w, v in (("data", data), ("metric", metric)) if v]
        if extra:
            raise ConfigError(
                f"{' and '.join(extra)} only go with a user model (--model pkg.module:build); "
                f"{model} brings its own data and metric"
            )
    if lm is not None and not is_lm:
        raise ConfigError(
            f"--text/--calib/--tokens/--seq-len/--prompt/--batch/--context/--decode and "
            f"--quantize-lm-head go with a language model (--model smollm2 or hf:DIR), not "
            f"{model}"
        )
    if is_lm:
        from picojoule.lm.task import LMOptions, LMStudyTask, check_lm_spec

        opts = lm if lm is not None else LMOptions()
        check_lm_spec(model, opts)
        return lambda: LMStudyTask(model, opts)
    if model in ("digits", "digits-cnn"):
        return DigitsTask
    if model == "minilm":
        return MiniLMStudyTask
    if model.startswith("st:"):
        if not model[3:].strip():
            raise ConfigError("--model st: needs a directory: st:DIR (a saved encoder)")
        path = Path(model[3:]).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"--model {model}: {path} is not a directory; give st:DIR, a sentence-"
                "transformers or Hugging Face encoder saved locally"
            )
        return lambda: MiniLMStudyTask(path)
    if ":" not in model:
        raise ConfigError(
            f"--model {model!r}: use 'digits', 'minilm', 'smollm2', 'st:DIR' (your sentence-"
            "embedding model), 'hf:DIR' (your causal language model) or "
            f"'package.module:build' (with --data and --metric); did you mean "
            f"{nearest(model, (*_BUILT_IN, 'smollm2'))}?"
        )
    if not data or not metric:
        raise ConfigError(
            "a user model needs --data pkg.module:loader and --metric pkg.module:score"
        )
    build, loader, score = (_resolve(model, "model"), _resolve(data, "data"),
                            _resolve(metric, "metric"))  # fmt: skip
    labels = (f"--model {model}", f"--data {data}", f"--metric {metric}")
    return lambda: UserTask(build=build, loader=loader, score=score, name=model, labels=labels)


def load_task(model: str = "digits", data: str | None = None, metric: str | None = None) -> Task:
    """`digits`, `minilm`, `st:DIR` (a local sentence-embedding model on MiniLM's paraphrase
    task), or a user's `pkg.module:build` with `--data` and `--metric`."""
    return task_factory(model, data, metric)()
