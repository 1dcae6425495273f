"""What one inference of a transformed model costs: per-layer work, then the target's bill.

`layer_counts` walks one forward pass with hooks (any model runs; no tracing needed) and turns
each Linear/Conv call into a `picojoule.workload.Layer` through the workload package's own
builder (`layer_of`: loop bounds, the recipe's formats, weight and measured input densities).
On top it records the multiplies the recipe really needs (Winograd needs fewer) and the
Winograd transform additions. `recipe_cost` hands the layers to the target model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn

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


def layer_counts(model: nn.Module, example: Any) -> list[LayerCount]:
    """Per-layer counts for one forward pass on `example` (a tensor or a tuple of inputs)."""
    from picojoule.quant.api import SUPPORTED, layer_kind
    from picojoule.workload.from_torch import layer_of

    rows: list[LayerCount] = []
    hooks = []

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
    from picojoule.formats import get
    from picojoule.study.targets import bill

    counts = layer_counts(model, example)
    out: dict[str, Any] = {
        "macs": sum(c.macs for c in counts),
        "mults": sum(c.mults for c in counts),
        "weight_bits": sum(
            get(c.layer.weight_format).bits_per_element * c.layer.weight_elems for c in counts
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
    return out
