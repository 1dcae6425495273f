"""Block-scaled formats against references written here from the specs, block by block in
numpy float32 in the arithmetic order that scaled.py documents:

- MX (OCP Microscaling Formats v1.0, section 6.3): X = 2^(floor(log2 amax) - emax_elem),
  clamped to [-127, 127] (amax = 0: 2^-127); P = Q_sat(V / X); result P * X. MXINT8's element
  is 1.6 fixed point (emax_elem 0, P = q * 2^-6): the clamp applies before the implicit 2^-6.
  scale_rule "ceil": the smallest power of two with amax / X <= max_elem (cuBLAS RCEIL);
  "round": amax rounded to the nearest power of two (ties up) before the floor.
- NVFP4: s_t = amax_tensor / (6 * 448); blk = E4M3(amax_blk / (6 * s_t));
  q = E2M1(x / (blk * s_t)); y = (q * blk) * s_t.
- VS-Quant (Dai et al., MLSys 2021, Eq. 7): s = amax_vec / qmax; two-level s_q =
  clamp(round(s / gamma), 1, 2^M - 1), gamma = max(s) / (2^M - 1) per row; elements rounded
  with s_q * gamma ("reround") or s ("paper"); y = (q * s_q) * gamma.

Element rounding uses fmtref's table search (floats) or np.rint + clip (integers), never
picojoule's cast. Ragged last blocks use their real elements only; a block with NaN/inf is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from fmtref import round_nearest_ref

from picojoule.errors import ShapeError
from picojoule.formats import FloatFormat, FormatError, IntFormat, ScaledFormat, get

F32 = np.float32
MX_NAMES = ["mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8"]


def q_elem(t: np.ndarray, el) -> np.ndarray:
    """Saturating round-half-even onto the element grid, float32 in and out."""
    if isinstance(el, IntFormat):
        return np.clip(np.rint(t.astype(np.float64)), el.qmin, el.qmax).astype(F32)
    return round_nearest_ref(t, el, saturate=True).astype(F32)


def _blocks(row: np.ndarray, size: int) -> Iterator[tuple[int, np.ndarray]]:
    for j in range(0, row.size, size):
        yield j, row[j : j + size]


def mx_ref(x: np.ndarray, el, block: int, rule: str) -> np.ndarray:
    # integer elements: q = P * 2^frac with P the spec's fixed-point element (emax 0)
    emax = el.emax if isinstance(el, FloatFormat) else 0
    frac = 0 if isinstance(el, FloatFormat) else math.floor(math.log2(el.qmax))
    top = el.max / 2.0**frac  # the element's max as the spec's value
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        for j, b in _blocks(x[r], block):
            if not np.isfinite(b).all():
                out[r, j : j + b.size] = np.nan
                continue
            amax = float(np.max(np.abs(b)))
            if amax == 0:
                e = -127
            else:
                floor_log2 = math.frexp(amax)[1] - 1  # exact for every float32
                e = floor_log2 - emax
                if rule == "ceil":  # smallest X = 2^e with amax / X <= max (exact in float64)
                    while amax > top * 2.0**e:
                        e += 1
                elif rule == "round" and amax >= 1.5 * 2.0**floor_log2:
                    e += 1
            s = F32(2.0 ** (min(max(e, -127), 127) - frac))
            out[r, j : j + b.size] = q_elem(b / s, el) * s
    return out


def nvfp4_ref(x: np.ndarray, amax_t: float | None = None) -> np.ndarray:
    e2m1, e4m3 = get("e2m1"), get("e4m3")
    a = x.ravel()
    m_t = F32(np.max(np.abs(a))) if amax_t is None else F32(amax_t)
    if not np.isfinite(a).all() and amax_t is None:
        return np.full_like(x, np.nan)  # the per-tensor scale is NaN
    s_t = m_t / F32(6.0 * 448.0)
    s_t = F32(1.0) if s_t == 0 else s_t
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        for j, b in _blocks(x[r], 16):
            amax_b = F32(np.max(np.abs(b)))
            blk = q_elem(np.array([amax_b / (F32(6.0) * s_t)], dtype=F32), e4m3)[0]
            eff = blk * s_t
            d = F32(1.0) if eff == 0 else eff
            q = q_elem(b / d, e2m1)
            out[r, j : j + b.size] = (q * blk) * s_t
    return out


def vsq_ref(x: np.ndarray, fmt: ScaledFormat, coarse: str = "row") -> np.ndarray:
    el, v = fmt.element, fmt.block
    qmax = F32(el.qmax)
    out = np.empty_like(x)
    amax = [[F32(np.max(np.abs(b))) for _, b in _blocks(row, v)] for row in x]
    levels = F32((1 << fmt.scale_bits) - 1)
    all_max = F32(np.max(amax))
    for r in range(x.shape[0]):
        gamma = None
        if fmt.scale_bits:
            mt = F32(np.max(amax[r])) if coarse == "row" else all_max
            gamma = (mt / qmax) / levels
            gamma = F32(1.0) if gamma == 0 else gamma
        for i, (j, b) in enumerate(_blocks(x[r], v)):
            s = amax[r][i] / qmax
            if not fmt.scale_bits:
                d = F32(1.0) if s == 0 else s
                out[r, j : j + b.size] = q_elem(b / d, el) * s
                continue
            s_q = F32(np.clip(np.rint(s / gamma), 1, levels))
            unquantized = F32(1.0) if s == 0 else s
            d = s_q * gamma if fmt.order == "reround" else unquantized
            out[r, j : j + b.size] = (q_elem(b / d, el) * s_q) * gamma
    return out


def plain_ref(x: np.ndarray, fmt: ScaledFormat) -> np.ndarray:
    """fp32 scale = amax / element max; blocks, rows or the whole tensor."""
    el = fmt.element
    size = fmt.block or x.shape[1]
    if fmt.granularity.__class__.__name__ == "PerTensor":
        a = F32(np.max(np.abs(x))) / F32(el.max)
        a = F32(1.0) if a == 0 else a
        return q_elem(x / a, el) * a
    out = np.empty_like(x)
    for r in range(x.shape[0]):
        for j, b in _blocks(x[r], size):
            s = F32(np.max(np.abs(b))) / F32(el.max)
            s = F32(1.0) if s == 0 else s
            out[r, j : j + b.size] = q_elem(b / s, el) * s
    return out


def sample(rows: int, k: int, seed: int = 0) -> np.ndarray:
    """Gaussian rows with heavy outliers, an all-zero stretch, tiny (subnormal-range) values
    and a row spanning many binades."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k)).astype(F32)
    x[rng.random((rows, k)) < 0.01] *= F32(1000.0)
    x[0, : min(k, 40)] = 0.0
    if rows > 1:
        x[1] = np.exp2(rng.uniform(-140, 60, k)).astype(F32) * rng.choice([-1, 1], k)
    if rows > 2:
        x[2, ::3] = F32(1e-40)
    return x


