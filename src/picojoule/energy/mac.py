"""Energy of one multiply-accumulate for any picojoule format, with its breakdown.

Public: `mac_energy(fmt, *, node_nm=45, input_format=None, accumulator="auto",
reduction=4096) -> OpEnergy`.

The model (all parts from the calibrated primitives of `picojoule.energy.arith`):

1. multiply - the element product. Integers: an a x b array multiplier. Floats: significand
   multiplier (p = mbits + 1 bits), exponent adder, normalize/round shifter. LNS: the
   multiply is an add of the two logs. Codebook weights are first decoded by a table read
   (EIE: 4-bit index -> 16-bit value, Han et al. ISCA 2016) and multiplied as int16.
2. accumulate - the product joins a running sum of B products, B = the block/vector length
   of a scaled format, else the whole reduction K (`reduction`). Integer products accumulate
   exactly in 2N + ceil(log2 B) bits (VS-Quant's rule, Dai et al. MLSys 2021, generalised
   to the exact width of any product). Float and LNS products can either be aligned into an
   exact fixed-point sum (shifter + integer adder; a LUT converts LNS fractions) or added in
   FP32; `accumulator="auto"` charges the cheaper of the two - the speed-of-light choice - and
   says which in `notes`. Name a format ("fp32", "fp16", "int32") to force one.
3. scale, per block - block/vector-scaled formats (MX, NVFP4, VS-Quant, ELEM/blockK) pay once
   per block, amortized over B: the product of the two block scales (E8M0: an exponent add;
   E4M3: a float multiply; VS-Quant M-bit scales: an M x M integer multiply), applying it to
   the partial sum, converting that sum to FP32 when it was fixed point, and the outer add.
   VS-Quant with integer scales stays integer to the end (partial x scale product, wide add).
4. scale, per output - per-tensor/per-channel FP32 scales (and NVFP4's tensor scale,
   VS-Quant's gamma) cost one FP32 multiply per output (their product is formed once per
   output channel), amortized over K.

Both operands use `fmt` unless `input_format` names the activation format. Everything is
computed at 45 nm and scaled to `node_nm` with the node table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from picojoule.energy.arith import BASE_NODE_NM, Calibration, calibrate
from picojoule.energy.defaults import DEFAULT_REDUCTION
from picojoule.energy.memory import sram_model
from picojoule.energy.ops import OpEnergy
from picojoule.energy.scaling import NodeScaling, node_scaling
from picojoule.errors import ConfigError, FormatError

__all__ = ["mac_energy", "DEFAULT_REDUCTION", "CODEBOOK_VALUE_FORMAT"]

CODEBOOK_VALUE_FORMAT = "int16"  # EIE decodes 4-bit indices to 16-bit fixed point (ISCA 2016)
_FP32 = (8, 23)


@dataclass(frozen=True, kw_only=True)
class _Num:
    """What the datapath sees of one operand value."""

    kind: Literal["int", "float", "lns"]
    sig: int  # significand bits into the multiplier (float: mbits + 1)
    exp: int  # exponent bits (0: integer)
    span: int  # exact fixed-point width of any value, sign included
    positions: int  # distinct binary-point positions (1 for integers)
    frac: int = 0  # LNS fractional log bits


@dataclass(frozen=True, kw_only=True)
class _Operand:
    name: str
    num: _Num
    block: int | None = None
    scale: _Num | None = None  # per-block scale (None with a block: fp32)
    coarse_scales: int = 0  # fp32 scales applied once per output
    decode_pj: float = 0.0  # per-element decode (codebook table read)
    notes: tuple[str, ...] = ()


def _num(el) -> _Num:
    from picojoule.formats import FloatFormat, IntFormat, LNSFormat

    if isinstance(el, IntFormat):
        return _Num(kind="int", sig=el.bits, exp=0, span=el.bits, positions=1)
    if isinstance(el, FloatFormat):
        # bit positions from the top of the largest value to the last bit of the smallest
        span = el.emax - (el.emin - el.mbits) + 1 + int(el.signed)
        return _Num(
            kind="float", sig=el.mbits + 1, exp=el.ebits, span=span, positions=el.emax - el.emin + 1
        )
    if isinstance(el, LNSFormat):
        lo, hi = math.floor(el.kmin / 2**el.frac_bits), math.ceil(el.kmax / 2**el.frac_bits)
        return _Num(
            kind="lns",
            sig=el.bits - 1,
            exp=0,
            span=(hi - lo + 1) + el.frac_bits + 1 + 1,
            positions=hi - lo + 1,
            frac=el.frac_bits,
        )
    raise FormatError(f"{getattr(el, 'name', el)}: no energy model for this element format")


def _operand(fmt_like: object) -> _Operand:
    from picojoule.formats import CodebookFormat, FloatFormat, PerBlock, ScaledFormat, get

    fmt = get(fmt_like)  # type: ignore[arg-type]
    if isinstance(fmt, CodebookFormat):
        value = get(CODEBOOK_VALUE_FORMAT)
        sram = sram_model()
        capacity = fmt.k * value.bits / 8  # type: ignore[union-attr]
        note = f"{fmt.name}: {fmt.bits}-bit index decoded by a {fmt.k}-entry table to int16"
        if sram.extrapolated(capacity):
            note += " (table read from the SRAM model, extrapolated below its smallest anchor)"
        return _Operand(
            name=fmt.name,
            num=_num(value),
            decode_pj=sram.read_pj(capacity, value.bits),  # type: ignore[union-attr]
            notes=(note,),
        )
    if not isinstance(fmt, ScaledFormat):
        return _Operand(name=fmt.name, num=_num(fmt))
    num = _num(fmt.element)
    if not isinstance(fmt.granularity, PerBlock):  # plain per-tensor / per-channel fp32 scale
        return _Operand(name=fmt.name, num=num, coarse_scales=1)
    if fmt.kind == "vsq" and fmt.scale_bits:
        scale = _Num(kind="int", sig=fmt.scale_bits, exp=0, span=fmt.scale_bits, positions=1)
        return _Operand(name=fmt.name, num=num, block=fmt.block, scale=scale, coarse_scales=1)
    scale = _num(fmt.scale) if isinstance(fmt.scale, FloatFormat) else None
    coarse = 1 if fmt.kind == "nvfp4" else 0
    return _Operand(name=fmt.name, num=num, block=fmt.block, scale=scale, coarse_scales=coarse)


def _fp32() -> _Num:
    from picojoule.formats import get

    return _num(get("fp32"))


def _multiply(cal: Calibration, a: _Num, b: _Num) -> dict[str, float]:
    """Parts of one product a x b (floats: the calibrated IEEE multiplier's three stages)."""
    if "lns" in (a.kind, b.kind):
        if a.kind != b.kind:
            raise ConfigError("an LNS operand multiplies only another LNS operand")
        return {"log add": cal.int_add(max(a.sig, b.sig))}
    parts = {"significand multiply": cal.int_mul(a.sig, b.sig)}
    if a.exp and b.exp:
        parts["exponent add"] = cal.int_add(max(a.exp, b.exp) + 1)
    if a.kind == "float" or b.kind == "float":
        parts["normalize/round"] = cal.k_fmul_pj * _stages(max(a.sig, b.sig)) * max(a.sig, b.sig)
    return parts


def _stages(positions: int) -> float:
    return math.log2(positions) if positions > 1 else 0.0


def _accumulate(
    cal: Calibration, a: _Num, b: _Num, length: int, accumulator: str
) -> tuple[dict[str, float], str, int, str]:
    """Parts of adding one product into a sum of `length` products.

    Returns (parts, kind of partial sum: "fixed" or "float", fixed width, note)."""
    from picojoule.formats import FloatFormat, IntFormat, get

    lns = a.kind == "lns"
    positions = a.positions + b.positions - 1
    lut = {}
    if lns:  # 2^f-entry table: fraction of the log sum -> f+2-bit mantissa (1 + f+1 fraction
        # bits keep neighbouring LNS values distinct), read once per product
        f = max(a.frac, b.frac)
        lut = {"log->linear table": sram_model().read_pj(2**f * (f + 2) / 8, f + 2)}
        span = positions + (f + 2) + 1
    else:
        span = a.span + b.span
    width = span + math.ceil(math.log2(length)) if length > 1 else span
    fixed = dict(lut)
    if positions > 1:
        # the product moves within its own span; the log2(length) carry bits above never shift
        fixed["align shift"] = cal.k_fadd_pj * span * _stages(positions)
    fixed["integer add"] = cal.int_add(width)
    floating = dict(lut)
    if a.kind == b.kind == "int":  # an integer product enters a float sum through a normalizer
        floating["int->float normalize"] = cal.k_fadd_pj * span * _stages(span)
    if accumulator == "auto":
        floating["fp32 add"] = cal.fp_add(*_FP32)
        if sum(fixed.values()) <= sum(floating.values()):
            exact = "" if lns else "exact "  # LNS values are rounded by the table lookup
            return fixed, "fixed", width, f"{exact}{width}-bit fixed-point sum of {length} products"
        return floating, "float", 0, f"fp32 sum ({width}-bit exact fixed point costs more)"
    acc = get(accumulator)
    if isinstance(acc, FloatFormat):
        floating[f"{acc.name} add"] = cal.fp_add(acc.ebits, acc.mbits)
        return floating, "float", 0, f"{acc.name} accumulator (forced)"
    if isinstance(acc, IntFormat):
        fixed["integer add"] = cal.int_add(acc.bits)
        note = f"{acc.name} accumulator (forced)"
        if acc.bits < width:
            note += f"; exact needs {width} bits, so sums may overflow"
        return fixed, "fixed", acc.bits, note
    raise FormatError(f"accumulator {accumulator!r}: name an integer or float format, or 'auto'")


def _per_block(
    cal: Calibration, w: _Operand, x: _Operand, partial: str, width: int, reduction: int
) -> dict[str, float]:
    """Once-per-block parts: combine the scales, scale the partial sum, add it outward."""
    fp32 = _fp32()
    scales = [op.scale or fp32 for op in (w, x) if op.block is not None]
    parts: dict[str, float] = {}
    combined = scales[0]
    if len(scales) == 2:
        parts["scale product"] = sum(_multiply(cal, *scales).values())
        pow2 = scales[0].sig == scales[1].sig == 1  # 2^a * 2^b: still one significand bit
        combined = _Num(
            kind=scales[0].kind if scales[0].kind == scales[1].kind else "float",
            sig=1 if pow2 else scales[0].sig + scales[1].sig,
            exp=max(scales[0].exp, scales[1].exp) + 1 if scales[0].exp else 0,
            span=scales[0].span + scales[1].span,
            positions=1,
        )
    block = min(op.block for op in (w, x) if op.block is not None)
    if partial == "fixed" and combined.kind == "int":  # VS-Quant: integer all the way
        parts["partial x scale"] = cal.int_mul(width, combined.sig)
        outer = width + combined.sig + math.ceil(math.log2(max(reduction // block, 1)))
        parts["outer integer add"] = cal.int_add(outer)
        return parts
    if combined.sig == 1 and combined.exp:  # power-of-two scale (E8M0): an exponent add
        parts["apply scale"] = cal.int_add(combined.exp + 1)
    elif partial == "fixed":
        parts["apply scale"] = cal.int_mul(width, combined.sig) + cal.int_add(combined.exp + 1)
        width += combined.sig
    else:
        parts["apply scale"] = sum(_multiply(cal, fp32, combined).values())
    if partial == "fixed":
        parts["fixed->fp32 convert"] = cal.k_fadd_pj * width * _stages(width)
    parts["outer fp32 add"] = cal.fp_add(*_FP32)
    return parts


def mac_energy(
    fmt: object,
    *,
    node_nm: float = BASE_NODE_NM,
    input_format: object | None = None,
    accumulator: str = "auto",
    reduction: int = DEFAULT_REDUCTION,
    calibration: Calibration | None = None,
    scaling: NodeScaling | None = None,
) -> OpEnergy:
    """Energy of one multiply-accumulate on `fmt` operands (see the module docstring)."""
    if not isinstance(reduction, int) or reduction < 1:
        raise ConfigError(
            f"reduction (dot-product length) must be a positive integer, got {reduction!r}"
        )
    scaling = scaling or node_scaling()
    cal = calibration or calibrate(scaling=scaling)
    w = _operand(fmt)
    if input_format is not None:
        x = _operand(input_format)
    elif w.decode_pj:  # a codebook is a weight format: activations stay in its value format
        x = _operand(CODEBOOK_VALUE_FORMAT)
    else:
        x = w
    blocks = {op.block for op in (w, x) if op.block is not None}
    if len(blocks) == 2 and max(blocks) % min(blocks):
        raise ConfigError(f"block sizes {sorted(blocks)} of {w.name} and {x.name} do not nest")
    # a block longer than the dot product is one zero-padded block per output
    length = min(*blocks, reduction) if blocks else reduction
    parts = {f"multiply: {k}": v for k, v in _multiply(cal, w.num, x.num).items()}
    for op in {w.name: w, x.name: x}.values():
        if op.decode_pj:
            parts[f"decode {op.name}"] = op.decode_pj
    acc, partial, width, acc_note = _accumulate(cal, w.num, x.num, length, accumulator)
    parts |= {f"accumulate: {k}": v for k, v in acc.items()}
    notes = [*w.notes, *(x.notes if x is not w else ()), f"accumulate: {acc_note}"]
    if blocks:
        per_block = _per_block(cal, w, x, partial, width, reduction)
        parts |= {f"scale/block: {k}": v / length for k, v in per_block.items()}
        notes.append(f"per-block work amortized over {length} MACs")
    if w.coarse_scales or x.coarse_scales:
        # the coarse scales' product is formed once per output channel (negligible); each
        # output then takes one fp32 multiply, amortized over the K MACs that produced it
        parts["scale/output: fp32 dequantize"] = cal.fp_mul(*_FP32) / reduction
        notes.append(f"one fp32 dequantize multiply per output, amortized over K={reduction}")
    name = w.name if x is w else f"{w.name} x {x.name}"
    result = OpEnergy(
        name=name,
        energy_pj=sum(parts.values()),
        breakdown=parts,
        source="model",
        notes=tuple(notes),
        uncited=cal.uncited,
    )
    return result.scaled(scaling.ratio(BASE_NODE_NM, node_nm), node_nm)
