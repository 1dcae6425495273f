"""Fake-quant for the matrix products a model calls as functions: attention's Q K^T and A V.

`quantize_(model, "...,attn:e4m3")` installs one `ProductFakeQuant` as `model.product_quantizer`.
While the model runs, a torch function mode rounds both operands of every `torch.matmul`, `@`,
`bmm` and `F.scaled_dot_product_attention` called outside a layer module (Linear/Conv products,
Winograd transforms and quantizers are left alone). SDPA is evaluated as its defining math
(softmax(Q K^T * scale + mask) V, PyTorch's documented reference) so that the probabilities can
be rounded before they meet V.

Blocks and vectors run along each product's reduction dimension, as for layers: the last dim
of the left operand, dim -2 of the right one (K^T's head dim, V's key dim). Scales are dynamic:
one per tensor per call (`picojoule.quant.recipe.resolve_format` gives <= 8-bit formats a
per-tensor scale). Gradients are straight-through, so QAT trains through the rounding.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from picojoule.formats import Format
from picojoule.quant.modules import _fake_quant, ste

__all__ = [
    "MATMULS",
    "ProductFakeQuant",
    "install_products",
    "product_format_of",
    "matrix_operands",
]

# Matrix products called as functions (attention's QK^T and AV in most models).
MATMULS = frozenset({torch.matmul, torch.bmm, operator.matmul, torch.Tensor.matmul,
                     torch.Tensor.__matmul__, torch.Tensor.bmm})  # fmt: skip
_SDPA_PARAMS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")


def matrix_operands(
    func: Any, args: tuple, kwargs: dict
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(a, b) when `func(*args, **kwargs)` is a product of two matrices (or stacks of them);
    None for anything else, matrix-vector products included."""
    if func not in MATMULS or len(args) != 2 or kwargs:
        return None
    a, b = args
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and min(a.dim(), b.dim()) >= 2:
        return a, b
    return None


def sdpa_arguments(args: tuple, kwargs: dict) -> dict[str, Any]:
    """`F.scaled_dot_product_attention`'s arguments by name, defaults filled in."""
    bound = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None}
    return bound | dict(zip(_SDPA_PARAMS, args, strict=False)) | kwargs


def expand_kv_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple:
    """Grouped-query attention: repeat each key/value head for the query heads it serves."""
    if q.dim() >= 3 and k.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(rep, dim=-3), v.repeat_interleave(rep, dim=-3)
    return k, v


