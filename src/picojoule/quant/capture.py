"""Layer-by-layer calibration inputs: what each layer sees, in the order the model runs them.

Post-training algorithms (GPTQ, AWQ, SmoothQuant, SparseGPT) need, per layer, statistics of
the layer's input (a Hessian, channel maxima, token samples) - and GPTQ and SparseGPT need them
*sequentially*: a layer's statistics come from inputs that already flow through the previous
layers as the algorithm left them (Frantar et al. 2022, section 4 "full algorithm"; the
reference code quantizes a transformer block by block). `sequential` does that for any model:

- **Stages.** Layers that read the very same input tensor (Llama's q/k/v, gate/up) form one
  stage; one traced forward pass finds them (and which module produced each stage's input, for
  the algorithms that fold scales into it). A stage's layers are updated together, after their
  statistics are complete, as the reference does.
- **Blocks.** When the model is a stack of repeated blocks (the largest `nn.ModuleList` holding
  the target layers: a decoder's `layers`, an encoder's `layer`), block 0's inputs are cached
  once and each block runs on the cached inputs, stage by stage; its outputs, computed after its
  layers were updated, feed the next block. Cost: about (stages per block + 1) block passes per
  block, i.e. a few model passes in all, not one per layer.
- **Other layers** (a CNN's, a classifier head) run whole-model passes that stop right after
  the stage's last layer.

Statistics see the input as the layer does, after any activation fake-quant installed before
(a forward pre-hook registered later runs later). Calls that bypass blocks (the model-level
hooks of `attn:` and `kv:`) do not act while blocks run alone: block inputs are computed with
them, block-internal products without.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.errors import ConfigError

__all__ = [
    "Observer",
    "SharedInput",
    "Stage",
    "StageLayer",
    "sequential",
    "trace_stages",
    "run_batch",
    "observe_all",
]


class Observer(Protocol):
    """Accumulates statistics of one layer's input, one batch at a time."""

    def add_batch(self, x: torch.Tensor) -> None: ...


@dataclass(frozen=True)
class StageLayer:
    name: str
    module: nn.Module
    observer: Any


@dataclass(frozen=True)
class Stage:
    """Layers that read one input tensor; `producer` is the module that made it (None: the
    model's input or a non-module op such as a residual add)."""

    names: tuple[str, ...]
    producer: str | None


class SharedInput:
    """Makes layers that read the very same tensor share one observer, fed once per batch
    (q/k/v share their input, so one Hessian serves all three: 3x less work). Layers whose
    inputs are distinct tensors (each behind its own activation fake-quant) get their own.

    `shared(name, module)` is an `observer` factory for `sequential`."""

    def __init__(self, make: Callable[[str, nn.Module], Any]) -> None:
        self._make = make
        self._by_input: dict[int, _Fed] = {}

    def __call__(self, name: str, module: nn.Module) -> Any:
        return _Fed(self._make(name, module), self._by_input)


class _Fed:
    """An observer that hands a batch on once: a later layer with the same input tensor
    reuses the first one's statistics (`stats`)."""

    def __init__(self, inner: Any, by_input: dict[int, _Fed]) -> None:
        self.inner = inner
        self._by_input = by_input
        self._last: torch.Tensor | None = None
        self.source: _Fed = self

    def add_batch(self, x: torch.Tensor) -> None:
        first = self._by_input.get(id(x))
        if first is not None and first is not self and first._last is x:
            self.source = first  # the same tensor as an earlier layer's: its stats serve us
            return
        self._by_input[id(x)] = self
        self._last = x
        self.source = self
        self.inner.add_batch(x)

    @property
    def stats(self) -> Any:
        return self.source.inner


class _Stop(Exception):
    """Raised by a hook to end a forward pass early (everything needed was seen)."""


def run_batch(model: nn.Module, batch: Any) -> Any:
    """Call `model` on one calibration batch (tensor, tuple/list of args, or dict of kwargs).
    A transformers model runs without its KV cache (`use_cache=False`): calibration passes are
    independent windows, and a cache would carry one block's run into its next."""
    kw: dict[str, Any] = {}
    if getattr(getattr(model, "config", None), "use_cache", None) is not None:
        kw["use_cache"] = False
    if isinstance(batch, dict):
        return model(**batch, **kw)
    if isinstance(batch, tuple | list):
        return model(*batch, **kw)
    return model(batch, **kw)


def _producers(model: nn.Module) -> Callable[[], None]:
    """Register forward hooks remembering which module returned which tensor (weakly)."""
    seen: dict[int, tuple[weakref.ref, str]] = {}
    handles = []
    for name, m in model.named_modules():
        if not name:
            continue

        def post(mod: nn.Module, args: tuple, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor):
                seen[id(out)] = (weakref.ref(out), name)

        handles.append(m.register_forward_hook(post))
    model._pj_producers = seen  # type: ignore[assignment]

    def remove() -> None:
        for h in handles:
            h.remove()
        del model._pj_producers

    return remove


