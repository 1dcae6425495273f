"""One streaming multiprocessor of an NVIDIA A100 with its tensor cores (NVIDIA A100 Tensor
Core GPU Architecture whitepaper, 2020: Table 1/3 and "A100 SM Architecture").

Public: `tensor_core_sm(...)`.

Per SM: 4 third-generation tensor cores of 256 dense FP16 FMA per clock each (1024 per SM),
a 256 kB register file (64 kB per processing block), up to 164 kB of shared memory; 108 SMs
share 1555 GB/s of HBM2 at a 1410 MHz boost clock, so one SM's share is 1555e9 / 108 /
1.41e9 = 10.2 bytes per cycle. 7 nm (TSMC N7). A tensor-core MMA is modelled as 256 lanes:
an 8 x 4 tile of outputs by an 8-deep reduction per core per cycle. Weights pruned 2:4 along
the reduction run on the sparse tensor cores: half the cycles and MAC energy, compressed
weights (`SparseSupport(structured="2:4")`).
"""

from __future__ import annotations

from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel, SparseSupport

__all__ = ["tensor_core_sm"]

KB = 1024 * 8
SHARED_KB = 164
RF_KB_PER_BLOCK = 64
TENSOR_CORES = 4
HBM_BITS_PER_CYCLE_PER_SM = 1555e9 / 108 / 1.41e9 * 8  # 81.7 bits per SM-cycle
CLOCK_GHZ = 1.41
NODE_NM = 7


def tensor_core_sm(*, mac_format: str | None = "fp16", accumulator_bits: int = 32) -> Arch:
    """An A100 SM: HBM share -> shared memory -> 4 blocks (register file) -> 256 FMA lanes."""
    return Arch(
        name="tensor-core-sm",
        levels=(
            MemoryLevel(
                name="HBM",
                holds=("weights", "inputs", "outputs"),
                memory="dram",
                dram_kind="hbm2",
                bandwidth_bits_per_cycle=HBM_BITS_PER_CYCLE_PER_SM,
            ),
            MemoryLevel(
                name="SharedMemory",
                holds=("weights", "inputs"),
                capacity_bits=SHARED_KB * KB,
                width_bits=128 * 8,  # 128 bytes per cycle per SM
                fanout=Fanout(mesh_x=TENSOR_CORES, x_dims=("K", "N", "P", "Q", "G")),
            ),
            MemoryLevel(
                name="RegisterFile",
                holds=("weights", "inputs", "outputs"),
                capacity_bits=RF_KB_PER_BLOCK * KB,
                width_bits=32 * 32,  # one 32-bit register per thread of a warp
                fanout=Fanout(
                    mesh_x=32, mesh_y=8, x_dims=("K", "N", "P", "Q"), y_dims=("C", "R", "S")
                ),
            ),
        ),
        mac=MacUnit(format=mac_format, accumulator_bits=accumulator_bits),
        # Sparse tensor cores: 2:4 weights at twice the dense math rate, stored as the two
        # values per group plus 2-bit indices (A100 whitepaper, "Fine-Grained Structured
        # Sparsity").
        sparse=SparseSupport(structured="2:4"),
        node_nm=NODE_NM,
        clock_ghz=CLOCK_GHZ,
        description="NVIDIA A100 SM: 4 tensor cores x 256 FP16 FMA/clk (2:4 sparse: 2x), "
        "164 kB smem, 256 kB RF",
    )
