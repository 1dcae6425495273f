"""What a sparse layer costs: multiplies, operand fetches, metadata and energy, per scheme.

Public: `OpEnergies`, `horowitz_45nm(dtype)`, `Gemm`, `SparseCost`, `dense_cost`, `nm_cost`,
`csr_cost`, `cartesian_cost`, `zero_gating_cost`, `scheme_cost`, `breakeven_density`,
`storage_breakeven_density`, `SCHEMES`.

The layer is a GEMM Y[M, N] = W[M, K] @ X[K, N] (a conv in implicit-GEMM form: M output
channels, K = C*R*S, N = batch * output pixels). Every scheme is charged at the same level: a
scalar processing element whose multiply reads both operands from a small local SRAM
(Horowitz's 8 KB, 64-bit array) and accumulates in a register (register energy not charged).
Operand reuse inside a PE array is a dataflow question (picojoule's mapping model) and to
first order the same for every scheme, so it is left out here. The schemes:

- dense: M*K*N multiply-adds, two streamed operand reads each.
- N:M (Ampere sparse tensor core): multiplies and weight reads scale by N/M; every activation
  is still read (the hardware muxes the N it needs out of each M), plus ceil(log2 M) metadata
  bits per kept weight. Time: N/M of dense (NVIDIA A100 whitepaper, 2020).
- csr (EIE, Han et al. ISCA 2016): per non-zero weight, a multiply-add, the value and its index
  streamed, one address computation (index decode), and one activation GATHER: an irregular
  address costs a whole SRAM word read, not just the bits used. Row pointers: 2 per output.
- cartesian (SCNN, Parashar et al. ISCA 2017): sparse weights x sparse activations; every
  product of non-zeros is useful but lands at a computed address, so each product pays an
  output-coordinate computation and a SCATTER: an accumulator read-modify-write (two word
  accesses) -- the overhead that kept SCNN's gains modest.
- zero_gating (NVDLA): the dense schedule with the multiplier gated when an operand is zero:
  math energy scales with the non-zero product fraction; fetches and time do not change.
  Gating is taken as free (its zero-detect logic is not charged).

Counts are expected values (fractional), assuming zeros spread evenly (no load imbalance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from picojoule.errors import ConfigError
from picojoule.sparsity.patterns import parse_pattern

__all__ = [
    "OpEnergies",
    "horowitz_45nm",
    "Gemm",
    "SparseCost",
    "dense_cost",
    "nm_cost",
    "csr_cost",
    "cartesian_cost",
    "zero_gating_cost",
    "scheme_cost",
    "breakeven_density",
    "storage_breakeven_density",
    "SCHEMES",
]

SCHEMES = ("dense", "N:M (e.g. 2:4)", "csr", "cartesian", "zero_gating")

# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm:
# (multiply pJ, accumulate-add pJ, operand bits). fp16 FMA = 1.1 + 0.4 = 1.5 pJ as in the seed
# brief; int8 multiplies accumulate in a 32-bit integer adder.
_HOROWITZ_MAC = {
    "fp32": (3.7, 0.9, 32),  # 32b FP mult 3.7 pJ, 32b FP add 0.9 pJ
    "fp16": (1.1, 0.4, 16),  # 16b FP mult 1.1 pJ, 16b FP add 0.4 pJ
    "int8": (0.2, 0.1, 8),  # 8b int mult 0.2 pJ, 32b int add 0.1 pJ
}
_HOROWITZ_SRAM_8KB_64B_PJ = 10.0  # Horowitz ISSCC 2014: 64-bit read of an 8 KB SRAM ~10 pJ
_HOROWITZ_INT32_ADD_PJ = 0.1  # Horowitz ISSCC 2014: 32b int add; used for address arithmetic


@dataclass(frozen=True, kw_only=True)
class OpEnergies:
    """Per-operation energies (pJ) and widths one cost evaluation uses."""

    name: str
    value_bits: int
    mul_pj: float
    add_pj: float
    sram_word_pj: float = _HOROWITZ_SRAM_8KB_64B_PJ
    sram_word_bits: int = 64
    index_add_pj: float = _HOROWITZ_INT32_ADD_PJ

    @property
    def read_pj_per_bit(self) -> float:
        """Streaming (sequential) read: a word's energy shared by every bit in it."""
        return self.sram_word_pj / self.sram_word_bits


