"""Collective cost formulas against direct step-by-step simulations, and the preset constants
against published nccl-tests bus bandwidths."""

from __future__ import annotations

import math

import pytest

from picojoule.cluster.collectives import (
    ALGORITHMS,
    OPS,
    bus_bandwidth,
    bus_factor,
    candidates,
    coefficients,
    collective_time_s,
    cost,
)
from picojoule.cluster.topology import system
from picojoule.errors import ConfigError

GB = 1e9
LARGE = 8 * 2**30  # nccl-tests' largest size (-e 8G): latency no longer matters

# --- direct implementations: move real numbers, count the bytes each rank sends per step ---------


def _ring_reduce_scatter(data: list[list[float]], sent: list[float], chunk: float) -> int:
    """In place: after n-1 steps rank r holds the full sum of chunk (r + 1) % n."""
    n = len(data)
    for step in range(n - 1):
        msgs = [(r, (r - step) % n, data[r][(r - step) % n]) for r in range(n)]
        for r, c, value in msgs:  # every rank sends one chunk to its right neighbour at once
            data[(r + 1) % n][c] += value
            sent[r] += chunk
    return n - 1


def _ring_all_gather(data: list[list[float]], sent: list[float], chunk: float, start: int) -> int:
    n = len(data)
    for step in range(n - 1):
        msgs = [(r, (r + start - step) % n, data[r][(r + start - step) % n]) for r in range(n)]
        for r, c, value in msgs:
            data[(r + 1) % n][c] = value
            sent[r] += chunk
    return n - 1


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9])
def test_ring_all_reduce_matches_a_step_by_step_ring(n: int) -> None:
    size = 1000.0  # bytes per rank, n chunks of size / n
    data = [[float(10 * r + c) for c in range(n)] for r in range(n)]
    want = [sum(data[r][c] for r in range(n)) for c in range(n)]
    sent = [0.0] * n
    steps = _ring_reduce_scatter(data, sent, size / n)
    steps += _ring_all_gather(data, sent, size / n, start=1)
    assert all(row == want for row in data)  # the simulation really all-reduces
    c = coefficients("all_reduce", "ring", size, n)
    assert c.latency_steps == steps == 2 * (n - 1)
    assert max(sent) == min(sent) == pytest.approx(c.bytes_factor * size)
    assert c.bytes_factor == pytest.approx(bus_factor("all_reduce", n))


@pytest.mark.parametrize("n", [2, 4, 7, 8])
def test_ring_reduce_scatter_and_all_gather(n: int) -> None:
    total = 4096.0  # nccl-tests size: the whole n-part buffer
    data = [[1.0] * n for _ in range(n)]
    sent = [0.0] * n
    steps = _ring_reduce_scatter(data, sent, total / n)
    assert all(data[r][(r + 1) % n] == n for r in range(n))
    for op in ("reduce_scatter", "all_gather"):
        c = coefficients(op, "ring", total, n)
        assert c.latency_steps == steps and max(sent) == pytest.approx(c.bytes_factor * total)


@pytest.mark.parametrize("n", [2, 4, 8, 16, 5, 6, 12])
def test_recursive_halving_doubling_simulated(n: int) -> None:
    """Rabenseifner's all-reduce; n not a power of two folds the extra ranks in first (they
    send their whole vector) and hands them the result at the end (the simple variant of Thakur
    et al. 2005). The critical path is the sum over steps of the largest message of the step."""
    size, width = 1024.0, 16
    vec = [[float(r + 1) * (c + 1) for c in range(width)] for r in range(n)]
    want = [sum(v[c] for v in vec) for c in range(width)]
    p2 = 1 << int(math.log2(n))
    path: list[float] = []  # bytes of the largest message, step by step
    if p2 != n:  # fold: rank p2 + i hands its vector to rank i
        for i in range(n - p2):
            vec[i] = [a + b for a, b in zip(vec[i], vec[p2 + i], strict=True)]
        path.append(size)
    lo, hi = [0] * p2, [width] * p2
    d = p2 // 2
    while d:  # halving: keep half of my range, send the other half to the partner d away
        new = [row[:] for row in vec]
        step = 0.0
        for r in range(p2):
            q, mid = r ^ d, (lo[r] + hi[r]) // 2
            keep = (lo[r], mid) if r < q else (mid, hi[r])
            for c in range(*keep):
                new[r][c] = vec[r][c] + vec[q][c]
            step = max(step, size * (hi[r] - lo[r]) / 2 / width)
            lo[r], hi[r] = keep
        vec, d = new, d // 2
        path.append(step)
    d = 1
    while d < p2:  # doubling: send my reduced range to the partner, receive theirs
        new = [row[:] for row in vec]
        step = 0.0
        for r in range(p2):
            q = r ^ d
            for c in range(lo[q], hi[q]):
                new[r][c] = vec[q][c]
            step = max(step, size * (hi[r] - lo[r]) / width)
        for r in range(p2):
            q = r ^ d
            lo[r], hi[r] = min(lo[r], lo[q]), max(hi[r], hi[q])
        vec, d = new, d * 2
        path.append(step)
    if p2 != n:  # unfold: the result back to the extra ranks
        for i in range(n - p2):
            vec[p2 + i] = vec[i][:]
        path.append(size)
    assert all(v == want for v in vec)
    c = coefficients("all_reduce", "rhd", size, n)
    assert c.latency_steps == len(path)
    assert sum(path) == pytest.approx(c.bytes_factor * size)


