"""Quantizing models: `quantize_(model, recipe)`, calibration, fake-quant modules, report.

Public: `quantize_`, `parse_recipe`, `QuantConfig`, `TensorQuant`, `calibrate`, `report`,
`LayerQuant`, `ste`, `unfuse_attention_` (nn.MultiheadAttention -> Linear projections + SDPA),
`expose_layers_` (and HF Conv1D -> Linear; `quantize_` runs it first unless `expose=False`),
`exposed` (the same for one block, undone after), `describe_exposed` (what was rewritten).
Importable with torch + numpy alone.
"""

from picojoule.quant.api import LayerQuant, quantize_, report, weight_transforms
from picojoule.quant.calibrate import calibrate
from picojoule.quant.modules import ActivationFakeQuant, CodebookWeight, WeightFakeQuant, ste
from picojoule.quant.recipe import QuantConfig, TensorQuant, parse_recipe, resolve_format
from picojoule.quant.unfuse import (
    UnfusedAttention,
    conv1d_to_linear_,
    describe_exposed,
    expose_layers_,
    exposed,
    unfuse_attention_,
)

__all__ = [
    "quantize_",
    "parse_recipe",
    "resolve_format",
    "QuantConfig",
    "TensorQuant",
    "calibrate",
    "report",
    "LayerQuant",
    "ste",
    "WeightFakeQuant",
    "CodebookWeight",
    "ActivationFakeQuant",
    "weight_transforms",
    "unfuse_attention_",
    "UnfusedAttention",
    "conv1d_to_linear_",
    "expose_layers_",
    "exposed",
    "describe_exposed",
]
