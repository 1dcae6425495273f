"""GPU reality: packed low-bit weights, fused Triton GEMMs, and measured throughput/energy.

Public:
- packing (pure torch, any device): `pack(w, fmt)`, `pack_vsq`, `pack_nvfp4`, `pack_mxfp4`,
  `dequant`, `pack_int4`, `unpack_int4`, `PackedWeight`, `PACKED_FORMATS`.
- kernels: `packed_matmul(x, w, bias, x_scale=...)` (Triton, CUDA), `reference_matmul`,
  `quantize_rows_fp8` (W4A8 activations).
- modules: `PackedLinear.from_linear(linear, fmt)`, `to_packed_(model, fmt)`.
- device: `GpuUnavailableError`, `cuda_available`, `device_info`.
- benchmarks: `picojoule.gpu.report` (`gemm_report`, `kernel_report`), CLI `picojoule.gpu.cli`.
Importable with torch + numpy alone; Triton is imported only when a kernel launches.
"""

from picojoule.gpu.device import GpuUnavailableError, cuda_available, device_info
from picojoule.gpu.modules import PackedLinear, to_packed_
from picojoule.gpu.ops import packed_matmul, quantize_rows_fp8, reference_matmul
from picojoule.gpu.packing import (
    PACKED_FORMATS,
    PackedWeight,
    dequant,
    pack,
    pack_int4,
    pack_mxfp4,
    pack_nvfp4,
    pack_vsq,
    unpack_int4,
)

__all__ = [
    "PACKED_FORMATS",
    "PackedWeight",
    "pack",
    "pack_vsq",
    "pack_nvfp4",
    "pack_mxfp4",
    "dequant",
    "pack_int4",
    "unpack_int4",
    "packed_matmul",
    "reference_matmul",
    "quantize_rows_fp8",
    "PackedLinear",
    "to_packed_",
    "GpuUnavailableError",
    "cuda_available",
    "device_info",
]
