"""What a study runs on: a model, its data, its metric.

A task gives a fresh FP32 model per recipe, evaluates a (transformed) model into named metrics
(`primary_metric` first), provides calibration batches, an example input for cost extraction,
and (optionally) training batches for fine-tuning.

Built in: `digits` (the default CNN) and `minilm` (extra `minilm`). A user's own model:
`--model pkg.module:build --data pkg.module:loader --metric pkg.module:score [--eval
pkg.module:loader]`: `build()` returns an nn.Module (trained); `loader()` an iterable of
`(inputs, targets)` batches, or a mapping of splits `{"train": ..., "calib": ..., "eval": ...}`
(`SPLITS`); `score(model, batches) -> float` (higher is better unless the task says
`higher_is_better=False`). Held-out batches (`--eval`, or the "eval" split) score the recipes;
without them the metric scores the very batches that calibrate and fine-tune, and the report
marks the rows that fine-tuned on them.

User code runs under the user's threads: when picojoule chose its own intra-op thread count
(`set_study_threads`, what `picojoule study --threads` does), every call into `build()`, a
loader or the metric runs under the count the process had before (`user_threads`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import math
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn as nn

from picojoule.errors import ConfigError, did_you_mean

__all__ = [
    "Task",
    "DigitsTask",
    "UserTask",
    "load_task",
    "task_factory",
    "metric_value",
    "fingerprint",
    "SPLITS",
    "set_study_threads",
    "user_threads",
    "check_metric_name",
]

# What a --data loader may return instead of one list of batches: its splits, by role.
SPLITS = {
    "train": "fine-tuning (and calibration when there is no 'calib')",
    "calib": "calibration of activation formats and the calibration algorithms",
    "eval": "scoring every recipe (held out; or give --eval)",
}

_START_THREADS: int | None = None  # torch's thread count before picojoule first set its own


def set_study_threads(n: int) -> None:
    """Set torch's intra-op threads for picojoule's own work (fake-quant, costing), keeping
    the count the process had before the first call for user code (`user_threads`)."""
    global _START_THREADS
    if _START_THREADS is None:
        _START_THREADS = torch.get_num_threads()
    torch.set_num_threads(n)


@contextlib.contextmanager
def user_threads() -> Iterator[None]:
    """Run a call into user code (a `build()`, loader or metric) under the thread count the
    process had before picojoule chose its own, and restore picojoule's after; a no-op where
    picojoule never changed it."""
    want, now = _START_THREADS, torch.get_num_threads()
    if want is None or want == now:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(now)


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
    scored_on = "the digits test split (held out)"

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

    def sample_inputs(self, n: int) -> torch.Tensor:
        """The first `n` held-out test images: the layer data `picojoule winograd study` and
        `picojoule sparsity report` measure (`picojoule.models.spec.sample_inputs`)."""
        return self.data.x_test[:n]


class MiniLMStudyTask:
    """Sentence embeddings on the shipped paraphrase set (metrics in [0, 1], x100 = %):
    all-MiniLM-L6-v2 from its package, or the user's own model from a local directory."""

    primary_metric = "paraphrase_top1"
    metrics = ("paraphrase_top1", "cosine_to_fp32")
    unit = ""
    scored_on = "the shipped paraphrase pairs (held out)"

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
            f"--{what} {spec!r}: {mod_name} has no callable {attr!r} {did_you_mean(attr, found)}"
        )
    return fn


