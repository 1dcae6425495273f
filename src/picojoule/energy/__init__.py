"""Energy accounting: cited per-op tables, per-format MAC energy, GPUs and the speed of light.

Public API (all energies in pJ; units in `picojoule.energy.units`):

- tables: `load_table(kind, source=None)` for ops/sram/dram/nodes/gpus, user YAML/CSV
  validated row by row; `UncitedDataWarning`.
- arithmetic: `op_energy_pj(op, dtype, *, node_nm=45)` / `op_energy` (table first, model
  otherwise), `mac_energy(fmt, *, node_nm=45, ...) -> OpEnergy` for any picojoule format,
  `calibrate()` (the fitted datapath model and its error on every anchor).
- memory: `sram_energy_pj(capacity_bytes, width_bits, *, node_nm=45, write=False)`,
  `dram_energy_pj_per_bit(kind="lpddr4")`.
- technology: `scale_energy(energy_pj, from_nm, to_nm)`, `node_factor`, `node_scaling`.
- instructions: `instruction_energy(name)`, `reproduce_published()`, `INSTRUCTIONS`.
- GPUs: `gpu(name) -> GpuSpec`, `gpus()`, `speedup(base, target, ...)`.
- speed of light: `roofline(workload, gpu) -> Roofline`; the ledger `format_ledger(fmt)`.
- plots live in `picojoule.energy.plots` (imported on demand: matplotlib is slow to load).
"""

from picojoule.energy.arith import Calibration, calibrate
from picojoule.energy.gpus import GpuSpec, gpu, gpus, peak_key, speedup
from picojoule.energy.ledger import Ledger, format_ledger
from picojoule.energy.mac import mac_energy
from picojoule.energy.memory import dram_energy_pj_per_bit, sram_energy_pj, sram_model
from picojoule.energy.ops import OpEnergy, op_energy, op_energy_pj
from picojoule.energy.overhead import INSTRUCTIONS, instruction_energy, reproduce_published
from picojoule.energy.roofline import Roofline, roofline
from picojoule.energy.scaling import node_factor, node_scaling, scale_energy
from picojoule.energy.tables import TableError, UncitedDataWarning, load_table

__all__ = [
    "Calibration",
    "calibrate",
    "GpuSpec",
    "gpu",
    "gpus",
    "peak_key",
    "speedup",
    "Ledger",
    "format_ledger",
    "mac_energy",
    "dram_energy_pj_per_bit",
    "sram_energy_pj",
    "sram_model",
    "OpEnergy",
    "op_energy",
    "op_energy_pj",
    "INSTRUCTIONS",
    "instruction_energy",
    "reproduce_published",
    "Roofline",
    "roofline",
    "node_factor",
    "node_scaling",
    "scale_energy",
    "TableError",
    "UncitedDataWarning",
    "load_table",
]
