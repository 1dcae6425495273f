"""Node topologies (DGX A100, DGX H100, an NVL72-style rack, ...) and the communication tiers a
group of ranks sees on them.

Public: `NodeSpec`, `nodes(override=None)`, `node(name, override=None)`, `System`,
`system(node, gpu=None, override=None)`, `Tier`, `Group`.

A `System` is a node preset resolved against the GPU table (`picojoule.energy.gpu_specs`) and the
link table (`links.py`). It hands out `Group`s: `n_per_node` ranks on each of `nodes` nodes,
seeing two tiers:

- intra: the scale-up link (NVLink/NVSwitch or PCIe) at its achievable per-GPU bandwidth;
- inter: the scale-out NICs. Each rank gets its share of the node's NICs: `concurrent` GPUs of
  the node talk at once (all of them when every data-parallel group reduces in lockstep), so a
  rank gets min(1, nics / concurrent) of one NIC (rail-optimized wiring, a GPU to its NIC).

Energy per bit of a tier = hops x the link's pJ/bit + the switch crossing (presets/nodes.yaml).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from picojoule.cluster.links import Link, Source, link, load_rows
from picojoule.energy.gpu_specs import GpuSpec
from picojoule.errors import ConfigError, suggest

__all__ = ["NodeSpec", "nodes", "node", "System", "system", "Tier", "Group"]

# Derived in presets/nodes.yaml from arXiv 2604.04745 (execution-idle: 10.7% of energy in 19.7%
# of in-execution time): a waiting GPU draws 0.49 of its busy power.
WAIT_POWER_FRACTION = 0.49


class NodeSpec(BaseModel):
    """One node preset (see the header of presets/nodes.yaml for every field)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: str
    title: str
    gpu: str
    gpus_per_node: int = Field(ge=1, le=1024)
    gpu_memory_gb: float | None = Field(default=None, gt=0)
    gpu_bandwidth_gbs: float | None = Field(default=None, gt=0)
    scale_up: str
    scale_up_hops: int = Field(default=2, ge=1, le=4)
    switch: str | None = None
    switch_pj_per_bit: float = Field(default=0.0, ge=0)
    nvls: bool = False
    nvls_efficiency: float = Field(default=0.0, ge=0, le=1)
    nvls_latency_us: float = Field(default=23.0, ge=0)
    scale_out: str
    nics_per_node: int = Field(ge=0, le=1024)
    scale_out_hops: int = Field(default=2, ge=1, le=8)
    wait_power_fraction: float = Field(default=WAIT_POWER_FRACTION, ge=0, le=1)
    busy_power_fraction: float = Field(default=1.0, gt=0, le=1.5)
    source: Source
    citation: str = Field(min_length=1)
    note: str | None = None

    @model_validator(mode="after")
    def _nvls_needs_efficiency(self) -> NodeSpec:
        if self.nvls and self.nvls_efficiency <= 0:
            raise ValueError("nvls: true needs nvls_efficiency > 0 (NCCL uses 0.85 on Hopper)")
        return self


def nodes(override: str | Path | None = None) -> dict[str, NodeSpec]:
    """Every node preset by name, updated by the `nodes:` rows of `override`."""
    return load_rows("nodes", NodeSpec, override)


def node(name: str, override: str | Path | None = None) -> NodeSpec:
    """The node preset called `name` (dgx-a100, dgx-h100, nvl72, ...)."""
    table = nodes(override)
    key = name.strip().lower()
    if key not in table:
        raise ConfigError(f"unknown node {name!r}{suggest(key, table)}")
    return table[key]


@dataclass(frozen=True, kw_only=True)
class Tier:
    """One level of the network as one rank sees it."""

    name: str
    kind: str  # nvlink | pci | net: NCCL's latency class
    bandwidth_bytes_per_s: float  # achievable, per rank, per direction
    line_bytes_per_s: float  # the same at line rate
    latency_s: float  # alpha: one ring step, Simple protocol
    energy_pj_per_bit: float  # one bit from a rank to another rank across this tier
    nvls_efficiency: float = 0.0  # > 0: the switch reduces (NVLink SHARP)
    nvls_latency_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Group:
    """`n_per_node` ranks on each of `nodes` nodes; a tier is None where it is not crossed."""

    n_per_node: int
    nodes: int
    intra: Tier | None
    inter: Tier | None

    @property
    def n(self) -> int:
        return self.n_per_node * self.nodes


