"""N:M sparse engines (the A100 sparse tensor core): pruned layers run in N/M of the math."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn as nn
from pydantic import ValidationError

from picojoule.arch import SparseSupport, presets
from picojoule.arch.energy import operand_bits
from picojoule.mapping import evaluate, search
from picojoule.workload import Layer


def test_which_patterns_an_engine_runs():
    engine = SparseSupport(structured="2:4")
    assert engine.structured_fraction("2:4") == 0.5
    assert engine.structured_fraction("1:4") == 0.5  # fits the 2:4 datapath, runs as 2:4
    for other in ("4:8", "3:4", "unstructured:0.5", "block4x4:0.5", ""):
        assert engine.structured_fraction(other) is None
    assert SparseSupport().structured_fraction("2:4") is None
    assert engine.structured_metadata_bits() == 1.0  # a 2-bit index per kept value
    assert SparseSupport(structured="4:8").structured_metadata_bits() == 1.5
    with pytest.raises(ValidationError, match="0 < N < M"):
        SparseSupport(structured="4:2")
    with pytest.raises(ValidationError, match="not an N:M pattern"):
        SparseSupport(structured="half")


def test_same_mapping_half_the_math_and_compressed_weights():
    arch = presets.tensor_core_sm()
    dense = Layer(name="fc", kind="linear", N=64, K=512, C=1024, weight_format="fp16",
                  input_format="fp16", output_format="fp16")  # fmt: skip
    pruned = replace(dense, weight_density=0.5, weight_pattern="2:4")
    unstructured = replace(dense, weight_density=0.5, weight_pattern="unstructured:0.5")
    assert operand_bits(arch, pruned)["weights"] == 0.5 * 16 + 1.0
    assert operand_bits(arch, unstructured)["weights"] == 16.0
    mapping = search(dense, arch).mapping
    d, p, u = (evaluate(x, arch, mapping) for x in (dense, pruned, unstructured))
    assert p.mac_energy_pj == pytest.approx(d.mac_energy_pj / 2)
    assert p.compute_cycles == -(-d.compute_cycles // 2)
    assert p.reads == d.reads  # the same elements move; each weight costs fewer bits
    w = "weights"
    for level in d.energy_by_level_pj:
        if w in d.energy_by_level_pj[level] and d.energy_by_level_pj[level][w] > 0:
            assert p.energy_by_level_pj[level][w] == pytest.approx(
                d.energy_by_level_pj[level][w] * 9 / 16
            )
    assert (u.energy_pj, u.cycles) == (d.energy_pj, d.cycles)  # unstructured runs dense
    assert p.issued_macs == dense.macs / 2 and 0 < p.utilization <= 1.0


def test_sparsified_model_reaches_the_engine():
    from picojoule.sparsity import sparsify_
    from picojoule.workload import from_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    sparsify_(model, "2:4")  # the classifier (last Linear) stays dense by default
    layers = from_model(model, torch.randn(8, 256)).layers
    assert [(layer.weight_pattern, layer.weight_density) for layer in layers] == [
        ("2:4", 0.5),
        ("", 1.0),
    ]
