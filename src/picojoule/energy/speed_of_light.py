"""Speed of light for a workload on a GPU: the least time and energy any implementation needs.

Public: `LayerBound`, `Roofline`, `roofline(workload, gpu, ...)`, `compute_key(gpu, w, a)`.

Per layer:
- FLOPs = 2 x MACs (x repeat); bytes = every weight, input and output element moved once
  between DRAM and the chip at its format's bits per element (scale bits amortized) - no
  implementation can move less without recomputation or compression beyond the format.
- the compute rate is the GPU's fastest datasheet peak whose format holds both operands
  exactly (int8 x int8 -> the INT8 tensor cores; int8 on a K20X -> FP32); weights pruned 2:4
  (or 1:4; a layer naming no pattern: density <= 0.5) use the 2:4 sparse peak where the GPU
  has one, and are then stored 2:4 compressed (half the values plus a 2-bit index per kept
  value, NVIDIA's layout). Unstructured masks run dense: the sparse tensor cores need 2:4.
- minimum time = max(FLOPs / peak, bytes / bandwidth); the bound is whichever term wins, and
  arithmetic intensity = FLOPs / bytes is compared against the ridge point peak / bandwidth.
- minimum energy = MACs performed x `mac_energy` of the operand formats at the GPU's process
  node + bytes x 8 x the DRAM energy per bit of the GPU's memory. No instruction overhead and
  no on-chip traffic: a bound, not an estimate (a real GPU spends several times more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picojoule.energy.gpu_specs import GpuSpec
from picojoule.energy.mac import mac_energy
from picojoule.energy.memory import dram_energy_pj_per_bit
from picojoule.energy.units import BITS_PER_BYTE, OPS_PER_MAC
from picojoule.errors import ConfigError

__all__ = ["LayerBound", "Roofline", "roofline", "compute_key"]

# (key, exponent bits, mantissa bits) of float peaks; integers hold int N exactly if N <= bits
_FLOAT_KEYS = {
    "e2m1": (2, 1),
    "e2m3": (2, 3),
    "e3m2": (3, 2),
    "e4m3": (4, 3),
    "e5m2": (5, 2),
    "fp16": (5, 10),
    "bf16": (8, 7),
    "tf32": (8, 10),
    "fp32": (8, 23),
}
_SPARSE_DENSITY = 0.5  # 2:4 keeps half the weights
_SPARSE_INDEX_BITS = 2  # per kept value: its position among four


def _holds(key: str, fmt: object) -> bool:
    """Can the GPU format `key` represent every value of `fmt` exactly?"""
    from picojoule.formats import FloatFormat, IntFormat, ScaledFormat, get

    f = get(fmt)  # type: ignore[arg-type]
    el = f.element if isinstance(f, ScaledFormat) else f
    if isinstance(el, IntFormat):
        if key.startswith("int"):
            return el.bits <= int(key[3:]) and (el.signed or el.bits < int(key[3:]))
        if key in _FLOAT_KEYS:  # integers up to 2^(m+1) are exact in a float
            return el.bits - int(el.signed) <= _FLOAT_KEYS[key][1] + 1
        return False
    if isinstance(el, FloatFormat) and key in _FLOAT_KEYS:
        e, m = _FLOAT_KEYS[key]
        return el.ebits <= e and el.mbits <= m
    return key == "fp32"  # LNS and codebook values: emulated in FP32


def compute_key(gpu: GpuSpec, weight_format: object, input_format: object) -> str:
    """The fastest dense peak of `gpu` whose format holds both operand formats exactly."""
    keys = [k for k in gpu.peak_tops if not k.endswith("_simt") and k != "fp64"]
    ok = [k for k in keys if _holds(k, weight_format) and _holds(k, input_format)]
    if not ok:
        raise ConfigError(
            f"{gpu.name} has no peak rate whose format holds {weight_format} x {input_format} "
            f"(it lists {', '.join(keys)})"
        )
    return max(ok, key=gpu.peak_tops.__getitem__)


@dataclass(frozen=True, kw_only=True)
class LayerBound:
    """Speed of light of one layer (all repeats): time in s, energy in pJ."""

    name: str
    weight_format: str
    input_format: str
    macs: int
    flops: float
    bytes_moved: float
    compute_key: str
    sparse: bool
    peak_ops: float
    bandwidth_bytes_per_s: float
    math_energy_pj: float
    memory_energy_pj: float

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte moved."""
        return self.flops / self.bytes_moved

    @property
    def ridge(self) -> float:
        """Intensity at which this layer's compute and memory times are equal, FLOP/byte."""
        return self.peak_ops / self.bandwidth_bytes_per_s

    @property
    def compute_time_s(self) -> float:
        return self.flops / self.peak_ops

    @property
    def memory_time_s(self) -> float:
        return self.bytes_moved / self.bandwidth_bytes_per_s

    @property
    def bound(self) -> Literal["compute", "memory"]:
        return "compute" if self.compute_time_s >= self.memory_time_s else "memory"

    @property
    def min_time_s(self) -> float:
        return max(self.compute_time_s, self.memory_time_s)

    @property
    def min_energy_pj(self) -> float:
        return self.math_energy_pj + self.memory_energy_pj