def _btree_parent(rank: int, n: int) -> int:
    """NCCL's binary tree (src/graph/trees.cc): root 0; a rank's parent flips its lowest set
    bit and sets the next one up (or only flips it when that leaves the range). Odd ranks are
    leaves."""
    if rank == 0:
        return -1
    bit = rank & -rank
    up = (rank ^ bit) | (bit << 1)
    return up if up < n else rank ^ bit


@pytest.mark.parametrize("n", [2, 3, 4, 7, 8, 16, 33, 64])
def test_double_binary_tree_bytes_and_depth(n: int) -> None:
    """NCCL's double binary tree (Sanders, Speck and Traeff 2009): two trees each carry half
    the buffer; the second mirrors the first (n even) or shifts it by one (n odd), so a rank is
    an inner node of at most one tree. Reduce up, broadcast down: a rank sends at most 2x its
    buffer, over at most 2 ceil(log2 n) steps."""
    size = 1.0
    sent = [0.0] * n
    depth = 0
    for tree in (0, 1):
        if tree == 0:
            parent = {r: _btree_parent(r, n) for r in range(n)}
        elif n % 2 == 0:  # mirror
            parent = {n - 1 - r: (n - 1 - p if p >= 0 else -1)
                      for r, p in ((r, _btree_parent(r, n)) for r in range(n))}  # fmt: skip
        else:  # shift by one
            parent = {(r + 1) % n: ((p + 1) % n if p >= 0 else -1)
                      for r, p in ((r, _btree_parent(r, n)) for r in range(n))}  # fmt: skip
        for r in range(n):
            hops, q = 0, r
            while parent[q] >= 0:
                q, hops = parent[q], hops + 1
            depth = max(depth, hops)
            children = sum(1 for c in range(n) if parent[c] == r)
            assert children <= 2
            sent[r] += (size / 2 if parent[r] >= 0 else 0) + children * size / 2
    c = coefficients("all_reduce", "tree", size, n)
    assert max(sent) <= c.bytes_factor * size + 1e-12
    if n >= 4:
        assert max(sent) == pytest.approx(c.bytes_factor * size)
    assert 2 * depth <= c.latency_steps == 2 * math.ceil(math.log2(n))


@pytest.mark.parametrize("n", [2, 4, 8, 72])
def test_in_switch_reduction_halves_what_a_gpu_sends(n: int) -> None:
    """NVLS: each GPU's shards are pulled into the switch and reduced (multimem.ld_reduce), then
    each GPU writes its reduced shard once and the switch multicasts it (multimem.st)."""
    size = 1.0
    shard = size / n
    out = n * shard + shard  # every shard of my buffer, then my reduced shard
    into = shard + n * shard  # my reduced shard, then every reduced shard by multicast
    c = coefficients("all_reduce", "nvls", size, n)
    assert c.bytes_factor == pytest.approx(out) == pytest.approx(into)
    ring = coefficients("all_reduce", "ring", size, n).bytes_factor
    assert c.bytes_factor / ring == pytest.approx((n + 1) / (2 * (n - 1)))
    if n >= 8:  # about half of a ring's bytes, approaching 1/2
        assert c.bytes_factor / ring < 0.65


def test_chain_broadcast_pipelined_limit() -> None:
    """A pipelined chain of k chunks costs (k + n - 2)(alpha + S/(k B)); k -> inf gives
    (n - 1) alpha-steps... the model keeps the n - 1 hops and S / B."""
    n, s, bw, alpha = 8, 2**30, 100e9, 5e-6
    k = 10_000
    chain = (k + n - 2) * (s / (k * bw))
    assert collective_time_s("broadcast", "ring", s, n, alpha_s=0, bandwidth_bytes_per_s=bw) == (
        pytest.approx(chain, rel=1e-3)
    )
    t = collective_time_s("broadcast", "ring", s, n, alpha_s=alpha, bandwidth_bytes_per_s=bw)
    assert t == pytest.approx((n - 1) * alpha + s / bw)


