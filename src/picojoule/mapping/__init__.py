"""Mappings of layers onto accelerators: the cost model, the reference simulator, the mapper.

Public: `Mapping`, `MappingError`, `check_mapping`, `evaluate`, `Cost`, `evaluate_batch`,
`BatchCost`, `MappingBatch`, `simulate`, `search`, `exhaustive`, `SearchResult`,
`NoMappingError`, `map_workload`, `WorkloadCost`, `LayerResult`, `SpeedOfLight`, `MapSpace`,
`UtilizationWarning`, `utilization_warnings`.
"""

from picojoule.mapping.cost import Cost, evaluate
from picojoule.mapping.mapping import Mapping, MappingBatch, MappingError, check_mapping
from picojoule.mapping.model import BatchCost, evaluate_batch
from picojoule.mapping.network import LayerResult, SpeedOfLight, WorkloadCost, map_workload
from picojoule.mapping.reference import simulate
from picojoule.mapping.search import NoMappingError, SearchResult, exhaustive, search
from picojoule.mapping.space import MapSpace
from picojoule.mapping.utilization import UtilizationWarning, utilization_warnings

__all__ = [
    "Mapping",
    "MappingBatch",
    "MappingError",
    "check_mapping",
    "evaluate",
    "Cost",
    "evaluate_batch",
    "BatchCost",
    "simulate",
    "search",
    "exhaustive",
    "SearchResult",
    "NoMappingError",
    "map_workload",
    "WorkloadCost",
    "LayerResult",
    "SpeedOfLight",
    "MapSpace",
    "UtilizationWarning",
    "utilization_warnings",
]
