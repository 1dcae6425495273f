"""unfuse_attention_: nn.MultiheadAttention's numbers from Linear projections and SDPA."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from picojoule.quant import UnfusedAttention, quantize_, unfuse_attention_
from picojoule.study.cost import layer_counts

E, H, B, L, S = 16, 4, 2, 5, 7


def _pair(**kw) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ref = nn.Sequential(nn.MultiheadAttention(E, H, **kw)).eval()
    new = copy.deepcopy(ref)
    rec = unfuse_attention_(new)
    assert [(r.name, r.action) for r in rec] == [("0", "unfused")]
    assert isinstance(new[0], UnfusedAttention)
    return ref[0], new[0]


def _close(a, b) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_same_outputs_with_masks(batch_first, need_weights):
    ref, new = _pair(batch_first=batch_first, kdim=6, vdim=3)
    g = torch.Generator().manual_seed(1)
    shape = (lambda n: (B, n)) if batch_first else (lambda n: (n, B))
    q = torch.randn(*shape(L), E, generator=g)
    k = torch.randn(*shape(S), 6, generator=g)
    v = torch.randn(*shape(S), 3, generator=g)
    pad = torch.zeros(B, S, dtype=torch.bool)
    pad[1, -2:] = True
    causalish = torch.ones(L, S, dtype=torch.bool).triu(3)
    per_head = torch.randn(B * H, L, S, generator=g)
    pad_add = torch.zeros(B, S).masked_fill(pad, float("-inf"))  # additive, as attn_mask is
    cases = [{}, {"key_padding_mask": pad}, {"attn_mask": causalish},
             {"attn_mask": per_head, "key_padding_mask": pad_add},
             {"attn_mask": causalish.float() * -1e4, "average_attn_weights": False}]  # fmt: skip
    with torch.no_grad():
        for kw in cases:
            (y0, w0), (y1, w1) = (
                ref(q, k, v, need_weights=need_weights, **kw),
                new(q, k, v, need_weights=need_weights, **kw),
            )
            _close(y1, y0)
            if need_weights:
                _close(w1, w0)
            else:
                assert w1 is None


def test_unbatched_and_transformer_layer():
    ref, new = _pair()
    x = torch.randn(L, E)
    with torch.no_grad():
        _close(new(x, x, x)[0], ref(x, x, x)[0])
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, 32, dropout=0.0, batch_first=True).eval()
    mine = copy.deepcopy(layer)
    unfuse_attention_(mine)
    x = torch.randn(B, L, E)
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[0, -1] = True
    causal = nn.Transformer.generate_square_subsequent_mask(L)
    with torch.no_grad():
        _close(mine(x, src_key_padding_mask=pad), layer(x, src_key_padding_mask=pad))
        _close(mine(x, src_mask=causal, is_causal=True), layer(x, src_mask=causal, is_causal=True))


def test_unfused_attention_is_quantized_and_costed_whole():
    torch.manual_seed(0)
    model = nn.TransformerEncoderLayer(E, H, 32, dropout=0.0, batch_first=True)
    unfuse_attention_(model)
    recs = quantize_(model, "w:int8,a:int8,attn:e4m3")  # no warning: nothing is out of reach
    done = {r.name for r in recs if not r.skipped}
    assert {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
            "linear1", "linear2", "<products>"} <= done  # fmt: skip
    rows = layer_counts(model.eval(), torch.randn(1, L, E))
    names = [r.name for r in rows]
    attn = ["q_proj", "k_proj", "v_proj", "sdpa.qk", "sdpa.av", "out_proj"]
    assert names[:6] == [f"self_attn.{n}" for n in attn]
    assert rows[3].layer.input_format == "e4m3/tensor"


def test_modules_with_bias_kv_are_left_alone():
    model = nn.Sequential(nn.MultiheadAttention(E, H, add_bias_kv=True))
    rec = unfuse_attention_(model)
    assert rec[0].skipped and "add_bias_kv" in rec[0].reason
    assert isinstance(model[0], nn.MultiheadAttention)


def test_gpt2_conv1d_projections_become_linears():
    tf = pytest.importorskip("transformers")
    from picojoule.quant import expose_layers_

    cfg = tf.GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    ref = tf.GPT2Model(cfg).eval()
    model = copy.deepcopy(ref)
    done = expose_layers_(model)
    assert len(done) == 8 and {r.action for r in done} == {"nn.Linear"}  # 4 per block
    assert isinstance(model.h[0].attn.c_attn, nn.Linear)
    ids = torch.randint(0, 100, (2, 10))
    with torch.no_grad():
        _close(model(ids).last_hidden_state, ref(ids).last_hidden_state)
    recs = quantize_(model, "w:int8,a:int8,attn:e4m3")
    assert sum(not r.skipped for r in recs) == 9  # 8 projections + the products
    kinds = [r.kind for r in layer_counts(model, ids[:1])]
    assert kinds.count("Linear") == 8 and kinds.count("matmul") == 4


@pytest.mark.parametrize("need_weights", [True, False])
def test_is_causal_without_a_mask_is_the_causal_mask(need_weights):
    _, new = _pair(batch_first=True)
    x = torch.randn(B, L, E, generator=torch.Generator().manual_seed(3))
    masked = torch.ones(L, L, dtype=torch.bool).triu(1)  # MHA: True = may not attend
    with torch.no_grad():
        _close(
            new(x, x, x, is_causal=True, need_weights=need_weights)[0],
            new(x, x, x, attn_mask=masked, need_weights=need_weights)[0],
        )
