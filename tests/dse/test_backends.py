"""Backends: a process pool and Ray return exactly what in-process evaluation returns."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from picojoule.dse.backends import LocalBackend, check_address, make_backend
from picojoule.dse.errors import BackendError
from picojoule.dse.evaluate import DesignEvaluator
from picojoule.dse.params import catalog
from picojoule.dse.results import ResultsDB
from picojoule.dse.runner import run_space
from picojoule.dse.space import Design
from picojoule.dse.spacefile import parse_space
from picojoule.workload.layer import Workload


def _items() -> list[tuple[str, dict[str, Any]]]:
    designs = [
        Design.of({"pe_x": 2, "pe_y": 2, "vector_width": w, "dataflow": f})
        for w in (4, 8)
        for f in ("ws", "os", "local-ws")
    ]
    designs.append(Design.of({"pe_x": 2, "pe_y": 2, "accum_buffer_kb": 0.001}))  # unmappable
    return [(d.key, d.as_dict()) for d in designs]


def _collect(backend: Any, items: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for batch in backend.run(items):
            for key, outcome in batch:
                assert key not in out
                out[key] = json.dumps(outcome, sort_keys=True)
    finally:
        backend.close()
    return out


def test_process_pool_equals_in_process(tiny_workload: Workload) -> None:
    job = DesignEvaluator(preset="magnet", workload=tiny_workload)
    items = _items()
    serial = _collect(LocalBackend(job, workers=1), items)
    pooled = _collect(LocalBackend(job, workers=2), items)
    assert pooled == serial
    assert len(serial) == len(items)
    unmappable = [v for v in serial.values() if json.loads(v)[0] is None]
    assert len(unmappable) == 1 and "24 bits" in unmappable[0]


@pytest.mark.ray
def test_ray_run_equals_local_run(tmp_path: Path, tiny_workload: Workload) -> None:
    """The same NSGA-II run on a local 2-CPU Ray and in process: same designs, same numbers
    (outcomes are told in proposal order, so arrival order cannot steer the search)."""
    pytest.importorskip("ray")
    space = parse_space(
        {
            "name": "nsga",
            "workload": "digits-cnn",
            "search": {"method": "nsga2", "trials": 6, "population": 3, "seed": 1},
            "parameters": {
                "pe_x": 2,
                "pe_y": 2,
                "vector_width": [4, 8, 16],
                "vector_units": [2, 4],
                "dataflow": ["ws", "os", "local-ws"],
            },
        },
        catalog,
    )
    job = DesignEvaluator(preset="magnet", workload=tiny_workload)
    stored = {}
    for backend, workers in (("local", 1), ("ray", 2)):
        run_space(space, job, out=tmp_path / backend, backend=backend, workers=workers)
        with ResultsDB.open(tmp_path / backend, create=False) as db:
            stored[backend] = {p.design_key: p.metrics for p in db.points("nsga")}
    assert len(stored["local"]) == 6
    assert stored["ray"] == stored["local"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens


def test_silent_ray_address_is_one_message() -> None:
    port = _closed_port()
    with pytest.raises(BackendError, match=f"no Ray cluster answers at 127.0.0.1:{port}"):
        check_address(f"127.0.0.1:{port}")
    with pytest.raises(BackendError, match="no Ray cluster answers"):
        check_address(f"ray://127.0.0.1:{port}")
    with pytest.raises(BackendError, match="is not host:port"):
        check_address("head-node")
    check_address("auto")  # left to Ray


def test_backend_choice_errors(tiny_workload: Workload) -> None:
    job = DesignEvaluator(preset="magnet", workload=tiny_workload)
    with pytest.raises(BackendError, match="add --backend ray"):
        make_backend("local", job, address="10.0.0.1:6379")
    with pytest.raises(BackendError, match="unknown backend 'dask'"):
        make_backend("dask", job)
