"""`picojoule.hw`: accelerator cost modelling in one namespace.

Workloads (`Layer`, `Workload`, `builtin`, `from_model`), architectures (`Arch` and its
parts, `load_arch`, `presets`), mappings and their cost (`Mapping`, `evaluate`, `Cost`,
`evaluate_batch`), the exact reference simulator (`simulate`), the mapper (`search`,
`exhaustive`, `SearchResult`) and whole-network mapping (`map_workload`, `WorkloadCost`,
`speed_of_light`).
See docs/accelerator.md.
"""

from picojoule.arch import (
    Arch,
    ArchError,
    Fanout,
    MacUnit,
    MemoryLevel,
    SparseSupport,
    arch_from_dict,
    arch_to_yaml,
    load_arch,
    presets,
    save_arch,
)
from picojoule.arch.energy import EnergyTable, resolve_energy
from picojoule.mapping import (
    BatchCost,
    Cost,
    LayerResult,
    Mapping,
    MappingBatch,
    MappingError,
    NoMappingError,
    SearchResult,
    SpeedOfLight,
    WorkloadCost,
    check_mapping,
    evaluate,
    evaluate_batch,
    exhaustive,
    map_workload,
    search,
    simulate,
)
from picojoule.mapping.network import speed_of_light
from picojoule.workload import DIMS, OPERANDS, Layer, Workload, apply_recipe, builtin, from_model

__all__ = [
    "Arch",
    "ArchError",
    "Fanout",
    "MacUnit",
    "MemoryLevel",
    "SparseSupport",
    "arch_from_dict",
    "arch_to_yaml",
    "load_arch",
    "save_arch",
    "presets",
    "EnergyTable",
    "resolve_energy",
    "BatchCost",
    "Cost",
    "LayerResult",
    "Mapping",
    "MappingBatch",
    "MappingError",
    "NoMappingError",
    "SearchResult",
    "SpeedOfLight",
    "WorkloadCost",
    "check_mapping",
    "evaluate",
    "evaluate_batch",
    "exhaustive",
    "map_workload",
    "search",
    "simulate",
    "DIMS",
    "OPERANDS",
    "Layer",
    "Workload",
    "builtin",
    "from_model",
    "apply_recipe",
    "speed_of_light",
]
