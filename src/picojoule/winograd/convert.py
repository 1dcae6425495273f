"""`winogradize_`: turn the eligible Conv2d layers of a model into `WinogradConv2d`, in place.

Public: `WinogradConfig`, `winogradize_`.

`winogradize_` is a thin wrapper over `picojoule.config.apply` with a `WinogradConfig`, so
`pj.apply(model, WinogradConfig(...))` does the same. Each eligible layer is converted in place
by changing its class to `WinogradConv2d` (which adds no parameters or buffers, only three plain
attributes). The module keeps its identity, parameters, state-dict keys, weight
parametrizations (sparsity masks, fake-quant) and forward hooks (activation fake-quant), so
`winogradize_`, `quantize_` and `sparsify_` compose in any order and optimizers holding the
parameters keep working. A parametrized module's class is the per-module subclass that
`torch.nn.utils.parametrize` injects over the original class; it is rebuilt over
`WinogradConv2d` with the same property descriptors, so `remove_parametrizations` later
restores a plain `WinogradConv2d`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.config import (
    Applied,
    apply,
    check_filter,
    check_keys,
    check_model,
    register_handler,
)
from picojoule.errors import ConfigError
from picojoule.winograd.conv import WinogradConv2d, operand_formats, set_winograd_attrs
from picojoule.winograd.cost import winograd_cost
from picojoule.winograd.errors import WinogradError
from picojoule.winograd.transforms import Point, parse_points

__all__ = ["WinogradConfig", "winogradize_", "skip_reason", "config_from_dict"]


@dataclass(frozen=True, kw_only=True)
class WinogradConfig:
    """Which convolutions to run by Winograd, and how.

    tile: outputs per tile (m_h, m_w); F(4x4, 3x3) is NVDLA's and cuDNN's common choice.
    kernel_sizes: kernel sides r eligible for conversion (both r_h and r_w must be listed).
    points: interpolation points for every axis (see `cook_toom`); None = the default set.
    transform_format: picojoule format of the transform-domain products, or None (input dtype).
    """

    tile: tuple[int, int] = (4, 4)
    kernel_sizes: tuple[int, ...] = (3,)
    points: tuple[Point, ...] | None = None
    transform_format: str | None = None

    def __post_init__(self) -> None:
        try:
            tile = (self.tile, self.tile) if isinstance(self.tile, int) else tuple(self.tile)
        except TypeError:
            tile = ()  # None, a float: not a sequence either; refused just below
        if len(tile) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in tile):
            raise WinogradError(f"tile must be an int or a pair of ints, got {self.tile!r}")
        if min(tile) < 1:
            raise WinogradError(f"tile must be positive, got {self.tile!r}")
        sizes = tuple(self.kernel_sizes) if isinstance(self.kernel_sizes, Iterable) else ()
        if not sizes or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in sizes):
            raise WinogradError(
                f"kernel_sizes must be positive ints, e.g. (3,), got {self.kernel_sizes!r}"
            )
        if self.transform_format is not None:
            operand_formats(self.transform_format)  # fail early on an unknown name
        # Normalizing in a frozen dataclass: the stored values are the canonical ones.
        object.__setattr__(self, "tile", tile)
        object.__setattr__(self, "kernel_sizes", sizes)
        if self.points is not None:
            points = parse_points(self.points)
            if len(set(points)) != len(points):
                raise WinogradError(
                    f"points {list(points)} repeat a value: the Vandermonde matrix is singular; "
                    "every point must be distinct"
                )
            object.__setattr__(self, "points", points)


def _winograd_class_for(module: nn.Module) -> type[nn.Module]:
    """`WinogradConv2d`, or a parametrized subclass of it mirroring the module's own."""
    if not parametrize.is_parametrized(module):
        return WinogradConv2d
    injected = type(module)
    # The injected class holds only the tensor properties plus __getstate__/__deepcopy__.
    members = {
        key: value
        for key, value in vars(injected).items()
        if key not in {"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__"}
    }
    return type(f"Parametrized{WinogradConv2d.__name__}", (WinogradConv2d,), members)


def _ineligible(module: nn.Conv2d, cfg: WinogradConfig) -> str:
    """Why `module` cannot be converted under `cfg` (empty string: it can)."""
    if tuple(module.stride) != (1, 1):
        return f"stride {tuple(module.stride)}: Winograd here is stride-1 only"
    if tuple(module.dilation) != (1, 1):
        return f"dilation {tuple(module.dilation)}: Winograd needs dilation 1"
    r_h, r_w = module.kernel_size
    if r_h not in cfg.kernel_sizes or r_w not in cfg.kernel_sizes:
        return f"kernel {r_h}x{r_w} not in kernel_sizes {cfg.kernel_sizes}"
    if cfg.points is not None:
        for m, r in zip(cfg.tile, module.kernel_size, strict=True):
            if len(cfg.points) != m + r - 1:
                return f"{len(cfg.points)} points given, F({m},{r}) needs {m + r - 1}"
    return ""


def skip_reason(module: nn.Module, cfg: WinogradConfig) -> str | None:
    """Why `winogradize_` would leave `module` as it is, without changing it: None for a
    module it does not visit (not a convolution), "" for one it converts, else the reason it
    reports. (`picojoule study` checks each recipe with it before running any.)"""
    base = parametrize.type_before_parametrizations(module)
    kind = base.__name__
    if base is WinogradConv2d:
        return "already a WinogradConv2d"
    if isinstance(module, nn.Conv1d | nn.Conv3d):
        return f"{kind}: only Conv2d is supported"
    if not isinstance(module, nn.Conv2d):
        return None
    if base is not nn.Conv2d:
        return f"{kind} subclasses Conv2d with its own behaviour; convert before wrapping"
    return _ineligible(module, cfg)


