"""Model specs: one way to name a model, understood by every command that takes `--model`.

Forms (`MODEL_HELP`), the same in `study`, `map`, `sparsity report`, `winograd study` and
`dse run`:

- `digits`: the built-in digits CNN (trained once, then cached);
- `minilm`: all-MiniLM-L6-v2 on the shipped paraphrase pairs (extra `minilm`);
- `smollm2`: SmolLM2-135M-Instruct on held-out text (extra `llm`);
- `st:DIR`: your sentence-embedding model, saved locally (scored like `minilm`);
- `hf:DIR`: your causal language model, saved locally (scored like `smollm2`);
- `pkg.mod:build`: your own `nn.Module`, with `--data pkg.mod:loader` (and, where a command
  measures accuracy, `--metric pkg.mod:score`; see `picojoule.study.tasks`).

The commands that only cost a model (`map`, `dse run`) also take the built-in workload names
(`picojoule.workload.builtin.BUILTINS`: layer shapes only, no weights), which win where a
name could be both (`digits-cnn` is the built-in workload, `digits` the trained model).

`resolve(...)` checks a spec - its syntax, the directory, the module and its callables -
without building anything, so a typo costs a second, not a training run, and nothing is
written. `ModelSource.load()` then builds the task and its FP32 model (a builder that raises
is one `ConfigError` line naming it), and `ModelSource.workload(batch)` gives the cost model's
`Workload`: a built-in by name, or the model run once on its example input, repeated to
`batch`, with attention and GPT-2's Conv1D exposed as layers (`from_model`'s `expose=True`).
The task comes from `picojoule.study.tasks.task_factory`, the loader `picojoule study` uses;
this module adds the workload names, the tracing and the checks before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from picojoule.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    import torch.nn as nn

    from picojoule.study.tasks import Task
    from picojoule.workload.layer import Workload

__all__ = [
    "MODEL_NAMES",
    "MODEL_HELP",
    "ModelSource",
    "resolve",
    "repeat_batch",
    "sample_inputs",
    "workload_help",
]

# Models known by name (their data and metric come with them); the rest are prefixed forms.
MODEL_NAMES = ("digits", "minilm", "smollm2")
MODEL_HELP = (
    "digits | minilm | smollm2 | st:DIR (your sentence embedding model) | hf:DIR (your "
    "causal LM) | pkg.mod:build (your nn.Module, with --data pkg.mod:loader)"
)


def workload_help(names: Any) -> str:
    """`--model` help of a cost-only command: the built-in workload `names`, then the models."""
    return f"a built-in workload ({', '.join(names)}) or a model: {MODEL_HELP}"


def _is_model(spec: str) -> bool:
    return spec in (*MODEL_NAMES, "digits-cnn") or ":" in spec


@dataclass(frozen=True)
class ModelSource:
    """A checked `--model` spec; nothing built yet. `builtin` names a built-in workload (cost
    -only commands); `make_task` builds the task (`task_factory`)."""

    spec: str
    make_task: Callable[[], Task] | None = None
    builtin: str | None = None

    def load(self) -> tuple[Task, nn.Module]:
        """The task and a fresh FP32 copy of its model (eval mode); one `PicojouleError` line
        if the model cannot be built or loaded."""
        if self.make_task is None:
            raise ConfigError(
                f"--model {self.spec}: a built-in workload has layer shapes, no weights or "
                f"data; give a model: {MODEL_HELP}"
            )
        task = self.make_task()
        return task, task.model().eval()

    def workload(self, batch: int = 1, *, warn: Callable[[str], None] | None = None) -> Workload:
        """The cost model's workload at `batch`: the built-in by name, or the model's layers
        as it runs on its example input repeated `batch` times (named after the spec).
        `warn` receives the tracer's warnings (layers it cannot model) as lines."""
        if self.builtin is not None:
            from picojoule.workload.builtin import builtin

            return builtin(self.builtin, batch=batch)
        import warnings

        from picojoule.workload.from_torch import from_model

        task, model = self.load()
        example = repeat_batch(task.example_input(), batch)
        # from_model exposes attention and Conv1D as layers the cost model sees (expose=True)
        if warn is None:
            workload = from_model(model, example)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                workload = from_model(model, example)
            for w in caught:
                warn(str(w.message))
        return replace(workload, name=self.spec)


