"""winogradize_ / WinogradConfig: eligibility, in-place conversion, composition with
parametrizations and hooks."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.config import apply
from picojoule.errors import FormatError
from picojoule.winograd import WinogradConfig, WinogradConv2d, WinogradError, winogradize_

F64 = torch.float64


class _Mask(nn.Module):
    """A sparsity-style weight parametrization."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


class _Round(nn.Module):
    """A fake-quant-style weight parametrization (sits after the mask)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.round(w * 64) / 64


class _MyConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.Conv2d(8, 8, 1),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        nn.Conv2d(8, 8, 5, padding=2, groups=4),
        _MyConv(8, 8, 3, padding=1),
        nn.Flatten(),
    ).to(F64)


def test_converts_eligible_layers_and_says_why_others_are_skipped() -> None:
    model = _model()
    ref = copy.deepcopy(model)
    records = winogradize_(model, tile=(4, 4))
    assert [(r.name, r.kind, r.action, r.reason) for r in records] == [
        ("0", "Conv2d", "F(4x4,3x3): 4.00x fewer multiplies", ""),
        ("2", "Conv2d", "", "stride (2, 2): Winograd here is stride-1 only"),
        ("3", "Conv2d", "", "kernel 1x1 not in kernel_sizes (3,)"),
        ("4", "Conv2d", "", "dilation (2, 2): Winograd needs dilation 1"),
        ("5", "Conv2d", "", "kernel 5x5 not in kernel_sizes (3,)"),
        (
            "6",
            "_MyConv",
            "",
            "_MyConv subclasses Conv2d with its own behaviour; convert before wrapping",
        ),
    ]
    assert type(model[0]) is WinogradConv2d
    assert type(model[2]) is nn.Conv2d
    x = torch.randn(2, 3, 10, 10, dtype=F64)
    torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-10)


def test_kernel_sizes_and_tile_options() -> None:
    model = _model()
    records = winogradize_(model, 2, kernel_sizes=(3, 5), transform_format="fp32")
    actions = {r.name: r.action for r in records if not r.skipped}
    assert actions == {
        "0": "F(2x2,3x3): 2.25x fewer multiplies, products in fp32",
        "5": "F(2x2,5x5): 2.78x fewer multiplies, products in fp32",
    }
    assert model[5].groups == 4 and model[5].tile == (2, 2)


def test_apply_with_config_is_the_same_verb() -> None:
    model = _model()
    records = apply(model, WinogradConfig(tile=(6, 6)))
    assert records[0].action == "F(6x6,3x3): 5.06x fewer multiplies"
    again = apply(model, WinogradConfig())
    assert again[0].reason == "already a WinogradConv2d"


def test_filter_fn_selects_layers() -> None:
    model = _model()
    records = winogradize_(model, filter_fn=lambda mod, name: name != "0")
    assert all(r.name != "0" for r in records)
    assert type(model[0]) is nn.Conv2d


def test_parametrizations_and_hooks_are_kept() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1, dtype=F64)
    mask = (torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(1)) > 0.5).to(F64)
    parametrize.register_parametrization(conv, "weight", _Mask(mask))
    parametrize.register_parametrization(conv, "weight", _Round())
    conv.register_forward_pre_hook(lambda mod, args: (torch.round(args[0] * 8) / 8,))
    calls: list[int] = []
    conv.register_forward_hook(lambda mod, args, out: calls.append(1))
    ref = copy.deepcopy(conv)
    original = conv.parametrizations.weight.original
    keys = set(conv.state_dict())

    records = winogradize_(conv)  # a bare conv is its own (root) module

    assert records[0].action.startswith("F(4x4,3x3)")
    assert isinstance(conv, WinogradConv2d)
    assert parametrize.type_before_parametrizations(conv) is WinogradConv2d
    assert conv.parametrizations.weight.original is original
    assert set(conv.state_dict()) == keys
    x = torch.randn(2, 3, 7, 7, dtype=F64)
    want = ref(x)  # the deep copy shares the hook closure: one call
    torch.testing.assert_close(conv(x), want, rtol=0, atol=1e-10)
    assert len(calls) == 2
    clone = copy.deepcopy(conv)
    torch.testing.assert_close(clone(x), ref(x), rtol=0, atol=1e-10)
    parametrize.remove_parametrizations(conv, "weight")
    assert type(conv) is WinogradConv2d


def test_parametrized_conv_that_is_skipped_stays_untouched() -> None:
    conv = nn.Conv2d(2, 2, 3, stride=2)
    parametrize.register_parametrization(conv, "weight", _Round())
    cls = type(conv)
    records = winogradize_(conv)
    assert records[0].reason.startswith("stride")
    assert type(conv) is cls


def test_other_conv_dims_are_reported() -> None:
    model = nn.Sequential(nn.Conv1d(2, 2, 3), nn.Conv3d(2, 2, 3), nn.Linear(2, 2))
    assert [(r.kind, r.reason) for r in winogradize_(model)] == [
        ("Conv1d", "Conv1d: only Conv2d is supported"),
        ("Conv3d", "Conv3d: only Conv2d is supported"),
    ]


def test_points_of_the_wrong_length_skip_the_layer() -> None:
    model = nn.Sequential(nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 5))
    records = winogradize_(model, 2, kernel_sizes=(3, 5), points=[0, 1, -1, "inf"])
    assert records[0].action.startswith("F(2x2,3x3)")
    assert records[1].reason == "4 points given, F(2,5) needs 6"


def test_config_normalizes_and_validates() -> None:
    cfg = WinogradConfig(
        tile=6, kernel_sizes=[3], points=["0", 1, "-1", "1/2", "-1/2", 2, -2, "inf"]
    )
    assert cfg.tile == (6, 6) and cfg.kernel_sizes == (3,)
    assert str(cfg.points[3]) == "1/2"
    with pytest.raises(WinogradError, match="tile must be positive"):
        WinogradConfig(tile=(0, 4))
    with pytest.raises(WinogradError, match="kernel_sizes must be positive ints"):
        WinogradConfig(kernel_sizes=())
    with pytest.raises(WinogradError, match="repeat a value"):
        WinogradConfig(points=(0, 1, "1", "inf"))
    with pytest.raises(WinogradError, match="cannot read interpolation point"):
        WinogradConfig(points=("x",))
    with pytest.raises(FormatError):
        WinogradConfig(transform_format="fp7")


@pytest.mark.parametrize("order", ["quantize_first", "winogradize_first"])
def test_composes_with_quantize_in_either_order(order: str) -> None:
    from picojoule.quant import quantize_

    torch.manual_seed(0)
    ref = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3)).to(F64)
    model = copy.deepcopy(ref)
    quantize_(ref, "w:e4m3,a:e4m3")
    if order == "quantize_first":
        quantize_(model, "w:e4m3,a:e4m3")
        records = winogradize_(model)
    else:
        records = winogradize_(model)
        quantize_(model, "w:e4m3,a:e4m3")
    assert [r.action[:10] for r in records] == ["F(4x4,3x3)", "F(4x4,3x3)"]
    assert all(isinstance(m, WinogradConv2d) for m in (model[0], model[2]))
    assert hasattr(model[0], "input_quantizer")
    x = torch.randn(2, 3, 9, 9, dtype=F64)
    # Exact Winograd on the same fake-quantized operands: the quantized direct model's output.
    torch.testing.assert_close(model(x), ref(x), rtol=0, atol=1e-10)
