"""Bit patterns: every code point of every element format of <= 16 bits, and the derived
constants, checked against the decode table (which `FloatFormat.decode_value` builds code by
code from the spec, independently of the arithmetic in `encode`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fmtref import element_names

from picojoule.formats import FloatFormat, FormatError, IntFormat, LNSFormat, get

ELEMENTS = element_names(16)


def _codes(fmt) -> torch.Tensor:
    """Every valid code of `fmt` (a narrow integer range skips its unused -2^(N-1) code)."""
    codes = torch.arange(1 << fmt.bits, dtype=torch.int64)
    if isinstance(fmt, IntFormat) and fmt.narrow:
        codes = codes[codes != 1 << (fmt.bits - 1)]
    return codes


def _canonical_nan(fmt: FloatFormat) -> int:
    """The one NaN code `encode` emits (OCP/IEEE quiet NaN with a clear sign bit)."""
    e_all, nm = (1 << fmt.ebits) - 1, fmt.ebits + fmt.mbits
    return {
        "ieee": (e_all << fmt.mbits) | (1 << max(fmt.mbits - 1, 0)),
        "all_ones": (1 << nm) - 1,
        "neg_zero": 1 << nm,
    }[fmt.nan]


def test_element_registry_is_covered() -> None:
    """The parameterization picks up every family, so a new format gets these tests for free."""
    kinds = {type(get(n)) for n in ELEMENTS}
    assert kinds == {FloatFormat, IntFormat, LNSFormat}
    assert {"e4m3", "e2m1", "e8m0", "bf16", "fp16", "int4", "uint8", "lns8"} <= set(ELEMENTS)


@pytest.mark.parametrize("name", ELEMENTS)
def test_every_code_round_trips(name: str) -> None:
    """decode -> encode gives the code back; encode -> decode -> encode is then a fixed point.
    NaN codes all map to the format's single canonical NaN code."""
    fmt = get(name)
    codes = _codes(fmt)
    values = fmt.decode(codes)
    assert values.dtype == torch.float32 and values.shape == codes.shape
    nan = torch.isnan(values)
    again = fmt.encode(values[~nan]).to(torch.int64)
    bad = codes[~nan][again != codes[~nan]]
    assert bad.numel() == 0, f"{fmt.name}: codes {bad[:8].tolist()} do not round-trip"
    assert torch.equal(fmt.encode(fmt.decode(again)).to(torch.int64), again)
    if nan.any():
        nan_codes = fmt.encode(values[nan]).to(torch.int64)
        assert set(nan_codes.tolist()) == {_canonical_nan(fmt)}


@pytest.mark.parametrize("name", ELEMENTS)
def test_distinct_codes_have_distinct_values(name: str) -> None:
    """Apart from NaNs and the two zeros, the code -> value map is injective."""
    fmt = get(name)
    v = fmt.decode(_codes(fmt)).numpy().astype(np.float64)
    v = v[~np.isnan(v)]
    nonzero = v[v != 0]
    assert len(np.unique(nonzero)) == len(nonzero)
    assert (v == 0).sum() <= 2


@pytest.mark.parametrize("name", [n for n in ELEMENTS if isinstance(get(n), FloatFormat)])
def test_float_constants_are_decodes_of_their_codes(name: str) -> None:
    fmt = get(name)
    assert isinstance(fmt, FloatFormat)
    table = fmt.table
    e_all, m_all = (1 << fmt.ebits) - 1, (1 << fmt.mbits) - 1
    if fmt.nan == "ieee":
        max_code = ((e_all - 1) << fmt.mbits) | m_all
    elif fmt.nan == "all_ones":
        max_code = (e_all << fmt.mbits) | (m_all - 1) if fmt.mbits else (e_all - 1)
    else:
        max_code = (e_all << fmt.mbits) | m_all
    finite = table[np.isfinite(table)]
    assert fmt.max == table[max_code] == finite.max()
    assert -fmt.max == finite.min() or not fmt.signed
    one = fmt.bias << fmt.mbits
    assert table[one] == 1.0
    assert fmt.eps == table[one + 1] - 1.0
    if fmt.subnormals:
        assert fmt.min_normal == table[1 << fmt.mbits]
        assert fmt.min_subnormal == table[1] == finite[finite > 0].min()
        assert table[0] == 0.0 and math.copysign(1.0, table[0]) == 1.0
    else:
        assert fmt.min_normal == fmt.min_subnormal == table[0] == finite.min()
    if fmt.inf:
        assert table[e_all << fmt.mbits] == math.inf
    else:
        assert not np.isinf(table).any()
    nan_count = int(np.isnan(table).sum())
    expected_nans = {"ieee": 2 * m_all, "all_ones": 2, "neg_zero": 1, "none": 0}[fmt.nan]
    if fmt.nan == "all_ones" and not fmt.signed:
        expected_nans = 1
    assert nan_count == expected_nans


