"""SmoothQuant building blocks: eq. 4 and the fold against plain float64 loops, the fold is exact
on LayerNorm / RMSNorm / Linear / a tiny Llama, smoothing rescues static per-tensor int8
activations with outlier channels (the paper's claim, in kind), bad input is refused."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.errors import ConfigError
from picojoule.quant import quantize_
from picojoule.quant.recipe import resolve_format
from picojoule.quant.smooth import ChannelAbsMax, fold_scales_, smooth_scales


def _rand_s(n: int, seed: int = 0, span: float = 4.0) -> torch.Tensor:
    """Positive scales log-uniform in [1/span, span]."""
    g = torch.Generator().manual_seed(seed)
    return torch.exp((torch.rand(n, generator=g) * 2 - 1) * math.log(span))


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# --- statistics ------------------------------------------------------------------------------


def test_channel_absmax_running_max_mean_and_count():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(2, 5, 6, generator=g), torch.randn(7, 6, generator=g) * 3]
    batches[1][3, 2] = -40.0  # a negative outlier: max|x| must see it
    st = ChannelAbsMax()
    for b in batches:
        st.add_batch(b)
    allx = torch.cat([b.reshape(-1, 6) for b in batches]).double()
    assert st.count == 17 and st.in_features == 6
    assert torch.equal(st.absmax, allx.abs().amax(0).float())
    assert float(st.absmax[2]) == 40.0
    torch.testing.assert_close(st.mean_abs, allx.abs().mean(0).float(), rtol=1e-6, atol=0)


def test_channel_absmax_refuses_changed_width_and_empty_reads():
    st = ChannelAbsMax()
    with pytest.raises(ConfigError, match="no samples"):
        _ = st.absmax
    st.add_batch(torch.ones(3, 4))
    with pytest.raises(ConfigError, match="4") as e:
        st.add_batch(torch.ones(3, 5))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError):
        st.add_batch(torch.ones(3, 4, dtype=torch.int64))


# --- eq. 4 and the fold against plain float64 loops ------------------------------------------


def _eq4_loop(act: list[float], weights: list[list[list[float]]], alpha: float) -> list[float]:
    """SmoothQuant eq. 4 with the reference clamps, one channel at a time."""
    out = []
    for j, a in enumerate(act):
        wmax = max(abs(row[j]) for w in weights for row in w)
        wmax = max(wmax, 1e-5)
        out.append(max(a**alpha / wmax ** (1 - alpha), 1e-5))
    return out


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.85, 1.0])
def test_smooth_scales_equal_eq4_loop(alpha):
    g = torch.Generator().manual_seed(1)
    act = torch.rand(9, generator=g, dtype=torch.float64) * 50
    act[4] = 0.0  # never-active channel: s clamps to 1e-5 for alpha > 0
    ws = [torch.randn(5, 9, generator=g, dtype=torch.float64) for _ in range(3)]
    for w in ws:
        w[:, 6] = 0.0  # all-zero weight column: the weight max clamps to 1e-5
    ws[1][2, 1] = 30.0  # the max over linears must see the second linear
    got = smooth_scales(act, ws, alpha)
    want = _eq4_loop(act.tolist(), [w.tolist() for w in ws], alpha)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-14, atol=0)


def test_fold_equals_the_paper_fold_elementwise():
    """X' = X diag(s)^-1 moved into LayerNorm's weight and bias, W' = W diag(s)."""
    torch.manual_seed(2)
    n = 6
    ln = nn.LayerNorm(n, dtype=torch.float64)
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    lins = [nn.Linear(n, k, dtype=torch.float64) for k in (4, 3)]
    s = _rand_s(n).double()
    gamma, beta = ln.weight.tolist(), ln.bias.tolist()
    ws = [lin.weight.tolist() for lin in lins]
    bs = [lin.bias.clone() for lin in lins]
    fold_scales_(ln, lins, s)
    sl = s.tolist()
    assert ln.weight.tolist() == [gamma[j] / sl[j] for j in range(n)]
    assert ln.bias.tolist() == [beta[j] / sl[j] for j in range(n)]
    for lin, w, b in zip(lins, ws, bs, strict=True):
        assert lin.weight.tolist() == [[row[j] * sl[j] for j in range(n)] for row in w]
        assert torch.equal(lin.bias, b)  # bias is untouched


def test_linear_to_linear_fold_equals_row_and_column_loops():
    torch.manual_seed(3)
    a, b = nn.Linear(5, 4, dtype=torch.float64), nn.Linear(4, 3, dtype=torch.float64)
    s = _rand_s(4, seed=3).double()
    wa, ba, wb = a.weight.tolist(), a.bias.tolist(), b.weight.tolist()
    fold_scales_(a, [b], s)
    sl = s.tolist()
    assert a.weight.tolist() == [[v / sl[i] for v in row] for i, row in enumerate(wa)]
    assert a.bias.tolist() == [ba[i] / sl[i] for i in range(4)]
    assert b.weight.tolist() == [[row[j] * sl[j] for j in range(4)] for row in wb]


