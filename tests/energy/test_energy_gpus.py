"""GPU generations: 317x reproduced and split into exact factors; TOPS/W per generation."""

from __future__ import annotations

import pytest

from picojoule.energy import gpu, gpus, peak_key, speedup
from picojoule.energy.gpu_specs import Speedup
from picojoule.errors import ConfigError


def test_317x_reproduced_to_one_percent() -> None:
    s = speedup("k20x", "a100", target_format="int8", sparse=True)
    assert s.total == pytest.approx(317, rel=0.01)
    assert s.total == pytest.approx(1248 / 3.935)


def test_both_splits_multiply_back_to_the_total() -> None:
    s = speedup()
    assert Speedup.product(s.hardware) == pytest.approx(s.total, rel=1e-12)
    assert Speedup.product(s.levers) == pytest.approx(s.total, rel=1e-12)
    hw = {f.name: f.value for f in s.hardware}
    assert hw["SM count"] == pytest.approx(108 / 14)
    assert hw["clock"] == pytest.approx(1410 / 732)
    assert hw["2:4 sparsity"] == 2.0
    levers = {f.name: f.value for f in s.levers}
    assert levers["number representation"] == pytest.approx(8.0)  # 78/19.5 x 624/312
    assert levers["complex instructions"] == pytest.approx(4.0)  # 312 / 78
    assert levers["power budget"] * levers["FP32 ops per joule"] == pytest.approx(19.5 / 3.935)


def test_dense_speedup_and_splits_that_need_missing_rates() -> None:
    s = speedup(sparse=False)
    assert s.total == pytest.approx(624 / 3.935)
    assert "2:4 sparsity" not in {f.name for f in s.levers}
    h = speedup("k20x", "h100", target_format="e4m3")
    assert h.total == pytest.approx(3957.8 / 3.935)
    assert h.levers == ()  # the H100 datasheet gives no SIMT FP16 rate
    assert speedup("k20x", "b200", target_format="e2m1").hardware == ()  # no SM count/clock


def test_tops_per_watt_matches_the_seed() -> None:
    a100 = gpu("a100")
    assert a100.tops_per_watt("int8", sparse=True) == pytest.approx(3.12)  # seed: ~3.1
    assert a100.tops_per_watt("int4", sparse=True) == pytest.approx(6.24)  # seed: ~6.2
    assert [g.name for g in gpus()][:2] == ["k20x", "p100"]  # oldest first
    assert all(g.citation for g in gpus())


def test_peak_lookup_by_format_name() -> None:
    h100 = gpu("H100")
    assert gpu("b200").peak("nvfp4") == pytest.approx(9000e12)  # NVFP4 runs at the FP4 rate
    assert peak_key("mxfp4") == "e2m1"
    assert peak_key("float8_e4m3fn") == "e4m3"
    assert peak_key("bfloat16") == "bf16"
    assert peak_key("int8/channel") == "int8"
    assert h100.peak("bf16", sparse=True) == pytest.approx(1978.9e12)


def test_bad_input_names_nearest() -> None:
    with pytest.raises(ConfigError, match="did you mean: a100"):
        gpu("a10")
    with pytest.raises(ConfigError, match="no dense peak for int8"):
        gpu("k20x").peak("int8")
    with pytest.raises(ConfigError, match="no native rate"):
        peak_key("lns8")
