"""Closed-form cases, mapping validity, and the directions and sizes of format/sparsity effects."""

from __future__ import annotations

import math

import pytest

from picojoule.arch import Arch, Fanout, MacUnit, MemoryLevel, SparseSupport
from picojoule.mapping import Mapping, MappingError, check_mapping, evaluate
from picojoule.workload import DIMS, Layer

ALL = ("weights", "inputs", "outputs")
DRAM_PJ, RF_PJ, MAC_PJ = 2.0, 0.5, 1.0


def _arch(levels: list[MemoryLevel], **kw: object) -> Arch:
    return Arch(
        name="t", levels=tuple(levels), mac=MacUnit(energy_pj=MAC_PJ, accumulator_bits=24), **kw
    )


def _dram(**kw: object) -> MemoryLevel:
    return MemoryLevel(
        name="DRAM",
        holds=ALL,
        memory="dram",
        read_pj_per_bit=DRAM_PJ,
        write_pj_per_bit=DRAM_PJ,
        **kw,
    )


def _mapping(
    *levels: tuple[dict[str, int], str], spatial: dict[int, dict[str, int]] | None = None
) -> Mapping:
    spatial = spatial or {}
    return Mapping(
        temporal=tuple(tuple(t.get(d, 1) for d in DIMS) for t, _ in levels),
        spatial_x=tuple(
            tuple(spatial.get(i, {}).get(d, 1) for d in DIMS) for i in range(len(levels))
        ),
        spatial_y=tuple(tuple(1 for _ in DIMS) for _ in levels),
        order=tuple(tuple(order) for _, order in levels),
    )


LAYER = Layer(
    name="l",
    N=2,
    K=4,
    C=3,
    P=5,
    Q=1,
    R=3,
    weight_format="int8",
    input_format="int8",
    output_format="int8",
)


def test_single_level_reads_every_operand_every_mac() -> None:
    """DRAM + MACs: each MAC reads a weight and an input and writes a psum; psum reads skip
    each output's first visit; the final outputs leave at 8 bits, psums move at 24."""
    cost = evaluate(
        LAYER, _arch([_dram()]), _mapping(({d: getattr(LAYER, d) for d in DIMS}, "NGKCPQRS"))
    )
    macs, outs = LAYER.macs, LAYER.output_elems
    assert cost.reads["DRAM"] == {"weights": macs, "inputs": macs, "outputs": macs - outs}
    assert cost.writes["DRAM"] == {"weights": 0, "inputs": 0, "outputs": macs}
    want_pj = DRAM_PJ * (8 * macs + 8 * macs + 24 * (macs - outs) + 24 * (macs - outs) + 8 * outs)
    assert cost.energy_by_level_pj["DRAM"] == pytest.approx(
        {
            "weights": DRAM_PJ * 8 * macs,
            "inputs": DRAM_PJ * 8 * macs,
            "outputs": want_pj - 2 * DRAM_PJ * 8 * macs,
        }
    )
    assert cost.energy_pj == pytest.approx(want_pj + MAC_PJ * macs)
    assert cost.cycles == macs and cost.utilization == 1.0


def test_weight_stationary_register_reads_each_weight_from_dram_once() -> None:
    """A weight register under DRAM with the weight-irrelevant loops (N, P) innermost at the
    register: DRAM sends each weight once; the register serves every MAC."""
    rf = MemoryLevel(
        name="RF",
        holds=("weights",),
        capacity_bits=8,
        read_pj_per_bit=RF_PJ,
        write_pj_per_bit=RF_PJ,
    )
    arch = _arch([_dram(), rf])
    mapping = _mapping(({"K": 4, "C": 3, "R": 3}, "KCRNGPQS"), ({"N": 2, "P": 5}, "NPGKCQRS"))
    cost = evaluate(LAYER, arch, mapping)
    assert cost.reads["DRAM"]["weights"] == LAYER.weight_elems
    assert cost.writes["RF"]["weights"] == LAYER.weight_elems
    assert cost.reads["RF"]["weights"] == LAYER.macs
    # All loops at DRAM: the order alone decides. N, P innermost keep the weight in place;
    # N, P outermost change it every cycle.
    kept = _mapping(({d: getattr(LAYER, d) for d in DIMS}, "KCRGQSNP"), ({}, "NGKCPQRS"))
    assert evaluate(LAYER, arch, kept).reads["DRAM"]["weights"] == LAYER.weight_elems
    moved = _mapping(({d: getattr(LAYER, d) for d in DIMS}, "NPKCRGQS"), ({}, "NGKCPQRS"))
    assert evaluate(LAYER, arch, moved).reads["DRAM"]["weights"] == LAYER.macs


