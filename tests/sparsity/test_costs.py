import pytest

from picojoule.errors import ConfigError
from picojoule.sparsity import (
    Gemm,
    breakeven_density,
    cartesian_cost,
    csr_cost,
    dense_cost,
    horowitz_45nm,
    nm_cost,
    scheme_cost,
    storage_breakeven_density,
    zero_gating_cost,
)

G = Gemm(m=64, k=256, n=32)
FP16 = horowitz_45nm("fp16")
WORD = 10.0  # pJ per 64-bit 8 KB SRAM access (Horowitz 2014)
PER_BIT = WORD / 64


def test_horowitz_defaults() -> None:
    assert (FP16.mul_pj, FP16.add_pj, FP16.value_bits) == (1.1, 0.4, 16)
    int8 = horowitz_45nm("int8")
    assert (int8.mul_pj, int8.add_pj, int8.value_bits) == (0.2, 0.1, 8)
    with pytest.raises(ConfigError, match="fp32, fp16 or int8"):
        horowitz_45nm("e4m3")


def test_dense_counts_and_energy() -> None:
    c = dense_cost(G, FP16)
    macs = 64 * 256 * 32
    assert (c.multiplies, c.mac_slots, c.operand_bits) == (macs, macs, 2 * 16 * macs)
    assert c.energy_pj == pytest.approx(macs * (1.5 + 32 * PER_BIT))  # 6.5 pJ per MAC


def test_2to4_halves_math_and_weight_reads_and_adds_metadata() -> None:
    dense, sparse = dense_cost(G, FP16), nm_cost(G, FP16, 2, 4)
    macs = G.macs
    assert sparse.multiplies == macs / 2
    assert sparse.operand_bits == macs / 2 * 16 + macs * 16  # activations still all read
    assert sparse.metadata_bits == macs / 2 * 2
    assert sparse.speedup_over(dense) == 2.0
    per_mac = 0.75 + (8 + 16 + 1) * PER_BIT
    assert sparse.energy_ratio_to(dense) == pytest.approx(per_mac / 6.5)


def test_csr_pays_index_decode_and_gather_per_nonzero() -> None:
    c = csr_cost(G, FP16, 0.25)
    nnz = G.macs * 0.25
    assert c.index_decodes == nnz and c.gathers == nnz
    assert c.metadata_bits == nnz * 8 + 2 * 64 * 32 * 32  # log2(256) = 8-bit column index
    assert c.gather_pj == nnz * WORD


def test_cartesian_scatter_overhead_and_zero_gating_time() -> None:
    c = cartesian_cost(G, FP16, 0.5, 0.4)
    products = G.macs * 0.2
    assert c.multiplies == pytest.approx(products)
    assert c.scatter_accesses == pytest.approx(2 * products)
    z = zero_gating_cost(G, FP16, 0.5, 0.4)
    dense = dense_cost(G, FP16)
    assert z.mac_slots == dense.mac_slots  # no time saved
    assert z.math_pj == pytest.approx(0.2 * dense.math_pj)
    assert z.fetch_pj == dense.fetch_pj


def test_breakeven_densities_closed_form() -> None:
    g = Gemm(m=4096, k=4096, n=1)
    # csr per non-zero: 1.5 math + (16 + 12) bits streamed + 10 gather + 0.1 decode;
    # fixed: 2 row pointers of 32 bits per output.
    per_nnz = 1.5 + 28 * PER_BIT + WORD + 0.1
    fixed = 2 * 4096 * 32 * PER_BIT
    expected = (6.5 * g.macs - fixed) / (per_nnz * g.macs)
    assert breakeven_density("csr", g, FP16) == pytest.approx(expected)
    per_product = 1.5 + 2 * (16 + 4) * PER_BIT + 0.1 + 2 * WORD
    assert breakeven_density("cartesian", g, FP16, input_density=0.5) == pytest.approx(
        6.5 / (per_product * 0.5)
    )
    assert breakeven_density("zero_gating", g, FP16) == 1.0


def test_storage_breakeven_is_50_percent_for_fp16_with_16_bit_indices() -> None:
    assert storage_breakeven_density(16, 16) == 0.5
    assert storage_breakeven_density(8, 0, per_element_bits=1) == 7 / 8


def test_scheme_dispatch_and_bad_input() -> None:
    assert scheme_cost("2:4", G, FP16) == nm_cost(G, FP16, 2, 4)
    assert scheme_cost("csr", G, FP16, weight_density=0.3) == csr_cost(G, FP16, 0.3)
    with pytest.raises(ConfigError, match="unknown sparse scheme"):
        scheme_cost("coo", G, FP16)
    with pytest.raises(ConfigError, match="fraction non-zero"):
        csr_cost(G, FP16, 1.5)
    with pytest.raises(ConfigError, match="compare nm_cost"):
        breakeven_density("2:4", G, FP16)
    with pytest.raises(ConfigError, match="positive"):
        Gemm(m=0, k=4)
