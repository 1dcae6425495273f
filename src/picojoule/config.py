"""One verb for every model transformation: `apply(model, cfg, filter_fn=...)`.

Configs are frozen dataclasses; each config type has exactly one handler, registered with
`@register_handler(ConfigType)` by the package that owns it (quant, sparsity, winograd).
The verbs `quantize_`, `sparsify_` and `winogradize_` are thin wrappers over `apply`.

A handler receives `(module, name, cfg)` for each selected leaf module and returns an
`Applied` record (what it did, or why it skipped) so every verb can print a per-layer table.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch.nn as nn

from picojoule.errors import ConfigError, did_you_mean

__all__ = [
    "Applied",
    "register_handler",
    "handler_for",
    "apply",
    "match_name",
    "check_model",
    "check_filter",
    "check_keys",
]

C = TypeVar("C")


@dataclass(frozen=True, kw_only=True)
class Applied:
    """What a handler did to one module: `action` is empty when it skipped (`reason` says why)."""

    name: str
    kind: str
    action: str = ""
    reason: str = ""

    @property
    def skipped(self) -> bool:
        return not self.action


Handler = Callable[[nn.Module, str, Any], Applied | None]
_HANDLERS: dict[type, Handler] = {}


def register_handler(config_type: type[C]) -> Callable[[Handler], Handler]:
    """Register the function that applies configs of `config_type` to one module."""

    def deco(fn: Handler) -> Handler:
        _HANDLERS[config_type] = fn
        return fn

    return deco


def handler_for(cfg: object) -> Handler:
    for cls in type(cfg).__mro__:
        if cls in _HANDLERS:
            return _HANDLERS[cls]
    known = ", ".join(sorted(t.__name__ for t in _HANDLERS)) or "none registered"
    raise ConfigError(f"no handler for config type {type(cfg).__name__}; known: {known}")


def check_model(model: object, verb: str = "apply") -> nn.Module:
    """`model` if it is an `nn.Module`; else one `ConfigError` line (every verb checks first,
    so `quantize_(None, ...)` never ends in an AttributeError deep inside torch)."""
    if not isinstance(model, nn.Module):
        hint = " (the arguments are (model, recipe))" if isinstance(model, str) else ""
        raise ConfigError(
            f"{verb}: the model must be a torch nn.Module, got {type(model).__name__}{hint}"
        )
    return model


def check_filter(filter_fn: object, verb: str = "apply") -> None:
    """`filter_fn` is None or a callable `(module, name) -> bool`."""
    if filter_fn is not None and not callable(filter_fn):
        raise ConfigError(
            f"{verb}: filter_fn must be a function (module, name) -> bool or None, got "
            f"{type(filter_fn).__name__}"
        )


def check_keys(
    data: object,
    valid: Sequence[str],
    what: str,
    hints: Mapping[str, str] | None = None,
) -> Mapping[str, object]:
    """`data` when it is a mapping whose keys are all in `valid` (the dict form of a config,
    `what` names it in messages); else one `ConfigError` naming the valid keys and the nearest
    one, or `hints[key]` when the key has a known other spelling."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what}: give a dict of {', '.join(valid)}, not {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{what}: keys are strings ({', '.join(valid)}), got {key!r}")
        if key not in valid:
            tip = f" ({hints[key]})" if hints and key in hints else did_you_mean(key, valid)
            raise ConfigError(f"{what}: unknown key {key!r}; valid keys: {', '.join(valid)}{tip}")
    return data


def match_name(name: str, pattern: str) -> bool:
    """Module-name glob (`fnmatch`), e.g. `classifier*`, `*.attention.*`."""
    return fnmatch.fnmatchcase(name, pattern)


def apply(
    model: nn.Module,
    cfg: object,
    *,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
) -> list[Applied]:
    """Apply `cfg` in place to every module of `model` (the root included) that `filter_fn`
    accepts; handlers ignore module types they do not serve by returning None.

    Returns one `Applied` per visited module (skips included, with their reason).
    """
    check_model(model)
    check_filter(filter_fn)
    handler = handler_for(cfg)
    results: list[Applied] = []
    # Snapshot first: handlers may replace children while we walk.
    for name, module in list(model.named_modules()):
        if filter_fn is not None and not filter_fn(module, name):
            continue
        rec = handler(module, name, cfg)
        if rec is not None:
            results.append(rec)
    return results
