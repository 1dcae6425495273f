"""What GPU (if any) is here, and clear errors when a feature needs more than it has.

Every GPU entry point calls `require_cuda()` / `require_triton()` first, so a machine without
an NVIDIA GPU, an old GPU or a missing Triton gets one sentence naming the problem and the fix
instead of a CUDA traceback.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from dataclasses import dataclass

import torch

from picojoule.errors import PicojouleError

__all__ = [
    "GpuUnavailableError",
    "DeviceInfo",
    "cuda_available",
    "triton_available",
    "interpret_mode",
    "require_cuda",
    "require_triton",
    "device_info",
    "FP8_MIN_CC",
]

FP8_MIN_CC = (8, 9)  # FP8 tensor cores: Ada (sm_89) and Hopper (sm_90) onwards
TRITON_MIN_CC = (8, 0)  # our kernels use bf16 MMA: Ampere (sm_80) onwards


class GpuUnavailableError(PicojouleError, RuntimeError):
    """No usable NVIDIA GPU, compute capability too low, or Triton missing."""


def cuda_available() -> bool:
    return torch.cuda.is_available() and torch.version.cuda is not None


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpret_mode() -> bool:
    """True when Triton kernels run in its CPU interpreter (`TRITON_INTERPRET=1`): tests only."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def require_cuda(min_cc: tuple[int, int] | None = None, *, what: str = "this") -> torch.device:
    """The current CUDA device, or GpuUnavailableError saying why it cannot run `what`."""
    if not cuda_available():
        raise GpuUnavailableError(
            f"{what} needs an NVIDIA GPU with CUDA, and torch sees none "
            f"(torch {torch.__version__}); run it on a machine with one, or use the CPU "
            "emulation (`picojoule study`, `picojoule.quant`)"
        )
    dev = torch.device("cuda", torch.cuda.current_device())
    cc = torch.cuda.get_device_capability(dev)
    if min_cc is not None and cc < min_cc:
        raise GpuUnavailableError(
            f"{what} needs compute capability >= {min_cc[0]}.{min_cc[1]}; "
            f"{torch.cuda.get_device_name(dev)} is {cc[0]}.{cc[1]}"
        )
    return dev


def require_triton(what: str = "this kernel") -> None:
    if not triton_available():
        raise GpuUnavailableError(
            f"{what} needs Triton, which is not installed; `pip install 'picojoule[gpu]'`"
        )


@dataclass(frozen=True, kw_only=True)
class DeviceInfo:
    """The machine a measurement was taken on (recorded next to every figure)."""

    name: str
    compute_capability: str
    sm_count: int
    memory_gib: float
    driver: str
    cuda: str
    torch: str
    triton: str
    python: str


def _driver_version() -> str:
    try:
        import pynvml
    except ImportError:
        return "unknown (nvidia-ml-py not installed)"
    pynvml.nvmlInit()
    try:
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    finally:
        pynvml.nvmlShutdown()


def device_info() -> DeviceInfo:
    dev = require_cuda(what="device_info")
    props = torch.cuda.get_device_properties(dev)
    tri = "not installed"
    if triton_available():
        import triton

        tri = triton.__version__
    return DeviceInfo(
        name=props.name,
        compute_capability=f"{props.major}.{props.minor}",
        sm_count=props.multi_processor_count,
        memory_gib=round(props.total_memory / 2**30, 1),
        driver=_driver_version(),
        cuda=str(torch.version.cuda),
        torch=torch.__version__,
        triton=tri,
        python=platform.python_version(),
    )
