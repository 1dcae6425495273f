"""Layers made reachable, same numbers: `unfuse_attention_` (nn.MultiheadAttention -> Linear
projections + SDPA), `conv1d_to_linear_` (Hugging Face `Conv1D` -> nn.Linear), both at once
with `expose_layers_`.

`nn.MultiheadAttention` runs its projections and both products inside one function
(`F.multi_head_attention_forward`): its `in_proj_weight` is a bare parameter and `out_proj`
never runs as a module, so no hook sees them and `quantize_`, `sparsify_` and the cost model
cannot reach them. `UnfusedAttention` computes the same attention with the pieces exposed:
`q_proj`, `k_proj`, `v_proj`, `out_proj` are `nn.Linear` layers holding the original weights,
and the products are `F.scaled_dot_product_attention` (or explicit `@` when attention weights
are requested), which `attn:` and the workload recorder see.

Supported: batch-first or not, unbatched inputs, kdim/vdim != embed_dim, boolean or additive
`attn_mask` (2-D or per head 3-D) and `key_padding_mask`, `is_causal`, `need_weights` with
`average_attn_weights`, dropout in training. Modules built with `add_bias_kv` or
`add_zero_attn` are left alone (named in the record's reason). Outputs equal the original
module's to float rounding (tests/quant/test_unfuse.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.config import Applied
from picojoule.quant.products import attention_mask

__all__ = ["UnfusedAttention", "unfuse_attention_", "conv1d_to_linear_", "expose_layers_"]


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    lin.weight = nn.Parameter(weight.detach().clone())
    if bias is not None:
        lin.bias = nn.Parameter(bias.detach().clone())
    return lin.to(weight.device)


class UnfusedAttention(nn.Module):
    """`nn.MultiheadAttention`'s computation with its four projections as `nn.Linear`."""

    # nn.TransformerEncoderLayer/DecoderLayer test this before their fused fast path; None
    # sends them down the module path, through this module's forward.
    in_proj_bias = None

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        e = mha.embed_dim
        if mha._qkv_same_embed_dim:
            wq, wk, wv = mha.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        bq = bk = bv = None
        if mha.in_proj_bias is not None:
            bq, bk, bv = mha.in_proj_bias.chunk(3)
        self.q_proj, self.k_proj, self.v_proj = _linear(wq, bq), _linear(wk, bk), _linear(wv, bv)
        self.out_proj = _linear(mha.out_proj.weight, mha.out_proj.bias)
        self.embed_dim, self.num_heads, self.head_dim = e, mha.num_heads, e // mha.num_heads
        self.dropout, self.batch_first = mha.dropout, mha.batch_first
        self._qkv_same_embed_dim = mha._qkv_same_embed_dim

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, L, E] -> [B, H, L, D]
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def _mask(
        self,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
        batch: int,
        dtype: torch.dtype,
    ) -> torch.Tensor | None:
        """One additive mask [B or 1, H or 1, L, S]; True in a boolean mask means 'masked'
        (nn.MultiheadAttention's convention, the opposite of SDPA's)."""

        def additive(m: torch.Tensor) -> torch.Tensor:
            if m.dtype == torch.bool:
                return torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(
                    m, float("-inf")
                )
            return m.to(dtype)

        out = None
        if attn_mask is not None:
            out = additive(attn_mask)
            if out.dim() == 3:  # [B * H, L, S]
                out = out.view(batch, self.num_heads, *out.shape[-2:])
        if key_padding_mask is not None:
            pad = additive(key_padding_mask).view(batch, 1, 1, -1)
            out = pad if out is None else out + pad
        return out

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query[None], key[None], value[None]
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask[None]
        elif not self.batch_first:  # [L, B, E] -> [B, L, E]
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        q, k, v = (
            self._heads(self.q_proj(query)),
            self._heads(self.k_proj(key)),
            self._heads(self.v_proj(value)),
        )
        mask = self._mask(attn_mask, key_padding_mask, q.shape[0], q.dtype)
        causal = is_causal and mask is None  # MHA's is_causal is a hint when a mask is given
        p_drop = self.dropout if self.training else 0.0
        weights = None
        if need_weights:  # the probabilities are an output: compute them explicitly
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
            probs = torch.softmax(attention_mask(scores, mask, causal), dim=-1)
            weights = probs.mean(1) if average_attn_weights else probs
            out = F.dropout(probs, p_drop) @ v if p_drop else probs @ v
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p_drop, is_causal=causal
            )
        out = self.out_proj(out.transpose(1, 2).flatten(-2))
        if unbatched:
            out = out[0]
            weights = weights[0] if weights is not None else None
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights


def unfuse_attention_(model: nn.Module) -> list[Applied]:
    """Replace every `nn.MultiheadAttention` in `model` (in place) by `UnfusedAttention`
    holding the same weights; returns one record per module (done or why not)."""
    done = []
    for name, m in list(model.named_modules()):
        if not isinstance(m, nn.MultiheadAttention):
            continue
        if m.bias_k is not None or m.add_zero_attn:
            done.append(Applied(name=name, kind="MultiheadAttention",
                                reason="add_bias_kv / add_zero_attn are not unfused"))  # fmt: skip
            continue
        parent_name, _, attr = name.rpartition(".")
        if not name:
            raise ValueError("unfuse_attention_ replaces submodules; wrap a bare module first")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, UnfusedAttention(m).train(m.training))
        done.append(Applied(name=name, kind="MultiheadAttention", action="unfused"))
    return done


def is_hf_conv1d(m: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2 and kin): a Linear with its weight stored [in, out]."""
    return (
        type(m).__name__ == "Conv1D" and hasattr(m, "nf") and getattr(m, "weight", None) is not None
    )


def conv1d_to_linear_(model: nn.Module) -> list[Applied]:
    """Replace every Hugging Face `Conv1D` (GPT-2's projections: `x @ W + b` through
    `torch.addmm`, weight [in, out]) by the `nn.Linear` with weight W^T: the same numbers,
    a layer `quantize_` and `sparsify_` reach (their vectors run along `in`, the reduction)."""
    done = []
    for name, m in list(model.named_modules()):
        if not name or not is_hf_conv1d(m):
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _linear(m.weight.T, m.bias).train(m.training))
        done.append(Applied(name=name, kind="Conv1D", action="nn.Linear"))
    return done


def expose_layers_(model: nn.Module) -> list[Applied]:
    """Every rewrite that turns hidden layers into modules the levers and the cost model
    reach, numbers unchanged: `unfuse_attention_` then `conv1d_to_linear_`."""
    return [*unfuse_attention_(model), *conv1d_to_linear_(model)]
