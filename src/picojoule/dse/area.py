"""Silicon area of the parts a DSE design is built from: MAC datapaths and SRAM buffers.

Public: `logic_scale`, `NODES_NM`, `int_multiplier_area_um2`, `int_adder_area_um2`,
`float_multiplier_area_um2`, `float_adder_area_um2`, `MacArea`, `mac_area`,
`vector_mac_area`, `sram_bitcell_area_um2`, `sram_area_um2`, `register_file_area_um2`,
`storage_area_um2`.

The model, in three steps (docs/dse.md derives and checks it):

1. **Anchors at 45 nm** - Horowitz, "Computing's energy problem (and what we can do about
   it)", ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V): area of 8/16/32-bit integer adders, 8/32-bit
   integer multipliers, FP16/FP32 adders and multipliers.
2. **Width laws fitted through those anchors** - integer multipliers grow with the product of
   the operand widths (a partial-product array), adders with the width, floating-point units
   with the significand width (mantissa + implicit bit). Each law is a power law through the
   two end anchors; the middle anchor (16-bit add) checks it to 5 %.
3. **Node scaling** - logic by Stillmaker & Baas, "Scaling equations for the accurate
   prediction of CMOS device performance from 180 nm to 7 nm", Integration 58 (2017),
   area table (5 nm from TSMC's N5 density claim); SRAM by the published 6T high-density
   bitcell of each node divided by an array efficiency (below).

Buffers up to 1 kB are flip-flop register files (NanGate 45 nm DFF cell), larger ones SRAM
macros. All areas are in um^2 (`_um2`). Wiring, control, NoC and clock tree are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from picojoule.errors import ConfigError, FormatError

__all__ = [
    "NODES_NM",
    "logic_scale",
    "int_multiplier_area_um2",
    "int_adder_area_um2",
    "float_multiplier_area_um2",
    "float_adder_area_um2",
    "MacArea",
    "mac_area",
    "vector_mac_area",
    "sram_bitcell_area_um2",
    "sram_area_um2",
    "register_file_area_um2",
    "storage_area_um2",
    "SRAM_ARRAY_EFFICIENCY",
    "REGISTER_FILE_MAX_BYTES",
]

# --- 45 nm anchors (Horowitz, ISSCC 2014, Fig. 1.1.9; um^2) -----------------------------------
_INT_ADD_8B_UM2 = 36.0  # 8-bit integer add
_INT_ADD_32B_UM2 = 137.0  # 32-bit integer add (16-bit: 67, used as the check point)
_INT_MUL_8B_UM2 = 282.0  # 8-bit integer multiply
_INT_MUL_32B_UM2 = 3495.0  # 32-bit integer multiply
_FP16_ADD_UM2 = 1360.0  # FP16 add (11-bit significand)
_FP32_ADD_UM2 = 4184.0  # FP32 add (24-bit significand)
_FP16_MUL_UM2 = 1640.0  # FP16 multiply
_FP32_MUL_UM2 = 7700.0  # FP32 multiply

# Power-law exponents through the end anchors (derived, not typed in).
_ADD_EXP = math.log(_INT_ADD_32B_UM2 / _INT_ADD_8B_UM2) / math.log(32 / 8)  # ~0.96
_MUL_EXP = math.log(_INT_MUL_32B_UM2 / _INT_MUL_8B_UM2) / math.log(32 * 32 / 64)  # ~0.91
_FADD_EXP = math.log(_FP32_ADD_UM2 / _FP16_ADD_UM2) / math.log(24 / 11)  # ~1.44
_FMUL_EXP = math.log(_FP32_MUL_UM2 / _FP16_MUL_UM2) / math.log(24 * 24 / 121)  # ~0.99

# --- node scaling -------------------------------------------------------------------------------
# Logic area relative to 45 nm: Stillmaker & Baas (2017), area scaling table, 45 nm row.
# 5 nm is past the paper: TSMC N5 has 1.84x the logic density of N7 (Yeap et al., IEDM 2019).
# 12 nm (TSMC 12FFN) and 4 nm (TSMC N4) are foundry names of 16 nm- and 5 nm-class processes
# and share their factors, as in picojoule.energy's node table.
_LOGIC_SCALE_VS_45NM: dict[int, float] = {
    90: 2.8,
    65: 1.5,
    45: 1.0,
    32: 0.46,
    16: 0.19,
    14: 0.17,
    12: 0.19,
    10: 0.10,
    7: 0.059,
    5: 0.059 / 1.84,
    4: 0.059 / 1.84,
}

# High-density 6T SRAM bitcell area per node (um^2), from each node's technology paper.
_BITCELL_UM2: dict[int, float] = {
    90: 1.0,  # Intel 90 nm: Thompson et al., IEDM 2002
    65: 0.570,  # Intel 65 nm: Bai et al., IEDM 2004
    45: 0.346,  # Intel 45 nm: Mistry et al., IEDM 2007
    32: 0.171,  # Intel 32 nm: Natarajan et al., IEDM 2008
    16: 0.070,  # TSMC 16 nm FinFET: Wu et al., IEDM 2013
    14: 0.0588,  # Intel 14 nm: Natarajan et al., IEDM 2014
    12: 0.070,  # TSMC 12FFN: a 16 nm-class process, the 16 nm cell
    10: 0.0312,  # Intel 10 nm: Auth et al., IEDM 2017
    7: 0.027,  # TSMC 7 nm: Wu et al., IEDM 2016
    5: 0.021,  # TSMC 5 nm: Yeap et al., IEDM 2019
    4: 0.021,  # TSMC N4: 5 nm-class, the 5 nm cell
}

# Fraction of an SRAM macro that is bitcells (the rest: decoders, sense amps, write assist,
# I/O). WikiChip's estimate of TSMC N5 cache density (D. Schor, "TSMC 5-nanometer update",
# fuse.wikichip.org/news/2879, 2019) assumes "a ballpark assist circuit overhead of around 30%"
# to turn the 0.021 um^2 cell into ~32 Mib/mm^2; we apply that same 0.7 at every node and
# capacity, which overstates the density of very small (few-KB) macros.
SRAM_ARRAY_EFFICIENCY = 0.70

NODES_NM: tuple[int, ...] = tuple(sorted(_LOGIC_SCALE_VS_45NM, reverse=True))


def logic_scale(node_nm: int) -> float:
    """Logic area at `node_nm` relative to 45 nm (Stillmaker & Baas 2017)."""
    if node_nm not in _LOGIC_SCALE_VS_45NM:
        raise ConfigError(
            f"no area data for a {node_nm} nm node; the area model covers {list(NODES_NM)} nm "
            "(Stillmaker & Baas 2017 logic scaling and published bitcell sizes)"
        )
    return _LOGIC_SCALE_VS_45NM[node_nm]


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def int_adder_area_um2(bits: int, *, node_nm: int = 45) -> float:
    """Area of a `bits`-wide integer adder: 36 um^2 * (bits/8)^0.96 at 45 nm."""
    _positive("adder width", bits)
    return _INT_ADD_8B_UM2 * (bits / 8) ** _ADD_EXP * logic_scale(node_nm)


def int_multiplier_area_um2(a_bits: int, b_bits: int, *, node_nm: int = 45) -> float:
    """Area of an `a_bits` x `b_bits` integer multiplier.

    The partial-product array has a*b cells, so area follows (a*b)^0.91 through the 8x8 and
    32x32 anchors; a 4x8 mixed-width multiplier costs what its 32 partial products cost.
    """
    _positive("multiplier width", min(a_bits, b_bits))
    return _INT_MUL_8B_UM2 * (a_bits * b_bits / 64) ** _MUL_EXP * logic_scale(node_nm)


def float_multiplier_area_um2(a_sig_bits: int, b_sig_bits: int, *, node_nm: int = 45) -> float:
    """Area of a floating-point multiplier for significands of `a_sig_bits` and `b_sig_bits`
    (mantissa + implicit bit; an integer operand counts its magnitude bits as significand).

    Fitted as (a*b)^0.99 through FP16 (11x11) and FP32 (24x24); exponent logic, rounding and
    normalisation are carried inside the fit, so it extrapolates below FP16 with that same
    overhead ratio.
    """
    _positive("significand width", min(a_sig_bits, b_sig_bits))
    ratio = a_sig_bits * b_sig_bits / (11 * 11)
    return _FP16_MUL_UM2 * ratio**_FMUL_EXP * logic_scale(node_nm)


def float_adder_area_um2(sig_bits: int, *, node_nm: int = 45) -> float:
    """Area of a floating-point adder with a `sig_bits` significand: (p/11)^1.44 x FP16 add
    (alignment shifter and normaliser grow faster than the significand adder itself)."""
    _positive("significand width", sig_bits)
    return _FP16_ADD_UM2 * (sig_bits / 11) ** _FADD_EXP * logic_scale(node_nm)


# --- operands -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Operand:
    """What a datapath needs to know about one operand format."""

    is_float: bool
    bits: int  # integer width, or significand width (mantissa + implicit bit) for floats
    exp_bits: int  # exponent bits (0 for integers)
    block: int | None  # block/vector size of a per-block scale, None without one
    scale: _Operand | None  # the per-block scale's own format


def _fmt(name: str) -> object:
    from picojoule import formats

    return formats.get(name)


def _operand(fmt: object) -> _Operand:
    from picojoule.formats.scaled import ScaledFormat
    from picojoule.formats.spec import FloatFormat, IntFormat

    if isinstance(fmt, IntFormat):
        return _Operand(is_float=False, bits=fmt.bits, exp_bits=0, block=None, scale=None)
    if isinstance(fmt, FloatFormat):
        return _Operand(
            is_float=True, bits=fmt.mbits + 1, exp_bits=fmt.ebits, block=None, scale=None
        )
    if isinstance(fmt, ScaledFormat):
        element = _operand(fmt.element)
        if fmt.block is None:  # per-tensor / per-channel: applied once per output, not per MAC
            return element
        if fmt.kind == "vsq" and fmt.scale_bits:
            scale = _Operand(
                is_float=False, bits=fmt.scale_bits, exp_bits=0, block=None, scale=None
            )
        elif fmt.scale is not None:
            scale = _operand(fmt.scale)
        else:  # fp32 block scale
            scale = _Operand(is_float=True, bits=24, exp_bits=8, block=None, scale=None)
        return _Operand(
            is_float=element.is_float,
            bits=element.bits,
            exp_bits=element.exp_bits,
            block=fmt.block,
            scale=scale,
        )
    name = getattr(fmt, "name", repr(fmt))
    raise FormatError(
        f"the area model has no datapath for {name!r} (log-number-system and codebook formats "
        "need lookup tables whose area Horowitz's anchors do not cover); use an integer, "
        "floating-point or block-scaled format in the design space"
    )


# Integer accumulators carry 8 guard bits above the product width: 2^8 = 256 products sum
# without overflow (int8 x int8 -> 24 bits, Simba's partial-sum width: Shao et al., MICRO
# 2019, as in the magnet preset). Float products accumulate in FP32, as tensor cores
# do for FP16/BF16/FP8 inputs (NVIDIA Tesla V100 whitepaper, 2017: FP16 multiply, FP32
# accumulate).
_GUARD_BITS = 8
_FP32_SIG_BITS = 24


@dataclass(frozen=True, kw_only=True)
class MacArea:
    """Area of one (vector) MAC unit, split by part, in um^2."""

    multipliers_um2: float  # `width` element multipliers
    adders_um2: float  # reduction tree and accumulator
    scale_um2: float  # per-block scale combine/apply units (block-scaled formats only)

    @property
    def total_um2(self) -> float:
        return self.multipliers_um2 + self.adders_um2 + self.scale_um2


def _scale_unit_area_um2(w: _Operand, a: _Operand, acc_bits: int, node_nm: int) -> float:
    """One per-block scale unit: combine the two operands' scales (if both have one) and apply
    the result to the block's partial sum. Power-of-two scales (E8M0) need only exponent adders."""
    scales = [op.scale for op in (w, a) if op.scale is not None]
    area = 0.0
    pow2 = all(s.is_float and s.bits == 1 for s in scales)
    if pow2:
        exp_bits = max(s.exp_bits for s in scales)
        if len(scales) == 2:
            area += int_adder_area_um2(exp_bits + 1, node_nm=node_nm)
        return area + int_adder_area_um2(exp_bits + 1, node_nm=node_nm)
    sig = [s.bits for s in scales]
    any_float = any(s.is_float for s in scales) or w.is_float or a.is_float
    mul = float_multiplier_area_um2 if any_float else int_multiplier_area_um2
    if len(scales) == 2:
        area += mul(sig[0], sig[1], node_nm=node_nm)
    return area + mul(acc_bits, sum(sig), node_nm=node_nm)


