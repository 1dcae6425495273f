"""Layers, built-in networks and extraction from PyTorch models."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from picojoule.errors import ConfigError, PicojouleError, ShapeError
from picojoule.workload import BUILTINS, Layer, apply_recipe, builtin, from_model
from picojoule.workload.layer import touched_extent


@given(st.integers(1, 9), st.integers(1, 7), st.integers(1, 4))
def test_touched_extent_counts_distinct_rows(p: int, r: int, stride: int) -> None:
    rows = {pp * stride + rr for pp, rr in itertools.product(range(p), range(r))}
    assert touched_extent(p, r, stride) == len(rows)


# MACs per image as published: AlexNet 724M (Eyeriss ISCA 2016 Table 1 sums to 724M with the
# FC layers), VGG-16 15.47G (Simonyan & Zisserman), ResNet-18 1.81G and ResNet-50 4.09G
# (torchvision's model cards), MobileNetV2 300M (Sandler et al., Table 3), BERT-base at 128
# tokens 11.17G (12 x (4 x 128 x 768^2 + 2 x 128 x 768 x 3072 + 2 x 128^2 x 768)).
@pytest.mark.parametrize(
    ("name", "gmacs"),
    [
        ("alexnet", 0.724),
        ("vgg16", 15.47),
        ("resnet18", 1.814),
        ("resnet50", 4.089),
        ("mobilenetv2", 0.3008),
        ("bert-base", 11.174),
    ],
)
def test_builtin_macs_match_published(name: str, gmacs: float) -> None:
    assert builtin(name).macs / 1e9 == pytest.approx(gmacs, rel=2e-3)


def test_builtin_batch_scales_macs_and_names_are_checked() -> None:
    assert builtin("resnet18", batch=4).macs == 4 * builtin("resnet18").macs
    with pytest.raises(ConfigError, match="did you mean: resnet18"):
        builtin("resnet-18x")
    assert set(BUILTINS) == {
        "alexnet",
        "vgg16",
        "resnet18",
        "resnet50",
        "mobilenetv2",
        "bert-base",
        "digits-cnn",
    }


def test_layer_rejects_bad_bounds_and_densities() -> None:
    with pytest.raises(ShapeError, match="K=0"):
        Layer(name="x", K=0)
    with pytest.raises(ShapeError, match="weight_density"):
        Layer(name="x", weight_density=1.5)


def test_operand_sizes_of_a_strided_conv() -> None:
    layer = Layer(name="c", N=2, K=8, C=3, P=5, Q=4, R=3, S=3, stride_h=2, stride_w=1)
    assert layer.macs == 2 * 8 * 3 * 5 * 4 * 9
    assert layer.weight_elems == 8 * 3 * 9
    assert layer.input_elems == 2 * 3 * (4 * 2 + 3) * (3 + 3)
    assert layer.output_elems == 2 * 8 * 5 * 4


def test_from_model_digits_matches_the_builtin_shapes() -> None:
    from picojoule.models.digits import build

    got = from_model(build(), torch.randn(4, 1, 8, 8))
    want = builtin("digits-cnn", batch=4)
    assert [layer.bounds for layer in got.layers] == [layer.bounds for layer in want.layers]
    assert all(layer.weight_format == "fp16" for layer in got.layers)


def test_from_model_reads_recipe_and_sparsity_mask() -> None:
    from picojoule.models.digits import build
    from picojoule.sparsity import sparsify_

    model = build()
    sparsify_(model, "2:4")
    x = torch.randn(4, 1, 8, 8)
    got = from_model(model, x, recipe="w:int4,a:int8")
    masked = [layer for layer in got.layers if layer.weight_density < 1.0]
    assert masked and all(layer.weight_density == pytest.approx(0.5) for layer in masked)
    assert got.layers[1].weight_format.startswith("int4")
    assert got.layers[1].input_format.startswith("int8")
    # conv2's input is a ReLU output: its measured density is that of the ReLU map.
    relu = torch.relu(model[0](x)) if isinstance(model, nn.Sequential) else None
    if relu is not None:
        assert got.layers[1].input_density == pytest.approx(float((relu != 0).float().mean()))


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(32, 96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(2, 16, 3, 4, 8).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)).softmax(-1)
        return F.scaled_dot_product_attention(q, k, v) + scores @ v


def test_from_model_turns_attention_into_matmuls() -> None:
    got = from_model(_Attention(), torch.randn(2, 16, 32))
    kinds = [(layer.kind, layer.N, layer.G, layer.K, layer.C) for layer in got.layers]
    assert kinds == [
        ("linear", 32, 1, 96, 32),
        ("matmul", 16, 8, 16, 8),
        ("matmul", 16, 8, 16, 8),
        ("matmul", 16, 8, 8, 16),
        ("matmul", 16, 8, 8, 16),
    ]


def test_from_model_runs_what_fx_cannot_trace_and_names_a_bad_input() -> None:
    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace this
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 8), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) if x.sum() > 0 else self.b(x)

    got = from_model(Branchy(), torch.ones(2, 4))
    assert [(layer.name, layer.K) for layer in got.layers] == [("a", 8)]
    with pytest.raises(PicojouleError, match=r"running Branchy on the example input failed: "):
        from_model(Branchy(), torch.ones(2, 5))


def test_from_model_names_repeated_calls_and_keyword_inputs() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return self.lin(self.lin(x) * scale)

    got = from_model(Twice(), {"x": torch.ones(3, 4), "scale": 2.0})
    assert [layer.name for layer in got.layers] == ["lin", "lin#1"]


def test_apply_recipe_sets_formats_per_layer() -> None:
    w = apply_recipe(builtin("digits-cnn"), "w:nvfp4,a:e4m3")
    assert {layer.weight_format for layer in w.layers} == {"nvfp4"}
    assert all(layer.input_format.startswith("e4m3") for layer in w.layers)


def test_from_model_reads_formats_of_an_already_quantized_model() -> None:
    from picojoule.models.digits import build
    from picojoule.quant import quantize_

    model = build()
    quantize_(model, "w:int4,a:e4m3")
    got = from_model(model, torch.randn(2, 1, 8, 8))
    assert {layer.weight_format for layer in got.layers} == {"int4/channel"}
    assert {layer.input_format for layer in got.layers} == {"e4m3/tensor"}


def test_from_model_points_multihead_attention_to_unfuse() -> None:
    from picojoule.quant import unfuse_attention_

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attn(x, x, x, need_weights=False)[0]

    model, x = Block(), torch.randn(1, 4, 8)
    with (
        pytest.warns(UserWarning, match=r"attn \(MultiheadAttention\); expose them first"),
        pytest.raises(PicojouleError, match="no convolution, linear or matmul"),
    ):
        from_model(model, x, expose=False)
    names = ["attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.sdpa.qk", "attn.sdpa.av",
             "attn.out_proj"]  # fmt: skip
    seen = from_model(model, x)  # expose=True: counted unfused, the model left as it was
    assert [layer.name for layer in seen.layers] == names
    assert [(r.name, r.action) for r in seen.exposed] == [("attn", "unfused")]
    assert isinstance(model.attn, nn.MultiheadAttention)
    unfuse_attention_(model)
    got = from_model(model, x)
    assert [layer.name for layer in got.layers] == names and got.exposed == ()
    assert got == seen


def test_from_model_names_layers_it_cannot_model() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ConvTranspose2d(4, 2, 2))
    with pytest.warns(UserWarning, match=r"not mapped .*1 \(ConvTranspose2d\)"):
        got = from_model(model, torch.randn(1, 3, 6, 6))
    assert [layer.name for layer in got.layers] == ["0"]


def test_from_model_sees_a_tied_lm_head() -> None:
    class TinyLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(100, 16)
            self.mix = nn.Linear(16, 16)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.mix(self.embed(ids)))
            return F.linear(h, self.embed.weight)  # the head shares the embedding matrix

    got = from_model(TinyLM(), torch.randint(0, 100, (2, 5)))
    assert [(layer.name, layer.kind, layer.N, layer.K, layer.C) for layer in got.layers] == [
        ("mix", "linear", 10, 16, 16),
        ("linear", "linear", 10, 100, 16),
    ]
    assert got.layers[1].input_density < 1.0  # measured on the ReLU output


def test_from_model_sees_functional_convolutions() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(8, 3, 3, 3))
            self.conv = nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.conv2d(x, self.w, stride=2, padding=1)  # a weight no Conv2d owns
            return self.conv(y)

    got = from_model(Functional(), torch.randn(1, 3, 16, 16))
    first = got.layers[0]
    assert (first.name, first.kind, first.K, first.C, first.P, first.R, first.stride_h) == (
        "conv", "conv", 8, 3, 8, 3, 2,
    )  # fmt: skip
    assert [layer.name for layer in got.layers] == ["conv", "conv#1"]  # then the module "conv"


def test_from_model_names_gpt2_conv1d_until_exposed() -> None:
    tf = pytest.importorskip("transformers")
    from picojoule.quant import expose_layers_

    cfg = tf.GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    model, ids = tf.GPT2Model(cfg).eval(), torch.randint(0, 100, (1, 6))
    with pytest.warns(UserWarning, match=r"h.0.attn.c_attn \(Conv1D\).*expose them first"):
        hidden = from_model(model, ids, expose=False)
    assert [layer.kind for layer in hidden.layers] == ["matmul", "matmul"]  # only attention
    expose_layers_(model)
    names = [layer.name for layer in from_model(model, ids).layers]
    assert names == ["h.0.attn.c_attn", "h.0.attn.sdpa.qk", "h.0.attn.sdpa.av", "h.0.attn.c_proj",
                     "h.0.mlp.c_fc", "h.0.mlp.c_proj"]  # fmt: skip
