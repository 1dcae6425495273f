"""Energies of presets come from picojoule.energy where the spec is silent."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from picojoule.arch import presets
from picojoule.arch.energy import resolve_energy
from picojoule.energy import dram_energy_pj_per_bit, mac_energy, sram_energy_pj
from picojoule.mapping import search
from picojoule.mapping.network import speed_of_light
from picojoule.workload import Layer

LAYER = Layer(name="c", K=16, C=8, P=4, Q=4, R=3, S=3)


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_maps_a_layer_above_its_speed_of_light(name: str) -> None:
    arch = presets.preset(name)
    energy = resolve_energy(arch, LAYER)
    for l, level in enumerate(arch.levels):
        held = [i for i, op in enumerate(("weights", "inputs", "outputs")) if op in level.holds]
        assert (energy.read_pj_per_bit[l, held] > 0).all()
    found = search(LAYER, arch, samples=100, starts=2)
    bound = speed_of_light(LAYER, arch, energy)
    assert bound.energy_pj < found.cost.energy_pj
    assert bound.cycles <= found.cost.cycles


def test_table_energies_are_the_energy_packages() -> None:
    arch = presets.eyeriss()
    energy = resolve_energy(arch, LAYER)
    glb = arch.levels[1]
    want = sram_energy_pj(glb.capacity_bits / 8, glb.width_bits, node_nm=65) / glb.width_bits
    assert energy.read_pj_per_bit[1, 1] == pytest.approx(want)
    assert energy.read_pj_per_bit[0, 0] == pytest.approx(dram_energy_pj_per_bit("lpddr4"))
    assert energy.mac_pj == pytest.approx(mac_energy("int16", node_nm=65).energy_pj)
    # A partitioned level prices each scratchpad by its own size: the 224-word filter pad
    # costs more per bit than the 12-word ifmap pad.
    rf = energy.read_pj_per_bit[2]
    assert rf[0] > rf[1]


def test_native_format_mac_energy_follows_the_layer() -> None:
    arch = presets.magnet(mac_format=None)
    e8 = resolve_energy(arch, LAYER).mac_pj
    e4 = resolve_energy(arch, replace(LAYER, weight_format="int4", input_format="int4")).mac_pj
    assert e4 < e8
    assert e8 == pytest.approx(mac_energy("int8", input_format="int8", node_nm=16).energy_pj)
    assert np.isfinite(e4)
