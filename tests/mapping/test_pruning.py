"""The mapper's pruning is sound: three loop orders per level lose nothing, and every
mapping the search returns obeys the architecture."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from randcase import random_box_case

from picojoule.arch.energy import operand_bits
from picojoule.mapping import Mapping, MappingBatch, check_mapping, evaluate_batch, search
from picojoule.mapping.space import CANONICAL_ORDERS
from picojoule.workload import DIMS


def _with_order(mapping: Mapping, level: int, order: tuple[str, ...]) -> Mapping:
    orders = list(mapping.order)
    orders[level] = order
    return Mapping(
        temporal=mapping.temporal,
        spatial_x=mapping.spatial_x,
        spatial_y=mapping.spatial_y,
        order=tuple(orders),
    )


@pytest.mark.parametrize("seed", range(40))
def test_three_orders_per_level_dominate_every_order(seed: int) -> None:
    """For each level, the best of all orderings of its non-unit loops (others fixed) is
    never better than the best of the three canonical orders, in every access count's
    energy and in latency."""
    layer, arch, mapping = random_box_case(np.random.default_rng(1000 + seed), max_dim=4)
    for level in range(len(arch.levels) - 1):
        busy = [d for i, d in enumerate(DIMS) if mapping.temporal[level][i] > 1]
        idle = tuple(d for d in DIMS if d not in busy)
        every = [_with_order(mapping, level, idle + p) for p in itertools.permutations(busy)]
        canon = [
            _with_order(mapping, level, tuple(DIMS[i] for i in row)) for row in CANONICAL_ORDERS
        ]
        all_cost = evaluate_batch(layer, arch, MappingBatch.of(every))
        can_cost = evaluate_batch(layer, arch, MappingBatch.of(canon))
        assert can_cost.energy_pj.min() <= all_cost.energy_pj.min() * (1 + 1e-12)
        assert can_cost.cycles.min() <= all_cost.cycles.min() * (1 + 1e-12)
        edp_all = (all_cost.energy_pj * all_cost.cycles).min()
        assert (can_cost.energy_pj * can_cost.cycles).min() <= edp_all * (1 + 1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_search_results_obey_every_rule(seed: int) -> None:
    layer, arch, _ = random_box_case(np.random.default_rng(2000 + seed), max_dim=4)
    found = search(layer, arch, samples=100, starts=2, seed=seed)
    check_mapping(found.mapping, layer, arch, operand_bits(arch, layer))
    for d in DIMS:
        assert found.mapping.factor_product(d) == getattr(layer, d)