def horowitz_45nm(dtype: str = "fp16") -> OpEnergies:
    """Horowitz 45 nm energies for `dtype` in fp32, fp16 (fp32/fp16 FP) or int8."""
    if dtype not in _HOROWITZ_MAC:
        raise ConfigError(f"no Horowitz 45 nm numbers for {dtype!r}; choose fp32, fp16 or int8")
    mul, add, bits = _HOROWITZ_MAC[dtype]
    return OpEnergies(name=f"horowitz45nm-{dtype}", value_bits=bits, mul_pj=mul, add_pj=add)


@dataclass(frozen=True, kw_only=True)
class Gemm:
    """Y[m, n] = W[m, k] @ X[k, n]; `m` outputs, `k` reduction, `n` columns (batch*pixels)."""

    m: int
    k: int
    n: int = 1

    def __post_init__(self) -> None:
        if min(self.m, self.k, self.n) < 1:
            raise ConfigError(f"GEMM sizes must be positive, got m={self.m} k={self.k} n={self.n}")

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n


@dataclass(frozen=True, kw_only=True)
class SparseCost:
    """Expected operation counts and energy (pJ) of one GEMM under one scheme.

    `mac_slots` is time in multiplier-issue slots (one product per multiplier per cycle).
    """

    scheme: str
    multiplies: float
    operand_bits: float
    metadata_bits: float
    index_decodes: float
    gathers: float
    scatter_accesses: float
    mac_slots: float
    math_pj: float
    fetch_pj: float
    metadata_pj: float
    index_pj: float
    gather_pj: float
    scatter_pj: float

    @property
    def energy_pj(self) -> float:
        return (
            self.math_pj
            + self.fetch_pj
            + self.metadata_pj
            + self.index_pj
            + self.gather_pj
            + self.scatter_pj
        )

    def speedup_over(self, baseline: SparseCost) -> float:
        return baseline.mac_slots / self.mac_slots if self.mac_slots else math.inf

    def energy_ratio_to(self, baseline: SparseCost) -> float:
        """This scheme's energy over the baseline's (< 1 means it saves energy)."""
        return self.energy_pj / baseline.energy_pj


def _cost(
    scheme: str,
    e: OpEnergies,
    *,
    products: float,
    operand_bits: float,
    slots: float,
    metadata_bits: float = 0.0,
    index_decodes: float = 0.0,
    gathers: float = 0.0,
    scatter_accesses: float = 0.0,
) -> SparseCost:
    # Each product is one multiply and one accumulate-add (in `math_pj`) wherever it lands.
    return SparseCost(
        scheme=scheme,
        multiplies=products,
        operand_bits=operand_bits,
        metadata_bits=metadata_bits,
        index_decodes=index_decodes,
        gathers=gathers,
        scatter_accesses=scatter_accesses,
        mac_slots=slots,
        math_pj=products * (e.mul_pj + e.add_pj),
        fetch_pj=operand_bits * e.read_pj_per_bit,
        metadata_pj=metadata_bits * e.read_pj_per_bit,
        index_pj=index_decodes * e.index_add_pj,
        gather_pj=gathers * e.sram_word_pj,
        scatter_pj=scatter_accesses * e.sram_word_pj,
    )


