"""Architecture presets, as Python (every number cites its source next to it).

Public: `PRESETS`, `preset(name, **params)`, and the builders `eyeriss`, `simba`, `magnet`,
`nvdla`, `tensor_core_sm`. Builders take keyword parameters, so design-space exploration can
make instances programmatically, e.g. `magnet(vector_width=16, vector_units=4)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from picojoule.arch.presets.eyeriss import eyeriss
from picojoule.arch.presets.magnet import magnet, simba
from picojoule.arch.presets.nvdla import nvdla
from picojoule.arch.presets.tensor_core import tensor_core_sm
from picojoule.arch.spec import Arch
from picojoule.errors import ConfigError, did_you_mean

__all__ = ["PRESETS", "preset", "eyeriss", "simba", "magnet", "nvdla", "tensor_core_sm"]

PRESETS: dict[str, Callable[..., Arch]] = {
    "eyeriss": eyeriss,
    "eyeriss-normalized": lambda **kw: eyeriss(costs="normalized", **kw),
    "simba": simba,
    "magnet": magnet,
    "nvdla": nvdla,
    "tensor-core-sm": tensor_core_sm,
}


def preset(name: str, **params: Any) -> Arch:
    """Build preset `name` with keyword `params` (see each builder for its parameters)."""
    if name not in PRESETS:
        raise ConfigError(
            f"unknown architecture preset {name!r}; presets: {', '.join(PRESETS)}"
            f"{did_you_mean(name, PRESETS)}"
        )
    try:
        return PRESETS[name](**params)
    except TypeError as exc:
        raise ConfigError(f"preset {name!r}: {exc}; see its docstring for parameters") from None
