"""The per-layer "what did sparsity buy" table.

Public: `LayerSparsity`, `report(model, applied=None, *, example_input=None, dtype="fp16")`,
`render_table(rows)`, `to_dict(rows)`, `layer_gemms(model, example_input)`.

One row per Linear/Conv layer: its pattern and measured density, whether torch's 2:4 kernel
would take it (and every rule it fails), the kernel that would run, weight bytes saved in the
layer's natural compressed layout, multiplies with a zero weight, and a predicted speedup with
the assumption behind it, and -- when GPU measurements are passed (`gpu_check`) -- the speedup
measured for that layer's shape. A layer that was not sparsified says why ("skipped: reason").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from rich.table import Table

from picojoule.config import Applied
from picojoule.sparsity.costs import Gemm
from picojoule.sparsity.gpu_check import GpuMeasurement
from picojoule.sparsity.kernels import SPEEDUP_2TO4, canonical_dtype, is_nm, semi_structured_verdict
from picojoule.sparsity.layouts import storage
from picojoule.sparsity.patterns import parse_pattern
from picojoule.sparsity.sparsify import PRUNABLE, layer_kind, mask_of
from picojoule.termtable import FitTable

__all__ = ["LayerSparsity", "report", "render_table", "to_dict", "layer_gemms"]

_ASSUME_2TO4 = "math-bound upper bound: 2:4 doubles tensor-core rate (A100 whitepaper)"
_ASSUME_DENSE = "dense kernel runs: zeros are multiplied"


@dataclass(frozen=True, kw_only=True)
class LayerSparsity:
    """One layer's row. Bytes are weight storage in `dtype`; MACs are per input sample.

    `measured_speedup` (eager torch call) and `measured_kernel_speedup` (GPU time only) come
    from the closest measured shape, described in `measured_on`; None when not measured.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    pattern: str
    density: float
    status: str
    qualifies_2to4: bool
    why_not: str
    kernel: str
    layout: str
    dense_bytes: int
    sparse_bytes: int
    macs: int | None
    macs_saved: int | None
    predicted_speedup: float
    speedup_assumption: str
    measured_speedup: float | None = None
    measured_kernel_speedup: float | None = None
    measured_on: str = ""

    @property
    def bytes_saved(self) -> int:
        return self.dense_bytes - self.sparse_bytes


