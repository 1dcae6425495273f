"""WinogradConv2d and winograd_conv2d against torch.nn.functional.conv2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from picojoule.errors import FormatError
from picojoule.winograd import WinogradConv2d, WinogradError, winograd_conv2d

F64 = torch.float64


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3),
    groups=st.sampled_from([1, 2, 3]),
    c_per_group=st.integers(1, 3),
    k_per_group=st.integers(1, 3),
    r=st.sampled_from([1, 2, 3, 5]),
    height=st.integers(1, 13),
    width=st.integers(1, 13),
    padding=st.sampled_from([0, 1, 2, (1, 0), (0, 2), "same", "valid"]),
    tile=st.sampled_from([1, 2, 3, 4, (2, 4), (6, 3), 8]),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_conv2d_in_float64(
    batch, groups, c_per_group, k_per_group, r, height, width, padding, tile, bias, seed
) -> None:
    if padding == "same":
        pad_h = pad_w = r - 1
    elif padding == "valid":
        pad_h = pad_w = 0
    else:
        half_h, half_w = (padding, padding) if isinstance(padding, int) else padding
        pad_h, pad_w = 2 * half_h, 2 * half_w
    if height + pad_h < r or width + pad_w < r:
        return  # covered by test_kernel_larger_than_input
    x = _randn(batch, groups * c_per_group, height, width, seed=seed)
    w = _randn(groups * k_per_group, c_per_group, r, r, seed=seed + 1)
    b = _randn(groups * k_per_group, seed=seed + 2) if bias else None
    y = winograd_conv2d(x, w, b, padding=padding, groups=groups, tile=tile)
    ref = F.conv2d(x, w, b, padding=padding, groups=groups)
    assert y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, "same", (2, 1)])
def test_module_is_a_drop_in_conv2d(padding_mode: str, padding) -> None:
    torch.manual_seed(0)
    kw = dict(padding=padding, padding_mode=padding_mode, groups=2, dtype=F64)
    ref = nn.Conv2d(4, 6, 3, **kw)
    wino = WinogradConv2d(4, 6, 3, **kw, tile=(4, 2))
    wino.load_state_dict(ref.state_dict())
    assert wino.state_dict().keys() == ref.state_dict().keys()
    x = _randn(2, 4, 9, 7, seed=3)
    torch.testing.assert_close(wino(x), ref(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(wino(x[0]), ref(x[0]), rtol=0, atol=1e-10)  # unbatched


def test_gradients_match_conv2d() -> None:
    ref = nn.Conv2d(3, 5, 3, padding=1, dtype=F64)
    wino = WinogradConv2d(3, 5, 3, padding=1, dtype=F64, tile=4)
    wino.load_state_dict(ref.state_dict())
    x1 = _randn(2, 3, 6, 6, seed=4).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    ref(x1).square().sum().backward()
    wino(x2).square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-9)
    torch.testing.assert_close(wino.weight.grad, ref.weight.grad, rtol=0, atol=1e-9)
    torch.testing.assert_close(wino.bias.grad, ref.bias.grad, rtol=0, atol=1e-9)


def test_user_points_and_extra_repr() -> None:
    ref = nn.Conv2d(2, 2, 3, padding=1, dtype=F64)
    wino = WinogradConv2d(
        2, 2, 3, padding=1, dtype=F64, tile=2, points=[0, 1, -1, "inf"], transform_format="fp16"
    )
    assert "winograd=F(2x2,3x3)" in repr(wino)
    assert "transform_format=fp16" in repr(wino)
    assert "points=[Fraction(0, 1), Fraction(1, 1), Fraction(-1, 1), inf]" in repr(wino)
    wino.load_state_dict(ref.state_dict())
    x = _randn(1, 2, 5, 5, seed=5)
    err = (wino(x) - ref(x)).abs().max().item()
    assert 0 < err < 1e-2  # fp16 products: visibly rounded, still close


def test_transform_format_rounds_the_products() -> None:
    x, w = _randn(2, 8, 12, 12, seed=6), _randn(8, 8, 3, 3, seed=7) / 8
    ref = F.conv2d(x, w, padding=1)

    def max_rel(fmt: str | None, tile: int = 4) -> float:
        y = winograd_conv2d(x, w, padding=1, tile=tile, transform_format=fmt)
        return ((y - ref).abs().max() / ref.abs().max()).item()

    assert max_rel(None) < 1e-14
    fp32, fp16, e4m3 = max_rel("fp32"), max_rel("fp16"), max_rel("e4m3")
    assert 1e-9 < fp32 < 1e-5
    assert 1e3 * fp32 < fp16 < 1e-1
    assert e4m3 > 10 * fp16
    assert max_rel("fp16", tile=2) < max_rel("fp16", tile=6)


def test_transform_format_keeps_gradients_straight_through() -> None:
    x = _randn(1, 2, 6, 6, seed=8)
    w = _randn(3, 2, 3, 3, seed=9).requires_grad_()
    winograd_conv2d(x, w, tile=2, transform_format="fp32").sum().backward()
    exact = w.detach().clone().requires_grad_()
    winograd_conv2d(x, exact, tile=2).sum().backward()
    # Rounding has zero derivative almost everywhere; straight through, the gradient is the
    # exact one up to the fp32 rounding of the other operand.
    torch.testing.assert_close(w.grad, exact.grad, rtol=1e-6, atol=1e-6)
    assert w.grad.abs().min() > 0.1


def test_float32_inputs_stay_float32() -> None:
    conv = WinogradConv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    y = conv(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.conv2d(x, conv.weight, conv.bias, padding=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stride": 2}, "stride \\(2, 2\\): Winograd F\\(m, r\\) here is stride-1 only"),
        ({"dilation": 2}, "dilation \\(2, 2\\)"),
        ({"tile": 0}, "tile must be positive"),
        ({"tile": (2, 2, 2)}, "tile must be an int or a pair"),
        ({"tile": 2, "points": [0, 0, 1, "inf"]}, "repeated"),
        ({"tile": 4, "points": [0, 1, -1, "inf"]}, "F\\(4, 3\\) needs m \\+ r - 1 = 6"),
    ],
)
def test_bad_module_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(WinogradError, match=message):
        WinogradConv2d(2, 2, 3, **kwargs)


def test_unknown_transform_format() -> None:
    with pytest.raises(FormatError):
        WinogradConv2d(2, 2, 3, transform_format="fp17")


def test_kernel_larger_than_input() -> None:
    with pytest.raises(WinogradError, match="kernel 5x5 is larger than the padded input 3x3"):
        winograd_conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 5, 5))


@pytest.mark.parametrize(
    ("x", "w", "groups", "message"),
    [
        (torch.randn(1, 3, 5, 5), torch.randn(2, 2, 3, 3), 1, "input has 3 channels"),
        (torch.randn(1, 4, 5, 5), torch.randn(3, 2, 3, 3), 2, "groups=2 must be a positive int"),
        (torch.randn(5, 5), torch.randn(1, 1, 3, 3), 1, "input must be \\[N, C, H, W\\]"),
        (torch.randn(1, 1, 5, 5), torch.randn(1, 3, 3), 1, "weight must be"),
        (torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3, dtype=F64), 1, "share one floating"),
    ],
)
def test_bad_operands(x: torch.Tensor, w: torch.Tensor, groups: int, message: str) -> None:
    with pytest.raises(WinogradError, match=message):
        winograd_conv2d(x, w, groups=groups)


def test_bad_padding() -> None:
    with pytest.raises(WinogradError, match="padding 'full'"):
        winograd_conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), padding="full")
    with pytest.raises(WinogradError, match="non-negative"):
        winograd_conv2d(torch.randn(1, 1, 5, 5), torch.randn(1, 1, 3, 3), padding=-1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_cuda_matches_conv2d(dtype: torch.dtype) -> None:
    ref = nn.Conv2d(16, 32, 3, padding=1).cuda().to(dtype)
    wino = WinogradConv2d(16, 32, 3, padding=1, tile=4).cuda().to(dtype)
    wino.load_state_dict(ref.state_dict())
    x = torch.randn(4, 16, 20, 20, device="cuda", dtype=dtype)
    y, want = wino(x).double(), ref(x).double()
    tol = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2}[dtype]
    assert ((y - want).abs().max() / want.abs().max()).item() < tol
