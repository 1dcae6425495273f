"""Per-access and per-MAC energies of an `Arch` for one layer's operand formats.

Public: `EnergyTable`, `resolve_energy(arch, layer)`, `operand_bits(arch, layer)`,
`mac_format(arch, layer)`.

Energies given in the spec are used as written. A field left `None` is taken from
`picojoule.energy` (the project's cited tables): SRAM energy per access of `width_bits` from
`sram_energy_pj(capacity_bytes, width_bits, node_nm=...)` divided by the width, DRAM from
`dram_energy_pj_per_bit(kind)`, MAC from `mac_energy(weight_format,
input_format=..., node_nm=...)` (or the arch's fixed MAC format).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from picojoule.arch.spec import Arch, MemoryLevel
from picojoule.errors import ConfigError
from picojoule.formats import get as get_format
from picojoule.workload.layer import OPERANDS, Layer, Operand

__all__ = ["EnergyTable", "resolve_energy", "operand_bits", "mac_format"]


@dataclass(frozen=True, kw_only=True)
class EnergyTable:
    """pJ per bit by `[level, operand]` (operands in `OPERANDS` order), per fanout, per MAC."""

    read_pj_per_bit: np.ndarray
    write_pj_per_bit: np.ndarray
    network_pj_per_bit: np.ndarray
    mac_pj: float
    mac_format: str


def _energy_module():  # noqa: ANN202 - a module
    try:
        import picojoule.energy as energy
    except ImportError as exc:
        raise ConfigError(
            "this architecture leaves energies to picojoule.energy, which is not importable "
            f"({exc}); give read_pj_per_bit/write_pj_per_bit and mac.energy_pj in the spec"
        ) from None
    return energy


def mac_format(arch: Arch, layer: Layer) -> str:
    """The MAC's arithmetic format: the arch's, or the layer's `weights x inputs` pair."""
    if arch.mac.format is not None:
        return arch.mac.format
    if layer.weight_format == layer.input_format:
        return layer.weight_format
    return f"{layer.weight_format} x {layer.input_format}"


def operand_bits(arch: Arch, layer: Layer) -> dict[Operand, float]:
    """Stored bits per element of each operand (dense positions; compression amortized).

    Partial sums travel at the accumulator width. With compressed sparse storage an element
    costs density x bits plus the metadata bits; weights an N:M engine runs cost N/M x bits
    plus their index bits.
    """
    bits: dict[Operand, float] = {}
    for op, fmt, density in (
        ("weights", layer.weight_format, layer.weight_density),
        ("inputs", layer.input_format, layer.input_density),
    ):
        b = float(get_format(fmt).bits_per_element)
        frac = arch.sparse.structured_fraction(layer.weight_pattern)
        if op == "weights" and frac is not None:  # N:M layout: N values + indices per M
            b = frac * b + arch.sparse.structured_metadata_bits()
        elif arch.sparse.compressed:
            b = density * b + arch.sparse.metadata_bits_per_element
        bits[op] = b
    bits["outputs"] = float(arch.mac.accumulator_bits)
    return bits


def _level_energy(level: MemoryLevel, op: Operand, arch: Arch, write: bool) -> float:
    given = level.write_pj_per_bit if write else level.read_pj_per_bit
    if isinstance(given, dict):
        return float(given[op])
    if given is not None:
        return float(given)
    energy = _energy_module()
    if level.memory == "dram":
        return float(energy.dram_energy_pj_per_bit(level.dram_kind))
    capacity_bits = level.capacity_of(op)
    if capacity_bits is None:
        raise ConfigError(
            f"level {level.name!r}: an unbounded sram has no table energy; give "
            "capacity_bits or read_pj_per_bit/write_pj_per_bit"
        )
    per_access = energy.sram_energy_pj(
        capacity_bits / 8, level.width_bits, node_nm=arch.node_nm, write=write
    )
    return float(per_access) / level.width_bits


def resolve_energy(arch: Arch, layer: Layer) -> EnergyTable:
    """Concrete energies for `layer` on `arch` (table look-ups only where the spec is silent)."""
    L = len(arch.levels)
    read = np.zeros((L, len(OPERANDS)))
    write = np.zeros((L, len(OPERANDS)))
    network = np.zeros(L)
    for l, level in enumerate(arch.levels):
        for o, op in enumerate(OPERANDS):
            if op in level.holds:
                read[l, o] = _level_energy(level, op, arch, write=False)
                write[l, o] = _level_energy(level, op, arch, write=True)
        if level.fanout is not None:
            network[l] = level.fanout.network_pj_per_bit
    fmt = mac_format(arch, layer)
    if arch.mac.energy_pj is not None:
        mac_pj = arch.mac.energy_pj
    elif arch.mac.format is not None:
        mac_pj = float(_energy_module().mac_energy(fmt, node_nm=arch.node_nm).energy_pj)
    else:  # the layer's own pair of formats (weights x inputs)
        mac_pj = float(
            _energy_module()
            .mac_energy(layer.weight_format, input_format=layer.input_format, node_nm=arch.node_nm)
            .energy_pj
        )
    return EnergyTable(
        read_pj_per_bit=read,
        write_pj_per_bit=write,
        network_pj_per_bit=network,
        mac_pj=mac_pj,
        mac_format=fmt,
    )
