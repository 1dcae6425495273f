"""`quantize_(model, recipe)` and `report(model)`.

quantize_ goes through the one handler table (`picojoule.config.apply`). It leaves module
classes alone: weight fake-quant is a parametrization, activation fake-quant a forward pre-hook
with its quantizer registered as the submodule `input_quantizer`, so `state_dict`, sparsity
masks and `winogradize_` all keep working on the same modules.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.config import (
    Applied,
    apply,
    check_filter,
    check_model,
    match_name,
    register_handler,
)
from picojoule.errors import ConfigError
from picojoule.formats import CodebookFormat, Format
from picojoule.quant.modules import (
    ActivationFakeQuant,
    CodebookWeight,
    WeightFakeQuant,
    reduction_last,
)
from picojoule.quant.recipe import QuantConfig, parse_recipe

__all__ = [
    "quantize_",
    "report",
    "LayerQuant",
    "SUPPORTED",
    "weight_transforms",
    "weight_format_of",
    "layer_kind",
    "is_quantized",
]

SUPPORTED: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _input_hook(module: nn.Module, args: tuple) -> tuple:
    if not args:
        return args
    return (module.input_quantizer(args[0]), *args[1:])


@register_handler(QuantConfig)
def _quantize_module(module: nn.Module, name: str, cfg: QuantConfig) -> Applied | None:
    if not isinstance(module, SUPPORTED):
        return None
    kind = type(module).__name__
    layer_cfg = cfg.for_module(name)
    if layer_cfg is None or (layer_cfg.weight is None and layer_cfg.activation is None):
        return Applied(name=name, kind=kind, reason="kept in float by the recipe")
    if is_quantized(module):  # `quantize_` refuses before any change; this guards `apply`
        raise ConfigError(f"{name or kind} is already quantized; quantize a fresh float copy")
    done = []
    if layer_cfg.weight is not None:
        fmt = layer_cfg.weight.resolve("weight")
        if isinstance(fmt, CodebookFormat):
            transform: nn.Module = CodebookWeight(fmt, module.weight)
        else:
            transform = WeightFakeQuant(fmt, layer_cfg.weight.rounding)
        parametrize.register_parametrization(module, "weight", transform)
        done.append(f"w:{fmt.name}")
    if layer_cfg.activation is not None:
        a = layer_cfg.activation
        module.input_quantizer = ActivationFakeQuant(
            a.resolve("activation"),
            calibration=a.calibration,
            percentile=a.percentile,
            role="features" if isinstance(module, nn.Linear) else "activation",
        )
        module.register_forward_pre_hook(_input_hook)
        done.append(f"a:{module.input_quantizer.fmt.name}")
    return Applied(name=name, kind=kind, action=",".join(done))


def is_quantized(module: nn.Module) -> bool:
    """Whether `quantize_` already fake-quantizes this layer's weight or input."""
    return hasattr(module, "input_quantizer") or any(
        isinstance(t, WeightFakeQuant | CodebookWeight) for t in weight_transforms(module)
    )


def weight_transforms(module: nn.Module) -> list[nn.Module]:
    """The parametrizations stacked on `module.weight`, in application order."""
    if not parametrize.is_parametrized(module, "weight"):
        return []
    return list(module.parametrizations["weight"])  # type: ignore[index]


