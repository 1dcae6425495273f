"""Collective communication cost models (alpha-beta-gamma) and an NCCL-like algorithm choice.

Public API (stable; `picojoule.cluster.calibrate` fits measurements to it):

- `OPS`, `ALGORITHMS` (op -> its algorithms), `PROTOCOLS`;
- `coefficients(op, algorithm, nbytes, n) -> Coefficients(latency_steps, bytes_factor,
  reduce_factor)`: the textbook single-tier cost, so that
      time = alpha * latency_steps + nbytes * bytes_factor / bandwidth
  (+ the gamma term, see `collective_time_s`);
- `collective_time_s(op, algorithm, nbytes, n, alpha_s=..., bandwidth_bytes_per_s=...,
  gamma_s_per_byte=0.0)`: that formula;
- `bus_factor(op, n)`, `bus_bandwidth(op, nbytes, n, time_s)`, `algorithm_bandwidth(nbytes,
  time_s)`: nccl-tests' definitions (NVIDIA/nccl-tests doc/PERFORMANCE.md);
- `cost(op, nbytes, group, algorithm="auto", protocol="auto") -> CollectiveCost`: time, bus
  bandwidth, bytes on each tier and link energy of a collective on a `topology.Group`; "auto"
  takes the fastest candidate, as NCCL's tuner takes the least modelled time
  (src/graph/tuning.cc, ncclTopoGetAlgoTime). `candidates(op, nbytes, group)` lists them all.

Conventions. `nbytes` is nccl-tests' "size": the per-rank buffer for all_reduce, broadcast,
reduce and send_recv; the whole (n-part) buffer for reduce_scatter (input) and all_gather
(output); the per-rank send buffer for all_to_all. `bandwidth` is per rank, per direction (links
are full duplex). `latency_steps` counts sequential link steps; `bytes_factor` is the bytes one
rank sends (and receives) per byte of `nbytes` on its critical path; `reduce_factor` the bytes it
reduces. A ring reaches busbw = bandwidth at large sizes: bus_factor == bytes_factor.

Algorithms (single tier): ring; tree = NCCL's double binary tree (Sanders, Speck and Traeff,
Parallel Computing 2009), each rank sends 2x its buffer over 2*ceil(log2 n) steps; rhd =
recursive halving then doubling (Rabenseifner; Thakur, Rabenseifner and Gropp, IJHPCA 2005: for
n not a power of two the n - p' extra ranks first hand their vector to a partner and get the
result back, + 2 steps and + 2 x nbytes); nvls = in-switch reduction (NVLink SHARP): each GPU
pushes its buffer into the switch once and reads the reduced result back, (n+1)/n x nbytes each
way (S. Jeaugey, NVIDIA/nccl-tests#212: "algbw = busbw * (n+1) / (n-1)"), about half the
2(n-1)/n of a ring; pairwise/direct all-to-all; chain (pipelined ring) and binomial-tree
broadcast/reduce; direct send_recv.

On a two-level group (`cost`) the same algorithms run as NCCL lays them out: a ring visits the
nodes in turn (2(k-1) of its steps cross nodes for all-reduce; bandwidth = min(NVLink per GPU,
the node's NICs)); the tree is a chain inside a node and a tree across nodes; "hierarchical" =
reduce-scatter in the node, all-reduce across nodes on 1/g of the data, all-gather in the node.
Protocols (NCCL's LL, LL128, Simple) trade latency for bandwidth: per-step and launch latencies
are NCCL's own table (tuning.cc baseLat/hwLat, NVIDIA/nccl commit b6475625), scaled by the link's
`latency_us`; LL moves 4 data bytes per 8-byte line (0.5), LL128 120 per 128 (0.9375). The gamma
(reduction) term is 0 in `cost`: NCCL fuses the reduction into the copy and is link-bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from picojoule.cluster.topology import Group, Tier
from picojoule.errors import ConfigError, suggest

__all__ = [
    "OPS",
    "ALGORITHMS",
    "NCCL_ALGORITHMS",
    "PROTOCOLS",
    "Coefficients",
    "coefficients",
    "collective_time_s",
    "bus_factor",
    "bus_bandwidth",
    "algorithm_bandwidth",
    "CollectiveCost",
    "candidates",
    "cost",
]

OPS = (
    "all_reduce",
    "reduce_scatter",
    "all_gather",
    "all_to_all",
    "broadcast",
    "reduce",
    "send_recv",
)
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "all_reduce": ("ring", "tree", "rhd", "nvls", "hierarchical"),
    "reduce_scatter": ("ring", "rhd", "nvls"),
    "all_gather": ("ring", "rhd", "nvls"),
    "all_to_all": ("pairwise", "direct"),
    "broadcast": ("ring", "tree"),
    "reduce": ("ring", "tree"),
    "send_recv": ("direct",),
}
PROTOCOLS = ("LL", "LL128", "Simple")
# What NCCL itself implements: "auto" chooses among these, as NCCL's tuner does; recursive
# halving/doubling (MPI libraries) and the explicit hierarchical all-reduce are opt-in.
NCCL_ALGORITHMS = {"ring", "tree", "nvls", "direct"}
_PROTO_BANDWIDTH = {"LL": 0.5, "LL128": 120 / 128, "Simple": 1.0}
# NCCL tuning.cc (commit b6475625), microseconds: launch latency per algorithm class and the
# per-step hardware latency per link kind. "tree" is NCCL's tree; every other algorithm is a
# sequence of point-to-point steps and uses the ring rows.
_BASE_US = {
    "ring": {"LL": 6.6, "LL128": 14.0, "Simple": 8.4},
    "tree": {"LL": 6.8, "LL128": 14.0, "Simple": 0.0},
}
_HW_US = {
    "nvlink": {"ring": {"LL": 0.6, "LL128": 1.9, "Simple": 3.4},
               "tree": {"LL": 0.6, "LL128": 1.25, "Simple": 28.0}},
    "pci": {"ring": {"LL": 1.0, "LL128": 2.5, "Simple": 5.7},
            "tree": {"LL": 1.0, "LL128": 1.9, "Simple": 28.0}},
    "net": {"ring": {"LL": 2.7, "LL128": 4.0, "Simple": 14.0},
            "tree": {"LL": 5.0, "LL128": 8.5, "Simple": 28.0}},
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Coefficients:
    """time = alpha * latency_steps + nbytes * bytes_factor / bandwidth (+ gamma term)."""

    latency_steps: float
    bytes_factor: float
    reduce_factor: float = 0.0


def _check(op: str, algorithm: str | None = None) -> None:
    if op not in OPS:
        raise ConfigError(f"unknown collective {op!r}{suggest(op, OPS)}")
    if algorithm is not None and algorithm not in ALGORITHMS[op]:
        raise ConfigError(
            f"{op} has no algorithm {algorithm!r}; it has {', '.join(ALGORITHMS[op])}"
        )


def _log2(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


def _pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def coefficients(op: str, algorithm: str, nbytes: float, n: int) -> Coefficients:
    """Single-tier cost coefficients of `op` by `algorithm` on `n` ranks (see module docstring).

    `nbytes` is validated and kept in the signature for algorithms whose coefficients depend on
    the size (none of the present ones do). "hierarchical" needs two tiers: use `cost`.
    """
    _check(op, algorithm)
    if n < 1 or int(n) != n:
        raise ConfigError(f"a collective needs a whole number of ranks >= 1, got {n}")
    if not nbytes >= 0:
        raise ConfigError(f"message size must be >= 0 bytes, got {nbytes}")
    if algorithm == "hierarchical":
        raise ConfigError("hierarchical all_reduce spans two tiers: use cost(op, nbytes, group)")
    n = int(n)
    if n == 1:
        return Coefficients(latency_steps=0, bytes_factor=0)
    part = (n - 1) / n
    if algorithm == "rhd":
        if op != "all_reduce" and not _pow2(n):
            raise ConfigError(f"recursive halving/doubling {op} needs a power-of-two n, got {n}")
        p2 = 1 << int(math.log2(n))
        steps, share = math.log2(p2), (p2 - 1) / p2
        extra = 0 if p2 == n else 1  # Thakur et al. 2005: fold the n - p' extra ranks in and out
        if op == "all_reduce":
            return Coefficients(latency_steps=2 * steps + 2 * extra,
                                bytes_factor=2 * share + 2 * extra,
                                reduce_factor=share + extra)  # fmt: skip
        return Coefficients(latency_steps=steps, bytes_factor=part,
                            reduce_factor=part if op == "reduce_scatter" else 0.0)  # fmt: skip
    if algorithm == "nvls":  # the switch reduces: push nbytes in, read the result out
        if op == "all_reduce":
            return Coefficients(latency_steps=1, bytes_factor=(n + 1) / n)
        return Coefficients(latency_steps=1, bytes_factor=1.0)  # one direction carries nbytes
    table = {
        ("all_reduce", "ring"): (2 * (n - 1), 2 * part, part),
        ("all_reduce", "tree"): (2 * _log2(n), 2.0, 1.0),
        ("reduce_scatter", "ring"): (n - 1, part, part),
        ("all_gather", "ring"): (n - 1, part, 0.0),
        ("all_to_all", "pairwise"): (n - 1, part, 0.0),
        ("all_to_all", "direct"): (1, part, 0.0),
        ("broadcast", "ring"): (n - 1, 1.0, 0.0),
        ("broadcast", "tree"): (_log2(n), _log2(n), 0.0),
        ("reduce", "ring"): (n - 1, 1.0, 1.0),
        ("reduce", "tree"): (_log2(n), _log2(n), _log2(n)),
        ("send_recv", "direct"): (1, 1.0, 0.0),
    }
    steps, factor, reduce = table[(op, algorithm)]
    return Coefficients(latency_steps=steps, bytes_factor=factor, reduce_factor=reduce)


def collective_time_s(
    op: str,
    algorithm: str,
    nbytes: float,
    n: int,
    *,
    alpha_s: float,
    bandwidth_bytes_per_s: float,
    gamma_s_per_byte: float = 0.0,
) -> float:
    """alpha * latency_steps + max(beta term, gamma term): the reduction is pipelined with the
    transfers chunk by chunk, so the slower of the two sets the pace."""
    if bandwidth_bytes_per_s <= 0 or alpha_s < 0 or gamma_s_per_byte < 0:
        raise ConfigError("alpha and gamma must be >= 0 and the bandwidth > 0")
    c = coefficients(op, algorithm, nbytes, n)
    beta = nbytes * c.bytes_factor / bandwidth_bytes_per_s
    return alpha_s * c.latency_steps + max(beta, nbytes * c.reduce_factor * gamma_s_per_byte)


def bus_factor(op: str, n: int) -> float:
    """nccl-tests' busbw / algbw: 2(n-1)/n for all_reduce, (n-1)/n for reduce_scatter,
    all_gather and all_to_all, 1 for broadcast, reduce and send_recv."""
    _check(op)
    if op == "all_reduce":
        return 2 * (n - 1) / n
    if op in ("reduce_scatter", "all_gather", "all_to_all"):
        return (n - 1) / n
    return 1.0


def algorithm_bandwidth(nbytes: float, time_s: float) -> float:
    """nccl-tests' algbw: size / time, B/s."""
    return nbytes / time_s


