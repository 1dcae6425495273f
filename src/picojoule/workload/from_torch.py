"""Extract a workload from a PyTorch model: `from_model(model, example_input, recipe=None)`.

Public: `from_model`.

The model is traced with `torch.fx` and the graph is run once on `example_input` by an
interpreter that records every convolution, linear layer and matrix product with its real
shapes (so attention's `q @ k.T` and `attn @ v` become matmul layers). Each layer carries
* formats: from `recipe` (a `picojoule.quant` recipe string or `QuantConfig`, resolved per
  module name); without a recipe, from the model's own fake-quant (if `quantize_` was
  applied), else `fp16`;
* densities: the weight mask's density (if `sparsify_` was applied) and the measured
  fraction of non-zero inputs in this example run (ReLU outputs are sparse).
3-D and transposed convolutions are not modelled; they are named in a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from picojoule.errors import ShapeError
from picojoule.quant.products import MATMULS
from picojoule.workload.layer import Layer, Workload

__all__ = ["from_model", "apply_recipe", "layer_of", "matmul_layer", "sdpa_layers", "MATMULS"]

FLOAT_FORMAT = "fp16"
# Weighted layers whose loop nests this package does not describe (reported, not mapped).
_UNMODELLED = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _operand_formats(
    module: nn.Module | None, name: str, recipe: Any, float_format: str = FLOAT_FORMAT
) -> tuple[str, str, float]:
    """(weight format, input format, weight density) for one layer: the single place where
    picojoule.hw reads the quant recipe and the sparsity parametrization. Operands neither
    names in a format are `float_format`."""
    density = 1.0
    if module is not None:
        from picojoule.sparsity import mask_of

        mask = mask_of(module)
        if mask is not None:
            density = max(float(mask.mask.float().mean()), 1e-6)
    if recipe is not None:
        from picojoule.quant import parse_recipe

        cfg = parse_recipe(recipe).for_module(name)
        if cfg is None:
            return float_format, float_format, density
        w = cfg.weight.resolve("weight").name if cfg.weight else float_format
        a = cfg.activation.resolve("activation").name if cfg.activation else float_format
        return w, a, density
    w = a = float_format
    if module is not None:
        from picojoule.quant import weight_transforms

        for t in weight_transforms(module):
            fmt = getattr(t, "fmt", None)
            if fmt is not None:
                w = fmt.name
        quantizer = getattr(module, "input_quantizer", None)
        if quantizer is not None:
            a = quantizer.fmt.name
    return w, a, density


def _product_format(name: str, recipe: Any, float_format: str) -> str:
    """Operand format of a functional matmul: `attn:` if the recipe has it (model-wide), else
    the recipe's input format for `name` (a hardware what-if: "all activations in a:")."""
    if recipe is None:
        return float_format
    from picojoule.quant import parse_recipe

    cfg = parse_recipe(recipe)
    if cfg.attention is not None:
        return cfg.attention.resolve("activation").name
    return _operand_formats(None, name, cfg, float_format)[1]


def _density(x: torch.Tensor) -> float:
    return max(float((x != 0).float().mean()), 1e-6) if x.numel() else 1.0


def _conv_layer(
    name: str,
    x: torch.Tensor,
    out: torch.Tensor,
    mod: nn.Conv1d | nn.Conv2d,
    formats: tuple[str, str, float],
) -> Layer:
    if any(d != 1 for d in mod.dilation):
        raise ShapeError(
            f"{name}: dilated convolutions are not modelled (dilation "
            f"{mod.dilation}); the cost model covers dilation 1"
        )
    two_d = out.dim() == 4
    n, k_total = out.shape[0], out.shape[1]
    p, q = (out.shape[2], out.shape[3]) if two_d else (1, out.shape[2])
    r, s = (mod.kernel_size[0], mod.kernel_size[1]) if two_d else (1, mod.kernel_size[0])
    sh, sw = (mod.stride[0], mod.stride[1]) if two_d else (1, mod.stride[0])
    g = mod.groups
    c = x.shape[1] // g
    w_fmt, a_fmt, w_density = formats
    return Layer(
        name=name,
        kind="depthwise" if g > 1 and c == 1 else "conv",
        N=n,
        G=g,
        K=k_total // g,
        C=c,
        P=p,
        Q=q,
        R=r,
        S=s,
        stride_h=sh,
        stride_w=sw,
        weight_format=w_fmt,
        input_format=a_fmt,
        output_format=a_fmt,
        weight_density=w_density,
        input_density=_density(x),
    )


