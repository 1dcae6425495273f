"""Format names are a grammar, so every family member works without a table entry.

=========================================  ===================================================
name                                       meaning
=========================================  ===================================================
``fp32 tf32 bf16 fp16``                    the usual wide floats (also ``float32``, ``bfloat16``..)
``floatN_eXmY[fn|fnuz|fnu]``               ml_dtypes-canonical float; no suffix = IEEE style
``eXmY[fn|fnuz|fnu]``                      short form; without suffix OCP defaults: ``e4m3`` is
                                           ``float8_e4m3fn``, ``e5m2`` IEEE, formats under 8 bits
                                           ``fn`` (no inf, no NaN), ``e8m0`` ``fnu``
``intN uintN intN_narrow``                 integers, N in 2..32; narrow = +-(2^(N-1)-1)
``lnsB[_fF]``                              log number system, B bits, F fractional log bits
``codebookK``                              K shared values (k-means)
``mxfp8_e4m3 mxfp8_e5m2 mxfp6_e3m2``       OCP MX v1.0, 32-element blocks, E8M0 scale;
``mxfp6_e2m3 mxfp4 mxint8``                options ``_b<K>`` (block) and ``_ceil``/``_round``
``nvfp4``                                  E2M1 + E4M3 per 16 + fp32 per tensor
``vsqN[u]_vV[_sM][_paper]``                VS-Quant INT-N per V-vector; ``u`` unsigned; ``_sM``
                                           two-level with M-bit integer scales
``ELEM/tensor ELEM/channel ELEM/blockK``   any element format with an fp32 scale
=========================================  ===================================================
"""

from __future__ import annotations

import re
from functools import cache

from picojoule.errors import FormatError, did_you_mean
from picojoule.formats.scaled import PerBlock, PerChannel, PerTensor, ScaledFormat
from picojoule.formats.spec import CodebookFormat, FloatFormat, IntFormat, LNSFormat

__all__ = ["Format", "ElementFormat", "get", "names", "parse_float"]

ElementFormat = FloatFormat | IntFormat | LNSFormat
Format = ElementFormat | CodebookFormat | ScaledFormat

_WIDE = {
    "fp32": (8, 23),
    "float32": (8, 23),
    "tf32": (8, 10),
    "bf16": (8, 7),
    "bfloat16": (8, 7),
    "fp16": (5, 10),
    "float16": (5, 10),
    "half": (5, 10),
}
_WIDE_CANON = {(8, 23): "float32", (8, 10): "tf32", (8, 7): "bfloat16", (5, 10): "float16"}
_FLOAT_RE = re.compile(r"^(?:float(?P<bits>\d+)_)?e(?P<e>\d+)m(?P<m>\d+)(?P<sfx>fnuz|fnu|fn)?$")
_INT_RE = re.compile(r"^(?P<u>u?)int(?P<bits>\d+)(?P<narrow>_narrow)?$")
_LNS_RE = re.compile(r"^lns(?P<bits>\d+)(?:_f(?P<f>\d+))?$")
_CB_RE = re.compile(r"^codebook(?P<k>\d+)$")
_MX_RE = re.compile(
    r"^mx(?P<el>fp8_e4m3|fp8_e5m2|fp6_e3m2|fp6_e2m3|fp4|int8)"
    r"(?:_b(?P<block>\d+))?(?:_(?P<rule>floor|ceil|round))?$"
)
_MX_ELEMENTS = {
    "fp8_e4m3": "e4m3",
    "fp8_e5m2": "e5m2",
    "fp6_e3m2": "e3m2",
    "fp6_e2m3": "e2m3",
    "fp4": "e2m1",
    "int8": "int8_narrow",  # OCP MXINT8: 8-bit two's complement, symmetric range used here
}
_VSQ_RE = re.compile(r"^vsq(?P<bits>\d+)(?P<u>u?)_v(?P<v>\d+)(?:_s(?P<s>\d+))?(?P<paper>_paper)?$")
_GRAN_RE = re.compile(r"^(?P<el>[a-z0-9_]+)/(?P<g>tensor|channel|(?:block|vector)(?P<k>\d+))$")


