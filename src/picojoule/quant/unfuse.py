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

`quantize_`, `sparsify_`, `winogradize_` and `apply_algorithms_` run `expose_layers_` first by
default (`expose=False` opts out) and return its records ahead of their own; `from_model`
records the exposed layers through `exposed(model)`, which puts the model's own modules back
afterwards. `describe_exposed` says in one line what was rewritten.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.config import Applied
from picojoule.errors import ConfigError
from picojoule.quant.products import attention_mask

__all__ = [
    "UnfusedAttention",
    "unfuse_attention_",
    "conv1d_to_linear_",
    "expose_layers_",
    "Exposure",
    "rewrite_hidden_",
    "exposed",
    "describe_exposed",
    "check_expose",
]


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, *, share: bool = False) -> nn.Linear:
    """The `nn.Linear` computing `x @ weight.T + bias`; `share` keeps views of the given
    tensors (no copy: for a rewrite that is undone) instead of owning copies."""
    # built on the meta device: no random init of a weight that is replaced at once
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    lin.weight = nn.Parameter(weight.detach() if share else weight.detach().clone())
    if bias is not None:
        lin.bias = nn.Parameter(bias.detach() if share else bias.detach().clone())
    return lin


class UnfusedAttention(nn.Module):
    """`nn.MultiheadAttention`'s computation with its four projections as `nn.Linear`."""

    # nn.TransformerEncoderLayer/DecoderLayer test this before their fused fast path; None
    # sends them down the module path, through this module's forward.
    in_proj_bias = None

    def __init__(self, mha: nn.MultiheadAttention, *, share: bool = False) -> None:
        """The projections hold copies of `mha`'s weights, or views of them with `share`."""
        super().__init__()
        e = mha.embed_dim
        if mha._qkv_same_embed_dim:
            wq, wk, wv = mha.in_proj_weight.chunk(3)
        else:
            wq, wk, wv = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
        bq = bk = bv = None
        if mha.in_proj_bias is not None:
            bq, bk, bv = mha.in_proj_bias.chunk(3)
        self.q_proj = _linear(wq, bq, share=share)
        self.k_proj = _linear(wk, bk, share=share)
        self.v_proj = _linear(wv, bv, share=share)
        self.out_proj = _linear(mha.out_proj.weight, mha.out_proj.bias, share=share)
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


_NOT_UNFUSED = "add_bias_kv / add_zero_attn are not unfused"


def is_hf_conv1d(m: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2 and kin): a Linear with its weight stored [in, out]."""
    return (
        type(m).__name__ == "Conv1D" and hasattr(m, "nf") and getattr(m, "weight", None) is not None
    )


@dataclass
class Exposure:
    """What `rewrite_hidden_` did: one record per hidden module (rewritten, or why not), and
    `undo()`, which puts the original modules back (their weights were never touched)."""

    records: list[Applied] = field(default_factory=list)
    _swaps: list[tuple[nn.Module, str, nn.Module]] = field(default_factory=list, repr=False)

    def undo(self) -> None:
        """Restore every replaced module, last first; a second call does nothing."""
        for parent, attr, old in reversed(self._swaps):
            setattr(parent, attr, old)
        self._swaps.clear()


def rewrite_hidden_(
    model: nn.Module, *, attention: bool = True, conv1d: bool = True, share: bool = False
) -> Exposure:
    """Replace, in place, every `nn.MultiheadAttention` by `UnfusedAttention` (`attention`)
    and every Hugging Face `Conv1D` by its `nn.Linear` (`conv1d`), same numbers; `share` makes
    the new layers views of the old weights (for a rewrite that is undone). A model with
    nothing hidden comes back unchanged with no records, so a second call is a no-op.

    The model itself is never replaced: a bare `Conv1D` is left alone, a bare
    `nn.MultiheadAttention` is recorded as skipped (wrap it in a module to unfuse it)."""
    out = Exposure()
    for name, m in list(model.named_modules()):
        if attention and isinstance(m, nn.MultiheadAttention):
            kind = "MultiheadAttention"
            if m.bias_k is not None or m.add_zero_attn:
                out.records.append(Applied(name=name, kind=kind, reason=_NOT_UNFUSED))
                continue
            if not name:
                why = "the model itself; wrap it in a module to unfuse it"
                out.records.append(Applied(name=name, kind=kind, reason=why))
                continue
            new: nn.Module = UnfusedAttention(m, share=share)
            action = "unfused"
        elif conv1d and name and is_hf_conv1d(m):
            kind, action = "Conv1D", "nn.Linear"
            new = _linear(m.weight.T, m.bias, share=share)
        else:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, new.train(m.training))
        out._swaps.append((parent, attr, m))
        out.records.append(Applied(name=name, kind=kind, action=action))
    return out


@contextmanager
def exposed(model: nn.Module, enabled: bool = True) -> Iterator[list[Applied]]:
    """Hidden layers exposed for the block (views of the same weights: no copy), the model's
    own modules put back when it ends, even on an error; yields `expose_layers_`'s records.
    `enabled=False` yields [] and changes nothing. How `from_model` counts GPT-2's Conv1D
    projections without changing the user's model."""
    if not enabled:
        yield []
        return
    done = rewrite_hidden_(model, share=True)
    try:
        yield done.records
    finally:
        done.undo()