def quantize_(
    model: nn.Module,
    recipe: str | QuantConfig | Mapping[str, object],
    *,
    overrides: Mapping[str, str | QuantConfig | Mapping[str, object] | None] | None = None,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    backend: str = "emulate",
    expose: bool = True,
) -> list[Applied]:
    """Quantize `model` in place; returns one record per supported layer (done or skipped).

    recipe: the string form ("w:nvfp4,a:e4m3"), a `QuantConfig`, or a dict of its fields
    (`{"weight": "nvfp4", "activation": "e4m3"}`, see `parse_recipe`).

    expose: first rewrite the layers hooks cannot reach (`expose_layers_`: Hugging Face
    `Conv1D` -> `nn.Linear`, `nn.MultiheadAttention` -> Linear projections + SDPA; same
    numbers), so GPT-2's projections are quantized too. Their records (kind "Conv1D" or
    "MultiheadAttention", action what they became) come first in the returned list;
    `describe_exposed(records)` says it in one line. `expose=False` leaves them alone (with a
    warning naming them). A model with nothing hidden is not touched. The rewrite is undone
    when `quantize_` refuses the recipe, so an error leaves the model as it was.

    backend: "emulate" (fake-quant, bit-exact values, any device) or "triton" (real packed
    weights and fused kernels from `picojoule.gpu`, CUDA only).

    Recipes do not stack: a layer (or the attention products) that is already quantized and
    that this call would quantize again raises `ConfigError` before anything changes. The
    weights under a fake-quant are already rounded values to the model, so re-quantizing in
    place would either round twice or need the float original kept; quantize a fresh float
    copy instead (`copy.deepcopy` the model before the first call). Layers a `filter_fn` or an
    override leaves out are not touched, so disjoint calls still compose.

    Wrong argument types (`None` or a string as the model, a non-mapping `overrides`, ...) raise
    `ConfigError`.
    """
    from picojoule.quant.unfuse import Exposure, check_expose, rewrite_hidden_

    check_model(model, "quantize_")
    check_filter(filter_fn, "quantize_")
    check_expose(expose, "quantize_")
    if not isinstance(backend, str):
        raise ConfigError(f"quantize_: backend must be 'emulate' or 'triton', not {backend!r}")
    cfg = parse_recipe(recipe, overrides)
    if cfg.wcal != "rtn" or cfg.smooth is not None or cfg.rotate is not None:
        raise ConfigError(
            f"quantize_: {cfg}: wcal:/smooth:/rotate: need calibration data; run the recipe "
            "with picojoule.quant.algorithms.apply_algorithms_(model, recipe, batches) (what "
            "`picojoule study` does)"
        )
    if backend == "triton":
        from picojoule.gpu.modules import to_packed_

        if cfg.activation or cfg.attention or cfg.kv or cfg.weight is None:
            raise ConfigError(
                "backend='triton' runs weight-only recipes (w:...); drop a:/attn:/kv:"
            )
        shown = rewrite_hidden_(model) if expose else Exposure()
        return [*shown.records, *to_packed_(model, cfg.weight.format)]
    if backend != "emulate":
        raise ConfigError(f"unknown backend {backend!r}; use 'emulate' or 'triton'")
    if cfg.kv is not None and getattr(model, "kv_spec", None) is not None:
        raise ConfigError(
            f"quantize_: the KV cache is already {model.kv_spec.describe()}; recipes do not "
            "stack - quantize a fresh float copy"
        )
    if cfg.kv is not None and cfg.weight is None and cfg.activation is None:
        from picojoule.quant.kvcache import install_kv

        install_kv(model, cfg.kv)  # kv: alone: no layer changes
        return [_kv_record(model, cfg)]
    shown = rewrite_hidden_(model) if expose else Exposure()
    try:
        _check_layers(model, cfg, filter_fn)
    except BaseException:
        shown.undo()  # refused: the model as it came
        raise
    _warn_hidden_layers(model)
    done = [*shown.records, *apply(model, cfg, filter_fn=filter_fn)]
    if cfg.attention is not None:
        done.append(_quantize_products(model, cfg))
    if cfg.kv is not None:
        from picojoule.quant.kvcache import install_kv

        install_kv(model, cfg.kv)
        done.append(_kv_record(model, cfg))
    return done


def _check_layers(
    model: nn.Module, cfg: QuantConfig, filter_fn: Callable[[nn.Module, str], bool] | None
) -> None:
    """`ConfigError` before any layer changes: no layer to quantize, overrides naming none,
    a layer quantized twice, a KV recipe on a model without a cache."""
    names = [n for n, m in model.named_modules() if isinstance(m, SUPPORTED)]
    if not names:
        hidden = hidden_layers(model)
        hint = (
            f"; {', '.join(hidden[:3])}{' ...' if len(hidden) > 3 else ''} are hidden layers: "
            "leave expose=True (the default) to quantize them as nn.Linear"
            if hidden
            else ""
        )
        raise ConfigError(
            f"{type(model).__name__} has no layer picojoule can quantize "
            f"(supported: {', '.join(t.__name__ for t in SUPPORTED)}){hint}"
        )
    # with attn:, an override may also name the module that calls attention's products
    known = [n for n, _ in model.named_modules()] if cfg.attention is not None else names
    unmatched = [g for g, _ in cfg.overrides if not any(match_name(n, g) for n in known)]
    if unmatched:
        raise ConfigError(
            f"recipe overrides name layers that do not exist: {', '.join(unmatched)}; "
            f"the model's layers are: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}"
        )
    _refuse_requantize(model, cfg, filter_fn)
    if cfg.kv is not None:  # checked before any layer changes: refused on a model without one
        from picojoule.quant.kvcache import check_kv_model

        check_kv_model(model, cfg.kv)


def _kv_record(model: nn.Module, cfg: QuantConfig) -> Applied:
    assert cfg.kv is not None
    return Applied(name="<kv cache>", kind="cache", action=cfg.kv.describe())


def _refuse_requantize(
    model: nn.Module, cfg: QuantConfig, filter_fn: Callable[[nn.Module, str], bool] | None
) -> None:
    """`ConfigError` if this call would quantize a layer (or the attention products) that
    already is: checked over the whole model before any layer changes."""
    again = []
    for name, m in model.named_modules():
        if not isinstance(m, SUPPORTED) or not is_quantized(m):
            continue
        if filter_fn is not None and not filter_fn(m, name):
            continue
        layer_cfg = cfg.for_module(name)
        if layer_cfg is not None and (layer_cfg.weight or layer_cfg.activation):
            again.append(name or "<root>")
    if cfg.attention is not None and hasattr(model, "product_quantizer"):
        again.append("<attention products>")
    if again:
        listed = ", ".join(again[:6]) + (" ..." if len(again) > 6 else "")
        raise ConfigError(
            f"quantize_: already quantized: {listed}; recipes do not stack - quantize a fresh "
            "float copy (copy.deepcopy the model before the first quantize_), or leave these "
            "layers out with filter_fn"
        )