def _ours(x: np.ndarray, name: str, **kw) -> np.ndarray:
    return get(name).quantize(torch.from_numpy(x), **kw).numpy()


def _same(got: np.ndarray, want: np.ndarray) -> bool:
    return bool(np.array_equal(got, want, equal_nan=True))


@pytest.mark.parametrize("rule", ["floor", "ceil", "round"])
@pytest.mark.parametrize("name", MX_NAMES)
def test_mx_matches_spec_reference(name: str, rule: str) -> None:
    """k = 100: three full blocks and a ragged one of 4."""
    full = name if rule == "floor" else f"{name}_{rule}"
    fmt = get(full)
    x = sample(6, 100)
    assert _same(_ours(x, full), mx_ref(x, fmt.element, 32, rule))


@pytest.mark.parametrize("name", ["mxfp4", "mxint8"])
def test_mx_nan_and_inf_poison_only_their_block(name: str) -> None:
    x = sample(2, 96)
    x[0, 5], x[1, 70] = np.nan, -np.inf
    got = _ours(x, name)
    assert np.isnan(got[0, :32]).all() and np.isnan(got[1, 64:]).all()
    assert not np.isnan(got[0, 32:]).any() and not np.isnan(got[1, :64]).any()
    assert _same(got, mx_ref(x, get(name).element, 32, "floor"))


