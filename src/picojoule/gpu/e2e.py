"""End-to-end: a MiniLM-shaped BERT encoder in bf16 versus the same model with packed weights.

The model comes from `picojoule.models.minilm.build_from_config()` (all-MiniLM-L6-v2's shape,
seeded random weights: timing needs no trained weights, and the GPU machines have none). All 36
encoder `nn.Linear` layers are packed with `to_packed_`; embeddings, LayerNorm and attention
stay bf16. Throughput is sentences per second (CUDA events, median). The packed model's output
is compared with the bf16 model with fake-quantized weights (`picojoule.quant`, emulation): the
cosine similarity of the two sentence embeddings checks the real kernels end to end. Times are
given eager (what a Python loop sees, host overhead included) and replayed from a CUDA graph.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from picojoule.gpu.modules import to_packed_
from picojoule.gpu.timing import time_cuda

__all__ = ["E2EResult", "minilm_throughput"]


@dataclass(frozen=True, kw_only=True)
class E2EResult:
    fmt: str
    batch: int
    seq_len: int
    bf16_s: float
    packed_s: float
    bf16_sentences_per_s: float
    packed_sentences_per_s: float
    speedup: float
    packed_layers: int
    cosine_to_emulated: float
    weight_mb_bf16: float
    weight_mb_packed: float
    graph_bf16_s: float | None  # the same forward replayed from a CUDA graph (no host overhead)
    graph_packed_s: float | None
    graph_speedup: float | None


def _linear_mb(model: torch.nn.Module) -> float:
    """Megabytes of all nn.Linear weights (bf16)."""
    return (
        sum(m.weight.numel() * 2 for m in model.modules() if isinstance(m, torch.nn.Linear)) / 1e6
    )


def minilm_throughput(
    fmt: str = "vsq4_v16_s4", *, batch: int = 32, seq_len: int = 128
) -> E2EResult:
    from picojoule.models.minilm import build_from_config
    from picojoule.quant import quantize_

    dev = torch.device("cuda")
    base = build_from_config().to(dev, torch.bfloat16).eval()
    g = torch.Generator(device=dev).manual_seed(0)
    ids = torch.randint(1000, 30000, (batch, seq_len), device=dev, generator=g)
    mask = torch.ones_like(ids)
    dense_mb = _linear_mb(base)

    emulated = copy.deepcopy(base)
    quantize_(emulated, f"w:{fmt}", filter_fn=lambda m, _n: isinstance(m, torch.nn.Linear))
    packed = copy.deepcopy(base)
    applied = to_packed_(packed, fmt)
    packed_mb = sum(
        b.numel() * b.element_size()
        for m in packed.modules()
        if type(m).__name__ == "PackedLinear"
        for b in (m.qweight, m.scales, m.gamma, m.tensor_scale)
        if b is not None
    )

    with torch.inference_mode():
        ref = emulated(ids, mask).float()
        out = packed(ids, mask).float()
        cos = float(torch.nn.functional.cosine_similarity(ref, out, dim=1).mean())
        t_base = time_cuda(lambda: base(ids, mask), reps=30, flush_l2=False)
        t_packed = time_cuda(lambda: packed(ids, mask), reps=30, flush_l2=False)
        try:
            g_base = time_cuda(lambda: base(ids, mask), reps=30, flush_l2=False, cuda_graph=True)
            g_packed = time_cuda(
                lambda: packed(ids, mask), reps=30, flush_l2=False, cuda_graph=True
            )
            graph_s: tuple[float, float] | None = (g_base.median_s, g_packed.median_s)
        except RuntimeError:  # the model syncs with the host somewhere: eager numbers only
            graph_s = None
    return E2EResult(
        fmt=fmt,
        batch=batch,
        seq_len=seq_len,
        bf16_s=t_base.median_s,
        packed_s=t_packed.median_s,
        bf16_sentences_per_s=batch / t_base.median_s,
        packed_sentences_per_s=batch / t_packed.median_s,
        speedup=t_base.median_s / t_packed.median_s,
        packed_layers=len(applied),
        cosine_to_emulated=cos,
        weight_mb_bf16=dense_mb,
        weight_mb_packed=packed_mb / 1e6,
        graph_bf16_s=None if graph_s is None else graph_s[0],
        graph_packed_s=None if graph_s is None else graph_s[1],
        graph_speedup=None if graph_s is None else graph_s[0] / graph_s[1],
    )
