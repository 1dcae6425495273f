"""What one inference of a transformed model costs: per-layer work, then the target's bill.

`layer_counts` walks one forward pass with hooks (any model runs; no tracing needed) and turns
each Linear/Conv call into a `picojoule.workload.Layer` through the workload package's own
builder (`layer_of`: loop bounds, the recipe's formats, weight and measured input densities).
Matrix products called as functions - attention's QK^T and AV, including inside
`F.scaled_dot_product_attention` - are caught by a torch function mode and costed as `matmul`
layers in the format the recipe's `attn:` rounds them to (`picojoule.quant.products`), else in
FP32 as the emulation runs them: accuracy and cost describe the same computation.
On top it records the multiplies the recipe really needs (Winograd needs fewer) and the
Winograd transform additions. `recipe_cost` hands the layers to the target model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from picojoule.quant.products import ProductFakeQuant
from picojoule.workload.layer import Layer

__all__ = ["LayerCount", "layer_counts", "recipe_cost", "STUDY_FLOAT"]

STUDY_FLOAT = "fp32"  # operands no recipe quantizes: the study's baseline is FP32


@dataclass(frozen=True, kw_only=True)
class LayerCount:
    """One layer call: its loop nest and operands, and what the recipe changes about its math."""

    layer: Layer
    kind: str  # module class (Conv2d, Linear, ...)
    mults: int  # multiplies this recipe needs (Winograd reduces them)
    transform_adds: int = 0  # Winograd input/output transform additions

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def macs(self) -> int:
        return self.layer.macs


def _winograd_ops(m: nn.Conv2d, out: torch.Tensor) -> tuple[int, int]:
    """(multiplies, transform additions) of a WinogradConv2d call, edge tiles included."""
    from picojoule.winograd import layer_ops

    ops = layer_ops(
        batch=out.shape[0],
        in_channels=m.in_channels,
        out_channels=m.out_channels,
        groups=m.groups,
        out_hw=(out.shape[-2], out.shape[-1]),
        kernel_hw=tuple(m.kernel_size),  # type: ignore[arg-type]
        tile=m.tile,  # type: ignore[arg-type]
        points=m.points,  # type: ignore[arg-type]
    )
    return int(ops.multiplies), int(ops.transform_adds)


class _FunctionalMatmuls(TorchFunctionMode):
    """Records the matrix products a model calls as functions, not modules (attention's QK^T
    and AV: `torch.matmul`, `@`, `bmm`, `F.scaled_dot_product_attention`), each named after the
    innermost module running it. Products inside a layer module (a Winograd conv's transforms,
    a quantizer) belong to that layer and are skipped.

    It must see a call before an `attn:` quantizer's mode rewrites it (SDPA becomes two plain
    matmuls there), so it is entered innermost, and it rounds the operands itself with that
    quantizer to measure the densities the products really see."""

    def __init__(
        self, stack: list[nn.Module], names: dict[nn.Module, str], rows: list[LayerCount],
        quant: ProductFakeQuant | None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.stack, self.names, self.rows, self.quant = stack, names, rows, quant
        self.fmt = quant.fmt.name if quant is not None else STUDY_FLOAT
        self.seen: dict[str, int] = {}

    def _name(self, base: str) -> str:
        k = self.seen.get(base, 0)
        self.seen[base] = k + 1
        return base if k == 0 else f"{base}#{k}"

    def _add(self, layer: Layer) -> None:
        self.rows.append(LayerCount(layer=layer, kind="matmul", mults=layer.macs))

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        from picojoule.quant.api import SUPPORTED
        from picojoule.quant.products import MATMULS
        from picojoule.workload.from_torch import matmul_layer, sdpa_layers

        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if any(isinstance(m, SUPPORTED) for m in self.stack):
            return out
        owner = self.names[self.stack[-1]] if self.stack else ""
        prefix = f"{owner}." if owner else ""
        if func in MATMULS and len(args) >= 2:
            a, b = args[0], args[1]
            if (
                isinstance(a, torch.Tensor)
                and isinstance(b, torch.Tensor)
                and min(a.dim(), b.dim()) >= 2
            ):
                name = self._name(f"{prefix}matmul")
                if self.quant is not None:
                    a, b = self.quant.left(a), self.quant.right(b)
                self._add(matmul_layer(name, a, b, float_format=self.fmt))
        elif func is F.scaled_dot_product_attention:
            base = self._name(f"{prefix}sdpa")
            for layer in sdpa_layers(base, args, kwargs, float_format=self.fmt, rounder=self.quant):
                self._add(layer)
        return out


def layer_counts(model: nn.Module, example: Any) -> list[LayerCount]:
    """Per-layer counts for one forward pass on `example` (a tensor or a tuple of inputs): every
    Linear/Conv call and every functional matmul (attention), in the order they finish."""
    from picojoule.quant.api import SUPPORTED, layer_kind
    from picojoule.workload.from_torch import layer_of

    rows: list[LayerCount] = []
    hooks = []
    stack: list[nn.Module] = []
    names = {m: name for name, m in model.named_modules()}
    functional = _FunctionalMatmuls(stack, names, rows, getattr(model, "product_quantizer", None))

    def hook(name: str):
        def fn(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            layer = layer_of(name, m, args[0], out, float_format=STUDY_FLOAT)
            if layer is None:
                return
            mults, tadds = layer.macs, 0
            if hasattr(m, "tile") and isinstance(m, nn.Conv2d):  # WinogradConv2d
                mults, tadds = _winograd_ops(m, out)
            rows.append(LayerCount(layer=layer, kind=layer_kind(m), mults=mults,
                                   transform_adds=tadds))  # fmt: skip

        return fn

    def enter(m: nn.Module, args: tuple) -> None:
        stack.append(m)

    def leave(m: nn.Module, args: tuple, out: Any) -> None:
        stack.pop()

    for name, m in model.named_modules():
        # prepend: the module is on the stack before a quantizer's pre-hook runs
        hooks.append(m.register_forward_pre_hook(enter, prepend=True))
        hooks.append(m.register_forward_hook(leave, always_call=True))
        if isinstance(m, SUPPORTED):
            hooks.append(m.register_forward_hook(hook(name)))

    def start(m: nn.Module, args: tuple) -> None:
        functional.__enter__()

    def stop(m: nn.Module, args: tuple, out: Any) -> None:
        functional.__exit__(None, None, None)

    # Entered by root hooks registered after an attn: quantizer's (so innermost) and left
    # first (prepend), keeping the mode stack last-in first-out.
    hooks.append(model.register_forward_pre_hook(start))
    hooks.append(model.register_forward_hook(stop, prepend=True, always_call=True))
    try:
        with torch.no_grad():
            model.eval()
            if isinstance(example, tuple | list):
                model(*example)
            elif isinstance(example, dict):
                model(**example)
            else:
                model(example)
    finally:
        for h in hooks:
            h.remove()
    return rows


def recipe_cost(
    model: nn.Module, example: Any, target: str, measured: dict | None = None
) -> dict[str, Any]:
    """Counts plus the target's energy/latency bill (see `picojoule.study.targets`)."""
    from picojoule.formats import get
    from picojoule.quant.api import functional_attention
    from picojoule.study.targets import bill

    counts = layer_counts(model, example)
    out: dict[str, Any] = {
        "macs": sum(c.macs for c in counts),
        "mults": sum(c.mults for c in counts),
        "weight_bits": sum(
            get(c.layer.weight_format).bits_per_element * c.layer.weight_elems
            for c in counts
            if c.layer.kind != "matmul"  # both operands of a matmul are activations
        ),
        "layers": [
            {
                **asdict(c.layer),
                "module": c.kind,
                "mults": c.mults,
                "transform_adds": c.transform_adds,
            }
            for c in counts
        ],  # fmt: skip
    }
    out.update(bill(counts, target, measured))
    if skipped := functional_attention(model):
        out["assumptions"] = [
            *out["assumptions"],
            f"not costed: nn.MultiheadAttention ({', '.join(skipped)}) computes its projections "
            "and products inside one function that layer hooks cannot see",
        ]
    products = [c for c in counts if c.kind == "matmul"]
    if products:
        share = sum(c.macs for c in products) / max(out["macs"], 1)
        fmts = sorted({c.layer.input_format for c in products})
        how = (
            "FP32 operands: no attn: in the recipe, and the emulation runs them unquantized too"
            if fmts == [STUDY_FLOAT]
            else f"{', '.join(fmts)} operands, as the recipe's attn: rounds them"
        )
        out["assumptions"] = [
            *out["assumptions"],
            f"{len(products)} functional matmuls (attention's QK^T and AV; "
            f"{100 * share:.1f} % of MACs) costed with {how}",
        ]
    return out
