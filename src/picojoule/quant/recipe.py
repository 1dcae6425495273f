"""Quantization recipes: frozen configs, parsed from short strings.

    "w:nvfp4,a:e4m3"                    weights NVFP4, activations FP8 E4M3 (per-tensor scaled)
    "w:vsq4_v16_s4,a:vsq4u_v16"         VS-Quant weights and (unsigned) activations
    "w:int4/channel"                    weight-only
    "w:int8,a:int8,cal:percentile99.9"  static activation scales from calibration
    "w:e4m3,round:stochastic"           stochastic rounding of weights
    "w:vsq4_v16_s4,a:vsq4_v16_s4,attn:e4m3"  and attention's QK^T / AV operands in FP8
    "w:nvfp4,kv:e4m3"                   and a transformers model's KV cache stored in FP8

Keys: `w` weight format, `a` activation format, `cal` activation calibration (`dynamic`
default, `max`, `percentileP`, `mse`, `entropy`), `round` weight rounding
(`nearest_even`, `stochastic`, `toward_zero`), `attn` the format of both operands of every
matrix product the model calls as a function rather than a layer - attention's Q K^T and
softmax V (`picojoule.quant.products`; dynamic scales; overrides match the calling module),
`kv` the format of the keys and values a transformers model stores in its KV cache
(`kv:FMT[@token|channel|head|kivi][G]`, `picojoule.quant.kvcache`; model-wide).

A bare element name gets the scaling practice uses: integers, LNS and floats of <= 8 bits are
scaled per output channel (weights) or per tensor (activations); 16-bit and wider floats are
cast directly. `/none` asks for a raw cast (`a:e4m3/none`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from picojoule.config import check_keys
from picojoule.errors import ConfigError, FormatError
from picojoule.formats import (
    CodebookFormat,
    FloatFormat,
    Format,
    IntFormat,
    LNSFormat,
    get,
)

if TYPE_CHECKING:
    from picojoule.quant.kvcache import KVSpec

__all__ = [
    "TensorQuant",
    "QuantConfig",
    "parse_recipe",
    "config_from_dict",
    "resolve_format",
    "CALIBRATIONS",
]

CALIBRATIONS = ("dynamic", "max", "percentile", "mse", "entropy")
_KEYS = ("w", "a", "cal", "round", "attn", "kv", "wcal", "smooth", "rotate")
WEIGHT_CALIBRATIONS = ("rtn", "gptq", "awq")
_ROUNDINGS = ("nearest_even", "stochastic", "toward_zero")


@dataclass(frozen=True, kw_only=True)
class TensorQuant:
    """How one tensor (weight or activation) is fake-quantized."""

    format: str
    rounding: str = "nearest_even"
    calibration: str = "dynamic"
    percentile: float = 99.99

    def resolve(self, role: str) -> Format:
        return resolve_format(self.format, role)


@dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """A recipe: weight and activation quantization plus per-layer overrides by name glob.

    An override maps a module-name glob to another QuantConfig, or to None to keep that layer
    in float. The first matching glob wins.
    """

    weight: TensorQuant | None = None
    activation: TensorQuant | None = None
    attention: TensorQuant | None = None  # functional products (QK^T, AV)
    kv: KVSpec | None = None  # the KV cache's storage format (picojoule.quant.kvcache)
    # Algorithms run by the study before/after rounding (calibration data needed):
    wcal: str = "rtn"  # weight rounding: rtn | gptq | awq (picojoule.quant.gptq / awq)
    smooth: float | None = None  # SmoothQuant migration strength alpha (picojoule.quant.smooth)
    rotate: str | None = None  # "hadamard" or "block<N>" (picojoule.quant.rotate)
    overrides: tuple[tuple[str, QuantConfig | None], ...] = field(default=())
    name: str = ""

    def for_module(self, module_name: str) -> QuantConfig | None:
        from picojoule.config import match_name

        for pattern, cfg in self.overrides:
            if match_name(module_name, pattern):
                return cfg
        return self

    def __str__(self) -> str:
        if self.name:
            return self.name
        parts = []
        if self.weight:
            parts.append(f"w:{self.weight.format}")
        if self.activation:
            parts.append(f"a:{self.activation.format}")
        if self.attention:
            parts.append(f"attn:{self.attention.format}")
        if self.kv:
            parts.append(self.kv.describe())
        if self.wcal != "rtn":
            parts.append(f"wcal:{self.wcal}")
        if self.smooth is not None:
            parts.append(f"smooth:{self.smooth:g}")
        if self.rotate:
            parts.append(f"rotate:{self.rotate}")
        return ",".join(parts) or "fp32"


def resolve_format(name: str, role: str) -> Format:
    """The format a recipe's element name stands for, with the default scaling applied."""
    if name.endswith("/none"):
        return get(name[: -len("/none")])
    fmt = get(name)
    needs_scale = isinstance(fmt, IntFormat | LNSFormat) or (
        isinstance(fmt, FloatFormat) and fmt.bits <= 8
    )
    if needs_scale and fmt.name != "float8_e8m0fnu":
        gran = "channel" if role == "weight" else "tensor"
        return get(f"{name}/{gran}")
    if isinstance(fmt, CodebookFormat) and role != "weight":
        raise ConfigError(f"{name}: codebooks share weights; use them for w:, not a:")
    return fmt


