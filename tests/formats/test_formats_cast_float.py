"""Float casts, bit for bit, on >= 1M inputs per format that include every tie.

Three oracles: the table-search reference in fmtref (independent code, exact in float64),
ml_dtypes (`astype`, which does not saturate: compare with saturate=False) and torch's own
float8 casts (e4m3fn saturates like saturate=True; e5m2 and the fnuz types do not).
Known, documented disagreements are asserted exactly, so a change on either side shows up.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fmtref import (
    ML_DTYPES,
    ML_DTYPES_VERSION,
    dense_inputs,
    element_names,
    round_nearest_ref,
    round_toward_zero_ref,
    same_bits,
    spacing,
)

from picojoule.formats import FloatFormat, get

pytestmark = [
    pytest.mark.filterwarnings("ignore:invalid value encountered in cast"),
    pytest.mark.filterwarnings("ignore:overflow encountered in cast"),
]

ML_NAMES = list(ML_DTYPES)
FLOATS = [n for n in element_names(16) if isinstance(get(n), FloatFormat)]
TINY = 2.0**-127  # E8M0's smallest value, a float32 subnormal


def _ours(x: np.ndarray, name: str, **kw) -> np.ndarray:
    return get(name).quantize(torch.from_numpy(x), **kw).numpy()


def _assert_same(got: np.ndarray, want: np.ndarray, x: np.ndarray, what: str) -> None:
    ok = same_bits(got, want)
    if not ok.all():
        i = np.flatnonzero(~ok)[:5]
        raise AssertionError(
            f"{what}: {(~ok).sum()} mismatches, x={x[i]} got={got[i]} want={want[i]}"
        )


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ML_NAMES)
def test_nearest_even_matches_reference(name: str, dtype: type, saturate: bool) -> None:
    """float64 inputs are rounded once, straight to the target grid (no double rounding)."""
    fmt = get(name)
    x = dense_inputs(fmt, dtype)
    assert x.size >= 1_000_000
    got = _ours(x, name, saturate=saturate)
    assert got.dtype == dtype
    _assert_same(got, round_nearest_ref(x, fmt, saturate=saturate), x, f"{name} RNE")


@pytest.mark.parametrize("name", ML_NAMES)
def test_toward_zero_matches_reference(name: str) -> None:
    fmt = get(name)
    x = dense_inputs(fmt, np.float32)
    for sat in (True, False):
        got = _ours(x, name, rounding="toward_zero", saturate=sat)
        _assert_same(got, round_toward_zero_ref(x, fmt, saturate=sat), x, f"{name} RTZ")


def _ml_exceptions(name: str, x: np.ndarray) -> np.ndarray:
    """Inputs where ml_dtypes and picojoule differ by documented convention (docs/formats.md)."""
    fmt = get(name)
    skip = np.zeros(x.shape, dtype=bool)
    if fmt.nan == "none":
        skip |= np.isnan(x)  # ml_dtypes writes a zero; we keep NaN in fake-quant
    if name == "float8_e8m0fnu" and ML_DTYPES_VERSION < (0, 7):
        # ml_dtypes <= 0.6 rounds fp32-subnormal inputs in (2^-127, 2^-126) up to 2^-126.
        skip |= (x > TINY) & (x < 2.0**-126)
    return skip


@pytest.mark.parametrize("name", ML_NAMES)
def test_matches_ml_dtypes_bit_for_bit(name: str) -> None:
    """saturate=False is ml_dtypes' convention: overflow gives inf (IEEE-style), NaN (fn with a
    NaN code, fnuz) or max (formats without inf or NaN, which always saturate)."""
    fmt = get(name)
    x = dense_inputs(fmt, np.float32)
    skip = _ml_exceptions(name, x)
    ml = x.astype(ML_DTYPES[name]).astype(np.float32)
    got = _ours(x, name, saturate=False)
    _assert_same(got[~skip], ml[~skip], x[~skip], f"{name} vs ml_dtypes")
    if fmt.nan == "none":  # NaN: ml_dtypes gives a zero, we keep NaN
        nan = np.isnan(x)
        assert (ml[nan] == 0).all() and np.isnan(got[nan]).all()


def test_e8m0_subnormal_inputs_round_to_nearest_ml_dtypes_by_version() -> None:
    """Inputs strictly between 2^-127 and 1.5*2^-127 (fp32 subnormals) are nearer 2^-127, and
    we return 2^-127. ml_dtypes <= 0.6 returned 2^-126 (rounded up); 0.7.0 rounds them to nearest
    as we do. The tie 1.5*2^-127 rounds up in every version, as ours does."""
    bits = np.arange(0x00400001, 0x00600000, 37, dtype=np.uint32)  # (2^-127, 1.5*2^-127)
    x = bits.view(np.float32)
    ml = x.astype(ML_DTYPES["float8_e8m0fnu"]).astype(np.float32)
    got = _ours(x, "e8m0")
    assert (got == np.float32(TINY)).all()
    assert (ml == np.float32(2.0**-126 if ML_DTYPES_VERSION < (0, 7) else TINY)).all()
    mid = np.array([1.5 * TINY], dtype=np.float32)  # the tie: both round up
    assert _ours(mid, "e8m0")[0] == 2.0**-126 == mid.astype(ML_DTYPES["float8_e8m0fnu"])[0]


@pytest.mark.parametrize("name", ML_NAMES)
def test_float64_inputs_vs_ml_dtypes_only_double_rounding_differs(name: str) -> None:
    """ml_dtypes converts float64 through float32 (double rounding). Wherever we disagree with
    it on float64 input, ml_dtypes equals our result for the float32-rounded input and we equal
    the exact reference."""
    fmt = get(name)
    x = dense_inputs(fmt, np.float64)
    got = _ours(x, name, saturate=False)
    ml = x.astype(ML_DTYPES[name]).astype(np.float64)
    skip = _ml_exceptions(name, x) | _ml_exceptions(name, x.astype(np.float32))
    differ = ~same_bits(got, ml) & ~skip
    via32 = _ours(x[differ].astype(np.float32), name, saturate=False).astype(np.float64)
    _assert_same(ml[differ], via32, x[differ], f"{name}: ml_dtypes float64 path")
    exact = round_nearest_ref(x[differ], fmt, saturate=False)
    _assert_same(got[differ], exact, x[differ], f"{name}: ours on float64")


TORCH_CASTS = [
    ("e4m3", torch.float8_e4m3fn, True),
    ("e5m2", torch.float8_e5m2, False),
    ("e4m3fnuz", torch.float8_e4m3fnuz, False),
    ("e5m2fnuz", torch.float8_e5m2fnuz, False),
]


@pytest.mark.parametrize(("name", "dtype", "saturate"), TORCH_CASTS)
def test_matches_torch_float8_casts(name: str, dtype: torch.dtype, saturate: bool) -> None:
    """torch's e4m3fn cast saturates (+-inf too); e5m2 overflows to inf, fnuz to NaN."""
    x = dense_inputs(get(name), np.float32)
    want = torch.from_numpy(x).to(dtype).float().numpy()
    _assert_same(_ours(x, name, saturate=saturate), want, x, f"{name} vs torch")


