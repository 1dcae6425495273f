"""`sparsify_(model, recipe)`: fixed magnitude masks as the FIRST weight parametrization.

Public: `SparsityMask`, `sparsify_`, `mask_of`, `unmasked_weight`, `resolve_roles`.

The mask is a `torch.nn.utils.parametrize` parametrization at index 0 of `weight`'s list,
ahead of any fake-quant parametrization `quantize_` adds, so the effective weight is
`quantize(mask * w)` whichever verb ran first. Gradients flow through `masked_fill`, which
passes zero gradient to pruned entries, so fine-tuning keeps them at zero.

Running `sparsify_` on an already-masked layer prunes further: the new mask is computed on the
weights the old mask kept, so pruned weights stay pruned (this is how `prune_gradually` steps).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.config import Applied, apply, check_model, register_handler
from picojoule.errors import ConfigError, ShapeError
from picojoule.sparsity.masks import check_mask_shape, weight_mask
from picojoule.sparsity.patterns import Pattern
from picojoule.sparsity.recipe import SparsityConfig, config_from_dict, parse_recipe, pattern_for

__all__ = [
    "SparsityMask",
    "sparsify_",
    "mask_of",
    "unmasked_weight",
    "resolve_roles",
    "layer_plan",
    "pattern_fits",
    "layer_kind",
    "PRUNABLE",
]

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def layer_kind(module: nn.Module) -> str:
    """ "linear", "conv1d", "conv2d", "conv3d", or the class name (parametrized or not)."""
    for cls in PRUNABLE:
        if isinstance(module, cls):
            return cls.__name__.lower()
    # parametrize injects a subclass named "Parametrized<Base>"; report the base name.
    return type(module).__name__.removeprefix("Parametrized")


class SparsityMask(nn.Module):
    """Parametrization `w -> w * mask` with a fixed bool `mask` buffer and its pattern name."""

    def __init__(self, mask: torch.Tensor, pattern: str) -> None:
        super().__init__()
        self.pattern = pattern
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w.masked_fill(~self.mask, 0)

    def extra_repr(self) -> str:
        return f"pattern={self.pattern}, density={self.mask.float().mean().item():.4f}"


def mask_of(module: nn.Module) -> SparsityMask | None:
    """The module's weight mask, or None if it is not sparsified."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    first = module.parametrizations.weight[0]
    return first if isinstance(first, SparsityMask) else None


def unmasked_weight(module: nn.Module) -> torch.Tensor:
    """The weight before every parametrization (the trained values under the mask)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def _install(module: nn.Module, mask: torch.Tensor, pattern: Pattern) -> None:
    existing = mask_of(module)
    if existing is not None:
        existing.mask &= mask
        existing.pattern = pattern.name
        return
    parametrize.register_parametrization(module, "weight", SparsityMask(mask, pattern.name))
    plist = module.parametrizations.weight
    if len(plist) > 1:
        # register_parametrization appends; move the mask ahead of e.g. fake-quant.
        ours = plist[len(plist) - 1]
        del plist[len(plist) - 1]
        plist.insert(0, ours)


def layer_plan(
    module: nn.Module, name: str, cfg: SparsityConfig
) -> tuple[Pattern | None, str] | None:
    """What `sparsify_` would do to `module`, without touching it: None for a module it does
    not report (no weight), (pattern, "") for one it masks, (None, reason) for one it leaves
    dense. Whether the pattern's groups fit the weight's shape is `pattern_fits`'s to say."""
    if not isinstance(getattr(module, "weight", None), torch.Tensor):
        return None
    if not isinstance(module, PRUNABLE):
        from picojoule.quant.unfuse import is_hf_conv1d

        if is_hf_conv1d(module):
            return None, "hidden (a Linear through torch.addmm); sparsify_'s expose=True prunes it"
        kind = layer_kind(module)
        return None, f"{kind}.weight has no reduction dimension (scale or lookup table)"
    return pattern_for(cfg, name)


