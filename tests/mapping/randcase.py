"""Random small layers, architectures and mappings (any loop order) for exactness tests."""

from __future__ import annotations

import numpy as np

from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel
from picojoule.mapping.mapping import Mapping
from picojoule.workload.layer import DIMS, OPERANDS, Layer


def _split(n: int, slots: int, rng: np.random.Generator) -> list[int]:
    """Spread the prime factors of n over `slots` slots at random."""
    out = [1] * slots
    k, p = n, 2
    while k > 1:
        while k % p == 0:
            out[int(rng.integers(slots))] *= p
            k //= p
        p += 1
    return out


def random_case(rng: np.random.Generator, max_dim: int = 4) -> tuple[Layer, Arch, Mapping]:
    dims = {d: int(rng.integers(1, max_dim + 1)) for d in DIMS}
    dims["N"] = int(rng.integers(1, 3))
    dims["G"] = int(rng.integers(1, 3))
    layer = Layer(
        name="rand", stride_h=int(rng.integers(1, 3)), stride_w=int(rng.integers(1, 3)), **dims
    )
    n_levels = int(rng.integers(2, 5))
    levels = []
    fan_at = [bool(rng.random() < 0.5) for _ in range(n_levels)]
    for i in range(n_levels):
        holds = (
            list(OPERANDS)
            if i == 0
            else [op for op in OPERANDS if rng.random() < 0.6] or [OPERANDS[int(rng.integers(3))]]
        )
        levels.append(dict(name=f"L{i}", holds=tuple(holds)))
    slots = n_levels * 3  # temporal, x, y per level
    factors = {d: _split(dims[d], slots, rng) for d in DIMS}
    temporal, sx, sy, order = [], [], [], []
    for i in range(n_levels):
        t = [factors[d][3 * i] for d in DIMS]
        x = [factors[d][3 * i + 1] if fan_at[i] else 1 for d in DIMS]
        y = [factors[d][3 * i + 2] if fan_at[i] else 1 for d in DIMS]
        if not fan_at[i]:  # fold the would-be spatial factors into the temporal ones
            t = [t[j] * factors[d][3 * i + 1] * factors[d][3 * i + 2] for j, d in enumerate(DIMS)]
        temporal.append(tuple(t))
        sx.append(tuple(x))
        sy.append(tuple(y))
        order.append(tuple(DIMS[j] for j in rng.permutation(len(DIMS))))
        if fan_at[i]:
            levels[i]["fanout"] = Fanout(
                mesh_x=int(np.prod(x)), mesh_y=int(np.prod(y)), network_pj_per_bit=0.5
            )
    arch = Arch(
        name="rand",
        levels=tuple(
            MemoryLevel(read_pj_per_bit=1.0 + i, write_pj_per_bit=2.0 + i, **kw)
            for i, kw in enumerate(levels)
        ),
        mac=MacUnit(energy_pj=1.0, accumulator_bits=24),
    )
    mapping = Mapping(
        temporal=tuple(temporal), spatial_x=tuple(sx), spatial_y=tuple(sy), order=tuple(order)
    )
    return layer, arch, mapping


def random_box_case(rng: np.random.Generator, max_dim: int = 4) -> tuple[Layer, Arch, Mapping]:
    """A random case whose input windows are boxes (the model's domain)."""
    from picojoule.mapping.mapping import MappingBatch
    from picojoule.mapping.model import evaluate_batch

    while True:
        layer, arch, mapping = random_case(rng, max_dim)
        if evaluate_batch(layer, arch, MappingBatch.of([mapping])).fits[0]:
            return layer, arch, mapping
