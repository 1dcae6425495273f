"""The analytical model equals the literal loop-nest walk, count for count."""

from __future__ import annotations

import numpy as np
import pytest
from randcase import random_box_case, random_case

from picojoule.arch import presets
from picojoule.mapping import (
    MappingBatch,
    MappingError,
    MapSpace,
    evaluate,
    evaluate_batch,
    simulate,
)
from picojoule.workload import Layer

SEEDS_PER_CHUNK = 25


@pytest.mark.parametrize("chunk", range(12))
def test_model_equals_reference_simulator(chunk: int) -> None:
    """300 random layers x architectures x mappings (any loop order, bypasses, fanouts)."""
    _check_against_reference(range(chunk * SEEDS_PER_CHUNK, (chunk + 1) * SEEDS_PER_CHUNK))


@pytest.mark.parametrize("chunk", range(4))
def test_latched_operands_equal_reference_simulator(chunk: int) -> None:
    """100 more with `mac.latch_operands`: lanes hold an operand (and a psum) until a loop
    that indexes it advances; the walk treats each lane as a one-element level."""
    seeds = range(1000 + chunk * SEEDS_PER_CHUNK, 1000 + (chunk + 1) * SEEDS_PER_CHUNK)
    fewer = _check_against_reference(seeds, latch=True)
    assert fewer > SEEDS_PER_CHUNK // 2  # the latch saves accesses in most random nests


def _check_against_reference(seeds: range, *, latch: bool = False) -> int:
    """Counts equal, seed by seed; returns how many latched cases read less than unlatched."""
    fewer = 0
    for seed in seeds:
        layer, arch, mapping = random_box_case(np.random.default_rng(seed), max_dim=3)
        if latch:
            plain = evaluate_batch(layer, arch, MappingBatch.of([mapping])).reads[0].sum()
            mac = arch.mac.model_copy(update={"latch_operands": True})
            arch = arch.model_copy(update={"mac": mac})
        model = evaluate_batch(layer, arch, MappingBatch.of([mapping]))
        ref = simulate(layer, arch, mapping)
        for name in ("reads", "writes", "deliveries"):
            got, want = getattr(model, name)[0], getattr(ref, name)
            assert np.array_equal(got, want), (seed, name, got, want)
        if latch:
            fewer += int(model.reads[0].sum() < plain)
    return fewer


def test_batch_rows_equal_single_evaluations() -> None:
    layer = Layer(name="t", K=4, C=6, P=4, Q=2, R=3)
    arch = presets.eyeriss(costs="normalized")
    space = MapSpace.of(layer, arch)
    F = next(space.factor_chunks(400))[::7]
    O = np.tile(space.order_combos()[5], (len(F), 1))
    batch = evaluate_batch(layer, arch, space.to_batch(F, O))
    for i in range(len(F)):
        one = evaluate_batch(layer, arch, MappingBatch.of([space.to_mapping(F[i], O[i])]))
        assert one.energy_pj[0] == batch.energy_pj[i]
        assert np.array_equal(one.reads[0], batch.reads[i])
        assert np.array_equal(one.writes[0], batch.writes[i])
        assert one.cycles[0] == batch.cycles[i]


def test_gapped_input_windows_are_refused_not_miscounted() -> None:
    """A window loop unrolled above a temporal loop of the same dim (before the next input
    holder) leaves gaps in the input tile; `evaluate` says so instead of guessing."""
    rng = np.random.default_rng(0)
    for _ in range(400):
        layer, arch, mapping = random_case(rng, max_dim=4)
        if not evaluate_batch(layer, arch, MappingBatch.of([mapping])).fits[0]:
            break
    else:
        pytest.fail("no gapped case drawn")
    with pytest.raises(MappingError, match="not a box"):
        evaluate(layer, arch, mapping)