def _parse_cal(value: str) -> tuple[str, float]:
    if value in ("dynamic", "max", "mse", "entropy"):
        return value, 99.99
    if m := re.fullmatch(r"percentile(\d+(?:\.\d+)?)?", value):
        p = float(m[1]) if m[1] else 99.99
        if not 0 < p <= 100:
            raise ConfigError(f"cal:{value}: the percentile must be in (0, 100]")
        return "percentile", p
    raise ConfigError(f"cal:{value}: unknown calibration; use one of {', '.join(CALIBRATIONS)}")


def _parse_smooth(value: str, recipe: str) -> float:
    try:
        alpha = float(value)
    except ValueError:
        alpha = float("nan")
    if not 0.0 <= alpha <= 1.0:  # NaN fails too
        raise ConfigError(
            f"recipe {recipe!r}: smooth:{value}: give SmoothQuant's alpha in [0, 1], e.g. "
            "smooth:0.5"
        )
    return alpha


def _parse_rotate(value: str, recipe: str) -> str:
    if value == "hadamard":
        return value
    if m := re.fullmatch(r"block(\d+)", value):
        n = int(m[1])
        if n >= 2 and n & (n - 1) == 0 and n <= 4096:
            return value
    raise ConfigError(
        f"recipe {recipe!r}: rotate:{value}: use rotate:hadamard or rotate:block<N> with N a "
        "power of two from 2 to 4096 (the format's block: block16 for NVFP4, block32 for MXFP4)"
    )


_CONFIG_KEYS = ("weight", "activation", "attention", "kv", "wcal", "smooth", "rotate",
                "overrides", "name")  # fmt: skip
_TENSOR_KEYS = {
    "weight": ("format", "rounding"),
    "activation": ("format", "calibration", "percentile"),
    "attention": ("format",),
}
_SHORT_KEYS = {
    "w": "the string form's w: is weight here",
    "a": "the string form's a: is activation here",
    "attn": "the string form's attn: is attention here",
    "cal": "calibration goes with the activation: {'activation': {'format': ..., "
    "'calibration': 'max'}}",
    "round": "rounding goes with the weight: {'weight': {'format': ..., 'rounding': 'stochastic'}}",
}