def test_alpha_beta_gamma() -> None:
    t = collective_time_s("all_reduce", "ring", 8e6, 4, alpha_s=1e-5, bandwidth_bytes_per_s=1e10)
    assert t == pytest.approx(6e-5 + 8e6 * 1.5 / 1e10)
    slow = collective_time_s("all_reduce", "ring", 8e6, 4, alpha_s=0, bandwidth_bytes_per_s=1e10,
                             gamma_s_per_byte=1e-9)  # fmt: skip
    assert slow == pytest.approx(8e6 * 0.75 * 1e-9)  # reduction slower than the link: it paces


def test_nccl_tests_bus_factors() -> None:
    """NVIDIA/nccl-tests doc/PERFORMANCE.md."""
    assert bus_factor("all_reduce", 8) == pytest.approx(1.75)
    for op in ("reduce_scatter", "all_gather", "all_to_all"):
        assert bus_factor(op, 8) == pytest.approx(7 / 8)
    for op in ("broadcast", "reduce", "send_recv"):
        assert bus_factor(op, 8) == 1
    assert bus_bandwidth("all_reduce", 1e9, 8, 1.0) == pytest.approx(1.75e9)


def test_every_op_and_algorithm_has_coefficients() -> None:
    for op in OPS:
        for algo in ALGORITHMS[op]:
            if algo == "hierarchical":
                continue
            n = 2 if op == "send_recv" else 8
            c = coefficients(op, algo, 1e6, n)
            assert c.latency_steps >= 1 and c.bytes_factor > 0
            assert coefficients(op, algo, 1e6, 1).bytes_factor == 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("all_reduse", "ring", 1, 8), "did you mean: all_reduce"),
        (("all_reduce", "butterfly", 1, 8), "has no algorithm"),
        (("reduce_scatter", "rhd", 1, 6), "power-of-two"),
        (("all_reduce", "hierarchical", 1, 8), "two tiers"),
        (("all_reduce", "ring", -1, 8), ">= 0 bytes"),
        (("all_reduce", "ring", 1, 0), "ranks"),
    ],
)
def test_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        coefficients(*args)


# --- the preset constants against published nccl-tests numbers (large messages, 8 GiB) ----------


def _within(got: float, want: float, tol: float = 0.15) -> None:
    assert abs(got / want - 1) <= tol, f"{got:.1f} vs published {want:.1f} GB/s"


def test_dgx_a100_all_reduce_busbw() -> None:
    """~230 GB/s: nccl-tests on one DGX A100, 8 GPUs, 232.54 GB/s (NVIDIA/nccl-tests#175);
    NCCL's own tuner capped Ampere at 235 GB/s (tuning.cc, NCCL 2.10). Model: 300 GB/s per
    direction x 0.80 (NCCL protocol overhead, stated for H100 in nccl-tests#212) = 240."""
    s = system("dgx-a100")
    c = cost("all_reduce", LARGE, s.group(8, 1))
    assert (c.algorithm, c.protocol) == ("ring", "Simple")
    _within(c.busbw / GB, 230)


def test_dgx_h100_ring_and_nvls_busbw() -> None:
    """S. Jeaugey (NCCL), NVIDIA/nccl-tests#212: "NCCL can get an effective NVLink bandwidth of
    370GB/s ... with NCCL_ALGO=RING"; with NVLink SHARP "on 8 GPUs ... a peak busBw of ~480GB/s
    (algbw ~275GB/s)". NVLS is modelled from its traffic ((n+1)/n each way) and NCCL's
    nvlsEfficiency 0.85 - not fitted to the 480."""
    g = system("dgx-h100").group(8, 1)
    _within(cost("all_reduce", LARGE, g, algorithm="ring").busbw / GB, 370)
    auto = cost("all_reduce", LARGE, g)
    assert auto.algorithm == "nvls"  # NCCL uses NVLS by default on H100 for large all-reduces
    _within(auto.busbw / GB, 480)
    _within(auto.algbw / GB, 275)


def test_nvlink5_ring_and_nvls_busbw() -> None:
    """NVIDIA/nccl#2140 (8x B300, NVLink 5 like B200): busbw 695 (NVLS off) and 845 GB/s (NVLS
    on). Our B200 preset: 900 x 0.8 ring, NVLS with NCCL's Blackwell efficiency 0.74."""
    g = system("dgx-b200").group(8, 1)
    _within(cost("all_reduce", LARGE, g, algorithm="ring").busbw / GB, 695)
    _within(cost("all_reduce", LARGE, g).busbw / GB, 845)


