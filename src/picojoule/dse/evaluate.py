"""One design on one workload: build the Arch, map every layer, add up energy, time and area.

Public: `LayerMetrics`, `DesignMetrics`, `evaluate_design`, `design_area`, `DesignEvaluator`,
`load_workload`, `workload_key`, `model_version`.

`evaluate_design(design, workload)` builds the preset's Arch from the design's parameters
(`dse.params`), sets the workload's formats and weight density, and maps every layer with
`picojoule.hw.map_workload` (each distinct layer shape searched once; deterministic for a
seed, because no time budget is given), which sums over layers (x `repeat`) run one after
another:

    energy_pj   = sum(layer energy)          latency_s = sum(layer cycles) / clock
    ops         = 2 x dense MACs             TOPS/W    = ops / energy_pj   (1 op/pJ = 1 TOPS/W)
    power_w     = energy / latency           TOPS/mm^2 = ops / latency_s / 1e12 / area_mm2

`onchip_*` repeat TOPS/W and the math share without the DRAM levels' energy: accelerator
papers (MAGNet, Simba) quote chip efficiency that way, and DRAM energy depends on the memory
system more than on the accelerator. Sparse designs are credited with dense-equivalent ops,
as GPU datasheets count sparse TOPS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from picojoule.dse.chip import ChipArea, chip_area
from picojoule.dse.params import apply_to_workload, build_arch
from picojoule.dse.space import MapperSettings, Scalar
from picojoule.errors import PicojouleError
from picojoule.workload.layer import Workload

__all__ = [
    "LayerMetrics",
    "DesignMetrics",
    "evaluate_design",
    "design_area",
    "DesignEvaluator",
    "load_workload",
    "workload_key",
    "model_version",
]


@dataclass(frozen=True, kw_only=True)
class LayerMetrics:
    """One layer's share (already multiplied by its `repeat`)."""

    name: str
    repeat: int
    macs: int
    energy_pj: float
    math_energy_pj: float
    cycles: float
    utilization: float
    bound_by: str


@dataclass(frozen=True, kw_only=True)
class DesignMetrics:
    """Per-inference totals of one design on one workload (units in the names)."""

    energy_pj: float
    latency_s: float
    cycles: float
    area_mm2: float
    power_w: float
    tops_per_w: float
    tops_per_mm2: float
    macs: int
    utilization: float  # MACs / (cycles x lanes)
    math_energy_fraction: float
    onchip_energy_pj: float  # without DRAM levels
    onchip_tops_per_w: float
    onchip_math_energy_fraction: float
    sol_energy_pj: float  # speed of light: every MAC once, compulsory DRAM traffic only
    sol_latency_s: float
    energy_by_component_pj: dict[str, float]
    area_by_component_mm2: dict[str, float]
    layers: tuple[LayerMetrics, ...]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(layer) for layer in self.layers]
        return d


def _formats(workload: Workload, design: Mapping[str, Scalar]) -> tuple[str, str]:
    first = workload.layers[0]
    return (
        str(design.get("weight_format", first.weight_format)),
        str(design.get("activation_format", first.input_format)),
    )


def design_area(design: Mapping[str, Scalar], workload: Workload, *, preset: str) -> ChipArea:
    """Chip area of a design; needs no mapping (microseconds), so budgets are checked first."""
    arch = build_arch(preset, design)
    weight_format, input_format = _formats(workload, design)
    return chip_area(arch, weight_format=weight_format, input_format=input_format)