def test_spatial_multicast_and_reduction() -> None:
    """K unrolled over 4 lanes: each input is read once per cycle for all 4 lanes; C over 3
    lanes: the 3 partial sums reduce to one write."""
    fan = Fanout(mesh_x=12, network_pj_per_bit=0.25)
    arch = _arch([_dram(fanout=fan)])
    mapping = _mapping(({"N": 2, "P": 5, "R": 3}, "NGKCPQRS"), spatial={0: {"K": 4, "C": 3}})
    cost = evaluate(LAYER, arch, mapping)
    steps = LAYER.macs // 12
    assert cost.reads["DRAM"]["inputs"] == steps * 3
    assert cost.reads["DRAM"]["weights"] == steps * 12
    assert cost.writes["DRAM"]["outputs"] == steps * 4
    assert cost.cycles == steps and cost.spatial_utilization == 1.0


@pytest.mark.parametrize(
    ("mapping", "match"),
    [
        (
            _mapping(
                ({"N": 2, "K": 4, "C": 3, "P": 5}, "NGKCPQRS"),
            ),
            "loop R: factors multiply",
        ),
        (_mapping(({d: getattr(LAYER, d) for d in DIMS}, "NGKCPQR")), "must list each"),
        (
            _mapping(({"N": 2, "P": 5, "R": 3, "C": 3}, "NGKCPQRS"), spatial={0: {"K": 4}}),
            "no fanout",
        ),
    ],
)
def test_invalid_mappings_name_the_rule(mapping: Mapping, match: str) -> None:
    with pytest.raises(MappingError, match=match):
        evaluate(LAYER, _arch([_dram()]), mapping)


def test_capacity_and_fanout_limits_are_enforced() -> None:
    rf = MemoryLevel(name="RF", holds=("weights",), capacity_bits=8 * 8)
    arch = _arch([_dram(fanout=Fanout(mesh_x=3, x_dims=("K",))), rf])
    bits = {"weights": 8.0, "inputs": 8.0, "outputs": 24.0}
    too_big = _mapping(({"N": 2, "P": 5, "K": 4}, "NGKCPQRS"), ({"C": 3, "R": 3}, "NGKCPQRS"))
    with pytest.raises(MappingError, match="tiles need 72 bits but capacity is 64"):
        check_mapping(too_big, LAYER, arch, bits)
    wide = _mapping(
        ({"N": 2, "P": 5, "C": 3, "R": 3}, "NGKCPQRS"), ({}, "NGKCPQRS"), spatial={0: {"K": 4}}
    )
    with pytest.raises(MappingError, match="uses 4 copies but the fanout has 3"):
        check_mapping(wide, LAYER, arch, bits)
    wrong_dim = _mapping(
        ({"N": 2, "P": 5, "K": 4, "R": 3}, "NGKCPQRS"), ({}, "NGKCPQRS"), spatial={0: {"C": 3}}
    )
    with pytest.raises(MappingError, match="loop C cannot unroll along x"):
        check_mapping(wrong_dim, LAYER, arch, bits)