@pytest.mark.parametrize(("name", "dtype", "saturate"), TORCH_CASTS)
def test_torch_float64_casts_round_through_float32(
    name: str, dtype: torch.dtype, saturate: bool
) -> None:
    """torch, like ml_dtypes, double-rounds float64 input: its result is ours for the
    float32-rounded input; ours differs from it only where that double rounding bites."""
    x = dense_inputs(get(name), np.float64)
    want = torch.from_numpy(x).to(dtype).double().numpy()
    via32 = _ours(x.astype(np.float32), name, saturate=saturate).astype(np.float64)
    _assert_same(via32, want, x, f"{name}: torch float64 path")
    ours = _ours(x, name, saturate=saturate)
    differ = ~same_bits(ours, want)
    assert differ.any()  # the dense set holds values one float64 ulp beside every tie
    exact = round_nearest_ref(x[differ], get(name), saturate=saturate)
    _assert_same(ours[differ], exact, x[differ], f"{name}: ours where torch double-rounds")


def test_torch_e8m0_cast_conventions() -> None:
    """torch.float8_e8m0fnu (torch 2.13): nearest, ties up, like ours for positive normal
    inputs; it rounds (2^-127, 1.5*2^-127) up like ml_dtypes, drops the sign of negative
    inputs, maps +-0 to 2^-127 and overflow (>= 1.5*2^127), inf and NaN to NaN."""
    fmt = get("e8m0")
    x = dense_inputs(fmt, np.float32)
    t = torch.from_numpy(x).to(torch.float8_e8m0fnu).float().numpy()
    ours = _ours(x, "e8m0", saturate=False)
    pos = x > 0
    odd = pos & (x > TINY) & (x < 1.5 * TINY)
    _assert_same(t[pos & ~odd], ours[pos & ~odd], x[pos & ~odd], "e8m0 vs torch, x > 0")
    assert (t[odd] == 2.0**-126).all()
    neg = x < 0
    t_abs = torch.from_numpy(-x[neg]).to(torch.float8_e8m0fnu).float().numpy()
    _assert_same(t[neg], t_abs, x[neg], "torch e8m0 of x<0 is that of |x|")
    assert (t[x == 0] == np.float32(TINY)).all() and np.isnan(ours[x == 0]).all()