def vector_mac_area(
    weight_format: str, input_format: str, *, width: int, node_nm: int = 45
) -> MacArea:
    """Area of a `width`-wide dot-product unit (MAGNet/Simba "vector MAC"): `width`
    multipliers, a binary adder tree and one accumulator, plus per-block scale units.

    Integer trees grow one bit per level from the product width. Float trees add products at
    the product's exact significand width (pa + pb bits, capped at FP32's 24) and accumulate in
    FP32; this is a discrete tree of FP adders - fused designs that align all products to one
    fixed-point sum are smaller. Block-scaled formats add ceil(width / block) scale units.
    """
    if width < 1:
        raise ConfigError(f"vector width must be >= 1, got {width}")
    w, a = _operand(_fmt(weight_format)), _operand(_fmt(input_format))
    if w.is_float or a.is_float:
        mul = float_multiplier_area_um2(w.bits, a.bits, node_nm=node_nm)
        acc_bits = _FP32_SIG_BITS
        adder = float_adder_area_um2(acc_bits, node_nm=node_nm)
        tree_sig_bits = min(w.bits + a.bits, _FP32_SIG_BITS)
        tree = (width - 1) * float_adder_area_um2(tree_sig_bits, node_nm=node_nm)
    else:
        mul = int_multiplier_area_um2(w.bits, a.bits, node_nm=node_nm)
        product_bits = w.bits + a.bits
        acc_bits = product_bits + _GUARD_BITS
        adder = int_adder_area_um2(acc_bits, node_nm=node_nm)
        tree, n, level = 0.0, width, 0
        while n > 1:  # level l adds n//2 pairs of (product_bits + l)-bit sums
            level += 1
            pairs = n // 2
            tree += pairs * int_adder_area_um2(product_bits + level, node_nm=node_nm)
            n -= pairs
    blocks = [op.block for op in (w, a) if op.block is not None]
    scale = 0.0
    if blocks:
        units = math.ceil(width / min(blocks))
        scale = units * _scale_unit_area_um2(w, a, acc_bits, node_nm)
    return MacArea(multipliers_um2=width * mul, adders_um2=tree + adder, scale_um2=scale)


