"""Prefill and decode costs: the recorded work equals the model's arithmetic, written out."""

from __future__ import annotations

import pytest
import torch

from picojoule.errors import ConfigError
from picojoule.lm.phases import Phases, kv_cache_bytes, phase_costs, phase_counts

transformers = pytest.importorskip("transformers")

V, H, I, NL, QH, KVH = 256, 64, 128, 2, 4, 2  # vocab, hidden, MLP, layers, q heads, kv heads
HD = H // QH


def tiny_llama() -> torch.nn.Module:
    cfg = transformers.LlamaConfig(
        vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=NL,
        num_attention_heads=QH, num_key_value_heads=KVH, max_position_embeddings=256,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def linear_macs(tokens: int) -> int:
    """q, k, v, o projections and the SwiGLU MLP, per layer, for `tokens` tokens."""
    per_tok = H * H + 2 * H * KVH * HD + H * H + 3 * H * I
    return NL * tokens * per_tok


def test_prefill_macs_are_the_models_arithmetic() -> None:
    ph = Phases(prompt=16, batch=1, context=32, decode=8)
    counts = phase_counts(tiny_llama(), ph)
    pre = counts["prefill"]
    # Linear layers + attention (QK^T and AV: P x P x head_dim per q head, causal mask in
    # densities, not in MACs) + the LM head on the last position only (logits_to_keep=1).
    attn = NL * 2 * QH * 16 * 16 * HD
    assert sum(c.macs for c in pre) == linear_macs(16) + attn + H * V
    assert pre[-1].name == "lm_head" and pre[-1].layer.N == 1


@pytest.mark.parametrize("batch", [1, 3])
def test_decode_step_reads_the_kv_cache_once_per_kv_head(batch: int) -> None:
    ph = Phases(prompt=8, batch=batch, context=40, decode=9)
    counts = phase_counts(tiny_llama(), ph)
    for key, cache in (("decode_first", 40), ("decode_last", 48)):
        step = counts[key]
        qk = [c.layer for c in step if c.name.endswith(".qk")]
        av = [c.layer for c in step if c.name.endswith(".av")]
        assert len(qk) == len(av) == NL
        for a, b in zip(qk, av, strict=True):
            # K^T operand: the cache plus the new token, each key/value head once
            assert a.weight_elems == batch * KVH * HD * (cache + 1)
            assert b.weight_elems == batch * KVH * HD * (cache + 1)
            assert a.macs == b.macs == batch * QH * HD * (cache + 1)
        lin = sum(c.macs for c in step if c.layer.kind != "matmul")
        assert lin == linear_macs(batch) + batch * H * V  # LM head on every new token


def test_kv_cache_bytes() -> None:
    cfg = tiny_llama().config
    assert kv_cache_bytes(cfg, 100) == 2 * NL * KVH * HD * 100 * 4
    got = kv_cache_bytes(cfg, 100, batch=2, bits_per_element=4.25)
    assert got == 2 * NL * KVH * HD * 200 * 4.25 / 8


def test_phase_costs_decode_is_memory_heavy_and_grows_with_context() -> None:
    model = tiny_llama()
    short = Phases(prompt=32, batch=1, context=16, decode=4)
    long = Phases(prompt=32, batch=1, context=200, decode=4)
    for target in ("eyeriss", "h100"):
        a = phase_costs(phase_counts(model, short), target, short)
        b = phase_costs(phase_counts(model, long), target, long)
        for cost in (*a.values(), *b.values()):
            assert cost.energy_per_token_pj > 0 and cost.tokens_per_s > 0
            assert cost.sol_ratio is None or cost.sol_ratio >= 1.0 - 1e-9
        # decode pays per token for what prefill shares among the prompt
        assert a["decode"].energy_per_token_pj > a["prefill"].energy_per_token_pj
        # a longer context costs attention data at decode; the weights' share stays
        assert b["decode"].kv_cache_pj > 5 * a["decode"].kv_cache_pj
        assert b["decode"].weights_pj == pytest.approx(a["decode"].weights_pj, rel=0.05)
        assert b["prefill"].energy_per_token_pj == pytest.approx(
            a["prefill"].energy_per_token_pj, rel=1e-6
        )
        if target == "eyeriss":  # accelerator rows add up
            d = a["decode"]
            assert d.math_pj + d.weights_pj + d.kv_cache_pj == pytest.approx(
                d.energy_per_token_pj, rel=1e-9
            )


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"prompt": 0}, "--prompt 0"),
        ({"batch": -1}, "--batch -1"),
        ({"context": 1.5}, "--context 1.5"),
        ({"decode": True}, "--decode True"),
        ({"batch": 5000}, "at most 4096"),
    ],
)
def test_bad_phases(kw: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        Phases(**kw)


def test_scenario_longer_than_the_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="exceed the model's 256 positions"):
        Phases(prompt=16, context=250, decode=10).check_positions(256)
    with pytest.raises(ConfigError, match="--prompt 300"):
        Phases(prompt=300, context=8, decode=8).check_positions(256)
    Phases(prompt=256, context=200, decode=56).check_positions(256)


def test_kv_lever_shrinks_the_cache_operand_at_decode() -> None:
    from picojoule.quant.kvcache import install_kv, parse_kv

    ph = Phases(prompt=8, batch=1, context=120, decode=8)
    plain = tiny_llama()
    kv = tiny_llama()
    install_kv(kv, parse_kv("int4"))
    a, b = phase_counts(plain, ph), phase_counts(kv, ph)
    qk = [c.layer for c in b["decode_first"] if c.name.endswith(".qk")]
    assert qk and all(layer.weight_format == "int4/channel" for layer in qk)
    assert all(layer.input_format == "fp32" for layer in qk)  # queries stay in the study float
    ca, cb = phase_costs(a, "eyeriss", ph), phase_costs(b, "eyeriss", ph)
    assert cb["decode"].kv_cache_pj < 0.5 * ca["decode"].kv_cache_pj
    assert cb["decode"].weights_pj == pytest.approx(ca["decode"].weights_pj, rel=1e-6)


def test_gpt2_every_projection_and_the_tied_head_are_counted() -> None:
    """GPT-2's Conv1D projections are exposed as Linear layers first (as the study does), so
    the recorded prefill MACs equal the architecture's arithmetic."""
    from picojoule.quant import expose_layers_

    E, NH, NLY, VOC, P = 32, 4, 2, 120, 12
    cfg = transformers.GPT2Config(vocab_size=VOC, n_embd=E, n_layer=NLY, n_head=NH, n_positions=64)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    expose_layers_(model)
    counts = phase_counts(model, Phases(prompt=P, batch=1, context=16, decode=2))
    per_layer = P * (E * 3 * E + E * E + E * 4 * E + 4 * E * E)  # c_attn, c_proj, c_fc, mlp proj
    attn = NLY * 2 * NH * P * P * (E // NH)
    assert sum(c.macs for c in counts["prefill"]) == NLY * per_layer + attn + E * VOC
    decode = counts["decode_first"]
    kv = [c.layer for c in decode if c.name.endswith(".qk")]
    assert len(kv) == NLY and all(k.weight_elems == NH * (E // NH) * 17 for k in kv)
