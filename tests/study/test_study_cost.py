"""Study costs see attention: functional matmuls and SDPA become `matmul` layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.study.cost import layer_counts, recipe_cost
from picojoule.workload.from_torch import sdpa_layers

B, S, H, D = 2, 6, 2, 4  # batch, sequence, heads, head size


class EagerAttention(nn.Module):
    """softmax(q k^T) v with `torch.matmul` and `@`, as eager HF attention does."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(H * D, 3 * H * D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)
        p = torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1)
        return (p @ v).transpose(1, 2).reshape(B, S, H * D)


class CausalSdpa(EagerAttention):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(B, S, 3, H, D).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y.transpose(1, 2).reshape(B, S, H * D)


class MatmulLinear(nn.Linear):
    """A layer module whose own forward uses `@`: its product is the layer, not attention."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.eager = EagerAttention()
        self.sdpa = CausalSdpa()
        self.out = MatmulLinear(H * D, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.sdpa(self.eager(x)))


def _x() -> torch.Tensor:
    return torch.randn(B, S, H * D, generator=torch.Generator().manual_seed(0))


def test_attention_matmuls_are_layers_in_call_order():
    torch.manual_seed(0)
    rows = layer_counts(Block(), _x())
    got = [(r.name, r.kind, r.layer.kind) for r in rows]
    assert got == [
        ("eager.qkv", "Linear", "linear"),
        ("eager.matmul", "matmul", "matmul"),
        ("eager.matmul#1", "matmul", "matmul"),
        ("sdpa.qkv", "Linear", "linear"),
        ("sdpa.sdpa.qk", "matmul", "matmul"),
        ("sdpa.sdpa.av", "matmul", "matmul"),
        ("out", "MatmulLinear", "linear"),  # its own `@` is not counted a second time
    ]
    qk, av = rows[1].layer, rows[2].layer
    # q k^T: [B*H, S, D] x [D, S]; p v: [B*H, S, S] x [S, D]
    assert (qk.G, qk.N, qk.C, qk.K) == (B * H, S, D, S)
    assert (av.G, av.N, av.C, av.K) == (B * H, S, S, D)
    assert qk.weight_format == qk.input_format == "fp32"
    # causal attention: the probabilities above the diagonal are zero
    causal_av = rows[5].layer
    assert causal_av.input_density == pytest.approx((S + 1) / (2 * S))
    assert rows[2].layer.input_density == 1.0


def test_sdpa_layers_honour_masks_and_grouped_heads():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 4, S, D, generator=g)
    kv = torch.randn(1, 2, S, D, generator=g)  # two key/value heads serve four query heads
    mask = torch.ones(S, S, dtype=torch.bool)
    mask[:, -2:] = False  # the last two keys are padding
    qk, av = sdpa_layers("a", (q, kv, kv), {"attn_mask": mask, "enable_gqa": True})
    assert (qk.name, av.name) == ("a.qk", "a.av")
    # Each key/value head serves two query heads: folded into rows, K and V counted once.
    assert (qk.G, qk.N, qk.C, qk.K) == (2, 2 * S, D, S)
    assert (av.G, av.N, av.C, av.K) == (2, 2 * S, S, D)
    assert qk.macs == 4 * S * S * D and qk.weight_elems == 2 * D * S
    assert av.input_density == pytest.approx((S - 2) / S)
    # Already-repeated heads (transformers' repeat_kv before SDPA) fold the same way.
    rep = kv.repeat_interleave(2, dim=1)
    qk2, av2 = sdpa_layers("a", (q, rep, rep), {"attn_mask": mask})
    assert (qk2.G, qk2.N, qk2.K, av2.G, av2.N) == (2, 2 * S, S, 2, 2 * S)
    # Distinct heads are not folded.
    qk3, _ = sdpa_layers("a", (q, torch.randn(1, 4, S, D, generator=g), q), {})
    assert (qk3.G, qk3.N) == (4, S)
    additive = torch.zeros(S, S).masked_fill(~mask, float("-inf"))
    _, av2 = sdpa_layers("a", (q, kv, kv, additive), {"enable_gqa": True})
    assert av2.input_density == pytest.approx(av.input_density)


def test_matmul_operands_are_not_weights():
    torch.manual_seed(0)
    cost = recipe_cost(EagerAttention(), _x(), "eyeriss")
    linear_weights = 3 * H * D * H * D
    assert cost["weight_bits"] == 32 * linear_weights
    names = [row["name"] for row in cost["layers_energy"]]
    assert names == ["qkv", "matmul", "matmul#1"]
    assert all(row["energy_pj"] > 0 for row in cost["layers_energy"])
    assert cost["macs"] == B * S * H * D * 3 * H * D + 2 * B * H * S * S * D


def test_assumptions_name_the_unquantized_products():
    torch.manual_seed(0)
    cost = recipe_cost(EagerAttention(), _x(), "h100")
    share = 100 * 2 * B * H * S * S * D / cost["macs"]
    assert cost["assumptions"][-1].startswith(
        f"2 functional matmuls (attention's QK^T and AV; {share:.1f} % of MACs) costed with FP32 "
        "operands: no attn:"
    )
