"""The unit convention of `picojoule.energy`, stated once.

Every quantity carries its unit in its name and uses exactly these units:

=============  =======  ================================================================
quantity       unit     names end in
=============  =======  ================================================================
energy         pJ       ``_pj`` (per event: per op, per access, per bit: ``_pj_per_bit``)
data size      bits     ``_bits``; whole bytes only where a size is naturally bytes,
                        ``_bytes`` (SRAM capacity, tensor footprints)
process node   nm       ``_nm`` (the marketing node name, e.g. 7 for TSMC N7)
frequency      Hz       ``_hz``; GPU clocks are tabulated in MHz as vendors print them,
                        ``_mhz``, and converted with `MHZ`
power          W        ``_w``
time           s        ``_s``
throughput     op/s     ``_ops`` per second; peak tables use vendor units, TFLOPS/TOPS
                        (10^12 op/s), named ``_tops``
bandwidth      B/s      ``_bytes_per_s``; tables use GB/s (10^9 B/s), ``_gbs``
=============  =======  ================================================================

One "op" is one multiply or one add: a multiply-accumulate (MAC, FMA) is 2 ops, as in every
vendor's TFLOPS figure. Conversions below are exact constants, never rounded.
"""

from __future__ import annotations

__all__ = [
    "PJ_PER_J",
    "BITS_PER_BYTE",
    "MHZ",
    "TERA",
    "GIGA",
    "OPS_PER_MAC",
    "joules",
    "tops_per_watt",
    "pj_per_op",
]

PJ_PER_J = 1e12
BITS_PER_BYTE = 8
MHZ = 1e6
GIGA = 1e9
TERA = 1e12
OPS_PER_MAC = 2


def joules(energy_pj: float) -> float:
    """pJ -> J."""
    return energy_pj / PJ_PER_J


def tops_per_watt(peak_tops: float, power_w: float) -> float:
    """Efficiency at peak: 10^12 op/s per W (= op per pJ)."""
    return peak_tops / power_w


def pj_per_op(peak_tops: float, power_w: float) -> float:
    """Energy per op at peak throughput and full power: W / (op/s), in pJ."""
    return power_w / (peak_tops * TERA) * PJ_PER_J