def _linear_layer(
    name: str,
    x: torch.Tensor,
    out_features: int,
    in_features: int,
    formats: tuple[str, str, float],
    kind: str = "linear",
) -> Layer:
    w_fmt, a_fmt, w_density = formats
    rows = x.numel() // in_features
    return Layer(
        name=name,
        kind=kind,
        N=rows,
        K=out_features,
        C=in_features,
        weight_format=w_fmt,
        input_format=a_fmt,
        output_format=a_fmt,
        weight_density=w_density,
        input_density=_density(x),
    )


def layer_of(
    name: str,
    mod: nn.Module,
    x: torch.Tensor,
    out: torch.Tensor,
    *,
    key: str | None = None,
    recipe: Any = None,
    float_format: str = FLOAT_FORMAT,
) -> Layer | None:
    """The `Layer` of one Conv1d/Conv2d/Linear call on input `x` giving `out` (None for any
    other module). `key` is the module name recipes match (default `name`)."""
    if isinstance(mod, nn.Conv1d | nn.Conv2d):
        fm = _operand_formats(mod, key or name, recipe, float_format)
        return _conv_layer(name, x, out, mod, fm)
    if isinstance(mod, nn.Linear):
        fm = _operand_formats(mod, key or name, recipe, float_format)
        return _linear_layer(name, x, mod.out_features, mod.in_features, fm)
    return None


def matmul_layer(
    name: str, a: torch.Tensor, b: torch.Tensor, *, recipe: Any = None,
    float_format: str = FLOAT_FORMAT,
) -> Layer:  # fmt: skip
    """`a [..., M, C] @ b [..., C, K]`: rows in N, batch/heads in G. Both operands are
    activations and take one format: the recipe's `attn:`, else the input format it gives
    `name`, else `float_format`."""
    if a.dim() < 2 or b.dim() < 2:
        raise ShapeError(f"{name}: matmul of vectors is not a layer; shapes {tuple(a.shape)}")
    m, c, k = a.shape[-2], a.shape[-1], b.shape[-1]
    g = max(a[..., 0, 0].numel(), b[..., 0, 0].numel())
    a_fmt = _product_format(name, recipe, float_format)
    return Layer(
        name=name,
        kind="matmul",
        N=m,
        G=g,
        K=k,
        C=c,
        weight_format=a_fmt,
        input_format=a_fmt,
        output_format=a_fmt,
        weight_density=_density(b),
        input_density=_density(a),
    )


def sdpa_layers(
    name: str, args: tuple, kwargs: dict, *, recipe: Any = None,
    float_format: str = FLOAT_FORMAT, rounder: Any = None,
) -> tuple[Layer, Layer]:  # fmt: skip
    """The two matmuls of one `F.scaled_dot_product_attention(*args, **kwargs)` call:
    `name.qk` (Q K^T) and `name.av` (softmax(...) V). The attention matrix is rebuilt with the
    call's mask and causality, so AV's input density counts masked (zero) probabilities.
    `rounder` (a `picojoule.quant.products.ProductFakeQuant`) rounds the operands first, so
    densities are those of the values the products really see."""
    from picojoule.quant.products import attention_mask, expand_kv_heads, sdpa_arguments

    p = sdpa_arguments(args, kwargs)
    q = p["query"]
    k, v = expand_kv_heads(q, p["key"], p["value"])
    kt = k.transpose(-2, -1)
    if rounder is not None:
        q, kt, v = rounder.left(q), rounder.right(kt), rounder.right(v)
    scores = attention_mask((q @ kt).float(), p["attn_mask"], p["is_causal"])
    probs = torch.nan_to_num(torch.softmax(scores, dim=-1))  # fully masked rows are zeros
    if rounder is not None:
        probs = rounder.left(probs)
    return (
        matmul_layer(f"{name}.qk", q, kt, recipe=recipe, float_format=float_format),
        matmul_layer(f"{name}.av", probs, v, recipe=recipe, float_format=float_format),
    )


