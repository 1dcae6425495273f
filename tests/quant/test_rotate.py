"""Hadamard rotations (rotate:hadamard, rotate:block<N>): the matrices, their exactness on
float models (against the unrotated model and a Llama forward written out by hand), the key
rotation in the KV cache, what QuaRot reports in kind (flatter activations, lower W4A4
error), costs and refusals."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn

from picojoule.errors import ConfigError, ShapeError
from picojoule.quant import quantize_
from picojoule.quant.kvcache import install_kv, key_rotation_of, kv_cache, parse_kv, round_kv
from picojoule.quant.rotate import (
    RotationCost,
    fast_hadamard,
    hadamard_adds,
    hadamard_factors,
    hadamard_matrix,
    random_hadamard,
    rotate_block_,
    rotate_hadamard_,
    rotation_of,
)

transformers = pytest.importorskip("transformers")

V = 101
SHAPES = {"h48": (48, 96), "h64": (64, 128)}  # 4 heads of 12 (Paley 12) / of 16; 2 kv heads


def tiny_llama(hidden: int, inter: int, dtype: torch.dtype = torch.float32) -> nn.Module:
    cfg = transformers.LlamaConfig(
        hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=V,
        tie_word_embeddings=True, initializer_range=0.2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # gains away from 1, so the folds are exercised
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    return model.to(dtype)


@pytest.fixture
def exact_rmsnorm(monkeypatch: pytest.MonkeyPatch) -> None:
    """LlamaRMSNorm computes in float32 whatever the input; keep float64 in float64 so a
    float64 comparison sees the rotation's algebra, not that cast."""
    from transformers.models.llama import modeling_llama

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (
            self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        )

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", forward)


def ids(t: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (2, t), generator=torch.Generator().manual_seed(seed))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# ----------------------------------------------------------------------------- matrices

ORDERS = [1, 2, 4, 12, 20, 24, 28, 48, 64, 384, 576, 1536]


