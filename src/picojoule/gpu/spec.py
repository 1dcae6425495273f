"""Datasheet peaks of the GPU a benchmark runs on, for speed-of-light (SOL%) figures.

The numbers are not repeated here: they come from the energy package's GPU table
(`picojoule/energy/data/gpus.yaml`, one vendor citation per row). `picojoule.energy.gpu(name)`
is used when it imports; the GPU machines carry no pydantic, so there the same YAML file is read
directly. Peaks are dense, in 10^12 op/s with an FMA counted as 2; keys are format names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GpuPeaks", "peaks", "peaks_for_device"]


@dataclass(frozen=True, kw_only=True)
class GpuPeaks:
    name: str
    title: str
    peak_tops: dict[str, float]
    sparse_tops: dict[str, float] = field(default_factory=dict)
    bandwidth_gbs: float
    tdp_w: float
    citation: str

    def peak(self, fmt: str, *, sparse: bool = False) -> float | None:
        """Datasheet TFLOPS/TOPS of `fmt` (dense, or with 2:4 sparsity), None if not listed."""
        return (self.sparse_tops if sparse else self.peak_tops).get(fmt)


_TABLE = Path(__file__).resolve().parents[1] / "energy" / "data" / "gpus.yaml"


def _rows() -> list[dict]:
    # By path, not importlib.resources: importing picojoule.energy needs pydantic.
    from picojoule.yamlio import load_yaml_file  # lazy: yaml only when a GPU row is needed

    data = load_yaml_file(_TABLE)
    return data["rows"] if isinstance(data, dict) else data


def peaks(name: str) -> GpuPeaks:
    """Peaks of the table row `name` (e.g. "h100")."""
    try:
        from picojoule.energy import gpu  # type: ignore[attr-defined]
    except ImportError:  # no pydantic (GPU machines) or energy API not there: same data file
        gpu = None
    if gpu is not None:
        row = gpu(name)
        return GpuPeaks(
            name=row.name,
            title=row.title,
            peak_tops=dict(row.peak_tops),
            sparse_tops=dict(row.sparse_tops),
            bandwidth_gbs=row.bandwidth_gbs,
            tdp_w=row.tdp_w,
            citation=row.citation or "",
        )
    for r in _rows():
        if r["name"] == name:
            return GpuPeaks(
                name=r["name"],
                title=r["title"],
                peak_tops={k.lower(): float(v) for k, v in r["peak_tops"].items()},
                sparse_tops={k.lower(): float(v) for k, v in r.get("sparse_tops", {}).items()},
                bandwidth_gbs=float(r["bandwidth_gbs"]),
                tdp_w=float(r["tdp_w"]),
                citation=r.get("citation", ""),
            )
    raise KeyError(name)


def peaks_for_device(device_name: str) -> GpuPeaks | None:
    """The table row matching a CUDA device name ("NVIDIA H100 80GB HBM3" -> h100), or None
    when the table has no row for it (PCIe and other board variants have other peaks)."""
    low = device_name.lower()
    if "pcie" in low or " nvl" in low:
        return None
    names = [r["name"] for r in _rows()]
    for n in sorted(names, key=len, reverse=True):
        if re.search(rf"\b{re.escape(n)}\b", low):
            return peaks(n)
    return None
