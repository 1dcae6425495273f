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
* A level a mapping bypasses for an operand (`Mapping.bypass`, within the level's
  `bypassable`) does not hold it for that mapping: the rules above apply to the chain of the
  remaining holders, and the operand takes none of the level's capacity.
Counts are elements at dense positions; bits per element (format, compression, accumulator
width) and pJ/bit turn them into energy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from picojoule.arch.energy import EnergyTable, operand_bits, resolve_energy
from picojoule.arch.spec import Arch, MemoryLevel
from picojoule.formats import get as get_format
from picojoule.mapping.mapping import RELEVANT, MappingBatch, held_operands
from picojoule.workload.layer import DIMS, OPERANDS, Layer

__all__ = [
    "BatchCost",
    "evaluate_batch",
    "footprint",
    "input_halo",
    "compulsory_input_elems",
]

_N, _G, _K, _C, _P, _Q, _R, _S = range(len(DIMS))
# rel[o, d]: loop d indexes operand o.
_REL = np.array([[d in RELEVANT[op] for d in DIMS] for op in OPERANDS])
_W, _I, _O = range(3)


@dataclass(frozen=True, kw_only=True)
class BatchCost:
    """Costs of `B` mappings. Access counts are elements; energies pJ; cycles at the clock.

    `reads`/`writes`: `[B, L, 3]` per level and operand (`OPERANDS` order). `deliveries`:
    `[B, L, 3]` elements crossing the fanout under each level. `level_energy_pj`: `[B, L, 3]`;
    `network_energy_pj`: `[B, L]`. Latency parts: `bw_cycles` `[B, L]` cycles each level's
    overlapped traffic needs at its ports; `net_cycles` `[B, L]` the same for the network
    under each level; `stall_cycles` `[B, L]` refills of each level that cannot overlap
    (no second buffer); `fill_cycles`/`drain_cycles` `[B]` the first fill and the last
    drain; `cycles` = max(compute, bw, net) + stalls + fill + drain.
    """

    reads: np.ndarray
    writes: np.ndarray
    deliveries: np.ndarray
    level_energy_pj: np.ndarray
    network_energy_pj: np.ndarray
    mac_energy_pj: float
    compute_cycles: np.ndarray
    bw_cycles: np.ndarray
    net_cycles: np.ndarray
    stall_cycles: np.ndarray
    fill_cycles: np.ndarray
    drain_cycles: np.ndarray
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


def input_halo(layer: Layer) -> tuple[int, int, int, int]:
    """Zero-padding rows/columns the loop nest touches on each side of the input: (top,
    bottom, left, right). Read from `layer.padding` when the layer carries it (a 4-tuple);
    a layer without it has none, and its padded extent counts as data."""
    pad = getattr(layer, "padding", None)
    if not pad:
        return (0, 0, 0, 0)
    top, bottom, left, right = (int(v) for v in pad)
    return top, bottom, left, right


def _clipped(
    halo: int,
    n_out: np.ndarray,
    out_ext: np.ndarray,
    n_ker: np.ndarray,
    ker_ext: np.ndarray,
    stride: int,
) -> np.ndarray:
    """Halo rows summed over every tile position along one spatial axis: tiles of `out_ext`
    output rows and `ker_ext` kernel rows (`n_out` x `n_ker` positions); a tile starting at
    row `i*out_ext*stride + j*ker_ext` touches rows `a*stride + b` after it (a < out_ext,
    b < ker_ext). Only the first `halo` rows count; by symmetry the same function counts
    the far side."""
    out = np.zeros(len(n_out), dtype=np.int64)
    span = (out_ext - 1) * stride + ker_ext
    for x in range(halo):
        for i in range(halo):
            for j in range(halo):
                d = x - i * out_ext * stride - j * ker_ext
                hit = (d >= 0) & (d < span) & ((stride <= ker_ext) | (d % stride < ker_ext))
                out += hit & (i < n_out) & (j < n_ker)
    return out


