"""What one inference of a transformed model costs: per-layer work, then the target's bill.

`layer_counts` walks one forward pass with hooks and records, per Linear/Conv layer, the MACs a
dense layer does, the multiplies this recipe actually needs (fewer with Winograd; with weight
sparsity a sparse-capable target skips the zeros), and the bits of weights and input
activations at the recipe's formats. `recipe_cost` hands those counts to the target model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

__all__ = ["LayerCount", "layer_counts", "recipe_cost"]


@dataclass(frozen=True, kw_only=True)
class LayerCount:
    name: str
    kind: str
    macs: int  # dense multiply-accumulates for one inference
    mults: int  # multiplies this recipe needs (Winograd reduces them)
    weight_density: float
    input_density: float  # non-zero fraction of the input seen (ReLU zeros, padding excluded)
    weight_bits: float  # per element, amortized scales included
    input_bits: float
    weight_elems: int
    input_elems: int
    output_elems: int
    weight_format: str
    input_format: str
    dims: dict[str, int]  # loop bounds N K C P Q R S G, strides (picojoule.workload.Layer)
    transform_adds: int = 0  # Winograd input/output transform additions


def _formats(m: nn.Module) -> tuple[str, float, str, float]:
    from picojoule.quant.api import weight_format_of

    wf = weight_format_of(m)
    aq = getattr(m, "input_quantizer", None)
    wname, wbits = (wf.name, wf.bits_per_element) if wf else ("fp32", 32.0)
    aname, abits = (aq.fmt.name, aq.fmt.bits_per_element) if aq is not None else ("fp32", 32.0)
    return wname, float(wbits), aname, float(abits)


def _dims(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> dict[str, int]:
    """Loop bounds of the layer as a convolution (a Linear is a 1x1 conv over all rows)."""
    if isinstance(m, nn.Linear):
        rows = out.numel() // m.out_features
        return dict(N=rows, K=m.out_features, C=m.in_features, P=1, Q=1, R=1, S=1, G=1,
                    stride_h=1, stride_w=1)  # fmt: skip
    g = m.groups
    k = m.out_channels // g
    c = m.in_channels // g
    if isinstance(m, nn.Conv1d):
        return dict(N=out.shape[0], K=k, C=c, P=out.shape[-1], Q=1, R=m.kernel_size[0], S=1,
                    G=g, stride_h=m.stride[0], stride_w=1)  # fmt: skip
    return dict(N=out.shape[0], K=k, C=c, P=out.shape[-2], Q=out.shape[-1],
                R=m.kernel_size[0], S=m.kernel_size[1], G=g, stride_h=m.stride[0],
                stride_w=m.stride[1])  # fmt: skip


def layer_counts(model: nn.Module, example: Any) -> list[LayerCount]:
    """Per-layer counts for one forward pass on `example` (a tensor or a tuple of inputs)."""
    from picojoule.quant.api import SUPPORTED, layer_kind
    from picojoule.sparsity import mask_of

    rows: list[LayerCount] = []
    hooks = []

    def hook(name: str):
        def fn(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            x = args[0]
            w = m.weight
            if isinstance(m, nn.Linear):
                macs = out.numel() * m.in_features
            else:  # Conv: each output element reduces over C/groups * kernel
                macs = out.numel() * (w.shape[1] * math.prod(w.shape[2:]))
            mults, tadds = macs, 0
            dims = _dims(m, x, out)
            if hasattr(m, "tile") and isinstance(m, nn.Conv2d):  # WinogradConv2d
                from picojoule.winograd import layer_ops

                ops = layer_ops(
                    batch=out.shape[0],
                    in_channels=m.in_channels,
                    out_channels=m.out_channels,
                    groups=m.groups,
                    out_hw=(out.shape[-2], out.shape[-1]),
                    kernel_hw=tuple(m.kernel_size),  # type: ignore[arg-type]
                    tile=m.tile,
                    points=m.points,
                )
                mults, tadds = int(ops.multiplies), int(ops.transform_adds)
            mask = mask_of(m)
            density = float(mask.mask.float().mean()) if mask is not None else 1.0
            wname, wbits, aname, abits = _formats(m)
            rows.append(
                LayerCount(
                    name=name,
                    kind=layer_kind(m),
                    macs=int(macs),
                    mults=int(mults),
                    weight_density=density,
                    input_density=max(float((x != 0).float().mean()), 1.0 / x.numel()),
                    weight_bits=wbits,
                    input_bits=abits,
                    weight_elems=w.numel(),
                    input_elems=x.numel(),
                    output_elems=out.numel(),
                    weight_format=wname,
                    input_format=aname,
                    dims=dims,
                    transform_adds=tadds,
                )
            )

        return fn

    for name, m in model.named_modules():
        if isinstance(m, SUPPORTED):
            hooks.append(m.register_forward_hook(hook(name)))
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
    from picojoule.study.targets import bill

    counts = layer_counts(model, example)
    out: dict[str, Any] = {
        "macs": sum(c.macs for c in counts),
        "mults": sum(c.mults for c in counts),
        "weight_bits": sum(c.weight_bits * c.weight_elems for c in counts),
        "layers": [asdict(c) for c in counts],
    }
    out.update(bill(counts, target, measured))
    return out
