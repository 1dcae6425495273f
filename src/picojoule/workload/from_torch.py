"""Extract a workload from a PyTorch model: `from_model(model, example_input, recipe=None)`.

Public: `from_model`, `record` (the calls behind it), and the per-call builders `layer_of`,
`matmul_layer`, `sdpa_layers`.

The model runs once on `example_input` with a hook on every module and a torch function mode,
which record every convolution and linear call and every matrix product called as a function
(attention's `q @ k.T` and `attn @ v`, and the two inside `F.scaled_dot_product_attention`)
with their real shapes. Nothing is traced, so any model that runs works (HF transformers
included). Each layer carries
* formats: from `recipe` (a `picojoule.quant` recipe string or `QuantConfig`, resolved per
  module name); without a recipe, from the model's own fake-quant (if `quantize_` was
  applied), else `fp16`;
* densities: the weight mask's density (if `sparsify_` was applied) and the measured
  fraction of non-zero inputs in this example run (ReLU outputs are sparse).
3-D and transposed convolutions are not modelled: a warning names them. `nn.MultiheadAttention`
(its projections run inside one function) and Hugging Face `Conv1D` (GPT-2's projections,
through `torch.addmm`) are counted as the Linear layers and SDPA they are, on a rewrite undone
after the run (`expose=False`: left out, with a warning).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from picojoule.errors import PicojouleError, ShapeError
from picojoule.quant.products import MATMULS, matrix_operands
from picojoule.quant.unfuse import is_hf_conv1d
from picojoule.workload.layer import Layer, Workload, touched_halo

__all__ = ["from_model", "record", "Recorded", "apply_recipe", "layer_of", "matmul_layer",
           "sdpa_layers"]  # fmt: skip

FLOAT_FORMAT = "fp16"
# Weighted layers whose loop nests this package does not describe (reported, not mapped).
_UNMODELLED = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
               nn.MultiheadAttention)  # fmt: skip


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
    mod: nn.Conv1d | nn.Conv2d | SimpleNamespace,
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
    pads = _declared_padding(mod)
    (top, bottom), (left, right) = ((0, 0), pads[0]) if not two_d else pads
    h_in, w_in = (x.shape[2], x.shape[3]) if two_d else (1, x.shape[2])
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
        padding=(
            *touched_halo(top, bottom, h_in, p, r, sh),
            *touched_halo(left, right, w_in, q, s, sw),
        ),
    )


def _declared_padding(mod: nn.Conv1d | nn.Conv2d | SimpleNamespace) -> list[tuple[int, int]]:
    """(before, after) zero padding per spatial dim, outermost first. Only zero padding is a
    halo the hardware can generate; reflect/replicate/circular padding copies real input, so
    such a layer counts its whole padded extent as data (no halo)."""
    dims = len(mod.kernel_size)
    if getattr(mod, "padding_mode", "zeros") != "zeros":
        return [(0, 0)] * dims
    pad = mod.padding
    if pad == "valid":
        return [(0, 0)] * dims
    if pad == "same":  # torch puts the odd row after: before = total // 2
        totals = [d * (k - 1) for d, k in zip(mod.dilation, mod.kernel_size, strict=True)]
        return [(t // 2, t - t // 2) for t in totals]
    per = tuple(pad) if isinstance(pad, tuple | list) else (int(pad),) * dims
    return [(int(v), int(v)) for v in per]


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
        layer = _conv_layer(name, x, out, mod, fm)
    elif isinstance(mod, nn.Linear):
        fm = _operand_formats(mod, key or name, recipe, float_format)
        layer = _linear_layer(name, x, mod.out_features, mod.in_features, fm)
    else:
        return None
    from picojoule.sparsity import mask_of

    mask = mask_of(mod)  # its pattern lets an N:M sparse engine skip the pruned positions
    return replace(layer, weight_pattern=mask.pattern) if mask is not None else layer


def _shared_heads(b: torch.Tensor) -> int:
    """How many consecutive heads (dim -3) of `b` are copies of one another (1: none)."""
    h = b.shape[-3]
    for r in range(h, 1, -1):
        if h % r == 0:
            grouped = b.unflatten(-3, (h // r, r))
            if torch.equal(grouped, grouped[..., :1, :, :].expand_as(grouped)):
                return r
    return 1


def _fold_shared_heads(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grouped-query attention repeats each key/value head for the query heads it serves
    (transformers' `repeat_kv`, SDPA's `enable_gqa`). A kernel reads a shared head once, so the
    product is `a [.., H/r, r*M, C] @ b [.., H/r, C, K]`: same multiplies, the K/V operand (the
    KV cache at decode) counted once per key/value head, not once per query head."""
    if a.dim() < 3 or b.dim() < 3 or a.shape[-3] != b.shape[-3]:
        return a, b
    r = _shared_heads(b)
    if r == 1:
        return a, b
    h, m, c = a.shape[-3:]
    return a.reshape(*a.shape[:-3], h // r, r * m, c), b.unflatten(-3, (h // r, r))[..., 0, :, :]


def matmul_layer(
    name: str, a: torch.Tensor, b: torch.Tensor, *, recipe: Any = None,
    float_format: str = FLOAT_FORMAT, right_format: str | None = None,
) -> Layer:  # fmt: skip
    """`a [..., M, C] @ b [..., C, K]`: rows in N, batch/heads in G (heads of `b` that repeat,
    as in grouped-query attention, folded into rows). Both operands are activations and take
    one format: the recipe's `attn:`, else the input format it gives `name`, else
    `float_format` - but `right_format` (a `kv:` cache's format) for `b` when given."""
    if a.dim() < 2 or b.dim() < 2:
        raise ShapeError(f"{name}: matmul of vectors is not a layer; shapes {tuple(a.shape)}")
    a, b = _fold_shared_heads(a, b)
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
        weight_format=right_format or a_fmt,
        input_format=a_fmt,
        output_format=a_fmt,
        weight_density=_density(b),
        input_density=_density(a),
    )