def check_metric_name(name: object) -> str:
    """`--metric-name`: a short one-line label for the report's column and JSON key."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("--metric-name is empty; give the metric's name, e.g. --metric-name f1")
    name = name.strip()
    if not name.isprintable() or len(name) > 40:
        raise ConfigError(
            f"--metric-name {_short(name)}: give a short one-line name (at most 40 printable "
            "characters), e.g. --metric-name top1"
        )
    return name


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
            "return one float, e.g. float(accuracy)"
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
    """A user's model, data and metric, given as callables.

    `loader()` returns an iterable of `(inputs, targets)` batches, or a mapping of `SPLITS`
    (`"train"`, `"calib"`, `"eval"`). `eval_loader()` (`--eval`) returns held-out batches for
    the metric. Scoring uses `eval_loader`, else the "eval" split, else the --data batches
    themselves (which also calibrate and fine-tune: `held_out` is False and the report marks
    the rows that fine-tuned). `score(model, batches) -> float`; `primary_metric` names it and
    `higher_is_better` orients it (the delta is always metric minus the baseline's).

    Whatever one of the callables raises is reported as one `ConfigError` line naming it
    (`labels`: the CLI passes `--model pkg.mod:build` etc.) and the exception; the metric must
    return a finite real number (`metric_value`). Each call runs under `user_threads`."""

    build: Callable[[], nn.Module]
    loader: Callable[[], Iterable | Mapping]
    score: Callable[[nn.Module, Iterable], float]
    name: str = "user-model"
    primary_metric: str = "metric"
    higher_is_better: bool = True
    eval_loader: Callable[[], Iterable] | None = None
    unit: str = ""
    labels: tuple[str, str, str] = ("the model builder", "the data loader", "the metric")
    eval_label: str = "the eval loader"
    metrics: tuple[str, ...] = field(init=False)
    delta_kind = "difference"  # also where lower is better: a loss's delta, not a ratio
    _model: nn.Module | None = field(default=None, repr=False)
    _eval_split: bool | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.primary_metric = check_metric_name(self.primary_metric)
        self.metrics = (self.primary_metric,)

    @property
    def cache_tag(self) -> str:
        """What besides the weights shapes the numbers: the specs (CLI), the held-out data,
        the metric's name and direction."""
        direction = "higher" if self.higher_is_better else "lower"
        held = self.eval_label if self.eval_loader is not None else ""
        return "|".join((*self.labels, held, self.primary_metric, direction))

    def _base(self) -> nn.Module:
        if self._model is None:
            label = self.labels[0]
            try:
                with user_threads():
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

    def _load(self, loader: Callable[[], Any], label: str) -> Any:
        """What `loader()` returns, lists made of its iterables (a DataLoader is iterated
        here, under the user's threads)."""
        try:
            with user_threads():
                raw = loader()
                if isinstance(raw, Mapping):
                    return {k: _as_list(v, f"{label} [{k!r}]") for k, v in raw.items()}
                return list(raw)
        except ConfigError:
            raise
        except TypeError as e:
            raise ConfigError(
                f"{label} failed ({_one_line(e)}); it must return an iterable of "
                f"(inputs, targets) batches, or a mapping of splits ({', '.join(SPLITS)})"
            ) from None
        except (Exception, SystemExit) as e:
            raise ConfigError(f"{label} raised {_one_line(e)}; fix the loader") from None

    def _splits(self) -> dict[str, list]:
        """The --data batches by role: "train" and "calib" always, "eval" when held out."""
        label = self.labels[1]
        raw = self._load(self.loader, label)
        if isinstance(raw, dict):
            unknown = [k for k in raw if k not in SPLITS]
            if unknown:
                hint = did_you_mean(str(unknown[0]), SPLITS, n=1)
                raise ConfigError(
                    f"{label} returned a mapping with key {_short(unknown[0])}; its keys are "
                    f"splits: {', '.join(SPLITS)}{hint} - held-out data goes under 'eval'"
                )
            if "train" not in raw and "calib" not in raw:
                raise ConfigError(
                    f"{label} returned splits {', '.join(map(repr, raw))} without 'train' or "
                    "'calib'; add the batches that calibrate (and fine-tune) the recipes"
                )
            splits = {k: _check_pairs(v, f"{label} [{k!r}]") for k, v in raw.items()}
        else:
            splits = {"train": _check_pairs(raw, label)}
        splits.setdefault("calib", splits.get("train", []))
        self._eval_split = "eval" in splits
        if self._eval_split and self.eval_loader is not None:
            raise ConfigError(
                f"{label} returned an 'eval' split and {self.eval_label} gives held-out data "
                "too; keep one of them"
            )
        return splits

    @property
    def held_out(self) -> bool:
        """Whether the metric scores batches that neither calibrate nor fine-tune."""
        if self.eval_loader is not None:
            return True
        if self._eval_split is None:  # known once the loader has run (it has, after a study)
            try:
                self._splits()
            except ConfigError:
                return False
        return bool(self._eval_split)

    @property
    def scored_on(self) -> str:
        """Which data scores every row, in words (the report and JSON say it)."""
        if self.eval_loader is not None:
            return f"{self.eval_label} (held out)"
        if self.held_out:
            return f"the 'eval' split of {self.labels[1]} (held out)"
        return f"{self.labels[1]}: the batches that also calibrate and fine-tune (not held out)"

    @property
    def notes(self) -> list[str]:
        if self.held_out:
            return [f"Scored on {self.scored_on}; calibrated and fine-tuned on {self.labels[1]}."]
        return [
            f"No held-out data: every recipe is scored on {self.labels[1]}, the batches that "
            "also calibrate and fine-tune it, so rows that fine-tune are scored on their own "
            "training data (marked). Give --eval pkg.module:loader, or an 'eval' split."
        ]

    def _eval_batches(self) -> list:
        splits = self._splits()  # a bad --data fails here too, before any number is reported
        if self.eval_loader is None:
            return splits.get("eval") or splits.get("train") or splits["calib"]
        batches = self._load(self.eval_loader, self.eval_label)
        if isinstance(batches, dict):
            raise ConfigError(
                f"{self.eval_label} returned a mapping; held-out data is one iterable of "
                "batches (splits go in the --data loader)"
            )
        if not batches:
            raise ConfigError(f"{self.eval_label} yielded no batches; give at least one")
        return batches

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        batches = self._eval_batches()
        try:
            with torch.no_grad(), user_threads():
                value = self.score(model.eval(), batches)
        except (Exception, SystemExit) as e:
            raise ConfigError(
                f"{self.labels[2]} failed: {_one_line(e)}; check that the loader's batches fit "
                "the model"
            ) from None
        return {self.primary_metric: metric_value(value, self.labels[2])}

    def example_input(self) -> Any:
        inputs = self._splits()["calib"][0][0]
        try:
            return inputs[:1]  # one example: the costs are per inference
        except (TypeError, KeyError, IndexError):  # a dict of tensors, a scalar, None
            raise ConfigError(
                f"{self.labels[1]}: the inputs of a batch must be a tensor batched along its "
                f"first dimension, not {type(inputs).__name__}; yield (inputs, targets)"
            ) from None

    def calibration_batches(self, n: int) -> list:
        return [b[0] for b in self._splits()["calib"][:n]]

    def train_batches(self) -> Iterable:
        train = self._splits().get("train")
        if not train:
            raise ConfigError(
                f"{self.labels[1]} has no 'train' split: a recipe that fine-tunes needs one"
            )
        return train


def _as_list(batches: object, label: str) -> list:
    if isinstance(batches, str | bytes | Mapping) or not isinstance(batches, Iterable):
        raise ConfigError(
            f"{label} is a {type(batches).__name__}; each split is an iterable of "
            "(inputs, targets) batches"
        )
    return list(batches)


def _check_pairs(batches: list, label: str) -> list:
    if not batches:
        raise ConfigError(f"{label} yielded no batches; give at least one (inputs, targets)")
    b = batches[0]
    if not isinstance(b, tuple | list) or len(b) != 2:
        raise ConfigError(
            f"{label} must yield (inputs, targets) pairs; its first batch is a "
            f"{type(b).__name__}" + (f" of {len(b)}" if isinstance(b, tuple | list) else "")
        )
    return batches


_BUILT_IN = ("digits", "digits-cnn", "minilm")


def task_factory(
    model: str = "digits",
    data: str | None = None,
    metric: str | None = None,
    *,
    lm: Any = None,
    eval_data: str | None = None,
    metric_name: str | None = None,
    higher_is_better: bool | None = None,
    needs_metric: bool = True,
) -> Callable[[], Task]:
    """Check the `--model/--data/--metric/--eval` specs (syntax, directories, imports and
    callables) and `--metric-name` without building anything; returns what builds the task.
    The CLI checks every input this way before it creates `--out` or trains a model.

    `lm` (`LMOptions`) goes with a language model; None fits the defaults to the model's
    positions. `needs_metric=False` (commands that only cost a model: `picojoule map`, `dse
    run`) lets a user model come without `--metric`: its `--data` gives the example input.
    `picojoule.models.spec` puts this loader behind every command's `--model`."""
    specs = (("model", model), ("data", data), ("metric", metric), ("eval", eval_data))
    for what, spec in specs:
        if (spec is not None or what == "model") and (
            not isinstance(spec, str) or not spec.strip()
        ):
            raise ConfigError(f"--{what} is empty; give 'package.module:function'")
    is_lm = model == "smollm2" or model.startswith("hf:")
    if model in _BUILT_IN or model.startswith("st:") or is_lm:
        extra = [f"--{w}" for w, v in specs[1:] if v]
        extra += ["--metric-name"] if metric_name is not None else []
        if higher_is_better is not None:
            extra.append("--higher-is-better" if higher_is_better else "--lower-is-better")
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

        check_lm_spec(model, lm if lm is not None else LMOptions())
        return lambda: LMStudyTask(model, lm)
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
            f"'package.module:build' (with --data and --metric)"
            f"{did_you_mean(model, (*_BUILT_IN, 'smollm2'))}"
        )
    if not needs_metric and not data:
        raise ConfigError(
            f"--model {model}: a user model needs --data pkg.module:loader (its first batch "
            "gives the example input the model is run on)"
        )
    if needs_metric and (not data or not metric):
        raise ConfigError(
            "a user model needs --data pkg.module:loader and --metric pkg.module:score"
        )
    name = check_metric_name(metric_name) if metric_name is not None else "metric"
    build, loader = _resolve(model, "model"), _resolve(data, "data")
    score = _resolve(metric, "metric") if metric else _unscored
    held = _resolve(eval_data, "eval") if eval_data else None
    labels = (f"--model {model}", f"--data {data}", f"--metric {metric}" if metric else "--metric")
    higher = True if higher_is_better is None else bool(higher_is_better)
    return lambda: UserTask(build=build, loader=loader, score=score, name=model, labels=labels,
                            primary_metric=name, higher_is_better=higher, eval_loader=held,
                            eval_label=f"--eval {eval_data}")  # fmt: skip


def _unscored(model: nn.Module, batches: Iterable) -> float:
    """The metric of a user model given without --metric (cost-only commands never call it)."""
    raise ConfigError("no --metric was given; add --metric pkg.module:score to score the model")


def load_task(model: str = "digits", data: str | None = None, metric: str | None = None) -> Task:
    """`digits`, `minilm`, `st:DIR` (a local sentence-embedding model on MiniLM's paraphrase
    task), or a user's `pkg.module:build` with `--data` and `--metric`."""
    return task_factory(model, data, metric)()
