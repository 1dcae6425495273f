"""Sparsity: N:M and unstructured masks, channel permutation, compressed layouts, sparse-layer
costs, and the per-layer "which layers got the sparse kernel and what did it buy" table.

Public API:
- patterns/masks: `Pattern`, `parse_pattern`, `nm_mask`, `unstructured_mask`, `block_mask`,
  `channel_mask`, `weight_mask`
- workflow: `SparsityConfig`, `parse_recipe`, `sparsify_`, `finetune`, `prune_gradually`,
  `SparsityMask`, `mask_of`
- permutation: `search_permutation`, `retained_magnitude`, `permute_channels_`, `permute_pair_`
- layouts: `pack`, `unpack`, `storage`, `storage_bytes`
- costs: `horowitz_45nm`, `Gemm`, `dense_cost`, `nm_cost`, `csr_cost`, `cartesian_cost`,
  `zero_gating_cost`, `scheme_cost`, `breakeven_density`, `storage_breakeven_density`
- kernels/report: `semi_structured_verdict`, `report`, `render_table`, `to_dict`,
  `LayerSparsity`
- GPU check: `measure_2to4`, `load_measurements`, `GpuMeasurement`
"""

from picojoule.sparsity.costs import (
    Gemm,
    OpEnergies,
    SparseCost,
    breakeven_density,
    cartesian_cost,
    csr_cost,
    dense_cost,
    horowitz_45nm,
    nm_cost,
    scheme_cost,
    storage_breakeven_density,
    zero_gating_cost,
)
from picojoule.sparsity.gpu_check import GpuMeasurement, load_measurements, measure_2to4
from picojoule.sparsity.kernels import KernelVerdict, is_nm, semi_structured_verdict
from picojoule.sparsity.layouts import Packed, Storage, pack, storage, storage_bytes, unpack
from picojoule.sparsity.masks import (
    block_mask,
    channel_mask,
    nm_mask,
    unstructured_mask,
    weight_mask,
)
from picojoule.sparsity.patterns import Pattern, parse_pattern
from picojoule.sparsity.permutation import (
    PermutationResult,
    retained_magnitude,
    search_permutation,
)
from picojoule.sparsity.permute_model import PermutationReport, permute_channels_, permute_pair_
from picojoule.sparsity.recipe import SparsityConfig, parse_recipe
from picojoule.sparsity.report import LayerSparsity, render_table, report, to_dict
from picojoule.sparsity.sparsify import SparsityMask, mask_of, sparsify_
from picojoule.sparsity.training import (
    FinetuneResult,
    GradualResult,
    finetune,
    gradual_density,
    prune_gradually,
)

__all__ = [
    "Gemm",
    "OpEnergies",
    "SparseCost",
    "breakeven_density",
    "cartesian_cost",
    "csr_cost",
    "dense_cost",
    "horowitz_45nm",
    "nm_cost",
    "scheme_cost",
    "storage_breakeven_density",
    "zero_gating_cost",
    "GpuMeasurement",
    "load_measurements",
    "measure_2to4",
    "KernelVerdict",
    "is_nm",
    "semi_structured_verdict",
    "Packed",
    "Storage",
    "pack",
    "storage",
    "storage_bytes",
    "unpack",
    "block_mask",
    "channel_mask",
    "nm_mask",
    "unstructured_mask",
    "weight_mask",
    "Pattern",
    "parse_pattern",
    "PermutationResult",
    "retained_magnitude",
    "search_permutation",
    "PermutationReport",
    "permute_channels_",
    "permute_pair_",
    "SparsityConfig",
    "parse_recipe",
    "LayerSparsity",
    "render_table",
    "report",
    "to_dict",
    "SparsityMask",
    "mask_of",
    "sparsify_",
    "FinetuneResult",
    "GradualResult",
    "finetune",
    "gradual_density",
    "prune_gradually",
]
