"""Parallel training and serving plans: step time, memory, MFU and energy per GPU cluster.

Public: `ParallelPlan`, `ServingPlan`, `Assumptions`, `plan_training(model, system, gpus,
plan)`, `plan_serving(model, system, gpus, plan)`, `search_plans(model, system, gpus, ...)`
(over `plan_candidates`), and the result types `TrainingEstimate`, `ServingEstimate`,
`CommItem`, `Memory`, `Energy`.

The model, one training step (every rule below is an assumption the docs repeat):
- Ranks are placed as Megatron-LM does: tensor parallel (TP) innermost, then data parallel
  (DP), then pipeline parallel (PP) outermost; expert parallel (EP) inside DP.
- Compute per layer and micro-batch is a roofline per GEMM: max(FLOPs / (datasheet dense peak x
  `math_efficiency`), bytes / (HBM bandwidth x `memory_efficiency`)), plus elementwise traffic at
  HBM speed (`models.py` counts both). Backward = 2x forward (flash attention: 2.5x on the
  attention matmuls, FlashAttention-2's 5 vs 2 matmuls); full recomputation adds one forward,
  selective the attention core.
- TP: 2 all-reduces per layer forward, 2 backward (+2 with full recomputation) of b*s*h
  activations - reduce-scatter + all-gather under sequence parallelism, the same bytes - NOT
  overlapped with compute. EP: 2 all-to-alls forward and 2 backward per MoE layer.
- PP: 1F1B; per micro-batch each stage sends its activation forward and its gradient backward
  (1/t of it per TP rank, Megatron's scatter/gather), not overlapped. Step = m x (slowest stage)
  + (p-1)/v x (mean stage): the bubble fraction (p-1)/(v m) of Narayanan et al. (SC21).
- DP: ZeRO-0 all-reduces gradients, ZeRO-1/2 reduce-scatter them and all-gather the updated
  weights, ZeRO-3 (FSDP) all-gathers weights before each layer's forward and backward and
  reduce-scatters gradients, per micro-batch. Gradient reduction overlaps the backward pass of
  the last micro-batch except the last bucket, and the ZeRO-1/2 weight all-gather overlaps the
  forward pass of the next step's first micro-batch except the first bucket
  (`overlap_grad_reduce`, as Megatron-LM's overlap-grad-reduce/overlap-param-gather; 25 MiB
  buckets, PyTorch DDP's default); ZeRO-3 traffic hides behind compute except one layer's
  gather and one layer's reduce-scatter.
- Optimizer step: memory-bound, `optimizer_bytes_per_param` read and written once.
- Memory per GPU: weights, gradients, optimizer states (mixed-precision Adam: 2 + 2 + 12 = 16 B
  per parameter, Rajbhandari et al., ZeRO, SC20), activations (Korthikanti et al. 2022) of the
  micro-batches in flight (1F1B: p on the first stage; x (1 + (p-1)/(p v)) interleaved), logits
  in fp32 on the last stage; usable = capacity x (1 - `memory_reserve`).
- Energy per step: GPUs draw busy power while computing and wait power while idle (bubble,
  exposed communication); busy energy splits into math (FLOPs x the picojoule MAC model at the
  GPU's node), HBM (bytes x DRAM pJ/bit) and the rest (on-chip data movement, control, static);
  links add bytes x pJ/bit per tier (NICs, switches and optics beyond the GPU board).

Serving: TP on a node, prefill (compute-bound) and decode (weights and KV cache read per token,
2 latency-bound all-reduces per layer per token); weights and KV cache at any bit width.

One module (over 600 lines) because training, serving and search share the placement, roofline
and energy helpers; the result types are plain frozen dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from picojoule.cluster.collectives import CollectiveCost, cost
from picojoule.cluster.models import Gemm, Recompute, TransformerConfig
from picojoule.cluster.topology import Group, System
from picojoule.errors import ConfigError

__all__ = [
    "Assumptions",
    "ParallelPlan",
    "ServingPlan",
    "CommItem",
    "Memory",
    "Energy",
    "TrainingEstimate",
    "ServingEstimate",
    "plan_training",
    "plan_serving",
    "search_plans",
    "plan_candidates",
    "rejection",
    "pareto_front",
]

GIB = 2**30
MAX_GPUS = 1_048_576


@dataclass(frozen=True, kw_only=True)
class Assumptions:
    """The planner's stated constants; every one can be changed (`--math-efficiency` ...)."""

    # Achievable fraction of the datasheet dense peak for a large GEMM. One value for every GPU
    # and model, calibrated: 0.72 minimizes the worst error (5.9%) over the 13 published
    # Megatron-LM measurements in tests/cluster/test_plan.py (22B-1T, 8-3072 A100s); any value
    # in 0.60-0.86 keeps all 13 within 20%. Not measured on H100/B200 (docs/cluster.md).
    math_efficiency: float = 0.72
    memory_efficiency: float = 0.8  # assumption: of datasheet HBM bandwidth, streaming kernels
    weight_bytes_per_param: float = 2.0  # bf16/fp16 working weights
    grad_bytes_per_param: float = 2.0  # ZeRO paper's 2 bytes; Megatron's fp32 main grads: 4
    optimizer_bytes_per_param: float = 12.0  # fp32 master weights + Adam m and v
    optimizer_traffic_bytes_per_param: float = 30.0  # read+write master, m, v; read grad; write w
    logits_bytes: float = 4.0  # fp32 logits kept for the loss
    memory_reserve: float = 0.10  # assumption: CUDA context, NCCL buffers, fragmentation
    bucket_bytes: float = 25 * 2**20  # torch DDP bucket_cap_mb default
    check_memory: bool = True

    def __post_init__(self) -> None:
        for name in ("math_efficiency", "memory_efficiency"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise ConfigError(f"{name} {v}: give a fraction in (0, 1]")
        if not 0 <= self.memory_reserve < 1:
            raise ConfigError(f"memory_reserve {self.memory_reserve}: give a fraction in [0, 1)")


@dataclass(frozen=True, kw_only=True)
class ParallelPlan:
    """How one training step is split over the GPUs (dp = gpus / (tp x pp) when left 0)."""

    tp: int = 1
    pp: int = 1
    dp: int = 0
    ep: int = 1
    zero: int = 0  # 0..3; 3 = FSDP
    micro_batch: int = 1
    global_batch: int = 0  # sequences per step; 0 = dp x micro_batch (one micro-batch)
    seq_len: int = 0  # 0 = the model's context length
    recompute: Recompute = "none"
    sequence_parallel: bool = False
    virtual_stages: int = 1  # interleaved 1F1B chunks per stage
    flash_attention: bool = True
    overlap_grad_reduce: bool = True
    math_format: str = "bf16"  # GPU peak used for GEMMs (bf16, fp16, e4m3 ...)
    grad_bits: int = 16  # DP gradients on the wire
    act_bits: int = 16  # TP / PP / EP activations on the wire


@dataclass(frozen=True, kw_only=True)
class ServingPlan:
    """Inference with tensor parallelism: `batch` concurrent sequences per replica."""

    tp: int = 0  # 0 = every GPU in one TP group
    batch: int = 1
    prompt: int = 512
    decode: int = 128
    weight_bits: float = 16  # layer weights (embeddings and LM head stay 16-bit)
    kv_bits: float = 16
    act_bits: int = 16
    math_format: str = "bf16"


@dataclass(frozen=True, kw_only=True)
class CommItem:
    """One kind of collective in a step: `calls` calls of `nbytes` each."""

    name: str
    op: str
    algorithm: str
    protocol: str
    nbytes: float
    calls: float
    group: str
    time_s: float  # all calls, per GPU
    exposed_s: float  # on the critical path
    energy_pj: float  # link energy, whole cluster


@dataclass(frozen=True, kw_only=True)
class Memory:
    """Bytes per GPU on its fullest pipeline stage."""

    weights: float
    grads: float
    optimizer: float
    activations: float
    other: float
    capacity: float

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.other


@dataclass(frozen=True, kw_only=True)
class Energy:
    """Joules for the whole cluster: GPU busy energy split three ways, links, waiting GPUs."""

    math_j: float
    memory_j: float
    other_j: float
    link_j: float
    wait_j: float

    @property
    def total_j(self) -> float:
        return self.math_j + self.memory_j + self.other_j + self.link_j + self.wait_j


@dataclass(frozen=True, kw_only=True)
class TrainingEstimate:
    model: str
    system: str
    gpu: str
    gpus: int
    plan: ParallelPlan
    micro_batches: int
    step_time_s: float
    compute_s: float  # per GPU, mean stage
    tp_comm_s: float
    p2p_s: float
    bubble_s: float
    dp_exposed_s: float
    optimizer_s: float
    comms: tuple[CommItem, ...]
    memory: Memory
    model_flops: float  # per step, 6N-style (no recomputation)
    hardware_flops: float  # per step, what the GPUs execute
    peak_flops: float  # one GPU, dense, math_format
    tokens: float  # per step
    energy: Energy
    notes: tuple[str, ...] = ()

    @property
    def mfu(self) -> float:
        return self.model_flops / (self.gpus * self.peak_flops * self.step_time_s)

    @property
    def hfu(self) -> float:
        return self.hardware_flops / (self.gpus * self.peak_flops * self.step_time_s)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.step_time_s


@dataclass(frozen=True, kw_only=True)
class ServingEstimate:
    model: str
    system: str
    gpu: str
    gpus: int
    plan: ServingPlan
    replicas: int
    prefill_s: float  # one batch of prompts
    decode_step_s: float  # one token for every sequence of the batch, mean context
    decode_comm_s: float  # of which TP all-reduces
    comm: CommItem
    memory: Memory
    prefill_energy: Energy
    decode_energy: Energy  # one decode step, whole cluster

    @property
    def tokens_per_s(self) -> float:
        return self.replicas * self.plan.batch / self.decode_step_s

    @property
    def j_per_token(self) -> float:
        return self.decode_energy.total_j / (self.replicas * self.plan.batch)

    @property
    def prefill_j_per_token(self) -> float:
        return self.prefill_energy.total_j / (self.replicas * self.plan.batch * self.plan.prompt)


@dataclass(kw_only=True)
class _Work:
    """Additive per-GPU work: time, FLOPs executed, HBM bytes."""

    time_s: float = 0.0
    flops: float = 0.0
    hbm_bytes: float = 0.0

    def __add__(self, other: _Work) -> _Work:
        return _Work(time_s=self.time_s + other.time_s, flops=self.flops + other.flops,
                     hbm_bytes=self.hbm_bytes + other.hbm_bytes)  # fmt: skip

    def scale(self, k: float) -> _Work:
        return _Work(time_s=self.time_s * k, flops=self.flops * k, hbm_bytes=self.hbm_bytes * k)


@dataclass(frozen=True, kw_only=True)
class _Rates:
    peak: float  # op/s, achievable
    bw: float  # B/s, achievable

    def gemms(self, gemms: list[Gemm], act_b: float, w_b: float) -> _Work:
        out = _Work()
        for g in gemms:
            f, by = g.flops(), g.bytes(act_b, w_b)
            out += _Work(time_s=max(f / self.peak, by / self.bw), flops=f, hbm_bytes=by)
        return out

    def stream(self, nbytes: float) -> _Work:
        return _Work(time_s=nbytes / self.bw, hbm_bytes=nbytes)


def _peak_key(system: System, fmt: str) -> str:
    g = system.gpu
    if g.has(fmt):
        return fmt
    for alt in ("bf16", "fp16", "fp32"):
        if fmt in ("bf16", "fp16") and g.has(alt):
            return alt  # Pascal/Volta train in fp16: same bytes, their 16-bit tensor rate
    raise ConfigError(f"{g.name} has no {fmt} peak; it lists {', '.join(g.peak_tops)}")


def _rates(system: System, fmt: str, a: Assumptions) -> tuple[_Rates, str]:
    key = _peak_key(system, fmt)
    peak = system.gpu.peak(key) * a.math_efficiency
    return _Rates(peak=peak, bw=system.gpu.bandwidth_bytes_per_s * a.memory_efficiency), key


def _pj_per_flop(system: System, key: str) -> float:
    from picojoule.energy.mac import mac_energy

    names = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16", "e4m3": "e4m3",
             "e5m2": "e5m2", "int8": "int8", "e2m1": "e2m1"}  # fmt: skip
    return mac_energy(names.get(key, "bf16"), node_nm=system.gpu.node_nm).energy_pj / 2