def test_mx_scale_rules_hand_examples() -> None:
    """MXFP4 (E2M1: max 6, emax 2). Block A, amax 7: floor gives X = 2^0 and 7 saturates to 6;
    ceil and round give X = 2 (7/2 = 3.5 ties to 4). Block B, amax 6 = 1.5 * 4: floor and ceil
    keep X = 1; round goes to X = 2, so 0.6 -> 0.3 -> 0.5 -> 1.0."""
    x = np.zeros((2, 32), dtype=F32)
    x[0, :4] = [7.0, 1.25, 0.3, -2.6]
    x[1, :3] = [6.0, 0.6, -1.1]
    want = {
        "floor": ([6.0, 1.0, 0.5, -3.0], [6.0, 0.5, -1.0]),
        "ceil": ([8.0, 1.0, 0.0, -3.0], [6.0, 0.5, -1.0]),
        "round": ([8.0, 1.0, 0.0, -3.0], [6.0, 1.0, -1.0]),
    }
    for rule, (a, b) in want.items():
        got = _ours(x, f"mxfp4_{rule}")
        assert got[0, :4].tolist() == a and got[1, :3].tolist() == b, rule
        assert not got[:, 4:].any()


def test_mxint8_hand_example() -> None:
    """MXINT8: X = 2^(floor(log2 amax) - 6). amax 100: X = 1; amax 130: X = 2, and the
    elements' ties round to even (3/2 = 1.5 -> 2, 1/2 = 0.5 -> 0)."""
    x = np.zeros((2, 32), dtype=F32)
    x[0, :3] = [100.0, 1.3, -0.7]
    x[1, :3] = [130.0, 3.0, 1.0]
    got = _ours(x, "mxint8")
    assert got[0, :3].tolist() == [100.0, 1.0, -1.0]
    assert got[1, :3].tolist() == [130.0, 4.0, 0.0]


def test_mx_zero_block_tiny_block_and_block_option() -> None:
    x = np.zeros((1, 64), dtype=F32)
    x[0, 32:] = F32(3e-39)  # subnormal amax: X clamps at 2^-127
    got = _ours(x, "mxfp8_e4m3")
    assert not got[0, :32].any() and not np.signbit(got[0, :32]).any()
    assert _same(got, mx_ref(x, get("e4m3"), 32, "floor"))
    y = sample(3, 50)
    assert _same(_ours(y, "mxfp4_b16"), mx_ref(y, get("e2m1"), 16, "floor"))


def ocp_mx(v: np.ndarray, name: str) -> np.ndarray:
    """OCP MX v1.0 section 6.3 for one block `v` (float64, finite), written from the spec: the
    E8M0 X = clamp(floor(log2 amax) - emax_elem, -127, 127), P = Q_sat(V / 2^X) on the
    element's own grid, result P * 2^X. MXINT8 elements are 1.6 fixed point: emax_elem 0 and
    P = clip(rint(V / 2^X * 64), -127, 127) / 64."""
    amax = float(np.max(np.abs(v)))
    is_int = name.startswith("mxint8")
    emax_elem = 0 if is_int else get(name).element.emax
    shared = -127 if amax == 0 else math.floor(math.log2(amax)) - emax_elem
    if amax and 2.0 ** (shared + emax_elem) > amax:  # log2 rounded up across a power of two
        shared -= 1
    shared = min(max(shared, -127), 127)
    t = v / 2.0**shared  # exact: a power-of-two scaling in float64
    if is_int:
        p = np.clip(np.rint(t * 64.0), -127, 127) / 64.0
    else:
        p = round_nearest_ref(t, get(name).element, saturate=True)
    return p * 2.0**shared


def _ocp_rows(x: np.ndarray, name: str) -> np.ndarray:
    out = np.empty(x.shape, dtype=np.float64)
    for r in range(x.shape[0]):
        for j, b in _blocks(x[r].astype(np.float64), 32):
            out[r, j : j + b.size] = ocp_mx(b, name)
    return out


def _tiny_blocks(dtype) -> np.ndarray:
    """One row per block amax, microxcaling-style: a block's largest value and a spread of
    smaller ones 1 to 12 binades below it (x[i] = amax * 0.75^i, alternating sign)."""
    amaxes = [2.0**-121, 2.0**-122, 2.0**-125, 2.0**-127, 2.0**-130, 3e-39, 2.0**-140, 1e-45]
    steps = 0.75 ** np.arange(32) * np.where(np.arange(32) % 2, -1.0, 1.0)
    return np.stack([np.asarray(a * steps, dtype=dtype) for a in amaxes])


@pytest.mark.parametrize("name", MX_NAMES)
def test_mx_tiny_blocks_match_the_spec(name: str) -> None:
    """Block amax 2^-121 down to the smallest fp32 subnormal: the E8M0 exponent clamps at -127,
    and for MXINT8 the element's implicit 2^-6 still applies below that (effective 2^-133)."""
    x = _tiny_blocks(np.float32)
    got = _ours(x, name).astype(np.float64)
    assert _same(got, _ocp_rows(x, name))