def trace_stages(model: nn.Module, names: Sequence[str], batch: Any) -> list[Stage]:
    """Stages of the layers `names`, in the order one forward pass of `batch` calls them."""
    modules = dict(model.named_modules())
    order: list[tuple[str, int, str | None]] = []  # (layer, input id, producer)
    keep: list[torch.Tensor] = []  # inputs stay alive so their ids stay unique
    remove = _producers(model)
    seen = model._pj_producers  # type: ignore[attr-defined]
    handles = []
    for name in names:

        def pre(mod: nn.Module, args: tuple, name: str = name) -> None:
            if not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0]
            keep.append(x)
            hit = seen.get(id(x))
            producer = hit[1] if hit is not None and hit[0]() is x else None
            order.append((name, id(x), producer))

        # prepend: before any activation fake-quant hook, so shared inputs share an id
        handles.append(modules[name].register_forward_pre_hook(pre, prepend=True))
    try:
        with torch.no_grad():
            run_batch(model, batch)
    finally:
        for h in handles:
            h.remove()
        remove()
    stages: list[Stage] = []
    by_input: dict[int, int] = {}
    done: set[str] = set()
    for name, xid, producer in order:
        if name in done:  # a layer called twice (weight sharing): its first call decides
            continue
        done.add(name)
        if xid in by_input:
            i = by_input[xid]
            stages[i] = Stage(names=(*stages[i].names, name), producer=stages[i].producer)
        else:
            by_input[xid] = len(stages)
            stages.append(Stage(names=(name,), producer=producer))
    missing = [n for n in names if n not in done]
    if missing:
        raise ConfigError(
            f"calibration: layers {', '.join(missing[:4])} are never called by a forward pass; "
            "leave them out of the recipe (an override `NAME=none`)"
        )
    return stages


def _block_list(model: nn.Module, names: Sequence[str]) -> tuple[str, nn.ModuleList] | None:
    """The `nn.ModuleList` whose children hold the most target layers (at least two blocks)."""
    best: tuple[int, str, nn.ModuleList] | None = None
    for lname, m in model.named_modules():
        if not isinstance(m, nn.ModuleList) or len(m) < 2:
            continue
        prefix = f"{lname}." if lname else ""
        held = sum(1 for n in names if n.startswith(prefix))
        blocks = {n[len(prefix) :].split(".")[0] for n in names if n.startswith(prefix)}
        if len(blocks) >= 2 and (best is None or held > best[0]):
            best = (held, lname, m)
    return None if best is None else (best[1], best[2])


def _hooked(modules: dict[str, nn.Module], layers: Sequence[StageLayer]) -> list[Any]:
    """Pre-hooks feeding each layer's input to its observer; the last one ends the pass."""
    handles = []
    last = layers[-1].name
    for layer in layers:

        def pre(mod: nn.Module, args: tuple, layer: StageLayer = layer) -> None:
            if args and isinstance(args[0], torch.Tensor):
                layer.observer.add_batch(args[0])  # not detached: identity tells shared inputs
            if layer.name == last:
                raise _Stop

        handles.append(modules[layer.name].register_forward_pre_hook(pre))
    return handles


def _hidden_of(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple | list) else out


