"""Memory access energy: an SRAM size model fitted to published points, DRAM energy per bit.

Public: `SramModel`, `sram_model(table=None)`, `sram_energy_pj(capacity_bytes, width_bits,
*, node_nm=45, write=False)`, `dram_energy_pj_per_bit(kind="lpddr4")`, `DRAM_KINDS`.

SRAM model: E(C, w) = e0 * (C / C0)^alpha * (w / w0) with (C0, w0) = (8 KB, 64 b). alpha is a
least-squares fit in log space to the table's points (Horowitz, ISSCC 2014: 8 KB 10 pJ, 32 KB
20 pJ, 1 MB 100 pJ per 64-bit access at 45 nm) - bitline and wordline lengths, and so the
energy per bit, grow roughly with the square root of capacity; the fit finds 0.47. Energy is
taken linear in the access width (each bit has its own bitline pair and sense amplifier); the
published points are all 64-bit, so the width term is an assumption, stated here. A write costs
the same as a read unless the table gives write energies (Horowitz gives one figure per
access). `SramModel.anchors` reports the fit error on every point; a capacity outside the
fitted range is an extrapolation, which `SramModel.extrapolated(capacity_bytes)` reports.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache

from picojoule.energy.scaling import NodeScaling, node_scaling
from picojoule.energy.tables import DramRow, SramRow, Table, load_table
from picojoule.errors import ConfigError, suggest

__all__ = [
    "SramModel",
    "sram_model",
    "sram_energy_pj",
    "dram_energy_pj_per_bit",
    "dram_row",
    "DRAM_KINDS",
    "STATED_FIT_ERROR",
]

BASE_NODE_NM = 45.0
# |model / table - 1| on the built-in SRAM points is at most this (2.2% measured, at 32 KB)
STATED_FIT_ERROR = 0.03


@dataclass(frozen=True, kw_only=True)
class SramModel:
    """Fitted SRAM access energy, pJ at 45 nm: e0 * (C/C0)^alpha * (w/w0)."""

    e0_pj: float
    c0_bytes: float
    w0_bits: float
    alpha: float
    write_ratio: float
    min_bytes: float
    max_bytes: float
    anchors: tuple[tuple[int, int, float, float], ...]  # (C, w, table pJ, model pJ)
    uncited: tuple[str, ...] = ()

    def read_pj(self, capacity_bytes: float, width_bits: float) -> float:
        return (
            self.e0_pj * (capacity_bytes / self.c0_bytes) ** self.alpha * width_bits / self.w0_bits
        )

    @property
    def max_abs_error(self) -> float:
        return max(abs(m / t - 1.0) for _, _, t, m in self.anchors)

    def extrapolated(self, capacity_bytes: float) -> bool:
        """True when `capacity_bytes` lies outside the capacities the model was fitted to."""
        return not self.min_bytes <= capacity_bytes <= self.max_bytes


def _fit(table: Table, scaling: NodeScaling) -> SramModel:
    rows: tuple[SramRow, ...] = table.rows  # type: ignore[assignment]
    if len({r.capacity_bytes for r in rows}) < 2:
        raise ConfigError(f"{table.source}: the SRAM model needs points at >= 2 capacities")
    # Normalize every point to 45 nm and to the reference width, then fit log E = a + alpha log C.
    c0, w0 = 8192.0, 64.0
    # (plain Python: a few points, and numpy would cost the CLI's start-up ~80 ms)
    e45 = [r.read_energy_pj * scaling.ratio(r.node_nm, BASE_NODE_NM) for r in rows]
    log_e = [math.log(e * w0 / r.width_bits) for r, e in zip(rows, e45, strict=True)]
    x = [math.log(r.capacity_bytes / c0) for r in rows]
    alpha, log_e0 = statistics.linear_regression(x, log_e)
    writes = [(r.write_energy_pj / r.read_energy_pj) for r in rows if r.write_energy_pj is not None]
    model = SramModel(
        e0_pj=float(math.exp(log_e0)),
        c0_bytes=c0,
        w0_bits=w0,
        alpha=float(alpha),
        write_ratio=statistics.fmean(writes) if writes else 1.0,
        min_bytes=float(min(r.capacity_bytes for r in rows)),
        max_bytes=float(max(r.capacity_bytes for r in rows)),
        anchors=(),
        uncited=table.uncited,
    )
    anchors = tuple(
        (r.capacity_bytes, r.width_bits, float(e), model.read_pj(r.capacity_bytes, r.width_bits))
        for r, e in zip(rows, e45, strict=True)
    )
    return SramModel(**{**model.__dict__, "anchors": anchors})


@lru_cache(maxsize=8)
def sram_model(table: Table | None = None, scaling: NodeScaling | None = None) -> SramModel:
    """The SRAM model fitted to `table` (built-in Horowitz points by default)."""
    return _fit(table or load_table("sram"), scaling or node_scaling())


def sram_energy_pj(
    capacity_bytes: float,
    width_bits: float,
    *,
    node_nm: float = BASE_NODE_NM,
    write: bool = False,
    model: SramModel | None = None,
    scaling: NodeScaling | None = None,
) -> float:
    """pJ for one access of `width_bits` to an SRAM of `capacity_bytes` at `node_nm`."""
    if not capacity_bytes > 0 or not width_bits > 0:
        raise ConfigError(
            f"SRAM capacity and width must be positive, got {capacity_bytes} B x {width_bits} b"
        )
    scaling = scaling or node_scaling()
    model = model or sram_model(scaling=scaling)
    energy = model.read_pj(capacity_bytes, width_bits) * (model.write_ratio if write else 1.0)
    return energy * scaling.ratio(BASE_NODE_NM, node_nm)


def _dram_rows(table: Table | None) -> dict[str, DramRow]:
    rows: tuple[DramRow, ...] = (table or load_table("dram")).rows  # type: ignore[assignment]
    return {r.kind.lower(): r for r in rows}


DRAM_KINDS: tuple[str, ...] = tuple(_dram_rows(None))


def dram_row(kind: str, *, table: Table | None = None) -> DramRow:
    """The cited DRAM row for `kind` (e.g. "lpddr4", "hbm2", "gddr5", "ddr3")."""
    rows = _dram_rows(table)
    row = rows.get(kind.lower())
    if row is None:
        raise ConfigError(f"unknown DRAM kind {kind!r}{suggest(kind, rows)}")
    return row


def dram_energy_pj_per_bit(kind: str = "lpddr4", *, table: Table | None = None) -> float:
    """pJ per bit moved to or from off-chip memory of `kind` (lower end of a cited range).

    DRAM energy is dominated by the array and the I/O, not by the logic process of the chip that
    reads it, so no node scaling is applied.
    """
    return dram_row(kind, table=table).pj_per_bit
