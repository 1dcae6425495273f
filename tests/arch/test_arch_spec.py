"""Architecture specs: presets, YAML round trip, and one clear message per malformed spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from picojoule.arch import ArchError, arch_from_dict, arch_to_yaml, load_arch, presets, save_arch
from picojoule.errors import ConfigError, PicojouleError

ALL_PRESETS = [
    presets.eyeriss(),
    presets.eyeriss(costs="normalized"),
    *(presets.eyeriss(dataflow=d) for d in ("rs", "ws", "os", "nlr")),
    presets.simba(),
    *(presets.magnet(dataflow=d) for d in ("ws", "os", "local-ws", "local-os")),
    presets.nvdla(),
    presets.tensor_core_sm(),
]


@pytest.mark.parametrize("arch", ALL_PRESETS, ids=lambda a: a.name)
def test_presets_round_trip_through_yaml(arch, tmp_path: Path) -> None:
    path = save_arch(arch, tmp_path / "arch.yaml")
    assert load_arch(path) == arch
    assert arch_from_dict(yaml.safe_load(arch_to_yaml(arch))) == arch


def test_preset_sizes_match_their_sources() -> None:
    assert presets.eyeriss().lanes == 12 * 14
    assert presets.simba().lanes == 36 * 16 * 8 * 8
    assert presets.nvdla().lanes == 2048
    assert presets.tensor_core_sm().lanes == 4 * 256
    glb = presets.eyeriss().levels[1]
    assert glb.capacity_bits == 108 * 1024 * 8
    assert presets.eyeriss().levels[2].partition_bits == {
        "weights": 224 * 16,
        "inputs": 12 * 16,
        "outputs": 24 * 16,
    }


def test_eyeriss_normalized_costs_are_the_papers_ratios() -> None:
    arch = presets.eyeriss(costs="normalized", mac_pj=2.0)
    per_word = {lv.name: lv.read_pj_per_bit * 16 for lv in arch.levels}
    assert per_word == {"DRAM": 400.0, "GlobalBuffer": 12.0, "RegisterFile": 2.0}
    assert arch.levels[1].fanout.network_pj_per_bit * 16 == 4.0
    assert arch.mac.energy_pj == 2.0


def test_magnet_is_parameterized_for_design_space_exploration() -> None:
    arch = presets.magnet(vector_width=16, vector_units=4, weight_buffer_kb=64, pe_x=2, pe_y=2)
    assert arch.lanes == 16 * 4 * 2 * 2
    assert arch.levels[2].partition_bits["weights"] == 64 * 1024 * 8
    local = presets.magnet(dataflow="local-os", collector_words=4, vector_width=16)
    collector = local.levels[-1]
    assert collector.holds == ("outputs",) and collector.capacity_bits == 4 * 16 * 24
    with pytest.raises(ConfigError, match="dataflow"):
        presets.magnet(dataflow="rs")
    with pytest.raises(ConfigError, match="vector_width"):
        presets.magnet(vector_width=0)
    with pytest.raises(ConfigError, match="see its docstring"):
        presets.preset("magnet", vector_wdith=8)


def _spec() -> dict:
    return yaml.safe_load(arch_to_yaml(presets.eyeriss(costs="normalized")))


def test_unknown_operand_names_the_field_and_the_choices() -> None:
    data = _spec()
    data["levels"][1]["holds"] = ["inputs", "weight"]
    with pytest.raises(ArchError) as err:
        arch_from_dict(data, "my.yaml")
    msg = str(err.value)
    assert "levels.1.holds.1" in msg and "'weight'" in msg and "weights, inputs, outputs" in msg


def test_unknown_field_suggests_the_nearest() -> None:
    data = _spec()
    data["levels"][1]["capacity_bit"] = 100
    with pytest.raises(ArchError, match=r"unknown field 'levels.1.capacity_bit'.*capacity_bits"):
        arch_from_dict(data)


def test_outer_level_must_hold_everything() -> None:
    data = _spec()
    data["levels"][0]["holds"] = ["weights", "inputs"]
    with pytest.raises(ArchError, match=r"must hold every operand.*add \['outputs'\]"):
        arch_from_dict(data)


def test_partition_must_match_holds() -> None:
    data = _spec()
    data["levels"][2]["partition_bits"]["psums"] = 8
    with pytest.raises(ArchError, match="levels.2.partition_bits"):
        arch_from_dict(data)


def test_malformed_yaml_names_line_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nlevels:\n  - name: DRAM\n   holds: [weights]\n")
    with pytest.raises(ArchError, match=r"bad.yaml: line 4.*fix the syntax"):
        load_arch(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ArchError, match="expected a mapping"):
        load_arch(path)


def test_unknown_preset_or_missing_file() -> None:
    with pytest.raises(PicojouleError, match="did you mean: eyeriss"):
        load_arch("eyeris")
    with pytest.raises(ConfigError, match="dataflow"):
        presets.eyeriss(dataflow="xs")


def test_the_yaml_example_in_the_docs_loads(tmp_path: Path) -> None:
    docs = Path(__file__).parents[2] / "docs" / "accelerator.md"
    block = docs.read_text().split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my.yaml"
    path.write_text(block)
    arch = load_arch(path)
    assert arch.name == "my-accel" and arch.lanes == 16 * 64
    assert arch.levels[2].stationary == "weights"


def test_eyeriss_sizes_for_area_matched_studies():
    """The ISCA 2016 comparison's knobs: array size, buffer and per-operand scratchpads."""
    chip = presets.eyeriss()
    assert chip.levels[1].fanout.mesh_x * chip.levels[1].fanout.mesh_y == 168
    assert chip.levels[1].capacity_bits == 108 * 1024 * 8
    assert chip.levels[2].partition_bits == {"weights": 3584, "inputs": 192, "outputs": 384}
    ws = presets.eyeriss(dataflow="ws", pe_rows=16, pe_cols=16, buffer_bits=1 << 20,
                         spad_bits={"weights": 4096})  # fmt: skip
    assert ws.levels[1].fanout.mesh_x == ws.levels[1].fanout.mesh_y == 16
    assert ws.levels[1].capacity_bits == 1 << 20
    assert ws.levels[2].partition_bits == {"weights": 4096}
    with pytest.raises(ConfigError, match="spad_bits lacks"):
        presets.eyeriss(dataflow="os", spad_bits={"weights": 4096})
    nlr = presets.eyeriss(dataflow="nlr", buffer_bits=1 << 23, spad_bits={})
    assert len(nlr.levels) == 2 and nlr.levels[1].capacity_bits == 1 << 23