def evaluate_design(
    design: Mapping[str, Scalar],
    workload: Workload,
    *,
    preset: str = "magnet",
    mapper: MapperSettings | None = None,
) -> DesignMetrics:
    """Map every layer of `workload` on the design and total the costs (module docstring).

    Raises a `PicojouleError` when the design cannot run the workload (e.g. a buffer too
    small for one element of some operand).
    """
    from picojoule.hw import map_workload

    m = mapper or MapperSettings()
    arch = build_arch(preset, design)
    runs = apply_to_workload(workload, design)
    area = design_area(design, workload, preset=preset)
    try:
        cost = map_workload(
            runs, arch, m.objective, seed=m.seed, samples=m.samples, starts=m.starts
        )
    except PicojouleError as e:
        raise type(e)(f"{arch.name} cannot run {workload.name}: {e}") from None
    components: dict[str, float] = {"math": cost.mac_energy_pj}
    for level, row in cost.energy_by_level_pj.items():
        components[level] = sum(row.values())
    if cost.network_energy_pj:
        components["network"] = cost.network_energy_pj
    layers = tuple(
        LayerMetrics(
            name=r.layer.name,
            repeat=r.layer.repeat,
            macs=r.layer.macs * r.layer.repeat,
            energy_pj=r.energy_pj,
            math_energy_pj=r.result.cost.mac_energy_pj * r.layer.repeat,
            cycles=r.cycles,
            utilization=r.result.cost.utilization,
            bound_by=r.result.cost.bound_by,
        )
        for r in cost.layers
    )
    energy, latency, macs = cost.energy_pj, cost.latency_s, cost.macs
    ops = 2.0 * macs
    dram = {level.name for level in arch.levels if level.memory == "dram"}
    onchip = energy - sum(components.get(name, 0.0) for name in dram)
    return DesignMetrics(
        energy_pj=energy,
        latency_s=latency,
        cycles=cost.cycles,
        area_mm2=area.total_mm2,
        power_w=energy * 1e-12 / latency,
        tops_per_w=ops / energy,
        tops_per_mm2=ops / latency / 1e12 / area.total_mm2,
        macs=macs,
        utilization=cost.utilization,
        math_energy_fraction=components["math"] / energy,
        onchip_energy_pj=onchip,
        onchip_tops_per_w=ops / onchip,
        onchip_math_energy_fraction=components["math"] / onchip,
        sol_energy_pj=cost.sol_energy_pj,
        sol_latency_s=cost.sol_cycles / (arch.clock_ghz * 1e9),
        energy_by_component_pj=components,
        area_by_component_mm2=area.by_component_mm2(),
        layers=layers,
    )


def load_workload(name: str, batch: int = 1, *, data: str | None = None) -> Workload:
    """A space's `workload:`: a built-in workload (`picojoule.workload` shape-only networks)
    by name, or a model spec (`picojoule.models.spec`: digits, minilm, smollm2, st:DIR,
    hf:DIR, pkg.mod:build with `data`) run once on its example input at `batch`."""
    from picojoule.models.spec import resolve

    return resolve(name, data, workloads=True, needs_metric=False).workload(batch)


def workload_key(workload: Workload) -> str:
    """Hash of everything the cost model reads from the workload."""
    text = repr(tuple((layer.name, layer.repeat, layer.shape_key()) for layer in workload.layers))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# Code and data that decide a design's numbers; any edit changes the model version, so cached
# results are never mixed with numbers from another version of the model.
_MODEL_PACKAGES = (
    "picojoule.workload",
    "picojoule.arch",
    "picojoule.mapping",
    "picojoule.energy",
    "picojoule.formats",
)
_MODEL_FILES = (
    "picojoule.sparsity.patterns",  # sparsity: only the pattern -> density rule
    *(f"picojoule.dse.{m}" for m in ("area", "chip", "params", "evaluate")),
)


def model_version() -> str:
    """`<picojoule version>+<hash of the cost model's code and data>`."""
    import picojoule
    from picojoule.versioning import code_digest

    return f"{picojoule.__version__}+{code_digest((*_MODEL_PACKAGES, *_MODEL_FILES))}"


@dataclass(frozen=True, kw_only=True)
class DesignEvaluator:
    """The runner's job: a picklable function from a design dict to `(metrics, error)`."""

    preset: str
    workload: Workload
    mapper: MapperSettings = MapperSettings()

    @property
    def workload_name(self) -> str:
        return self.workload.name

    @property
    def workload_key(self) -> str:
        return workload_key(self.workload)

    @property
    def model_version(self) -> str:
        return model_version()

    def __call__(self, design: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """Metrics, or the reason this design cannot run the workload. Only `PicojouleError`s
        (a design that does not fit) become errors; anything else is a bug and propagates."""
        try:
            metrics = evaluate_design(design, self.workload, preset=self.preset, mapper=self.mapper)
        except PicojouleError as e:
            return None, str(e)
        return metrics.as_dict(), None

    def area_mm2(self, design: dict[str, Any]) -> float:
        return design_area(design, self.workload, preset=self.preset).total_mm2
