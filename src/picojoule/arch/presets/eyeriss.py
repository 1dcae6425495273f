"""Eyeriss (Chen et al., "Eyeriss: An Energy-Efficient Reconfigurable Accelerator for Deep
Convolutional Neural Networks", JSSC 2017; dataflow study in Chen et al., ISCA 2016).

Public: `eyeriss(costs="table", dataflow=None, mac_pj=1.0, *, pe_rows=12, pe_cols=14,
buffer_bits=108 kB, spad_bits=None)`.

`costs="normalized"` uses the ISCA 2016 energy ratios per 16-bit access relative to one MAC
(DRAM 200, global buffer 6, inter-PE array 2, register file 1, MAC 1), scaled by `mac_pj`;
with the default `mac_pj=1.0` energies read as multiples of one MAC. `costs="table"` takes
them from `picojoule.energy` at 65 nm. `dataflow` restricts the mapping to one of the four
dataflows of the ISCA 2016 comparison: "rs" (row stationary), "ws", "os", "nlr". The array
size, global buffer and per-PE scratchpads default to the chip's (JSSC 2017); the keywords set
them for studies such as the ISCA 2016 area-matched comparison (256 PEs, each dataflow its own
split of one storage area: `benchmarks/vs_zigzag.py`).
"""

from __future__ import annotations

from typing import Literal

from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel, SparseSupport
from picojoule.errors import ConfigError

__all__ = ["eyeriss", "DATAFLOWS"]

DATAFLOWS = ("rs", "ws", "os", "nlr")
WORD_BITS = 16  # 16-bit fixed point operands and psums (JSSC 2017, Table I)
# ISCA 2016, Fig. 1 / Sec. 5: normalized energy per 16-bit access, MAC = 1.
NORMALIZED = {"dram": 200.0, "buffer": 6.0, "array": 2.0, "rf": 1.0, "mac": 1.0}
PE_ROWS, PE_COLS = 12, 14  # JSSC 2017, Sec. I: 168 PEs in a 12 x 14 array
GLB_BITS = 108 * 1024 * 8  # JSSC 2017: 108 kB global buffer
# JSSC 2017, Sec. V-C: per-PE scratchpads of 12 ifmap, 224 filter and 24 psum 16-bit words.
SPAD_BITS = {"inputs": 12 * WORD_BITS, "weights": 224 * WORD_BITS, "outputs": 24 * WORD_BITS}
DRAM_BITS_PER_CYCLE = 64  # JSSC 2017, Sec. II: 64-bit off-chip data bus
CLOCK_GHZ = 0.2  # JSSC 2017, Table III: 200 MHz nominal core clock
NODE_NM = 65  # JSSC 2017: TSMC 65 nm LP


def _per_bit(key: str, mac_pj: float, costs: str) -> float | None:
    return NORMALIZED[key] * mac_pj / WORD_BITS if costs == "normalized" else None


