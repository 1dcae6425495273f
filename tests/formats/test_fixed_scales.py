"""ScaledFormat.fit_scales / quantize_fixed: the scales of `quantize`, held and applied to any
column range. The invariant: quantize_fixed(x, fit_scales(x)) == quantize(x) bit for bit, for
every scaled family, on data with zero rows, ragged last blocks, NaN and inf; and the held
scales are what is applied (scales fit on other data give other values)."""

from __future__ import annotations

import pytest
import torch

from picojoule.errors import FormatError, ShapeError
from picojoule.formats import ScaledFormat, get

FAMILIES = [
    # plain per-tensor / per-channel (fp32 scale)
    "int8/tensor",
    "e4m3/tensor",
    "int4/channel",
    "e2m1/channel",
    "lns8/channel",
    # plain per-block
    "int4/block8",
    "e2m1/block16",
    # MX (OCP v1.0), every element, the three scale rules, another block size
    "mxfp8_e4m3",
    "mxfp8_e5m2",
    "mxfp6_e3m2",
    "mxfp6_e2m3",
    "mxfp4",
    "mxint8",
    "mxfp4_ceil",
    "mxfp4_round",
    "mxfp4_b16",
    # NVFP4
    "nvfp4",
    # VS-Quant: one level, unsigned, two-level, paper order, 8 bit
    "vsq4_v16",
    "vsq4u_v16",
    "vsq4_v16_s4",
    "vsq4_v16_s4_paper",
    "vsq8_v16_s6",
]


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bit patterns of a float tensor (signed zeros included)."""
    return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def assert_bits(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bit patterns, NaN in the same places (a NaN's sign and payload carry nothing and
    differ between torch's vectorized and scalar loops)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    nan = torch.isnan(a)
    assert torch.equal(nan, torch.isnan(b)), "NaN in other places"
    diff = ((bits(a) != bits(b)) & ~nan).nonzero()
    assert diff.numel() == 0, f"{len(diff)} elements differ, first at {diff[0].tolist()}"


def data(dtype: torch.dtype, rows: int = 6, cols: int = 45, seed: int = 0) -> torch.Tensor:
    """Random rows over several magnitudes, a zero row, a zero run, a NaN and an inf; 45
    columns leave a ragged last block for every block size used here."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, cols, generator=g, dtype=torch.float64)
    x = x * torch.logspace(-3, 3, rows, dtype=torch.float64)[:, None]
    x[1] = 0.0
    x[2, :20] = 0.0
    x[3, 7] = float("nan")
    x[4, 44] = float("-inf")
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", FAMILIES)
def test_fixed_equals_quantize(name: str, dtype: torch.dtype) -> None:
    fmt = get(name)
    assert isinstance(fmt, ScaledFormat)
    x = data(dtype)
    ref = fmt.quantize(x)
    scales = fmt.fit_scales(x)
    assert_bits(fmt.quantize_fixed(x, scales), ref)
    # one column at a time (GPTQ's use), by start column and by slice
    cols = [fmt.quantize_fixed(x[:, j : j + 1], scales, cols=j) for j in range(x.shape[1])]
    same = assert_bits
    if name.startswith("lns") and dtype == torch.float64:
        # LNS decodes with exp2 in float64, and torch's vectorized and scalar exp2 (a 45-wide
        # row vs a 6-element column) differ in the last bit: quantize itself is only
        # bit-stable across layouts up to that ulp.
        def same(a: torch.Tensor, b: torch.Tensor) -> None:
            torch.testing.assert_close(a, b, rtol=1e-15, atol=0.0, equal_nan=True)

    same(torch.cat(cols, dim=1), ref)
    for a, b in [(0, 45), (3, 19), (16, 45), (30, 33), (44, 45)]:
        same(fmt.quantize_fixed(x[:, a:b], scales, cols=slice(a, b)), ref[:, a:b])
    assert torch.isnan(ref[3]).any() and torch.isnan(ref[4]).any()  # the data tests NaN blocks