def sdpa_layers(
    name: str, args: tuple, kwargs: dict, *, recipe: Any = None,
    float_format: str = FLOAT_FORMAT, rounder: Any = None, right_format: str | None = None,
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
    kw = {"recipe": recipe, "float_format": float_format, "right_format": right_format}
    return matmul_layer(f"{name}.qk", q, kt, **kw), matmul_layer(f"{name}.av", probs, v, **kw)


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """One layer call seen in a forward pass: its `Layer`, the module that ran it (None for a
    functional product) and that call's output shape."""

    layer: Layer
    module: nn.Module | None
    out_shape: tuple[int, ...]


_CONV_PARAMS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


def _functional_conv(args: tuple, kwargs: dict) -> SimpleNamespace | None:
    """`F.conv1d/2d`'s arguments with the attributes `_conv_layer` reads from a Conv module."""
    p = (
        {"stride": 1, "dilation": 1, "groups": 1}
        | dict(zip(_CONV_PARAMS, args, strict=False))
        | kwargs
    )
    x, w = p.get("input"), p.get("weight")
    if not isinstance(x, torch.Tensor) or not isinstance(w, torch.Tensor) or w.dim() < 3:
        return None
    dims = w.dim() - 2

    def per_dim(v: Any) -> tuple[int, ...]:
        return tuple(v) if isinstance(v, tuple | list) else (int(v),) * dims

    pad = p.get("padding", 0)
    return SimpleNamespace(input=x, kernel_size=tuple(w.shape[2:]), stride=per_dim(p["stride"]),
                           dilation=per_dim(p["dilation"]), groups=int(p["groups"]),
                           padding=pad if isinstance(pad, str) else per_dim(pad))  # fmt: skip


# What `_Products` records (the rest of the torch API passes straight through).
_RECORDED = MATMULS | {F.scaled_dot_product_attention, F.conv1d, F.conv2d, F.linear}


class _Products(TorchFunctionMode):
    """Records the matrix products called as functions outside layer modules (attention's
    Q K^T and A V: `torch.matmul`, `@`, `bmm`, `F.scaled_dot_product_attention`; and
    `F.linear`, `F.conv1d`, `F.conv2d` on weights no layer module owns, such as an LM head
    tied to the embeddings), named after the innermost module running them. Products inside a
    layer module (a Winograd conv's transforms, a quantizer) belong to that layer.

    An `attn:` quantizer (`picojoule.quant.products`) rewrites SDPA into plain matmuls, so this
    mode is entered innermost, sees each call first, and rounds the operands with that
    quantizer itself to measure the densities the products really see."""

    def __init__(self, rec: _Recording) -> None:
        super().__init__()
        self.rec = rec

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rec = self.rec
        if func not in _RECORDED or rec.in_layer():  # every torch op passes here: cheap first
            return out
        owner = rec.names.get(rec.stack[-1], "") if rec.stack else ""
        prefix = f"{owner}." if owner else ""
        quant, fmt, rounder = rec.quant, rec.float_format, None
        if quant is not None and (owned := quant.format_for(owner)) is not None:
            fmt, rounder = owned.name, quant.at(owned)  # the format attn: gives this owner
        if (ab := matrix_operands(func, args, kwargs)) is not None:
            a, b = ab
            if rounder is not None:
                a, b = rounder.left(a), rounder.right(b)
            name = rec.unique(f"{prefix}matmul")
            layer = matmul_layer(
                name, a, b, recipe=rec.recipe, float_format=fmt, right_format=rec.kv_format
            )
            rec.add(layer, None)
        elif func is F.scaled_dot_product_attention:
            base = rec.unique(f"{prefix}sdpa")
            for layer in sdpa_layers(
                base, args, kwargs, recipe=rec.recipe, float_format=fmt, rounder=rounder,
                right_format=rec.kv_format,
            ):  # fmt: skip
                rec.add(layer, None)
        elif func in (F.conv1d, F.conv2d) and isinstance(out, torch.Tensor):
            conv = _functional_conv(args, kwargs)
            if conv is not None:
                name = rec.unique(f"{prefix}conv")
                formats = _operand_formats(None, name, rec.recipe, rec.float_format)
                rec.add(_conv_layer(name, conv.input, out, conv, formats), None, out.shape)
        elif func is F.linear:  # a functional layer, e.g. an LM head tied to the embeddings
            x = args[0] if args else kwargs.get("input")
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            if isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor) and w.dim() == 2:
                name = rec.unique(f"{prefix}linear")
                formats = _operand_formats(None, name, rec.recipe, rec.float_format)
                rec.add(_linear_layer(name, x, w.shape[0], w.shape[1], formats), None)
        return out


