"""The latency model (overlapped phase + stalls + fill/drain), padding, utilization warnings
and the latency objective's tie-break: hand counts and directions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from picojoule.arch import Arch, Fanout, MacUnit, MemoryLevel, presets
from picojoule.mapping import Mapping, evaluate, search
from picojoule.mapping.utilization import spatial_bound, utilization_warnings
from picojoule.workload import DIMS, Layer, builtin

ALL = ("weights", "inputs", "outputs")


def _mapping(*levels: tuple[dict[str, int], str], spatial: dict | None = None) -> Mapping:
    spatial = spatial or {}
    return Mapping(
        temporal=tuple(tuple(t.get(d, 1) for d in DIMS) for t, _ in levels),
        spatial_x=tuple(
            tuple(spatial.get(i, {}).get(d, 1) for d in DIMS) for i in range(len(levels))
        ),
        spatial_y=tuple(tuple(1 for _ in DIMS) for _ in levels),
        order=tuple(tuple(order) for _, order in levels),
    )


def _dram(**kw: object) -> MemoryLevel:
    return MemoryLevel(
        name="DRAM", holds=ALL, memory="dram", read_pj_per_bit=1.0, write_pj_per_bit=1.0, **kw
    )


def _arch(*levels: MemoryLevel, **kw: object) -> Arch:
    return Arch(name="t", levels=levels, mac=MacUnit(energy_pj=1.0, accumulator_bits=24), **kw)


LAYER = Layer(name="l", K=4, C=3, P=5)  # int8 weights, inputs and outputs; 60 MACs


def _rf(**kw: object) -> MemoryLevel:
    return MemoryLevel(name="RF", holds=("weights",), capacity_bits=1024, **kw)


def test_weights_loaded_once_fill_then_throttled_stream() -> None:
    """Weights reach the RF once (P iterates above it and does not index them): 12 x 8 bits
    over an 8 bit/cycle DRAM port is a 12-cycle fill that nothing overlaps. Inputs and
    psums stream from DRAM every MAC: 60 x 8 input bits, 60 psum writes at 24 bits less the
    20 final outputs' 16 saved bits, 40 psum reads at 24 bits: 2,560 bits / 8 = 320 cycles,
    the overlapped phase (compute is 60). Total 332."""
    arch = _arch(_dram(bandwidth_bits_per_cycle=8), _rf())
    cost = evaluate(LAYER, arch, _mapping(({"P": 5}, "PNGKCQRS"), ({"K": 4, "C": 3}, "KCNGPQRS")))
    assert cost.fill_cycles == pytest.approx(12)
    assert cost.drain_cycles == 0 and cost.stall_cycles == {}
    assert cost.compute_cycles == 60 and cost.bound_by == "DRAM"
    assert cost.cycles == pytest.approx(320 + 12)


@pytest.mark.parametrize("double", [None, True, False])
def test_refills_overlap_only_with_a_second_buffer(double: bool | None) -> None:
    """K iterates above the RF (4 weight tiles of 3): each refill moves 24 bits, 3 cycles.
    The first is the fill; the other three overlap the work when the RF holds two tiles
    (1024 bits hold 2 x 24: the automatic rule says yes) and stall when it cannot."""
    arch = _arch(_dram(bandwidth_bits_per_cycle=8), _rf(double_buffered=double))
    mapping = _mapping(({"K": 4, "P": 5}, "KPNGCQRS"), ({"C": 3}, "CNGKPQRS"))
    cost = evaluate(LAYER, arch, mapping)
    stream_bits = 60 * 8 + (60 * 24 - 20 * 16) + 40 * 24  # inputs and psums, as above
    assert cost.fill_cycles == pytest.approx(3)
    if double is False:
        assert cost.stall_cycles == {"RF": pytest.approx(3 * 3)}
        assert cost.cycles == pytest.approx(stream_bits / 8 + 3 + 9)
    else:
        assert cost.stall_cycles == {}
        assert cost.cycles == pytest.approx((stream_bits + 3 * 24) / 8 + 3)


def test_automatic_double_buffering_needs_room_for_two_tiles() -> None:
    """The same refills stall when the RF holds one tile but not two (24 < 40 < 48 bits)."""
    arch = _arch(
        _dram(bandwidth_bits_per_cycle=8),
        MemoryLevel(name="RF", holds=("weights",), capacity_bits=40),
    )
    mapping = _mapping(({"K": 4, "P": 5}, "KPNGCQRS"), ({"C": 3}, "CNGKPQRS"))
    assert evaluate(LAYER, arch, mapping).stall_cycles == {"RF": pytest.approx(9)}


def test_separate_read_and_write_ports() -> None:
    """With one 8 bit/cycle read port and a 24 bit/cycle write port, the 60 + 40 reads and
    the 60 psum writes are timed apart: reads (60 x 8 + 40 x 24) / 8 = 180 cycles, writes
    1,120 / 24 = 47: reads set the pace; a shared 8 bit/cycle port needed 320."""
    arch = _arch(_dram(read_bandwidth_bits_per_cycle=8, write_bandwidth_bits_per_cycle=24), _rf())
    cost = evaluate(LAYER, arch, _mapping(({"P": 5}, "PNGKCQRS"), ({"K": 4, "C": 3}, "KCNGPQRS")))
    assert cost.cycles == pytest.approx((60 * 8 + 40 * 24) / 8 + 12)


@pytest.mark.parametrize("multicast", [True, False])
def test_network_bandwidth_and_multicast(multicast: bool) -> None:
    """K over 4 lanes: each cycle one input reaches all 4 lanes (one transfer with
    multicast, four without), 4 distinct weights and 4 psums move; at 8 bits/cycle on the
    network the inputs cost 15 x 8 / 8 or 15 x 32 / 8 cycles."""
    fan = Fanout(mesh_x=4, x_dims=("K",), bandwidth_bits_per_cycle=8, multicast=multicast)
    arch = _arch(_dram(fanout=fan))
    mapping = _mapping(({"C": 3, "P": 5}, "NGKCPQRS"), spatial={0: {"K": 4}})
    base = evaluate(LAYER, _arch(_dram(fanout=Fanout(mesh_x=4, x_dims=("K",)))), mapping)
    cost = evaluate(LAYER, arch, mapping)
    steps = 15  # 60 MACs on 4 lanes
    inputs = steps * (1 if multicast else 4) * 8
    weights = steps * 4 * 8
    # psums: 4 per step drained up, plus the read-back share of re-visited elements
    psums = steps * 4 * 24 * (1 + (60 - 20) / 60)
    assert base.cycles == steps
    assert cost.bound_by == "DRAM network"
    assert cost.cycles == pytest.approx((inputs + weights + psums) / 8)


def _with_dram_bw(arch: Arch, bw: float) -> Arch:
    levels = (arch.levels[0].model_copy(update={"bandwidth_bits_per_cycle": bw}), *arch.levels[1:])
    return arch.model_copy(update={"levels": levels})


def test_lower_dram_bandwidth_slows_memory_bound_layers_only() -> None:
    """Eyeriss, latency objective, DRAM 64 -> 16 bits/cycle: the fully connected layer (all
    weights, no reuse) is DRAM-bound and takes 4x the cycles; a 3x3 conv with enough reuse
    stays compute-bound within 1%."""
    net = builtin("resnet18")
    conv, fc = net.layers[1], net.layers[-1]
    fast, slow = presets.eyeriss(), _with_dram_bw(presets.eyeriss(), 16)
    fc_fast, fc_slow = (search(fc, a, "latency").cost for a in (fast, slow))
    assert fc_fast.bound_by == "DRAM"
    assert fc_slow.cycles / fc_fast.cycles == pytest.approx(4.0, rel=0.02)
    conv_fast, conv_slow = (search(conv, a, "latency").cost for a in (fast, slow))
    assert conv_slow.bound_by == "compute"
    assert conv_slow.cycles / conv_fast.cycles < 1.01


@dataclass(frozen=True, kw_only=True)
class PaddedLayer(Layer):
    """A layer carrying its zero halo (top, bottom, left, right), as `input_halo` reads."""

    padding: tuple[int, int, int, int] = (0, 0, 0, 0)


def _buffered(**kw: object) -> Arch:
    return _arch(_dram(), MemoryLevel(name="Buf", holds=("inputs",), capacity_bits=8192), **kw)


CONV = dict(K=2, C=2, P=4, Q=4, R=3, S=3)
ALL_AT_BUF = {"C": 2, "P": 4, "Q": 4, "R": 3, "S": 3}


@pytest.mark.parametrize(
    ("layer", "dram", "buf", "padded", "real"),
    [
        # 3x3 pad 1 on a 4x4 input: the buffer holds the whole 6x6 padded input once.
        (PaddedLayer(name="p", padding=(1, 1, 1, 1), **CONV), {"K": 2}, ALL_AT_BUF, 72, 32),
        # two tiles of 2 output rows: rows [0,4) and [2,6), 3 real rows each, 4 real columns
        (
            PaddedLayer(name="p", padding=(1, 1, 1, 1), **CONV),
            {"K": 2, "P": 2},
            {"C": 2, "P": 2, "Q": 4, "R": 3, "S": 3},
            96,
            2 * 2 * 3 * 4,
        ),
        # R split at DRAM: tiles of rows [0,4), [1,5), [2,6) hold 3, 4, 3 real rows
        (
            PaddedLayer(name="p", padding=(1, 1, 1, 1), **CONV),
            {"K": 2, "R": 3},
            {"C": 2, "P": 4, "Q": 4, "S": 3},
            3 * 2 * 4 * 6,
            (3 + 4 + 3) * 2 * 4,
        ),
        # stride 2 on a 4x4 input, pad 1: the padded extent touched is 5 (no bottom halo);
        # one output row per tile: rows [0,3) and [2,5) hold 2 and 3 real rows
        (
            PaddedLayer(
                name="p", padding=(1, 0, 1, 0), K=2, C=2, P=2, Q=2, R=3, S=3, stride_h=2, stride_w=2
            ),
            {"K": 2, "P": 2},
            {"C": 2, "Q": 2, "R": 3, "S": 3},
            2 * 2 * 3 * 5,
            2 * (2 + 3) * 4,
        ),
    ],
)
def test_padding_halo_is_not_dram_traffic(
    layer: Layer, dram: dict, buf: dict, padded: int, real: int
) -> None:
    mapping = _mapping((dram, "NGCPQRSK"), (buf, "NGKCPQRS"))  # K innermost: inputs stay
    generated = evaluate(layer, _buffered(), mapping)
    assert generated.reads["DRAM"]["inputs"] == real
    stored = evaluate(layer, _buffered(padding_reads=True), mapping)
    assert stored.reads["DRAM"]["inputs"] == padded
    # the buffer still receives the whole padded tile (the halo is generated into it)
    assert generated.writes["Buf"]["inputs"] == stored.writes["Buf"]["inputs"] == padded
    # a layer without a halo is read as before
    plain = Layer(**{k: getattr(layer, k) for k in (*DIMS, "stride_h", "stride_w")}, name="x")
    assert evaluate(plain, _buffered(), mapping).reads["DRAM"]["inputs"] == padded


def test_depthwise_on_a_k_by_c_array_is_warned_with_the_fix() -> None:
    dw = Layer(name="dw", G=32, K=1, C=1, P=56, Q=56, R=3, S=3)
    nvdla = presets.nvdla()
    assert spatial_bound(dw, nvdla) == pytest.approx(1 / 2048)
    text = " ".join(str(w) for w in utilization_warnings(dw, nvdla))
    assert "depthwise" in text and "unrolls G" in text
    assert utilization_warnings(dw, presets.eyeriss()) == []  # Eyeriss unrolls G
    # map_workload attaches the warning to the poorly used layer, once per shape
    from picojoule.mapping import map_workload
    from picojoule.workload import Workload

    result = map_workload(Workload(name="w", layers=(dw, dw)), nvdla, samples=50, starts=2)
    assert len(result.warnings) == 2 and all("dw:" in w for w in result.warnings)
    assert result.to_dict()["warnings"] == list(result.warnings)


def test_prime_bound_warning_suggests_padding() -> None:
    odd = Layer(name="odd", K=37, C=67, P=7, Q=7)  # primes over a 32 x 64 K x C array
    (x, y) = utilization_warnings(odd, presets.nvdla())
    text = f"{x} {y}"
    assert "K=37 is prime" in text and "pad K from 37 to 64" in text
    assert "C=67 is prime" in text and "pad C from 67 to 128" in text
    assert utilization_warnings(Layer(name="ok", K=64, C=64, P=7), presets.nvdla()) == []


@pytest.mark.parametrize(("name", "index", "ratio"), [("nvdla", 1, 1.05), ("eyeriss", -2, 1.6)])
def test_latency_ties_go_to_the_lower_energy(name: str, index: int, ratio: float) -> None:
    """Compute-bound layers have many mappings at the fewest cycles (every way to order and
    tile the temporal loops under a full array). The latency objective must return one of
    low energy among them: within `ratio` of the energy objective's energy (without the
    tie-break it paid 7.7x on NVDLA and 3.7x on Eyeriss), at the fewest cycles."""
    arch, layer = presets.preset(name), builtin("resnet18").layers[index]
    fast = search(layer, arch, "latency")
    frugal = search(layer, arch, "energy")
    assert fast.cost.cycles <= layer.macs / arch.lanes * 1.01
    assert fast.cost.energy_pj <= frugal.cost.energy_pj * ratio
    assert fast.value == fast.cost.cycles and fast.score >= fast.value


def test_a_layer_smaller_than_the_axis_gets_no_padding_advice() -> None:
    """K=2 under a 14-wide axis: no padding of one loop fills it (the old advice read 'pad K
    from 2 to 2'); the warning says the layer is smaller than the axis instead."""
    tiny = Layer(name="tiny", kind="linear", N=1, K=2, C=32)
    warns = utilization_warnings(tiny, presets.eyeriss())
    text = " ".join(str(w) for w in warns)
    assert warns and "smaller than the axis" in text
    assert "pad K from 2 to 2" not in text and "0% more MACs" not in text