def _with_hidden(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def sequential(
    model: nn.Module,
    names: Sequence[str],
    batches: Iterable[Any],
    *,
    observer: Callable[[str, nn.Module], Any],
    update: Callable[[Sequence[StageLayer], Stage], None],
    progress: Callable[[int, int, str], None] | None = None,
    stages: Sequence[Stage] | None = None,
) -> list[Stage]:
    """Observe the layers `names` stage by stage and let `update` change them in between.

    stages: `trace_stages(model, names, batches[0])` when the caller already traced them.

    observer(name, module) makes a fresh observer (`add_batch(x)`) for a layer; update(layers,
    stage) runs once a stage's observers saw every batch, before any later layer is observed;
    progress(done, total, stage label) after each stage. Returns the stages in run order.
    """
    batches = list(batches)
    if not batches:
        raise ConfigError("calibration: no calibration batches; the task gave none")
    names = list(names)
    modules = dict(model.named_modules())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            stages = list(stages) if stages is not None else trace_stages(model, names, batches[0])
            found = _block_list(model, names)
            total, done = len(stages), 0

            def tick(stage: Stage) -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, total, ",".join(stage.names))

            if found is None:
                for stage in stages:
                    _full_pass_stage(model, modules, stage, batches, observer, update)
                    tick(stage)
                return stages
            prefix, blocks = found
            prefix = f"{prefix}." if prefix else ""

            def block_of(name: str) -> int | None:
                if not name.startswith(prefix):
                    return None
                head = name[len(prefix) :].split(".")[0]
                return int(head) if head.isdigit() else None

            first_block = min(i for s in stages for n in s.names if (i := block_of(n)) is not None)
            before = [s for s in stages if all(block_of(n) is None for n in s.names)]
            # a stage outside the blocks runs before them if traced before the first block's
            first_pos = next(i for i, s in enumerate(stages) if block_of(s.names[0]) is not None)
            for stage in [s for s in before if stages.index(s) < first_pos]:
                _full_pass_stage(model, modules, stage, batches, observer, update)
                tick(stage)
            inputs = _block_inputs(model, blocks[first_block], batches)
            for b in range(first_block, len(blocks)):
                mine = [s for s in stages if block_of(s.names[0]) == b]
                for stage in mine:
                    if any(block_of(n) != b for n in stage.names):
                        raise ConfigError(
                            f"calibration: layers {', '.join(stage.names)} share one input "
                            "across blocks; picojoule cannot calibrate them block by block"
                        )
                    calls = [partial(blocks[b], *a, **k) for a, k in inputs]
                    _observe_stage(modules, stage, calls, observer, update)
                    tick(stage)
                if b + 1 < len(blocks):
                    with parametrize.cached():
                        inputs = [
                            _with_hidden(a, k, _hidden_of(blocks[b](*a, **k))) for a, k in inputs
                        ]
            for stage in [s for s in before if stages.index(s) > first_pos]:
                _full_pass_stage(model, modules, stage, batches, observer, update)
                tick(stage)
            return stages
    finally:
        model.train(was_training)


def _block_inputs(model: nn.Module, block: nn.Module, batches: list[Any]) -> list[tuple]:
    """(args, kwargs) that `block` receives for each batch (the pass stops at the block)."""
    got: list[tuple[tuple, dict]] = []

    def pre(mod: nn.Module, args: tuple, kwargs: dict) -> None:
        got.append((args, dict(kwargs)))
        raise _Stop

    handle = block.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        for batch in batches:
            with contextlib.suppress(_Stop):
                run_batch(model, batch)
    finally:
        handle.remove()
    if len(got) != len(batches):
        raise ConfigError("calibration: the model skipped its first block on some batches")
    return got


def _full_pass_stage(
    model: nn.Module,
    modules: dict[str, nn.Module],
    stage: Stage,
    batches: list[Any],
    observer: Callable[[str, nn.Module], Any],
    update: Callable[[Sequence[StageLayer], Stage], None],
) -> None:
    calls = [partial(run_batch, model, batch) for batch in batches]
    _observe_stage(modules, stage, calls, observer, update)


def _observe_stage(
    modules: dict[str, nn.Module],
    stage: Stage,
    calls: Sequence[Callable[[], Any]],
    observer: Callable[[str, nn.Module], Any],
    update: Callable[[Sequence[StageLayer], Stage], None],
) -> None:
    """Run `calls` (each ends right after the stage's last layer saw its input), then update."""
    layers = [StageLayer(n, modules[n], observer(n, modules[n])) for n in stage.names]
    handles = _hooked(modules, layers)
    try:
        # weights are fixed until `update`: fake-quantize each once, not once per batch
        with parametrize.cached():
            for call in calls:
                with contextlib.suppress(_Stop):
                    call()
    finally:
        for h in handles:
            h.remove()
    update(layers, stage)


def observe_all(
    model: nn.Module,
    names: Sequence[str],
    batches: Iterable[Any],
    observer: Callable[[str, nn.Module], Any],
) -> tuple[list[Stage], dict[str, Any]]:
    """One pass over `batches` feeding every layer's input to its observer at once: for
    statistics an update does not change (an exact scale fold leaves every later input as it
    was), this replaces `sequential`'s pass per stage. Returns (stages, name -> observer)."""
    batches = list(batches)
    if not batches:
        raise ConfigError("calibration: no calibration batches; the task gave none")
    modules = dict(model.named_modules())
    was_training = model.training
    model.eval()
    observers = {n: observer(n, modules[n]) for n in names}
    handles = [
        modules[n].register_forward_pre_hook(
            lambda m, args, obs=observers[n]: (
                obs.add_batch(args[0].detach())
                if args and isinstance(args[0], torch.Tensor)
                else None
            )
        )
        for n in names
    ]
    try:
        with torch.no_grad():
            stages = trace_stages(model, names, batches[0])
            for batch in batches:
                run_batch(model, batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return stages, observers
