"""Sane ranges of every number in an accelerator spec: one table, one checker.

Public: `Limit`, `LIMITS`, `limited(field)`, `per_bit_energy(field)`, `MAX_LANES`.

Positivity is not enough: a 10^30-bit buffer or a 10^9 pJ/bit read is a typo (a unit slip, a
missing `_kb`), and costing it would print a confident, absurd report. Each bound below is a
physical limit with headroom, stated next to the value; a number outside it is an error that
names the field, the value, the range and why. The pydantic models of `picojoule.arch.spec`
attach these checks to their fields, so YAML and Python callers get the same validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BeforeValidator

__all__ = ["Limit", "LIMITS", "limited", "per_bit_energy", "MAX_LANES", "check_number"]


@dataclass(frozen=True, kw_only=True)
class Limit:
    """Allowed closed range [low, high] of one field, in `unit`; `zero_ok`: 0 is also
    accepted (an ideal, free component in a what-if study)."""

    low: float
    high: float
    unit: str
    why: str
    integer: bool = False
    zero_ok: bool = False

    def describe(self) -> str:
        zero = "0 or " if self.zero_ok else ""
        return f"{zero}{_num(self.low)}..{_num(self.high)} {self.unit}"


def _num(x: float) -> str:
    if x >= 2**20 and float(x).is_integer() and int(x) & (int(x) - 1) == 0:
        return f"2^{int(x).bit_length() - 1}"
    return f"{x:g}"


_ENERGY_WHY = (
    "from 1 aJ (below any CMOS switching event) to 1 uJ (a million times an off-chip DRAM "
    "access); pJ is per bit here - check the unit"
)
_BUFFER = Limit(
    low=1,
    high=2**40,
    unit="bits",
    integer=True,
    why="2^40 bits = 128 GiB, 3x the largest on-chip SRAM built (Cerebras WSE-3, 44 GB); "
    "check for a kB/bit mix-up",
)

_BANDWIDTH = Limit(
    low=1e-3,
    high=2**30,
    unit="bits/cycle",
    why="2^30 bits/cycle is 130 PB/s at 1 GHz, 6x the aggregate SRAM bandwidth of the "
    "largest chip (Cerebras WSE-3, 21 PB/s)",
)

LIMITS: dict[str, Limit] = {
    "capacity_bits": _BUFFER,
    "partition_bits": _BUFFER,
    "width_bits": Limit(
        low=1,
        high=4096,
        unit="bits",
        integer=True,
        why="a memory word or port wider than 4096 bits (8x an HBM pseudo-channel burst) is "
        "not built",
    ),
    "bandwidth_bits_per_cycle": _BANDWIDTH,
    "read_bandwidth_bits_per_cycle": _BANDWIDTH,
    "write_bandwidth_bits_per_cycle": _BANDWIDTH,
    "mesh_x": Limit(
        low=1,
        high=65536,
        unit="copies",
        integer=True,
        why="a fanout side over 65536 exceeds any built array (a wafer holds ~900k cores, "
        "i.e. under 1000 per side)",
    ),
    "mesh_y": Limit(
        low=1,
        high=65536,
        unit="copies",
        integer=True,
        why="a fanout side over 65536 exceeds any built array",
    ),
    "read_pj_per_bit": Limit(low=1e-6, high=1e6, unit="pJ/bit", zero_ok=True, why=_ENERGY_WHY),
    "write_pj_per_bit": Limit(low=1e-6, high=1e6, unit="pJ/bit", zero_ok=True, why=_ENERGY_WHY),
    "network_pj_per_bit": Limit(low=1e-6, high=1e6, unit="pJ/bit", zero_ok=True, why=_ENERGY_WHY),
    "energy_pj": Limit(low=1e-6, high=1e6, unit="pJ/MAC", zero_ok=True, why=_ENERGY_WHY),
    "accumulator_bits": Limit(
        low=1,
        high=256,
        unit="bits",
        integer=True,
        why="accumulators are 16-64 bits in practice; 256 is 4x a float64 accumulator",
    ),
    "metadata_bits_per_element": Limit(
        low=0,
        high=64,
        unit="bits/element",
        why="an index per element wider than a 64-bit pointer stores nothing useful",
    ),
    "node_nm": Limit(
        low=1,
        high=1000,
        unit="nm",
        why="CMOS nodes run from ~2 nm today to 1 um (1985); energy tables cover that span",
    ),
    "clock_ghz": Limit(
        low=1e-3,
        high=10,
        unit="GHz",
        why="1 MHz to 10 GHz: no synchronous logic clocks above 10 GHz; check GHz vs MHz",
    ),
}

# Product of every fanout: more MAC lanes than 2^32 (4,000x a wafer-scale chip's ~900k cores)
# is a typo, and the mapper's loop bounds would overflow the search long before it mattered.
MAX_LANES = 2**32


def _kind(value: object) -> str:
    """What a YAML value is, in YAML words."""
    return {
        "str": "text",
        "list": "a list",
        "tuple": "a list",
        "dict": "a mapping",
        "bool": "true/false",
        "NoneType": "null",
    }.get(type(value).__name__, type(value).__name__)


def check_number(field: str, value: object) -> int | float:
    """`value` checked against `LIMITS[field]`; ValueError (with the value, the range and the
    reason) otherwise. Integral floats (1.0e6) are accepted where an integer goes."""
    limit = LIMITS[field]
    want = "a whole number" if limit.integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        quoted = " (quoted?)" if isinstance(value, str) else ""
        raise ValueError(
            f"expected {want} of {limit.unit}, got {_kind(value)} {value!r}{quoted}; "
            f"give a value in {limit.describe()}"
        )
    if not math.isfinite(value):
        raise ValueError(f"got {value!r}; give a finite value in {limit.describe()}")
    big = f"{value:,}" if isinstance(value, int) else f"{value:.6g}"
    shown = repr(value) if abs(value) < 1e6 else big
    if limit.integer:
        if value != int(value):
            raise ValueError(f"got {value!r}; {field} counts {limit.unit}: give a whole number")
        value = int(value)
    if (value == 0 and limit.zero_ok) or limit.low <= value <= limit.high:
        return value
    raise ValueError(
        f"{shown} {limit.unit} is out of range {limit.describe()} ({limit.why}); "
        "give a value in range"
    )


def limited(field: str) -> BeforeValidator:
    """Pydantic validator checking a number field against `LIMITS[field]`."""
    return BeforeValidator(lambda v: check_number(field, v))


def per_bit_energy(field: str) -> BeforeValidator:
    """Validator of a per-bit energy: None, one number, or a mapping operand -> number."""

    def check(value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, dict):
            return check_number(field, value)
        out = {}
        for operand, v in value.items():
            try:
                out[operand] = check_number(field, v)
            except ValueError as e:
                raise ValueError(f"{operand}: {e}") from None
        return out

    return BeforeValidator(check)
