"""Workloads as loop nests: layers of N G K C P Q R S loops with operand formats and densities.

Public: `Layer`, `Workload`, `DIMS`, `OPERANDS`, `builtin`, `BUILTINS`, `from_model`,
`apply_recipe`.
"""

from picojoule.workload.builtin import BUILTINS, builtin
from picojoule.workload.from_torch import apply_recipe, from_model
from picojoule.workload.layer import DIMS, OPERANDS, Layer, Workload

__all__ = [
    "Layer",
    "Workload",
    "DIMS",
    "OPERANDS",
    "builtin",
    "BUILTINS",
    "from_model",
    "apply_recipe",
]
