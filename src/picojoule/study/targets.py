"""Where a study's recipes are costed: an accelerator preset, mapped layer by layer.

Each transformed layer becomes a `picojoule.workload.Layer` carrying the recipe's operand
formats and weight density, and `picojoule.mapping.map_workload` searches its mapping on the
preset (`picojoule.arch.presets`). Energy and latency are the mapper's; the speed-of-light
bound is the mapper's too (every MAC once, compulsory DRAM traffic once).

Winograd layers are mapped as their direct loop nest, then re-billed: the math energy scales by
multiplies / MACs, and the transform additions are charged at the input format's add energy
(`picojoule.energy.op_energy_pj`). Transform-domain data expansion is not re-mapped.
"""

from __future__ import annotations

from typing import Any

from picojoule.errors import ConfigError, nearest
from picojoule.study.cost import LayerCount

__all__ = ["check_target", "bill", "targets"]

_SEARCH = {"samples": 300, "starts": 4}  # per distinct layer; the study maps many recipes


def targets() -> list[str]:
    from picojoule.arch.presets import PRESETS

    return list(PRESETS)


def check_target(name: str) -> None:
    names = targets()
    if name not in names:
        raise ConfigError(
            f"unknown target {name!r}; accelerator presets: {', '.join(names)} "
            f"(did you mean {nearest(name, names)}?)"
        )


def _add_pj(fmt: str) -> float:
    from picojoule.energy.ops import op_energy_pj
    from picojoule.formats import ScaledFormat, get

    f = get(fmt)
    el = f.element if isinstance(f, ScaledFormat) else f
    return op_energy_pj("add", el)


def bill(counts: list[LayerCount], target: str) -> dict[str, Any]:
    from picojoule.arch.presets import preset
    from picojoule.mapping.network import map_workload
    from picojoule.workload.layer import Layer, Workload

    check_target(target)
    arch = preset(target)
    layers = tuple(
        Layer(
            name=c.name,
            kind="linear" if c.kind == "Linear" else "conv",
            weight_format=c.weight_format,
            input_format=c.input_format,
            output_format=c.input_format,
            weight_density=c.weight_density,
            **c.dims,
        )
        for c in counts
    )
    cost = map_workload(Workload(name="study", layers=layers), arch, "energy", **_SEARCH)
    rows, total, sol = [], 0.0, 0.0
    for c, r in zip(counts, cost.layers, strict=True):
        e = r.energy_pj
        math_pj = r.result.cost.mac_energy_pj
        if c.mults != c.macs:  # Winograd: fewer multiplies, plus transform additions
            e += math_pj * (c.mults / c.macs - 1.0) + c.transform_adds * _add_pj(c.input_format)
            math_pj *= c.mults / c.macs
        total += e
        sol += r.bound.energy_pj
        rows.append(
            {
                "name": c.name,
                "energy_pj": e,
                "math_pj": math_pj,
                "memory_pj": e - math_pj,
                "cycles": r.cycles,
                "sol_energy_pj": r.bound.energy_pj,
                "mac_format": r.mac_format,
            }
        )
    latency_s = cost.latency_s
    return {
        "energy_pj": total,
        "sol_energy_pj": sol,
        "sol_ratio": total / sol if sol else None,
        "latency_s": latency_s,
        "utilization": cost.utilization,
        "layers_energy": rows,
        "assumptions": [
            f"target {arch.name}: {arch.lanes} MAC lanes at {arch.clock_ghz} GHz; energies "
            "from picojoule.energy tables (Horowitz ISSCC 2014 at 45 nm, scaled per "
            "docs/energy.md) through the arch preset (docs/accelerator.md)",
            "mapping: picojoule.mapping.search, objective energy, "
            f"{_SEARCH['samples']} samples + {_SEARCH['starts']} descents per distinct layer",
            "speed of light: every MAC once plus compulsory DRAM traffic (weights, inputs and "
            "outputs each moved once)",
            "Winograd layers: direct loop nest mapped, math re-billed by multiplies/MACs plus "
            "transform additions at the input format's add energy",
            "batch 1: one inference = one example input",
        ],
    }
