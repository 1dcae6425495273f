"""Bit patterns: `encode(fmt, x) -> integer codes` and `decode(fmt, codes) -> float32`.

`encode` first rounds with the format's defaults (nearest-even, finite overflow saturating;
+-inf keeps its own code where the format has one), then maps each value to its code
arithmetically; `decode` looks codes up in the table built from the spec
(`FloatFormat.decode_value`), so the two are independent derivations and round-trip tests
between them mean something.
"""

from __future__ import annotations

import torch

from picojoule.errors import FormatError
from picojoule.formats.spec import FloatFormat, IntFormat, LNSFormat

__all__ = ["encode", "decode", "code_dtype"]

ElementFormat = FloatFormat | IntFormat | LNSFormat


def code_dtype(bits: int) -> torch.dtype:
    """Smallest torch integer dtype that holds unsigned codes of `bits` bits."""
    if bits <= 7:
        return torch.uint8
    return torch.int16 if bits <= 15 else torch.int32 if bits <= 31 else torch.int64


def encode(fmt: ElementFormat, x: torch.Tensor) -> torch.Tensor:
    q = fmt.quantize(x)
    if isinstance(fmt, IntFormat):
        codes = torch.remainder(q.to(torch.int64), 1 << fmt.bits)
        if torch.isnan(q).any():
            raise FormatError(f"{fmt.name}: NaN has no integer code")
        return codes.to(code_dtype(fmt.bits))
    if isinstance(fmt, LNSFormat):
        return _encode_lns(fmt, q)
    if fmt.inf:  # +-inf is representable: it keeps its code (saturation is for finite overflow)
        q = torch.where(torch.isinf(x), x.to(q.dtype), q)
    return _encode_float(fmt, q)


def _encode_float(fmt: FloatFormat, q: torch.Tensor) -> torch.Tensor:
    q = q.to(torch.float64)
    nan = torch.isnan(q)
    if nan.any() and fmt.nan == "none":
        raise FormatError(f"{fmt.name} has no NaN code; the input holds NaN")
    a = q.abs().nan_to_num(0.0, posinf=0.0)
    mant, exp = torch.frexp(a)  # a = mant * 2^exp, mant in [0.5, 1)
    e = exp.to(torch.int64) - 1
    normal = a >= fmt.min_normal
    field = torch.where(normal, e + fmt.bias, 0)
    frac = torch.where(normal, mant * 2.0 - 1.0, a / fmt.min_subnormal / (1 << fmt.mbits))
    m = torch.round(frac * (1 << fmt.mbits)).to(torch.int64)
    code = (field << fmt.mbits) | m
    nm = fmt.ebits + fmt.mbits
    if fmt.signed:
        code = code | (torch.signbit(q).to(torch.int64) << nm)
    e_all = (1 << fmt.ebits) - 1
    if fmt.inf:
        code = torch.where(
            torch.isinf(q), (e_all << fmt.mbits) | (torch.signbit(q).long() << nm), code
        )
    nan_code = {
        "ieee": (e_all << fmt.mbits) | (1 << max(fmt.mbits - 1, 0)),
        "all_ones": (1 << nm) - 1,
        "neg_zero": 1 << nm,
        "none": 0,
    }[fmt.nan]
    code = torch.where(nan, nan_code, code)
    return code.to(code_dtype(fmt.bits))


def _encode_lns(fmt: LNSFormat, q: torch.Tensor) -> torch.Tensor:
    q = q.to(torch.float64)
    if torch.isnan(q).any() or torch.isinf(q).any():
        raise FormatError(f"{fmt.name} has no NaN or inf code; the input holds one")
    step = 1 << fmt.frac_bits
    k = torch.round(torch.log2(q.abs()) * step).nan_to_num(0.0, neginf=fmt.kmin - 1)
    k = torch.where(q == 0, float(fmt.kmin - 1), k).to(torch.int64)
    mag = k & ((1 << (fmt.bits - 1)) - 1)
    return ((torch.signbit(q).to(torch.int64) << (fmt.bits - 1)) | mag).to(code_dtype(fmt.bits))


def _lns_table(fmt: LNSFormat) -> torch.Tensor:
    n = fmt.bits - 1
    codes = torch.arange(1 << fmt.bits, dtype=torch.int64)
    k = codes & ((1 << n) - 1)
    k = torch.where(k >= 1 << (n - 1), k - (1 << n), k)  # two's complement
    mag = torch.exp2(k.to(torch.float64) / (1 << fmt.frac_bits))
    mag = torch.where(k == fmt.kmin - 1, 0.0, mag)
    sign = torch.where((codes >> n) & 1 == 1, -1.0, 1.0)
    return (sign * mag).to(torch.float32)


def decode(fmt: ElementFormat, codes: torch.Tensor) -> torch.Tensor:
    if codes.is_floating_point():
        raise FormatError(f"{fmt.name}: decode takes integer codes, got {codes.dtype}")
    c = codes.to(torch.int64)
    if ((c < 0) | (c >= (1 << fmt.bits))).any():
        raise FormatError(f"{fmt.name}: codes must lie in [0, 2^{fmt.bits})")
    if isinstance(fmt, IntFormat):
        v = torch.where(fmt.signed & (c >= 1 << (fmt.bits - 1)), c - (1 << fmt.bits), c)
        if fmt.narrow and (v == fmt.qmin - 1).any():
            raise FormatError(f"{fmt.name}: code {1 << (fmt.bits - 1)} is unused in a narrow range")
        return v.to(torch.float32)
    if isinstance(fmt, LNSFormat):
        return _lns_table(fmt)[c]
    if fmt.bits <= 16:
        return torch.from_numpy(fmt.table).to(torch.float32)[c]
    return _decode_wide(fmt, c)


def _decode_wide(fmt: FloatFormat, c: torch.Tensor) -> torch.Tensor:
    """Formats over 16 bits: the spec's formula, vectorized in float64. float32 comes back
    where the format fits in it (fp32, tf32), float64 otherwise (e.g. e10m20)."""
    nm = fmt.ebits + fmt.mbits
    e_all, m_all = (1 << fmt.ebits) - 1, (1 << fmt.mbits) - 1
    sign = torch.where(fmt.signed & ((c >> nm) & 1 == 1), -1.0, 1.0).to(torch.float64)
    e = (c >> fmt.mbits) & e_all
    m = (c & m_all).to(torch.float64) / (1 << fmt.mbits)
    normal = (e > 0) | (not fmt.subnormals)
    mag = torch.where(normal, 1.0 + m, m) * torch.exp2(
        (torch.where(normal, e, 1) - fmt.bias).to(torch.float64)
    )
    v = sign * mag
    if fmt.nan == "ieee":
        v = torch.where(e == e_all, torch.where(m == 0, sign * torch.inf, torch.nan), v)
    elif fmt.nan == "all_ones":
        v = torch.where((e == e_all) & ((c & m_all) == m_all), torch.nan, v)
    elif fmt.nan == "neg_zero":
        v = torch.where(c == 1 << nm, torch.nan, v)
    fits32 = fmt.ebits <= 8 and fmt.mbits <= 23
    return v.to(torch.float32) if fits32 else v
