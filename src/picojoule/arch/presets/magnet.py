"""MAGNet-generated accelerators (Venkatesan et al., "MAGNet: A Modular Accelerator Generator
for Neural Networks", ICCAD 2019) and Simba, the 36-chiplet system built from MAGNet PEs (Shao
et al., "Simba: Scaling Deep-Learning Inference with Multi-Chip-Module-Based Architecture",
MICRO 2019).

Public: `magnet(...)`, `simba(...)`, `MAGNET_DATAFLOWS`.

A MAGNet PE has `vector_units` vector MACs, each a `vector_width`-wide dot product, fed by a
weight buffer, an input buffer and an accumulation buffer. The four dataflows of the paper
fix which operand the PE buffers keep stationary; the "local" variants add a collector, a
small register per vector unit that holds weights (local-WS) or partial sums (local-OS) across
consecutive cycles. Defaults are Simba's PE (the design point MAGNet generated for Simba).
Energies come from `picojoule.energy` at 16 nm.
"""

from __future__ import annotations

from typing import Literal

from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel
from picojoule.errors import ConfigError

__all__ = ["magnet", "simba", "MAGNET_DATAFLOWS"]

MAGNET_DATAFLOWS = ("ws", "os", "local-ws", "local-os")
KB = 1024 * 8  # bits per kB
# Simba PE (Shao et al., MICRO 2019, Sec. 3.1 and Fig. 4): 8 vector MACs of width 8, a 32 kB
# weight buffer, an 8 kB input buffer and a 3 kB accumulation buffer; 8-bit weights and
# activations with 24-bit partial sums; a 64 kB global buffer per chiplet; 4x4 PEs per
# chiplet; 36 chiplets in a 6x6 package; 16 nm; up to 1.8 GHz (128 TOPS =
# 36 x 16 x 64 MACs x 2 ops x ~1.8 GHz).
SIMBA_VECTOR_WIDTH = 8
SIMBA_VECTOR_UNITS = 8
SIMBA_WEIGHT_BUFFER_KB = 32.0
SIMBA_INPUT_BUFFER_KB = 8.0
SIMBA_ACCUM_BUFFER_KB = 3.0
SIMBA_GLOBAL_BUFFER_KB = 64.0
SIMBA_PES_X = SIMBA_PES_Y = 4
ACC_BITS = 24
NODE_NM = 16
CLOCK_GHZ = 1.8
CHIPLETS_X = CHIPLETS_Y = 6


def _check(**params: float) -> None:
    for name, value in params.items():
        if value <= 0:
            raise ConfigError(f"magnet {name}={value}: must be positive")


def _pe_levels(
    *,
    vector_width: int,
    vector_units: int,
    weight_buffer_kb: float,
    input_buffer_kb: float,
    accum_buffer_kb: float,
    dataflow: str,
    collector_words: int,
) -> list[MemoryLevel]:
    """PE buffers (and a collector for the local dataflows) down to the MAC lanes."""
    if dataflow not in MAGNET_DATAFLOWS:
        raise ConfigError(f"magnet dataflow={dataflow!r}: use one of {', '.join(MAGNET_DATAFLOWS)}")
    # Vector units split output channels; a vector's lanes reduce over input channels.
    lanes = Fanout(mesh_x=vector_units, mesh_y=vector_width, x_dims=("K", "G"), y_dims=("C",))
    stationary = "weights" if dataflow.endswith("ws") else "outputs"
    pe = MemoryLevel(
        name="PEBuffers",
        holds=("weights", "inputs", "outputs"),
        partition_bits={
            "weights": int(weight_buffer_kb * KB),
            "inputs": int(input_buffer_kb * KB),
            "outputs": int(accum_buffer_kb * KB),
        },
        stationary=None if dataflow.startswith("local") else stationary,
        fanout=None if dataflow.startswith("local") else lanes,
    )
    if not dataflow.startswith("local"):
        return [pe]
    # The collector sits under the vector-unit fanout: one register file per vector unit,
    # `collector_words` entries per lane of its vector.
    per_unit = Fanout(mesh_x=vector_units, x_dims=("K", "G"))
    pe = pe.model_copy(update={"fanout": per_unit})
    word = 8 if stationary == "weights" else ACC_BITS
    collector = MemoryLevel(
        name="Collector",
        holds=(stationary,),
        capacity_bits=collector_words * vector_width * word,
        width_bits=vector_width * word,
        stationary=stationary,
        fanout=Fanout(mesh_x=vector_width, x_dims=("C",)),
    )
    return [pe, collector]


