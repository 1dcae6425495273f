"""Architecture specification: memory levels, spatial fanouts and the MAC unit.

Public: `Arch`, `MemoryLevel`, `Fanout`, `MacUnit`, `SparseSupport`.

An `Arch` is a chain of memory levels, outermost (DRAM) first. A level may have a `fanout`: a
spatial array of copies of everything below it (the next levels and, under the innermost level,
the MAC lanes). Each level names the operands it `holds`; an operand it does not hold bypasses
it. Energies are pJ per bit moved; a field left `None` is filled from `picojoule.energy` when
the cost model runs (see `picojoule.arch.energy`). Every model is frozen and rejects unknown
fields, so a YAML typo is an error, not a silently ignored key.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from picojoule.arch.limits import MAX_LANES, limited, per_bit_energy
from picojoule.workload.layer import DIMS, OPERANDS, Operand, n_of_m

__all__ = ["Arch", "MemoryLevel", "Fanout", "MacUnit", "SparseSupport", "Dim"]

Dim = Literal["N", "G", "K", "C", "P", "Q", "R", "S"]
PerBit = float | dict[Operand, float] | None
# Numbers are checked against `picojoule.arch.limits.LIMITS` (type, finiteness, sane range).
Bits = Annotated[int, limited("capacity_bits")]
ReadPj = Annotated[PerBit, per_bit_energy("read_pj_per_bit")]
WritePj = Annotated[PerBit, per_bit_energy("write_pj_per_bit")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Fanout(_Frozen):
    """A 2-D spatial array under a level: `mesh_x` x `mesh_y` copies of what lies below.

    `x_dims`/`y_dims` are the loops the interconnect can unroll along each axis (a loop that
    is not listed cannot be mapped there). Data is multicast to, and partial sums reduced
    from, the copies; `network_pj_per_bit` is charged per bit per copy reached.
    `bandwidth_bits_per_cycle` bounds the bits the network under one parent instance carries
    per cycle, all operands and both directions together (`None`: never the bottleneck).
    With `multicast` (a bus or tree) one transfer reaches every copy that needs an element
    and partial sums reduce on the way up; without it each copy reached is its own transfer.
    """

    mesh_x: Annotated[int, limited("mesh_x")]
    mesh_y: Annotated[int, limited("mesh_y")] = 1
    x_dims: tuple[Dim, ...] = DIMS  # type: ignore[assignment]
    y_dims: tuple[Dim, ...] = DIMS  # type: ignore[assignment]
    network_pj_per_bit: Annotated[float, limited("network_pj_per_bit")] = 0.0
    bandwidth_bits_per_cycle: Annotated[float, limited("bandwidth_bits_per_cycle")] | None = None
    multicast: bool = True

    @property
    def size(self) -> int:
        return self.mesh_x * self.mesh_y


class MemoryLevel(_Frozen):
    """One storage level (per instance, when it sits under a fanout).

    `capacity_bits=None` means unbounded (DRAM). `partition_bits` splits a level into one
    scratchpad per operand (Eyeriss' RF, MAGNet's weight/input/accumulation buffers); then
    each operand's tile must fit its own partition. `bandwidth_bits_per_cycle` bounds reads
    plus writes per instance per cycle (one shared port; `None`: never the bottleneck);
    `read_bandwidth_bits_per_cycle` and `write_bandwidth_bits_per_cycle` bound separate read
    and write ports (any combination of the three may be given; each applies).
    `double_buffered`: whether the next tile's transfer overlaps the work on the current one
    (True: always, Timeloop's assumption; False: never, every refill stalls; None: when the
    level has room for a second tile, ZigZag's rule; see docs/accelerator.md, "Latency").
    `temporal_dims` restricts the loops that may iterate at this level and `stationary`
    fixes which operand the innermost loops here keep in place (both express a dataflow).
    `bypassable` lists held operands a mapping may route past this level, chosen per layer
    by the mapper (nn_dataflow's buffer bypass): that operand then moves between the next
    outer and next inner levels holding it as if this level did not hold it, and takes none
    of its capacity.
    """

    name: str = Field(min_length=1)
    holds: tuple[Operand, ...] = Field(min_length=1)
    memory: Literal["dram", "sram"] = "sram"
    dram_kind: str = "lpddr4"
    capacity_bits: Bits | None = None
    partition_bits: dict[Operand, Annotated[int, limited("partition_bits")]] | None = None
    width_bits: Annotated[int, limited("width_bits")] = 64
    read_pj_per_bit: ReadPj = None
    write_pj_per_bit: WritePj = None
    bandwidth_bits_per_cycle: Annotated[float, limited("bandwidth_bits_per_cycle")] | None = None
    read_bandwidth_bits_per_cycle: (
        Annotated[float, limited("read_bandwidth_bits_per_cycle")] | None
    ) = None
    write_bandwidth_bits_per_cycle: (
        Annotated[float, limited("write_bandwidth_bits_per_cycle")] | None
    ) = None
    double_buffered: bool | None = None
    fanout: Fanout | None = None
    temporal_dims: tuple[Dim, ...] = DIMS  # type: ignore[assignment]
    stationary: Operand | None = None
    bypassable: tuple[Operand, ...] = ()

    @field_validator("holds", "bypassable")
    @classmethod
    def _unique(cls, holds: tuple[Operand, ...]) -> tuple[Operand, ...]:
        if len(set(holds)) != len(holds):
            raise ValueError(f"lists an operand twice: {list(holds)}")
        return holds

    @model_validator(mode="after")
    def _partitions(self) -> MemoryLevel:
        extra_bypass = set(self.bypassable) - set(self.holds)
        if extra_bypass:
            raise ValueError(
                f"bypassable names {sorted(extra_bypass)} which level {self.name!r} does not "
                "hold; an operand it does not hold already bypasses it"
            )
        if self.partition_bits is not None:
            extra = set(self.partition_bits) - set(self.holds)
            if extra:
                raise ValueError(
                    f"partition_bits names {sorted(extra)} which level {self.name!r} does not "
                    f"hold; add them to holds or remove the partition"
                )
            missing = set(self.holds) - set(self.partition_bits)
            if missing:
                raise ValueError(
                    f"partition_bits lacks {sorted(missing)}; give every held operand a "
                    "partition, or use capacity_bits for a shared buffer"
                )
            if self.capacity_bits is not None:
                raise ValueError("give capacity_bits or partition_bits, not both")
        if self.memory == "dram" and (self.capacity_bits or self.partition_bits):
            raise ValueError("a dram level is unbounded; remove capacity_bits/partition_bits")
        for field in ("read_pj_per_bit", "write_pj_per_bit"):
            value = getattr(self, field)
            if isinstance(value, dict):
                missing = set(self.holds) - set(value)
                if missing:
                    raise ValueError(f"{field} lacks an energy for {sorted(missing)}")
        return self

    def capacity_of(self, operand: Operand) -> int | None:
        """Bits available to `operand` (shared capacity when not partitioned)."""
        if self.partition_bits is not None:
            return self.partition_bits[operand]
        return self.capacity_bits


class MacUnit(_Frozen):
    """The arithmetic: one MAC per lane per cycle.

    `format=None` computes in the layer's own operand formats (the wider of weights and
    inputs); a name fixes the hardware format. `energy_pj` overrides the per-MAC energy from
    `picojoule.energy`. Partial sums travel at `accumulator_bits`.
    """

    format: str | None = None
    accumulator_bits: Annotated[int, limited("accumulator_bits")] = 32
    energy_pj: Annotated[float, limited("energy_pj")] | None = None
    # True: each lane latches its last weight and input and keeps its partial sum, so an operand
    # is fetched again (a psum written back) only when a temporal loop that indexes it advances:
    # the innermost loops that do not index an operand reuse it at no memory access (operand
    # registers at the multiplier's inputs, free). False (Timeloop's convention, and ZigZag's:
    # its twin agrees to 2 % without the latch, BENCHMARKS.md): every lane reads every operand
    # from its innermost level each cycle unless a level below holds it.
    latch_operands: bool = False


def _n_m(text: str) -> tuple[int, int]:
    """(N, M) of an 'N:M' pattern; ValueError for anything else."""
    nm = n_of_m(text)
    if nm is None:
        raise ValueError(f"{text!r} is not an N:M pattern")
    return nm


class SparseSupport(_Frozen):
    """What the hardware does with zeros (layer densities come from the workload).

    `gate_zero_macs`: a MAC with a zero operand spends no energy (NVDLA's zero gating); cycles
    are unchanged. `gate_zero_inputs`: only a zero *input* activation gates the MAC (Eyeriss
    v1's data gating, Chen et al., JSSC 2017, section V-B); memory accesses are still counted.
    `compressed`: weights and inputs are stored and moved as non-zeros plus
    `metadata_bits_per_element` (1.0 = a bitmask), at every level.
    `structured`: "N:M", a sparse tensor core (NVIDIA A100 whitepaper, 2020, "Fine-Grained
    Structured Sparsity"): weights pruned to at most N non-zeros in every M along the reduction
    run in N/M of the cycles and MAC energy, stored as the N values per group plus a
    ceil(log2 M)-bit index each. Other weights, and unstructured sparsity, run dense.
    `rlc_activations`: input activations read from the outermost level (DRAM) and final
    outputs written to it move run-length coded, as Eyeriss does (JSSC 2017, Sec. V-A; the
    layer's `input_density` / `output_density`; `picojoule.arch.rlc`); on-chip levels hold
    them raw.
    """

    gate_zero_macs: bool = False
    gate_zero_inputs: bool = False
    compressed: bool = False
    metadata_bits_per_element: Annotated[float, limited("metadata_bits_per_element")] = 1.0
    structured: str | None = None
    rlc_activations: bool = False

    @model_validator(mode="after")
    def _one_activation_coding(self) -> SparseSupport:
        if self.rlc_activations and self.compressed:
            raise ValueError(
                "rlc_activations and compressed both code the activations; pick one "
                "(compressed: at every level; rlc_activations: to and from DRAM only)"
            )
        return self

    @field_validator("structured")
    @classmethod
    def _n_of_m(cls, v: str | None) -> str | None:
        if v is not None:
            n, m = _n_m(v)
            if not 0 < n < m:
                raise ValueError(f"structured {v!r}: need 0 < N < M in 'N:M', e.g. '2:4'")
        return v

    def structured_fraction(self, weight_pattern: str) -> float | None:
        """N/M when weights pruned to `weight_pattern` run on this N:M engine: a pattern with
        the same M and at most N non-zeros fits (1:4 runs as 2:4). None: they run dense."""
        if self.structured is None or not weight_pattern:
            return None
        n, m = _n_m(self.structured)
        layer_nm = n_of_m(weight_pattern)  # None: unstructured, block, channel
        return n / m if layer_nm is not None and layer_nm[1] == m and layer_nm[0] <= n else None

    def structured_metadata_bits(self) -> float:
        """Index bits per dense weight position of the N:M compressed layout."""
        n, m = _n_m(self.structured or "1:2")
        return n * math.ceil(math.log2(m)) / m

    def mac_density(self, weight_density: float, input_density: float) -> float:
        """Fraction of a layer's MACs that spend energy."""
        if self.gate_zero_macs:
            return weight_density * input_density
        return input_density if self.gate_zero_inputs else 1.0


class Arch(_Frozen):
    """A whole accelerator: levels outermost first, the MAC unit, technology and clock."""

    name: str = Field(min_length=1)
    levels: tuple[MemoryLevel, ...] = Field(min_length=1)
    mac: MacUnit = MacUnit()
    sparse: SparseSupport = SparseSupport()
    node_nm: Annotated[float, limited("node_nm")] = 45.0
    clock_ghz: Annotated[float, limited("clock_ghz")] = 1.0
    description: str = ""
    # False: an input's zero-padding halo is generated on chip and never read from the
    # outermost level (ZigZag counts the unpadded input); True: the padded copy is stored
    # there and read like data.
    padding_reads: bool = False

    @model_validator(mode="after")
    def _chain(self) -> Arch:
        outer = self.levels[0]
        missing = [op for op in OPERANDS if op not in outer.holds]
        if missing:
            raise ValueError(
                f"the outermost level {outer.name!r} must hold every operand (it is where "
                f"data starts and ends); add {missing} to its holds"
            )
        if outer.bypassable:
            raise ValueError(
                f"the outermost level {outer.name!r} cannot be bypassed; remove its bypassable"
            )
        if outer.capacity_bits is not None or outer.partition_bits is not None:
            raise ValueError(
                f"the outermost level {outer.name!r} must be unbounded; remove its capacity"
            )
        names = [level.name for level in self.levels]
        if len(set(names)) != len(names):
            raise ValueError(f"level names must be unique, got {names}")
        if self.lanes > MAX_LANES:
            raise ValueError(
                f"the fanouts multiply to {self.lanes:,} MAC lanes, more than {MAX_LANES:,} "
                "(4,000x a wafer-scale chip); check the mesh_x/mesh_y values"
            )
        return self

    @property
    def lanes(self) -> int:
        """MAC lanes in the whole design (product of every fanout)."""
        n = 1
        for level in self.levels:
            if level.fanout is not None:
                n *= level.fanout.size
        return n

    def level_index(self, name: str) -> int:
        for i, level in enumerate(self.levels):
            if level.name == name:
                return i
        raise KeyError(name)

    def holders(self, operand: Operand) -> list[int]:
        """Indices of the levels holding `operand`, outermost first."""
        return [i for i, level in enumerate(self.levels) if operand in level.holds]
