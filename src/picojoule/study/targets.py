"""Where a study's recipes are costed: an accelerator preset (mapped layer by layer) or a GPU
(speed-of-light roofline).

Each transformed layer becomes a `picojoule.workload.Layer` carrying the recipe's operand
formats and weight density, and `picojoule.mapping.map_workload` searches its mapping on the
preset (`picojoule.arch.presets`). Energy and latency are the mapper's; the speed-of-light
bound is the mapper's too (every MAC once, compulsory DRAM traffic once).

Winograd layers are mapped as their direct loop nest, then re-billed: the math energy scales by
multiplies / MACs, and the transform additions are charged at the input format's add energy
(`picojoule.energy.op_energy_pj`). Transform-domain data expansion is not re-mapped.

On a GPU (`h100`, `a100`, ... from `picojoule.energy.gpus()`), latency is the roofline bound
(`picojoule.energy.speed_of_light`: max of FLOPs / peak and bytes / bandwidth per layer) and the
energy estimate is board power (TDP) x that time - what the chip draws if it ran every layer at
its roofline; the speed-of-light energy is the roofline's (MAC energy + compulsory DRAM
traffic), so "vs SOL" shows what a real GPU spends on everything else.
"""

from __future__ import annotations

from typing import Any

from picojoule.errors import ConfigError, did_you_mean
from picojoule.study.cost import LayerCount

__all__ = ["check_target", "bill", "targets"]

_SEARCH = {"samples": 300, "starts": 4}  # per distinct layer; the study maps many recipes


def accelerators() -> list[str]:
    from picojoule.arch.presets import PRESETS

    return list(PRESETS)


def gpu_names() -> list[str]:
    from picojoule.energy import gpus

    return [g.name for g in gpus()]


def targets() -> list[str]:
    return accelerators() + gpu_names()


def _is_arch_file(name: str) -> bool:
    from pathlib import Path

    return name.endswith((".yaml", ".yml")) and Path(name).is_file()


def target_id(name: str) -> str:
    """What the result cache keys on: the name, plus a content digest for an arch YAML file."""
    if not _is_arch_file(name):
        return name
    import hashlib
    from pathlib import Path

    return f"{name}@{hashlib.sha256(Path(name).read_bytes()).hexdigest()[:12]}"


def target_label(name: str) -> str:
    """How tables name a target: an accelerator YAML file by its spec's `name`, anything else
    as given."""
    if not _is_arch_file(name):
        return name
    from picojoule.arch import load_arch

    return load_arch(name).name


def check_target(name: str) -> None:
    """Accept a preset, a GPU, or an accelerator YAML file (validated here, before any work)."""
    if _is_arch_file(name):
        from picojoule.arch import load_arch

        load_arch(name)
        return
    names = targets()
    if name not in names:
        raise ConfigError(
            f"unknown target {name!r}; accelerator presets: {', '.join(accelerators())}; "
            f"GPUs: {', '.join(gpu_names())}; or an accelerator YAML file "
            f"(docs/accelerator.md){did_you_mean(name, names)}"
        )


def _add_pj(fmt: str) -> float:
    from picojoule.energy.ops import op_energy_pj
    from picojoule.formats import ScaledFormat, get

    f = get(fmt)
    el = f.element if isinstance(f, ScaledFormat) else f
    return op_energy_pj("add", el)


def _workload(counts: list[LayerCount]):
    from picojoule.workload.layer import Workload

    return Workload(name="study", layers=tuple(c.layer for c in counts))


def bill(counts: list[LayerCount], target: str, measured: dict | None = None) -> dict[str, Any]:
    """Energy (pJ), latency (s) and the speed-of-light bound of one inference on `target`."""
    check_target(target)
    if target in gpu_names():
        return _gpu_bill(counts, target, measured)
    if measured:
        raise ConfigError(f"--measured holds GPU measurements; target {target} is not a GPU")
    return _accelerator_bill(counts, target)


# roofline compute key -> the `picojoule bench gpu` GEMM row that measured it
_MEASURED_ROW = {"fp32": "fp32", "tf32": "tf32", "fp16": "fp16", "bf16": "bf16",
                 "e4m3": "e4m3 tensor", "e5m2": "e5m2xe4m3 tensor", "int8": "int8"}  # fmt: skip


