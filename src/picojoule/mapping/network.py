"""Map a whole workload: `map_workload(workload, arch, objective) -> WorkloadCost`.

Public: `map_workload`, `WorkloadCost`, `LayerResult`, `SpeedOfLight`, `speed_of_light`.

Identical layers (same `Layer.shape_key()`) are searched once. Totals weight each layer by its
`repeat`. The speed of light is the least any mapping could spend on this architecture: every
MAC once, and only the compulsory DRAM traffic (each weight and input read once, the input's
zero halo not at all unless the arch reads padding, each output written once at its output
width), in energy; in time, the MACs on every lane at once or that traffic at the outer
level's bandwidth, whichever is slower.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from picojoule.arch.energy import EnergyTable, operand_bits, resolve_energy
from picojoule.arch.spec import Arch
from picojoule.formats import get as get_format
from picojoule.mapping.cost import executed_macs
from picojoule.mapping.model import compulsory_input_elems
from picojoule.mapping.search import Objective, SearchResult, search
from picojoule.mapping.utilization import (
    POOR_UTILIZATION,
    UtilizationWarning,
    utilization_warnings,
)
from picojoule.workload.layer import OPERANDS, Layer, Workload

__all__ = ["SpeedOfLight", "LayerResult", "WorkloadCost", "speed_of_light", "map_workload"]


@dataclass(frozen=True, kw_only=True)
class SpeedOfLight:
    """Lower bounds for one layer pass: pJ and cycles."""

    energy_pj: float
    cycles: float


def speed_of_light(layer: Layer, arch: Arch, energy: EnergyTable) -> SpeedOfLight:
    bits = operand_bits(arch, layer)
    out_bits = float(get_format(layer.output_format).bits_per_element)
    w = OPERANDS.index("weights")
    i = OPERANDS.index("inputs")
    o = OPERANDS.index("outputs")
    inputs = compulsory_input_elems(layer, arch)  # less the generated zero halo
    dram_pj = (
        layer.weight_elems * bits["weights"] * energy.read_pj_per_bit[0, w]
        + inputs * bits["inputs"] * energy.read_pj_per_bit[0, i]
        + layer.output_elems * out_bits * energy.write_pj_per_bit[0, o]
    )
    density = arch.sparse.mac_density(layer.weight_density, layer.input_density)
    macs = executed_macs(layer, arch)  # N/M of them on an N:M sparse engine
    mac_pj = macs * energy.mac_pj * density
    dram_bits = (
        layer.weight_elems * bits["weights"]
        + inputs * bits["inputs"]
        + layer.output_elems * out_bits
    )
    bw = arch.levels[0].bandwidth_bits_per_cycle
    cycles = max(macs / arch.lanes, dram_bits / bw if bw else 0.0)
    return SpeedOfLight(energy_pj=float(dram_pj + mac_pj), cycles=float(cycles))


@dataclass(frozen=True, kw_only=True)
class LayerResult:
    """One layer: its search result (mapping and cost), bound, and how often it repeats."""

    layer: Layer
    result: SearchResult
    bound: SpeedOfLight
    mac_format: str
    # Structural reasons the layer cannot fill the array (`picojoule.mapping.utilization`),
    # given when the mapping found keeps fewer than half of the lanes busy.
    warnings: tuple[UtilizationWarning, ...] = ()

    @property
    def energy_pj(self) -> float:
        return self.result.cost.energy_pj * self.layer.repeat

    @property
    def cycles(self) -> float:
        return self.result.cost.cycles * self.layer.repeat


@dataclass(frozen=True, kw_only=True)
class WorkloadCost:
    """Per-layer results and totals of a workload on an architecture (pJ, cycles, seconds)."""

    workload: str
    arch: str
    objective: str
    layers: tuple[LayerResult, ...]
    clock_ghz: float
    lanes: int
    elapsed_s: float

    @property
    def macs(self) -> int:
        return sum(r.layer.macs * r.layer.repeat for r in self.layers)

    @property
    def energy_pj(self) -> float:
        return sum(r.energy_pj for r in self.layers)

    @property
    def cycles(self) -> float:
        return sum(r.cycles for r in self.layers)

    @property
    def latency_s(self) -> float:
        return self.cycles / (self.clock_ghz * 1e9)

    @property
    def pj_per_mac(self) -> float:
        return self.energy_pj / self.macs

    @property
    def utilization(self) -> float:
        """MACs issued over lane-cycles: the fraction of the array's peak actually used (an
        N:M sparse engine issues N/M of a pruned layer's MACs)."""
        issued = sum(r.result.cost.issued_macs * r.layer.repeat for r in self.layers)
        return issued / (self.cycles * self.lanes)

    @property
    def mac_energy_pj(self) -> float:
        return sum(r.result.cost.mac_energy_pj * r.layer.repeat for r in self.layers)

    @property
    def network_energy_pj(self) -> float:
        return sum(
            sum(r.result.cost.network_energy_pj.values()) * r.layer.repeat for r in self.layers
        )

    @property
    def energy_by_level_pj(self) -> dict[str, dict[str, float]]:
        """pJ by memory level and operand, summed over layers."""
        out: dict[str, dict[str, float]] = {}
        for r in self.layers:
            for level, row in r.result.cost.energy_by_level_pj.items():
                dest = out.setdefault(level, {})
                for op, pj in row.items():
                    dest[op] = dest.get(op, 0.0) + pj * r.layer.repeat
        return out

    @property
    def energy_by_operand_pj(self) -> dict[str, float]:
        by_level = self.energy_by_level_pj
        return {op: sum(row.get(op, 0.0) for row in by_level.values()) for op in OPERANDS}

    @property
    def sol_energy_pj(self) -> float:
        return sum(r.bound.energy_pj * r.layer.repeat for r in self.layers)

    @property
    def sol_cycles(self) -> float:
        return sum(r.bound.cycles * r.layer.repeat for r in self.layers)

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per structural utilization limit, each naming the reason and the fix
        (layers of the same shape are reported once)."""
        seen, out = set(), []
        for r in self.layers:
            for w in r.warnings:
                key = (r.layer.shape_key(), w.reason)
                if key not in seen:
                    seen.add(key)
                    out.append(str(w))
        return tuple(out)

    @property
    def timed_out(self) -> tuple[str, ...]:
        """Names of layers whose search stopped at the time budget."""
        return tuple(r.layer.name for r in self.layers if r.result.timed_out)

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON: totals, per-layer costs and mappings."""
        return {
            "workload": self.workload,
            "arch": self.arch,
            "objective": self.objective,
            "macs": self.macs,
            "energy_pj": self.energy_pj,
            "pj_per_mac": self.pj_per_mac,
            "cycles": self.cycles,
            "latency_s": self.latency_s,
            "utilization": self.utilization,
            "mac_energy_pj": self.mac_energy_pj,
            "network_energy_pj": self.network_energy_pj,
            "energy_by_level_pj": self.energy_by_level_pj,
            "speed_of_light": {"energy_pj": self.sol_energy_pj, "cycles": self.sol_cycles},
            "elapsed_s": self.elapsed_s,
            "timed_out_layers": list(self.timed_out),
            "warnings": list(self.warnings),
            "layers": [
                {
                    "name": r.layer.name,
                    "shape": r.layer.describe(),
                    "repeat": r.layer.repeat,
                    "macs": r.layer.macs,
                    "mac_format": r.mac_format,
                    "energy_pj": r.result.cost.energy_pj,
                    "pj_per_mac": r.result.cost.pj_per_mac,
                    "cycles": r.result.cost.cycles,
                    "utilization": r.result.cost.utilization,
                    "bound_by": r.result.cost.bound_by,
                    "compute_cycles": r.result.cost.compute_cycles,
                    "stall_cycles": r.result.cost.stall_cycles,
                    "fill_cycles": r.result.cost.fill_cycles,
                    "drain_cycles": r.result.cost.drain_cycles,
                    "spatial_utilization": r.result.cost.spatial_utilization,
                    "energy_by_level_pj": r.result.cost.energy_by_level_pj,
                    "mac_energy_pj": r.result.cost.mac_energy_pj,
                    "network_energy_pj": r.result.cost.network_energy_pj,
                    "speed_of_light": {
                        "energy_pj": r.bound.energy_pj,
                        "cycles": r.bound.cycles,
                    },
                    "timed_out": r.result.timed_out,
                    "mapping": r.result.mapping.to_dict(),
                }
                for r in self.layers
            ],
        }


