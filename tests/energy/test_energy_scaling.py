"""Node scaling: the tabulated factors, derived from their stated source, applied exactly."""

from __future__ import annotations

import pytest

from picojoule.energy import load_table, mac_energy, node_factor, op_energy_pj, scale_energy
from picojoule.energy.scaling import node_scaling
from picojoule.errors import ConfigError

# Stillmaker & Baas, Integration 58 (2017): energy(V) = a V^2 + b V + c; (a, b, c, V used)
STILLMAKER = {
    130: (7.171, -6.709, 2.904, 1.3),
    90: (4.762, -4.781, 2.092, 1.2),
    65: (3.755, -4.398, 1.975, 1.1),
    45: (1.018, -0.3107, 0.1539, 0.9),
    32: (0.8367, -0.4341, 0.1701, 0.9),
    20: (0.373, -0.1582, 0.04104, 0.9),
    16: (0.2958, -0.1241, 0.03024, 0.85),
    14: (0.2363, -0.09675, 0.02239, 0.8),
    10: (0.2068, -0.09311, 0.02375, 0.75),
    7: (0.1776, -0.09097, 0.02447, 0.7),
}


def _energy(node: int) -> float:
    a, b, c, v = STILLMAKER[node]
    return a * v * v + b * v + c


@pytest.mark.parametrize("node", sorted(STILLMAKER))
def test_table_matches_its_stated_derivation(node: int) -> None:
    assert node_factor(node) == pytest.approx(
        _energy(node) / _energy(45), rel=5e-4
    )  # 4 significant digits


def test_derived_rows() -> None:
    f32, f20 = node_factor(32), node_factor(20)
    assert node_factor(28) == pytest.approx(
        f32 + (f20 - f32) * (32 - 28) / (32 - 20), rel=5e-4
    )  # 4 significant digits
    assert node_factor(5) == pytest.approx(0.7 * node_factor(7), rel=5e-4)  # TSMC N5 vs N7
    assert node_factor(12) == node_factor(16)
    assert node_factor(4) == node_factor(5)


def test_the_requested_chain_45_28_16_7_5_is_monotone() -> None:
    chain = [node_factor(n) for n in (45, 28, 16, 7, 5)]
    assert chain == sorted(chain, reverse=True)
    assert chain[0] == 1.0


def test_factors_are_applied_exactly() -> None:
    assert scale_energy(10.0, 45, 7) == 10.0 * node_factor(7)
    assert scale_energy(10.0, 28, 7) == 10.0 * node_factor(7) / node_factor(28)
    assert scale_energy(scale_energy(3.0, 45, 16), 16, 45) == pytest.approx(3.0, rel=1e-15)
    assert op_energy_pj("mul", "int8", node_nm=7) == 0.2 * node_factor(7)
    base = mac_energy("nvfp4")
    at7 = mac_energy("nvfp4", node_nm=7)
    assert at7.energy_pj == pytest.approx(base.energy_pj * node_factor(7), rel=1e-12)
    assert at7.node_nm == 7
    assert sum(at7.breakdown.values()) == pytest.approx(at7.energy_pj, rel=1e-12)


def test_unknown_node_names_the_nearest() -> None:
    with pytest.raises(ConfigError, match=r"no energy factor for a 6 nm.*7 nm, 5 nm"):
        scale_energy(1.0, 45, 6)
    with pytest.raises(ConfigError, match="nearest tabulated"):
        mac_energy("int8", node_nm=3)


def test_overrides_replace_one_factor_and_are_marked() -> None:
    scaling = node_scaling(overrides={7: 0.1, 3: 0.02})
    assert scaling.factor(7) == 0.1
    assert scaling.factor(3) == 0.02
    assert scaling.factor(16) == node_factor(16)
    assert "override: 7 nm" in scaling.uncited
    assert scale_energy(1.0, 45, 3, scaling=scaling) == 0.02
    with pytest.raises(ConfigError, match="positive"):
        node_scaling(overrides={7: -1.0})


def test_user_nodes_table(tmp_path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("node_nm,energy_factor,citation\n45,1,ref\n3,0.03,foundry sheet\n")
    scaling = node_scaling(table=load_table("nodes", path))
    assert scaling.ratio(45, 3) == 0.03
    assert scaling.citation(3) == "foundry sheet"
