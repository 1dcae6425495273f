"""Winograd convolution: exact Cook–Toom transforms, a drop-in conv module, the multiply /
precision trade-off.

Public:
- transforms: `cook_toom(m, r, points=None) -> (AT, G, BT)` exact `Fraction` matrices;
  `default_points`, `integer_points`, `point_set`, `POINT_SETS`, `INF`, `check_exact`.
- conv: `winograd_conv2d(...)`, `WinogradConv2d` (an `nn.Conv2d`), `transform_tensors`.
- conversion: `winogradize_(model, tile=(4, 4), ...)`, `WinogradConfig` (a `picojoule.config`
  handler, so `apply(model, WinogradConfig(...))` works too).
- accounting: `winograd_cost(m, r) -> WinogradCost`, `layer_ops(...) -> LayerOps`.
- `WinogradError` for every bad input.
"""

from picojoule.winograd.conv import WinogradConv2d, transform_tensors, winograd_conv2d
from picojoule.winograd.convert import WinogradConfig, winogradize_
from picojoule.winograd.cost import (
    LayerOps,
    TransformOps,
    WinogradCost,
    layer_ops,
    transform_ops,
    winograd_cost,
)
from picojoule.winograd.errors import WinogradError
from picojoule.winograd.transforms import (
    INF,
    POINT_SETS,
    check_exact,
    cook_toom,
    default_points,
    integer_points,
    point_set,
)

__all__ = [
    "INF",
    "POINT_SETS",
    "LayerOps",
    "TransformOps",
    "WinogradConfig",
    "WinogradConv2d",
    "WinogradCost",
    "WinogradError",
    "check_exact",
    "cook_toom",
    "default_points",
    "integer_points",
    "layer_ops",
    "point_set",
    "transform_ops",
    "transform_tensors",
    "winograd_conv2d",
    "winograd_cost",
    "winogradize_",
]