def test_float_constants_known_values() -> None:
    """Spot values from the specs (OCP OFP8 v1.0 table 1; OCP MX v1.0 tables 2-4; IEEE 754)."""
    cases = {
        "e4m3": (448.0, 2.0**-6, 2.0**-9, 0.125),
        "e5m2": (57344.0, 2.0**-14, 2.0**-16, 0.25),
        "e4m3fnuz": (240.0, 2.0**-7, 2.0**-10, 0.125),
        "e5m2fnuz": (57344.0, 2.0**-15, 2.0**-17, 0.25),
        "e3m2": (28.0, 0.25, 0.0625, 0.25),
        "e2m3": (7.5, 1.0, 0.125, 0.125),
        "e2m1": (6.0, 1.0, 0.5, 0.5),
        "e8m0": (2.0**127, 2.0**-127, 2.0**-127, 1.0),
        "bf16": (float(torch.finfo(torch.bfloat16).max), 2.0**-126, 2.0**-133, 2.0**-7),
        "fp16": (65504.0, 2.0**-14, 2.0**-24, 2.0**-10),
    }
    for name, (mx, mn, ms, eps) in cases.items():
        f = get(name)
        assert (f.max, f.min_normal, f.min_subnormal, f.eps) == (mx, mn, ms, eps), name


@pytest.mark.parametrize("name", [n for n in ELEMENTS if isinstance(get(n), IntFormat)])
def test_int_codes_are_twos_complement(name: str) -> None:
    fmt = get(name)
    assert isinstance(fmt, IntFormat)
    v = fmt.decode(_codes(fmt)).to(torch.int64)
    assert int(v.max()) == fmt.qmax == fmt.max
    assert int(v.min()) == fmt.qmin
    if fmt.signed:
        assert int(fmt.decode(torch.tensor([(1 << fmt.bits) - 1]))) == -1
        assert fmt.qmin == -fmt.qmax - (0 if fmt.narrow else 1)
    assert len(torch.unique(v)) == fmt.qmax - fmt.qmin + 1


def test_lns_constants_are_decodes_of_their_codes() -> None:
    fmt = get("lns8")
    assert isinstance(fmt, LNSFormat) and fmt.name == "lns8_f4"
    n, step = fmt.bits - 1, 1 << fmt.frac_bits
    values = fmt.decode(torch.arange(1 << n)).double()
    assert math.isclose(float(values.max()), fmt.max, rel_tol=1e-7)
    assert math.isclose(float(values[values > 0].min()), fmt.min_normal, rel_tol=1e-7)
    assert float(fmt.decode(torch.tensor([fmt.kmin - 1 + (1 << n)]))) == 0.0  # zero code
    assert float(fmt.decode(torch.tensor([1]))) == np.float32(1.0 + fmt.eps)
    assert fmt.max == 2.0 ** (fmt.kmax / step) and fmt.kmax == (1 << (n - 1)) - 1


@pytest.mark.parametrize("name", ["fp32", "tf32", "e8m15", "e5m12", "e10m20"])
def test_wide_formats_round_trip_sampled_codes(name: str) -> None:
    """Formats wider than 16 bits have no table; decode(encode(x)) must still equal
    quantize(x) (sampled values, zeros and the extremes included)."""
    fmt = get(name)
    assert isinstance(fmt, FloatFormat)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -6, 6, (4096,), generator=g
    )
    x = torch.cat([x, torch.tensor([0.0, -0.0, fmt.max, -fmt.max, fmt.min_subnormal])])
    q = fmt.quantize(x.float()).double()
    back = fmt.decode(fmt.encode(x.float())).double()
    assert torch.equal(back, q)


def test_decode_rejects_bad_codes() -> None:
    with pytest.raises(FormatError, match="integer codes"):
        get("e4m3").decode(torch.tensor([1.0]))
    with pytest.raises(FormatError, match=r"\[0, 2\^4\)"):
        get("e2m1").decode(torch.tensor([16]))
    with pytest.raises(FormatError, match=r"\[0, 2\^8\)"):
        get("int8").decode(torch.tensor([-1]))
    with pytest.raises(FormatError, match="unused in a narrow range"):
        get("int4_narrow").decode(torch.tensor([8]))


def test_encode_refuses_values_without_a_code() -> None:
    with pytest.raises(FormatError, match="no NaN code"):
        get("e2m1").encode(torch.tensor([1.0, float("nan")]))
    with pytest.raises(FormatError, match="NaN has no integer code"):
        get("int8").encode(torch.tensor([float("nan")]))
    with pytest.raises(FormatError, match="no NaN or inf code"):
        get("lns8").encode(torch.tensor([float("nan")]))


def test_encode_known_codes() -> None:
    """Hand-checked patterns: OCP OFP8 E4M3 448 = 0x7E, NaN = 0x7F; E5M2 inf = 0x7C; E2M1 6.0 =
    0b0111, -0.5 = 0b1001; fnuz NaN = 0x80; E8M0 1.0 = 127; int4 -1 = 0xF."""
    assert get("e4m3").encode(torch.tensor([448.0, -448.0, float("nan")])).tolist() == [
        0x7E,
        0xFE,
        0x7F,
    ]
    assert get("e2m1").encode(torch.tensor([6.0, -0.5, -0.0])).tolist() == [0x7, 0x9, 0x8]
    assert get("e4m3fnuz").encode(torch.tensor([float("nan"), -0.0])).tolist() == [0x80, 0]
    assert get("e8m0").encode(torch.tensor([1.0, 2.0**-127, 2.0**127])).tolist() == [127, 0, 254]
    assert get("int4").encode(torch.tensor([-1.0, 7.0, -8.0])).tolist() == [0xF, 0x7, 0x8]
    assert get("e5m2").encode(torch.tensor([float("inf"), -float("inf")])).tolist() == [0x7C, 0xFC]
