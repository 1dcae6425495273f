"""Instruction overhead: the seed's 2000% / 500% / 22% / 16% from stated inputs."""

from __future__ import annotations

import pytest

from picojoule.energy import INSTRUCTIONS, instruction_energy, node_factor, reproduce_published
from picojoule.energy.overhead import OVERHEAD_PJ
from picojoule.errors import ConfigError


def _by_name(**kw) -> dict:
    return {r.name: r for r in reproduce_published(**kw)}


def test_hfma_and_hdp4a_are_overhead_over_math() -> None:
    rows = _by_name()
    assert round(rows["HFMA"].over_math_pct) == 2000  # 30 / 1.5
    assert round(rows["HDP4A"].over_math_pct) == 500  # 30 / 6
    assert rows["HFMA"].matches == rows["HDP4A"].matches == "overhead/math"


def test_imma_is_overhead_over_total() -> None:
    imma = _by_name()["IMMA"]
    assert round(imma.over_total_pct) == 16  # 30 / (30 + 160) = 15.8%
    assert imma.matches == "overhead/total"


def test_hmma_22_percent_is_overhead_over_total_rounded_up() -> None:
    """No definition gives Dally's 22% from his own 30 pJ and 110 pJ to the nearest percent;
    overhead/total gives 21.4% - the closest, and the one the docs report."""
    hmma = _by_name()["HMMA"]
    assert hmma.over_total_pct == pytest.approx(100 * 30 / 140)
    assert hmma.over_math_pct == pytest.approx(100 * 30 / 110)
    assert hmma.matches == "neither"
    assert hmma.closest[0] == "overhead/total"
    assert abs(hmma.closest[1] - 22) < 1.0


def test_bottom_up_math_from_the_cited_op_table() -> None:
    hfma = instruction_energy("HFMA", math="bottom-up")
    assert hfma.math_pj == pytest.approx(1.1 + 0.4)  # Horowitz FP16 mul + add = Dally's 1.5
    imma = instruction_energy("imma", math="bottom-up")
    assert imma.math_pj == pytest.approx(512 * (0.2 + 0.1))  # INT8 mul + INT32 add
    hmma = instruction_energy("HMMA", math="bottom-up")
    assert hmma.math_pj == pytest.approx(64 * (1.1 + 0.9))  # FP16 mul + FP32 add
    rows = _by_name(math="bottom-up")
    assert round(rows["HFMA"].over_math_pct) == 2000
    assert round(rows["IMMA"].over_total_pct) == 16


def test_energy_per_op_falls_with_instruction_size() -> None:
    per_op = [instruction_energy(n).pj_per_op for n in INSTRUCTIONS]
    assert per_op == sorted(per_op, reverse=True)
    assert INSTRUCTIONS["HMMA"].ops == 128


def test_node_scaling_keeps_the_ratios() -> None:
    at7 = instruction_energy("HMMA", node_nm=7)
    at45 = instruction_energy("HMMA")
    assert at7.overhead_pj == pytest.approx(OVERHEAD_PJ * node_factor(7))
    assert at7.overhead_over_total == pytest.approx(at45.overhead_over_total)


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="did you mean: HMMA"):
        instruction_energy("HMMMA")
    with pytest.raises(ConfigError, match="published"):
        instruction_energy("HFMA", math="measured")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=">= 0"):
        instruction_energy("HFMA", overhead_pj=-1)