def test_mxint8_tiny_block_keeps_its_six_fraction_bits() -> None:
    """amax 2^-130: X clamps to 2^-127 and q = V / 2^-127 * 64 = 8 * 1.5 = 12 exactly; clamping
    the effective exponent (X - 6) to -127 instead rounded V / 2^-127 = 0.1875 to 0."""
    x = np.zeros((1, 32), dtype=F32)
    x[0, :3] = [F32(2.0**-130), F32(1.5 * 2.0**-130), F32(-(2.0**-133))]
    got = _ours(x, "mxint8")
    assert got[0, :3].tolist() == [2.0**-130, 1.5 * 2.0**-130, -(2.0**-133)]
    assert not got[0, 3:].any()


@pytest.mark.parametrize("name", MX_NAMES)
def test_mx_huge_and_zero_blocks_match_the_spec(name: str) -> None:
    """fp32 blocks up to max finite, float64 blocks past 2^127 (X clamps at 127 and the
    elements saturate), an all-zero block."""
    big32 = np.finfo(np.float32).max * 0.75 ** np.arange(32)
    x32 = np.stack([big32, 2.0**100 * 0.5 ** np.arange(32), np.zeros(32)]).astype(F32)
    assert _same(_ours(x32, name).astype(np.float64), _ocp_rows(x32, name))
    x64 = np.stack([2.0**140 * 0.75 ** np.arange(32), 2.0**-140 * 0.75 ** np.arange(32)])
    assert _same(_ours(x64, name), _ocp_rows(x64, name))


@pytest.mark.parametrize("name", [*MX_NAMES, "mxfp4_ceil", "mxint8_b16"])
def test_mx_refuses_saturate_false(name: str) -> None:
    """OCP MX v1.0 elements always saturate: with the floor rule a block's top value may exceed
    the element max (E4M3: amax / X up to 512 > 448), and saturate=False would turn finite,
    in-range data into NaN."""
    x = torch.full((1, 32), 500.0)
    with pytest.raises(FormatError, match="always saturate"):
        get(name).quantize(x, saturate=False)
    assert torch.isfinite(get(name).quantize(x)).all()


def test_nvfp4_matches_reference() -> None:
    x = sample(5, 70)  # ragged: 4 blocks of 16 and one of 6
    assert _same(_ours(x, "nvfp4"), nvfp4_ref(x))
    assert _same(_ours(x, "nvfp4", amax=3.0), nvfp4_ref(x, 3.0))  # static amax: blocks clip


def test_nvfp4_hand_example() -> None:
    """amax 2688 = 6 * 448 makes s_t = 1. Block 1: blk = E4M3(448) = 448, 100/448 -> 0.
    Block 2: blk = 0.5, so 3 -> 6 * 0.5, 1 -> 2 * 0.5, -0.2 -> -0.4 -> -0.5 * 0.5.
    Block 3: 0.7 / 6 = 0.1167 -> E4M3 15/128; 0.7 / (15/128) = 5.97 -> 6 -> 0.703125."""
    x = np.zeros((1, 48), dtype=F32)
    x[0, :2] = [2688.0, 100.0]
    x[0, 16:19] = [3.0, 1.0, -0.2]
    x[0, 32] = 0.7
    got = _ours(x, "nvfp4")[0]
    assert got[:2].tolist() == [2688.0, 0.0]
    assert got[16:19].tolist() == [3.0, 1.0, -0.25]
    assert got[32] == 0.703125 and not got[33:].any()


def test_nvfp4_non_finite_poisons_the_tensor() -> None:
    """NaN or inf anywhere makes the per-tensor scale NaN, hence every element."""
    x = sample(2, 32)
    x[1, 3] = np.inf
    assert np.isnan(_ours(x, "nvfp4")).all()


VSQ = ["vsq4_v16", "vsq4u_v16", "vsq8_v16", "vsq4_v16_s4", "vsq4u_v16_s4", "vsq8_v16_s4"]


@pytest.mark.parametrize("name", [*VSQ, "vsq4_v16_s4_paper", "vsq4u_v16_s4_paper", "vsq3_v8_s6"])
def test_vsq_matches_reference(name: str) -> None:
    x = sample(4, 100)  # ragged last vector of 4
    fmt = get(name)
    assert _same(_ours(x, name), vsq_ref(x, fmt))
    if fmt.scale_bits:
        assert _same(_ours(x, name, coarse="tensor"), vsq_ref(x, fmt, coarse="tensor"))


