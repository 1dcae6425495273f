"""from_model counts GPT-2's Conv1D projections by default (issue 17), without changing the
model; expose=False gives the old, 9x lower count."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from picojoule import hw
from picojoule.quant import describe_exposed, expose_layers_

tf = pytest.importorskip("transformers")

T, E, V, BLOCKS = 8, 32, 64, 2


def gpt2_lm() -> nn.Module:
    cfg = tf.GPT2Config(vocab_size=V, n_positions=16, n_embd=E, n_layer=BLOCKS, n_head=2,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    return tf.GPT2LMHeadModel(cfg).eval()


def hand_count() -> tuple[int, int, int]:
    """(projections, attention products, head) MACs for one sequence of T tokens."""
    projections = BLOCKS * T * E * (3 * E + E + 4 * E + 4 * E)  # c_attn, c_proj, c_fc, c_proj
    products = BLOCKS * 2 * T * T * E  # QK^T and AV over all heads
    return projections, products, T * E * V


def test_from_model_counts_every_projection_and_leaves_the_model_alone() -> None:
    model, ids = gpt2_lm(), torch.randint(0, V, (1, T))
    projections, products, head = hand_count()
    got = hw.from_model(model, ids)
    assert got.macs == projections + products + head
    assert [r.name for r in got.exposed][:2] == ["transformer.h.0.attn.c_attn",
                                                 "transformer.h.0.attn.c_proj"]  # fmt: skip
    assert describe_exposed(got.exposed).startswith("exposed 8 Conv1D as nn.Linear")
    assert type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"  # put back
    with pytest.warns(UserWarning, match=r"\(Conv1D\).*expose them first"):
        old = hw.from_model(model, ids, expose=False)
    assert old.macs == products + head and old.exposed == ()
    expose_layers_(model)
    assert hw.from_model(model, ids) == got  # same layers as exposing by hand


def test_recipe_formats_reach_the_exposed_projections() -> None:
    model, ids = gpt2_lm(), torch.randint(0, V, (1, T))
    got = hw.from_model(model, ids, recipe={"weight": "int4", "activation": "e4m3"})
    proj = next(layer for layer in got.layers if layer.name.endswith("c_fc"))
    assert (proj.weight_format, proj.input_format) == ("int4/channel", "e4m3/tensor")
    assert hw.apply_recipe(got, "w:int8").exposed == got.exposed


def test_the_model_is_restored_when_its_forward_fails() -> None:
    model = gpt2_lm()
    with pytest.raises(Exception, match="example input failed"):
        hw.from_model(model, torch.zeros(1, T))  # float ids: the embedding refuses them
    assert type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