def bus_bandwidth(op: str, nbytes: float, n: int, time_s: float) -> float:
    """nccl-tests' busbw, B/s: comparable with the link bandwidth whatever n is."""
    return algorithm_bandwidth(nbytes, time_s) * bus_factor(op, n)


@dataclass(frozen=True, kw_only=True)
class CollectiveCost:
    """One collective on a group: time, bandwidths as nccl-tests reports them, bytes and energy.

    `intra_bytes`/`inter_bytes`: bytes sent across each tier, summed over all ranks."""

    op: str
    algorithm: str
    protocol: str
    nbytes: float
    n: int
    time_s: float
    intra_bytes: float
    inter_bytes: float
    energy_pj: float

    @property
    def algbw(self) -> float:
        return algorithm_bandwidth(self.nbytes, self.time_s) if self.time_s > 0 else math.inf

    @property
    def busbw(self) -> float:
        return self.algbw * bus_factor(self.op, self.n)


def _lat(tier: Tier | None, cls: str, proto: str) -> float:
    """Per-step latency of `tier` for an algorithm class and protocol, s: NCCL's table scaled so
    that ring/Simple equals the link's own `latency_us`."""
    if tier is None:
        return 0.0
    table = _HW_US.get(tier.kind, _HW_US["net"])
    return tier.latency_s * table[cls][proto] / table["ring"]["Simple"]