def test_vsq_hand_examples() -> None:
    """INT4 (+-7). Single level: s = amax / 7. Two level (M = 4, 15 levels): amaxes 13.125 and
    2.1 give s = 1.875 and 0.3, gamma = 1.875 / 15 = 0.125, s_q = 15 and round(2.4) = 2.
    reround divides by s_q * gamma = 0.25, paper by s = 0.3; both rescale by s_q * gamma."""
    x = np.zeros((2, 32), dtype=F32)
    x[0, :4] = [7.0, 3.2, -1.0, 0.5]
    x[0, 16:19] = [14.0, 3.0, 5.0]
    assert _ours(x, "vsq4_v16")[0, [0, 1, 2, 3, 16, 17, 18]].tolist() == [7, 3, -1, 0, 14, 4, 4]
    x[1, :2] = [13.125, 1.0]
    x[1, 16:19] = [2.1, -1.0, 0.6]
    cols = [0, 1, 16, 17, 18]
    assert _ours(x, "vsq4_v16_s4")[1, cols].tolist() == [13.125, 1.875, 1.75, -1.0, 0.5]
    assert _ours(x, "vsq4_v16_s4_paper")[1, cols].tolist() == [13.125, 1.875, 1.75, -0.75, 0.5]


def test_vsq_unsigned_clips_negatives_and_static_amax() -> None:
    x = sample(3, 48)
    got = _ours(x, "vsq4u_v16")
    assert (got[x <= 0] == 0).all() and (got >= 0).all()
    fmt = get("vsq4_v16_s4")
    row_amax = np.abs(x).max(axis=1) / 2  # a calibrated amax below the data: scales clip
    ours = fmt.quantize(torch.from_numpy(x), amax=torch.from_numpy(row_amax)).numpy()
    levels, qmax = F32(15), F32(7)
    want = np.empty_like(x)
    for r in range(3):
        gamma = (F32(row_amax[r]) / qmax) / levels
        for j, b in _blocks(x[r], 16):
            s_q = F32(np.clip(np.rint((F32(np.max(np.abs(b))) / qmax) / gamma), 1, levels))
            want[r, j : j + 16] = (q_elem(b / (s_q * gamma), fmt.element) * s_q) * gamma
    assert _same(ours, want)


@pytest.mark.parametrize("name", ["int8/channel", "int4/channel", "e4m3/tensor", "e2m1/block16"])
def test_plain_granularities_match_reference(name: str) -> None:
    x = sample(5, 70)
    assert _same(_ours(x, name), plain_ref(x, get(name)))


def test_plain_static_amax() -> None:
    x = sample(3, 20)
    fmt = get("int8/channel")
    amax = np.array([1.0, 2.0, 0.0], dtype=F32)
    got = fmt.quantize(torch.from_numpy(x), amax=torch.from_numpy(amax)).numpy()
    s = np.where(amax == 0, F32(1.0), amax / F32(127))[:, None]
    assert _same(got, q_elem(x / s, get("int8")) * s)
    with pytest.raises(ShapeError, match="2 values for 3 rows"):
        fmt.quantize(torch.from_numpy(x), amax=torch.ones(2))
    with pytest.raises(FormatError, match="block scales come from the data"):
        get("mxfp4").quantize(torch.from_numpy(x), amax=1.0)


@pytest.mark.parametrize("name", ["mxfp4", "nvfp4", "int8/channel", "vsq4_v16_s4"])
def test_long_rows_and_many_rows_take_the_chunked_path(name: str) -> None:
    """One row longer than a cache chunk (2^16), and many short rows over several chunks."""
    rng = np.random.default_rng(3)
    long_row = (rng.standard_normal((1, 70_001)) * 3).astype(F32)
    many = (rng.standard_normal((1500, 48)) * 3).astype(F32)  # 72,000 elements
    fmt = get(name)
    for x in (long_row, many):
        ref = {
            "mx": lambda x: mx_ref(x, fmt.element, 32, "floor"),
            "nvfp4": nvfp4_ref,
            "plain": lambda x: plain_ref(x, fmt),
            "vsq": lambda x: vsq_ref(x, fmt),
        }[fmt.kind]
        assert _same(_ours(x, name), ref(x))


SHAPED = ["mxfp4", "nvfp4", "vsq4_v16_s4", "int8/channel", "e4m3/tensor"]


