"""SRAM size model and DRAM energy per bit."""

from __future__ import annotations

import pytest

from picojoule.energy import dram_energy_pj_per_bit, node_factor, sram_energy_pj, sram_model
from picojoule.energy.memory import STATED_FIT_ERROR
from picojoule.errors import ConfigError


def test_sram_model_hits_the_horowitz_points_within_its_stated_error() -> None:
    model = sram_model()
    for capacity, width, table_pj, model_pj in model.anchors:
        assert abs(model_pj / table_pj - 1) <= STATED_FIT_ERROR, (capacity, width)
    assert sram_energy_pj(8192, 64) == pytest.approx(10, rel=STATED_FIT_ERROR)
    assert 0.4 < model.alpha < 0.55  # about sqrt(capacity), as wire length suggests


def test_sram_grows_with_capacity_and_width_and_scales_with_node() -> None:
    assert sram_energy_pj(4096, 64) < sram_energy_pj(8192, 64) < sram_energy_pj(2**20, 64)
    assert sram_energy_pj(8192, 128) == pytest.approx(2 * sram_energy_pj(8192, 64))
    assert sram_energy_pj(8192, 64, node_nm=7) == pytest.approx(
        sram_energy_pj(8192, 64) * node_factor(7)
    )
    assert sram_energy_pj(8192, 64, write=True) == sram_energy_pj(8192, 64)
    assert sram_model().extrapolated(64) and not sram_model().extrapolated(65536)


def test_dram_energy_per_bit() -> None:
    assert dram_energy_pj_per_bit("hbm2") == 3.9
    assert dram_energy_pj_per_bit() == 14.0  # lpddr4 is the contract's default
    assert dram_energy_pj_per_bit("DDR3") == pytest.approx(1300 / 64, rel=0.01)


def test_bad_memory_input() -> None:
    with pytest.raises(ConfigError, match="did you mean: hbm2"):
        dram_energy_pj_per_bit("hbm")
    with pytest.raises(ConfigError, match="positive"):
        sram_energy_pj(0, 64)