def parse_float(e: int, m: int, suffix: str | None, bits: int | None = None) -> FloatFormat:
    """Build the FloatFormat for exponent/mantissa widths and an ml_dtypes suffix."""
    if not 1 <= e <= 10 or not 0 <= m <= 23:
        raise FormatError(f"e{e}m{m}: need 1 <= exponent bits <= 10 and 0 <= mantissa bits <= 23")
    signed = suffix != "fnu"
    width = int(signed) + e + m
    if bits is not None and bits != width:
        raise FormatError(
            f"float{bits}_e{e}m{m}{suffix or ''}: e{e}m{m} has {width} bits, not {bits}"
        )
    if suffix is None:
        if e < 2:
            raise FormatError(f"e{e}m{m}: IEEE style needs >= 2 exponent bits; try e{e}m{m}fn")
        fmt = dict(bias=(1 << (e - 1)) - 1, inf=True, nan="ieee")
    elif suffix == "fn":
        fmt = dict(bias=(1 << (e - 1)) - 1, inf=False, nan="all_ones" if width >= 8 else "none")
    elif suffix == "fnuz":
        fmt = dict(bias=1 << (e - 1), inf=False, nan="neg_zero")
    else:  # fnu: unsigned, no zero, no subnormals (E8M0)
        fmt = dict(bias=(1 << (e - 1)) - 1, inf=False, nan="all_ones", subnormals=False)
    name = _WIDE_CANON.get((e, m)) if suffix is None else None
    name = name or f"float{width}_e{e}m{m}{suffix or ''}"
    return FloatFormat(name=name, ebits=e, mbits=m, signed=signed, **fmt)  # type: ignore[arg-type]


def _short_suffix(e: int, m: int) -> str | None:
    """OCP defaults for short names without a suffix."""
    width = 1 + e + m
    if (e, m) == (8, 0):
        return "fnu"
    if (e, m) == (4, 3) or width < 8:
        return "fn"
    return None