def attention_mask(
    scores: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool
) -> torch.Tensor:
    """Scores with SDPA's causal and boolean/additive masks applied (-inf where masked)."""
    if is_causal:
        sq, sk = scores.shape[-2], scores.shape[-1]
        keep = torch.ones(sq, sk, dtype=torch.bool, device=scores.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    return scores


class ProductFakeQuant:
    """Rounds both operands of functional matrix products to `fmt` (values bit-exact), or to
    the format an override gives the module that calls them (`overrides`: (name glob, Format
    or None for float), first match wins, as recipe overrides do for layers).

    A plain object, not a submodule: it holds no tensors, and as a child it would join the
    computation of container roots such as `nn.Sequential`."""

    def __init__(
        self,
        fmt: Format,
        rounding: str = "nearest_even",
        layer_types: tuple[type, ...] = (nn.Linear, nn.Conv1d, nn.Conv2d),
        overrides: tuple[tuple[str, Format | None], ...] = (),
    ) -> None:
        self.fmt = fmt
        self.rounding = rounding
        self.layer_types = layer_types
        self.overrides = overrides
        self.depth = 0  # > 0 while a layer module runs: its products are the layer's own
        self.owners: list[str] = []  # names of the modules running, innermost last
        self._mode = _ProductMode(self)
        self._hooks: list = []

    def format_for(self, owner: str) -> Format | None:
        """The format of the products module `owner` calls (None: they stay float)."""
        from picojoule.config import match_name

        for pattern, fmt in self.overrides:
            if match_name(owner, pattern):
                return fmt
        return self.fmt

    def left(self, a: torch.Tensor, fmt: Format | None = None) -> torch.Tensor:
        """Left operand [..., M, C]: reduction along the last dim."""
        if not a.is_floating_point():
            return a
        return ste(a, _fake_quant(fmt or self.fmt, a, "features", self.rounding))

    def right(self, b: torch.Tensor, fmt: Format | None = None) -> torch.Tensor:
        """Right operand [..., C, K]: reduction along dim -2."""
        if not b.is_floating_point():
            return b
        return self.left(b.transpose(-1, -2), fmt).transpose(-1, -2)

    def at(self, fmt: Format) -> _Rounder:
        """`left`/`right` bound to `fmt`."""
        return _Rounder(self, fmt)

    def sdpa(self, args: tuple, kwargs: dict, fmt: Format | None = None) -> torch.Tensor:
        p = sdpa_arguments(args, kwargs)
        q, k, v = p["query"], p["key"], p["value"]
        k, v = expand_kv_heads(q, k, v)
        scale = p["scale"] if p["scale"] is not None else 1.0 / math.sqrt(q.shape[-1])
        scores = (self.left(q, fmt) @ self.right(k.transpose(-1, -2), fmt)) * scale
        probs = torch.softmax(attention_mask(scores, p["attn_mask"], p["is_causal"]), dim=-1)
        if p["dropout_p"] > 0.0:
            probs = F.dropout(probs, p["dropout_p"])
        return self.left(probs, fmt) @ self.right(v, fmt)

    def __repr__(self) -> str:
        return f"ProductFakeQuant({self.fmt.name}, rounding={self.rounding})"


class _Rounder:
    def __init__(self, quant: ProductFakeQuant, fmt: Format) -> None:
        self.quant, self.fmt = quant, fmt

    def left(self, a: torch.Tensor) -> torch.Tensor:
        return self.quant.left(a, self.fmt)

    def right(self, b: torch.Tensor) -> torch.Tensor:
        return self.quant.right(b, self.fmt)


_ROUNDED = MATMULS | {F.scaled_dot_product_attention}


class _ProductMode(TorchFunctionMode):
    def __init__(self, quant: ProductFakeQuant) -> None:
        super().__init__()
        self.quant = quant

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        quant = self.quant
        if quant.depth == 0 and func in _ROUNDED:  # every torch op passes here: cheap first
            fmt = quant.format_for(quant.owners[-1] if quant.owners else "")
            if fmt is None:  # an override keeps this module's products in float
                return func(*args, **kwargs)
            if (ab := matrix_operands(func, args, kwargs)) is not None:
                return func(quant.left(ab[0], fmt), quant.right(ab[1], fmt))
            if func is F.scaled_dot_product_attention:
                return quant.sdpa(args, kwargs, fmt)
        return func(*args, **kwargs)


def _begin(model: nn.Module, args: tuple) -> None:
    """Root pre-hook: count layer modules as they run (global hooks, for this pass only) and
    turn the function mode on. Found through `model`, so a deep copy uses its own quantizer."""
    from torch.nn.modules.module import (
        register_module_forward_hook,
        register_module_forward_pre_hook,
    )

    quant: ProductFakeQuant = model.product_quantizer  # type: ignore[assignment]
    layers = quant.layer_types
    names = {m: n for n, m in model.named_modules()}  # per pass: a deep copy has its own

    def pre(m: nn.Module, a: tuple) -> None:
        quant.depth += isinstance(m, layers)
        quant.owners.append(names.get(m, ""))

    def post(m: nn.Module, a: tuple, out: Any) -> None:
        quant.depth -= isinstance(m, layers)
        quant.owners.pop()

    quant.depth = int(isinstance(model, layers))  # the global hooks start after our own
    quant.owners = [""]  # the root, whose own global pre-hook has already run
    quant._hooks = [
        register_module_forward_pre_hook(pre),
        register_module_forward_hook(post, always_call=True),
    ]
    quant._mode.__enter__()


def _end(model: nn.Module, args: tuple, out: Any) -> None:
    quant: ProductFakeQuant = model.product_quantizer  # type: ignore[assignment]
    quant._mode.__exit__(None, None, None)
    for h in quant._hooks:
        h.remove()
    quant._hooks = []


def install_products(
    model: nn.Module,
    fmt: Format,
    layer_types: tuple[type, ...],
    overrides: tuple[tuple[str, Format | None], ...] = (),
) -> None:
    """Register `ProductFakeQuant(fmt)` as `model.product_quantizer` and activate it around
    every forward pass of `model`. Products inside `layer_types` modules are not touched."""
    model.product_quantizer = ProductFakeQuant(fmt, layer_types=layer_types, overrides=overrides)
    model.register_forward_pre_hook(_begin, prepend=True)
    model.register_forward_hook(_end, always_call=True)


def product_format_of(model: nn.Module) -> Format | None:
    """The format `attn:` gave the model's functional products (None: they run in float)."""
    quant = getattr(model, "product_quantizer", None)
    return quant.fmt if isinstance(quant, ProductFakeQuant) else None
