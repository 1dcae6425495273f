"""Board energy of a GPU workload through NVML (`nvidia-ml-py`), for measured pJ/op.

`measure_energy(fn, work)` runs `fn` back to back for at least `min_duration_s` and reads the
board's cumulative energy counter (`nvmlDeviceGetTotalEnergyConsumption`, millijoules, Volta
and later) before and after; where that counter is missing it samples
`nvmlDeviceGetPowerUsage` (milliwatts) every 10 ms and integrates. pJ/op = joules / ops * 1e12.
This is whole-board power (memory, VRMs, fans included), the number a datacentre pays for, not
the core-only energy of an operation - docs/gpu.md says how to read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["EnergyReading", "measure_energy", "nvml_available"]


@dataclass(frozen=True, kw_only=True)
class EnergyReading:
    """Energy of `iterations` runs of a workload that took `elapsed_s` in all."""

    iterations: int
    elapsed_s: float
    energy_j: float
    mean_power_w: float
    method: str  # "energy-counter" or "power-sampling"

    def pj_per_op(self, ops_per_iteration: float) -> float:
        return self.energy_j / (self.iterations * ops_per_iteration) * 1e12


def nvml_available() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # ImportError, or NVMLError when no driver is loaded
        return False
    pynvml.nvmlShutdown()
    return True


class _Sampler(threading.Thread):
    def __init__(self, handle: object, period_s: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.handle, self.period_s = handle, period_s
        self.samples: list[tuple[float, float]] = []
        self.stop_flag = threading.Event()

    def run(self) -> None:
        import pynvml

        while not self.stop_flag.is_set():
            mw = pynvml.nvmlDeviceGetPowerUsage(self.handle)
            self.samples.append((time.perf_counter(), mw / 1000.0))
            time.sleep(self.period_s)


def measure_energy(
    fn: Callable[[], object],
    *,
    min_duration_s: float = 1.0,
    device: torch.device | None = None,
) -> EnergyReading:
    """Run `fn` repeatedly for >= min_duration_s; return the board energy it took."""
    import pynvml

    dev = device or torch.device("cuda")
    pynvml.nvmlInit()
    try:
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        try:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            counter = True
        except pynvml.NVMLError:
            counter = False
        fn()  # warm: compile, allocate, clocks up
        torch.cuda.synchronize(dev)
        sampler = None if counter else _Sampler(handle)
        if sampler is not None:
            sampler.start()
        e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) if counter else 0
        t0 = time.perf_counter()
        iters = 0
        while True:
            fn()
            iters += 1
            if iters % 8 == 0:
                torch.cuda.synchronize(dev)
                if time.perf_counter() - t0 >= min_duration_s:
                    break
        elapsed = time.perf_counter() - t0
        if counter:
            energy_j = (pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) - e0) / 1000.0
        else:
            assert sampler is not None
            sampler.stop_flag.set()
            sampler.join()
            watts = [w for _, w in sampler.samples] or [0.0]
            energy_j = sum(watts) / len(watts) * elapsed
    finally:
        pynvml.nvmlShutdown()
    return EnergyReading(
        iterations=iters,
        elapsed_s=elapsed,
        energy_j=energy_j,
        mean_power_w=energy_j / elapsed,
        method="energy-counter" if counter else "power-sampling",
    )