@cache
def _parse(name: str) -> Format:
    if name in _WIDE:
        return parse_float(*_WIDE[name], None)
    if mt := _FLOAT_RE.match(name):
        e, m = int(mt["e"]), int(mt["m"])
        bits = int(mt["bits"]) if mt["bits"] else None
        sfx = mt["sfx"] if (mt["sfx"] or bits) else _short_suffix(e, m)
        return parse_float(e, m, sfx, bits)
    if mt := _INT_RE.match(name):
        bits, signed, narrow = int(mt["bits"]), not mt["u"], bool(mt["narrow"])
        if not 2 <= bits <= 32:
            raise FormatError(f"{name}: integer widths run from 2 to 32 bits")
        if narrow and not signed:
            raise FormatError(f"{name}: only signed integers have a narrow range")
        return IntFormat(name=name, bits=bits, signed=signed, narrow=narrow)
    if mt := _LNS_RE.match(name):
        bits = int(mt["bits"])
        if not 3 <= bits <= 24:
            raise FormatError(f"{name}: LNS widths run from 3 to 24 bits")
        # Default: 3 integer bits of log up to 8 bits (range 2^+-8), 5 beyond.
        frac = int(mt["f"]) if mt["f"] else max(0, bits - 1 - (3 if bits <= 8 else 5))
        if not 0 <= frac <= bits - 2:
            raise FormatError(f"{name}: fractional log bits must be in [0, {bits - 2}]")
        return LNSFormat(name=f"lns{bits}_f{frac}", bits=bits, frac_bits=frac, aliases=(name,))
    if mt := _CB_RE.match(name):
        k = int(mt["k"])
        if not 2 <= k <= 65536:
            raise FormatError(f"{name}: a codebook holds 2 to 65536 values")
        return CodebookFormat(name=name, k=k)
    if mt := _MX_RE.match(name):
        block = int(mt["block"] or 32)
        if block < 1:
            raise FormatError(f"{name}: block size must be positive")
        return ScaledFormat(
            name=name,
            kind="mx",
            element=get(_MX_ELEMENTS[mt["el"]]),  # type: ignore[arg-type]
            granularity=PerBlock(block),
            scale=get("e8m0"),  # type: ignore[arg-type]
            scale_rule=mt["rule"] or "floor",  # type: ignore[arg-type]
        )
    if name == "nvfp4":
        return ScaledFormat(
            name=name,
            kind="nvfp4",
            element=get("e2m1"),  # type: ignore[arg-type]
            granularity=PerBlock(16),
            scale=get("e4m3"),  # type: ignore[arg-type]
        )
    if mt := _VSQ_RE.match(name):
        bits, v = int(mt["bits"]), int(mt["v"])
        unsigned = bool(mt["u"])
        sbits = int(mt["s"]) if mt["s"] else 0
        if not 2 <= bits <= 16 or v < 1 or not 0 <= sbits <= 16 or (mt["s"] and sbits < 1):
            raise FormatError(f"{name}: need 2 <= N <= 16, V >= 1, 1 <= M <= 16")
        if mt["paper"] and not sbits:
            raise FormatError(f"{name}: _paper orders two-level scaling; add _s<M>")
        el = get(f"uint{bits}" if unsigned else f"int{bits}_narrow")
        return ScaledFormat(
            name=name,
            kind="vsq",
            element=el,  # type: ignore[arg-type]
            granularity=PerBlock(v),
            scale_bits=sbits,
            order="paper" if mt["paper"] else "reround",
        )
    if mt := _GRAN_RE.match(name):
        el = get(mt["el"])
        if not isinstance(el, FloatFormat | IntFormat | LNSFormat):
            raise FormatError(f"{name}: a granularity applies to element formats, not {el.name}")
        g = mt["g"]
        gran = PerTensor() if g == "tensor" else PerChannel() if g == "channel" else None
        if gran is None:
            k = int(mt["k"])
            if k < 1:
                raise FormatError(f"{name}: block size must be positive")
            gran = PerBlock(k)
        return ScaledFormat(name=name, kind="plain", element=el, granularity=gran)
    raise FormatError(
        f"unknown number format {name!r}{did_you_mean(name, [*names(), *_WIDE])}; "
        "`picojoule formats` lists every family"
    )


def get(name: str | Format) -> Format:
    """The format called `name` (case-insensitive); format objects pass through."""
    if not isinstance(name, str):
        if isinstance(name, FloatFormat | IntFormat | LNSFormat | CodebookFormat | ScaledFormat):
            return name
        raise FormatError(f"expected a format name, got {type(name).__name__}")
    fmt = _parse(name.strip().lower())
    return _INTERN.setdefault(fmt, fmt)  # one instance per distinct format, whatever the alias


_INTERN: dict[Format, Format] = {}


def names() -> list[str]:
    """Representative names of every family (the grammar accepts many more)."""
    return [
        "fp32", "tf32", "bf16", "fp16",
        "e5m2", "e4m3", "e4m3fnuz", "e5m2fnuz", "e3m4", "e3m2", "e2m3", "e2m1", "e8m0",
        "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
        "float6_e3m2fn", "float6_e2m3fn", "float4_e2m1fn", "float8_e8m0fnu",
        "int2", "int3", "int4", "int8", "int16", "uint4", "uint8", "int4_narrow", "int8_narrow",
        "lns8", "lns16", "codebook16", "codebook64",
        "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4", "mxint8",
        "nvfp4",
        "vsq4_v16", "vsq4u_v16", "vsq4_v16_s4", "vsq4u_v16_s4", "vsq8_v16_s4", "vsq4_v16_s4_paper",
        "int8/tensor", "int8/channel", "int4/channel", "e4m3/tensor", "e2m1/block16",
    ]  # fmt: skip
