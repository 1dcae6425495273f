"""Latency fields of an arch spec: ports, double buffering, network, padding; checked ranges
and a YAML round trip."""

from __future__ import annotations

import pytest

from picojoule.arch import ArchError, arch_from_dict, arch_to_yaml, load_arch, presets


def _spec(**dram: object) -> dict:
    return {
        "name": "a",
        "levels": [
            {"name": "DRAM", "holds": ["weights", "inputs", "outputs"], "memory": "dram", **dram},
            {
                "name": "Buf",
                "holds": ["inputs"],
                "capacity_bits": 4096,
                "double_buffered": False,
                "write_bandwidth_bits_per_cycle": 64,
                "fanout": {"mesh_x": 4, "bandwidth_bits_per_cycle": 32, "multicast": False},
            },
        ],
        "padding_reads": True,
    }


def test_latency_fields_round_trip(tmp_path) -> None:
    arch = arch_from_dict(_spec(read_bandwidth_bits_per_cycle=16))
    assert arch.levels[0].read_bandwidth_bits_per_cycle == 16
    assert arch.levels[1].double_buffered is False
    assert arch.levels[1].fanout.multicast is False and arch.padding_reads
    path = tmp_path / "a.yaml"
    path.write_text(arch_to_yaml(arch))
    assert load_arch(path) == arch


def test_defaults_keep_presets_unchanged() -> None:
    for level in presets.eyeriss().levels:
        assert level.double_buffered is None
        assert level.read_bandwidth_bits_per_cycle is None
        assert level.write_bandwidth_bits_per_cycle is None
    assert not presets.eyeriss().padding_reads
    assert presets.eyeriss().levels[1].fanout.multicast


@pytest.mark.parametrize(
    ("dram", "match"),
    [
        ({"read_bandwidth_bits_per_cycle": 0}, r"levels\.0\.read_bandwidth_bits_per_cycle: 0 "),
        ({"write_bandwidth_bits_per_cycle": 1e12}, "out of range 0.001..2\\^30 bits/cycle"),
        ({"read_bandwidth_bits_per_cycle": "fast"}, "expected a number of bits/cycle"),
        ({"double_buffered": "sometimes"}, r"levels\.0\.double_buffered: expected true or false"),
    ],
)
def test_bad_latency_fields_name_the_field(dram: dict, match: str) -> None:
    with pytest.raises(ArchError, match=match):
        arch_from_dict(_spec(**dram))