def _real_fraction(layer: Layer, box: np.ndarray) -> np.ndarray:
    """Average fraction of a DRAM input fill of box extents `box [B, D]` that is real data
    (not the generated zero halo), over all tile positions; 1 where the layer has no
    padding. Exact for any tiling: every tile position occurs equally often among fills."""
    top, bottom, left, right = input_halo(layer)
    frac = np.ones(box.shape[0])
    for (lo, hi), o_dim, k_dim, stride in (
        ((top, bottom), _P, _R, layer.stride_h),
        ((left, right), _Q, _S, layer.stride_w),
    ):
        if not (lo or hi):
            continue
        oe, ke = box[:, o_dim], box[:, k_dim]
        no, nk = layer.bounds[o_dim] // oe, layer.bounds[k_dim] // ke
        rows = np.minimum((oe - 1) * stride + ke, oe * ke) * no * nk
        halo = _clipped(lo, no, oe, nk, ke, stride) + _clipped(hi, no, oe, nk, ke, stride)
        frac = frac * (rows - halo) / rows
    return frac


def compulsory_input_elems(layer: Layer, arch: Arch) -> float:
    """Input elements the outermost level must supply at least once: the whole touched
    input, less the generated zero halo unless `arch.padding_reads`."""
    if arch.padding_reads:
        return float(layer.input_elems)
    box = np.array([layer.bounds], dtype=np.int64)
    return float(layer.input_elems * _real_fraction(layer, box)[0])


def _port_time(
    r: np.ndarray | float, w: np.ndarray | float, ports: tuple[float, float, float]
) -> np.ndarray | float:
    """Cycles to move `r` read and `w` written bits through one level instance's ports
    (`ports` = shared, read, write bits per cycle; None: no limit): a shared port carries
    both, separate read and write ports one each."""
    shared, rd, wr = ports
    t: np.ndarray | float = 0.0
    if shared is not None:
        t = (r + w) / shared
    if rd is not None and not isinstance(r, float):
        t = np.maximum(t, r / rd)
    if wr is not None and not isinstance(w, float):
        t = np.maximum(t, w / wr)
    return t


def _double_buffered(level: MemoryLevel, need: np.ndarray, kept: tuple[str, ...]) -> np.ndarray:
    """`[B, 3]` whether `level` holds a second tile of each operand (`need [B, 3]`: tile
    bits per instance), so that the next tile's transfer overlaps the work on this one.
    `double_buffered` True/False on the level forces it; None applies ZigZag's rule
    (cost_model.calc_double_buffer_flag): a partition qualifies when it holds twice its
    tile; a shared buffer whose tiles fill at most half of it qualifies for every operand,
    otherwise operands qualify in the order weights, inputs, outputs while their tile still
    fits in what the others leave free. Unbounded levels always qualify. `kept`: the operands
    the level holds under these mappings."""
    B = need.shape[0]
    if level.double_buffered is not None:
        return np.full((B, 3), level.double_buffered)
    db = np.ones((B, 3), dtype=bool)
    held = [o for o, op in enumerate(OPERANDS) if op in kept]
    if level.partition_bits is not None:
        for o in held:
            db[:, o] = 2 * need[:, o] <= level.partition_bits[OPERANDS[o]]
    elif level.capacity_bits is not None:
        cap = float(level.capacity_bits)
        used = need.sum(axis=1)
        half = used <= cap / 2
        for o in held:
            ok = half | (need[:, o] <= cap - used)
            db[:, o] = ok
            used = np.where(ok & ~half, used + need[:, o], used)
    return db


