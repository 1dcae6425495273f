"""quantize_ on a CNN and a Transformer block: formats land where the recipe says, values are
bit-exact fake-quant, gradients flow (STE), codebook centroids train, bad input is refused."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.formats import get
from picojoule.quant import calibrate, parse_recipe, quantize_, report
from picojoule.quant.modules import reduction_last, restore_layout


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )  # fmt: skip


def test_weight_is_exact_fake_quant_in_reduction_last_layout():
    m = cnn()
    w0 = m[2].weight.detach().clone()
    quantize_(m, "w:vsq4_v16_s4")
    fmt = get("vsq4_v16_s4")
    expect = restore_layout(fmt.quantize(reduction_last(w0, "weight")), w0, "weight")
    assert torch.equal(m[2].weight.detach(), expect)
    # Conv weights [K, C, R, S] are blocked along C (fastest): one block of 16 = 16 channels.
    assert reduction_last(w0, "weight").shape == (32, 9 * 32)


def test_layout_round_trip_is_identity():
    w = torch.randn(8, 5, 3, 2)
    assert torch.equal(restore_layout(reduction_last(w, "weight"), w, "weight"), w)
    a = torch.randn(2, 5, 4, 3)
    assert torch.equal(restore_layout(reduction_last(a, "activation"), a, "activation"), a)


@pytest.mark.parametrize("fmt", ["vsq4_v16_s4", "mxfp4", "nvfp4"])
def test_linear_input_vectors_run_along_features_at_any_rank(fmt):
    """A transformer Linear sees [batch, tokens, hidden]; its vectors and blocks must run along
    hidden (what the layer reduces), not along tokens (what a conv's channel dim 1 would be)."""
    torch.manual_seed(0)
    lin, conv = nn.Linear(64, 8), nn.Conv1d(64, 8, 1)
    quantize_(lin, f"a:{fmt}")
    quantize_(conv, f"a:{fmt}")
    x = torch.randn(2, 5, 64) * torch.logspace(-3, 3, 64)  # per-feature ranges differ widely
    q = get(fmt).quantize(x.reshape(-1, 64), coarse="tensor").view_as(x)
    assert torch.equal(lin.input_quantizer(x), q)
    # the same values as a conv input [N, C, L] are blocked along C: the same numbers
    xc = x.transpose(1, 2)
    assert torch.equal(conv.input_quantizer(xc), q.transpose(1, 2))
    a = torch.randn(2, 5, 64)
    assert torch.equal(restore_layout(reduction_last(a, "features"), a, "features"), a)


def test_activation_quantized_and_overrides_keep_float():
    m = cnn()
    recs = quantize_(m, "w:int8,a:e4m3", overrides={"5": None})
    acts = {r.name: r for r in recs}
    assert acts["0"].action == "w:int8/channel,a:e4m3/tensor"
    assert acts["5"].skipped and "float" in acts["5"].reason
    rows = {r.name: r for r in report(m)}
    assert rows["5"].weight_format == "float32" and rows["5"].weight_mse == 0.0
    assert rows["0"].bits_per_weight == 8.0 and rows["0"].weight_mse > 0
    x = torch.randn(2, 3, 4, 4)
    seen = {}

    def grab(mod, args, out):
        seen["in"] = args[0]

    m[0].register_forward_hook(grab)
    m(x)
    assert torch.equal(
        seen["in"],
        get("e4m3/tensor")
        .quantize(x.permute(0, 2, 3, 1).reshape(-1, 3))
        .reshape(2, 4, 4, 3)
        .permute(0, 3, 1, 2),
    )


def test_ste_gradients_flow_and_codebook_centroids_train():
    m = cnn()
    quantize_(m, "w:mxfp4,a:int8", overrides={"5": "w:codebook4"})
    out = m(torch.randn(4, 3, 4, 4)).sum()
    out.backward()
    orig = m[0].parametrizations["weight"].original
    assert orig.grad is not None and orig.grad.abs().sum() > 0
    cb = m[5].parametrizations["weight"][0]
    assert cb.centroids.grad is not None and cb.centroids.grad.abs().sum() > 0
    assert m[5].weight.unique().numel() <= 4


def test_transformer_block_quantizes_every_linear():
    torch.manual_seed(0)
    block = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    ref = copy.deepcopy(block).eval()
    hidden = copy.deepcopy(block)
    with pytest.warns(UserWarning, match="only out_proj's weight is quantized"):
        recs = quantize_(hidden, "w:nvfp4,a:e4m3", expose=False)
    done = [r.name for r in recs if not r.skipped]
    assert {"self_attn.out_proj", "linear1", "linear2"} <= set(done)
    recs = quantize_(block, "w:nvfp4,a:e4m3")  # expose=True: the projections are layers
    assert (recs[0].name, recs[0].kind, recs[0].action) == ("self_attn", "MultiheadAttention",
                                                            "unfused")  # fmt: skip
    done = {r.name for r in recs[1:] if not r.skipped}
    assert done == {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                    "self_attn.out_proj", "linear1", "linear2"}  # fmt: skip
    block.eval()
    x = torch.randn(2, 5, 32)
    y, y0 = block(x), ref(x)
    err = ((y - y0).norm() / y0.norm()).item()
    assert 0 < err < 0.2


def test_static_calibration_fixes_amax():
    m = cnn()
    quantize_(m, "w:int8,a:int8,cal:max")
    xs = [torch.randn(8, 3, 4, 4) for _ in range(3)]
    assert calibrate(m, xs) == 3
    expected = max(float(x.abs().max()) for x in xs)
    assert m[0].input_quantizer.amax.item() == pytest.approx(expected)


@pytest.mark.parametrize("method", ["percentile99", "mse", "entropy"])
def test_clipping_calibrations_clip_below_max(method):
    m = cnn()
    quantize_(m, f"w:int8,a:int4,cal:{method}")
    torch.manual_seed(1)
    xs = [torch.randn(64, 3, 4, 4) for _ in range(4)]
    calibrate(m, xs)
    amax = m[0].input_quantizer.amax.item()
    assert 0 < amax < max(float(x.abs().max()) for x in xs)


@pytest.mark.parametrize(
    "recipe, fragment",
    [
        ("w:float9", "unknown number format"),
        ("x:int8", "unknown key"),
        ("w:int8,w:int4", "twice"),
        ("w int8", "key:value"),
        ("cal:max", "add a:"),
        ("a:codebook16", "codebooks"),
        ("w:int8,round:up", "round"),
    ],
)
def test_bad_recipes_raise_config_error(recipe, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_recipe(recipe)


def test_overrides_naming_missing_layers_and_models_without_layers():
    with pytest.raises(ConfigError, match="do not exist: classifier"):
        quantize_(cnn(), "w:int8", overrides={"classifier*": None})
    with pytest.raises(ConfigError, match="no layer picojoule can quantize"):
        quantize_(nn.Sequential(nn.ReLU()), "w:int8")
