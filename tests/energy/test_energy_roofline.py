"""Speed of light per layer: FLOPs, bytes, bound, least time and energy."""

from __future__ import annotations

import pytest

from picojoule.energy import dram_energy_pj_per_bit, gpu, mac_energy, roofline
from picojoule.energy.speed_of_light import compute_key
from picojoule.errors import ConfigError
from picojoule.workload import Layer, Workload, apply_recipe, builtin


def _one(layer: Layer) -> Workload:
    return Workload(name="one", layers=(layer,))


def test_a_linear_layer_by_hand() -> None:
    layer = Layer(name="fc", kind="linear", N=64, K=1024, C=4096)  # int8 operands by default
    h100 = gpu("h100")
    (b,) = roofline(_one(layer), h100).layers
    assert b.flops == 2 * 64 * 1024 * 4096
    assert b.bytes_moved == 1024 * 4096 + 64 * 4096 + 64 * 1024  # one byte per element
    assert b.compute_key == "int8" and not b.sparse
    assert b.peak_ops == pytest.approx(1978.9e12)
    assert b.min_time_s == max(b.flops / 1978.9e12, b.bytes_moved / 3350e9)
    assert b.bound == "memory"  # 2*64 / 1 byte = 128 FLOP/B < ridge 590
    assert b.intensity < b.ridge
    mac = mac_energy("int8", node_nm=4, reduction=4096).energy_pj
    assert b.math_energy_pj == pytest.approx(64 * 1024 * 4096 * mac)
    assert b.memory_energy_pj == pytest.approx(b.bytes_moved * 8 * dram_energy_pj_per_bit("hbm2"))


def test_large_batch_turns_compute_bound() -> None:
    layer = Layer(name="fc", kind="linear", N=8192, K=4096, C=4096)
    (b,) = roofline(_one(layer), gpu("h100")).layers
    assert b.bound == "compute"
    assert b.min_time_s == b.flops / b.peak_ops


def test_pruned_weights_use_the_sparse_peak_and_compressed_storage() -> None:
    dense = Layer(name="fc", kind="linear", N=8192, K=4096, C=4096, weight_format="fp16",
                  input_format="fp16", output_format="fp16")  # fmt: skip
    pruned = Layer(**{**dense.__dict__, "weight_density": 0.5})
    (d,) = roofline(_one(dense), gpu("a100")).layers
    (s,) = roofline(_one(pruned), gpu("a100")).layers
    assert (d.peak_ops, s.peak_ops) == (312e12, 624e12)
    assert s.sparse and not d.sparse
    # 2:4: half the values plus a 2-bit index each -> 9 bits per weight instead of 16
    assert d.bytes_moved - s.bytes_moved == pytest.approx(4096 * 4096 * (16 - 9) / 8)
    assert s.math_energy_pj == pytest.approx(d.math_energy_pj / 2)
    # a mask that names its pattern: 2:4 and 1:4 run sparse; unstructured 50 % runs dense
    for pattern, runs_sparse in (("2:4", True), ("1:4", True), ("unstructured:0.5", False),
                                 ("4:8", False), ("block4x4:0.5", False)):  # fmt: skip
        named = Layer(**{**pruned.__dict__, "weight_pattern": pattern})
        (b,) = roofline(_one(named), gpu("a100")).layers
        assert b.sparse == runs_sparse, pattern


def test_compute_rate_falls_back_to_a_format_that_holds_the_operands() -> None:
    assert compute_key(gpu("k20x"), "int8", "int8") == "fp32"
    assert compute_key(gpu("a100"), "int4/channel", "int8/tensor") == "int8"
    assert compute_key(gpu("h100"), "nvfp4", "e4m3/tensor") == "e4m3"
    assert compute_key(gpu("b200"), "nvfp4", "nvfp4") == "e2m1"
    assert compute_key(gpu("h100"), "bf16", "fp16") == "tf32"  # e8m10 holds e8m7 and e5m10
    assert compute_key(gpu("h100"), "lns8", "lns8") == "fp32"  # emulated
    with pytest.raises(ConfigError, match="no peak rate"):
        compute_key(gpu("b200"), "lns8", "lns8")  # its datasheet lists no FP32 rate


def test_digits_cnn_with_a_recipe() -> None:
    workload = apply_recipe(builtin("digits-cnn", batch=64), "w:nvfp4,a:e4m3")
    roof = roofline(workload, gpu("h100"))
    assert [b.name for b in roof.layers] == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert roof.flops == 2 * workload.macs
    assert roof.min_time_s == pytest.approx(sum(b.min_time_s for b in roof.layers))
    assert all(b.compute_key == "e4m3" for b in roof.layers)
    assert roof.uncited == ()