def eyeriss(
    costs: Literal["table", "normalized"] = "table",
    dataflow: Literal["rs", "ws", "os", "nlr"] | None = None,
    mac_pj: float = 1.0,
    *,
    pe_rows: int = PE_ROWS,
    pe_cols: int = PE_COLS,
    buffer_bits: int = GLB_BITS,
    spad_bits: dict[str, int] | None = None,
) -> Arch:
    """The Eyeriss chip: DRAM, a 108 kB global buffer for ifmaps and psums, a 12x14 PE array,
    per-PE scratchpads. Filters stream from DRAM to the PEs past the global buffer, as in the
    chip (JSSC 2017, Sec. III) and Timeloop's eyeriss_like example. `spad_bits` gives each
    scratchpad operand's bits (default: the chip's 12 ifmap, 224 filter, 24 psum words; only
    the operands the dataflow keeps in the RF are read)."""
    if costs not in ("table", "normalized"):
        raise ConfigError(f"eyeriss costs={costs!r}: use 'table' or 'normalized'")
    if dataflow is not None and dataflow not in DATAFLOWS:
        raise ConfigError(f"eyeriss dataflow={dataflow!r}: use one of {', '.join(DATAFLOWS)}")

    def e(key: str) -> float | None:
        return _per_bit(key, mac_pj, costs)

    # Row stationary by default (JSSC 2017, Sec. IV): filter rows R and channels down the
    # array's rows, output rows P (and filters, images) across its columns.
    x_dims, y_dims = ("P", "Q", "N", "K", "G"), ("R", "S", "C", "K", "G")
    rf_dims = ("N", "G", "K", "C", "P", "Q", "R", "S")
    rf_holds: tuple = ("weights", "inputs", "outputs")
    rf_stationary = None
    glb = dict(capacity_bits=buffer_bits)
    if dataflow == "rs":
        x_dims, y_dims, rf_dims = ("P", "N", "K", "G"), ("R", "C", "K", "G"), ("S", "Q", "C", "K")
    elif dataflow == "ws":  # ISCA 2016 Sec. 4: weights pinned in each PE's RF
        x_dims, y_dims, rf_dims = ("K", "G"), ("C", "R", "S"), ("N", "P", "Q")
        rf_holds, rf_stationary = ("weights",), "weights"
    elif dataflow == "os":  # psums pinned in each PE's RF, one output pixel per PE
        x_dims, y_dims, rf_dims = ("Q", "N"), ("P", "K", "G"), ("C", "R", "S")
        rf_holds, rf_stationary = ("outputs",), "outputs"
    elif dataflow == "nlr":  # no local reuse: no RF, everything through the buffer
        x_dims, y_dims = ("K", "G"), ("C", "R", "S")
    spad_source = SPAD_BITS if spad_bits is None else spad_bits
    missing = [op for op in rf_holds if op not in spad_source] if dataflow != "nlr" else []
    if missing:
        raise ConfigError(f"eyeriss spad_bits lacks {missing}: the {dataflow or 'default'} "
                          "dataflow keeps them in the register file")  # fmt: skip
    spads = {op: spad_source[op] for op in rf_holds if op in spad_source}
    array = Fanout(
        mesh_x=pe_cols,
        mesh_y=pe_rows,
        x_dims=x_dims,
        y_dims=y_dims,
        network_pj_per_bit=(e("array") or 0.0),
    )
    levels = [
        MemoryLevel(
            name="DRAM",
            holds=("weights", "inputs", "outputs"),
            memory="dram",
            read_pj_per_bit=e("dram"),
            write_pj_per_bit=e("dram"),
            bandwidth_bits_per_cycle=DRAM_BITS_PER_CYCLE,
        ),
        MemoryLevel(
            name="GlobalBuffer",
            holds=("weights", "inputs", "outputs") if dataflow == "nlr" else ("inputs", "outputs"),
            width_bits=64,
            read_pj_per_bit=e("buffer"),
            write_pj_per_bit=e("buffer"),
            fanout=array,
            **glb,
        ),
    ]
    if dataflow != "nlr":
        levels.append(
            MemoryLevel(
                name="RegisterFile",
                holds=rf_holds,
                partition_bits=spads,
                width_bits=WORD_BITS,
                read_pj_per_bit=e("rf"),
                write_pj_per_bit=e("rf"),
                temporal_dims=rf_dims,
                stationary=rf_stationary,
            )
        )
    return Arch(
        name="eyeriss" + (f"-{dataflow}" if dataflow else ""),
        levels=tuple(levels),
        mac=MacUnit(
            format="int16",
            accumulator_bits=WORD_BITS,
            energy_pj=mac_pj * NORMALIZED["mac"] if costs == "normalized" else None,
        ),
        # Zero input activations gate the MAC (and the filter scratchpad read): "data gating",
        # Chen et al., JSSC 2017, section V-B (45 % lower PE power on AlexNet).
        sparse=SparseSupport(gate_zero_inputs=True),
        node_nm=NODE_NM,
        clock_ghz=CLOCK_GHZ,
        description=(
            f"Eyeriss v1 (JSSC 2017): {pe_rows}x{pe_cols} PEs, {buffer_bits / 8192:g} kB buffer, "
            "per-PE scratchpads"
        ),
    )