def magnet(
    *,
    vector_width: int = SIMBA_VECTOR_WIDTH,
    vector_units: int = SIMBA_VECTOR_UNITS,
    weight_buffer_kb: float = SIMBA_WEIGHT_BUFFER_KB,
    input_buffer_kb: float = SIMBA_INPUT_BUFFER_KB,
    accum_buffer_kb: float = SIMBA_ACCUM_BUFFER_KB,
    global_buffer_kb: float = SIMBA_GLOBAL_BUFFER_KB,
    pe_x: int = SIMBA_PES_X,
    pe_y: int = SIMBA_PES_Y,
    dataflow: Literal["ws", "os", "local-ws", "local-os"] = "ws",
    collector_words: int = 1,
    mac_format: str | None = "int8",
    dram_kind: str = "lpddr4",
) -> Arch:
    """One MAGNet accelerator: DRAM, a global buffer, `pe_x` x `pe_y` PEs of the given shape.

    `collector_words`: entries per lane in the collector of the local dataflows (1 = one
    register, the minimum that gives local reuse). `mac_format=None` computes in the
    layer's own format.
    """
    _check(
        vector_width=vector_width,
        vector_units=vector_units,
        weight_buffer_kb=weight_buffer_kb,
        input_buffer_kb=input_buffer_kb,
        accum_buffer_kb=accum_buffer_kb,
        global_buffer_kb=global_buffer_kb,
        pe_x=pe_x,
        pe_y=pe_y,
        collector_words=collector_words,
    )
    levels = [
        MemoryLevel(
            name="DRAM", holds=("weights", "inputs", "outputs"), memory="dram", dram_kind=dram_kind
        ),
        MemoryLevel(
            name="GlobalBuffer",
            holds=("inputs", "outputs"),
            capacity_bits=int(global_buffer_kb * KB),
            fanout=Fanout(mesh_x=pe_x, mesh_y=pe_y),
        ),
        *_pe_levels(
            vector_width=vector_width,
            vector_units=vector_units,
            weight_buffer_kb=weight_buffer_kb,
            input_buffer_kb=input_buffer_kb,
            accum_buffer_kb=accum_buffer_kb,
            dataflow=dataflow,
            collector_words=collector_words,
        ),
    ]
    return Arch(
        name=f"magnet-{dataflow}-v{vector_width}x{vector_units}-pe{pe_x}x{pe_y}",
        levels=tuple(levels),
        mac=MacUnit(format=mac_format, accumulator_bits=ACC_BITS),
        node_nm=NODE_NM,
        clock_ghz=CLOCK_GHZ,
        description="MAGNet (ICCAD 2019) PE array; defaults are Simba's PE (MICRO 2019)",
    )


def simba(*, chiplets_x: int = CHIPLETS_X, chiplets_y: int = CHIPLETS_Y) -> Arch:
    """Simba: a 6x6 package of chiplets, each a 4x4 array of MAGNet PEs (weight stationary).

    The package network's energy is not modelled (network_pj_per_bit = 0): chiplets read their
    weights and activations from DRAM through it.
    """
    chip = magnet(dataflow="ws")
    dram = chip.levels[0].model_copy(
        update={"fanout": Fanout(mesh_x=chiplets_x, mesh_y=chiplets_y)}
    )
    return chip.model_copy(
        update={
            "name": f"simba-{chiplets_x * chiplets_y}chiplets",
            "levels": (dram, *chip.levels[1:]),
            "description": "Simba (MICRO 2019): 36 chiplets x 16 PEs x 8 vector MACs x 8 lanes",
        }
    )