def _bw(tier: Tier | None) -> float:
    return tier.bandwidth_bytes_per_s if tier is not None else math.inf


def _estimate(op: str, algo: str, proto: str, s: float, g: Group) -> tuple[float, float, float]:
    """(time s, intra bytes, inter bytes) of one candidate, or time inf if it cannot run."""
    n, k, per = g.n, g.nodes, g.n_per_node
    frac = _PROTO_BANDWIDTH[proto]
    base = _BASE_US["tree" if algo == "tree" and op == "all_reduce" else "ring"][proto] * 1e-6
    intra, inter = g.intra, g.inter
    ring_bw = min(_bw(intra), per * _bw(inter)) * frac  # a ring is as fast as its slowest hop
    if algo == "nvls":
        if k > 1 or intra is None or intra.nvls_efficiency <= 0 or proto != "Simple":
            return math.inf, 0.0, 0.0
        c = coefficients(op, algo, s, n)
        bw = intra.bandwidth_bytes_per_s * intra.nvls_efficiency
        return intra.nvls_latency_s + s * c.bytes_factor / bw, n * c.bytes_factor * s, 0.0
    if algo == "hierarchical":
        if k == 1 or per == 1:
            return math.inf, 0.0, 0.0
        part = (per - 1) / per
        t_in = 2 * ((per - 1) * _lat(intra, "ring", proto) + part * s / (_bw(intra) * frac))
        shard = s / per
        t_out = 2 * (k - 1) * (_lat(inter, "ring", proto) + shard / k / (_bw(inter) * frac))
        return base + t_in + t_out, 2 * n * part * s, n * 2 * (k - 1) / k * shard
    if algo == "rhd":
        if not (_pow2(n) and _pow2(per)):
            return math.inf, 0.0, 0.0
        return _rhd(op, proto, s, g, base, frac)
    if algo == "tree" and op == "all_reduce":  # NCCL: chain in the node, tree across nodes
        lat = 2 * ((per - 1) * _lat(intra, "tree", proto) + _log2(k) * _lat(inter, "tree", proto))
        inter_bytes = 2 * s * k if k > 1 else 0.0
        return base + lat + 2 * s / ring_bw, 2 * n * s - inter_bytes, inter_bytes
    c = coefficients(op, algo, s, n)
    if op == "all_to_all":  # all peers at once (direct) or one per step (pairwise)
        t_in = s * (per - 1) / n / (_bw(intra) * frac) if per > 1 else 0.0
        t_out = s * (n - per) / n / (_bw(inter) * frac) if k > 1 else 0.0
        if algo == "direct":
            lat = _lat(intra, "ring", proto) + _lat(inter, "ring", proto)
            t = base + lat + max(t_in, t_out)
        else:
            lat = (per - 1) * _lat(intra, "ring", proto) + (n - per) * _lat(inter, "ring", proto)
            t = base + lat + t_in + t_out
        return t, s * (per - 1) / n * n, s * (n - per) / n * n
    # rings and chains, trees of broadcast/reduce, send_recv: the latency steps split by tier
    across = {"all_reduce": 2 * (k - 1), "reduce_scatter": k - 1, "all_gather": k - 1}.get(op, 0)
    if algo == "tree" or op in ("broadcast", "reduce", "send_recv"):
        across = _log2(k) if algo == "tree" else k - 1
    lat = (c.latency_steps - across) * _lat(intra, "ring", proto)
    lat += across * _lat(inter, "ring", proto)
    total = n * c.bytes_factor * s if op not in ("broadcast", "reduce") else (n - 1) * s
    ring_like = op in ("all_reduce", "reduce_scatter", "all_gather")
    inter_bytes = 0.0 if k == 1 else total * (k / n if ring_like else (k - 1) / (n - 1))
    return base + lat + s * c.bytes_factor / ring_bw, total - inter_bytes, inter_bytes