@pytest.mark.parametrize("name", SHAPED)
def test_shapes_dtypes_and_leading_dims(name: str) -> None:
    """Leading dims are rows; 1-d inputs work; the dtype is kept; empty stays empty."""
    fmt = get(name)
    x = torch.from_numpy(sample(6, 40)).reshape(2, 3, 40)
    got = fmt.quantize(x)
    assert got.shape == x.shape
    assert torch.equal(got.reshape(6, 40), fmt.quantize(x.reshape(6, 40)))
    if name not in ("nvfp4", "e4m3/tensor"):  # row-local scales: a 1-d input is one row
        assert torch.equal(fmt.quantize(x[1, 2]), got[1, 2])
    assert torch.equal(fmt.quantize(x.transpose(0, 1)), got.transpose(0, 1))
    assert fmt.quantize(x.double()).dtype == torch.float64
    assert fmt.quantize(x.bfloat16()).dtype == torch.bfloat16
    assert fmt.quantize(torch.empty(0, 32)).shape == (0, 32)


@pytest.mark.parametrize("name", SHAPED)
def test_zero_dim_tensor_is_one_element_row(name: str) -> None:
    one = get(name).quantize(torch.tensor(2.5))
    assert one.shape == () and one.item() == get(name).quantize(torch.tensor([2.5])).item()


def test_mx_stochastic_rounding_is_unbiased() -> None:
    """The block scale is deterministic (amax 6 is on the grid), so SR of the elements is
    unbiased: 0.3 sits between 0 and 0.5 of MXFP4 at X = 1."""
    x = torch.zeros(1 << 14, 32)
    x[:, 0], x[:, 1] = 6.0, 0.3
    q = get("mxfp4").quantize(x, rounding="stochastic", generator=torch.Generator().manual_seed(0))
    assert (q[:, 0] == 6.0).all() and set(q[:, 1].unique().tolist()) == {0.0, 0.5}
    stderr = 0.5 * math.sqrt(0.6 * 0.4 / x.shape[0])
    assert abs(q[:, 1].double().mean().item() - 0.3) <= 5 * stderr


BITS = {
    "mxfp4": 4.25,
    "mxfp6_e3m2": 6.25,
    "mxfp6_e2m3": 6.25,
    "mxfp8_e4m3": 8.25,
    "mxfp8_e5m2": 8.25,
    "mxint8": 8.25,
    "mxfp4_b16": 4.5,
    "nvfp4": 4.5,
    "vsq4_v16_s4": 4.25,
    "vsq4u_v16_s4": 4.25,
    "vsq8_v16_s4": 8.25,
    "vsq4_v16": 6.0,
    "e2m1/block16": 6.0,
    "int8/channel": 8.0,
    "e4m3/tensor": 8.0,
    "e4m3": 8.0,
    "bf16": 16.0,
    "int4": 4.0,
    "lns8": 8.0,
    "codebook16": 4.0,
}


@pytest.mark.parametrize(("name", "bits"), list(BITS.items()))
def test_bits_per_element(name: str, bits: float) -> None:
    assert get(name).bits_per_element == bits


@pytest.mark.parametrize("shape", [(4, 96), (3, 100), (1, 7), (5,)])
def test_storage_bits_closed_forms(shape: tuple[int, ...]) -> None:
    """Elements at their width, one scale per (ragged) block, per row or per tensor."""
    k = shape[-1]
    rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
    n = rows * k
    want = {
        "mxfp4": n * 4 + rows * math.ceil(k / 32) * 8,
        "mxint8": n * 8 + rows * math.ceil(k / 32) * 8,
        "nvfp4": n * 4 + rows * math.ceil(k / 16) * 8 + 32,
        "vsq4_v16_s4": n * 4 + rows * math.ceil(k / 16) * 4 + rows * 32,
        "vsq4_v16": n * 4 + rows * math.ceil(k / 16) * 32,
        "e2m1/block16": n * 4 + rows * math.ceil(k / 16) * 32,
        "int8/channel": n * 8 + rows * 32,
        "e4m3/tensor": n * 8 + 32,
    }
    for name, bits in want.items():
        assert get(name).storage_bits(shape) == bits, name
    big = (4096, 4096)  # amortized: storage / n -> bits_per_element for block formats
    for name in ("mxfp4", "vsq4_v16_s4", "nvfp4"):
        per = get(name).storage_bits(big) / math.prod(big)
        assert per == pytest.approx(get(name).bits_per_element, abs=1e-2)