def check_expose(expose: object, verb: str) -> bool:
    """`expose` if it is a bool, else a `ConfigError` naming the verb."""
    if not isinstance(expose, bool):
        raise ConfigError(f"{verb}: expose must be True or False, not {expose!r}")
    return expose


def describe_exposed(records: Sequence[Applied]) -> str:
    """One line: what `expose_layers_` rewrote (and left hidden), e.g. "exposed 8 Conv1D as
    nn.Linear: h.0.attn.c_attn, h.0.attn.c_proj, ..."; empty when there are no such records.
    Records of other kinds (a lever's own) are ignored, so a verb's whole list can be given."""
    verbs = {
        "Conv1D": "exposed {n} Conv1D as nn.Linear",
        "MultiheadAttention": "unfused {n} MultiheadAttention into nn.Linear projections + SDPA",
    }
    parts = []
    for kind, verb in verbs.items():
        mine = [r for r in records if r.kind == kind]
        if done := [r.name for r in mine if r.action]:
            parts.append(f"{verb.format(n=len(done))}: {', '.join(done)}")
        if kept := [f"{r.name or '<root>'} ({r.reason})" for r in mine if r.reason]:
            parts.append(f"left hidden: {', '.join(kept)}")
    return "; ".join(parts)


def unfuse_attention_(model: nn.Module) -> list[Applied]:
    """Replace every `nn.MultiheadAttention` in `model` (in place) by `UnfusedAttention`
    holding the same weights; returns one record per module (done or why not)."""
    bare = isinstance(model, nn.MultiheadAttention)
    if bare and model.bias_k is None and not model.add_zero_attn:
        raise ValueError("unfuse_attention_ replaces submodules; wrap a bare module first")
    return rewrite_hidden_(model, conv1d=False).records


def conv1d_to_linear_(model: nn.Module) -> list[Applied]:
    """Replace every Hugging Face `Conv1D` (GPT-2's projections: `x @ W + b` through
    `torch.addmm`, weight [in, out]) by the `nn.Linear` with weight W^T: the same numbers,
    a layer `quantize_` and `sparsify_` reach (their vectors run along `in`, the reduction)."""
    return rewrite_hidden_(model, attention=False).records


def expose_layers_(model: nn.Module) -> list[Applied]:
    """Every rewrite that turns hidden layers into modules the levers and the cost model
    reach, numbers unchanged: `unfuse_attention_` then `conv1d_to_linear_` (one pass; a model
    already exposed gives [] and is not touched). `quantize_`, `sparsify_`, `winogradize_`
    and `apply_algorithms_` call it first unless given `expose=False`."""
    return rewrite_hidden_(model).records