@pytest.mark.parametrize("name", FLOATS)
def test_quantize_is_idempotent_and_monotone(name: str) -> None:
    fmt = get(name)
    x = dense_inputs(fmt, np.float32)
    x = x[np.isfinite(x)] if fmt.signed else x[np.isfinite(x) & (x > 0)]
    q = _ours(x, name)
    _assert_same(_ours(q, name), q, x, f"{name} idempotent")
    order = np.argsort(x, kind="stable")
    qs = q[order].astype(np.float64)
    assert (np.diff(qs) >= 0).all(), f"{name}: quantize is not monotone"


@pytest.mark.parametrize("name", FLOATS)
def test_nearest_error_is_at_most_half_an_ulp(name: str) -> None:
    """|q - x| <= spacing/2 for every x inside [-max, max] (spacing at the smaller of |x|, |q|,
    since a binade step doubles it); values beyond max saturate to +-max."""
    fmt = get(name)
    x = dense_inputs(fmt, np.float32).astype(np.float64)
    x = x[np.isfinite(x) & (np.abs(x) <= fmt.max) & ((x > 0) | fmt.signed)]
    x = x[np.abs(x) >= (0 if fmt.has_zero else fmt.min_normal)]
    q = _ours(x.astype(np.float32), name).astype(np.float64)
    err = np.abs(q - x.astype(np.float32).astype(np.float64))
    half_ulp = spacing(np.minimum(np.abs(x), np.abs(q)), fmt) / 2
    assert (err <= half_ulp).all()
    big = np.array([fmt.max * 1.5, -fmt.max * 4], dtype=np.float32)
    if fmt.signed:
        assert _ours(big, name).tolist() == [fmt.max, -fmt.max]


@pytest.mark.parametrize("name", FLOATS)
def test_special_values(name: str) -> None:
    """+-0 keep their sign (fnuz: +0), +-inf saturate by default, NaN stays NaN; unsigned E8M0
    gives NaN for zero and negatives."""
    fmt = get(name)
    x = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1.0])
    q = fmt.quantize(x)
    assert math.isnan(q[4]) and q[5] == 1.0
    if not fmt.signed:
        assert torch.isnan(q[[0, 1, 3]]).all() and q[2] == fmt.max
        return
    assert q[2] == fmt.max and q[3] == -fmt.max
    assert torch.signbit(q[1]) == (fmt.nan != "neg_zero") and not torch.signbit(q[0])
    q_ns = fmt.quantize(x, saturate=False)
    if fmt.inf:
        assert q_ns[2] == math.inf and q_ns[3] == -math.inf
    elif fmt.nan == "none":
        assert q_ns[2] == fmt.max and q_ns[3] == -fmt.max
    else:
        assert torch.isnan(q_ns[2:4]).all()


def test_ocp_e4m3_overflow_boundary() -> None:
    """OCP OFP8 E4M3: 464 is the midpoint between 448 (mantissa 110, even) and 480 (where the
    NaN code sits); RNE keeps the tie at 448, and anything above it overflows (NaN without
    saturation)."""
    above = float(np.nextafter(np.float32(464.0), np.float32(np.inf)))
    x = torch.tensor([464.0, above, 1e9, -above])
    assert get("e4m3").quantize(x).tolist() == [448.0, 448.0, 448.0, -448.0]
    got = get("e4m3").quantize(x, saturate=False).tolist()
    assert got[0] == 448.0 and all(math.isnan(v) for v in got[1:])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_keeps_dtype_and_shape(dtype: torch.dtype) -> None:
    x = (torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) - 11.3).to(dtype)
    q = get("e2m1").quantize(x.transpose(0, 2))
    assert q.dtype == dtype and q.shape == (4, 3, 2)
    want = torch.from_numpy(
        round_nearest_ref(x.transpose(0, 2).double().numpy(), get("e2m1"), saturate=True)
    )
    assert torch.equal(q.double(), want)
