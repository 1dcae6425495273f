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
Submodules import lazily: `import picojoule.energy` loads none of them, so light CLI commands
start fast. Plots live in `picojoule.energy.plots` (imported on demand: matplotlib is slow to load).
"""

from picojoule._lazy import lazy_exports

_EXPORTS = {
    "Calibration": "arith",
    "calibrate": "arith",
    "GpuSpec": "gpu_specs",
    "gpu": "gpu_specs",
    "gpus": "gpu_specs",
    "peak_key": "gpu_specs",
    "speedup": "gpu_specs",
    "Ledger": "ledger",
    "format_ledger": "ledger",
    "mac_energy": "mac",
    "dram_energy_pj_per_bit": "memory",
    "sram_energy_pj": "memory",
    "sram_model": "memory",
    "OpEnergy": "ops",
    "op_energy": "ops",
    "op_energy_pj": "ops",
    "INSTRUCTIONS": "overhead",
    "instruction_energy": "overhead",
    "reproduce_published": "overhead",
    "Roofline": "speed_of_light",
    "roofline": "speed_of_light",
    "node_factor": "scaling",
    "node_scaling": "scaling",
    "scale_energy": "scaling",
    "TableError": "tables",
    "UncitedDataWarning": "tables",
    "load_table": "tables",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