@pytest.mark.parametrize("n", ORDERS)
def test_hadamard_orthonormal_with_entries_one_over_sqrt_n(n: int) -> None:
    h = hadamard_matrix(n)
    assert h.shape == (n, n) and h.dtype == torch.float64
    assert torch.allclose(h @ h.T, torch.eye(n, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(h.abs(), torch.full_like(h, 1 / math.sqrt(n)), rtol=0, atol=1e-15)
    assert hadamard_matrix(n, torch.float32).dtype == torch.float32


def test_constructions_and_costs() -> None:
    assert hadamard_factors(576) == ((12, 12), 2)  # SmolLM2-135M's hidden size
    assert hadamard_factors(1536) == ((12,), 7) and hadamard_factors(384) == ((12,), 5)
    assert hadamard_factors(24) == ((12,), 1) and hadamard_factors(28) == ((28,), 0)
    assert torch.equal(hadamard_matrix(8), hadamard_matrix(8).T)  # Sylvester: symmetric
    assert hadamard_adds(64) == RotationCost(adds=64 * 6, macs=0)
    assert hadamard_adds(1536) == RotationCost(adds=1536 * 7, macs=1536 * 12)
    assert hadamard_adds(576) == RotationCost(adds=576 * 2, macs=576 * 24)
    assert hadamard_adds(1) == RotationCost(0, 0)


@pytest.mark.parametrize("n", [0, 3, 6, 10, 92])
def test_orders_without_a_construction(n: int) -> None:
    with pytest.raises(ShapeError, match=f"no Hadamard matrix of order {n}:"):
        hadamard_matrix(n)
    with pytest.raises(ShapeError):
        hadamard_adds(n)


def test_random_hadamard_is_a_signed_hadamard_fixed_by_the_seed() -> None:
    a, b, c = random_hadamard(48, 0), random_hadamard(48, 0), random_hadamard(48, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.allclose(a @ a.T, torch.eye(48, dtype=torch.float64), atol=1e-12)
    signs = (a / hadamard_matrix(48))[0]  # H diag(s): column j scaled by s_j
    assert set(signs.round().tolist()) == {-1.0, 1.0}
    assert torch.allclose(a, hadamard_matrix(48) * signs[None, :])


@pytest.mark.parametrize("n", [2, 12, 16, 24, 48, 576, 1536])
def test_fast_hadamard_equals_the_matrix(n: int) -> None:
    x = torch.randn(3, 5, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    assert torch.allclose(fast_hadamard(x, n), x @ hadamard_matrix(n), atol=1e-12)
    x32 = x.float()
    assert rel(fast_hadamard(x32, n), x32 @ hadamard_matrix(n, torch.float32)) < 1e-5


def test_fast_hadamard_block_diagonal() -> None:
    x = torch.randn(7, 96, dtype=torch.float64)
    h = hadamard_matrix(16)
    assert torch.allclose(fast_hadamard(x, 16), x @ torch.block_diag(*[h] * 6), atol=1e-12)
    with pytest.raises(ShapeError, match="not a multiple"):
        fast_hadamard(x, 64)


# ----------------------------------------------------------------------------- exactness


def mlp(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Linear(64, 96), nn.GELU(), nn.Linear(96, 40), nn.ReLU(), nn.Linear(40, 8)
    ).to(dtype)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_rotate_block_mlp_is_exact(dtype: torch.dtype, tol: float) -> None:
    model = mlp(dtype)
    x = torch.randn(5, 64, dtype=dtype) * 3
    with torch.no_grad():
        want = model(x)
        rot = copy.deepcopy(model)
        records = rotate_block_(rot, 16)
        got = rot(x)
    assert rel(got, want) < tol
    assert not torch.allclose(rot[0].weight, model[0].weight)  # the weights did change
    assert [r.layer for r in records] == ["0", "2"] and records.skipped[0].startswith("4:")
    assert records[0].transforms == 4 and records[0].cost == RotationCost(4 * 16 * 4, 0)
    assert records[1].cost == hadamard_adds(16) * 6 and records.total().adds == 16 * 4 * 10
    assert rotation_of(rot) == "block16"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_rotated_llama_equals_the_float_model(
    shape: str, dtype: torch.dtype, exact_rmsnorm
) -> None:
    model = tiny_llama(*SHAPES[shape], dtype)
    tok = ids()
    tol = 2e-5 if dtype == torch.float32 else 1e-10
    with torch.no_grad():
        want = model(input_ids=tok).logits
        assert want.abs().max() > 1.0  # not trivially small
        quarot, block = copy.deepcopy(model), copy.deepcopy(model)
        records = rotate_hadamard_(quarot, seed=5)
        rotate_block_(block, 16)
        got_q, got_b = quarot(input_ids=tok).logits, block(input_ids=tok).logits
    assert rel(got_q, want) < tol and rel(got_b, want) < tol
    emb = quarot.model.embed_tokens.weight
    assert quarot.lm_head.weight is not emb and not quarot.config.tie_word_embeddings
    assert not torch.allclose(emb, model.model.embed_tokens.weight)  # rotated
    assert torch.equal(quarot.model.norm.weight, torch.ones_like(quarot.model.norm.weight))
    assert block.lm_head.weight is not block.model.embed_tokens.weight
    hidden, inter = SHAPES[shape]
    hd = hidden // 4
    want_records = []
    for i in range(2):
        want_records += [
            (f"model.layers.{i}.mlp.down_proj", "input", inter, hadamard_adds(inter)),
            (f"model.layers.{i}.self_attn", "queries", hd, hadamard_adds(hd) * 4),
            (f"model.layers.{i}.self_attn", "keys", hd, hadamard_adds(hd) * 2),
        ]
    assert [(r.layer, r.where, r.size, r.cost) for r in records] == want_records


def test_online_flags_and_seed(exact_rmsnorm) -> None:
    model = tiny_llama(48, 96, torch.float64)
    tok = ids()
    with torch.no_grad():
        want = model(input_ids=tok).logits
        a, b = copy.deepcopy(model), copy.deepcopy(model)
        none = rotate_hadamard_(a, online_down=False, online_kv=False)
        rotate_hadamard_(b, seed=1, online_down=False, online_kv=False)
        assert rel(a(input_ids=tok).logits, want) < 1e-10
    assert list(none) == [] and key_rotation_of(a) is None
    assert not torch.allclose(a.model.embed_tokens.weight, b.model.embed_tokens.weight)


# ----------------------------------------------------------------------------- key rotation


def hand_llama(model: nn.Module, tok: torch.Tensor, round_k, round_v) -> torch.Tensor:
    """The float64 Llama forward (RMSNorm, RoPE, grouped-query causal attention, SwiGLU),
    written out, with the cache's rounding applied to keys (after RoPE) and values."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    c = model.config
    hidden, heads, kvh = c.hidden_size, c.num_attention_heads, c.num_key_value_heads
    hd, eps = hidden // heads, c.rms_norm_eps
    b, t = tok.shape
    inv = model.model.rotary_emb.inv_freq.float()
    ang = torch.arange(t).float()[:, None] * inv[None]  # float32, as transformers computes it
    cos, sin = torch.cat([ang, ang], -1).cos().double(), torch.cat([ang, ang], -1).sin().double()

    def rms(x, w):
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    def rope(x):
        return x * cos + torch.cat([-x[..., hd // 2 :], x[..., : hd // 2]], -1) * sin

    def heads_of(y, n):
        return y.view(b, t, n, hd).transpose(1, 2)

    x = sd["model.embed_tokens.weight"][tok]
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        h = rms(x, sd[p + "input_layernorm.weight"])
        q = rope(heads_of(h @ sd[p + "self_attn.q_proj.weight"].T, heads))
        k = rope(heads_of(h @ sd[p + "self_attn.k_proj.weight"].T, kvh))
        v = heads_of(h @ sd[p + "self_attn.v_proj.weight"].T, kvh)
        k, v = round_k(k), round_v(v)
        k, v = k.repeat_interleave(heads // kvh, 1), v.repeat_interleave(heads // kvh, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float("-inf"))
        a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(b, t, heads * hd)
        x = x + a @ sd[p + "self_attn.o_proj.weight"].T
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        g = torch.nn.functional.silu(h @ sd[p + "mlp.gate_proj.weight"].T)
        x = x + (g * (h @ sd[p + "mlp.up_proj.weight"].T)) @ sd[p + "mlp.down_proj.weight"].T
    return rms(x, sd["model.norm.weight"]) @ sd["lm_head.weight"].T


@pytest.mark.parametrize("kv_first", [True, False])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_rotated_llama_with_a_quantized_cache_equals_hand_reference(
    shape: str, kv_first: bool, exact_rmsnorm
) -> None:
    """kv:int4 on the QuaRot model: the cache holds round(K H) (R3) and round(V H) (R2's
    per-head rotation of v_proj), i.e. attention reads round(K H) H^T and round(V H) H^T."""
    model = tiny_llama(*SHAPES[shape], torch.float64)
    spec = parse_kv("int4")
    h = hadamard_matrix(SHAPES[shape][0] // 4)

    def rotated(x):
        return round_kv(x @ h, spec, "token") @ h.T

    def plain(x):
        return round_kv(x, spec, "token")

    tok = ids()
    with torch.no_grad():
        want = hand_llama(model, tok, rotated, rotated)
        unrotated = hand_llama(model, tok, plain, plain)
        if kv_first:
            install_kv(model, spec)
        rotate_hadamard_(model, seed=2)
        if not kv_first:
            install_kv(model, spec)
        got = model(input_ids=tok).logits
    assert rel(got, want) < 1e-8
    assert rel(got, unrotated) > 1e-3  # the rotation changes what the int4 cache holds


def test_cache_returns_round_kh_times_h_transpose() -> None:
    model = tiny_llama(64, 128)
    spec = parse_kv("int4@channel4")
    h = hadamard_matrix(16, torch.float32)
    cache = kv_cache(spec, model.config)
    cache.key_rotation = h.double()
    k = torch.randn(1, 2, 9, 16, generator=torch.Generator().manual_seed(4))
    k[..., 3] *= 20  # an outlier channel, as keys have
    v = torch.randn(1, 2, 9, 16)
    rk, rv = cache.update(k, v, 0)
    assert torch.allclose(rk, round_kv(k @ h, spec, "channel") @ h.T, atol=1e-6)
    assert torch.equal(rv, round_kv(v, spec, "channel"))  # values are not touched here
    err_rot = (rk - k)[..., :8, :].norm()
    err_plain = (round_kv(k, spec, "channel") - k)[..., :8, :].norm()
    assert err_rot != err_plain


# ----------------------------------------------------------------------------- QuaRot in kind


def outlier_input(n: int, mult: float, tokens: int = 128, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, n, generator=g)
    x[:, torch.randperm(n, generator=g)[:4]] *= mult  # 4 outlier channels
    return x


def kurtosis(x: torch.Tensor) -> float:
    x = x.flatten().double()
    x = x - x.mean()
    return (x.pow(4).mean() / x.pow(2).mean() ** 2).item()


def test_rotation_flattens_outlier_channels() -> None:
    x = outlier_input(256, 50.0)
    before = kurtosis(x)
    assert before > 20
    assert kurtosis(x @ random_hadamard(256, 0).float()) < before / 5
    lin = nn.Linear(256, 8)
    rotate_block_(lin, 16)
    seen = []
    lin.register_forward_pre_hook(lambda m, a: seen.append(a[0]))  # after the rotation
    lin(x)
    assert kurtosis(seen[0]) < before / 5


def w4a4_error(lin: nn.Linear, x: torch.Tensor) -> float:
    q = copy.deepcopy(lin)
    quantize_(q, "w:int4,a:int4")  # int4/channel weights, int4/tensor activations
    with torch.no_grad():
        y = lin(x)
        return ((q(x) - y).norm() / y.norm()).item()


def test_rotation_lowers_w4a4_error_and_runs_before_the_fake_quant() -> None:
    """Outlier channels set the per-tensor int4 scale, so the other channels round to zero;
    rotated, they share the range. (Outliers x8: at x50 the outliers carry almost all of the
    output, and int4/channel weight error (~20%) dominates either way.)"""
    torch.manual_seed(0)
    lin = nn.Linear(256, 64)
    with torch.no_grad():
        lin.weight.normal_(0, 0.05)
    x = outlier_input(256, 8.0)
    base = w4a4_error(lin, x)
    for block in (16, 256):  # block-diagonal and global
        rot = copy.deepcopy(lin)
        rotate_block_(rot, block)
        assert w4a4_error(rot, x) < 0.5 * base, block
    # the activation fake-quant sees the rotated input: output = Qa(x H) Qw(W H)^T + b
    from picojoule.quant.modules import ActivationFakeQuant, WeightFakeQuant
    from picojoule.quant.recipe import resolve_format

    rot = copy.deepcopy(lin)
    rotate_block_(rot, 16)
    w_rot = rot.weight.detach().clone()
    quantize_(rot, "w:int4,a:int4")
    qa = ActivationFakeQuant(resolve_format("int4", "activation"), role="features")
    qw = WeightFakeQuant(resolve_format("int4", "weight"))
    h_bd = torch.block_diag(*[hadamard_matrix(16, torch.float32)] * 16)
    with torch.no_grad():
        want = qa(x @ h_bd) @ qw(w_rot).T + lin.bias
        wrong_order = (qa(x) @ h_bd) @ qw(w_rot).T + lin.bias  # fake-quant, then rotation
        got = rot(x)
    assert rel(got, want) < 1e-3
    assert rel(wrong_order, want) > 1e-2


# ----------------------------------------------------------------------------- refusals


def test_refusals() -> None:
    with pytest.raises(ConfigError, match="rotate:hadamard needs a Llama-family causal LM; use"):
        rotate_hadamard_(mlp(torch.float32))
    not_rms = tiny_llama(48, 96)
    not_rms.model.layers[0].input_layernorm = nn.LayerNorm(48)  # mean-subtracting: refused
    with pytest.raises(ConfigError, match="needs a Llama-family"):
        rotate_hadamard_(not_rms)
    for bad in (12, 1, 0, "16"):
        with pytest.raises(ConfigError, match="the block must be a power of two"):
            rotate_block_(mlp(torch.float32), bad)  # type: ignore[arg-type]
    quantized = mlp(torch.float32)
    quantize_(quantized, "w:int8", filter_fn=lambda m, n: n == "2")
    before = quantized[0].weight.detach().clone()
    with pytest.raises(ConfigError, match=r"^2 is already quantized; rotate a float model"):
        rotate_block_(quantized, 16)
    assert torch.equal(quantized[0].weight, before)  # refused before any change
    llama = tiny_llama(48, 96)
    quantize_(llama, "w:int8", filter_fn=lambda m, n: n.endswith("down_proj"))
    with pytest.raises(ConfigError, match="already quantized"):
        rotate_hadamard_(llama)
    twice = tiny_llama(48, 96)
    rotate_hadamard_(twice)
    with pytest.raises(ConfigError, match="already rotated"):
        rotate_hadamard_(twice)
    with pytest.raises(ConfigError, match="already rotated"):
        rotate_block_(twice, 16)