class _Recording:
    """Hooks on every module of one model for one forward pass (see `record`)."""

    def __init__(self, model: nn.Module, recipe: Any, float_format: str) -> None:
        from picojoule.quant.api import SUPPORTED

        self.model, self.recipe, self.float_format = model, recipe, float_format
        self.layer_types = SUPPORTED
        self.names = {m: name for name, m in model.named_modules()}
        self.stack: list[nn.Module] = []
        self.calls: list[Recorded] = []
        self.skipped: list[str] = []
        self.seen: dict[str, int] = {}
        self.quant = getattr(model, "product_quantizer", None)
        from picojoule.quant.kvcache import kv_spec_of

        # kv: stores keys and values in its format: attention's right operands (K^T, V) are
        # read from the cache in it (a model's only functional products are attention's)
        kv = kv_spec_of(model)
        self.kv_format: str | None = kv.fmt.name if kv is not None else None

    def unique(self, base: str) -> str:
        k = self.seen.get(base, 0)
        self.seen[base] = k + 1
        return base if k == 0 else f"{base}#{k}"

    def in_layer(self) -> bool:
        return any(isinstance(m, self.layer_types) for m in self.stack)

    def add(self, layer: Layer, module: nn.Module | None, out_shape: tuple = ()) -> None:
        self.calls.append(Recorded(layer=layer, module=module, out_shape=tuple(out_shape)))

    def _enter(self, m: nn.Module, args: tuple) -> None:
        self.stack.append(m)

    def _leave(self, m: nn.Module, args: tuple, out: Any) -> None:
        self.stack.pop()
        if not args or not isinstance(args[0], torch.Tensor) or self.in_layer():
            return
        key = self.names[m]
        if isinstance(m, _UNMODELLED) or is_hf_conv1d(m):
            self.skipped.append(f"{key or '<root>'} ({type(m).__name__})")
            return
        if not isinstance(out, torch.Tensor):
            return
        layer = layer_of(self.unique(key), m, args[0], out, key=key, recipe=self.recipe,
                         float_format=self.float_format)  # fmt: skip
        if layer is not None:
            self.add(layer, m, tuple(out.shape))

    def run(self, example: Any) -> None:
        mode = _Products(self)
        hooks = []
        for m in self.model.modules():
            # prepend: the module is on the stack before a quantizer's pre-hook runs
            hooks.append(m.register_forward_pre_hook(self._enter, prepend=True))
            hooks.append(m.register_forward_hook(self._leave, always_call=True))

        def start(m: nn.Module, args: tuple) -> None:
            mode.__enter__()

        def stop(m: nn.Module, args: tuple, out: Any) -> None:
            mode.__exit__(None, None, None)

        # Entered by root hooks registered after an attn: quantizer's (so innermost) and left
        # first (prepend), keeping the mode stack last-in first-out.
        hooks.append(self.model.register_forward_pre_hook(start))
        hooks.append(self.model.register_forward_hook(stop, prepend=True, always_call=True))
        try:
            with torch.no_grad():
                if isinstance(example, dict):
                    self.model(**example)
                elif isinstance(example, tuple | list):
                    self.model(*example)
                else:
                    self.model(example)
        finally:
            for h in hooks:
                h.remove()


