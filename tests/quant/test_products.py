"""attn: rounds both operands of attention's functional products, bit for bit, and only those."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as nn_module

from picojoule.errors import ConfigError
from picojoule.formats import get
from picojoule.quant import parse_recipe, quantize_
from picojoule.quant.products import product_format_of
from picojoule.study.cost import layer_counts, recipe_cost

B, S, H, D = 2, 16, 2, 16


def _heads(t: torch.Tensor) -> torch.Tensor:
    return t.view(B, S, H, D).transpose(1, 2)


class Eager(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(H * D, H * D) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = _heads(self.q(x)), _heads(self.k(x)), _heads(self.v(x))
        p = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / D**0.5, dim=-1)
        return p @ v


class Sdpa(Eager):
    def forward(self, x: torch.Tensor, causal: bool = False, mask=None) -> torch.Tensor:
        q, k, v = _heads(self.q(x)), _heads(self.k(x)), _heads(self.v(x))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


def _x() -> torch.Tensor:
    return torch.randn(B, S, H * D, generator=torch.Generator().manual_seed(0))


def _rows(fmt: str, t: torch.Tensor) -> torch.Tensor:
    """Reference rounding with vectors along the last dim, one dynamic scale per tensor."""
    return get(fmt).quantize(t.reshape(-1, t.shape[-1]), coarse="tensor").view_as(t)


def _cols(fmt: str, t: torch.Tensor) -> torch.Tensor:
    return _rows(fmt, t.transpose(-1, -2)).transpose(-1, -2)


@pytest.mark.parametrize("fmt", ["vsq4_v16_s4", "mxfp4"])
def test_eager_attention_operands_are_rounded_along_their_reductions(fmt):
    torch.manual_seed(0)
    model = Eager()
    ref_model = copy.deepcopy(model)
    rec = quantize_(model, f"attn:{fmt}")
    assert rec[-1].action == f"attn:{fmt}"
    assert all(r.skipped for r in rec[:-1])  # no w:/a:, so the Linears stay float
    x = _x()
    q, k, v = (_heads(lin(x)) for lin in (ref_model.q, ref_model.k, ref_model.v))
    # K^T's reduction is the head dim, V's the key dim: both dim -2 of the right operand
    scores = torch.matmul(_rows(fmt, q), _cols(fmt, k.transpose(-1, -2)))
    p = torch.softmax(scores / D**0.5, dim=-1)
    expect = _rows(fmt, p) @ _cols(fmt, v)
    with torch.no_grad():
        assert torch.equal(model(x), expect)
        assert not torch.equal(ref_model(x), expect)


def test_sdpa_is_its_defining_math_with_every_mask():
    torch.manual_seed(0)
    model = Sdpa()
    ident = copy.deepcopy(model)
    quantize_(ident, "attn:fp32")  # a rounding that changes nothing: checks the decomposition
    x = _x()
    pad = torch.ones(S, S, dtype=torch.bool)
    pad[:, -3:] = False
    additive = torch.zeros(S, S).masked_fill(~pad, -1e4)
    with torch.no_grad():
        for kw in ({}, {"causal": True}, {"mask": pad}, {"mask": additive}):
            torch.testing.assert_close(ident(x, **kw), model(x, **kw), rtol=1e-5, atol=1e-6)


def test_sdpa_rounding_matches_eager_rounding():
    torch.manual_seed(0)
    eager, sdpa = Eager(), Sdpa()
    sdpa.load_state_dict(eager.state_dict())
    quantize_(eager, "attn:e4m3")
    quantize_(sdpa, "attn:e4m3")
    with torch.no_grad():
        torch.testing.assert_close(sdpa(_x()), eager(_x()), rtol=1e-6, atol=1e-6)


class MatmulLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


def test_products_inside_layers_are_left_alone_and_hooks_do_not_leak():
    torch.manual_seed(0)
    model = nn.Sequential(MatmulLinear(8, 8), nn.ReLU())
    ref = copy.deepcopy(model)
    quantize_(model, "attn:int4")
    x = torch.randn(4, 8)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    assert not nn_module._global_forward_hooks and not nn_module._global_forward_pre_hooks


def test_copies_use_their_own_quantizer_and_gradients_flow():
    torch.manual_seed(0)
    model = Eager()
    quantize_(model, "attn:e4m3")
    clone = copy.deepcopy(model)
    assert clone.product_quantizer is not model.product_quantizer
    x = _x()
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))
    clone(x).square().sum().backward()  # straight-through: every projection gets a gradient
    assert all(lin.weight.grad.abs().sum() > 0 for lin in (clone.q, clone.k, clone.v))
    assert product_format_of(clone).name == "e4m3/tensor"


def test_costs_use_the_attn_format():
    torch.manual_seed(0)
    model = Sdpa()
    quantize_(model, "w:int8,a:int8,attn:e4m3")
    rows = layer_counts(model, _x())
    products = [r.layer for r in rows if r.kind == "matmul"]
    assert len(products) == 2
    assert {(p.input_format, p.weight_format) for p in products} == {("e4m3/tensor",) * 2}
    cost = recipe_cost(model, _x(), "h100")
    assert (
        "costed with e4m3/tensor operands, as the recipe's attn: rounds them"
        in (cost["assumptions"][-1])
    )


def test_densities_are_those_of_the_rounded_operands():
    torch.manual_seed(0)
    model = Eager()
    quantize_(model, "attn:int2")  # coarse: many operands round to zero
    qk, av = (r.layer for r in layer_counts(model, _x()) if r.kind == "matmul")
    assert qk.input_density < 0.9 and av.input_density < 0.9
    assert qk.input_format == "int2/tensor"


def test_recipe_key_and_errors():
    cfg = parse_recipe("w:int8,attn:e4m3")
    assert cfg.attention is not None and cfg.attention.format == "e4m3"
    assert str(parse_recipe(cfg)) == "w:int8,attn:e4m3"
    with pytest.raises(ConfigError, match="'attn:foo': unknown number format 'foo'"):
        parse_recipe("attn:foo")
    with pytest.raises(ConfigError, match="attn"):
        quantize_(Eager(), "w:vsq4_v16_s4,attn:e4m3", backend="triton")
    model = Eager()
    quantize_(model, "attn:e4m3")
    with pytest.raises(ConfigError, match="already quantized: <attention products>"):
        quantize_(model, "attn:int8")  # used to keep e4m3 silently


def test_multihead_attention_is_named_as_out_of_reach():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.MultiheadAttention(8, 2, batch_first=True))

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.body[0](x)
            return self.body[1](h, h, h, need_weights=False)[0]

    wrap = Wrap()
    with pytest.warns(UserWarning, match=r"body.1 \(MultiheadAttention\): hidden from quantize_"):
        quantize_(wrap, "w:int8,a:int8", expose=False)
    cost = recipe_cost(wrap, torch.randn(1, 4, 8), "h100")
    assert any(a.startswith("not costed: body.1 (MultiheadAttention)") for a in cost["assumptions"])


class TwoBlocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = Sdpa(), Sdpa()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x).transpose(1, 2).reshape(B, S, H * D))


def test_overrides_pick_each_calling_module_s_format():
    torch.manual_seed(0)
    model = TwoBlocks()
    plain, coarse = copy.deepcopy(model), copy.deepcopy(model)
    quantize_(model, "attn:e4m3", overrides={"first": "attn:int4", "second": None})
    quantize_(coarse, "attn:int4")
    products = [r.layer for r in layer_counts(model, _x()) if r.kind == "matmul"]
    assert [(p.name, p.input_format) for p in products] == [
        ("first.sdpa.qk", "int4/tensor"),
        ("first.sdpa.av", "int4/tensor"),
        ("second.sdpa.qk", "fp32"),  # kept in float by its override
        ("second.sdpa.av", "fp32"),
    ]
    with torch.no_grad():
        x, fmt = _x(), "int4/tensor"
        # by hand: the first block's products rounded to int4, the second block's in float
        f = plain.first
        q, k, v = _heads(f.q(x)), _heads(f.k(x)), _heads(f.v(x))
        scores = _rows(fmt, q) @ _cols(fmt, k.transpose(-1, -2)) / D**0.5
        first = _rows(fmt, torch.softmax(scores, dim=-1)) @ _cols(fmt, v)
        want = plain.second(first.transpose(1, 2).reshape(B, S, H * D))
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(coarse(x), want, rtol=1e-3, atol=1e-4)  # int4 everywhere
    with pytest.raises(ConfigError, match="do not exist: nope"):
        quantize_(TwoBlocks(), "attn:e4m3", overrides={"nope": None})