def _rhd(op: str, proto: str, s: float, g: Group, base: float, frac: float):
    """Recursive halving (reduce-scatter) and doubling (all-gather), step by step: a step whose
    partner is >= n_per_node ranks away crosses nodes (ranks are numbered node by node)."""
    n, per = g.n, g.n_per_node
    steps = int(math.log2(n))
    t, intra_b, inter_b = base, 0.0, 0.0
    for i in range(1, steps + 1):  # halving: partner n / 2^i away, s / 2^i bytes
        tier = g.inter if n >> i >= per else g.intra
        chunk = s / (1 << i)
        t += _lat(tier, "ring", proto) + chunk / (_bw(tier) * frac)
        if tier is g.inter:
            inter_b += n * chunk
        else:
            intra_b += n * chunk
    if op == "all_reduce":  # doubling mirrors halving
        return base + 2 * (t - base), 2 * intra_b, 2 * inter_b
    return t, intra_b, inter_b


def _energy_pj(intra_bytes: float, inter_bytes: float, g: Group) -> float:
    e = 0.0
    if g.intra is not None:
        e += intra_bytes * 8 * g.intra.energy_pj_per_bit
    if g.inter is not None:
        e += inter_bytes * 8 * g.inter.energy_pj_per_bit
    return e


def candidates(op: str, nbytes: float, group: Group, *, pool: str = "all") -> list[CollectiveCost]:
    """Every (algorithm, protocol) that can run `op` on `group`, fastest first; `pool="nccl"`
    keeps NCCL's own algorithms (ring, tree, nvls, direct p2p)."""
    _check(op)
    out = []
    for algo in ALGORITHMS[op]:
        if pool == "nccl" and algo not in NCCL_ALGORITHMS:
            continue
        for proto in PROTOCOLS:
            got = _cost_of(op, algo, proto, nbytes, group)
            if got is not None:
                out.append(got)
    return sorted(out, key=lambda c: c.time_s)