def record(
    model: nn.Module, example_input: Any, *, recipe: Any = None, float_format: str = FLOAT_FORMAT
) -> tuple[list[Recorded], list[str]]:
    """Run `model` once on `example_input` (a tensor, a tuple of positional inputs or a dict
    of keyword inputs) and return every layer call in the order it finished, plus the names
    of weighted layers this package cannot model. No tracing: any model that runs works."""
    rec = _Recording(model, recipe, float_format)
    was_training = model.training
    model.eval()
    try:
        rec.run(example_input)
    except PicojouleError:
        raise
    except Exception as exc:  # the user's forward pass: name the model and the input
        raise ShapeError(
            f"running {type(model).__name__} on the example input failed: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; give an "
            "input the model accepts (batch included)"
        ) from exc
    finally:
        model.train(was_training)
    return rec.calls, rec.skipped


def from_model(
    model: nn.Module, example_input: Any, recipe: Any = None, *, expose: bool = True
) -> Workload:
    """The model's conv/linear/matmul layers with shapes, formats and densities.

    `example_input` is a tensor, a tuple of positional inputs or a dict of keyword inputs
    (batch size included). Raises `ShapeError` when the model fails on it or holds no layer.
    `recipe`: a quant recipe string, `QuantConfig` or dict of its fields.

    expose: count the layers hooks cannot see as the layers they are: Hugging Face `Conv1D`
    (GPT-2's projections) as `nn.Linear`, `nn.MultiheadAttention` as its projections and SDPA
    (`picojoule.quant.unfuse.exposed`: rewritten for the one run on views of the same weights,
    the model's own modules put back after; the model is not changed). The workload's
    `exposed` lists the rewrites. `expose=False` counts without them (a warning names them).
    """
    from picojoule.quant.unfuse import check_expose, exposed

    check_expose(expose, "from_model")
    with exposed(model, expose) as rewrites:
        calls, skipped = record(model, example_input, recipe=recipe)
    name = type(model).__name__
    if skipped:
        hint = (
            "; expose them first (from_model's expose=True, the default, or "
            "picojoule.quant.expose_layers_: same numbers)"
            if any(s.endswith(("(MultiheadAttention)", "(Conv1D)")) for s in skipped)
            else ""
        )
        warnings.warn(
            f"{name}: not mapped (no loop-nest model for these layer types): "
            f"{', '.join(skipped)}{hint}",
            stacklevel=2,
        )
    if not calls:
        raise ShapeError(f"{name} has no convolution, linear or matmul layer to map")
    return Workload(name=name, layers=tuple(c.layer for c in calls), exposed=tuple(rewrites))


def apply_recipe(workload: Workload, recipe: Any) -> Workload:
    """The same layers with operand formats from `recipe` (per-layer overrides by name)."""
    layers = []
    for layer in workload.layers:
        w, a, _ = _operand_formats(None, layer.name, recipe)
        if layer.kind == "matmul":  # both operands are activations
            w = a = _product_format(layer.name, recipe, FLOAT_FORMAT)
        layers.append(replace(layer, weight_format=w, input_format=a, output_format=a))
    return Workload(name=workload.name, layers=tuple(layers), exposed=workload.exposed)
