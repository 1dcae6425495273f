"""Independent references and dense input sets for the format tests.

Nothing here calls `picojoule.formats.cast`: a float format's grid comes from its decode table
(`FloatFormat.table`, built code by code from the spec), and rounding is done by searching that
sorted grid in float64 and comparing against exact midpoints. Ties go to the neighbour whose
significand is even at the lower neighbour's spacing (IEEE 754 roundTiesToEven; for E8M0, whose
significand is always 1, that is the larger power of two, as ml_dtypes and torch do it).
"""

from __future__ import annotations

import functools
import math
import re

import ml_dtypes
import numpy as np

from picojoule.formats import FloatFormat, IntFormat

__all__ = [
    "ML_DTYPES",
    "element_names",
    "magnitudes",
    "spacing",
    "round_nearest_ref",
    "round_toward_zero_ref",
    "dense_inputs",
    "same_bits",
]

# Canonical picojoule name -> numpy dtype that ml_dtypes (or numpy) provides for it.
ML_DTYPES: dict[str, type] = {
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
    "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
    "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz,
    "float8_e4m3": ml_dtypes.float8_e4m3,
    "float8_e3m4": ml_dtypes.float8_e3m4,
    "float6_e3m2fn": ml_dtypes.float6_e3m2fn,
    "float6_e2m3fn": ml_dtypes.float6_e2m3fn,
    "float4_e2m1fn": ml_dtypes.float4_e2m1fn,
    "float8_e8m0fnu": ml_dtypes.float8_e8m0fnu,
    "bfloat16": ml_dtypes.bfloat16,
    "float16": np.float16,
}
# ml_dtypes changed casts between releases (0.7.0: sub-byte int overflow gives 0, E8M0 rounds
# fp32 subnormals to nearest); tests assert each version's documented behaviour.
ML_DTYPES_VERSION = tuple(int(p) for p in re.findall(r"\d+", ml_dtypes.__version__)[:2])


def element_names(max_bits: int = 16) -> list[str]:
    """Registry names of element formats of at most `max_bits` bits (one name per format)."""
    from picojoule.formats import LNSFormat, get, names

    seen: dict[object, str] = {}
    for n in names():
        f = get(n)
        if isinstance(f, FloatFormat | IntFormat | LNSFormat) and f.bits <= max_bits:
            seen.setdefault(f, n)
    return list(seen.values())


@functools.cache
def magnitudes(fmt: FloatFormat) -> np.ndarray:
    """Sorted distinct finite non-negative values of `fmt` (float64), from its decode table."""
    t = fmt.table
    mags = np.unique(np.abs(t[np.isfinite(t)]))
    mags.flags.writeable = False
    return mags


