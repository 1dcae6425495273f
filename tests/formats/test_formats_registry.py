"""The name grammar (hypothesis-generated names), interning, and bad input everywhere."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from picojoule.errors import PicojouleError
from picojoule.formats import (
    CodebookFormat,
    FloatFormat,
    FormatError,
    IntFormat,
    LNSFormat,
    PerBlock,
    PerChannel,
    PerTensor,
    ScaledFormat,
    get,
    names,
)

_int = st.integers


@st.composite
def float_names(draw: st.DrawFn) -> str:
    e, m = draw(_int(1, 10)), draw(_int(0, 23))
    sfx = draw(st.sampled_from(["", "fn", "fnuz", "fnu"] if e >= 2 else ["fn", "fnuz", "fnu"]))
    if draw(st.booleans()):
        width = e + m + (sfx != "fnu")
        return f"float{width}_e{e}m{m}{sfx}" if sfx or e >= 2 else f"e{e}m{m}fn"
    return f"e{e}m{m}{sfx}"


@st.composite
def int_names(draw: st.DrawFn) -> str:
    bits = draw(_int(2, 32))
    return draw(st.sampled_from([f"int{bits}", f"uint{bits}", f"int{bits}_narrow"]))


@st.composite
def lns_names(draw: st.DrawFn) -> str:
    bits = draw(_int(4, 24))
    if draw(st.booleans()):
        return f"lns{bits}"
    return f"lns{bits}_f{draw(_int(0, bits - 2))}"


@st.composite
def mx_names(draw: st.DrawFn) -> str:
    el = draw(st.sampled_from(["fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4", "int8"]))
    block = draw(st.sampled_from(["", "_b16", "_b32", f"_b{draw(_int(1, 512))}"]))
    rule = draw(st.sampled_from(["", "_floor", "_ceil", "_round"]))
    return f"mx{el}{block}{rule}"


@st.composite
def vsq_names(draw: st.DrawFn) -> str:
    n, v = draw(_int(2, 16)), draw(_int(1, 256))
    u = draw(st.sampled_from(["", "u"]))
    if draw(st.booleans()):
        return f"vsq{n}{u}_v{v}"
    paper = draw(st.sampled_from(["", "_paper"]))
    return f"vsq{n}{u}_v{v}_s{draw(_int(1, 16))}{paper}"


@st.composite
def granular_names(draw: st.DrawFn) -> str:
    el = draw(st.one_of(float_names(), int_names(), lns_names()))
    g = draw(st.sampled_from(["tensor", "channel", "block", "vector"]))
    return f"{el}/{g}{draw(_int(1, 256))}" if g in ("block", "vector") else f"{el}/{g}"


VALID = st.one_of(
    float_names(),
    int_names(),
    lns_names(),
    st.builds("codebook{}".format, _int(2, 65536)),
    mx_names(),
    st.just("nvfp4"),
    vsq_names(),
    granular_names(),
)


def _strict_invalid(name: str) -> bool:
    """Grammar-shaped names that the semantic rules reject (documented in registry.py)."""
    return name.startswith("uint") and name.endswith("_narrow")


@settings(max_examples=400, deadline=None)
@given(VALID, st.booleans())
def test_every_valid_name_parses_and_its_name_reparses_to_the_same_object(
    name: str, shout: bool
) -> None:
    if _strict_invalid(name.split("/")[0]):
        with pytest.raises(FormatError, match="only signed integers have a narrow range"):
            get(name)
        return
    fmt = get(name.upper() if shout else f"  {name} ")
    assert get(fmt.name) is fmt
    assert get(fmt) is fmt
    assert get(name) is fmt
    assert fmt.bits_per_element > 0


def test_aliases_intern_to_one_object() -> None:
    same = [
        ("e4m3", "float8_e4m3fn", "e4m3fn", "E4M3"),
        ("e5m2", "float8_e5m2"),
        ("e2m1", "float4_e2m1fn", "e2m1fn"),
        ("e8m0", "float8_e8m0fnu", "e8m0fnu"),
        ("bf16", "bfloat16", "e8m7", "float16_e8m7"),
        ("fp16", "float16", "half", "e5m10"),
        ("tf32", "e8m10"),
        ("fp32", "float32", "e8m23"),
        ("lns8", "lns8_f4"),
    ]
    for group in same:
        objs = {id(get(n)) for n in group}
        assert len(objs) == 1, group
    assert get("e4m3").name == "float8_e4m3fn" and get("e5m2").name == "float8_e5m2"
    assert get("e4m3") is not get("float8_e4m3")  # IEEE-style E4M3 (with inf) is distinct


def test_grammar_families() -> None:
    f = get("e4m3")
    assert isinstance(f, FloatFormat) and (f.ebits, f.mbits, f.bias, f.inf, f.nan) == (
        4,
        3,
        7,
        False,
        "all_ones",
    )
    fz = get("e4m3fnuz")
    assert isinstance(fz, FloatFormat) and (fz.bias, fz.nan) == (8, "neg_zero")
    assert get("e3m2").nan == "none" and get("e5m2").inf  # under 8 bits, fn has no NaN
    i = get("int4_narrow")
    assert isinstance(i, IntFormat) and (i.qmin, i.qmax) == (-7, 7)
    assert isinstance(get("codebook16"), CodebookFormat) and isinstance(get("lns8"), LNSFormat)
    mx = get("mxfp4")
    assert isinstance(mx, ScaledFormat)
    assert (mx.kind, mx.block, mx.element.name, mx.scale.name, mx.scale_rule) == (
        "mx",
        32,
        "float4_e2m1fn",
        "float8_e8m0fnu",
        "floor",
    )
    assert get("mxint8").element is get("int8_narrow")
    nv = get("nvfp4")
    assert (nv.block, nv.element.name, nv.scale.name) == (16, "float4_e2m1fn", "float8_e4m3fn")
    v = get("vsq4u_v16_s4_paper")
    assert (v.element.name, v.block, v.scale_bits, v.order) == ("uint4", 16, 4, "paper")
    assert get("vsq4_v16_s4").order == "reround"
    assert isinstance(get("int8/channel").granularity, PerChannel)
    assert isinstance(get("int4/tensor").granularity, PerTensor)
    assert get("e2m1/block16").granularity == PerBlock(16) == get("e2m1/vector16").granularity


def test_names_lists_parseable_representatives() -> None:
    listed = names()
    assert len(listed) == len(set(listed)) >= 40
    for n in listed:
        assert get(get(n).name) is get(n)


@pytest.mark.parametrize(
    ("bad", "hint"),
    [
        ("e4m4x", "e4m3"),
        ("mxfp5", "mxfp4"),
        ("nvfp8", "nvfp4"),
        ("int8/chanel", "int8/channel"),
        ("fp61", "fp16"),
        ("float8_e4m3fm", "float8_e4m3fn"),
        ("vsq4_16", "vsq4_v16"),
    ],
)
def test_unknown_names_suggest_the_nearest(bad: str, hint: str) -> None:
    with pytest.raises(FormatError, match="did you mean") as err:
        get(bad)
    assert hint in str(err.value) and "picojoule formats" in str(err.value)


@pytest.mark.parametrize(
    ("bad", "msg"),
    [
        ("e0m3", "exponent bits"),
        ("e11m2", "exponent bits"),
        ("e4m24", "mantissa bits"),
        ("float4_e1m2", "try e1m2fn"),
        ("float8_e4m2", "has 7 bits, not 8"),
        ("int1", "2 to 32 bits"),
        ("int33", "2 to 32 bits"),
        ("uint4_narrow", "only signed"),
        ("lns2", "3 to 24 bits"),
        ("lns8_f7", r"\[0, 6\]"),
        ("codebook1", "2 to 65536"),
        ("mxfp4_b0", "block size must be positive"),
        ("vsq1_v16", "2 <= N <= 16"),
        ("vsq4_v0", "V >= 1"),
        ("vsq4_v16_s17", "M <= 16"),
        ("vsq4_v16_s0", "1 <= M"),
        ("vsq4_v16_paper", "add _s<M>"),
        ("int8/block0", "block size must be positive"),
        ("nvfp4/channel", "element formats"),
        ("codebook16/tensor", "element formats"),
    ],
)
def test_malformed_names_say_why(bad: str, msg: str) -> None:
    with pytest.raises(FormatError, match=msg):
        get(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefimnprstuvxz0123456789_/ ", max_size=16))
def test_any_string_gives_a_format_or_a_format_error(text: str) -> None:
    try:
        fmt = get(text)
    except FormatError as e:
        assert str(e)
    else:
        assert get(fmt.name) is fmt


@pytest.mark.parametrize("obj", [3, None, 2.5, torch.float32])
def test_non_string_names_are_refused(obj: object) -> None:
    with pytest.raises(FormatError, match="expected a format name"):
        get(obj)  # type: ignore[arg-type]


ALL = ["e4m3", "e2m1", "bf16", "e8m0", "int8", "int4_narrow", "lns8", "codebook16"]
ALL += ["mxfp4", "mxint8", "nvfp4", "vsq4_v16_s4", "vsq4u_v16", "int8/channel", "e4m3/tensor"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool])
def test_integer_tensors_are_refused(name: str, dtype: torch.dtype) -> None:
    with pytest.raises(FormatError, match="floating-point") as err:
        get(name).quantize(torch.ones(4, 32, dtype=dtype))
    assert isinstance(err.value, PicojouleError)


@pytest.mark.parametrize("name", ALL)
def test_non_tensors_are_refused(name: str) -> None:
    with pytest.raises(FormatError):
        get(name).quantize([1.0, 2.0])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(0,), (0, 32), (3, 0)])
def test_empty_tensors_pass_through(name: str, shape: tuple[int, ...]) -> None:
    x = torch.empty(shape)
    q = get(name).quantize(x)
    assert q.shape == x.shape and q.dtype == x.dtype