def hidden_layers(model: nn.Module) -> list[str]:
    """ "name (kind)" of every module whose layers hooks cannot reach: `nn.MultiheadAttention`
    (projections inside `F.multi_head_attention_forward`: in_proj is a bare parameter and
    out_proj never runs as a module) and Hugging Face `Conv1D` (GPT-2's projections, a Linear
    through `torch.addmm`). `picojoule.quant.expose_layers_` rewrites both, numbers unchanged."""
    from picojoule.quant.unfuse import is_hf_conv1d

    out = []
    for n, m in model.named_modules():
        if isinstance(m, nn.MultiheadAttention):
            out.append(f"{n or '<root>'} (MultiheadAttention)")
        elif is_hf_conv1d(m):
            out.append(f"{n or '<root>'} (Conv1D)")
    return out


def _warn_hidden_layers(model: nn.Module) -> None:
    names = hidden_layers(model)
    if names:
        warnings.warn(
            f"{', '.join(names[:4])}{' ...' if len(names) > 4 else ''}: hidden from quantize_. "
            "nn.MultiheadAttention runs its projections functionally: only out_proj's weight is "
            "quantized; in_proj, the projections' inputs (a:) and its attention products "
            "(attn:) stay float. Conv1D multiplies through torch.addmm: not quantized. Leave "
            "quantize_'s expose=True (the default; it rewrites all but MultiheadAttention with "
            "add_bias_kv/add_zero_attn): same numbers, nn.Linear projections and SDPA that "
            "quantize_ reaches",
            stacklevel=3,
        )


def _quantize_products(model: nn.Module, cfg: QuantConfig) -> Applied:
    """attn: the operands of functional matrix products (attention), per calling module: the
    recipe's format, or an override's (one without attn: keeps that module's in float)."""
    from picojoule.quant.products import install_products

    if hasattr(model, "product_quantizer"):
        return Applied(name="<products>", kind="matmul", reason="already quantized")
    fmt = cfg.attention.resolve("activation")  # type: ignore[union-attr]
    overrides = tuple(
        (glob, sub.attention.resolve("activation") if sub and sub.attention else None)
        for glob, sub in cfg.overrides
    )
    install_products(model, fmt, SUPPORTED, overrides)
    return Applied(name="<products>", kind="matmul", action=f"attn:{fmt.name}")


@dataclass(frozen=True, kw_only=True)
class LayerQuant:
    """Per-layer quantization summary: formats, bits and the weight error it causes."""

    name: str
    kind: str
    weight_format: str
    activation_format: str
    bits_per_weight: float
    weight_mse: float
    weight_max_error: float
    weight_rel_rmse: float

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def weight_format_of(module: nn.Module) -> Format | None:
    """The format `quantize_` gave this layer's weight (None: left in float)."""
    for t in weight_transforms(module):
        if isinstance(t, WeightFakeQuant | CodebookWeight):
            return t.fmt
    return None


@torch.no_grad()
def _before_and_after_quant(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight entering the quantizer (after any sparsity mask) and the quantized weight,
    so the error is the quantizer's alone."""
    if not parametrize.is_parametrized(m, "weight"):
        return m.weight.detach(), m.weight.detach()
    plist = m.parametrizations["weight"]  # type: ignore[index]
    x = plist.original.detach()
    before = x
    for t in plist:
        if isinstance(t, WeightFakeQuant | CodebookWeight):
            before = x
        x = t(x)
    return before, x


def layer_kind(m: nn.Module) -> str:
    """Layer class name, seeing through parametrize's generated subclass."""
    cls = type(m)
    return cls.__bases__[0].__name__ if cls.__name__.startswith("Parametrized") else cls.__name__


def report(model: nn.Module) -> list[LayerQuant]:
    """Per supported layer: formats, bits/weight, and weight MSE / max error vs float."""
    rows = []
    for name, m in model.named_modules():
        if not isinstance(m, SUPPORTED):
            continue
        fmt = weight_format_of(m)
        w, q = _before_and_after_quant(m)
        err = (q.float() - w.float()).flatten()
        rms_w = float(w.float().pow(2).mean().sqrt()) or 1.0
        aq = getattr(m, "input_quantizer", None)
        rows.append(
            LayerQuant(
                name=name,
                kind=layer_kind(m),
                weight_format=fmt.name if fmt else str(w.dtype).removeprefix("torch."),
                activation_format=aq.fmt.name if aq is not None else "-",
                bits_per_weight=fmt.bits_per_element if fmt else float(w.element_size() * 8),
                weight_mse=float(err.pow(2).mean()),
                weight_max_error=float(err.abs().max()) if err.numel() else 0.0,
                weight_rel_rmse=float(err.pow(2).mean().sqrt()) / rms_w,
            )
        )
    return rows


def layer_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Reduction-last 2-D shape of each supported layer's weight (what formats see)."""
    return {
        n: tuple(reduction_last(m.weight.detach(), "weight").shape)
        for n, m in model.named_modules()
        if isinstance(m, SUPPORTED)
    }
