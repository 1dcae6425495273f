"""Accelerator architecture specs: pydantic models, YAML I/O, energies and presets.

Public: `Arch`, `MemoryLevel`, `Fanout`, `MacUnit`, `SparseSupport`, `load_arch`,
`arch_from_dict`, `arch_to_yaml`, `save_arch`, `ArchError`, `presets`.
"""

from picojoule.arch import presets
from picojoule.arch.io import ArchError, arch_from_dict, arch_to_yaml, load_arch, save_arch
from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel, SparseSupport

__all__ = [
    "Arch",
    "MemoryLevel",
    "Fanout",
    "MacUnit",
    "SparseSupport",
    "load_arch",
    "arch_from_dict",
    "arch_to_yaml",
    "save_arch",
    "ArchError",
    "presets",
]