def evaluate_batch(
    layer: Layer, arch: Arch, batch: MappingBatch, energy: EnergyTable | None = None
) -> BatchCost:
    """Access counts, energy and latency of every mapping in `batch`.

    `fits` is False where a tile exceeds a capacity or an input window is not a box (see
    `_window_is_box`); factor products and fanout rules are the caller's (`check_mapping`).
    Latency follows the rule stated in `docs/accelerator.md` ("Latency"): the overlapped
    phase (compute, or the slowest port or network at its bandwidth) plus the stalls of
    transfers that cannot overlap (refills of a level without a second buffer, the first
    fill and the last drain). Mappings that bypass levels (`batch.bypass`) are evaluated in
    groups of equal bypass patterns, each on the chain of the levels that keep each operand.
    """
    energy = energy or resolve_energy(arch, layer)
    bypass = batch.bypass
    if bypass is None or not bypass.any():
        return _evaluate(layer, arch, batch, energy, held_operands(arch))
    B, L = bypass.shape[:2]
    patterns, inverse = np.unique(bypass.reshape(B, -1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    parts = []
    for k, pattern in enumerate(patterns.reshape(-1, L, len(OPERANDS))):
        index = np.flatnonzero(inverse == k)
        skip = tuple(tuple(op for o, op in enumerate(OPERANDS) if row[o]) for row in pattern)
        kept = held_operands(arch, skip)
        parts.append((index, _evaluate(layer, arch, batch.take(index), energy, kept)))
    return _merge(parts, B)


def _merge(parts: list[tuple[np.ndarray, BatchCost]], B: int) -> BatchCost:
    """One `BatchCost` of `B` rows from parts covering the rows at their `index`."""
    out = {}
    for field in fields(BatchCost):
        first = getattr(parts[0][1], field.name)
        if not isinstance(first, np.ndarray):  # per layer, equal in every part
            out[field.name] = first
            continue
        whole = np.empty((B, *first.shape[1:]), dtype=first.dtype)
        for index, part in parts:
            whole[index] = getattr(part, field.name)
        out[field.name] = whole
    return BatchCost(**out)


def _evaluate(
    layer: Layer,
    arch: Arch,
    batch: MappingBatch,
    energy: EnergyTable,
    kept: list[tuple[str, ...]],
) -> BatchCost:
    """`evaluate_batch` for mappings in which level `l` holds the operands `kept[l]`."""
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
    out_bits = float(get_format(layer.output_format).bits_per_element)
    # Bits per element between DRAM (level 0) and the chip for inputs read and final outputs
    # written: raw, or run-length coded by their density (`SparseSupport.rlc_activations`).
    dram_in_bits, dram_out_bits = float(bits[_I]), out_bits
    if arch.sparse.rlc_activations:
        from picojoule.arch.rlc import dram_bits

        dram_in_bits = dram_bits(layer.input_density, float(bits[_I]))
        dram_out_bits = dram_bits(layer.output_density, out_bits)
    # Spatial factors of loops that do not index outputs: each replicates partial sums.
    red = np.where(_REL[_O][None, None, :], 1, Sp).prod(axis=2)
    red_above = np.ones((B, L + 1), dtype=np.int64)
    red_above[:, 1:] = np.cumprod(red, axis=1)

    # Tile bits per instance of every level and operand: capacity and double buffering.
    need = np.zeros((B, L, 3))
    for l in range(L):
        for o, op in enumerate(OPERANDS):
            if op in kept[l]:
                need[:, l, o] = footprint(o, ext[:, l], strides) * bits[o]
    db: dict[int, np.ndarray] = {}  # per level, computed where a stall may arise

    # Port and network limits. Latency work is skipped where none is set.
    inf = np.inf
    ports = [
        (
            lv.bandwidth_bits_per_cycle,
            lv.read_bandwidth_bits_per_cycle,
            lv.write_bandwidth_bits_per_cycle,
        )
        for lv in arch.levels
    ]
    limited_port = [any(v is not None for v in pt) for pt in ports]
    net_bw = [
        (lv.fanout.bandwidth_bits_per_cycle or inf) if lv.fanout is not None else inf
        for lv in arch.levels
    ]
    multicast = [lv.fanout is None or lv.fanout.multicast for lv in arch.levels]
    ov_r = np.zeros((B, L))  # overlapped read bits per instance
    ov_w = np.zeros((B, L))
    ov_net = np.zeros((B, L))  # overlapped network bits per fanout instance
    stall_lv = np.zeros((B, L))  # non-overlapped refill cycles, by the level refilled
    fill = np.zeros(B)
    drain = np.zeros(B)
    real_inputs = np.ones(B)
    halo = any(input_halo(layer))

    has_fanout = [level.fanout is not None for level in arch.levels]
    window_ok = np.ones(B, dtype=bool)
    reads = np.zeros((B, L, 3), dtype=np.int64)
    writes = np.zeros((B, L, 3), dtype=np.int64)
    deliv = np.zeros((B, L, 3), dtype=np.int64)
    latch = arch.mac.latch_operands
    for o, op in enumerate(OPERANDS):
        holders = [l for l in range(L) if op in kept[l]]
        last = _last_indexing(seq, seq_dims, o) if len(holders) > 1 or latch else None
        for j, p in enumerate(holders):
            c = holders[j + 1] if j + 1 < len(holders) else L  # L = the MAC lanes
            if c < L:
                ev = prefix[rows, last[:, c * D - 1] + 1]
                tile = footprint(o, ext[:, c], strides)
            elif latch:  # lanes keep the operand until a loop indexing it advances
                ev, tile = prefix[rows, last[:, -1] + 1], np.ones(B, dtype=np.int64)
            else:
                ev, tile = total_t, np.ones(B, dtype=np.int64)
            # Union over the children of one parent: child extents times fanouts p..c-1
            # (fanout factors of levels [a, c) are sp_suffix[a] // sp_suffix[c]).
            child = ext[:, c] // sp_suffix[:, c]
            union = footprint(o, child * sp_suffix[:, p], strides)
            moved = ev * union * inst[:, p]
            # Elements crossing each fanout f in [p, c): per port under f.
            net_ev: dict[int, np.ndarray] = {}  # elements per fanout instance per event
            for f in range(p, c):
                if not has_fanout[f]:
                    continue
                port = footprint(o, child * sp_suffix[:, f + 1], strides) if f + 1 < c else tile
                deliv[:, f, o] += ev * port * inst[:, f + 1]
                if net_bw[f] < inf:
                    net_ev[f] = (
                        footprint(o, child * sp_suffix[:, f], strides)
                        if multicast[f]
                        else port * sp_total[:, f]
                    ).astype(np.float64)
            if op == "inputs":
                window_ok &= _window_is_box(T, Sp, p, c)
            # Per-event bits at the parent (per instance) and the child (per instance).
            r_p = w_p = r_c = w_c = 0.0
            if op != "outputs":
                if p == 0 and op == "inputs" and halo and not arch.padding_reads:
                    # The zero halo is generated on chip, not read from the outer level.
                    real_inputs = _real_fraction(layer, child * sp_suffix[:, 0])
                    reads[:, p, o] += np.rint(moved * real_inputs).astype(np.int64)
                else:
                    reads[:, p, o] += moved
                if c < L:
                    writes[:, c, o] += ev * tile * inst[:, c]
                r_p = union * (dram_in_bits * real_inputs if p == 0 and op == "inputs" else bits[o])
                w_c = tile * bits[o]
                pf_frac = 0.0
            else:
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
                pf_frac = psum_fills / moved
                w_p = union * bits[o]
                if p == 0:  # the final outputs leave at the output format's width
                    w_p = w_p - out_total * (bits[o] - dram_out_bits) / ev
                r_p = union * bits[o] * pf_frac
                r_c = tile * bits[o]
                w_c = pf_frac * union * bits[o] * inst[:, p] / inst[:, c]  # psum fills
            net_bits = {f: n * bits[o] * (1.0 + pf_frac) for f, n in net_ev.items()}
            lim_p, lim_c = limited_port[p], c < L and limited_port[c]
            if not (lim_p or lim_c or net_bits):
                continue
            if c == L:  # the MAC lanes read (and update) every cycle: always overlapped
                if lim_p:
                    ov_r[:, p] += ev * r_p
                    ov_w[:, p] += ev * w_p
                for f, nb in net_bits.items():
                    ov_net[:, f] += ev * nb
                continue
            t_ev = _port_time(r_p, w_p, ports[p]) if lim_p else 0.0
            if lim_c:
                t_ev = np.maximum(t_ev, _port_time(r_c, w_c, ports[c]))
            for f, nb in net_bits.items():
                t_ev = np.maximum(t_ev, nb / net_bw[f])
            # One event never overlaps: the first fill (operands read), the last drain.
            if op == "outputs":
                drain += t_ev
            else:
                fill += t_ev
            if c not in db:
                db[c] = _double_buffered(arch.levels[c], need[:, c], kept[c])
            later = (ev - 1) * db[c][:, o]  # refills that overlap the work
            stall_lv[:, c] += (ev - 1 - later) * t_ev
            if lim_p:
                ov_r[:, p] += later * r_p
                ov_w[:, p] += later * w_p
            if lim_c:
                ov_r[:, c] += later * r_c
                ov_w[:, c] += later * w_c
            for f, nb in net_bits.items():
                ov_net[:, f] += later * nb

    # Energy: every count at its operand's bits; the final outputs leave at output width.
    access_bits = bits[None, None, :]
    level_e = (reads * access_bits) * energy.read_pj_per_bit[None] + (
        writes * access_bits
    ) * energy.write_pj_per_bit[None]
    level_e[:, 0, _O] -= out_total * (bits[_O] - dram_out_bits) * energy.write_pj_per_bit[0, _O]
    level_e[:, 0, _I] *= dram_in_bits / bits[_I]  # coded input reads (1 when raw)
    net_e = (deliv * access_bits).sum(axis=2) * energy.network_pj_per_bit[None]
    density = arch.sparse.mac_density(layer.weight_density, layer.input_density)
    # A sparse tensor core skips the pruned positions of N:M weights: N/M of the MACs, issued
    # in N/M of the cycles (the index bits select the matching inputs).
    frac = arch.sparse.structured_fraction(layer.weight_pattern) or 1.0
    mac_e = layer.macs * energy.mac_pj * density * frac
    energy_pj = level_e.sum(axis=(1, 2)) + net_e.sum(axis=1) + mac_e
    if frac < 1.0:
        total_t = np.ceil(total_t * frac).astype(np.int64)

    # Latency: the overlapped phase is the slowest of compute (one temporal iteration per
    # cycle), each level's ports and each network; transfers that cannot overlap add to it.
    bw_cycles = np.zeros((B, L))
    steady = total_t.astype(np.float64)
    for l in range(L):
        if limited_port[l]:
            bw_cycles[:, l] = _port_time(ov_r[:, l], ov_w[:, l], ports[l])
            steady = np.maximum(steady, bw_cycles[:, l])
    net_cycles = ov_net / np.array(net_bw)[None, :]
    if any(b < inf for b in net_bw):
        steady = np.maximum(steady, net_cycles.max(axis=1))
    cycles = steady + stall_lv.sum(axis=1) + fill + drain

    fits = window_ok.copy()
    for l, level in enumerate(arch.levels):
        cap_total = level.capacity_bits
        for o, op in enumerate(OPERANDS):
            cap = level.capacity_of(op) if op in kept[l] else None
            if level.partition_bits is not None and cap is not None:
                fits &= need[:, l, o] <= cap
        if level.partition_bits is None and cap_total is not None:
            fits &= need[:, l].sum(axis=1) <= cap_total
    return BatchCost(
        reads=reads,
        writes=writes,
        deliveries=deliv,
        level_energy_pj=level_e,
        network_energy_pj=net_e,
        mac_energy_pj=mac_e,
        compute_cycles=total_t,
        bw_cycles=bw_cycles,
        net_cycles=net_cycles,
        stall_cycles=stall_lv,
        fill_cycles=fill,
        drain_cycles=drain,
        cycles=cycles,
        energy_pj=energy_pj,
        fits=fits,
        used_lanes=inst[:, L],
    )