def mac_area(weight_format: str, input_format: str, *, node_nm: int = 45) -> MacArea:
    """Area of one scalar multiply-accumulate unit (a vector MAC of width 1)."""
    return vector_mac_area(weight_format, input_format, width=1, node_nm=node_nm)


# --- SRAM -------------------------------------------------------------------------------------


def sram_bitcell_area_um2(node_nm: int) -> float:
    """High-density 6T bitcell area at `node_nm` (see `_BITCELL_UM2` for each source)."""
    logic_scale(node_nm)  # same node list, same error message
    return _BITCELL_UM2[node_nm]


def sram_area_um2(capacity_bytes: int, *, node_nm: int = 45) -> float:
    """Area of an SRAM macro holding `capacity_bytes`: bits x bitcell / array efficiency."""
    if capacity_bytes < 0:
        raise ConfigError(f"SRAM capacity must be >= 0 bytes, got {capacity_bytes}")
    return capacity_bytes * 8 * sram_bitcell_area_um2(node_nm) / SRAM_ARRAY_EFFICIENCY


# One D flip-flop per bit: DFF_X1 of the NanGate FreePDK45 Open Cell Library, 4.522 um^2 at
# 45 nm (read/write muxing not counted).
_DFF_45NM_UM2 = 4.522
# Below this a buffer is built from flip-flops, not an SRAM macro. A modelling choice, not a
# measured figure: at a few hundred bytes an SRAM's periphery dominates and designs use
# register files (Eyeriss' per-PE scratchpads: 0.5 kB; MAGNet's collectors: tens of bytes).
REGISTER_FILE_MAX_BYTES = 1024


def register_file_area_um2(capacity_bytes: int, *, node_nm: int = 45) -> float:
    """Area of a flip-flop register file of `capacity_bytes` (one DFF per bit)."""
    if capacity_bytes < 0:
        raise ConfigError(f"register file capacity must be >= 0 bytes, got {capacity_bytes}")
    return capacity_bytes * 8 * _DFF_45NM_UM2 * logic_scale(node_nm)


def storage_area_um2(capacity_bytes: int, *, node_nm: int = 45) -> float:
    """A flip-flop register file up to `REGISTER_FILE_MAX_BYTES`, an SRAM macro above."""
    if capacity_bytes <= REGISTER_FILE_MAX_BYTES:
        return register_file_area_um2(capacity_bytes, node_nm=node_nm)
    return sram_area_um2(capacity_bytes, node_nm=node_nm)
