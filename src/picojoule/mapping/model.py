"""The analytical cost model, vectorized over a batch of mappings.

Public: `evaluate_batch(layer, arch, batch, energy=None) -> BatchCost`, `BatchCost`.

Reuse rules (the reference simulator in `picojoule.mapping.reference` walks the same rules
literally, and the tests hold the two equal):
* A level instance holds one tile of each operand it keeps: the box touched by the loops at
  and below it. The tile is refetched whole when the indices of the loops above it that index
  the operand change; so trailing loops that do not index the operand keep it stationary.
  A new tile is not assumed to overlap the previous one (no sliding-window "delta" reuse).
* One fill event moves, from the parent (next outer level holding the operand) to all child
  instances under one parent instance, the union of their tiles: data is multicast and each
  distinct element is read once (so Eyeriss' diagonal input reuse comes out of the union).
* Outputs are partial sums: children drain their tiles upward, reduced across a fanout to one
  update per distinct element; the parent sends a psum down except on an element's first
  visit (it starts at zero), so psum reads = updates - distinct elements per parent instance.
* The MACs hold nothing: every lane reads its operands every cycle from the innermost level
  holding them (multicast across lanes) and writes its partial sum back (reduced).
Counts are elements at dense positions; bits per element (format, compression, accumulator
width) and pJ/bit turn them into energy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from picojoule.arch.energy import EnergyTable, operand_bits, resolve_energy
from picojoule.arch.spec import Arch
from picojoule.formats import get as get_format
from picojoule.mapping.mapping import RELEVANT, MappingBatch
from picojoule.workload.layer import DIMS, OPERANDS, Layer

__all__ = ["BatchCost", "evaluate_batch", "footprint"]

_N, _G, _K, _C, _P, _Q, _R, _S = range(len(DIMS))
# rel[o, d]: loop d indexes operand o.
_REL = np.array([[d in RELEVANT[op] for d in DIMS] for op in OPERANDS])
_W, _I, _O = range(3)


@dataclass(frozen=True, kw_only=True)
class BatchCost:
    """Costs of `B` mappings. Access counts are elements; energies pJ; cycles at the clock.

    `reads`/`writes`: `[B, L, 3]` per level and operand (`OPERANDS` order). `deliveries`:
    `[B, L, 3]` elements crossing the fanout under each level. `level_energy_pj`: `[B, L, 3]`;
    `network_energy_pj`: `[B, L]`; `bw_cycles`: `[B, L]` cycles each level's traffic needs.
    """

    reads: np.ndarray
    writes: np.ndarray
    deliveries: np.ndarray
    level_energy_pj: np.ndarray
    network_energy_pj: np.ndarray
    mac_energy_pj: float
    compute_cycles: np.ndarray
    bw_cycles: np.ndarray
    cycles: np.ndarray
    energy_pj: np.ndarray
    fits: np.ndarray
    used_lanes: np.ndarray


def footprint(op: int, ext: np.ndarray, strides: tuple[int, int]) -> np.ndarray:
    """Distinct elements of operand `op` in boxes of loop extents `ext[..., D]` (int64)."""
    if op == _W:
        return ext[..., _G] * ext[..., _K] * ext[..., _C] * ext[..., _R] * ext[..., _S]
    if op == _O:
        return ext[..., _N] * ext[..., _G] * ext[..., _K] * ext[..., _P] * ext[..., _Q]
    p, r, q, s = ext[..., _P], ext[..., _R], ext[..., _Q], ext[..., _S]
    h = np.minimum((p - 1) * strides[0] + r, p * r)
    w = np.minimum((q - 1) * strides[1] + s, q * s)
    return ext[..., _N] * ext[..., _G] * ext[..., _C] * h * w


def _last_indexing(seq: np.ndarray, seq_dims: np.ndarray, op: int) -> np.ndarray:
    """`[B, M]`: position of the innermost non-unit loop indexing `op` at or before each
    position of the nest (-1 if none). Fill events of a child whose loops above end at
    position e are the trip-count product down to that loop: the loops inside it do not
    change the tile."""
    flag = _REL[op][seq_dims] & (seq > 1)
    return np.maximum.accumulate(np.where(flag, np.arange(seq.shape[1]), -1), axis=1)


def _window_is_box(T: np.ndarray, Sp: np.ndarray, p: int, c: int) -> np.ndarray:
    """False where the input union between levels p and c is not a box: a window loop
    (P Q R S) unrolled at a fanout in [p, c) with a temporal loop of the same dim at a level
    strictly between that fanout and c leaves gaps, and the sliding-window count
    min((P-1)*stride+R, P*R) no longer applies."""
    ok = np.ones(T.shape[0], dtype=bool)
    win = [_P, _Q, _R, _S]
    for f in range(p, c):
        inner = T[:, f + 1 : c][:, :, win]
        if inner.shape[1]:
            ok &= ~((Sp[:, f, win] > 1) & (inner > 1).any(axis=1)).any(axis=1)
    return ok


def evaluate_batch(
    layer: Layer, arch: Arch, batch: MappingBatch, energy: EnergyTable | None = None
) -> BatchCost:
    """Access counts, energy and latency of every mapping in `batch`.

    `fits` is False where a tile exceeds a capacity or an input window is not a box (see
    `_window_is_box`); factor products and fanout rules are the caller's (`check_mapping`).
    """
    energy = energy or resolve_energy(arch, layer)
    bits_by_op = operand_bits(arch, layer)
    bits = np.array([bits_by_op[op] for op in OPERANDS])
    T, Sp, order = batch.temporal, batch.spatial, batch.order
    B, L, D = T.shape
    strides = layer.strides

    # ext[:, l] = extents of level l's tile (its temporal loops, all below, fanouts at >= l);
    # ext[:, L] = one MAC lane (all ones).
    both = T * Sp
    ext = np.ones((B, L + 1, D), dtype=np.int64)
    ext[:, :L] = np.cumprod(both[:, ::-1], axis=1)[:, ::-1]
    # Per-level spatial products; inst[:, l] = instances of level l (inst[:, L] = lanes used).
    sp_total = Sp.prod(axis=2)
    inst = np.ones((B, L + 1), dtype=np.int64)
    inst[:, 1:] = np.cumprod(sp_total, axis=1)
    # Temporal loops in nest order, outermost first: level 0's loops, then level 1's...
    seq_dims = order.reshape(B, L * D)
    seq = np.take_along_axis(T, order, axis=2).reshape(B, L * D)
    prefix = np.concatenate([np.ones((B, 1), dtype=np.int64), np.cumprod(seq, axis=1)], axis=1)
    total_t = prefix[:, -1]
    rows = np.arange(B)
    # sp_suffix[:, l] = product of the fanout factors at levels >= l (sp_suffix[:, L] = 1).
    sp_suffix = np.ones((B, L + 1, D), dtype=np.int64)
    sp_suffix[:, :L] = np.cumprod(Sp[:, ::-1], axis=1)[:, ::-1]
    out_total = layer.output_elems
    # Spatial factors of loops that do not index outputs: each replicates partial sums.
    red = np.where(_REL[_O][None, None, :], 1, Sp).prod(axis=2)
    red_above = np.ones((B, L + 1), dtype=np.int64)
    red_above[:, 1:] = np.cumprod(red, axis=1)

    has_fanout = [level.fanout is not None for level in arch.levels]
    window_ok = np.ones(B, dtype=bool)
    reads = np.zeros((B, L, 3), dtype=np.int64)
    writes = np.zeros((B, L, 3), dtype=np.int64)
    deliv = np.zeros((B, L, 3), dtype=np.int64)
    for o, op in enumerate(OPERANDS):
        holders = arch.holders(op)
        last = _last_indexing(seq, seq_dims, o) if len(holders) > 1 else None
        for j, p in enumerate(holders):
            c = holders[j + 1] if j + 1 < len(holders) else L  # L = the MAC lanes
            if c < L:
                ev = prefix[rows, last[:, c * D - 1] + 1]
                tile = footprint(o, ext[:, c], strides)
            else:
                ev, tile = total_t, np.ones(B, dtype=np.int64)
            # Union over the children of one parent: child extents times fanouts p..c-1
            # (fanout factors of levels [a, c) are sp_suffix[a] // sp_suffix[c]).
            child = ext[:, c] // sp_suffix[:, c]
            union = footprint(o, child * sp_suffix[:, p], strides)
            moved = ev * union * inst[:, p]
            # Elements crossing each fanout f in [p, c): per port under f.
            for f in range(p, c):
                if not has_fanout[f]:
                    continue
                port = footprint(o, child * sp_suffix[:, f + 1], strides) if f + 1 < c else tile
                deliv[:, f, o] += ev * port * inst[:, f + 1]
            if op == "inputs":
                window_ok &= _window_is_box(T, Sp, p, c)
            if op != "outputs":
                reads[:, p, o] += moved
                if c < L:
                    writes[:, c, o] += ev * tile * inst[:, c]
                continue
            first = out_total * red_above[:, p]
            psum_fills = moved - first
            writes[:, p, o] += moved
            reads[:, p, o] += psum_fills
            for f in range(p, c):
                if has_fanout[f]:
                    deliv[:, f, o] += psum_fills
            if c < L:
                reads[:, c, o] += ev * tile * inst[:, c]
                writes[:, c, o] += psum_fills

    # Energy: every count at its operand's bits; the final outputs leave at output width.
    access_bits = bits[None, None, :]
    level_e = (reads * access_bits) * energy.read_pj_per_bit[None] + (
        writes * access_bits
    ) * energy.write_pj_per_bit[None]
    out_bits = float(get_format(layer.output_format).bits_per_element)
    level_e[:, 0, _O] -= out_total * (bits[_O] - out_bits) * energy.write_pj_per_bit[0, _O]
    net_e = (deliv * access_bits).sum(axis=2) * energy.network_pj_per_bit[None]
    density = arch.sparse.mac_density(layer.weight_density, layer.input_density)
    # A sparse tensor core skips the pruned positions of N:M weights: N/M of the MACs, issued
    # in N/M of the cycles (the index bits select the matching inputs).
    frac = arch.sparse.structured_fraction(layer.weight_pattern) or 1.0
    mac_e = layer.macs * energy.mac_pj * density * frac
    energy_pj = level_e.sum(axis=(1, 2)) + net_e.sum(axis=1) + mac_e
    if frac < 1.0:
        total_t = np.ceil(total_t * frac).astype(np.int64)

    # Latency: compute (one temporal iteration per cycle) against each level's bandwidth.
    traffic = ((reads + writes) * access_bits).sum(axis=2)
    traffic[:, 0] -= out_total * (bits[_O] - out_bits)  # final outputs at output width
    traffic_bits = traffic / inst[:, :L]
    bw = np.array([lv.bandwidth_bits_per_cycle or np.inf for lv in arch.levels], dtype=np.float64)
    bw_cycles = traffic_bits / bw[None, :]
    cycles = np.maximum(total_t.astype(np.float64), bw_cycles.max(axis=1))

    fits = window_ok.copy()
    for l, level in enumerate(arch.levels):
        used = np.zeros(B)
        for o, op in enumerate(OPERANDS):
            if op not in level.holds:
                continue
            need = footprint(o, ext[:, l], strides) * bits[o]
            cap = level.capacity_of(op)
            if level.partition_bits is not None and cap is not None:
                fits &= need <= cap
            used = used + need
        if level.partition_bits is None and level.capacity_bits is not None:
            fits &= used <= level.capacity_bits
    return BatchCost(
        reads=reads,
        writes=writes,
        deliveries=deliv,
        level_energy_pj=level_e,
        network_energy_pj=net_e,
        mac_energy_pj=mac_e,
        compute_cycles=total_t,
        bw_cycles=bw_cycles,
        cycles=cycles,
        energy_pj=energy_pj,
        fits=fits,
        used_lanes=inst[:, L],
    )