@register_handler(WinogradConfig)
def _winogradize_module(module: nn.Module, name: str, cfg: WinogradConfig) -> Applied | None:
    kind = parametrize.type_before_parametrizations(module).__name__
    reason = skip_reason(module, cfg)
    if reason is None:
        return None
    if reason:
        return Applied(name=name, kind=kind, reason=reason)
    module.__class__ = _winograd_class_for(module)
    set_winograd_attrs(
        module, tile=cfg.tile, points=cfg.points, transform_format=cfg.transform_format
    )
    (m_h, m_w), (r_h, r_w) = cfg.tile, module.kernel_size
    reduction = (
        winograd_cost(m_h, r_h, dims=1, points=_axis_points(cfg, m_h, r_h)).multiply_reduction
        * winograd_cost(m_w, r_w, dims=1, points=_axis_points(cfg, m_w, r_w)).multiply_reduction
    )
    action = f"F({m_h}x{m_w},{r_h}x{r_w}): {reduction:.2f}x fewer multiplies"
    if cfg.transform_format is not None:
        action += f", products in {cfg.transform_format}"
    return Applied(name=name, kind=kind, action=action)


def _axis_points(cfg: WinogradConfig, m: int, r: int) -> tuple[Point, ...] | None:
    return cfg.points if cfg.points is not None and len(cfg.points) == m + r - 1 else None


_CONFIG_KEYS = ("tile", "kernel_sizes", "points", "transform_format")


def config_from_dict(data: Mapping[str, object]) -> WinogradConfig:
    """The `WinogradConfig` a dict of its fields describes (`{"tile": 4, "kernel_sizes":
    [3]}`); unknown keys and wrong types raise `ConfigError`."""
    fields = dict(check_keys(data, _CONFIG_KEYS, "WinogradConfig dict"))
    for key in ("kernel_sizes", "points"):
        value = fields.get(key)
        if isinstance(value, list | tuple):
            fields[key] = tuple(value)
        elif key == "kernel_sizes" and isinstance(value, int) and not isinstance(value, bool):
            fields[key] = (value,)
        elif value is not None and not (key == "points" and isinstance(value, str)):
            raise ConfigError(f"WinogradConfig {key}: a list, got {value!r}")
    if fields.get("transform_format") is not None and not isinstance(
        fields["transform_format"], str
    ):
        raise ConfigError(
            f"WinogradConfig transform_format: a format name, got {fields['transform_format']!r}"
        )
    try:
        return WinogradConfig(**fields)  # type: ignore[arg-type]
    except (WinogradError, TypeError, AttributeError) as e:  # a wrong value or type
        raise ConfigError(f"WinogradConfig dict: {e}") from None


def winogradize_(
    model: nn.Module,
    tile: int | tuple[int, int] | WinogradConfig | Mapping[str, object] = (4, 4),
    *,
    kernel_sizes: Sequence[int] = (3,),
    points: Sequence[object] | None = None,
    transform_format: str | None = None,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    expose: bool = True,
) -> list[Applied]:
    """Convert every eligible `nn.Conv2d` of `model` to `WinogradConv2d`, in place.

    Eligible: exactly `nn.Conv2d` (parametrized or not), stride 1, dilation 1, both kernel sides
    in `kernel_sizes`. Others are left alone; Conv1d/Conv3d, strided, dilated, other kernel
    sizes and Conv2d subclasses are reported as skipped with the reason.

    `tile` may also be a whole `WinogradConfig` or a dict of its fields (`{"tile": 6,
    "kernel_sizes": [3]}`); then the keyword options must stay at their defaults.

    expose: first rewrite the layers hooks cannot reach (`picojoule.quant.expose_layers_`), as
    `quantize_` and `sparsify_` do, so a recipe applying all three sees the same layers; their
    records come first. `expose=False` leaves them alone.

    Returns one `Applied` per convolution visited (converted: `action` says the tile and the
    multiply reduction; skipped: `reason` says why).
    """
    from picojoule.quant.unfuse import check_expose, expose_layers_

    check_model(model, "winogradize_")
    check_filter(filter_fn, "winogradize_")
    check_expose(expose, "winogradize_")
    if isinstance(tile, WinogradConfig | Mapping):
        if (kernel_sizes, points, transform_format) != ((3,), None, None):
            raise ConfigError(
                "winogradize_: give the options inside the config, not beside it "
                "(kernel_sizes=/points=/transform_format= with a WinogradConfig or dict)"
            )
        cfg = tile if isinstance(tile, WinogradConfig) else config_from_dict(tile)
    else:
        sizes = tuple(kernel_sizes) if isinstance(kernel_sizes, Iterable) else kernel_sizes
        cfg = WinogradConfig(
            tile=tile,  # type: ignore[arg-type]
            kernel_sizes=sizes,  # type: ignore[arg-type]
            points=None if points is None else tuple(points),  # type: ignore[arg-type]
            transform_format=transform_format,
        )
    exposed = expose_layers_(model) if expose else []
    if isinstance(model, nn.Conv2d) and parametrize.is_parametrized(model):
        # `apply` skips a root module that has children, and a parametrized conv has one (its
        # `parametrizations`); a bare conv is still a layer to convert.
        if filter_fn is not None and not filter_fn(model, ""):
            return []
        return [_winogradize_module(model, "", cfg)]  # type: ignore[list-item]
    return [*exposed, *apply(model, cfg, filter_fn=filter_fn)]
