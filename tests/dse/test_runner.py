"""run_space: evaluate, commit, resume, reuse, budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from picojoule.dse.errors import InfeasibleError, StoreError
from picojoule.dse.evaluate import DesignEvaluator
from picojoule.dse.params import catalog
from picojoule.dse.results import ResultsDB
from picojoule.dse.runner import feasible, run_space
from picojoule.dse.space import DesignSpace
from picojoule.dse.spacefile import parse_space
from picojoule.workload.layer import Workload

TINY_PARAMS = {"vector_width": [4, 8], "dataflow": ["ws", "local-ws"], "pe_x": 2, "pe_y": 2}


def _space(**changes: Any) -> DesignSpace:
    data: dict[str, Any] = {
        "name": "tiny",
        "workload": "digits-cnn",
        "search": {"method": "grid"},
        "parameters": dict(TINY_PARAMS),
    }
    data.update(changes)
    return parse_space(data, catalog)


def _ev(workload: Workload) -> DesignEvaluator:
    return DesignEvaluator(preset="magnet", workload=workload)


def test_grid_run_stores_every_design_once(tmp_path: Path, tiny_workload: Workload) -> None:
    seen: list[tuple[int, int]] = []
    s = run_space(
        _space(),
        _ev(tiny_workload),
        out=tmp_path,
        workers=1,
        progress=lambda p: seen.append((p.done, p.planned)),
    )
    assert (s.points, s.evaluated, s.reused, s.failed) == (4, 4, 0, 0)
    assert seen[-1] == (4, 4)
    with ResultsDB.open(tmp_path, create=False) as db:
        pts = db.points("tiny")
    assert len({p.design_key for p in pts}) == 4
    assert all(p.metrics is not None and p.metrics["macs"] == tiny_workload.macs for p in pts)


def test_resume_evaluates_nothing_twice(tmp_path: Path, tiny_workload: Workload) -> None:
    run_space(_space(), _ev(tiny_workload), out=tmp_path, workers=1)
    with pytest.raises(StoreError, match="--resume"):
        run_space(_space(), _ev(tiny_workload), out=tmp_path, workers=1)
    again = run_space(_space(), _ev(tiny_workload), out=tmp_path, workers=1, resume=True)
    assert (again.points, again.evaluated, again.reused) == (4, 0, 4)


def test_another_space_reuses_cached_designs(tmp_path: Path, tiny_workload: Workload) -> None:
    run_space(_space(), _ev(tiny_workload), out=tmp_path, workers=1)
    params = {**TINY_PARAMS, "vector_width": [8, 16]}  # shares the width-8 half
    s = run_space(
        _space(name="wider", parameters=params), _ev(tiny_workload), out=tmp_path, workers=1
    )
    assert (s.points, s.evaluated, s.reused) == (4, 2, 2)


def test_area_budget_nobody_meets_fails_before_evaluating(
    tmp_path: Path, tiny_workload: Workload
) -> None:
    with pytest.raises(InfeasibleError, match=r"area budget of 1e-05 mm\^2: the smallest of all 4"):
        run_space(_space(constraints={"area_mm2": 1e-5}), _ev(tiny_workload), out=tmp_path)
    assert not (tmp_path / "results.sqlite").exists()


def test_area_budget_skips_designs_without_storing_them(
    tmp_path: Path, tiny_workload: Workload
) -> None:
    ev = _ev(tiny_workload)
    areas = sorted(ev.area_mm2(d.as_dict()) for d in _space().grid())
    budget = (areas[1] + areas[2]) / 2  # two designs fit
    s = run_space(_space(constraints={"area_mm2": budget}), ev, out=tmp_path, workers=1)
    assert (s.points, s.over_budget) == (2, 2)


def test_power_budget_nobody_meets_keeps_the_points(
    tmp_path: Path, tiny_workload: Workload
) -> None:
    space = _space(constraints={"power_w": 1e-9})
    with pytest.raises(
        InfeasibleError, match=r"none of the 4 evaluated designs meets power <= 1e-09 W"
    ):
        run_space(space, _ev(tiny_workload), out=tmp_path, workers=1)
    with ResultsDB.open(tmp_path, create=False) as db:
        pts = db.points("tiny")
    assert len(pts) == 4 and feasible(pts, space.constraints) == []


def test_unmappable_designs_are_stored_as_errors(tmp_path: Path, tiny_workload: Workload) -> None:
    params = {**TINY_PARAMS, "accum_buffer_kb": [0.001, 3.0]}
    s = run_space(_space(parameters=params), _ev(tiny_workload), out=tmp_path, workers=1)
    assert (s.points, s.failed) == (8, 4)
    with ResultsDB.open(tmp_path, create=False) as db:
        errors = [p.error for p in db.points("tiny") if p.metrics is None]
    assert all("24 bits" in (e or "") for e in errors)


def test_nothing_evaluable_is_one_message(tmp_path: Path, tiny_workload: Workload) -> None:
    params = {**TINY_PARAMS, "accum_buffer_kb": 0.001}
    with pytest.raises(
        InfeasibleError, match="could be evaluated; first error: magnet.* cannot run tiny"
    ):
        run_space(_space(parameters=params), _ev(tiny_workload), out=tmp_path, workers=1)


def test_nsga2_run_resumes_from_stored_generations(tmp_path: Path, tiny_workload: Workload) -> None:
    params = {
        **TINY_PARAMS,
        "vector_width": [4, 8, 16],
        "vector_units": [2, 4, 8],
        "dataflow": ["ws", "os", "local-ws"],
    }
    search = {"method": "nsga2", "trials": 8, "population": 4, "seed": 0}
    s = run_space(
        _space(parameters=params, search=search), _ev(tiny_workload), out=tmp_path, workers=1
    )
    assert s.points == 8 == s.evaluated  # trials count distinct designs
    with ResultsDB.open(tmp_path, create=False) as db:
        gens = [p.generation for p in db.points("tiny")]
    assert gens == sorted(gens) and gens[0] == 0  # stored generation by generation
    again = run_space(
        _space(parameters=params, search=search),
        _ev(tiny_workload),
        out=tmp_path,
        workers=1,
        resume=True,
    )
    assert again.evaluated == 0  # the budget of 8 trials was spent before
