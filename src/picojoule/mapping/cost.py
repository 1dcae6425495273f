"""The cost of one mapping: `evaluate(layer, arch, mapping) -> Cost`.

Public: `Cost`, `evaluate`, `cost_from_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass

from picojoule.arch.energy import EnergyTable, operand_bits, resolve_energy
from picojoule.arch.spec import Arch
from picojoule.mapping.mapping import Mapping, MappingBatch, MappingError, check_mapping
from picojoule.mapping.model import BatchCost, evaluate_batch
from picojoule.workload.layer import OPERANDS, Layer

__all__ = ["Cost", "evaluate", "cost_from_batch"]


@dataclass(frozen=True, kw_only=True)
class Cost:
    """Energy (pJ), latency (cycles) and traffic of one layer under one mapping.

    `energy_by_level_pj[level][operand]` covers every memory level and operand;
    `network_energy_pj[level]` the fanout under that level; `reads`/`writes` count elements.
    `bound_by` names what sets the overlapped phase of the latency: "compute", the level
    whose ports do, or "<level> network" for the network under a level. `stall_cycles`
    (refills that cannot overlap, by the level refilled) and `fill_cycles` /
    `drain_cycles` (first fill, last drain) add to it: `cycles` = that phase + all three.
    `utilization` = MACs issued / (cycles x lanes); `spatial_utilization` = lanes the
    mapping uses / lanes.
    """

    layer: str
    energy_pj: float
    mac_energy_pj: float
    energy_by_level_pj: dict[str, dict[str, float]]
    network_energy_pj: dict[str, float]
    reads: dict[str, dict[str, int]]
    writes: dict[str, dict[str, int]]
    cycles: float
    compute_cycles: int
    bound_by: str
    stall_cycles: dict[str, float]
    fill_cycles: float
    drain_cycles: float
    macs: int
    issued_macs: float  # N/M of `macs` on an N:M sparse engine running N:M weights
    utilization: float
    spatial_utilization: float
    clock_ghz: float

    @property
    def pj_per_mac(self) -> float:
        return self.energy_pj / self.macs

    @property
    def latency_s(self) -> float:
        return self.cycles / (self.clock_ghz * 1e9)

    @property
    def memory_energy_pj(self) -> float:
        return sum(sum(row.values()) for row in self.energy_by_level_pj.values())

    def energy_by_operand_pj(self) -> dict[str, float]:
        return {
            op: sum(row.get(op, 0.0) for row in self.energy_by_level_pj.values()) for op in OPERANDS
        }


def executed_macs(layer: Layer, arch: Arch) -> float:
    """MACs the hardware issues: all of them, or N/M on an N:M sparse engine."""
    return layer.macs * (arch.sparse.structured_fraction(layer.weight_pattern) or 1.0)


def cost_from_batch(layer: Layer, arch: Arch, batch: BatchCost, i: int) -> Cost:
    """Row `i` of a batch result as a `Cost`."""
    names = [level.name for level in arch.levels]
    by_level = {
        name: {
            op: float(batch.level_energy_pj[i, l, o])
            for o, op in enumerate(OPERANDS)
            if op in arch.levels[l].holds
        }
        for l, name in enumerate(names)
    }
    counts = {
        key: {
            name: {
                op: int(getattr(batch, key)[i, l, o])
                for o, op in enumerate(OPERANDS)
                if op in arch.levels[l].holds
            }
            for l, name in enumerate(names)
        }
        for key in ("reads", "writes")
    }
    network = {
        name: float(batch.network_energy_pj[i, l])
        for l, name in enumerate(names)
        if arch.levels[l].fanout is not None
    }
    phases = {"compute": float(batch.compute_cycles[i])}
    for l, name in enumerate(names):
        phases.setdefault(name, float(batch.bw_cycles[i, l]))
        if arch.levels[l].fanout is not None:
            phases[f"{name} network"] = float(batch.net_cycles[i, l])
    bound = max(phases, key=lambda k: phases[k])  # ties keep "compute"
    cycles = float(batch.cycles[i])
    return Cost(
        layer=layer.name,
        energy_pj=float(batch.energy_pj[i]),
        mac_energy_pj=float(batch.mac_energy_pj),
        energy_by_level_pj=by_level,
        network_energy_pj=network,
        reads=counts["reads"],
        writes=counts["writes"],
        cycles=cycles,
        compute_cycles=int(batch.compute_cycles[i]),
        bound_by=bound,
        stall_cycles={
            name: float(batch.stall_cycles[i, l])
            for l, name in enumerate(names)
            if batch.stall_cycles[i, l] > 0
        },
        fill_cycles=float(batch.fill_cycles[i]),
        drain_cycles=float(batch.drain_cycles[i]),
        macs=layer.macs,
        issued_macs=executed_macs(layer, arch),
        utilization=executed_macs(layer, arch) / (cycles * arch.lanes),
        spatial_utilization=float(batch.used_lanes[i]) / arch.lanes,
        clock_ghz=arch.clock_ghz,
    )


def evaluate(layer: Layer, arch: Arch, mapping: Mapping, energy: EnergyTable | None = None) -> Cost:
    """Check `mapping` (raises `MappingError` naming the rule it breaks) and cost it."""
    check_mapping(mapping, layer, arch, operand_bits(arch, layer))
    batch = evaluate_batch(
        layer, arch, MappingBatch.of([mapping]), energy or resolve_energy(arch, layer)
    )
    if not batch.fits[0]:
        raise MappingError(
            "an input window loop (P Q R S) is unrolled at a fanout with a temporal loop of the "
            "same dimension between it and the next level holding inputs; the input tile is "
            "then not a box, which the model does not cover; move that temporal factor"
        )
    return cost_from_batch(layer, arch, batch, 0)