def pattern_fits(shape: tuple[int, ...], pattern: Pattern) -> str:
    """Empty if `pattern` can mask a weight of `shape`, else why not (what `sparsify_` reports):
    the shape is checked by the rules `weight_mask` applies, so no memory and no time is spent."""
    try:
        check_mask_shape(shape, pattern)
    except ShapeError as exc:
        return f"{pattern.name} cannot serve it: {exc}"
    return ""


@register_handler(SparsityConfig)
def _sparsify_module(module: nn.Module, name: str, cfg: SparsityConfig) -> Applied | None:
    if not cfg.roles_resolved:
        raise ConfigError(
            "skip_first_conv/skip_classifier need the whole model: call sparsify_(model, cfg), "
            "or set both to False before picojoule.config.apply"
        )
    kind = layer_kind(module)
    plan = layer_plan(module, name, cfg)
    if plan is None:
        return None  # activations, pooling, containers: nothing to prune, nothing to report
    pattern, reason = plan
    if pattern is None:
        return Applied(name=name, kind=kind, reason=reason)
    current = unmasked_weight(module).detach()
    existing = mask_of(module)
    if existing is not None:
        current = current.masked_fill(~existing.mask, 0)
    try:
        mask = weight_mask(current, pattern)
    except ShapeError as exc:
        return Applied(name=name, kind=kind, reason=f"{pattern.name} cannot serve it: {exc}")
    _install(module, mask, pattern)
    density = mask_of(module).mask.float().mean().item()
    return Applied(name=name, kind=kind, action=f"{pattern.name} mask, density {density:.3f}")


def resolve_roles(model: nn.Module, cfg: SparsityConfig) -> SparsityConfig:
    """Turn `skip_first_conv`/`skip_classifier` into explicit (name, reason) skips for `model`."""
    prunable = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    skips: list[tuple[str, str]] = []
    convs = [n for n, m in prunable if not isinstance(m, nn.Linear)]
    linears = [n for n, m in prunable if isinstance(m, nn.Linear)]
    if cfg.skip_first_conv and convs:
        skips.append((convs[0], "first conv (kept dense)"))
    if cfg.skip_classifier and linears:
        skips.append((linears[-1], "classifier (kept dense)"))
    return cfg.with_resolved_skips(tuple(skips))


def sparsify_(
    model: nn.Module,
    recipe: str | SparsityConfig | Mapping[str, object] = "2:4",
    *,
    expose: bool = True,
) -> list[Applied]:
    """Mask `model`'s Linear/Conv weights in place by `recipe`; one `Applied` per weighted layer.

    `recipe` is a `SparsityConfig`, its text form (`parse_recipe`), e.g. "2:4,fc1=1:4", or a
    dict of its fields (`{"pattern": "2:4", "layers": {"fc1": "1:4"}}`, `config_from_dict`).
    Layers a pattern cannot serve are skipped with the reason, never an exception.

    expose: first rewrite the layers hooks cannot reach (`picojoule.quant.expose_layers_`:
    Hugging Face `Conv1D` -> `nn.Linear`, `nn.MultiheadAttention` -> Linear projections; same
    numbers), so GPT-2's projections are pruned too; their records come first. `expose=False`
    leaves them alone (dense). Note the classifier skip (the last Linear) then sees the exposed
    layers: a GPT-2 without a head has its last MLP projection as last Linear.
    """
    from picojoule.quant.unfuse import check_expose, expose_layers_

    check_model(model, "sparsify_")
    check_expose(expose, "sparsify_")
    if isinstance(recipe, str):
        cfg = parse_recipe(recipe)
    elif isinstance(recipe, Mapping):
        cfg = config_from_dict(recipe)
    else:
        cfg = recipe
    if not isinstance(cfg, SparsityConfig):
        raise ConfigError(
            f"sparsify_ takes a recipe string or SparsityConfig (or a dict of its fields), got "
            f"{type(cfg).__name__}"
        )
    exposed = expose_layers_(model) if expose else []
    with torch.no_grad():
        return [*exposed, *apply(model, resolve_roles(model, cfg))]