def _two_level(**arch_kw: object) -> tuple[Arch, Mapping]:
    rf = MemoryLevel(
        name="RF", holds=ALL, capacity_bits=4096, read_pj_per_bit=RF_PJ, write_pj_per_bit=RF_PJ
    )
    mapping = _mapping(({"K": 4, "N": 2}, "NGKCPQRS"), ({"C": 3, "P": 5, "R": 3}, "NGKPQCRS"))
    return _arch([_dram(), rf], **arch_kw), mapping


def test_halving_weight_bits_halves_weight_traffic_energy_exactly() -> None:
    from dataclasses import replace

    arch, mapping = _two_level()
    wide = evaluate(replace(LAYER, weight_format="int8"), arch, mapping)
    narrow = evaluate(replace(LAYER, weight_format="int4"), arch, mapping)
    for level in ("DRAM", "RF"):
        assert narrow.energy_by_level_pj[level]["weights"] == pytest.approx(
            wide.energy_by_level_pj[level]["weights"] / 2
        )
        assert (
            narrow.energy_by_level_pj[level]["inputs"] == wide.energy_by_level_pj[level]["inputs"]
        )
    # Block-scaled formats pay their amortized scale bits: mxfp4 is 4.25 bits per element.
    mx = evaluate(replace(LAYER, weight_format="mxfp4"), arch, mapping)
    assert mx.energy_by_level_pj["DRAM"]["weights"] == pytest.approx(
        wide.energy_by_level_pj["DRAM"]["weights"] * 4.25 / 8
    )


def test_sparsity_gating_and_compression_change_energy_by_the_density() -> None:
    from dataclasses import replace

    sparse = replace(LAYER, weight_density=0.25, input_density=0.5)
    arch, mapping = _two_level()
    dense_cost = evaluate(sparse, arch, mapping)
    gated, _ = _two_level(sparse=SparseSupport(gate_zero_macs=True))
    assert evaluate(sparse, gated, mapping).mac_energy_pj == pytest.approx(
        dense_cost.mac_energy_pj * 0.25 * 0.5
    )
    packed, _ = _two_level(sparse=SparseSupport(compressed=True, metadata_bits_per_element=1.0))
    got = evaluate(sparse, packed, mapping)
    for level in ("DRAM", "RF"):
        assert got.energy_by_level_pj[level]["weights"] == pytest.approx(
            dense_cost.energy_by_level_pj[level]["weights"] * (0.25 * 8 + 1) / 8
        )
        assert got.energy_by_level_pj[level]["inputs"] == pytest.approx(
            dense_cost.energy_by_level_pj[level]["inputs"] * (0.5 * 8 + 1) / 8
        )
    assert got.mac_energy_pj == dense_cost.mac_energy_pj  # compression alone gates nothing
    # Eyeriss-style data gating: only zero inputs skip the MAC; weights' zeros do not.
    input_gated, _ = _two_level(sparse=SparseSupport(gate_zero_inputs=True))
    assert evaluate(sparse, input_gated, mapping).mac_energy_pj == pytest.approx(
        dense_cost.mac_energy_pj * 0.5
    )


def test_eyeriss_preset_gates_zero_inputs_only() -> None:
    from picojoule.arch.presets import preset

    sp = preset("eyeriss").sparse
    assert sp.gate_zero_inputs and not sp.gate_zero_macs
    assert sp.mac_density(0.25, 0.5) == 0.5


def test_bandwidth_bound_latency() -> None:
    arch = _arch([_dram(bandwidth_bits_per_cycle=4.0)])
    cost = evaluate(LAYER, arch, _mapping(({d: getattr(LAYER, d) for d in DIMS}, "NGKCPQRS")))
    macs, outs = LAYER.macs, LAYER.output_elems
    bits = 8 * macs + 8 * macs + 24 * (macs - outs) + 24 * (macs - outs) + 8 * outs
    assert cost.cycles == pytest.approx(bits / 4.0)
    assert cost.bound_by == "DRAM"
    assert cost.utilization == pytest.approx(macs / cost.cycles)
    assert math.isclose(cost.latency_s, cost.cycles / 1e9)