def _model_product_format(model: nn.Module) -> str:
    from picojoule.quant.products import product_format_of

    fmt = product_format_of(model)
    return fmt.name if fmt is not None else FLOAT_FORMAT


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, recipe: Any, product_format: str) -> None:
        super().__init__(gm)
        self.recipe = recipe
        self.product_format = product_format
        self.layers: list[Layer] = []
        self.counts: dict[str, int] = {}
        self.skipped: list[str] = []

    def _name(self, base: str) -> str:
        k = self.counts.get(base, 0)
        self.counts[base] = k + 1
        return base if k == 0 else f"{base}#{k}"

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.op == "call_module":
            mod = self.module.get_submodule(str(n.target))
            x = self.env[n.args[0]] if isinstance(n.args[0], fx.Node) else None
            name = self._name(str(n.target))
            layer = (
                layer_of(name, mod, x, out, key=str(n.target), recipe=self.recipe)
                if x is not None
                else None
            )
            if layer is not None:
                self.layers.append(layer)
            elif isinstance(mod, _UNMODELLED):
                self.skipped.append(f"{name} ({type(mod).__name__})")
        elif n.op == "call_function" and n.target in MATMULS:
            a, b = (self.env[arg] if isinstance(arg, fx.Node) else arg for arg in n.args[:2])
            name = self._name(n.name)
            self.layers.append(
                matmul_layer(name, a, b, recipe=self.recipe, float_format=self.product_format)
            )
        elif n.op == "call_function" and n.target is F.scaled_dot_product_attention:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            qk, av = sdpa_layers(
                n.name, args, kwargs, recipe=self.recipe, float_format=self.product_format
            )
            self.layers.append(replace(qk, name=self._name(qk.name)))
            self.layers.append(replace(av, name=self._name(av.name)))
        return out


def from_model(model: nn.Module, example_input: Any, recipe: Any = None) -> Workload:
    """The model's conv/linear/matmul layers with shapes, formats and densities.

    `example_input` is a tensor or a tuple of positional inputs (batch size included).
    Raises `ShapeError` when the model cannot be traced or holds no such layer.
    """
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable Python
        raise ShapeError(
            f"torch.fx cannot trace {type(model).__name__}: {str(exc).splitlines()[0]}; "
            "give a model without data-dependent control flow, or describe its layers with "
            "picojoule.workload.Layer"
        ) from None
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    recorder = _Recorder(gm, recipe, _model_product_format(model))
    with torch.no_grad():
        recorder.run(*args)
    name = type(model).__name__
    if recorder.skipped:
        warnings.warn(
            f"{name}: not mapped (no loop-nest model for these layer types): "
            + ", ".join(recorder.skipped),
            stacklevel=2,
        )
    if not recorder.layers:
        raise ShapeError(f"{name} has no convolution, linear or matmul layer to map")
    return Workload(name=name, layers=tuple(recorder.layers))


def apply_recipe(workload: Workload, recipe: Any) -> Workload:
    """The same layers with operand formats from `recipe` (per-layer overrides by name)."""
    layers = []
    for layer in workload.layers:
        w, a, _ = _operand_formats(None, layer.name, recipe)
        if layer.kind == "matmul":  # both operands are activations
            w = a = _product_format(layer.name, recipe, FLOAT_FORMAT)
        layers.append(replace(layer, weight_format=w, input_format=a, output_format=a))
    return Workload(name=workload.name, layers=tuple(layers))
