"""Design-space exploration: sweep accelerator parameters, formats and dataflows over a
workload, keep every result in a resumable SQLite store, and report the Pareto front.

Public API:
- spaces: `load_space(path, catalog)`, `parse_space(data, catalog)`, `find_space(name)`,
  `DesignSpace`, `Design`, `catalog(preset)`;
- evaluation: `evaluate_design(design, workload, preset=..., mapper=...) -> DesignMetrics`,
  `design_area`, `DesignEvaluator`;
- area: `picojoule.dse.area` (MAC and SRAM area by format, width and node), `chip_area`;
- runs: `run_space(space, evaluator, out=..., backend="local"|"ray", resume=...)`,
  `ResultsDB`;
- results: `build_report`, `write_outputs`, `pareto_mask`, `pareto_indices`, `knee_index`;
- CLI: `picojoule.dse.cli.app` (`picojoule dse run|show`).
See docs/dse.md.
"""

from picojoule.dse.chip import ChipArea, chip_area
from picojoule.dse.errors import BackendError, InfeasibleError, SpaceError, StoreError
from picojoule.dse.evaluate import (
    DesignEvaluator,
    DesignMetrics,
    design_area,
    evaluate_design,
    load_workload,
    model_version,
)
from picojoule.dse.params import build_arch, catalog
from picojoule.dse.pareto import knee_index, pareto_indices, pareto_mask
from picojoule.dse.report import RunReport, build_report, write_outputs
from picojoule.dse.results import Point, ResultsDB, RunInfo
from picojoule.dse.runner import RunSummary, run_space
from picojoule.dse.space import Design, DesignSpace
from picojoule.dse.spacefile import find_space, load_space, parse_space

__all__ = [
    "ChipArea",
    "chip_area",
    "BackendError",
    "InfeasibleError",
    "SpaceError",
    "StoreError",
    "DesignEvaluator",
    "DesignMetrics",
    "design_area",
    "evaluate_design",
    "load_workload",
    "model_version",
    "knee_index",
    "pareto_indices",
    "pareto_mask",
    "build_arch",
    "catalog",
    "RunReport",
    "build_report",
    "write_outputs",
    "Point",
    "ResultsDB",
    "RunInfo",
    "RunSummary",
    "run_space",
    "Design",
    "DesignSpace",
    "find_space",
    "load_space",
    "parse_space",
]