# --- the fold is exact on real modules (FP32) ------------------------------------------------


class _NormBlock(nn.Module):
    def __init__(self, norm: nn.Module, n: int = 16) -> None:
        super().__init__()
        self.norm = norm
        self.q, self.k, self.v = nn.Linear(n, 8), nn.Linear(n, 12), nn.Linear(n, 16, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return torch.cat([self.q(h), self.k(h), self.v(h)], -1)


class MyRMSNorm(nn.Module):
    """An RMSNorm as transformers writes one (LlamaRMSNorm): x / rms(x) * weight."""

    def __init__(self, n: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype)


@pytest.mark.parametrize("norm", ["layernorm", "torch_rmsnorm", "custom_rmsnorm"])
def test_fold_is_exact_after_norm(norm):
    torch.manual_seed(4)
    n = 16
    mod = {"layernorm": nn.LayerNorm(n), "torch_rmsnorm": nn.RMSNorm(n, eps=1e-6),
           "custom_rmsnorm": MyRMSNorm(n)}[norm]  # fmt: skip
    with torch.no_grad():
        mod.weight.normal_()
        mod.weight[5] = 60.0  # an outlier channel (as LLM norms make them): s spans a wide range
        if getattr(mod, "bias", None) is not None:
            mod.bias.normal_()
    block = _NormBlock(mod, n)
    x = torch.randn(2, 10, n)
    st = ChannelAbsMax()
    st.add_batch(block.norm(x).detach())
    s = smooth_scales(st.absmax, [block.q.weight, block.k.weight, block.v.weight], 0.5)
    assert float(s.max() / s.min()) > 10  # a real fold, not near-identity
    y0 = block(x).detach()
    folded = copy.deepcopy(block)
    fold_scales_(folded.norm, [folded.q, folded.k, folded.v], s)
    assert not torch.equal(folded.q.weight, block.q.weight)
    assert _rel_diff(folded(x).detach(), y0) <= 1e-5


def test_linear_to_linear_fold_is_exact():
    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(8, 24), nn.Linear(24, 6))
    x = torch.randn(32, 8)
    y0 = m(x).detach()
    fold_scales_(m[0], [m[1]], _rand_s(24, seed=5, span=50.0))
    assert _rel_diff(m(x).detach(), y0) <= 1e-5


def _tiny_llama(kv_heads: int) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=kv_heads, vocab_size=97,
    )  # fmt: skip
    torch.manual_seed(6)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms initialise to ones; make them non-trivial
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand_like(p) + 0.5)
    return model


@pytest.mark.parametrize("kv_heads", [2, 4])
def test_fold_is_exact_on_tiny_llama(kv_heads):
    model = _tiny_llama(kv_heads)
    ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        y0 = model(ids).logits
    seed = 10
    for layer in model.model.layers:
        at, mlp = layer.self_attn, layer.mlp
        assert type(layer.input_layernorm).__name__ == "LlamaRMSNorm"
        fold_scales_(layer.input_layernorm, [at.q_proj, at.k_proj, at.v_proj], _rand_s(32, seed))
        fold_scales_(layer.post_attention_layernorm, [mlp.gate_proj, mlp.up_proj],
                     _rand_s(32, seed + 1))  # fmt: skip
        fold_scales_(mlp.up_proj, [mlp.down_proj], _rand_s(64, seed + 2))  # act(gate) * up
        if kv_heads == 4:  # V's channels map one-to-one onto o_proj's inputs
            fold_scales_(at.v_proj, [at.o_proj], _rand_s(32, seed + 3))
        else:  # GQA: v_proj has 16 outputs, o_proj 32 inputs
            v_before = at.v_proj.weight.clone()
            with pytest.raises(ConfigError, match="in_features 32, len"):
                fold_scales_(at.v_proj, [at.o_proj], _rand_s(16, seed + 3))
            assert torch.equal(at.v_proj.weight, v_before)
        seed += 4
    with torch.no_grad():
        y1 = model(ids).logits
    assert not torch.equal(y0, y1)  # floats moved ...
    assert _rel_diff(y1, y0) <= 1e-5  # ... and the function did not


# --- the paper's effect, in kind -------------------------------------------------------------


def test_smoothing_rescues_static_per_tensor_int8_activations():
    """W8A8 with static (max-calibrated) per-tensor int8 activations: a few 100x outlier
    channels set the scale and crush every other channel; after smoothing (alpha 0.5) the
    outliers are shared with the weights and the output error falls by an order of magnitude."""
    g = torch.Generator().manual_seed(8)
    n, c_in, c_out = 256, 64, 48
    calib, test = torch.randn(n, c_in, generator=g), torch.randn(n, c_in, generator=g)
    for x in (calib, test):
        x[:, [3, 17, 40]] *= 100.0
    w = torch.randn(c_out, c_in, generator=g) * 0.1
    qa, qw = resolve_format("int8", "activation"), resolve_format("int8", "weight")
    assert qa.name == "int8/tensor"

    def w8a8_error(x: torch.Tensor, w_: torch.Tensor, amax: float) -> float:
        y = qa.quantize(x, amax=amax) @ qw.quantize(w_).T
        return float((y - test @ w.T).pow(2).mean())

    st = ChannelAbsMax()
    st.add_batch(calib)
    plain = w8a8_error(test, w, float(calib.abs().max()))
    s = smooth_scales(st.absmax, [w], alpha=0.5)
    smoothed = w8a8_error(test / s, w * s, float((calib / s).abs().max()))
    assert plain / smoothed >= 5.0, (plain, smoothed)


