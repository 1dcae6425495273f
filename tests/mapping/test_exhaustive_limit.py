"""`exhaustive` counts its space combinatorially and refuses one over its limit at once."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from randcase import random_case

from picojoule.arch import presets
from picojoule.errors import ConfigError
from picojoule.mapping import exhaustive
from picojoule.mapping.space import MapSpace
from picojoule.workload import Layer, builtin


def _materialised(space: MapSpace) -> int:
    return sum(len(chunk) for chunk in space.factor_chunks(50_000))


def test_count_equals_the_tables_enumerated() -> None:
    """On random layers and architectures (bypasses, fanouts, 2-4 levels) the closed-form
    count equals the number of tables built, on 30 spaces of up to 100k tables."""
    rng, checked = np.random.default_rng(7), 0
    while checked < 30:
        layer, arch, _ = random_case(rng, max_dim=6)
        space = MapSpace.of(layer, arch)
        count = space.count_factorings()
        if count > 100_000:
            assert space.count_factorings(stop_above=100_000) > 100_000
            continue
        assert count == _materialised(space)
        checked += 1


def test_count_on_a_preset_with_dataflow_limits() -> None:
    layer = Layer(name="c", K=6, C=4, P=4, Q=2, R=3)
    space = MapSpace.of(layer, presets.eyeriss(dataflow="rs"))
    assert space.count_factorings() == _materialised(space)
    # stopping early returns a lower bound above the cap, never an undercount below it
    full = space.count_factorings()
    assert full > 1000
    assert 1000 < space.count_factorings(stop_above=1000) <= full


@pytest.mark.parametrize("name", ["eyeriss", "simba"])
def test_exhaustive_refuses_a_huge_space_before_allocating(name: str) -> None:
    """ResNet-18's first 3x3 layer has ~5e8 pruned mappings on Eyeriss (2e11 on Simba):
    building them took 2 GiB and was killed. The refusal must come in well under a second
    and a few MB, as one line."""
    layer = builtin("resnet18").layers[1]
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        exhaustive(layer, presets.preset(name))
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    message = str(err.value)
    assert "\n" not in message and "more than 2,000,000 mappings" in message
    assert "use search() or raise limit" in message
    assert peak < 20 * 2**20 and elapsed < 2.0
