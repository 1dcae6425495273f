"""Datapath primitives of the format-energy model, calibrated to the cited per-op table.

Public: `Calibration`, `calibrate(table=None)`, `AnchorFit`.

The model builds every multiply, add and shift from four primitives (energies at 45 nm):

    int_mul(a, b) = k_mul * a * b                  array multiplier: partial products a*b
    int_add(w)    = c_add + k_add * w              ripple/carry adder: linear in width
    fp_mul(e, m)  = int_mul(p, p) + int_add(e + 1) + k_fmul * p log2 p
    fp_add(e, m)  = int_add(p + 3) + int_add(e) + k_fadd * (p + 3) log2(p + 3)

with p = m + 1 significand bits (the implicit bit included; `mbits` never counts it). The
float terms are: the significand multiplier (same array as an integer one), the exponent
adder, and a barrel shifter for alignment / normalization / rounding - w log2 w gates for a
w-bit shifter of log2 w stages; 3 = guard, round and sticky bits of an IEEE adder.

Calibration (least squares on relative error, so 0.03 pJ counts as much as 3.7 pJ):
k_mul from the integer multiplies, c_add and k_add from the integer adds, then k_fmul and
k_fadd from the float multiplies and adds with the integer primitives held fixed. With the
built-in table (Horowitz, ISSCC 2014, 45 nm) that is 9 anchors for 5 parameters;
`Calibration.anchors` reports the model's error on every row, FMA rows included (an FMA is
charged as its multiply plus its add, so Dally's HFMA 1.5 pJ is a check, not a fit input).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from picojoule.energy.scaling import NodeScaling, node_scaling
from picojoule.energy.tables import OpRow, Table, load_table
from picojoule.errors import ConfigError

__all__ = ["AnchorFit", "Calibration", "calibrate", "BASE_NODE_NM", "STATED_FIT_ERROR"]

BASE_NODE_NM = 45.0  # the model's coefficients are energies at this node
# The model's promise on the built-in anchors: |model / table - 1| <= 5% on every row (the fit
# reaches 4.2%, on Horowitz's 16-bit add). Tests hold the model to it.
STATED_FIT_ERROR = 0.05
_GUARD_BITS = 3  # guard, round, sticky


def _shifter(width: float) -> float:
    """Gate count of a barrel shifter, in units of one mux: width * log2(width)."""
    return width * math.log2(width) if width > 1 else 0.0


@dataclass(frozen=True, kw_only=True)
class AnchorFit:
    """The model against one table row: both in pJ at the model's base node."""

    op: str
    dtype: str
    table_pj: float
    model_pj: float
    citation: str | None

    @property
    def error(self) -> float:
        """Relative error of the model, (model - table) / table."""
        return self.model_pj / self.table_pj - 1.0


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Fitted coefficients (pJ at 45 nm) and the fit on every anchor row."""

    k_mul_pj: float
    c_add_pj: float
    k_add_pj: float
    k_fmul_pj: float
    k_fadd_pj: float
    anchors: tuple[AnchorFit, ...]
    uncited: tuple[str, ...] = ()

    # --- primitives, pJ at 45 nm -------------------------------------------------------------

    def int_mul(self, a_bits: float, b_bits: float) -> float:
        return self.k_mul_pj * a_bits * b_bits

    def int_add(self, width_bits: float) -> float:
        return self.c_add_pj + self.k_add_pj * width_bits

    def shift(self, width_bits: float, *, kind: str = "add") -> float:
        """Alignment/normalization shifter over `width_bits`, priced with the adder's (`add`)
        or the multiplier's (`mul`) fitted coefficient."""
        k = self.k_fadd_pj if kind == "add" else self.k_fmul_pj
        return k * _shifter(width_bits)

    def fp_mul_parts(self, ebits: int, mbits: int) -> dict[str, float]:
        p = mbits + 1
        return {
            "significand multiply": self.int_mul(p, p),
            "exponent add": self.int_add(ebits + 1),
            "normalize/round": self.k_fmul_pj * _shifter(p),
        }

    def fp_add_parts(self, ebits: int, mbits: int) -> dict[str, float]:
        w = mbits + 1 + _GUARD_BITS
        return {
            "significand add": self.int_add(w),
            "exponent compare": self.int_add(ebits),
            "align/normalize": self.k_fadd_pj * _shifter(w),
        }

    def fp_mul(self, ebits: int, mbits: int) -> float:
        return sum(self.fp_mul_parts(ebits, mbits).values())

    def fp_add(self, ebits: int, mbits: int) -> float:
        return sum(self.fp_add_parts(ebits, mbits).values())

    @property
    def max_abs_error(self) -> float:
        return max(abs(a.error) for a in self.anchors)


def _kind(dtype: str) -> tuple[str, int, int]:
    """('int', bits, 0) or ('float', ebits, mbits) for a table dtype."""
    from picojoule.formats import FloatFormat, IntFormat, get

    fmt = get(dtype)
    if isinstance(fmt, IntFormat):
        return "int", fmt.bits, 0
    if isinstance(fmt, FloatFormat):
        return "float", fmt.ebits, fmt.mbits
    raise ConfigError(f"op table dtype {dtype!r}: only integer and float formats can be anchors")