@pytest.mark.parametrize("name", ["int4/channel", "int4/block8", "mxfp4", "nvfp4", "vsq4_v16_s4"])
def test_fixed_other_layouts_and_roundings(name: str) -> None:
    fmt = get(name)
    g = torch.Generator().manual_seed(1)
    for shape in [(3, 4, 40), (40,), (1, 33)]:
        x = torch.randn(*shape, generator=g)
        for rounding in ("nearest_even", "toward_zero"):
            ref = fmt.quantize(x, rounding=rounding)
            got = fmt.quantize_fixed(x, fmt.fit_scales(x), rounding=rounding)
            assert_bits(got, ref)
    scalar = torch.tensor(0.37)
    assert_bits(fmt.quantize_fixed(scalar, fmt.fit_scales(scalar)), fmt.quantize(scalar))


@pytest.mark.parametrize(
    ("name", "amax", "coarse"),
    [
        ("int4/channel", torch.linspace(1.0, 3.0, 5), "row"),
        ("int8/tensor", 2.5, "row"),
        ("nvfp4", 4.0, "row"),
        ("vsq4_v16_s4", torch.linspace(2.0, 5.0, 5), "row"),
        ("vsq4_v16_s4", 3.0, "tensor"),
        ("vsq4_v16_s4", None, "tensor"),
    ],
)
def test_fixed_static_amax_and_coarse(name: str, amax, coarse: str) -> None:
    fmt = get(name)
    x = torch.randn(5, 48, generator=torch.Generator().manual_seed(2))
    ref = fmt.quantize(x, amax=amax, coarse=coarse)
    assert_bits(fmt.quantize_fixed(x, fmt.fit_scales(x, amax=amax, coarse=coarse)), ref)


@pytest.mark.parametrize("name", ["int4/channel", "int8/tensor", "int4/block8", "mxfp4", "nvfp4"])
def test_held_scales_are_applied(name: str) -> None:
    """Scales fit on 3x the data quantize x on a coarser grid: quantize_fixed uses them."""
    fmt = get(name)
    x = torch.randn(4, 32, generator=torch.Generator().manual_seed(3))
    other = fmt.quantize_fixed(x, fmt.fit_scales(3.0 * x))
    assert not torch.equal(other, fmt.quantize(x))
    assert_bits(fmt.quantize_fixed(3.0 * x, fmt.fit_scales(3.0 * x)), fmt.quantize(3.0 * x))


def test_fixed_by_hand() -> None:
    """int4/channel: scale = amax / 7. Scales from [7, 0, 0] (scale 1) put 3.5 on 4 (ties to
    even) where x's own scale (0.5) keeps it."""
    fmt = get("int4/channel")
    x = torch.tensor([[1.0, 2.0, 3.5]])
    held = fmt.fit_scales(torch.tensor([[7.0, 0.0, 0.0]]))
    assert held.divisor.tolist() == [[1.0]] and held.block == 3 and held.cols == 3
    assert fmt.quantize_fixed(x, held).tolist() == [[1.0, 2.0, 4.0]]
    assert fmt.quantize_fixed(x, fmt.fit_scales(x)).tolist() == [[1.0, 2.0, 3.5]]
    blk = get("int4/block2").fit_scales(torch.tensor([[7.0, 1.0, 14.0]]))
    assert blk.divisor.tolist() == [[1.0, 2.0]] and blk.nblocks == 2 and blk.rows == 1


def test_fixed_errors() -> None:
    fmt = get("int4/block8")
    x = torch.randn(4, 20)
    scales = fmt.fit_scales(x)
    with pytest.raises(ShapeError, match="rows"):
        fmt.quantize_fixed(torch.randn(3, 20), scales)
    with pytest.raises(ShapeError, match="columns"):
        fmt.quantize_fixed(x[:, :5], scales, cols=18)
    with pytest.raises(ShapeError, match="columns"):
        fmt.quantize_fixed(x[:, :5], scales, cols=slice(0, 4))
    with pytest.raises(ShapeError, match="columns"):
        fmt.quantize_fixed(x[:, :5], scales)
    with pytest.raises(ShapeError, match="step"):
        fmt.quantize_fixed(x[:, :5], scales, cols=slice(0, 10, 2))
    with pytest.raises(FormatError, match="fit for int4/block8"):
        get("mxfp4").quantize_fixed(x, scales)
    with pytest.raises(FormatError, match="floating-point"):
        fmt.fit_scales(torch.ones(2, 8, dtype=torch.int32))
    with pytest.raises(ShapeError, match="non-empty"):
        fmt.fit_scales(torch.empty(0, 8))
    with pytest.raises(FormatError, match="amax"):
        get("mxfp4").fit_scales(x, amax=1.0)