CACHE_SIZE = 4096  # layer results kept per process (least recently used go first)
_CACHE: OrderedDict[tuple[object, ...], tuple[SearchResult, SpeedOfLight, str]] = OrderedDict()


def map_workload(
    workload: Workload,
    arch: Arch,
    objective: Objective = "energy",
    *,
    time_budget_s: float | None = None,
    seed: int = 0,
    samples: int = 400,
    starts: int = 6,
    cache: bool = True,
) -> WorkloadCost:
    """Search every distinct layer of `workload` on `arch` and total the costs.

    `time_budget_s` bounds the whole run; it is shared evenly among the layers not yet
    searched, and a layer that runs out keeps its best mapping so far (listed in
    `WorkloadCost.timed_out`). Without a time budget the search is a pure function of its
    inputs, so with `cache` the results are kept in this process and reused by later calls
    with the same architecture, layer shape, formats and search settings.
    """
    start = time.perf_counter()
    unique: dict[tuple[object, ...], tuple[SearchResult, SpeedOfLight, str]] = {}
    keys = [layer.shape_key() for layer in workload.layers]
    pending = len(set(keys))
    results = []
    use_cache = cache and time_budget_s is None
    spec = arch.model_dump_json() if use_cache else ""
    for layer, key in zip(workload.layers, keys, strict=True):
        memo = (spec, key, objective, seed, samples, starts)
        if use_cache and key not in unique and memo in _CACHE:
            _CACHE.move_to_end(memo)
            unique[key] = _CACHE[memo]
            pending -= 1
        if key not in unique:
            budget = None
            if time_budget_s is not None:
                left = time_budget_s - (time.perf_counter() - start)
                budget = max(left, 0.0) / pending
            energy = resolve_energy(arch, layer)
            found = search(
                layer,
                arch,
                objective,
                time_budget_s=budget,
                seed=seed,
                samples=samples,
                starts=starts,
                energy=energy,
            )
            unique[key] = (found, speed_of_light(layer, arch, energy), energy.mac_format)
            pending -= 1
            if use_cache and not found.timed_out:
                _CACHE[memo] = unique[key]
                while len(_CACHE) > CACHE_SIZE:
                    _CACHE.popitem(last=False)
        found, bound, fmt = unique[key]
        notes: tuple[UtilizationWarning, ...] = ()
        if found.cost.utilization < POOR_UTILIZATION:
            notes = tuple(utilization_warnings(layer, arch))
        results.append(
            LayerResult(layer=layer, result=found, bound=bound, mac_format=fmt, warnings=notes)
        )
    return WorkloadCost(
        workload=workload.name,
        arch=arch.name,
        objective=objective,
        layers=tuple(results),
        clock_ghz=arch.clock_ghz,
        lanes=arch.lanes,
        elapsed_s=time.perf_counter() - start,
    )