def _fit_scale(shape: list[float], target: list[float]) -> float:
    """k minimizing sum(((k*shape - target)/target)^2). Plain Python, like `_fit_add`: the fits
    are a handful of points, and numpy would cost `picojoule explain` ~80 ms of start-up."""
    s = [a / t for a, t in zip(shape, target, strict=True)]
    return sum(s) / sum(v * v for v in s)


def _fit_add(widths: list[float], energy: list[float]) -> tuple[float, float]:
    """(c, k) minimizing sum(((c + k*width - e)/e)^2): relative least squares, solved by its
    2x2 normal equations."""
    rows = [(1.0 / e, w / e) for w, e in zip(widths, energy, strict=True)]
    a11 = sum(u * u for u, _ in rows)
    a12 = sum(u * v for u, v in rows)
    a22 = sum(v * v for _, v in rows)
    b1, b2 = sum(u for u, _ in rows), sum(v for _, v in rows)
    det = a11 * a22 - a12 * a12
    return (b1 * a22 - b2 * a12) / det, (a11 * b2 - a12 * b1) / det


def _model(cal: Calibration, row: OpRow) -> float:
    kind, a, b = _kind(row.dtype)
    if kind == "int":
        parts = {"mul": cal.int_mul(a, a), "add": cal.int_add(a)}
    else:
        parts = {"mul": cal.fp_mul(a, b), "add": cal.fp_add(a, b)}
    parts["fma"] = parts["mul"] + parts["add"]
    return parts[row.op]


def _calibrate(table: Table, scaling: NodeScaling) -> Calibration:
    rows: tuple[OpRow, ...] = table.rows  # type: ignore[assignment]
    at_base = [
        (r, r.energy_pj * scaling.ratio(r.node_nm, BASE_NODE_NM), _kind(r.dtype)) for r in rows
    ]

    def pick(op: str, kind: str) -> list[tuple[OpRow, float, tuple[str, int, int]]]:
        return [x for x in at_base if x[0].op == op and x[2][0] == kind]

    imul, iadd, fmul, fadd = (
        pick("mul", "int"),
        pick("add", "int"),
        pick("mul", "float"),
        pick("add", "float"),
    )
    need = {"integer mul": (imul, 1), "integer add": (iadd, 2), "float mul": (fmul, 1)}
    need["float add"] = (fadd, 1)
    short = [f"{n} (>= {k})" for n, (got, k) in need.items() if len({x[2] for x in got}) < k]
    if short:
        raise ConfigError(
            f"{table.source}: cannot calibrate the format-energy model; the table needs rows "
            f"for: {', '.join(short)}"
        )
    k_mul = _fit_scale([float(x[2][1] ** 2) for x in imul], [x[1] for x in imul])
    c_add, k_add = _fit_add([float(x[2][1]) for x in iadd], [x[1] for x in iadd])
    partial = Calibration(
        k_mul_pj=k_mul,
        c_add_pj=float(c_add),
        k_add_pj=float(k_add),
        k_fmul_pj=0.0,
        k_fadd_pj=0.0,
        anchors=(),
    )
    if partial.c_add_pj < 0 or partial.k_add_pj <= 0:
        raise ConfigError(f"{table.source}: integer add energies do not grow with width")
    # float terms: what the integer primitives leave unexplained, spread over the shifter shape
    rest = [x[1] - partial.fp_mul(x[2][1], x[2][2]) for x in fmul]
    shifts = [float(_shifter(x[2][2] + 1)) for x in fmul]
    k_fmul = _fit_scale(shifts, rest) if any(rest) else 0.0
    rest = [x[1] - partial.fp_add(x[2][1], x[2][2]) for x in fadd]
    widths = [float(_shifter(x[2][2] + 1 + _GUARD_BITS)) for x in fadd]
    k_fadd = _fit_scale(widths, rest) if any(rest) else 0.0
    if k_fmul < 0 or k_fadd < 0:
        raise ConfigError(
            f"{table.source}: float ops are cheaper than their integer parts; "
            "the table's float and integer rows are inconsistent"
        )
    cal = Calibration(
        k_mul_pj=k_mul,
        c_add_pj=float(c_add),
        k_add_pj=float(k_add),
        k_fmul_pj=float(k_fmul),
        k_fadd_pj=float(k_fadd),
        anchors=(),
        uncited=table.uncited,
    )
    anchors = tuple(
        AnchorFit(op=r.op, dtype=r.dtype, table_pj=pj, model_pj=_model(cal, r), citation=r.citation)
        for r, pj, _ in at_base
    )
    return Calibration(**{**cal.__dict__, "anchors": anchors})


@lru_cache(maxsize=8)
def calibrate(table: Table | None = None, scaling: NodeScaling | None = None) -> Calibration:
    """Fit the model to `table` (built-in Horowitz/Dally rows by default); cached per table."""
    return _calibrate(table or load_table("ops"), scaling or node_scaling())
