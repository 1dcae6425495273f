"""kv: emulation against a Llama forward pass written out by hand, with the cache's rounding
applied where the paper's rule puts it (keys after RoPE, values as projected)."""

from __future__ import annotations

import copy

import pytest
import torch

from picojoule.errors import ConfigError
from picojoule.quant.kvcache import install_kv, kv_cache, parse_kv, round_kv

transformers = pytest.importorskip("transformers")

V, H, I, NL, QH, KVH = 97, 32, 64, 2, 4, 2
HD = H // QH


def tiny_llama() -> torch.nn.Module:
    cfg = transformers.LlamaConfig(
        vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=NL,
        num_attention_heads=QH, num_key_value_heads=KVH, max_position_embeddings=128,
        rope_theta=10000.0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def int_absmax(x: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Symmetric INT-b with an fp32 scale amax/qmax over `dim`, round half to even, saturate."""
    qmax = 2 ** (bits - 1) - 1
    s = x.abs().amax(dim=dim, keepdim=True) / qmax
    s = torch.where(s == 0, torch.ones_like(s), s)
    return torch.clamp(torch.round(x / s), -qmax - 1, qmax) * s


def by_token(x: torch.Tensor, bits: int) -> torch.Tensor:
    return int_absmax(x, bits, dim=-1)


def by_channel(x: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """One scale per channel per `group` tokens; the incomplete last group stays float."""
    out = x.clone()
    t = x.shape[-2]
    for start in range(0, t - t % group, group):
        out[..., start : start + group, :] = int_absmax(x[..., start : start + group, :], bits, -2)
    return out


def hand_llama(model: torch.nn.Module, ids: torch.Tensor, round_k, round_v) -> torch.Tensor:
    """Llama (RMSNorm, RoPE, grouped-query causal attention, SwiGLU), written out."""
    sd = model.state_dict()
    eps = model.config.rms_norm_eps
    t = ids.shape[1]

    def rms(x, w):
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    inv = 1.0 / (10000.0 ** (torch.arange(0, HD, 2).float() / HD))
    ang = torch.arange(t).float()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(x):
        x1, x2 = x[..., : HD // 2], x[..., HD // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = sd["model.embed_tokens.weight"][ids]
    for i in range(NL):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])
        q = (h @ sd[p + "self_attn.q_proj.weight"].T).view(1, t, QH, HD).transpose(1, 2)
        k = (h @ sd[p + "self_attn.k_proj.weight"].T).view(1, t, KVH, HD).transpose(1, 2)
        v = (h @ sd[p + "self_attn.v_proj.weight"].T).view(1, t, KVH, HD).transpose(1, 2)
        q, k = rope(q), rope(k)
        k, v = round_k(k), round_v(v)  # what the cache stores
        k, v = k.repeat_interleave(QH // KVH, 1), v.repeat_interleave(QH // KVH, 1)
        scores = (q @ k.transpose(-1, -2)) / HD**0.5
        scores = scores.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        a = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(1, t, H)
        x = x + a @ sd[p + "self_attn.o_proj.weight"].T
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        gate = torch.nn.functional.silu(h @ sd[p + "mlp.gate_proj.weight"].T)
        x = x + (gate * (h @ sd[p + "mlp.up_proj.weight"].T)) @ sd[p + "mlp.down_proj.weight"].T
    return rms(x, sd["model.norm.weight"]) @ sd["lm_head.weight"].T


CASES = {
    "fp32": (lambda k: k, lambda v: v),
    "int8": (lambda k: by_token(k, 8), lambda v: by_token(v, 8)),
    "int4": (lambda k: by_token(k, 4), lambda v: by_token(v, 4)),
    "int4@channel4": (lambda k: by_channel(k, 4, 4), lambda v: by_channel(v, 4, 4)),
    "int2@kivi4": (lambda k: by_channel(k, 2, 4), lambda v: by_token(v, 2)),
}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("spec", list(CASES))
def test_kv_emulation_equals_hand_reference(spec: str, attn: str) -> None:
    model = tiny_llama()
    model.config._attn_implementation = attn
    ids = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hand_llama(model, ids, *CASES[spec])
        plain = model(input_ids=ids, use_cache=False).logits
        install_kv(model, parse_kv(spec))
        got = model(input_ids=ids, use_cache=False).logits
    assert torch.allclose(got, want, atol=2e-5, rtol=1e-4), (got - want).abs().max()
    if spec != "fp32":  # the lever changes the answer, so the check above can fail
        assert (got - plain).abs().max() > 1e-4


@pytest.mark.parametrize("cache_kw", ["cache", "past_key_values"])
def test_decode_with_a_caller_cache_matches_one_pass(cache_kw: str) -> None:
    """Per-token scales: prefill 7 tokens, then decode 3 one by one through the quantized
    cache; the logits equal one pass over all 10."""
    model = tiny_llama()
    install_kv(model, parse_kv("int4"))
    ids = torch.randint(0, V, (1, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = model(input_ids=ids, use_cache=False).logits
        out = model(input_ids=ids[:, :7], use_cache=True)
        cache, steps = out.past_key_values, [out.logits]
        for j in range(7, 10):
            out = model(input_ids=ids[:, j : j + 1], use_cache=True, **{cache_kw: cache})
            cache = out.past_key_values
            steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, 1), whole, atol=2e-5, rtol=1e-4)


def test_round_kv_groups_and_residual() -> None:
    x = torch.randn(2, 3, 11, 8, generator=torch.Generator().manual_seed(3))
    spec = parse_kv("int4@channel4")
    y = round_kv(x, spec, "channel")
    assert torch.equal(y[..., 8:, :], x[..., 8:, :])  # residual of 3 tokens: float
    assert torch.equal(y[..., :8, :], by_channel(x[..., :8, :], 4, 4))
    head = round_kv(x, parse_kv("int4@head4"), "head")
    g = x[..., :4, :].reshape(2, 3, 32)
    assert torch.allclose(head[..., :4, :], int_absmax(g, 4, -1).reshape(2, 3, 4, 8))
    assert torch.equal(round_kv(x[..., :3, :], spec, "channel"), x[..., :3, :])


def test_cache_wrapping_keeps_the_float_record() -> None:
    model = tiny_llama()
    spec = parse_kv("int4")
    base = transformers.DynamicCache(config=model.config)
    k = torch.randn(1, KVH, 5, HD)
    for i in range(NL):
        base.update(k, k, i)
    ours = kv_cache(spec, model.config, like=base)
    assert torch.equal(ours.layers[0].keys, k)  # stored float, rounded when read
    rk, _ = ours.update(torch.zeros(1, KVH, 1, HD), torch.zeros(1, KVH, 1, HD), 0)
    assert torch.equal(rk[..., :5, :], by_token(k, 4))


def test_bits_per_element() -> None:
    assert parse_kv("int4").bits_per_element(64) == 4 + 32 / 64
    assert parse_kv("int2@kivi32").bits_per_element(64) == ((2 + 1) + (2 + 0.5)) / 2
    assert parse_kv("nvfp4").bits_per_element(64) == 4.5
    assert parse_kv("e4m3/none").bits_per_element(64) == 8
    assert parse_kv("fp16").bits_per_element(64) == 16


@pytest.mark.parametrize(
    ("value", "msg"),
    [
        ("int4@tok", "granularity 'tok' unknown.*did you mean: token"),
        ("int4@token8", "per-token scales take no group size"),
        ("int4@channel0", "group of 0 tokens"),
        ("codebook16", "codebooks hold weights"),
        ("nope7", "kv:nope7"),
        ("int4@", "write kv:FORMAT"),
        ("", "write kv:FORMAT"),
    ],
)
def test_bad_specs(value: str, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        parse_kv(value)


def test_refused_on_models_without_a_cache_and_twice() -> None:
    with pytest.raises(ConfigError, match="keeps no KV cache"):
        install_kv(torch.nn.Linear(2, 2), parse_kv("int4"))
    model = tiny_llama()
    install_kv(model, parse_kv("int4"))
    with pytest.raises(ConfigError, match="already has kv:int4"):
        install_kv(copy.deepcopy(model), parse_kv("int8"))


def test_kv_through_quantize_and_the_recipe_string() -> None:
    from picojoule.quant import parse_recipe, quantize_

    cfg = parse_recipe("w:int8,kv:int2@kivi32")
    assert cfg.kv == parse_kv("int2@kivi32") and str(cfg) == "w:int8,kv:int2@kivi32"
    model = tiny_llama()
    done = quantize_(model, "w:int8,kv:int4")
    assert done[-1].name == "<kv cache>" and done[-1].action == "kv:int4"
    only_kv = tiny_llama()
    assert [r.action for r in quantize_(only_kv, "kv:e4m3")] == ["kv:e4m3"]
    with pytest.raises(ConfigError, match="already kv:e4m3; recipes do not stack"):
        quantize_(only_kv, "kv:int4")
    with pytest.raises(ConfigError, match="keeps no KV cache"):
        quantize_(torch.nn.Sequential(torch.nn.Linear(2, 2)), "w:int8,kv:int4")
    with pytest.raises(ConfigError, match="recipe 'kv:int4@tok'.*granularity 'tok'"):
        parse_recipe("kv:int4@tok")
