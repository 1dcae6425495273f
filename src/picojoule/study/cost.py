"""What one inference of a transformed model costs: per-layer work, then the target's bill.

`layer_counts` records one forward pass with the workload package's own recorder
(`picojoule.workload.from_torch.record`: module hooks plus a torch function mode; any model
runs, no tracing): every Linear/Conv call and every matrix product called as a function -
attention's QK^T and AV, including inside `F.scaled_dot_product_attention` - with loop bounds,
formats and measured densities. Operands no recipe rounds are FP32, the study's baseline; the
products take the format the recipe's `attn:` rounds them to (`picojoule.quant.products`), so
accuracy and cost describe the same computation.
On top it records the multiplies the recipe really needs (Winograd needs fewer) and the
Winograd transform additions, and the adds and multiplies of online Hadamard rotations
(`rotate:`; n log2 n adds per vector for a power-of-two n) on the layer they run before.
`recipe_costs` hands the layers to each target's model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch.nn as nn

from picojoule.workload.layer import Layer

__all__ = ["LayerCount", "layer_counts", "recipe_cost", "recipe_costs", "STUDY_FLOAT"]

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


def _winograd_ops(m: nn.Conv2d, out_shape: tuple[int, ...]) -> tuple[int, int]:
    """(multiplies, transform additions) of a WinogradConv2d call, edge tiles included."""
    from picojoule.winograd import layer_ops

    ops = layer_ops(
        batch=out_shape[0],
        in_channels=m.in_channels,
        out_channels=m.out_channels,
        groups=m.groups,
        out_hw=(out_shape[-2], out_shape[-1]),
        kernel_hw=tuple(m.kernel_size),  # type: ignore[arg-type]
        tile=m.tile,  # type: ignore[arg-type]
        points=m.points,  # type: ignore[arg-type]
    )
    return int(ops.multiplies), int(ops.transform_adds)


def layer_counts(model: nn.Module, example: Any) -> list[LayerCount]:
    """Per-layer counts for one forward pass on `example` (a tensor, a tuple of inputs or a
    dict of keyword inputs): every Linear/Conv call and every functional matmul (attention),
    in the order they finish (`picojoule.workload.from_torch.record`)."""
    from picojoule.quant.api import layer_kind
    from picojoule.workload.from_torch import record

    calls, _ = record(model, example, float_format=STUDY_FLOAT)
    rows = []
    for c in calls:
        mults, tadds = c.layer.macs, 0
        if c.module is None:  # a functional call: "matmul", or "linear" (F.linear)
            rows.append(LayerCount(layer=c.layer, kind=c.layer.kind, mults=mults))
            continue
        if hasattr(c.module, "tile") and isinstance(c.module, nn.Conv2d):  # WinogradConv2d
            mults, tadds = _winograd_ops(c.module, c.out_shape)
        rotation = getattr(c.module, "pj_rotation", None)
        if rotation is not None:  # online Hadamards (picojoule.quant.algorithms), per row
            tokens = c.layer.macs // max(1, _row_macs(c.module))
            tadds += tokens * rotation[0]
            mults += tokens * rotation[1]
        rows.append(LayerCount(layer=c.layer, kind=layer_kind(c.module), mults=mults,
                               transform_adds=tadds))  # fmt: skip
    return rows


def _row_macs(m: nn.Module) -> int:
    """MACs of one input row (token) of a Linear: in x out."""
    return int(getattr(m, "in_features", 1)) * int(getattr(m, "out_features", 1))


def recipe_costs(
    model: nn.Module,
    example: Any,
    targets: Sequence[str],
    measured: dict | None = None,
) -> dict[str, dict[str, Any]]:
    """Counts (recorded once) plus each target's energy/latency bill
    (`picojoule.study.targets`). `measured` bills the GPU it was taken on (its "target" key,
    when set, names that GPU)."""
    from picojoule.formats import get
    from picojoule.study.targets import bill

    counts = layer_counts(model, example)
    shared: dict[str, Any] = {
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
    notes = _coverage_notes(model, counts, shared["macs"])
    out = {}
    for target in targets:
        runs = measured if measured and measured.get("target", target) == target else None
        billed = bill(counts, target, runs)
        out[target] = {**shared, **billed, "assumptions": [*billed["assumptions"], *notes]}
    return out


def recipe_cost(
    model: nn.Module, example: Any, target: str, measured: dict | None = None
) -> dict[str, Any]:
    """`recipe_costs` on one target."""
    return recipe_costs(model, example, [target], measured)[target]


def _coverage_notes(model: nn.Module, counts: list[LayerCount], macs: int) -> list[str]:
    """What the counts leave out or assume about attention, for the report's assumptions."""
    from picojoule.quant.api import hidden_layers

    notes = []
    if skipped := hidden_layers(model):
        notes.append(
            f"not costed: {', '.join(skipped)} - layers inside one function or torch.addmm that "
            "hooks cannot see (picojoule.quant.expose_layers_ rewrites them, same numbers)"
        )
    products = [c for c in counts if c.kind == "matmul"]
    if products:
        share = sum(c.macs for c in products) / max(macs, 1)
        fmts = sorted({c.layer.input_format for c in products})
        how = (
            "FP32 operands: no attn: in the recipe, and the emulation runs them unquantized too"
            if fmts == [STUDY_FLOAT]
            else f"{', '.join(fmts)} operands, as the recipe's attn: rounds them"
        )
        notes.append(
            f"{len(products)} functional matmuls (attention's QK^T and AV; "
            f"{100 * share:.1f} % of MACs) costed with {how}"
        )
    return notes
