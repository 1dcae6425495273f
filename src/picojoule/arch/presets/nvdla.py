"""NVDLA, the nv_full configuration (NVDLA hardware architecture specification,
nvdla.org/hw/v1/hwarch.html, "Configurability" and "Convolution Buffer"; nvdla/hw nvdlav1
README: "fixed at 2048 8-bit MACs (or 1024 16-bit ... MACs)").

Public: `nvdla(...)`.

The convolution core multiplies an atomic cube of Atomic-C = 64 input channels by Atomic-K =
32 kernels per cycle in INT8 (64 x 32 = 2048 MACs). Weights and activations are staged in the
convolution buffer (CBUF, 512 kB: 16 banks x 32 kB); partial sums collect in the accumulator.
NVDLA gates zero data (`gate_zero_macs`). Energies from `picojoule.energy` at `node_nm`.
"""

from __future__ import annotations

from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel, SparseSupport

__all__ = ["nvdla"]

ATOMIC_C = 64  # input channels per atomic operation (nv_full, INT8)
ATOMIC_K = 32  # kernels per atomic operation (nv_full, INT8)
CBUF_BITS = 16 * 32 * 1024 * 8  # 16 banks x 32 kB
ACC_BITS = 32  # CACC accumulates INT8 products in 32-bit (hwarch.html, "Convolution Accumulator")


def nvdla(
    *,
    node_nm: float = 16.0,
    clock_ghz: float = 1.0,
    dram_kind: str = "lpddr4",
    accumulator_pixels: int = 32,
) -> Arch:
    """nv_full: DRAM -> CBUF (weights, activations) -> 32 x 64 MAC array -> accumulator.

    `node_nm` and `clock_ghz` belong to an implementation (the RTL is process-neutral); the
    defaults are this preset's assumption, set to match the Simba/MAGNet presets' 16 nm.
    `accumulator_pixels`: output pixels whose 32-bit psums for all Atomic-K kernels the
    accumulator keeps; the specification gives no size in these terms, so 32 is this
    preset's assumption (set it to your implementation's).
    """
    return Arch(
        name="nvdla",
        levels=(
            MemoryLevel(
                name="DRAM",
                holds=("weights", "inputs", "outputs"),
                memory="dram",
                dram_kind=dram_kind,
            ),
            MemoryLevel(
                name="CBUF",
                holds=("weights", "inputs"),
                capacity_bits=CBUF_BITS,
                width_bits=ATOMIC_C * 8,
            ),
            MemoryLevel(
                name="Accumulator",
                holds=("outputs",),
                # One 32-bit psum per kernel per resident output pixel.
                capacity_bits=ATOMIC_K * accumulator_pixels * ACC_BITS,
                width_bits=ATOMIC_K * ACC_BITS,
                fanout=Fanout(mesh_x=ATOMIC_K, mesh_y=ATOMIC_C, x_dims=("K",), y_dims=("C",)),
            ),
        ),
        mac=MacUnit(format="int8", accumulator_bits=ACC_BITS),
        sparse=SparseSupport(gate_zero_macs=True),
        node_nm=node_nm,
        clock_ghz=clock_ghz,
        description="NVDLA nv_full: 2048 INT8 MACs, 512 kB convolution buffer",
    )
