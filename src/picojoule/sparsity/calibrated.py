"""Masks chosen from calibration data: `sparsegpt_` (the `sparsegpt-` recipe prefix).

`sparsify_` first installs magnitude masks (which layers, which pattern, which are skipped:
the same rules as every sparsity recipe); `sparsegpt_` then replaces each Linear's mask and
weights with SparseGPT's (Frantar & Alistarh 2023, Algorithm 1; `picojoule.sparsity.sparsegpt`),
layer by layer, each layer's Hessian H = 2/n sum x x^T from inputs that flow through the
already-pruned earlier layers (`picojoule.quant.capture.sequential`, as the reference prunes
block by block). The kept weights are updated to absorb the pruned ones' share of the output
(the OBS step), so the float weight under the mask changes: the new values become the layer's
own parameter (a weight tied to another module is untied first, as a mask on one would be).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn

__all__ = ["sparsegpt_"]


def sparsegpt_(
    model: nn.Module, batches: Iterable[Any], *, progress: Callable[[str], None] | None = None
) -> list[str]:
    """Re-choose every masked Linear's mask with SparseGPT; returns one line per layer kind.

    Masked convolutions keep their magnitude masks (their unfolded-input Hessian is not built
    here) and are listed as such."""
    from picojoule.quant.capture import SharedInput, Stage, StageLayer, sequential
    from picojoule.quant.hessian import HessianAccumulator
    from picojoule.sparsity.patterns import parse_pattern
    from picojoule.sparsity.sparsegpt import sparsegpt_prune
    from picojoule.sparsity.sparsify import mask_of

    masked = [(n, m) for n, m in model.named_modules() if mask_of(m) is not None]
    names = [n for n, m in masked if isinstance(m, nn.Linear)]
    others = [n for n, m in masked if not isinstance(m, nn.Linear)]
    losses: list[float] = []

    def update(layers: Sequence[StageLayer], stage: Stage) -> None:
        for layer in layers:
            m = layer.module
            mask = mask_of(m)
            assert mask is not None
            plist = m.parametrizations["weight"]  # type: ignore[index]
            w = plist.original.detach()
            pat = parse_pattern(mask.pattern)
            kw: dict[str, Any] = (
                {"n": pat.n, "m": pat.m} if pat.kind == "nm" else {"sparsity": 1.0 - pat.density}
            )
            res = sparsegpt_prune(w.float(), layer.observer.stats.hessian().double(), **kw)
            with torch.no_grad():
                mask.mask.copy_(res.mask)
                plist.original = nn.Parameter(res.weight.to(w.dtype), requires_grad=w.requires_grad)
            losses.append(float(res.loss))
        if progress is not None:
            progress(f"sparsegpt: {','.join(stage.names)}")

    if names:
        modules = dict(model.named_modules())
        sequential(
            model,
            names,
            batches,
            observer=SharedInput(
                lambda n, _m: HessianAccumulator(modules[n].in_features, dtype=torch.float32)
            ),
            update=update,
        )
    lines = [
        f"sparsegpt: {len(names)} Linear layer(s) re-masked from calibration data "
        f"(total OBS objective {sum(losses):.4g})"
    ]
    if others:
        lines.append(
            f"sparsegpt: {', '.join(others[:4])}{' ...' if len(others) > 4 else ''}: not Linear; "
            "magnitude masks kept"
        )
    return lines
