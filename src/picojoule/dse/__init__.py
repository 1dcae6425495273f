"""Design-space exploration: sweep accelerator parameters, formats and dataflows over a
workload, keep every result in a resumable SQLite store, and report the Pareto front.

Public API:
- spaces: `load_space(path, catalog)`, `parse_space(data, catalog)`, `find_space(name)`,
  `DesignSpace`, `Design`, `catalog(preset)`;
- evaluation: `evaluate_design(design, workload, preset=..., mapper=...) -> DesignMetrics`,
  `design_area`, `DesignEvaluator`;
- area: `picojoule.dse.area` (MAC and SRAM area by format, width and node), `chip_area`;
- runs: `run_space(space, evaluator, out=..., backend="local"|"ray", resume=...)`,
  `run_sweep(sweep, job, out=...)` (any fixed list of points, e.g. `picojoule.cluster.sweep`),
  `ResultsDB`;
- results: `build_report`, `write_outputs`, `pareto_mask`, `pareto_indices`, `knee_index`;
- CLI: `picojoule.dse.cli.app` (`picojoule dse run|show`).
See docs/dse.md.

Names are imported on first use (PEP 562), so a light user of one module - the results store,
the backends, `pareto` - does not pay for the cost model (torch) behind `evaluate` and `chip`.
"""

from __future__ import annotations

from picojoule._lazy import lazy_exports

_EXPORTS = {
    "ChipArea": "chip",
    "chip_area": "chip",
    "BackendError": "errors",
    "InfeasibleError": "errors",
    "SpaceError": "errors",
    "StoreError": "errors",
    "DesignEvaluator": "evaluate",
    "DesignMetrics": "evaluate",
    "design_area": "evaluate",
    "evaluate_design": "evaluate",
    "load_workload": "evaluate",
    "model_version": "evaluate",
    "knee_index": "pareto",
    "pareto_indices": "pareto",
    "pareto_mask": "pareto",
    "build_arch": "params",
    "catalog": "params",
    "RunReport": "report",
    "build_report": "report",
    "write_outputs": "report",
    "Point": "results",
    "ResultsDB": "results",
    "RunInfo": "results",
    "RunSummary": "runner",
    "Sweep": "runner",
    "run_space": "runner",
    "run_sweep": "runner",
    "Design": "space",
    "DesignSpace": "space",
    "find_space": "spacefile",
    "load_space": "spacefile",
    "parse_space": "spacefile",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