def _check_density(value: float, what: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{what} must be in [0, 1] (fraction non-zero), got {value}")


def dense_cost(g: Gemm, e: OpEnergies) -> SparseCost:
    """Dense baseline: every MAC multiplies and reads a weight and an activation."""
    return _cost("dense", e, products=g.macs, operand_bits=2 * g.macs * e.value_bits, slots=g.macs)


def nm_cost(g: Gemm, e: OpEnergies, n: int = 2, m: int = 4) -> SparseCost:
    """N:M structured weights on a sparse tensor core (math and weight reads scale by N/M)."""
    parse_pattern(f"{n}:{m}")  # validates 1 <= n < m
    kept = g.macs * n / m
    return _cost(
        f"{n}:{m}",
        e,
        products=kept,
        operand_bits=kept * e.value_bits + g.macs * e.value_bits,
        metadata_bits=kept * math.ceil(math.log2(m)),
        slots=kept,
    )


def csr_cost(
    g: Gemm, e: OpEnergies, density: float, *, index_bits: int | None = None, ptr_bits: int = 32
) -> SparseCost:
    """EIE-style CSR weights x dense activations at weight `density`."""
    _check_density(density, "weight density")
    nnz = g.macs * density
    ib = index_bits or max(1, math.ceil(math.log2(g.k)))
    return _cost(
        "csr",
        e,
        products=nnz,
        operand_bits=nnz * e.value_bits,
        metadata_bits=nnz * ib + 2 * g.m * g.n * ptr_bits,
        index_decodes=nnz,
        gathers=nnz,
        slots=nnz,
    )


def cartesian_cost(
    g: Gemm, e: OpEnergies, weight_density: float, input_density: float, *, index_bits: int = 4
) -> SparseCost:
    """SCNN-style sparse x sparse cartesian product with scatter-accumulate.

    `index_bits` per stored operand: 4, the run-length index width EIE used (Han et al. 2016).
    """
    _check_density(weight_density, "weight density")
    _check_density(input_density, "input density")
    products = g.macs * weight_density * input_density
    return _cost(
        "cartesian",
        e,
        products=products,
        operand_bits=2 * products * e.value_bits,
        metadata_bits=2 * products * index_bits,
        index_decodes=products,  # output coordinate of each product
        scatter_accesses=2 * products,  # accumulator read + write per product
        slots=products,
    )


def zero_gating_cost(
    g: Gemm, e: OpEnergies, weight_density: float, input_density: float = 1.0
) -> SparseCost:
    """NVDLA-style zero gating: math energy on non-zero products only; fetches and time dense."""
    _check_density(weight_density, "weight density")
    _check_density(input_density, "input density")
    dense = dense_cost(g, e)
    live = g.macs * weight_density * input_density
    return _cost(
        "zero_gating",
        e,
        products=live,
        operand_bits=dense.operand_bits,
        slots=dense.mac_slots,
    )


def scheme_cost(
    scheme: str,
    g: Gemm,
    e: OpEnergies,
    *,
    weight_density: float = 1.0,
    input_density: float = 1.0,
) -> SparseCost:
    """Dispatch by name: "dense", an N:M pattern ("2:4"), "csr", "cartesian", "zero_gating"."""
    if scheme == "dense":
        return dense_cost(g, e)
    if scheme == "csr":
        return csr_cost(g, e, weight_density)
    if scheme == "cartesian":
        return cartesian_cost(g, e, weight_density, input_density)
    if scheme == "zero_gating":
        return zero_gating_cost(g, e, weight_density, input_density)
    if ":" in scheme:
        pattern = parse_pattern(scheme)
        if pattern.kind == "nm":
            return nm_cost(g, e, pattern.n, pattern.m)
    raise ConfigError(f"unknown sparse scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")


def breakeven_density(scheme: str, g: Gemm, e: OpEnergies, *, input_density: float = 1.0) -> float:
    """Largest weight density at which `scheme` costs no more energy than dense, in [0, 1].

    Each scheme's energy is linear in weight density, so two evaluations give the crossing.
    1.0 means it never loses to dense; 0.0 that it always does.
    """
    if scheme not in ("csr", "cartesian", "zero_gating"):
        raise ConfigError(
            f"breakeven is over weight density, which {scheme!r} fixes or lacks; "
            "use csr, cartesian or zero_gating (compare nm_cost to dense_cost for N:M)"
        )
    dense = dense_cost(g, e).energy_pj

    def at(d: float) -> float:
        return scheme_cost(scheme, g, e, weight_density=d, input_density=input_density).energy_pj

    e0, e1 = at(0.0), at(1.0)
    if e1 <= dense:
        return 1.0
    if e0 >= dense:
        return 0.0
    return (dense - e0) / (e1 - e0)


def storage_breakeven_density(
    value_bits: float, index_bits: float, per_element_bits: float = 0.0
) -> float:
    """Density below which a layout with `index_bits` per non-zero (plus `per_element_bits` per
    element, e.g. 1 for a bitmask) stores fewer bits than dense. fp16 + 16-bit CSR index: 0.5."""
    if value_bits <= 0:
        raise ConfigError(f"value_bits must be positive, got {value_bits}")
    return max(0.0, min(1.0, (value_bits - per_element_bits) / (value_bits + index_bits)))
