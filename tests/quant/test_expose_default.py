"""quantize_ exposes hidden layers by default (issue 17): GPT-2's Conv1D projections are
quantized without a prior expose_layers_, the records say what was rewritten, expose=False
keeps the old behaviour, and a dict recipe equals its QuantConfig."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.quant import (
    QuantConfig,
    TensorQuant,
    describe_exposed,
    expose_layers_,
    parse_recipe,
    quantize_,
)
from picojoule.quant.api import is_quantized

tf = pytest.importorskip("transformers")

PROJECTIONS = [f"h.{i}.{p}" for i in range(2)
               for p in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]  # fmt: skip


def gpt2() -> nn.Module:
    """A two-block GPT-2 built from its config: no download."""
    cfg = tf.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    return tf.GPT2Model(cfg).eval()


def quantized_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and is_quantized(m)]


def test_default_quantizes_the_conv1d_projections_and_says_so() -> None:
    model = gpt2()
    recs = quantize_(model, "w:int8,a:int8")
    assert quantized_layers(model) == PROJECTIONS  # all 8, none before issue 17
    rewrites = recs[:8]
    assert [(r.name, r.kind, r.action) for r in rewrites] == [
        (n, "Conv1D", "nn.Linear") for n in PROJECTIONS
    ]
    assert [r.name for r in recs[8:] if not r.skipped] == PROJECTIONS
    line = describe_exposed(recs)
    assert line.startswith("exposed 8 Conv1D as nn.Linear: h.0.attn.c_attn, h.0.attn.c_proj")


def test_default_equals_exposing_by_hand() -> None:
    auto, manual = gpt2(), gpt2()
    expose_layers_(manual)
    quantize_(auto, "w:int4,a:e4m3")
    assert quantize_(manual, "w:int4,a:e4m3")[0].kind == "Linear"  # nothing left to expose
    ids = torch.randint(0, 64, (2, 8))
    with torch.no_grad():
        assert torch.equal(auto(ids).last_hidden_state, manual(ids).last_hidden_state)


def test_expose_false_keeps_the_old_behaviour() -> None:
    model = gpt2()
    with pytest.raises(ConfigError, match=r"no layer .*h.0.attn.c_attn \(Conv1D\).*expose=True"):
        quantize_(model, "w:int8", expose=False)  # GPT-2 without its head: no Linear at all
    assert type(model.h[0].attn.c_attn).__name__ == "Conv1D"
    head = nn.Sequential(gpt2(), nn.Linear(32, 4))
    with pytest.warns(UserWarning, match=r"0.h.0.attn.c_attn \(Conv1D\).*hidden from quantize_"):
        recs = quantize_(head, "w:int8", expose=False)
    assert [r.name for r in recs] == ["1"] and quantized_layers(head) == ["1"]


def test_a_refused_recipe_leaves_the_model_unexposed() -> None:
    model = gpt2()
    with pytest.raises(ConfigError, match="overrides name layers that do not exist: nope"):
        quantize_(model, "w:int8", overrides={"nope": None})
    assert type(model.h[0].attn.c_attn).__name__ == "Conv1D"
    assert expose_layers_(model) and expose_layers_(model) == []  # the second is a no-op


def test_multihead_attention_is_unfused_by_default() -> None:
    block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True).eval()
    ref = copy.deepcopy(block)
    recs = quantize_(block, "w:int8")
    assert describe_exposed(recs) == (
        "unfused 1 MultiheadAttention into nn.Linear projections + SDPA: self_attn"
    )
    assert "self_attn.q_proj" in quantized_layers(block)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert (block(x) - ref(x)).abs().max() < 0.1


def test_expose_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="expose must be True or False"):
        quantize_(gpt2(), "w:int8", expose="yes")  # type: ignore[arg-type]


def test_dict_recipe_equals_the_config_object() -> None:
    got = parse_recipe({"weight": "nvfp4", "activation": "e4m3"})
    assert got == QuantConfig(weight=TensorQuant(format="nvfp4"),
                              activation=TensorQuant(format="e4m3"))  # fmt: skip
    nested = parse_recipe(
        {
            "weight": {"format": "int8", "rounding": "stochastic"},
            "activation": {"format": "int8", "calibration": "percentile99.9"},
            "overrides": {"fc*": None, "head": {"weight": "int4"}},
        }  # fmt: skip
    )
    assert nested.weight == TensorQuant(format="int8", rounding="stochastic")
    assert nested.activation == TensorQuant(format="int8", calibration="percentile",
                                            percentile=99.9)  # fmt: skip
    assert nested.for_module("fc1") is None
    assert nested.for_module("head") == QuantConfig(weight=TensorQuant(format="int4"))


def test_dict_recipe_quantizes_as_the_string_does() -> None:
    a, b = gpt2(), gpt2()
    quantize_(a, {"weight": "int4", "activation": "e4m3"})
    quantize_(b, "w:int4,a:e4m3")
    ids = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        assert torch.equal(a(ids).last_hidden_state, b(ids).last_hidden_state)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"wieght": "nvfp4"}, r"unknown key 'wieght'; valid keys: weight, .*did you mean: weight"),
        ({"w": "nvfp4"}, r"the string form's w: is weight here"),
        ({"weight": 4}, r"QuantConfig weight: give a format name"),
        ({"weight": "nvfp9"}, r"QuantConfig weight: unknown number format 'nvfp9'"),
        ({"activation": {"format": "int8", "cal": "max"}}, r"unknown key 'cal'"),
        ({"activation": {"format": "int8", "percentile": "high"}}, r"percentile is a number"),
        ({"weight": {"format": "int8", "rounding": "up"}}, r"rounding 'up'"),
        ({"wcal": "gptq"}, r"rounds weights; add a weight format"),
        ({1: "int8"}, r"keys are strings"),
        (3.5, r"a recipe is a string, a QuantConfig or a dict"),
    ],
)
def test_bad_dict_recipes_are_config_errors(recipe: object, message: str) -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ConfigError, match=message):
        quantize_(model, recipe)  # type: ignore[arg-type]
    assert not is_quantized(model[0])