def resolve(
    model: str = "digits",
    data: str | None = None,
    metric: str | None = None,
    *,
    eval_data: str | None = None,
    metric_name: str | None = None,
    higher_is_better: bool | None = None,
    lm: Any = None,
    workloads: bool = False,
    needs_metric: bool = True,
    option: str = "--model",
) -> ModelSource:
    """Check a `--model` spec and its `--data/--metric/--eval` before any work (module
    docstring). `workloads`: the command also takes built-in workload names (cost-only
    commands, which also set `needs_metric=False`); `option` names where the spec came from
    (a space file's `workload:`). Raises one `ConfigError` line naming the problem and fix."""
    if workloads:
        from picojoule.workload.builtin import BUILTINS

        text = model.strip() if isinstance(model, str) else model
        if not isinstance(text, str) or not text:
            raise ConfigError(f"{option} is empty; give {workload_help(BUILTINS)}")
        key = text.lower().replace("_", "-")
        if key in BUILTINS:
            extra = [f"--{w}" for w, v in (("data", data), ("metric", metric),
                                           ("eval", eval_data)) if v]  # fmt: skip
            if extra:
                raise ConfigError(
                    f"{' and '.join(extra)} only go with a user model (pkg.mod:build); "
                    f"{text} is a built-in workload (layer shapes only)"
                )
            return ModelSource(spec=key, builtin=key)
        if not _is_model(text):
            guess = did_you_mean(key, (*BUILTINS, *MODEL_NAMES))
            raise ConfigError(
                f"{option} {text!r}: not a built-in workload or a model; give "
                f"{workload_help(BUILTINS)}{guess}"
            )
        if not data and not text.startswith(("st:", "hf:")) and ":" in text:
            raise ConfigError(
                f"{option} {text}: a user model needs --data pkg.mod:loader (its first batch "
                "gives the example input the model runs on)"
            )
        model = text
    from picojoule.study.tasks import task_factory

    make = task_factory(
        model, data, metric, lm=lm, eval_data=eval_data, metric_name=metric_name,
        higher_is_better=higher_is_better, needs_metric=needs_metric,
    )  # fmt: skip
    return ModelSource(spec=model.strip(), make_task=make)


def repeat_batch(example: Any, batch: int) -> Any:
    """`example` (one inference: a tensor, a tuple of them or a dict of keyword inputs) with
    every tensor's first dimension repeated to `batch`; anything else passes unchanged."""
    import torch

    if batch == 1:
        return example
    if isinstance(example, torch.Tensor):
        if example.dim() == 0:
            return example
        return example[:1].repeat(batch, *([1] * (example.dim() - 1)))
    if isinstance(example, tuple | list):
        return type(example)(repeat_batch(x, batch) for x in example)
    if isinstance(example, dict):
        return {k: repeat_batch(v, batch) for k, v in example.items()}
    return example


def sample_inputs(task: Task, n: int) -> Any:
    """Inputs a command measures a model's layers on: the task's own `sample_inputs(n)`
    (digits: its first `n` test images), else its first calibration batch (at most `n`
    rows of a tensor; a tuple or dict of tensors, as the model takes them)."""
    import torch

    own = getattr(task, "sample_inputs", None)
    if own is not None:
        return own(n)
    batches = task.calibration_batches(1)
    if not batches:
        raise ConfigError(f"{task.name} gave no calibration batch; its data yielded nothing")
    first = batches[0]
    return first[:n] if isinstance(first, torch.Tensor) else first