# --- refusals --------------------------------------------------------------------------------


class GemmaRMSNorm(MyRMSNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) / self.weight * (1.0 + self.weight)


class OffsetRMSNorm(GemmaRMSNorm):
    """A (1 + weight) norm whose name does not say so: the probe must catch it."""


def _one_liner(exc: pytest.ExceptionInfo) -> None:
    msg = str(exc.value)
    assert msg and "\n" not in msg


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), "half"])
def test_alpha_outside_unit_interval_is_refused(alpha):
    with pytest.raises(ConfigError, match="alpha") as e:
        smooth_scales(torch.ones(4), [torch.ones(3, 4)], alpha)
    _one_liner(e)


@pytest.mark.parametrize(
    "act, weights",
    [
        (torch.ones(4), [torch.ones(3, 5)]),  # width mismatch
        (torch.ones(4, 1), [torch.ones(3, 4)]),  # not 1-D
        (torch.ones(4), []),  # no weights
        (torch.tensor([1.0, float("inf"), 1, 1]), [torch.ones(3, 4)]),
        (torch.tensor([1.0, -1, 1, 1]), [torch.ones(3, 4)]),
    ],
)
def test_smooth_scales_refuses_bad_inputs(act, weights):
    with pytest.raises(ConfigError) as e:
        smooth_scales(act, weights)
    _one_liner(e)


def _case(kind: str):
    """(prev, linears, s) for one refusal; built fresh per case."""
    torch.manual_seed(9)
    ln, a, b = nn.LayerNorm(4), nn.Linear(4, 3), nn.Linear(4, 2)
    s = torch.full((4,), 2.0)
    if kind == "s_zero":
        s[1] = 0.0
    elif kind == "s_negative":
        s[2] = -1.0
    elif kind == "s_nan":
        s[0] = float("nan")
    elif kind == "s_inf":
        s[3] = float("inf")
    elif kind == "s_len":
        s = torch.full((5,), 2.0)
    elif kind == "linear_width":
        b = nn.Linear(5, 2)
    elif kind == "ln_width":
        ln = nn.LayerNorm(5)
    elif kind == "ln_no_affine":
        ln = nn.LayerNorm(4, elementwise_affine=False)
    elif kind == "prev_linear_width":
        ln = nn.Linear(4, 6)
    elif kind == "quantized":
        quantize_(nn.Sequential(b), "w:int8")
    elif kind == "quantized_prev":
        ln = nn.Linear(3, 4)
        quantize_(nn.Sequential(ln), "w:int8")
    elif kind == "parametrized":
        parametrize.register_parametrization(a, "weight", nn.Identity())
    elif kind == "duplicate":
        b = a
    elif kind == "prev_in_linears":
        ln = a
    elif kind == "unsupported_prev":
        ln = nn.ReLU()
    elif kind == "not_linear":
        b = nn.Conv1d(4, 2, 1)
    elif kind == "gemma":
        ln = GemmaRMSNorm(4)
    elif kind == "offset_norm":
        ln = OffsetRMSNorm(4)
        with torch.no_grad():
            ln.weight.uniform_(0.5, 1.5)
    elif kind == "no_linears":
        return ln, [], s
    return ln, [a, b], s


REFUSALS = [
    "s_zero", "s_negative", "s_nan", "s_inf", "s_len", "linear_width", "ln_width",
    "ln_no_affine", "prev_linear_width", "quantized", "quantized_prev", "parametrized",
    "duplicate", "prev_in_linears", "unsupported_prev", "not_linear", "gemma", "offset_norm",
    "no_linears",
]  # fmt: skip


@pytest.mark.parametrize("kind", REFUSALS)
def test_fold_refusals_are_one_line_and_change_nothing(kind):
    prev, lins, s = _case(kind)
    before = {id(m): [p.detach().clone() for p in m.parameters()] for m in [prev, *lins]}
    with pytest.raises(ConfigError) as e:
        fold_scales_(prev, lins, s)
    _one_liner(e)
    for m in [prev, *lins]:
        for p, old in zip(m.parameters(), before[id(m)], strict=True):
            assert torch.equal(p.detach(), old), kind


def test_offset_norm_probe_restores_weight_and_names_the_problem():
    norm = OffsetRMSNorm(4)
    with pytest.raises(ConfigError, match=r"1 \+ weight"):
        fold_scales_(norm, [nn.Linear(4, 2)], torch.tensor([0.5, 2.0, 1.0, 4.0]))
    assert torch.equal(norm.weight.detach(), torch.ones(4))