def spacing(v: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Grid spacing 2^(max(e(v), emin) - mbits) at the non-negative values `v` (float64)."""
    e = np.where(v > 0, np.floor(np.log2(np.where(v > 0, v, 1.0))), fmt.emin)
    return np.ldexp(1.0, (np.maximum(e, fmt.emin) - fmt.mbits).astype(np.int64))


def _neighbours(a: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): grid values with lo <= a <= hi for finite a >= 0; above max, hi is the value
    the grid would have next if the exponent range were unbounded (IEEE overflow rule)."""
    mags = magnitudes(fmt)
    ext = np.append(mags, mags[-1] + spacing(mags[-1:], fmt))
    idx = np.searchsorted(ext, a, side="left").clip(0, len(ext) - 1)
    hi = ext[idx]
    lo = np.where(hi == a, hi, ext[(idx - 1).clip(0)])
    beyond = a > ext[-1]
    return np.where(beyond, ext[-1], lo), np.where(beyond, np.inf, hi)


def _finish(r: np.ndarray, x: np.ndarray, fmt: FloatFormat, saturate: bool) -> np.ndarray:
    """Overflow, sign, NaN, zero and unsigned handling shared by the references."""
    over = r > fmt.max
    if saturate or (not fmt.inf and fmt.nan == "none"):
        r = np.where(over, fmt.max, r)
    else:
        r = np.where(over, np.inf if fmt.inf else np.nan, r)
    r = np.copysign(r, x)
    if fmt.nan == "neg_zero":
        r = np.where(r == 0, 0.0, r)
    if not fmt.signed:
        r = np.where(x > 0, r, np.nan)
    if not fmt.has_zero:
        r = np.where(np.abs(r) < fmt.min_normal, fmt.min_normal, r)
    return np.where(np.isnan(x), np.nan, r)


def round_nearest_ref(x: np.ndarray, fmt: FloatFormat, *, saturate: bool) -> np.ndarray:
    """Round-to-nearest-even of float32/float64 `x` onto `fmt`, in float64."""
    x = x.astype(np.float64)
    a = np.nan_to_num(np.abs(x), nan=0.0, posinf=np.finfo(np.float64).max)
    lo, hi = _neighbours(a, fmt)
    mid = (lo + hi) / 2  # exact: lo and hi have at most mbits + 1 significant bits
    lo_even = np.fmod(np.round(lo / spacing(lo, fmt)), 2) == 0
    r = np.where(a < mid, lo, np.where(a > mid, hi, np.where(lo_even, lo, hi)))
    r = np.where(np.isinf(x), np.inf, r)
    return _finish(r, x, fmt, saturate)


def round_toward_zero_ref(x: np.ndarray, fmt: FloatFormat, *, saturate: bool) -> np.ndarray:
    """Truncation of `x` onto `fmt` (largest grid magnitude <= |x|), in float64.

    IEEE 754 section 7.4: roundTowardZero carries every finite overflow to max; only an
    infinite input stays infinite (then `_finish` applies the format's inf/NaN rule)."""
    x = x.astype(np.float64)
    a = np.nan_to_num(np.abs(x), nan=0.0, posinf=np.finfo(np.float64).max)
    lo, hi = _neighbours(a, fmt)
    r = np.where(hi == a, hi, lo)
    r = np.where(a >= fmt.max, fmt.max, r)
    r = np.where(np.isinf(x), np.inf, r)
    return _finish(r, x, fmt, saturate)


def _float32_specials() -> np.ndarray:
    f = np.finfo(np.float32)
    v = [0.0, f.tiny, f.max, f.smallest_subnormal, np.inf, np.nan, 1.0, 2.0**-126, 2.0**-127]
    v += [1.5 * 2.0**-127, 1.25 * 2.0**-127, 1.75 * 2.0**-127, 2.0**127, 1.5 * 2.0**127]
    arr = np.array(v, dtype=np.float32)
    return np.concatenate([arr, -arr])


def dense_inputs(fmt: FloatFormat, dtype: type = np.float32, *, seed: int = 0) -> np.ndarray:
    """At least 1M inputs of `dtype` that hit every rounding decision of `fmt`.

    Every code value, every tie (midpoint between adjacent values, including the overflow
    midpoint max + spacing/2 and the underflow midpoint min_subnormal/2) with its neighbours one
    ulp (of `dtype`) to each side, the same for the code values, +-0, +-inf, NaN, values far
    beyond max, float32 specials, a strided walk over every float32 bit pattern (so every
    binade, subnormals included) and random values around the format's range."""
    mags = magnitudes(fmt)
    ext = np.append(mags, mags[-1] + spacing(mags[-1:], fmt))
    mids = (ext[1:] + ext[:-1]) / 2
    core = np.concatenate([mags, mids, [fmt.max * 2, fmt.max * 1e3]]).astype(dtype)
    assert np.all(core[: len(mags) + len(mids)].astype(np.float64) == np.append(mags, mids)), (
        "midpoints must be exact in the input dtype"
    )
    near = [core, np.nextafter(core, dtype(np.inf)), np.nextafter(core, dtype(-np.inf))]
    core = np.concatenate(near)
    walk = np.arange(0, 1 << 32, 4093, dtype=np.uint64).astype(np.uint32).view(np.float32)
    rng = np.random.default_rng(seed)
    scale = np.exp2(rng.uniform(math.log2(fmt.min_subnormal) - 4, math.log2(fmt.max) + 2, 200_000))
    rand = scale * rng.choice([-1.0, 1.0], size=scale.size)
    parts = [core, -core, _float32_specials(), walk, rand]
    return np.concatenate([p.astype(dtype) for p in parts])


def same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: identical bit patterns (so -0 != +0), or both NaN (payloads ignored)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    nan = np.isnan(a64) & np.isnan(b64)
    return nan | (a64.view(np.uint64) == b64.view(np.uint64))
