"""Area of a whole accelerator (`picojoule.arch.Arch`), from the parts in `dse.area`.

Public: `ChipArea`, `chip_area`.

An `Arch` is a chain of memory levels with fanouts; a level under fanouts exists once per
copy, so its instances are the product of every fanout above it, and the MAC lanes number
`arch.lanes`. Lanes that the innermost fanout unrolls only along reduction loops (C, R, S)
add their products together, so they form one dot-product unit (MAGNet's vector MAC of
`vector_width` lanes); otherwise every lane is a scalar MAC with its own accumulator (Eyeriss'
PEs). DRAM is off chip and has no area here. What is not counted: on-chip
network wires, control, clock tree, I/O - a logic-plus-SRAM floor, as MAGNet's and Simba's
area tables also report the PE and buffers separately from the package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from picojoule.arch.spec import Arch
from picojoule.dse.area import storage_area_um2, vector_mac_area
from picojoule.errors import ConfigError

__all__ = ["ChipArea", "chip_area", "dot_product_width"]

_REDUCTION = frozenset({"C", "R", "S"})


@dataclass(frozen=True, kw_only=True)
class ChipArea:
    """Area by component (`mac` and one entry per on-chip memory level), um^2."""

    by_component_um2: dict[str, float]

    @property
    def total_um2(self) -> float:
        return sum(self.by_component_um2.values())

    @property
    def total_mm2(self) -> float:
        return self.total_um2 * 1e-6

    def by_component_mm2(self) -> dict[str, float]:
        return {k: v * 1e-6 for k, v in self.by_component_um2.items()}


def _node(arch: Arch) -> int:
    node = int(round(arch.node_nm))
    if node != arch.node_nm:
        raise ConfigError(f"arch {arch.name!r}: node_nm={arch.node_nm} is not a whole number")
    return node


def dot_product_width(arch: Arch) -> int:
    """Lanes per dot-product unit: the axes of the innermost fanout that unroll only
    reduction loops (1 when there are none)."""
    inner = next((lv.fanout for lv in reversed(arch.levels) if lv.fanout is not None), None)
    if inner is None:
        return 1
    width = 1
    if set(inner.x_dims) <= _REDUCTION:
        width *= inner.mesh_x
    if set(inner.y_dims) <= _REDUCTION:
        width *= inner.mesh_y
    return width


def chip_area(arch: Arch, *, weight_format: str, input_format: str) -> ChipArea:
    """Area of `arch` whose MACs multiply `weight_format` by `input_format` (the arch's own
    `mac.format` on both sides when it fixes one)."""
    node = _node(arch)
    vector_width = dot_product_width(arch)
    if arch.mac.format is not None:
        weight_format = input_format = arch.mac.format
    unit = vector_mac_area(weight_format, input_format, width=vector_width, node_nm=node)
    parts = {"mac": unit.total_um2 * (arch.lanes // vector_width)}
    copies = 1
    for level in arch.levels:
        if level.memory == "sram":
            # A partitioned level is one buffer per operand (MAGNet's weight/input/accum).
            buffers = (
                list(level.partition_bits.values())
                if level.partition_bits is not None
                else [level.capacity_bits]
            )
            if None in buffers:
                raise ConfigError(
                    f"arch {arch.name!r}: on-chip level {level.name!r} has no capacity; "
                    "give capacity_bits or partition_bits"
                )
            parts[level.name] = copies * sum(
                storage_area_um2(math.ceil(bits / 8), node_nm=node)
                for bits in buffers
                if bits is not None
            )
        if level.fanout is not None:
            copies *= level.fanout.size
    return ChipArea(by_component_um2=parts)