def _dram_pj_per_bit(system: System) -> float:
    from picojoule.energy.memory import dram_energy_pj_per_bit

    return dram_energy_pj_per_bit(system.gpu.dram_energy)


# --- placement ----------------------------------------------------------------------------------


def _span(size: int, stride: int, gpn: int) -> tuple[int, int]:
    """(ranks per node, nodes) of a group of `size` ranks `stride` apart, ranks numbered node by
    node with `gpn` GPUs per node."""
    if size == 1:
        return 1, 1
    if stride >= gpn:
        return 1, size
    per = min(size, gpn // stride)
    return per, math.ceil(size / per)


def _group(system: System, size: int, stride: int) -> Group:
    per, nodes = _span(size, stride, system.gpus_per_node)
    return system.group(per, nodes, concurrent=system.gpus_per_node)


def _label(g: Group) -> str:
    tiers = [t.name.split(" ")[0] for t in (g.intra, g.inter) if t is not None]
    return f"{g.n_per_node}x{g.nodes} {'+'.join(tiers) or 'local'}"


def _item(name: str, c: CollectiveCost, calls: float, g: Group, exposed: float) -> CommItem:
    return CommItem(name=name, op=c.op, algorithm=c.algorithm, protocol=c.protocol,
                    nbytes=c.nbytes, calls=calls, group=_label(g), time_s=c.time_s * calls,
                    exposed_s=exposed, energy_pj=c.energy_pj * calls)  # fmt: skip


# --- validation ---------------------------------------------------------------------------------


def _resolve(model: TransformerConfig, system: System, gpus: int, p: ParallelPlan) -> ParallelPlan:
    """`p` with dp, global batch and sequence length filled in; ConfigError on any bad value."""
    if not 1 <= gpus <= MAX_GPUS:
        raise ConfigError(f"--gpus {gpus}: give 1..{MAX_GPUS}")
    for name in ("tp", "pp", "ep", "micro_batch", "virtual_stages"):
        if getattr(p, name) < 1:
            raise ConfigError(f"{name} {getattr(p, name)}: give a whole number >= 1")
    if p.zero not in (0, 1, 2, 3):
        raise ConfigError(f"ZeRO stage {p.zero}: give 0, 1, 2 or 3 (3 = FSDP)")
    if p.grad_bits not in (8, 16, 32) or p.act_bits not in (8, 16, 32):
        raise ConfigError("grad_bits and act_bits: give 8 (FP8), 16 (BF16) or 32")
    if model.heads % p.tp:
        raise ConfigError(f"tp {p.tp} does not divide the {model.heads} attention heads of "
                          f"{model.name}; use a divisor of {model.heads}")  # fmt: skip
    if p.tp * p.pp > gpus:
        raise ConfigError(f"tp {p.tp} x pp {p.pp} = {p.tp * p.pp} needs more than {gpus} GPUs")
    if gpus % (p.tp * p.pp):
        raise ConfigError(f"{gpus} GPUs do not split into tp {p.tp} x pp {p.pp} groups")
    dp = p.dp or gpus // (p.tp * p.pp)
    if dp * p.tp * p.pp != gpus:
        raise ConfigError(f"dp {dp} x tp {p.tp} x pp {p.pp} = {dp * p.tp * p.pp}, not {gpus}")
    gpn = system.gpus_per_node
    if gpus > gpn and gpus % gpn:
        raise ConfigError(f"{gpus} GPUs is not a whole number of {gpn}-GPU {system.node.name}")
    if p.tp > 1 and gpn % p.tp and p.tp % gpn:
        raise ConfigError(f"tp {p.tp}: must divide the node's {gpn} GPUs or be a multiple")
    if model.kv % p.tp and p.tp % model.kv:
        raise ConfigError(f"tp {p.tp} and the {model.kv} KV heads of {model.name} do not align")
    if model.layers % (p.pp * p.virtual_stages):
        raise ConfigError(
            f"pp {p.pp} x {p.virtual_stages} virtual stages does not divide the "
            f"{model.layers} layers of {model.name}; use a divisor of {model.layers}"
        )
    if p.ep > 1 and (not model.moe or model.experts % p.ep or dp % p.ep):
        raise ConfigError(f"ep {p.ep}: needs an MoE model whose experts ({model.experts}) and "
                          f"dp ({dp}) it divides")  # fmt: skip
    if p.sequence_parallel and p.tp == 1:
        raise ConfigError("sequence parallelism splits along TP: it needs tp > 1")
    gb = p.global_batch or dp * p.micro_batch
    if gb % (dp * p.micro_batch):
        raise ConfigError(
            f"global batch {gb} is not a multiple of dp {dp} x micro-batch {p.micro_batch}"
        )
    seq = p.seq_len or model.seq_len
    if seq < 1:
        raise ConfigError(f"sequence length {seq}: give >= 1")
    _peak_key(system, p.math_format)
    return dataclasses.replace(p, dp=dp, global_batch=gb, seq_len=seq)


# --- training -----------------------------------------------------------------------------------


def _layer_work(m: TransformerConfig, p: ParallelPlan, r: _Rates) -> tuple[_Work, _Work]:
    """(forward, backward incl. recomputation) of one layer for one micro-batch, one GPU."""
    b, s, t = p.micro_batch, p.seq_len, p.tp
    act_b = 2.0
    dense = r.gemms(m.layer_gemms(b * s, tp=t), act_b, 2.0)
    att = r.gemms(m.attention_gemms(b, s, s, tp=t, causal_skip=p.flash_attention), act_b, act_b)
    elem = m.elementwise_elems(b, s, tp=t, sp=p.sequence_parallel, flash=p.flash_attention)
    elems = r.stream(elem * act_b)
    fwd = dense + att + elems
    bwd = dense.scale(2) + att.scale(2.5 if p.flash_attention else 2.0) + elems.scale(2)
    if p.recompute == "full":
        bwd += fwd
    elif p.recompute == "selective" and not p.flash_attention:
        scores = m.elementwise_elems(b, s, tp=t, flash=False) - m.elementwise_elems(b, s, tp=t)
        bwd += att + r.stream(scores * act_b)
    return fwd, bwd


def _stage_params(m: TransformerConfig, p: ParallelPlan, stage: int) -> tuple[float, float]:
    """(dense, expert) parameters one GPU of pipeline `stage` holds."""
    per_layer = m.layers // p.pp
    expert = m.expert_params() * m.experts if m.moe else 0
    dense = per_layer * (m.layer_params() - expert) / p.tp
    experts = per_layer * expert / (p.tp * p.ep)
    if stage == 0:
        dense += m.embedding_params() / p.tp
    if stage == p.pp - 1:
        head = m.output_params() or (m.vocab * m.hidden if p.pp > 1 else 0)  # tied: a copy
        dense += head / p.tp
    return dense, experts


def _memory(m: TransformerConfig, p: ParallelPlan, system: System, a: Assumptions) -> Memory:
    cap = system.gpu.memory_gb * GIB
    mbs = p.global_batch // (p.dp * p.micro_batch)
    best: Memory | None = None
    for stage in {0, p.pp - 1}:
        dense, experts = _stage_params(m, p, stage)

        # ZeRO shards over the data-parallel ranks holding the same parameters: all dp ranks
        # for dense ones, dp / ep for experts (expert parallelism already split them ep ways)
        def sharded(stage_min: int, dense=dense, experts=experts) -> float:
            if p.zero < stage_min:
                return dense + experts
            return dense / p.dp + experts / (p.dp // p.ep)

        weights = sharded(3) * a.weight_bytes_per_param
        other = 0.0
        if p.zero == 3:  # two layers gathered at a time (one in use, one prefetched)
            other += 2 * m.layer_params() / p.tp * a.weight_bytes_per_param
        grads = sharded(2) * a.grad_bytes_per_param
        optim = sharded(1) * a.optimizer_bytes_per_param
        per_layer = m.activation_bytes(p.micro_batch, p.seq_len, tp=p.tp,
                                       sp=p.sequence_parallel, recompute=p.recompute,
                                       flash=p.flash_attention)  # fmt: skip
        in_flight = min(mbs, p.pp - stage)
        if p.virtual_stages > 1:
            in_flight *= 1 + (p.pp - 1) / (p.pp * p.virtual_stages)
        acts = m.layers / p.pp * per_layer * in_flight
        if p.recompute == "full":  # one layer rematerialized during its backward
            acts += m.activation_bytes(p.micro_batch, p.seq_len, tp=p.tp,
                                       sp=p.sequence_parallel, flash=p.flash_attention)  # fmt: skip
        if stage == p.pp - 1:
            other += p.micro_batch * p.seq_len * m.vocab / p.tp * a.logits_bytes
        mem = Memory(weights=weights, grads=grads, optimizer=optim, activations=acts,
                     other=other, capacity=cap)  # fmt: skip
        if best is None or mem.total > best.total:
            best = mem
    assert best is not None
    return best


def _fits(m: TransformerConfig, sysm: System, p: ParallelPlan, a: Assumptions) -> float:
    return _memory(m, p, sysm, a).total - sysm.gpu.memory_gb * GIB * (1 - a.memory_reserve)


def _suggest(m: TransformerConfig, system: System, gpus: int, p: ParallelPlan,
             a: Assumptions) -> str:  # fmt: skip
    """The single changes that make `p` fit, with the memory each leaves, best first."""
    tries = []  # cheapest first: the first three that fit are suggested
    if p.tp > 1 and not p.sequence_parallel:
        tries.append(("--sequence-parallel", dataclasses.replace(p, sequence_parallel=True)))
    if p.dp > 1:
        tries += [(f"--zero {z}", dataclasses.replace(p, zero=z)) for z in (1, 2, 3) if z > p.zero]
    if p.recompute == "none" and not p.flash_attention:
        tries.append(("--recompute selective", dataclasses.replace(p, recompute="selective")))
    if p.recompute != "full":
        tries.append(("--recompute full", dataclasses.replace(p, recompute="full")))
    for k in (2, 4, 8):
        tp, pp = p.tp * k, p.pp * k
        if gpus % (tp * p.pp) == 0 and m.heads % tp == 0:
            tries.append((f"--tp {tp}", dataclasses.replace(p, tp=tp, dp=0)))
        if gpus % (p.tp * pp) == 0 and m.layers % (pp * p.virtual_stages) == 0:
            tries.append((f"--pp {pp}", dataclasses.replace(p, pp=pp, dp=0)))
    found = []
    for label, q in tries:
        try:
            q = _resolve(m, system, gpus, dataclasses.replace(q, global_batch=p.global_batch))
        except ConfigError:
            continue
        if _fits(m, system, q, a) <= 0:
            found.append(f"{label} ({_memory(m, q, system, a).total / GIB:.1f} GiB)")
    fits = found[:3]
    if fits:
        return "try " + ", or ".join(fits)
    return "no single change fits; combine them (--zero 3 --recompute full) or add GPUs"


def plan_training(
    model: TransformerConfig,
    system: System,
    gpus: int,
    plan: ParallelPlan,
    assumptions: Assumptions | None = None,
) -> TrainingEstimate:
    """Predict one training step of `model` on `gpus` GPUs of `system` split as `plan`."""
    a = assumptions or Assumptions()
    p = _resolve(model, system, gpus, plan)
    mem = _memory(model, p, system, a)
    usable = mem.capacity * (1 - a.memory_reserve)
    if a.check_memory and mem.total > usable:
        raise ConfigError(
            f"{model.name} on {gpus}x {system.gpu.name} (tp {p.tp}, pp {p.pp}, dp {p.dp}, ZeRO "
            f"{p.zero}, recompute {p.recompute}) needs {mem.total / GIB:.1f} GiB per GPU, "
            f"{usable / GIB:.1f} usable of {mem.capacity / GIB:.0f}: "
            f"{(mem.total - usable) / GIB:.1f} GiB over; "
            f"{_suggest(model, system, gpus, p, a)}"
        )
    rates, key = _rates(system, p.math_format, a)
    m_count = p.global_batch // (p.dp * p.micro_batch)
    b, s, h, t = p.micro_batch, p.seq_len, model.hidden, p.tp
    act_b = p.act_bits / 8
    fwd, bwd = _layer_work(model, p, rates)
    per_stage = model.layers // p.pp
    comms: list[CommItem] = []

    # TP: activations of one micro-batch, per layer
    tp_group = _group(system, t, 1)
    tp_calls = 4 + (2 if p.recompute == "full" else 0)
    tp_layer_s = 0.0
    if t > 1:  # sequence parallel: each all-reduce becomes a reduce-scatter + an all-gather
        calls = tp_calls * per_stage * m_count
        ops = ("reduce_scatter", "all_gather") if p.sequence_parallel else ("all_reduce",)
        for op in ops:
            c = cost(op, b * s * h * act_b, tp_group)
            tp_layer_s += tp_calls * c.time_s
            name = {"all_reduce": "TP all-reduce", "reduce_scatter": "TP RS (seq. par.)",
                    "all_gather": "TP AG (seq. par.)"}[op]  # fmt: skip
            comms.append(_item(name, c, calls, tp_group, c.time_s * calls))
    if model.moe and p.ep > 1:
        ep_group = _group(system, p.ep, t)
        ep_cost = cost("all_to_all", b * s * model.top_k * h * act_b / t, ep_group)
        calls = tp_calls * per_stage * m_count
        tp_layer_s += tp_calls * ep_cost.time_s
        comms.append(_item("EP all-to-all", ep_cost, calls, ep_group, ep_cost.time_s * calls))

    # PP: activation forward, gradient backward, per micro-batch and virtual chunk
    p2p_s = 0.0
    if p.pp > 1:
        per, nodes = _span(2, t * p.dp, system.gpus_per_node)
        pair = system.group(per, nodes, concurrent=system.gpus_per_node)
        pp_cost = cost("send_recv", b * s * h * act_b / t, pair)
        p2p_s = 2 * p.virtual_stages * pp_cost.time_s
        calls = 2 * p.virtual_stages * m_count
        comms.append(_item("PP send/recv", pp_cost, calls, pair, p2p_s * m_count))

    # stage times per micro-batch (first, middle and last stages differ by embedding/head)
    head_f = rates.gemms([model.logits_gemm(b * s, tp=t)], act_b, 2.0)
    head_f += rates.stream(2 * b * s * model.vocab / t * a.logits_bytes)
    head = head_f + head_f.scale(2)
    layers = (fwd + bwd).scale(per_stage)
    compute = [layers + (head if i == p.pp - 1 else _Work()) for i in range(p.pp)]
    stage_s = [c.time_s + per_stage * tp_layer_s + p2p_s for c in compute]
    mean_s = sum(stage_s) / p.pp
    pipe_s = m_count * max(stage_s) + (p.pp - 1) / p.virtual_stages * mean_s
    bubble_s = pipe_s - m_count * mean_s
    compute_s = m_count * sum(c.time_s for c in compute) / p.pp

    # DP: gradients (and weights under ZeRO-3) of this stage's parameters
    dense, experts = _stage_params(model, p, 0)
    if p.ep == 1:  # without expert parallelism experts reduce with the dense parameters
        dense, experts = dense + experts, 0.0
    dp_exposed = 0.0
    if p.dp > 1:
        windows = (bwd.time_s * per_stage, fwd.time_s * per_stage)
        groups = [("DP", dense, _group(system, p.dp, t))]
        if experts:
            groups.append(("expert DP", experts, _group(system, p.dp // p.ep, t * p.ep)))
        for label, params, grp in groups:
            dp_exposed += _dp_comms(label, params, grp, p, a, windows, m_count,
                                    per_stage, (fwd + bwd).time_s, comms)  # fmt: skip
    local = dense / p.dp + experts / (p.dp // p.ep) if p.zero >= 1 else dense + experts
    opt = rates.stream(local * a.optimizer_traffic_bytes_per_param)
    step_s = pipe_s + dp_exposed + opt.time_s

    # FLOPs and energy
    tokens = p.global_batch * s
    model_f = _model_flops(model, s, p.flash_attention) * p.global_batch
    per_gpu = m_count / p.pp  # every stage's work, averaged over the pipeline
    work_gpu = _Work(flops=sum(c.flops for c in compute) * per_gpu,
                     hbm_bytes=sum(c.hbm_bytes for c in compute) * per_gpu) + opt  # fmt: skip
    hw_flops = work_gpu.flops * gpus
    busy_s = compute_s + opt.time_s
    energy = _energy(system, key, gpus, busy_s, step_s - busy_s, hw_flops,
                     work_gpu.hbm_bytes * gpus, sum(c.energy_pj for c in comms))  # fmt: skip
    return TrainingEstimate(
        model=model.name, system=system.node.name, gpu=system.gpu.name, gpus=gpus, plan=p,
        micro_batches=m_count, step_time_s=step_s, compute_s=compute_s,
        tp_comm_s=m_count * per_stage * tp_layer_s, p2p_s=m_count * p2p_s, bubble_s=bubble_s,
        dp_exposed_s=dp_exposed, optimizer_s=opt.time_s, comms=tuple(comms), memory=mem,
        model_flops=model_f, hardware_flops=hw_flops, peak_flops=system.gpu.peak(key),
        tokens=tokens, energy=energy,
    )  # fmt: skip


def _dp_comms(label: str, params: float, g: Group, p: ParallelPlan, a: Assumptions,
              windows: tuple[float, float], m_count: int, per_stage: int, layer_s: float,
              out: list[CommItem]) -> float:  # fmt: skip
    """Append the data-parallel collectives of `params` to `out`; return their exposed time.
    `windows`: (backward of the last micro-batch, forward of the first) on this stage."""
    grad_b = params * p.grad_bits / 8
    weight_b = params * a.weight_bytes_per_param

    def bucketed(op: str, nbytes: float, window: float) -> tuple[CollectiveCost, float]:
        """Bucket by bucket behind `window` of compute; the last (or first) bucket shows."""
        full = cost(op, nbytes, g)
        last = cost(op, min(nbytes, a.bucket_bytes), g).time_s
        hidden = max(last, full.time_s - window) if p.overlap_grad_reduce else full.time_s
        return full, hidden

    if p.zero == 0:
        c, exposed = bucketed("all_reduce", grad_b, windows[0])
        out.append(_item(f"{label} grad all-reduce", c, 1, g, exposed))
        return exposed
    if p.zero in (1, 2):
        c, exposed = bucketed("reduce_scatter", grad_b, windows[0])
        out.append(_item(f"{label} grad RS", c, 1, g, exposed))
        ag, ag_exposed = bucketed("all_gather", weight_b, windows[1])  # behind next forward
        out.append(_item(f"{label} weight AG", ag, 1, g, ag_exposed))
        return exposed + ag_exposed
    ag = cost("all_gather", weight_b, g)
    rs = cost("reduce_scatter", grad_b, g)
    per_mb = 2 * ag.time_s + rs.time_s  # gather for forward and backward, reduce gradients
    exposed = m_count * max(0.0, per_mb - layer_s * per_stage) + (ag.time_s + rs.time_s) / max(
        per_stage, 1
    )
    out.append(_item(f"{label} FSDP weight AG", ag, 2 * m_count, g, exposed / 2))
    out.append(_item(f"{label} FSDP grad RS", rs, m_count, g, exposed / 2))
    return exposed


def _model_flops(m: TransformerConfig, s: int, causal_skip: bool) -> float:
    """Model FLOPs of one sequence (forward + backward, no recomputation): 3 x forward. The
    attention matmuls count as the kernel runs them: in full without flash attention (Megatron-LM's
    convention), half with a causal flash kernel - so MFU never exceeds HFU."""
    gemms = sum(g.flops() for g in m.layer_gemms(s)) + sum(
        g.flops() for g in m.attention_gemms(1, s, s, causal_skip=causal_skip)
    )
    return 3 * (m.layers * gemms + m.logits_gemm(s).flops())


def _energy(system: System, key: str, gpus: int, busy_s: float, wait_s: float, flops: float,
            hbm_bytes: float, link_pj: float) -> Energy:  # fmt: skip
    math_j = flops * _pj_per_flop(system, key) * 1e-12
    mem_j = hbm_bytes * 8 * _dram_pj_per_bit(system) * 1e-12
    busy_j = gpus * system.busy_power_w * busy_s
    return Energy(math_j=math_j, memory_j=mem_j, other_j=max(0.0, busy_j - math_j - mem_j),
                  link_j=link_pj * 1e-12,
                  wait_j=gpus * system.wait_power_w * max(0.0, wait_s))  # fmt: skip


# --- serving ------------------------------------------------------------------------------------


def plan_serving(
    model: TransformerConfig,
    system: System,
    gpus: int,
    plan: ServingPlan,
    assumptions: Assumptions | None = None,
) -> ServingEstimate:
    """Prefill and decode of `plan.batch` sequences per TP replica on `gpus` GPUs."""
    a = assumptions or Assumptions()
    t = plan.tp or gpus
    if not 1 <= gpus <= MAX_GPUS or gpus % t:
        raise ConfigError(f"--gpus {gpus} does not split into TP groups of {t}")
    if t > system.gpus_per_node:
        raise ConfigError(f"tp {t} spans nodes; serving keeps TP within one {system.node.name}")
    if model.heads % t:
        raise ConfigError(f"tp {t} does not divide the {model.heads} heads of {model.name}")
    if min(plan.batch, plan.prompt) < 1 or plan.decode < 0:
        raise ConfigError("batch and prompt must be >= 1 and decode >= 0")
    if not (0 < plan.weight_bits <= 32 and 0 < plan.kv_bits <= 32):
        raise ConfigError("weight_bits and kv_bits: give 1..32")
    rates, key = _rates(system, plan.math_format, a)
    w_b, kv_b, act_b, B = plan.weight_bits / 8, plan.kv_bits / 8, plan.act_bits / 8, plan.batch
    kv_dim = max(model.kv_dim / t, model.hd)  # fewer KV heads than ranks: each keeps one
    group = system.group(t, 1) if t > 1 else None

    def step(tokens: float, q_len: float, ctx: float, causal: bool) -> tuple[_Work, float]:
        layer = rates.gemms(model.layer_gemms(tokens, tp=t), 2.0, w_b)
        kv_b_gemm = 2.0 if causal else 0.0  # decode: K and V come from the cache, read below
        att = rates.gemms(model.attention_gemms(B, q_len, ctx, tp=t, causal_skip=causal), 2.0,
                          kv_b_gemm)  # fmt: skip
        kv_read = rates.stream(B * ctx * 2 * kv_dim * kv_b)  # prefill: the cache written once
        elem = rates.stream(model.elementwise_elems(B, q_len, tp=t) * 2.0)
        logits = rates.gemms([model.logits_gemm(B, tp=t)], 2.0, 2.0)
        work = (layer + att + kv_read + elem).scale(model.layers) + logits
        comm = cost("all_reduce", tokens * model.hidden * act_b, group) if group else None
        return work, (2 * model.layers * comm.time_s if comm else 0.0)

    pre, pre_comm = step(B * plan.prompt, plan.prompt, plan.prompt, True)
    ctx = plan.prompt + plan.decode / 2
    dec, dec_comm = step(B, 1, ctx, False)
    reps = gpus // t
    comm_c = cost("all_reduce", B * model.hidden * act_b, group) if group else None
    item = (_item("TP all-reduce per token", comm_c, 2 * model.layers, group, dec_comm)
            if comm_c and group else CommItem(name="none (tp 1)", op="all_reduce",
            algorithm="-", protocol="-", nbytes=0, calls=0, group="-", time_s=0, exposed_s=0,
            energy_pj=0))  # fmt: skip
    weights = (model.layers * model.layer_params() * w_b
               + (model.embedding_params() + model.output_params()) * 2.0) / t  # fmt: skip
    kv = B * (plan.prompt + plan.decode) * 2 * kv_dim * kv_b * model.layers
    mem = Memory(weights=weights, grads=0, optimizer=0, activations=kv, other=0,
                 capacity=system.gpu.memory_gb * GIB)  # fmt: skip
    usable = mem.capacity * (1 - a.memory_reserve)
    if a.check_memory and mem.total > usable:
        raise ConfigError(
            f"{model.name} serving on tp {t}: weights {weights / GIB:.1f} + KV cache "
            f"{kv / GIB:.1f} GiB per GPU exceeds {usable / GIB:.1f} usable by "
            f"{(mem.total - usable) / GIB:.1f} GiB; lower --batch or the bits "
            "(--weight-bits 4, --kv-bits 8) or raise --tp"
        )
    link = item.energy_pj * reps  # one decode step: 2 all-reduces per layer per replica
    pre_link = 0.0
    if group is not None:
        pre_c = cost("all_reduce", B * plan.prompt * model.hidden * act_b, group)
        pre_link = 2 * model.layers * reps * pre_c.energy_pj
    pre_e = _energy(system, key, gpus, pre.time_s, pre_comm, pre.flops * gpus,
                    pre.hbm_bytes * gpus, pre_link)  # fmt: skip
    dec_e = _energy(system, key, gpus, dec.time_s, dec_comm, dec.flops * gpus,
                    dec.hbm_bytes * gpus, link)  # fmt: skip
    return ServingEstimate(
        model=model.name, system=system.node.name, gpu=system.gpu.name, gpus=gpus, plan=plan,
        replicas=reps, prefill_s=pre.time_s + pre_comm, decode_step_s=dec.time_s + dec_comm,
        decode_comm_s=dec_comm, comm=item, memory=mem, prefill_energy=pre_e, decode_energy=dec_e,
    )  # fmt: skip


# --- search -------------------------------------------------------------------------------------


def pareto_front(points: list[tuple[float, ...]]) -> list[bool]:
    """Which points no other point beats in every objective (all minimized); duplicates of a
    front point are all on it. `picojoule.dse.pareto.pareto_mask`, as a list."""
    from picojoule.dse.pareto import pareto_mask

    if not points:
        return []
    return [bool(x) for x in pareto_mask(points)]


def rejection(error: ConfigError | str) -> str:
    """Why `plan_training` refused a plan, in one word group: "does not fit" (memory per GPU
    over its usable capacity) or "invalid" (the plan cannot split this model or cluster)."""
    return "does not fit" if "GiB over" in str(error) else "invalid"


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    estimates: tuple[TrainingEstimate, ...]  # every valid plan that fits, fastest first
    front: tuple[bool, ...]  # on the (step time, energy, memory) Pareto front
    rejected: int  # plans that were invalid or did not fit
    reasons: dict[str, int] = field(default_factory=dict)


def plan_candidates(
    model: TransformerConfig,
    system: System,
    gpus: int,
    *,
    global_batch: int,
    seq_len: int = 0,
    base: ParallelPlan | None = None,
    micro_batches: tuple[int, ...] = (1, 2, 4, 8),
    zeros: tuple[int, ...] = (0, 1, 3),
    recomputes: tuple[Recompute, ...] = ("none", "selective", "full"),
) -> list[ParallelPlan]:
    """The plans `search_plans` evaluates, in its order: (tp, pp) splitting `gpus` (TP
    dividing the heads, within a node or whole nodes; PP dividing the layers), dp the rest,
    micro-batches that divide the global batch per replica, ZeRO (0 only without DP) and
    recomputation (no selective under flash attention: a twin of none). Other fields come
    from `base`; dp is left 0 (the rest)."""
    base = base or ParallelPlan()
    divisors = [d for d in range(1, gpus + 1) if gpus % d == 0]
    out: list[ParallelPlan] = []
    for tp in divisors:
        if model.heads % tp or (tp > system.gpus_per_node and tp % system.gpus_per_node):
            continue
        for pp in (d for d in divisors if (gpus // tp) % d == 0 and model.layers % d == 0):
            dp = gpus // (tp * pp)
            for mb in micro_batches:
                if global_batch % (dp * mb):
                    continue
                for zero in zeros if dp > 1 else (0,):
                    for rec in recomputes:
                        if rec == "selective" and base.flash_attention:
                            continue  # flash attention already recomputes the scores: a twin
                        out.append(dataclasses.replace(
                            base, tp=tp, pp=pp, dp=0, micro_batch=mb, zero=zero, recompute=rec,
                            seq_len=seq_len, global_batch=global_batch,
                            sequence_parallel=base.sequence_parallel and tp > 1,
                        ))  # fmt: skip
    return out


def search_plans(
    model: TransformerConfig,
    system: System,
    gpus: int,
    *,
    global_batch: int,
    seq_len: int = 0,
    base: ParallelPlan | None = None,
    assumptions: Assumptions | None = None,
    micro_batches: tuple[int, ...] = (1, 2, 4, 8),
    zeros: tuple[int, ...] = (0, 1, 3),
    recomputes: tuple[Recompute, ...] = ("none", "selective", "full"),
) -> SearchResult:
    """Every valid plan of `plan_candidates` for `gpus` GPUs and the Pareto front of step
    time (s) vs energy per step (J) vs memory per GPU (bytes), in process and in memory.
    `picojoule.cluster.sweep.sweep_plans` evaluates the same plans into a resumable results
    store instead (process pool or Ray; `cluster plan --search --out DIR`)."""
    found: list[TrainingEstimate] = []
    reasons: dict[str, int] = {}
    for q in plan_candidates(model, system, gpus, global_batch=global_batch, seq_len=seq_len,
                             base=base, micro_batches=micro_batches, zeros=zeros,
                             recomputes=recomputes):  # fmt: skip
        try:
            found.append(plan_training(model, system, gpus, q, assumptions))
        except ConfigError as e:
            why = rejection(e)
            reasons[why] = reasons.get(why, 0) + 1
    found.sort(key=lambda e: e.step_time_s)
    front = pareto_front([(e.step_time_s, e.energy.total_j, e.memory.total) for e in found])
    return SearchResult(estimates=tuple(found), front=tuple(front),
                        rejected=sum(reasons.values()), reasons=reasons)  # fmt: skip