def _tensor_from(role: str, value: object) -> TensorQuant | None:
    """One tensor's quantization from a format name, a TensorQuant or a dict of its fields;
    checked as the string form checks it."""
    if value is None or isinstance(value, TensorQuant):
        return value
    keys = _TENSOR_KEYS[role]
    if isinstance(value, str):
        value = {"format": value}
    elif not isinstance(value, Mapping):
        raise ConfigError(
            f"QuantConfig {role}: give a format name (e.g. 'nvfp4'), a TensorQuant or a dict of "
            f"{', '.join(keys)}; got {type(value).__name__}"
        )
    data = dict(check_keys(value, keys, f"QuantConfig {role}"))
    if not isinstance(data.get("format"), str):
        raise ConfigError(f"QuantConfig {role}: give a format name, e.g. {{'format': 'nvfp4'}}")
    if "calibration" in data:
        if not isinstance(data["calibration"], str):
            raise ConfigError(
                f"QuantConfig {role}: calibration is one of {', '.join(CALIBRATIONS)}"
            )
        data["calibration"], pct = _parse_cal(data["calibration"])  # "percentile99.9" too
        data.setdefault("percentile", pct)
    if "percentile" in data:
        p = data["percentile"]
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 100:
            raise ConfigError(f"QuantConfig {role}: percentile is a number in (0, 100], got {p!r}")
        data["percentile"] = float(p)
    if data.get("rounding", "nearest_even") not in _ROUNDINGS:
        raise ConfigError(
            f"QuantConfig {role}: rounding {data['rounding']!r}: use one of {', '.join(_ROUNDINGS)}"
        )
    tq = TensorQuant(**data)  # type: ignore[arg-type]
    try:
        tq.resolve("weight" if role == "weight" else "activation")
    except (FormatError, ConfigError) as e:
        raise ConfigError(f"QuantConfig {role}: {e}") from None
    return tq


def config_from_dict(data: Mapping[str, object]) -> QuantConfig:
    """The `QuantConfig` a dict of its fields describes: `{"weight": "nvfp4", "activation":
    "e4m3"}` equals `QuantConfig(weight=TensorQuant(format="nvfp4"), activation=
    TensorQuant(format="e4m3"))`. A tensor's value is a format name, a `TensorQuant` or a dict
    of its fields (`{"format": "int8", "calibration": "max"}`); `kv` is the string form's value
    (`"int4@kivi"`); `overrides` maps name globs to recipes in any form (None: keep float).
    Unknown keys and wrong types raise `ConfigError`."""
    fields = dict(check_keys(data, _CONFIG_KEYS, "QuantConfig dict", _SHORT_KEYS))
    out: dict[str, object] = {}
    for role in _TENSOR_KEYS:
        if role in fields:
            out[role] = _tensor_from(role, fields[role])
    if fields.get("kv") is not None:
        kv = fields["kv"]
        if isinstance(kv, str):
            from picojoule.quant.kvcache import parse_kv

            kv = parse_kv(kv)
        out["kv"] = kv
    wcal = fields.get("wcal", "rtn")
    if wcal not in WEIGHT_CALIBRATIONS:
        raise ConfigError(f"QuantConfig wcal {wcal!r}: use one of {', '.join(WEIGHT_CALIBRATIONS)}")
    if wcal != "rtn" and out.get("weight") is None:
        raise ConfigError(f"QuantConfig wcal {wcal!r} rounds weights; add a weight format")
    out["wcal"] = wcal
    if fields.get("smooth") is not None:
        out["smooth"] = _parse_smooth(str(fields["smooth"]), "QuantConfig dict")
    if fields.get("rotate") is not None:
        out["rotate"] = _parse_rotate(str(fields["rotate"]), "QuantConfig dict")
    name = fields.get("name", "")
    if not isinstance(name, str):
        raise ConfigError(f"QuantConfig name: a string, not {type(name).__name__}")
    out["name"] = name
    base = QuantConfig(**out)  # type: ignore[arg-type]
    ov = fields.get("overrides")
    return base if ov is None else parse_recipe(base, ov)  # type: ignore[arg-type]


