"""Shared fixtures: a tiny workload and space, so every end-to-end test runs in seconds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from picojoule.workload.layer import Layer, Workload

TINY_SPACE = {
    "name": "tiny",
    "workload": "digits-cnn",
    "preset": "magnet",
    "objectives": ["energy", "latency", "area"],
    "search": {"method": "grid"},
    "parameters": {
        "vector_width": [4, 8],
        "dataflow": ["ws", "local-ws"],
        "pe_x": 2,
        "pe_y": 2,
        "node_nm": 16,
    },
}


@pytest.fixture
def tiny_workload() -> Workload:
    """Two small layers: one conv, one linear (a few ms to map)."""
    return Workload(
        name="tiny",
        layers=(
            Layer(name="conv", kind="conv", K=8, C=4, P=6, Q=6, R=3, S=3),
            Layer(name="fc", kind="linear", N=1, K=10, C=32),
        ),
    )


@pytest.fixture
def tiny_space() -> dict[str, Any]:
    """The tiny space as a fresh dict (4 designs: vector width x dataflow)."""
    return copy.deepcopy(TINY_SPACE)


@pytest.fixture
def space_file(tmp_path: Path, tiny_space: dict[str, Any]) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_space, sort_keys=False))
    return path