def layer_gemms(model: nn.Module, example_input: Any) -> dict[str, Gemm]:
    """Implicit-GEMM shape of every Linear/Conv for one forward pass of `example_input` (a
    tensor, a tuple of positional inputs or a dict of keyword inputs).

    Y[m, n] = W[m, k] @ X[k, n]: m = out channels, k = in channels per group x kernel taps,
    n = output elements per channel over the whole batch (batch x pixels, or tokens).
    """
    from picojoule.quant.capture import run_batch

    found: dict[str, Gemm] = {}
    hooks = []

    def hook_for(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            m = module.weight.shape[0]
            found[name] = Gemm(m=m, k=module.weight[0].numel(), n=output.numel() // m)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE):
            hooks.append(module.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            run_batch(model, example_input)
    finally:
        for h in hooks:
            h.remove()
    return found


def _batch_size(example_input: Any) -> int:
    """The first dimension of the first tensor in `example_input` (1 if it holds none)."""
    if isinstance(example_input, dict):
        items = list(example_input.values())
    elif isinstance(example_input, tuple | list):
        items = list(example_input)
    else:
        items = [example_input]
    return next((int(x.shape[0]) for x in items if isinstance(x, torch.Tensor) and x.dim()), 1)


def _layout(weight: torch.Tensor, pattern: str, dtype: str) -> tuple[str, int, int]:
    """(layout, dense bytes, stored bytes): the N:M layout for a weight that holds its N:M
    pattern, else the smaller of CSR and bitmask, or dense if neither saves anything."""
    best = storage("dense", weight, dtype)
    if pattern == "dense":
        return best.layout, best.dense_bytes, best.total_bytes
    parsed = parse_pattern(pattern)
    fits_nm = parsed.kind == "nm" and is_nm(weight, parsed.n, parsed.m)
    candidates = [pattern] if fits_nm else ["csr", "bitmask"]
    for layout in candidates:
        s = storage(layout, weight, dtype)
        if s.total_bytes < best.total_bytes:
            best = s
    return best.layout, best.dense_bytes, best.total_bytes


def _closest(
    measured: Sequence[GpuMeasurement], m: int, k: int, n: int | None, dtype: str
) -> GpuMeasurement | None:
    """The timed row for W[m, k] in `dtype` whose column count is nearest `n` (log scale)."""
    rows = [
        r for r in measured if r.speedup is not None and (r.m, r.k) == (m, k) and r.dtype == dtype
    ]
    if not rows:
        return None
    if n is None:
        return max(rows, key=lambda r: r.n)
    return min(rows, key=lambda r: abs(math.log(r.n / n)))


def report(
    model: nn.Module,
    applied: Sequence[Applied] | None = None,
    *,
    example_input: Any = None,
    dtype: str = "fp16",
    backend: str = "cusparselt",
    measured: Sequence[GpuMeasurement] = (),
) -> list[LayerSparsity]:
    """Per-layer sparsity table for `model` as deployed in `dtype` on a GPU with `backend`.

    `applied` (what `sparsify_` returned) supplies the reasons layers were skipped;
    `example_input` (a batch: a tensor, a tuple or a dict of them, batched along their first
    dimension) enables the MAC columns and picks the measured shape with the
    nearest batch; `measured` (`gpu_check.measure_2to4` or `load_measurements`) fills the
    measured-speedup columns of layers that run the 2:4 kernel.
    """
    reasons = {a.name: a.reason for a in applied or () if a.skipped}
    macs: dict[str, int] = {}
    columns: dict[str, int] = {}
    if example_input is not None:
        batch = _batch_size(example_input)
        gemms = layer_gemms(model, example_input)
        macs = {k: g.macs // batch for k, g in gemms.items()}
        columns = {k: g.n for k, g in gemms.items()}
    deployed = canonical_dtype(dtype)
    rows: list[LayerSparsity] = []
    for name, module in model.named_modules():
        if not isinstance(module, PRUNABLE):
            continue
        mask = mask_of(module)
        with torch.no_grad():
            weight = module.weight.detach()  # after every transform: what would run
        pattern = mask.pattern if mask is not None else "dense"
        density = float((weight != 0).float().mean()) if mask is not None else 1.0
        if mask is not None and bool((weight.masked_select(~mask.mask) != 0).any()):
            status = "sparse mask undone: a later weight transform refills pruned weights"
        elif mask is not None:
            status = "sparse"
        elif name in reasons:
            status = f"skipped: {reasons[name]}"
        else:
            status = "dense"
        kind = layer_kind(module)
        verdict = semi_structured_verdict(
            kind,
            tuple(weight.shape),
            dtype,
            pattern,
            backend=backend,
            mask_is_2to4=is_nm(weight, 2, 4),
        )
        layout, dense_bytes, sparse_bytes = _layout(weight, pattern, dtype)
        layer_macs = macs.get(name)
        timed = None
        if verdict.qualifies:
            timed = _closest(measured, *weight.shape, columns.get(name), deployed)
        rows.append(
            LayerSparsity(
                name=name,
                kind=kind,
                shape=tuple(weight.shape),
                pattern=pattern,
                density=density,
                status=status,
                qualifies_2to4=verdict.qualifies,
                why_not=verdict.why_not,
                kernel=verdict.kernel,
                layout=layout,
                dense_bytes=dense_bytes,
                sparse_bytes=sparse_bytes,
                macs=layer_macs,
                macs_saved=None if layer_macs is None else round(layer_macs * (1 - density)),
                predicted_speedup=SPEEDUP_2TO4 if verdict.qualifies else 1.0,
                speedup_assumption=_ASSUME_2TO4 if verdict.qualifies else _ASSUME_DENSE,
                measured_speedup=timed.speedup if timed else None,
                measured_kernel_speedup=timed.kernel_speedup if timed else None,
                measured_on=f"{timed.device}, n={timed.n}" if timed else "",
            )
        )
    return rows


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _measured(r: LayerSparsity) -> str:
    if r.measured_speedup is None:
        return "-"
    kernel = r.measured_kernel_speedup
    return f"{r.measured_speedup:.2f}x call, " + (f"{kernel:.2f}x kernel" if kernel else "-")


def render_table(rows: Sequence[LayerSparsity], title: str = "Sparsity per layer") -> Table:
    """A rich Table of `report` rows; the speedup assumptions go in the caption. It fits the
    console's width (`FitTable`): at 80 columns the kernel verdicts, MACs saved and measured
    speedups move to a second table, the layer names repeated."""
    table = FitTable(title=title)
    table.add_column("layer", kind="name")
    table.add_column("shape", kind="number")
    table.add_column("pattern", kind="number")
    table.add_column("density", kind="number")
    table.add_column("status", kind="text")
    table.add_column("2:4 kernel?", kind="text", rank=1)
    table.add_column("GPU kernel", kind="text", rank=1)
    table.add_column("bytes saved", justify="right", kind="text")
    table.add_column("MACs saved", justify="right", kind="text", rank=1)
    table.add_column("pred. speedup", justify="right")
    table.add_column("measured", justify="right", kind="text", rank=1)
    for r in rows:
        fits = "yes" if r.qualifies_2to4 else f"no: {r.why_not}"
        saved = f"{r.bytes_saved} B ({_pct(r.bytes_saved, r.dense_bytes)}, {r.layout})"
        macs = "-" if r.macs_saved is None else f"{r.macs_saved} ({_pct(r.macs_saved, r.macs)})"
        table.add_row(
            r.name,
            "x".join(map(str, r.shape)),
            r.pattern,
            f"{r.density:.3f}",
            r.status,
            fits,
            r.kernel,
            saved,
            macs,
            f"{r.predicted_speedup:.2f}x",
            _measured(r),
        )
    notes = sorted({f"{r.predicted_speedup:.2f}x: {r.speedup_assumption}" for r in rows})
    notes += sorted({f"measured on {r.measured_on}" for r in rows if r.measured_on})
    table.caption = " | ".join(notes)
    return table


def to_dict(rows: Sequence[LayerSparsity]) -> dict[str, object]:
    """JSON-ready {"layers": [...], "totals": {...}} for study reports."""
    layers = [{**asdict(r), "shape": list(r.shape), "bytes_saved": r.bytes_saved} for r in rows]
    dense = sum(r.dense_bytes for r in rows)
    stored = sum(r.sparse_bytes for r in rows)
    totals: dict[str, object] = {
        "dense_bytes": dense,
        "sparse_bytes": stored,
        "bytes_saved": dense - stored,
        "layers_sparse": sum(r.status == "sparse" for r in rows),
        "layers_on_2to4_kernel": sum(r.qualifies_2to4 for r in rows),
    }
    if all(r.macs is not None for r in rows):
        totals["macs"] = sum(r.macs or 0 for r in rows)
        totals["macs_saved"] = sum(r.macs_saved or 0 for r in rows)
    return {"layers": layers, "totals": totals}
