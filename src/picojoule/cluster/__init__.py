"""GPU clusters: interconnects, collective costs, and a parallel training/serving planner.

Public API (units: s, B/s, bytes, pJ, W; see docs/cluster.md):

- links: `Link`, `links()`, `link(name)` - PCIe, NVLink P100..B200, InfiniBand, with sources;
- topology: `NodeSpec`, `node(name)`, `system(node, gpu=None)` -> `System` (tiers, groups);
- collectives: `coefficients(op, algorithm, nbytes, n)`, `collective_time_s`, `cost(op, nbytes,
  group)`, `bus_factor`, `bus_bandwidth` (nccl-tests definitions);
- models: `TransformerConfig`, `load_model(preset | config.json | dict)`, `model_presets()`;
- plan: `ParallelPlan`, `plan_training(...)`, `plan_serving(...)`, `search_plans(...)`.

Submodules import lazily: `import picojoule.cluster` loads none of them.
"""

from __future__ import annotations

from picojoule._lazy import lazy_exports

_EXPORTS = {
    "Link": "links",
    "links": "links",
    "link": "links",
    "NodeSpec": "topology",
    "node": "topology",
    "nodes": "topology",
    "system": "topology",
    "System": "topology",
    "coefficients": "collectives",
    "collective_time_s": "collectives",
    "cost": "collectives",
    "bus_factor": "collectives",
    "bus_bandwidth": "collectives",
    "TransformerConfig": "models",
    "load_model": "models",
    "model_presets": "models",
    "ParallelPlan": "plan",
    "plan_training": "plan",
    "plan_serving": "plan",
    "search_plans": "plan",
    "sweep_plans": "sweep",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
