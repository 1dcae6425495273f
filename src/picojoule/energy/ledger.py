"""The energy ledger of one MAC: math vs instruction overhead vs operand delivery.

Public: `Ledger`, `format_ledger(fmt, *, node_nm=45, macs_per_instruction=512,
buffer_bytes=8192)`.

For a format, one MAC costs
- math: `mac_energy(fmt)` (multiply, accumulate, amortized scales);
- overhead: the fixed ~30 pJ of fetching, decoding and issuing an instruction (Dally, Hot
  Chips 2023) shared by the MACs one instruction performs - 1 for a scalar FMA, 512 for an
  IMMA-class tensor-core instruction (the default);
- memory: both operands read from a local SRAM of `buffer_bytes` at the format's bits per
  element (scales amortized), priced with the SRAM model - the operand delivery that
  narrower formats make cheaper, with no reuse assumed.
These are the three columns of the seed's argument; the defaults are stated, not hidden.
"""

from __future__ import annotations

from dataclasses import dataclass

from picojoule.energy.mac import mac_energy
from picojoule.energy.memory import sram_energy_pj
from picojoule.energy.overhead import OVERHEAD_PJ
from picojoule.energy.scaling import node_scaling
from picojoule.errors import ConfigError

__all__ = ["Ledger", "format_ledger"]

_BUFFER_WIDTH_BITS = 64  # the width of Horowitz's SRAM figures; energy per bit is what matters


@dataclass(frozen=True, kw_only=True)
class Ledger:
    """pJ per MAC at `node_nm`, split three ways; `math_parts` breaks down the math."""

    name: str
    node_nm: float
    math_pj: float
    overhead_pj: float
    memory_pj: float
    math_parts: dict[str, float]

    @property
    def total_pj(self) -> float:
        return self.math_pj + self.overhead_pj + self.memory_pj


def format_ledger(
    fmt: object,
    *,
    node_nm: float = 45.0,
    macs_per_instruction: int = 512,
    buffer_bytes: float = 8192,
) -> Ledger:
    """The three-way energy of one MAC on `fmt` (see the module docstring)."""
    from picojoule.formats import get

    if macs_per_instruction < 1:
        raise ConfigError(f"macs_per_instruction must be >= 1, got {macs_per_instruction}")
    mac = mac_energy(fmt, node_nm=node_nm)
    bits = get(fmt).bits_per_element  # type: ignore[arg-type]
    per_bit = sram_energy_pj(buffer_bytes, _BUFFER_WIDTH_BITS, node_nm=node_nm) / _BUFFER_WIDTH_BITS
    groups: dict[str, float] = {}
    for key, value in mac.breakdown.items():
        head = key.split(":")[0]
        groups[head] = groups.get(head, 0.0) + value
    return Ledger(
        name=mac.name,
        node_nm=node_nm,
        math_pj=mac.energy_pj,
        overhead_pj=OVERHEAD_PJ * node_scaling().ratio(45.0, node_nm) / macs_per_instruction,
        memory_pj=2 * bits * per_bit,
        math_parts=groups,
    )