def parse_recipe(
    recipe: str | QuantConfig | Mapping[str, object],
    overrides: Mapping[str, str | QuantConfig | Mapping[str, object] | None] | None = None,
) -> QuantConfig:
    """Parse `"w:...,a:...,cal:...,round:..."` (and per-layer overrides) into a QuantConfig;
    a QuantConfig comes back as it is, a dict of its fields goes through `config_from_dict`."""
    if isinstance(recipe, QuantConfig):
        base = recipe
    elif isinstance(recipe, Mapping):
        base = config_from_dict(recipe)
    else:
        if not isinstance(recipe, str):
            raise ConfigError(
                f"a recipe is a string, a QuantConfig or a dict of its fields, not "
                f"{type(recipe).__name__}"
            )
        fields: dict[str, str] = {}
        text = recipe.strip()
        if text and text not in ("fp32", "float", "none"):
            for part in text.split(","):
                key, sep, value = part.strip().partition(":")
                key, value = key.strip().lower(), value.strip().lower()
                if not sep or not value:
                    raise ConfigError(f"recipe {recipe!r}: {part!r} is not key:value (e.g. w:int8)")
                if key not in _KEYS:
                    raise ConfigError(
                        f"recipe {recipe!r}: unknown key {key!r}; valid keys: {', '.join(_KEYS)}"
                    )
                if key in fields:
                    raise ConfigError(f"recipe {recipe!r}: key {key!r} given twice")
                fields[key] = value
        cal, pct = _parse_cal(fields.get("cal", "dynamic"))
        rounding = fields.get("round", "nearest_even")
        if rounding not in _ROUNDINGS:
            raise ConfigError(f"round:{rounding}: use one of {', '.join(_ROUNDINGS)}")
        weight = activation = attention = None
        try:
            if "w" in fields:
                weight = TensorQuant(format=fields["w"], rounding=rounding)
                weight.resolve("weight")
            if "a" in fields:
                activation = TensorQuant(format=fields["a"], calibration=cal, percentile=pct)
                activation.resolve("activation")
            if "attn" in fields:
                attention = TensorQuant(format=fields["attn"])
                attention.resolve("activation")
            kv = None
            if "kv" in fields:
                from picojoule.quant.kvcache import parse_kv

                kv = parse_kv(fields["kv"])
        except (FormatError, ConfigError) as e:
            raise ConfigError(f"recipe {recipe!r}: {e}") from None
        wcal = fields.get("wcal", "rtn")
        if wcal not in WEIGHT_CALIBRATIONS:
            raise ConfigError(
                f"recipe {recipe!r}: wcal:{wcal} unknown; use one of "
                f"{', '.join(WEIGHT_CALIBRATIONS)}"
            )
        if wcal != "rtn" and weight is None:
            raise ConfigError(f"recipe {recipe!r}: wcal:{wcal} rounds weights; add w:<format>")
        smooth = _parse_smooth(fields["smooth"], recipe) if "smooth" in fields else None
        rotate = _parse_rotate(fields["rotate"], recipe) if "rotate" in fields else None
        if "cal" in fields and activation is None:
            raise ConfigError(f"recipe {recipe!r}: cal: calibrates activations; add a:<format>")
        base = QuantConfig(
            weight=weight, activation=activation, attention=attention, kv=kv, wcal=wcal,
            smooth=smooth, rotate=rotate, name=text,
        )  # fmt: skip
    if overrides is None:
        return base
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"overrides must map layer-name globs to recipes, e.g. {{'classifier': None}}, not "
            f"{type(overrides).__name__}"
        )
    ov = []
    for glob, v in overrides.items():
        if not isinstance(glob, str) or not glob.strip():
            raise ConfigError(f"override key {glob!r}: give a layer-name glob, e.g. 'features.*'")
        try:
            ov.append((glob, None if v is None else parse_recipe(v)))
        except ConfigError as e:
            raise ConfigError(f"override {glob!r}: {e}") from None
    return replace(base, overrides=tuple(ov)) if ov else base