def test_inter_node_per_nic() -> None:
    """NDR: "For NDR @ 400Gbps you should see 46-48GB/s per NIC" (NVIDIA, nccl-tests#290);
    HDR: "the peak for 200G HDR is 24GB/s" (S. Jeaugey, nccl#412). One GPU per node isolates
    one NIC; two full DGX A100 nodes are NIC-bound (8 HDR < NVLink); two DGX H100 nodes are
    NVLink-bound (8 x 47 > 360), so their busbw per NIC sits just under the NIC figure."""
    h100, a100 = system("dgx-h100"), system("dgx-a100")
    one = cost("all_reduce", LARGE, h100.group(1, 2, concurrent=1), algorithm="ring")
    _within(one.busbw / GB, 47)
    one = cost("all_reduce", LARGE, a100.group(1, 2, concurrent=1), algorithm="ring")
    _within(one.busbw / GB, 24)
    two = cost("all_reduce", LARGE, a100.group(8, 2), algorithm="ring")
    _within(two.busbw / 8 / GB, 24)
    two = cost("all_reduce", LARGE, h100.group(8, 2), algorithm="ring")
    _within(two.busbw / 8 / GB, 47)


# --- the tuner and the two-level layouts ---------------------------------------------------------


def test_tuner_picks_latency_then_bandwidth() -> None:
    g = system("dgx-a100").group(8, 1)
    small, large = cost("all_reduce", 8, g), cost("all_reduce", LARGE, g)
    assert small.protocol == "LL" and large.protocol == "Simple"
    assert 5e-6 < small.time_s < 30e-6  # NCCL: a few us launch + 14 x 0.6 us LL steps
    prev = 0.0
    for size in (2**k for k in range(3, 34, 2)):
        c = cost("all_reduce", size, g)
        assert c.time_s >= prev  # more bytes never take less time
        assert all(c.time_s <= o.time_s + 1e-15 for o in candidates("all_reduce", size, g,
                                                                      pool="nccl"))  # fmt: skip
        prev = c.time_s


def test_auto_uses_nccl_algorithms_only() -> None:
    """RHD (MPI) and the explicit hierarchical all-reduce are opt-in, as NCCL has neither."""
    g = system("dgx-h100").group(8, 4)
    for size in (8, 2**20, LARGE):
        assert cost("all_reduce", size, g).algorithm in ("ring", "tree", "nvls")
    h = cost("all_reduce", LARGE, g, algorithm="hierarchical")
    s = system("dgx-h100")
    intra, inter = s.intra_tier(), s.inter_tier()
    shard = LARGE / 8
    want = 2 * (7 / 8) * LARGE / intra.bandwidth_bytes_per_s + 2 * (3 / 4) * shard / (
        inter.bandwidth_bytes_per_s
    )
    assert h.time_s == pytest.approx(want, rel=0.01)  # RS in node + AR across + AG in node


def test_rhd_crosses_nodes_step_by_step() -> None:
    s = system("dgx-a100")
    flat = cost("all_reduce", LARGE, s.group(8, 1), algorithm="rhd")
    two = cost("all_reduce", LARGE, s.group(8, 2), algorithm="rhd")
    assert two.inter_bytes == pytest.approx(16 * 2 * LARGE / 2)  # the first halving crosses
    assert flat.inter_bytes == 0 and two.time_s > flat.time_s
    with pytest.raises(ConfigError, match="cannot run"):
        cost("all_reduce", LARGE, s.group(6, 1), algorithm="rhd")


def test_nvls_needs_the_switch() -> None:
    with pytest.raises(ConfigError, match="nvls needs one NVSwitch domain"):
        cost("all_reduce", LARGE, system("dgx-a100").group(8, 1), algorithm="nvls")
    with pytest.raises(ConfigError, match="cannot run"):
        cost("all_reduce", LARGE, system("dgx-h100").group(8, 2), algorithm="nvls")


def test_bytes_and_energy_per_tier() -> None:
    s = system("dgx-h100")
    c = cost("all_reduce", 1e9, s.group(8, 1), algorithm="ring")
    assert c.intra_bytes == pytest.approx(8 * 1.75e9) and c.inter_bytes == 0
    assert c.energy_pj == pytest.approx(8 * 1.75e9 * 8 * s.intra_tier().energy_pj_per_bit)
    two = cost("all_reduce", 1e9, s.group(8, 2), algorithm="ring")
    assert two.inter_bytes == pytest.approx(2 * 2 * 15 / 16 * 1e9)  # 2 of 16 ring hops cross
    a2a = cost("all_to_all", 1e9, s.group(8, 2))
    assert a2a.inter_bytes == pytest.approx(16 * 1e9 * 8 / 16)
    p2p = cost("send_recv", 1e8, s.group(1, 2))
    assert p2p.inter_bytes == pytest.approx(2e8) and p2p.intra_bytes == 0
    assert cost("all_reduce", 1e9, s.group(1, 1)).time_s == 0