def _cost_of(op: str, algo: str, proto: str, s: float, g: Group) -> CollectiveCost | None:
    if g.n == 1 or s == 0:
        return CollectiveCost(op=op, algorithm=algo, protocol=proto, nbytes=s, n=g.n, time_s=0.0,
                              intra_bytes=0.0, inter_bytes=0.0, energy_pj=0.0)  # fmt: skip
    if op == "send_recv" and g.n != 2:
        raise ConfigError(f"send_recv is between 2 ranks, got a group of {g.n}")
    t, intra_b, inter_b = _estimate(op, algo, proto, s, g)
    if not math.isfinite(t):
        return None
    return CollectiveCost(op=op, algorithm=algo, protocol=proto, nbytes=s, n=g.n, time_s=t,
                          intra_bytes=intra_b, inter_bytes=inter_b,
                          energy_pj=_energy_pj(intra_b, inter_b, g))  # fmt: skip


def cost(
    op: str, nbytes: float, group: Group, *, algorithm: str = "auto", protocol: str = "auto"
) -> CollectiveCost:
    """Cost of `op` on `group` with the given algorithm/protocol; "auto" = the fastest of
    NCCL's own algorithms (name rhd or hierarchical to get those)."""
    _check(op, None if algorithm == "auto" else algorithm)
    if protocol != "auto" and protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; use {', '.join(PROTOCOLS)} or auto")
    if not nbytes >= 0:
        raise ConfigError(f"message size must be >= 0 bytes, got {nbytes}")
    found = candidates(op, nbytes, group, pool="nccl" if algorithm == "auto" else "all")
    pool = [c for c in found if algorithm in ("auto", c.algorithm)]
    pool = [c for c in pool if protocol in ("auto", c.protocol)]
    if not pool:
        raise ConfigError(
            f"{op} by {algorithm}/{protocol} cannot run on {group.n_per_node} x {group.nodes} "
            "ranks here (nvls needs one NVSwitch domain with NVLink SHARP; rhd needs powers of "
            "two; hierarchical needs several nodes with several GPUs each)"
        )
    return pool[0]