@dataclass(frozen=True, kw_only=True)
class System:
    """A node preset with its GPU (overrides applied) and links resolved."""

    node: NodeSpec
    gpu: GpuSpec
    scale_up: Link
    scale_out: Link

    @property
    def gpus_per_node(self) -> int:
        return self.node.gpus_per_node

    @property
    def busy_power_w(self) -> float:
        return self.gpu.tdp_w * self.node.busy_power_fraction

    @property
    def wait_power_w(self) -> float:
        return self.busy_power_w * self.node.wait_power_fraction

    def intra_tier(self) -> Tier:
        up, nd = self.scale_up, self.node
        return Tier(
            name=f"{up.name} ({'via ' + nd.switch if nd.switch else 'direct'})",
            kind=up.kind,
            bandwidth_bytes_per_s=up.achievable_bytes_per_s,
            line_bytes_per_s=up.bandwidth_bytes_per_s,
            latency_s=up.latency_us * 1e-6,
            energy_pj_per_bit=nd.scale_up_hops * up.energy_pj_per_bit + nd.switch_pj_per_bit,
            nvls_efficiency=nd.nvls_efficiency if nd.nvls else 0.0,
            nvls_latency_s=nd.nvls_latency_us * 1e-6,
        )

    def inter_tier(self, concurrent: int | None = None) -> Tier:
        """Scale-out as one rank sees it while `concurrent` GPUs per node (default: all) talk."""
        out, nd = self.scale_out, self.node
        if nd.nics_per_node == 0:
            raise ConfigError(f"{nd.name} has no NICs: it cannot reach another node")
        active = concurrent or nd.gpus_per_node
        share = min(1.0, nd.nics_per_node / active)
        return Tier(
            name=f"{out.name} x{nd.nics_per_node}/node",
            kind=out.kind,
            bandwidth_bytes_per_s=out.achievable_bytes_per_s * share,
            line_bytes_per_s=out.bandwidth_bytes_per_s * share,
            latency_s=out.latency_us * 1e-6,
            energy_pj_per_bit=nd.scale_out_hops * out.energy_pj_per_bit,
        )

    def group(self, n_per_node: int, nodes: int = 1, *, concurrent: int | None = None) -> Group:
        """A group of `n_per_node` x `nodes` ranks (see `inter_tier` for `concurrent`)."""
        if n_per_node < 1 or nodes < 1:
            raise ConfigError(f"a group needs >= 1 rank per node, got {n_per_node} x {nodes}")
        if n_per_node > self.gpus_per_node:
            raise ConfigError(
                f"{n_per_node} ranks per node: {self.node.name} has {self.gpus_per_node} GPUs"
            )
        return Group(
            n_per_node=n_per_node,
            nodes=nodes,
            intra=self.intra_tier() if n_per_node > 1 else None,
            inter=self.inter_tier(concurrent) if nodes > 1 else None,
        )


def system(node_name: str, gpu: str | None = None, override: str | Path | None = None) -> System:
    """Resolve a node preset: its GPU (or `gpu`, replacing the node's own GPU variant) and links."""
    from picojoule.energy.gpu_specs import gpu as get_gpu

    nd = node(node_name, override)
    spec = get_gpu(gpu or nd.gpu)
    if gpu is None or spec.name == nd.gpu:  # the node's own variant: apply its overrides
        changes = {}
        if nd.gpu_memory_gb is not None:
            changes["memory_gb"] = nd.gpu_memory_gb
        if nd.gpu_bandwidth_gbs is not None:
            changes["bandwidth_gbs"] = nd.gpu_bandwidth_gbs
        spec = dataclasses.replace(spec, **changes)
    return System(
        node=nd,
        gpu=spec,
        scale_up=link(nd.scale_up, override),
        scale_out=link(nd.scale_out, override),
    )