@dataclass(frozen=True, kw_only=True)
class Roofline:
    """Per-layer speed-of-light bounds of a workload on one GPU."""

    workload: str
    gpu: str
    node_nm: float
    dram_kind: str
    layers: tuple[LayerBound, ...]
    uncited: tuple[str, ...] = ()

    @property
    def min_time_s(self) -> float:
        """Layers run one after another: the sum of their bounds."""
        return sum(b.min_time_s for b in self.layers)

    @property
    def min_energy_pj(self) -> float:
        return sum(b.min_energy_pj for b in self.layers)

    @property
    def flops(self) -> float:
        return sum(b.flops for b in self.layers)


def _bits(fmt: str) -> float:
    from picojoule.formats import get

    return float(get(fmt).bits_per_element)


def _runs_2to4(layer) -> bool:
    """Whether the sparse tensor cores can run the layer's weights: pruned N:4 with N <= 2. A
    layer that names no pattern (a hand-built workload) qualifies by density <= 0.5 alone;
    unstructured or block masks do not qualify, whatever their density."""
    from picojoule.workload.layer import n_of_m

    if not layer.weight_pattern:
        return layer.weight_density <= _SPARSE_DENSITY
    nm = n_of_m(layer.weight_pattern)
    return nm is not None and nm[1] == 4 and nm[0] <= 2


def roofline(workload, gpu: GpuSpec, *, sparse_2to4: bool = True) -> Roofline:
    """Speed-of-light time and energy of every layer of `workload` (a `picojoule.workload`
    Workload) on `gpu`; see the module docstring for the model."""
    dram_pj_per_bit = dram_energy_pj_per_bit(gpu.dram_energy)
    bounds = []
    uncited: set[str] = set()
    for layer in workload.layers:
        key = compute_key(gpu, layer.weight_format, layer.input_format)
        sparse = sparse_2to4 and _runs_2to4(layer) and gpu.has(key, sparse=True)
        w_bits = _bits(layer.weight_format)
        if sparse:
            w_bits = _SPARSE_DENSITY * (w_bits + _SPARSE_INDEX_BITS)
        bytes_moved = (
            layer.weight_elems * w_bits
            + layer.input_elems * _bits(layer.input_format)
            + layer.output_elems * _bits(layer.output_format)
        ) / BITS_PER_BYTE
        macs = layer.macs * layer.repeat
        mac = mac_energy(
            layer.weight_format,
            input_format=layer.input_format,
            node_nm=gpu.node_nm,
            reduction=layer.C * layer.R * layer.S,
        )
        uncited.update(mac.uncited)
        performed = macs * (_SPARSE_DENSITY if sparse else 1.0)
        bounds.append(
            LayerBound(
                name=layer.name,
                weight_format=layer.weight_format,
                input_format=layer.input_format,
                macs=macs,
                flops=float(OPS_PER_MAC * macs),
                bytes_moved=bytes_moved * layer.repeat,
                compute_key=key,
                sparse=sparse,
                peak_ops=gpu.peak(key, sparse=sparse),
                bandwidth_bytes_per_s=gpu.bandwidth_bytes_per_s,
                math_energy_pj=performed * mac.energy_pj,
                memory_energy_pj=bytes_moved * layer.repeat * BITS_PER_BYTE * dram_pj_per_bit,
            )
        )
    if gpu.citation is None:
        uncited.add(f"gpu table: {gpu.name}")
    return Roofline(
        workload=workload.name,
        gpu=gpu.name,
        node_nm=gpu.node_nm,
        dram_kind=gpu.dram_energy,
        layers=tuple(bounds),
        uncited=tuple(sorted(uncited)),
    )
