"""Study recipes: one lever setting each (formats, sparsity, Winograd, fine-tuning), presets, YAML.

A recipe is data. `quant` is a `picojoule.quant` recipe string, `sparsity` a
`picojoule.sparsity` pattern ("2:4", "unstructured:0.5"), `winograd` a tile size m for
F(m x m, 3 x 3), `finetune_steps` > 0 fine-tunes after the levers are applied (QAT through the
straight-through estimator; pruned weights stay zero).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from picojoule.errors import ConfigError, nearest

__all__ = ["Recipe", "PRESETS", "preset", "load_recipes"]


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    quant: str = ""
    sparsity: str = ""
    winograd: int = 0
    finetune_steps: int = 0
    finetune_lr: float = 1e-3

    @property
    def is_baseline(self) -> bool:
        return not (self.quant or self.sparsity or self.winograd or self.finetune_steps)

    def key(self) -> str:
        """Stable identity for the result cache."""
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self) -> str:
        parts = [self.quant or "fp32"]
        if self.sparsity:
            parts.append(f"sparse {self.sparsity}")
        if self.winograd:
            parts.append(f"winograd F({self.winograd}x{self.winograd},3x3)")
        if self.finetune_steps:
            parts.append(f"fine-tune {self.finetune_steps} steps")
        return " + ".join(parts)


def _r(name: str, **kw) -> Recipe:
    return Recipe(name=name, **kw)


_FORMATS = [
    _r("fp32"),
    _r("bf16", quant="w:bf16,a:bf16"),
    _r("fp16", quant="w:fp16,a:fp16"),
    _r("e4m3", quant="w:e4m3,a:e4m3"),
    _r("int8/channel", quant="w:int8/channel,a:int8"),
    _r("mxfp8", quant="w:mxfp8_e4m3,a:mxfp8_e4m3"),
    _r("int4/channel", quant="w:int4/channel"),
    _r("mxfp4", quant="w:mxfp4"),
    _r("nvfp4", quant="w:nvfp4"),
    _r("vsq4_v16_s4", quant="w:vsq4_v16_s4"),
]
# 4-bit weights AND activations: the regime where VS-Quant (Dai et al., MLSys 2021, Table 3)
# separates per-vector from per-channel scaling. Signed activations: transformer layer inputs
# (LayerNorm outputs) are signed; `vsq4u_...` suits post-ReLU CNN activations.
_SHOOTOUT = [
    _r("fp32"),
    _r("int4/channel", quant="w:int4/channel,a:int4"),
    _r("vsq4_v16_s4", quant="w:vsq4_v16_s4,a:vsq4_v16_s4"),
    _r("mxfp4", quant="w:mxfp4,a:mxfp4"),
    _r("nvfp4", quant="w:nvfp4,a:nvfp4"),
    _r("codebook16", quant="w:codebook16,a:int4"),
    _r("lns4", quant="w:lns4_f0,a:int4"),
    # ... and attention's QK^T / AV operands in 4 bits too (picojoule.quant.products)
    _r("vsq4_v16_s4+attn", quant="w:vsq4_v16_s4,a:vsq4_v16_s4,attn:vsq4_v16_s4"),
    # QAT: what fine-tuning through the straight-through estimator buys each scaling.
    _r("int4/channel+qat", quant="w:int4/channel,a:int4", finetune_steps=40, finetune_lr=1e-4),
    _r("vsq4_v16_s4+qat", quant="w:vsq4_v16_s4,a:vsq4_v16_s4", finetune_steps=40, finetune_lr=1e-4),
]
_SPARSITY = [
    _r("fp32"),
    _r("2:4", sparsity="2:4"),
    _r("2:4+ft", sparsity="2:4", finetune_steps=200),
    _r("1:4", sparsity="1:4"),
    _r("unstructured 50%", sparsity="unstructured:0.5"),
    _r("2:4+nvfp4", sparsity="2:4", quant="w:nvfp4"),
]
_WINOGRAD = [
    _r("fp32"),
    _r("F(2,3)", winograd=2),
    _r("F(4,3)", winograd=4),
    _r("F(6,3)", winograd=6),
    _r("F(4,3)+fp16", winograd=4, quant="w:fp16,a:fp16"),
]
# What `make demo` runs: every lever once, on the default model.
_DEFAULT = [
    *_FORMATS,
    _r("int4/channel w+a", quant="w:int4/channel,a:int4"),
    _r("vsq4 w+a", quant="w:vsq4_v16_s4,a:vsq4u_v16_s4"),
    _r("2:4+ft", sparsity="2:4", finetune_steps=200),
    _r("2:4+nvfp4", sparsity="2:4", quant="w:nvfp4"),
    _r("F(4,3)", winograd=4),
]

PRESETS: dict[str, list[Recipe]] = {
    "default": _DEFAULT,
    "formats-sweep": _FORMATS,
    "4bit-shootout": _SHOOTOUT,
    "sparsity": _SPARSITY,
    "winograd": _WINOGRAD,
}


def preset(name: str) -> list[Recipe]:
    if name not in PRESETS:
        raise ConfigError(
            f"unknown recipe preset {name!r}; presets: {', '.join(PRESETS)} "
            f"(did you mean {nearest(name, PRESETS)}?), or give a recipes YAML file"
        )
    return list(PRESETS[name])


_FIELDS = {"name", "quant", "sparsity", "winograd", "finetune_steps", "finetune_lr"}


def load_recipes(spec: str) -> list[Recipe]:
    """A preset name, or a YAML file holding a list of recipe mappings."""
    if spec in PRESETS:
        return preset(spec)
    path = Path(spec)
    if not path.exists():
        return preset(spec)  # raises with the list of presets
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(
            f"{path}: not valid YAML ({e.__class__.__name__}); fix the syntax"
        ) from None
    if isinstance(raw, dict) and "recipes" in raw:
        raw = raw["recipes"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected a non-empty list of recipes (name, quant, ...)")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{path}: recipe #{i + 1} must be a mapping with a 'name'")
        unknown = set(item) - _FIELDS
        if unknown:
            raise ConfigError(
                f"{path}: recipe {item['name']!r} has unknown keys {sorted(unknown)}; "
                f"valid: {sorted(_FIELDS)}"
            )
        try:
            out.append(Recipe(**item))
        except TypeError as e:
            raise ConfigError(f"{path}: recipe {item['name']!r}: {e}") from None
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: recipe names must be unique")
    return out