def load_measured(path, target: str) -> dict[str, Any]:
    """Board pJ/op per GEMM format from a `picojoule bench gpu` JSON taken on `target`.

    The largest measured size of each format is used (closest to steady-state power)."""
    import hashlib
    import json
    from pathlib import Path

    p = Path(path)
    try:
        raw = p.read_bytes()
        doc = json.loads(raw)
        device, rows = doc["peaks"]["name"], doc["gemm"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"--measured {p}: not a `picojoule bench gpu` result ({type(e).__name__}); "
            "pass the gpu.json that command wrote"
        ) from None
    if device != target:
        raise ConfigError(f"--measured {p} was taken on {device}, not on the target {target}")
    best: dict[str, dict] = {}
    for r in rows:
        pj = r.get("energy_pj_per_op")
        if pj and (r["fmt"] not in best or r["m"] > best[r["fmt"]]["m"]):
            best[r["fmt"]] = r
    return {
        "digest": hashlib.sha256(raw).hexdigest()[:12],
        "device": doc["device"].get("name", device),
        "pj_per_op": {k: v["energy_pj_per_op"] for k, v in best.items()},
        "size": {k: v["m"] for k, v in best.items()},
    }


def _measured_pj(measured: dict, key: str, sparse: bool) -> float | None:
    row = "fp16 2:4" if sparse and key == "fp16" else _MEASURED_ROW.get(key)
    return measured["pj_per_op"].get(row) if row else None


def _gpu_bill(counts: list[LayerCount], target: str, measured: dict | None) -> dict[str, Any]:
    from picojoule.energy import gpu, roofline

    spec = gpu(target)
    rl = roofline(_workload(counts), spec)
    rows = []
    extra_s = 0.0
    for c, b in zip(counts, rl.layers, strict=True):
        # online rotations run on the CUDA cores (fp32 peak) next to the GEMM, not in it
        t_rot = max(0, c.transform_adds + 2 * (c.mults - c.macs)) / spec.peak("fp32")
        extra_s += t_rot
        e = spec.tdp_w * (b.min_time_s + t_rot) * 1e12
        rows.append({"name": c.name, "energy_pj": e, "math_pj": b.math_energy_pj,
                     "memory_pj": b.memory_energy_pj, "cycles": None,
                     "sol_energy_pj": b.min_energy_pj, "bound": b.bound,
                     "compute_key": b.compute_key + (" 2:4" if b.sparse else "")})  # fmt: skip
    energy = sum(r["energy_pj"] for r in rows)
    sol = rl.min_energy_pj
    extra: dict[str, Any] = {}
    if measured:
        total, missing = 0.0, set()
        for c, b, row in zip(counts, rl.layers, rows, strict=True):
            pj = _measured_pj(measured, b.compute_key, b.sparse)
            if pj is None:
                missing.add(b.compute_key)
                continue
            row["measured_energy_pj"] = 2 * c.mults * pj
            total += row["measured_energy_pj"]
        extra = {
            "measured_energy_pj": total if not missing else None,
            "measured_note": (
                f"board power x time of large GEMMs measured on {measured['device']} "
                "(picojoule bench gpu), applied per op"
                + (f"; no measurement for {', '.join(sorted(missing))}" if missing else "")
            ),
        }
    return {
        **extra,
        "energy_pj": energy,
        "sol_energy_pj": sol,
        "sol_ratio": energy / sol if sol else None,
        "latency_s": rl.min_time_s + extra_s,
        "utilization": None,
        "layers_energy": rows,
        "assumptions": [
            f"target {spec.title}: datasheet peaks and {spec.bandwidth_gbs:g} GB/s, "
            f"TDP {spec.tdp_w:g} W ({spec.citation})",
            "latency: roofline bound per layer, layers in sequence "
            "(picojoule.energy.speed_of_light);"
            " batch 1 leaves a GPU far below its peaks, so real latency is higher",
            "energy estimate: TDP x roofline time; speed of light: MAC energy at the GPU's "
            "node + compulsory DRAM traffic (no instruction overhead, no on-chip traffic)",
            "2:4 sparse peak used where weights are pruned 2:4 (or 1:4) and the GPU has one; "
            "unstructured masks run dense",
        ],
    }


def _accelerator_bill(counts: list[LayerCount], target: str) -> dict[str, Any]:
    from picojoule.arch import load_arch
    from picojoule.mapping.network import map_workload

    arch = load_arch(target)  # a preset name or a YAML file
    cost = map_workload(_workload(counts), arch, "energy", **_SEARCH)
    rows, total, sol = [], 0.0, 0.0
    for c, r in zip(counts, cost.layers, strict=True):
        e = r.energy_pj
        math_pj = r.result.cost.mac_energy_pj
        if c.mults != c.macs or c.transform_adds:  # Winograd, online rotations: extra math
            e += math_pj * (c.mults / c.macs - 1.0) + c.transform_adds * _add_pj(
                c.layer.input_format
            )
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
            "batch 1: one inference = one example input; operand densities measured on it "
            "(weights: sparsity masks; inputs: zeros such as ReLU outputs) - the preset decides "
            "whether zeros save energy (gating), bytes (compression), or math and cycles (an "
            "N:M sparse engine running N:M-pruned weights)",
        ],
    }
