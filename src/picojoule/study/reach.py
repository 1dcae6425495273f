"""Which recipes reach a model: a structural check before the first recipe runs.

A lever that applies to no layer of the model (Winograd without a 3x3 stride-1 Conv2d, a
sparsity pattern whose groups fit no weight, a format on a model with no Linear or Conv, a
`kv:` format on a model with no KV cache) would leave a row that is another recipe under a
misleading name. `misses(model, recipe)` says which of a recipe's levers would, using the
levers' own decisions (`picojoule.winograd.convert.skip_reason`,
`picojoule.sparsity.sparsify.layer_plan` / `pattern_fits`, `picojoule.quant`'s supported layer
types and per-layer overrides) without changing the model or touching its weights: the study
skips such a recipe with the reason and runs the others.

Public: `Miss`, `misses`, `headline`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.study.recipes import Recipe

__all__ = ["Miss", "misses", "headline"]


@dataclass(frozen=True)
class Miss:
    """One lever of a recipe that applies to no layer: `why` is the headline a report row
    shows; `lines` are the per-layer reasons (`layer: skipped: why`) the lever would report."""

    lever: str
    why: str
    lines: tuple[str, ...] = ()


def headline(lever: str, recipe: Recipe, lines: list[str] | tuple[str, ...] = ()) -> str:
    """The short reason a report row gives for a lever that applies to no layer."""
    if lever == "winograd":
        return "no 3x3 stride-1 Conv2d (winograd)"
    if lever == "sparsity":
        if not lines:
            return "no Linear or Conv layer to prune (sparsity)"
        return f"{recipe.sparsity} prunes no layer (sparsity)"
    if lever == "kv":
        return "no KV cache (quant kv:)"
    if not lines:
        return "no Linear or Conv layer to quantize (quant)"
    return "the recipe keeps every layer in float (quant)"


def _winograd(model: nn.Module, recipe: Recipe) -> Miss | None:
    from picojoule.winograd.convert import WinogradConfig, skip_reason

    cfg = WinogradConfig(tile=recipe.winograd)
    lines = []
    for name, module in model.named_modules():
        reason = skip_reason(module, cfg)
        if reason == "":
            return None
        if reason is not None:
            lines.append(f"{name}: skipped: {reason}")
    return Miss("winograd", headline("winograd", recipe, lines), tuple(lines))


def _sparsity(model: nn.Module, recipe: Recipe) -> Miss | None:
    from picojoule.sparsity.recipe import parse_recipe
    from picojoule.sparsity.sparsify import layer_plan, pattern_fits, resolve_roles

    cfg = resolve_roles(model, parse_recipe(recipe.sparsity))
    lines = []
    for name, module in model.named_modules():
        plan = layer_plan(module, name, cfg)
        if plan is None:
            continue
        pattern, reason = plan
        if pattern is not None:
            reason = pattern_fits(tuple(module.weight.shape), pattern)
            if not reason:
                return None
        lines.append(f"{name}: skipped: {reason}")
    return Miss("sparsity", headline("sparsity", recipe, lines), tuple(lines))


def _quant(model: nn.Module, recipe: Recipe, overrides: Mapping | None) -> list[Miss]:
    from picojoule.quant.api import SUPPORTED
    from picojoule.quant.recipe import parse_recipe

    cfg = parse_recipe(recipe.quant, overrides)
    out = []
    if cfg.weight is not None or cfg.activation is not None:
        lines = []
        reached = False
        for name, module in model.named_modules():
            if not isinstance(module, SUPPORTED):
                continue
            sub = cfg.for_module(name)
            if sub is not None and (sub.weight is not None or sub.activation is not None):
                reached = True
                break
            lines.append(f"{name}: skipped: kept in float by the recipe")
        if not reached:
            out.append(Miss("quant", headline("quant", recipe, lines), tuple(lines)))
    if cfg.kv is not None:
        from picojoule.quant.kvcache import check_kv_model

        try:
            check_kv_model(model, cfg.kv)
        except ConfigError as e:
            out.append(Miss("quant", headline("kv", recipe), (f"<kv cache>: skipped: {e}",)))
    return out


def misses(model: nn.Module, recipe: Recipe, overrides: Mapping | None = None) -> list[Miss]:
    """The recipe's levers that would apply to no layer of `model` (empty: it reaches the
    model), in the order the study applies them. `model` is not changed; `overrides` are the
    task's per-layer quant overrides (an LM keeps its head in float)."""
    found: list[Miss] = []
    if recipe.winograd and (m := _winograd(model, recipe)) is not None:
        found.append(m)
    if recipe.sparsity and (m := _sparsity(model, recipe)) is not None:
        found.append(m)
    if recipe.quant:
        found.extend(_quant(model, recipe, overrides))
    return found
