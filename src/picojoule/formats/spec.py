"""Element number formats as data.

A format is a frozen description; every derived constant (`max`, `min_normal`, `min_subnormal`,
`eps`) is computed from its fields, never typed in. `mbits` counts stored mantissa bits only,
never the sign or the implicit leading bit.

Special-value conventions (ml_dtypes suffixes, https://github.com/jax-ml/ml_dtypes):

==========  ======================================================================
suffix      meaning
==========  ======================================================================
(none)      IEEE 754 style: exponent all-ones encodes inf (mantissa 0) and NaN
``fn``      finite: no inf. 8-bit and wider: NaN is the all-ones magnitude code
            (OCP OFP8 E4M3). Below 8 bits: no NaN at all (OCP MX v1.0 FP6/FP4).
``fnuz``    finite, no negative zero: NaN is the code 0b1000...0, bias is 2^(ebits-1)
``fnu``     finite, unsigned (E8M0): no sign bit, no zero, no subnormals, NaN all-ones
==========  ======================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:  # formats are data: listing them imports neither (`picojoule formats`)
    import numpy as np
    import torch

__all__ = ["NanEncoding", "FloatFormat", "IntFormat", "LNSFormat", "CodebookFormat"]

NanEncoding = Literal["ieee", "all_ones", "neg_zero", "none"]
Rounding = Literal["nearest_even", "stochastic", "toward_zero"]


class _ElementOps:
    """What every element format does; `_cast` names its reference cast in `cast.py`."""

    _cast: ClassVar[str]

    def quantize(
        self,
        x: torch.Tensor,
        *,
        rounding: Rounding = "nearest_even",
        saturate: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fake-quantize: same shape and dtype, every value representable (see cast.py)."""
        from picojoule.formats import cast

        fn = getattr(cast, self._cast)
        return fn(x, self, rounding=rounding, saturate=saturate, generator=generator)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Integer bit patterns of `quantize(x)` (see codes.py)."""
        from picojoule.formats.codes import encode

        return encode(self, x)  # type: ignore[arg-type]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Values of integer bit patterns, from the spec's table (see codes.py)."""
        from picojoule.formats.codes import decode

        return decode(self, codes)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class FloatFormat(_ElementOps):
    """Binary floating point: sign, `ebits` exponent bits (with `bias`), `mbits` mantissa bits."""

    _cast: ClassVar[str] = "quantize_float"
    name: str
    ebits: int
    mbits: int
    bias: int
    inf: bool
    nan: NanEncoding
    signed: bool = True
    subnormals: bool = True
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def bits(self) -> int:
        return int(self.signed) + self.ebits + self.mbits

    @property
    def bits_per_element(self) -> float:
        return float(self.bits)

    @cached_property
    def emin(self) -> int:
        """Exponent of the smallest normal number (exponent field 1, or 0 without subnormals)."""
        return (1 if self.subnormals else 0) - self.bias

    @cached_property
    def _max_fields(self) -> tuple[int, int]:
        """(exponent field, mantissa field) of the largest finite magnitude."""
        e_all, m_all = (1 << self.ebits) - 1, (1 << self.mbits) - 1
        if self.nan == "ieee":
            return e_all - 1, m_all
        if self.nan == "all_ones":
            return (e_all, m_all - 1) if self.mbits > 0 else (e_all - 1, 0)
        return e_all, m_all

    @cached_property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        return self._max_fields[0] - self.bias

    @cached_property
    def max(self) -> float:
        e, m = self._max_fields
        return math.ldexp(1.0 + m / (1 << self.mbits), e - self.bias)

    @cached_property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.emin)

    @cached_property
    def min_subnormal(self) -> float:
        if not self.subnormals or self.mbits == 0:
            return self.min_normal
        return math.ldexp(1.0, self.emin - self.mbits)

    @cached_property
    def eps(self) -> float:
        """Distance from 1.0 to the next larger representable number."""
        return math.ldexp(1.0, -self.mbits)

    @property
    def has_zero(self) -> bool:
        return self.subnormals or self.signed

    def decode_value(self, code: int) -> float:
        """Value of one bit pattern, from first principles (the spec; used to build tables)."""
        nm = self.ebits + self.mbits
        sign = -1.0 if self.signed and (code >> nm) & 1 else 1.0
        e = (code >> self.mbits) & ((1 << self.ebits) - 1)
        m = code & ((1 << self.mbits) - 1)
        e_all = (1 << self.ebits) - 1
        if self.nan == "neg_zero" and code == 1 << nm:
            return math.nan
        if self.nan == "ieee" and e == e_all:
            return sign * math.inf if m == 0 else math.nan
        if self.nan == "all_ones" and e == e_all and m == (1 << self.mbits) - 1:
            return math.nan
        if e == 0 and self.subnormals:
            return sign * math.ldexp(m / (1 << self.mbits), 1 - self.bias)
        return sign * math.ldexp(1.0 + m / (1 << self.mbits), e - self.bias)

    @cached_property
    def table(self) -> np.ndarray:
        """float64 value of every code (bits <= 16), indexed by code."""
        import numpy as np

        if self.bits > 16:
            raise ValueError(f"{self.name}: code table only for formats of <= 16 bits")
        return np.array([self.decode_value(c) for c in range(1 << self.bits)], dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class IntFormat(_ElementOps):
    """Two's-complement (or unsigned) integers; `narrow` drops -2^(N-1): a symmetric range."""

    _cast: ClassVar[str] = "quantize_int"
    name: str
    bits: int
    signed: bool = True
    narrow: bool = False
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def bits_per_element(self) -> float:
        return float(self.bits)

    @cached_property
    def qmin(self) -> int:
        if not self.signed:
            return 0
        return -(1 << (self.bits - 1)) + int(self.narrow)

    @cached_property
    def qmax(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def max(self) -> float:
        return float(self.qmax)

    @property
    def min_normal(self) -> float:
        return 1.0

    @property
    def min_subnormal(self) -> float:
        return 1.0

    @property
    def eps(self) -> float:
        return 1.0


@dataclass(frozen=True, kw_only=True)
class LNSFormat(_ElementOps):
    """Logarithmic number system: sign bit + (bits-1)-bit two's-complement fixed-point log2|x|
    with `frac_bits` fractional bits. The most negative log code encodes zero.

    Value of (s, k): (-1)^s * 2^(k / 2^frac_bits). Rounding is to the nearest log-domain step
    (geometric midpoint), ties to even k; magnitudes below half the smallest value flush to 0.
    Multiplication becomes fixed-point addition of the logs; addition is the hard part
    (Gauss-log table lookups), which the energy model charges for.
    """

    _cast: ClassVar[str] = "quantize_lns"
    name: str
    bits: int
    frac_bits: int
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def bits_per_element(self) -> float:
        return float(self.bits)

    @cached_property
    def kmin(self) -> int:
        return -(1 << (self.bits - 2)) + 1  # most negative code is zero

    @cached_property
    def kmax(self) -> int:
        return (1 << (self.bits - 2)) - 1

    @property
    def max(self) -> float:
        return 2.0 ** (self.kmax / (1 << self.frac_bits))

    @property
    def min_normal(self) -> float:
        return 2.0 ** (self.kmin / (1 << self.frac_bits))

    @property
    def min_subnormal(self) -> float:
        return self.min_normal

    @property
    def eps(self) -> float:
        return 2.0 ** (1 / (1 << self.frac_bits)) - 1.0


@dataclass(frozen=True, kw_only=True)
class CodebookFormat:
    """EIE / Deep Compression weight sharing: each element is an index into `k` shared values.

    `quantize` fits the codebook to the tensor with 1-D k-means (linear initialisation over
    [min, max], which Han et al., ICLR 2016, found best for accuracy) and snaps every element to
    its nearest centroid. In a model, `picojoule.quant` keeps the centroids as trainable
    parameters. Storage: log2(k) bits per element plus k fp32 centroids per tensor.
    """

    name: str
    k: int
    iters: int = 25
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(self.k)))

    @property
    def bits_per_element(self) -> float:
        return float(self.bits)

    def quantize(
        self,
        x: torch.Tensor,
        *,
        rounding: Rounding = "nearest_even",
        saturate: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        from picojoule.formats.codebook import assign, fit

        if rounding != "nearest_even":
            from picojoule.errors import FormatError

            raise FormatError(
                f"{self.name}: codebooks snap to the nearest centroid; "
                f"rounding={rounding!r} is not defined for them"
            )
        centroids = fit(x, self.k, iters=self.iters)
        return assign(x, centroids)
