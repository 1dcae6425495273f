"""The format-energy model: fit on the anchors, monotone in width, every format family."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from picojoule.energy import calibrate, mac_energy, op_energy
from picojoule.energy.arith import STATED_FIT_ERROR
from picojoule.errors import ConfigError, FormatError


def test_model_hits_every_anchor_within_its_stated_error() -> None:
    cal = calibrate()
    assert len(cal.anchors) == 10  # 9 Horowitz rows + Dally's HFMA as a check
    for anchor in cal.anchors:
        assert abs(anchor.error) <= STATED_FIT_ERROR, anchor
    assert cal.max_abs_error == pytest.approx(0.042, abs=0.001)  # the documented figure


def test_fitted_primitives_have_the_stated_shapes() -> None:
    cal = calibrate()
    assert cal.int_mul(16, 16) == pytest.approx(4 * cal.int_mul(8, 8))  # multiplier ~ bits^2
    assert cal.int_add(32) - cal.int_add(16) == pytest.approx(cal.int_add(16) - cal.int_add(0))
    assert cal.k_fmul_pj > 0 and cal.k_fadd_pj > 0


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(min_value=2, max_value=15))
def test_integer_mac_is_monotone_in_width(bits: int) -> None:
    assert mac_energy(f"int{bits}").energy_pj < mac_energy(f"int{bits + 1}").energy_pj


@settings(max_examples=60, deadline=None)
@given(e=st.integers(min_value=2, max_value=7), m=st.integers(min_value=0, max_value=9))
def test_float_mac_is_monotone_in_mantissa_and_exponent(e: int, m: int) -> None:
    here = mac_energy(f"e{e}m{m}fn").energy_pj
    assert here < mac_energy(f"e{e}m{m + 1}fn").energy_pj
    assert here <= mac_energy(f"e{e + 1}m{m}fn").energy_pj


@pytest.mark.parametrize(
    "ladder",
    [
        ("e2m1", "e3m2", "e4m3", "fp16", "fp32"),
        ("mxfp4", "mxfp6_e2m3", "mxfp8_e4m3"),
        ("vsq2_v16_s4", "vsq4_v16_s4", "vsq8_v16_s4"),
        ("int4/channel", "int8/channel"),
    ],
)
def test_format_ladders_grow_with_width(ladder: tuple[str, ...]) -> None:
    energies = [mac_energy(f).energy_pj for f in ladder]
    assert energies == sorted(energies)


@pytest.mark.parametrize(
    "fmt",
    ["e2m1", "vsq4_v16_s4", "lns8", "nvfp4", "mxfp4", "mxint8", "codebook16", "int8/channel",
     "e2m1/block16", "tf32", "bf16", "uint4"],
)  # fmt: skip
def test_every_family_has_a_breakdown_that_adds_up(fmt: str) -> None:
    result = mac_energy(fmt)
    assert result.energy_pj > 0
    assert sum(result.breakdown.values()) == pytest.approx(result.energy_pj, rel=1e-12)
    assert all(v >= 0 for v in result.breakdown.values())
    assert any(n.startswith("accumulate:") for n in result.notes)


def test_int8_is_a_horowitz_multiply_plus_a_vsquant_width_add() -> None:
    cal = calibrate()
    r = mac_energy("int8", reduction=4096)
    # 2N + log2(K) = 16 + 12 = 28-bit exact accumulator
    assert r.breakdown == {
        "multiply: significand multiply": cal.int_mul(8, 8),
        "accumulate: integer add": cal.int_add(28),
    }
    assert "exact 28-bit" in r.notes[-1]


def test_forced_fp16_accumulator_is_the_fma_model() -> None:
    fma = op_energy("fma", "fp16", table=None)
    assert fma.energy_pj == 1.5  # cited (Dally); the model's own FMA is within the fit error
    r = mac_energy("fp16", accumulator="fp16")
    assert r.energy_pj == pytest.approx(calibrate().fp_mul(5, 10) + calibrate().fp_add(5, 10))
    assert r.energy_pj == pytest.approx(1.5, rel=STATED_FIT_ERROR)


def test_vs_quant_integer_scales_beat_fp32_vector_scales() -> None:
    two_level = mac_energy("vsq4_v16_s4")
    fp32_scales = mac_energy("vsq4_v16")
    assert two_level.energy_pj < fp32_scales.energy_pj / 4
    # integer all the way: no fp32 add per vector, only one fp32 multiply per output
    assert not any("fp32 add" in k for k in two_level.breakdown)
    assert "scale/block: partial x scale" in two_level.breakdown


def test_narrow_floats_accumulate_exactly_wide_ones_in_fp32() -> None:
    assert "exact" in mac_energy("e2m1").notes[-1]
    assert "fp32 sum" in mac_energy("e4m3").notes[-1]
    assert mac_energy("e2m1", accumulator="fp32").energy_pj > mac_energy("e2m1").energy_pj


def test_scale_work_is_amortized_over_the_block() -> None:
    small = mac_energy("mxfp4_b16").breakdown
    large = mac_energy("mxfp4").breakdown  # block 32
    key = "scale/block: outer fp32 add"
    assert small[key] == pytest.approx(2 * large[key])


def test_mixed_operands_and_short_reductions() -> None:
    w4a8 = mac_energy("int4", input_format="int8").energy_pj
    assert mac_energy("int4").energy_pj < w4a8 < mac_energy("int8").energy_pj
    short = mac_energy("nvfp4", reduction=9)  # conv1 of the digits CNN: one padded block
    assert "amortized over 9" in " ".join(short.notes)


def test_bad_input_names_the_problem() -> None:
    with pytest.raises(FormatError, match="did you mean"):
        mac_energy("nvfp5")
    with pytest.raises(ConfigError, match="positive integer"):
        mac_energy("int8", reduction=0)
    with pytest.raises(ConfigError, match="LNS operand"):
        mac_energy("lns8", input_format="int8")
    with pytest.raises(ConfigError, match="do not nest"):
        mac_energy("mxfp4_b24", input_format="mxfp4")
    with pytest.raises(FormatError, match="accumulator"):
        mac_energy("int8", accumulator="codebook16")
    with pytest.raises(ConfigError, match="did you mean"):
        op_energy("mac", "int8")
