"""Run-length coding of activations to and from DRAM (Eyeriss, JSSC 2017, Sec. V-A): the
closed form against the bit-exact packer, and what the cost model charges with it."""

from __future__ import annotations

import pytest
import torch

from picojoule.arch import presets
from picojoule.arch.rlc import dram_bits, pairs_per_element, rlc_bits_per_element
from picojoule.errors import ConfigError
from picojoule.mapping import evaluate, map_workload
from picojoule.sparsity.layouts import pack
from picojoule.workload import Layer, Workload


def test_eyeriss_word_arithmetic():
    # three (5-bit run, 16-bit level) pairs + 1 flag bit per 64-bit word
    assert rlc_bits_per_element(1.0) == pytest.approx(64 / 3)
    assert dram_bits(1.0, 16) == 16  # coding a dense stream would grow it: sent raw
    assert pairs_per_element(1.0) == 1.0
    # all zeros but one in 32: one pair per 32 elements
    assert pairs_per_element(1e-9) == pytest.approx(1 / 32, rel=1e-6)
    assert dram_bits(0.4, 16) == pytest.approx(64 / 3 * 0.4 / (1 - 0.6**32))
    with pytest.raises(ConfigError):
        pairs_per_element(0.0)
    with pytest.raises(ConfigError):
        rlc_bits_per_element(0.5, value_bits=64)


@pytest.mark.parametrize("density", [0.05, 0.3, 0.6, 0.9])
def test_closed_form_matches_the_packer(density):
    """`picojoule.sparsity.layouts`' rle packs (run, value) entries with a 5-bit run field,
    fillers for long runs: on a long i.i.d. stream its entries per element are the formula's
    pairs per element (within sampling noise)."""
    g = torch.Generator().manual_seed(0)
    n = 400_000
    x = (torch.rand(1, n, generator=g) < density).float() * (1 + torch.rand(1, n, generator=g))
    entries = pack("rle", x, run_bits=5).values.numel()
    assert entries / n == pytest.approx(pairs_per_element(density), rel=0.02)


def _arch(rlc: bool):
    arch = presets.eyeriss(costs="normalized")
    return arch.model_copy(
        update={"sparse": arch.sparse.model_copy(update={"rlc_activations": rlc})}
    )


def test_cost_model_charges_coded_bits_at_dram_only():
    layer = Layer(name="c", K=16, C=16, P=14, Q=14, R=3, S=3, weight_format="int16",
                  input_format="int16", output_format="int16", input_density=0.4,
                  output_density=0.3)  # fmt: skip
    raw_arch, rlc_arch = _arch(False), _arch(True)
    mapping = map_workload(Workload(name="w", layers=(layer,)), raw_arch).layers[0].result.mapping
    raw = evaluate(layer, raw_arch, mapping)
    coded = evaluate(layer, rlc_arch, mapping)
    dram = raw_arch.levels[0].name
    # DRAM input reads scale by coded / raw bits; everything on chip is unchanged
    ratio = dram_bits(0.4, 16) / 16
    assert coded.energy_by_level_pj[dram]["inputs"] == pytest.approx(
        raw.energy_by_level_pj[dram]["inputs"] * ratio
    )
    # final outputs: each of the K*P*Q*N written once at the coded width instead of 16 bits
    per_bit = raw_arch.levels[0].write_pj_per_bit
    per_bit = per_bit["outputs"] if isinstance(per_bit, dict) else per_bit
    saved = layer.output_elems * (16 - dram_bits(0.3, 16)) * per_bit
    assert raw.energy_by_level_pj[dram]["outputs"] - coded.energy_by_level_pj[dram][
        "outputs"
    ] == pytest.approx(saved)
    for lv in raw_arch.levels[1:]:
        assert coded.energy_by_level_pj[lv.name] == raw.energy_by_level_pj[lv.name]
    # dense activations: coding would grow them, so nothing changes
    dense = Layer(**{**layer.__dict__, "input_density": 1.0, "output_density": 1.0})
    assert evaluate(dense, rlc_arch, mapping).energy_pj == pytest.approx(
        evaluate(dense, raw_arch, mapping).energy_pj
    )


def test_rlc_and_compressed_storage_are_exclusive():
    from picojoule.arch import SparseSupport

    with pytest.raises(ValueError, match="pick one"):
        SparseSupport(rlc_activations=True, compressed=True)
