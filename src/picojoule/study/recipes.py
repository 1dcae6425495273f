"""Study recipes: one lever setting each (formats, sparsity, Winograd, fine-tuning), presets, YAML.

A recipe is data. `quant` is a `picojoule.quant` recipe string, `sparsity` a
`picojoule.sparsity` pattern ("2:4", "unstructured:0.5"), `winograd` a tile size m for
F(m x m, 3 x 3), `finetune_steps` > 0 fine-tunes after the levers are applied (QAT through the
straight-through estimator; pruned weights stay zero).

Public: `Recipe`, `PRESETS`, `preset`, `load_recipes(spec)`, `check_recipes(recipes)`.

Validation is one layer, in this module, in two steps: `Recipe(...)` checks each field's type
and range when it is built (cheap, no imports), and `check_recipes` checks a whole list (not
empty, unique names, every lever string parses) before any model is built. `load_recipes` adds
the YAML structure (a list of mappings, known keys) in front of both. Every failure is one
`ConfigError` line naming the file, the recipe, the field, the bad value and the fix.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from picojoule.errors import ConfigError, PicojouleError, did_you_mean

__all__ = ["Recipe", "PRESETS", "preset", "load_recipes", "check_recipes", "MAX_WINOGRAD_TILE"]

# F(m x m, 3 x 3) beyond this has transform errors far above any format's resolution (fp32
# included), so a larger value is a typo (`winograd: 44`), not a design point.
MAX_WINOGRAD_TILE = 16

# field -> what it takes, worded for the fix half of a message
_FIELDS: dict[str, str] = {
    "name": "a non-empty one-line string, e.g. name: int8",
    "quant": "a picojoule.quant recipe string, e.g. quant: w:int8,a:int8",
    "sparsity": "a sparsity pattern string, e.g. sparsity: '2:4'",
    "winograd": f"a Winograd tile m for F(m x m, 3 x 3): 0 (off) or 1..{MAX_WINOGRAD_TILE}, "
    "e.g. winograd: 4",
    "finetune_steps": "a non-negative integer, e.g. finetune_steps: 200",
    "finetune_lr": "a positive finite number, e.g. finetune_lr: 0.001",
}


@dataclass(frozen=True, kw_only=True)
class Recipe:
    name: str
    quant: str = ""
    sparsity: str = ""
    winograd: int = 0
    finetune_steps: int = 0
    finetune_lr: float = 1e-3

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name.strip() or not name.isprintable():
            quote = ""
            if isinstance(name, int | float):  # `name: 8` or `name: yes` in YAML
                as_what = "a boolean" if isinstance(name, bool) else "a number"
                quote = f" (YAML read it as {as_what}: quote it)"
            raise ConfigError(
                f"a recipe's name must be {_FIELDS['name']}; got {_short(name)}{quote}"
            )
        for key in ("quant", "sparsity"):
            if not isinstance(getattr(self, key), str):
                self._bad(key)
        tile = self.winograd
        if not _is_int(tile) or not 0 <= tile <= MAX_WINOGRAD_TILE:
            self._bad("winograd")
        if not _is_int(self.finetune_steps) or self.finetune_steps < 0:
            self._bad("finetune_steps")
        lr = self.finetune_lr
        if not _is_real(lr) or not math.isfinite(lr) or lr <= 0:
            self._bad("finetune_lr")
        # an int learning rate is the same recipe as its float: one cache key for both
        object.__setattr__(self, "finetune_lr", float(lr))

    def _bad(self, key: str) -> None:
        value = getattr(self, key)
        hint = ""
        if key == "sparsity" and _is_int(value):  # YAML 1.1 reads an unquoted 2:4 as 2*60+4
            hint = "; YAML reads an unquoted N:M as a base-60 number, so quote it"
        raise ConfigError(
            f"recipe {self.name!r}: {key} must be {_FIELDS[key]}; got {_short(value)} "
            f"({type(value).__name__}){hint}"
        )

    @property
    def is_baseline(self) -> bool:
        return not (self.quant or self.sparsity or self.winograd or self.finetune_steps)

    def key(self) -> str:
        """Stable identity for the result cache."""
        return json.dumps(asdict(self), sort_keys=True)

    def check_levers(self) -> None:
        """Parse the lever strings (imports the quant and sparsity packages): a typo in a
        format or pattern fails here, not after the recipes before it have run."""
        from picojoule.quant.recipe import parse_recipe as parse_quant
        from picojoule.sparsity.recipe import parse_recipe as parse_sparsity

        if self.quant:
            try:
                cfg = parse_quant(self.quant)
            except PicojouleError as e:
                raise ConfigError(f"recipe {self.name!r}: quant: {e}") from None
            if not (cfg.weight or cfg.activation or cfg.attention or cfg.kv):
                raise ConfigError(
                    f"recipe {self.name!r}: quant {self.quant!r} quantizes nothing; leave quant "
                    "out for a float baseline, or give w:/a:/attn:/kv: formats"
                )
            if cfg.wcal == "gptq" and self.finetune_steps:
                raise ConfigError(
                    f"recipe {self.name!r}: wcal:gptq fixes the weights' quantized values, so "
                    "fine-tuning could not change them; drop finetune_steps or use wcal:rtn"
                )
        if self.sparsity:
            try:
                parse_sparsity(self.sparsity)
            except PicojouleError as e:
                raise ConfigError(f"recipe {self.name!r}: sparsity: {e}") from None

    def describe(self) -> str:
        parts = [self.quant or "fp32"]
        if self.sparsity:
            parts.append(f"sparse {self.sparsity}")
        if self.winograd:
            parts.append(f"winograd F({self.winograd}x{self.winograd},3x3)")
        if self.finetune_steps:
            parts.append(f"fine-tune {self.finetune_steps} steps")
        return " + ".join(parts)


def _short(v: object, limit: int = 60) -> str:
    """repr for a one-line message: a pasted-in list or paragraph is cut, not echoed whole."""
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # True is an int to Python


def _is_real(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


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
# Causal LMs (`--model smollm2` / `hf:DIR`): weight-only formats the LLM tools ship, 4-bit
# weights and activations, W4A8, and the KV cache - each costed at prefill and at decode.
_LLM_SHOOTOUT = [
    _r("fp32"),
    _r("int8", quant="w:int8"),
    _r("int4/channel", quant="w:int4/channel"),
    _r("int4/g128", quant="w:int4/block128"),  # group-wise, one scale per 128 inputs
    _r("mxfp4", quant="w:mxfp4"),
    _r("nvfp4", quant="w:nvfp4"),
    _r("vsq4", quant="w:vsq4_v16_s4"),
    _r("nvfp4 w+a", quant="w:nvfp4,a:nvfp4"),
    _r("vsq4 w+a", quant="w:vsq4_v16_s4,a:vsq4_v16_s4"),
    _r("W4A8", quant="w:int4/block128,a:int8"),
    _r("nvfp4+kv:e4m3", quant="w:nvfp4,kv:e4m3"),
    _r("kv:int4 kivi", quant="kv:int4@kivi"),
]
# RTN vs the post-training algorithms LLM users expect (picojoule.quant.algorithms)
_LLM_ALGORITHMS = [
    _r("fp32"),
    *[
        _r(f"{label} {alg}", quant=f"w:{fmt}" + ("" if alg == "rtn" else f",wcal:{alg}"))
        for label, fmt in (("int4/g128", "int4/block128"), ("nvfp4", "nvfp4"), ("mxfp4", "mxfp4"))
        for alg in ("rtn", "gptq", "awq")
    ],
    _r("W8A8 dynamic", quant="w:int8,a:int8"),
    _r("W8A8 static", quant="w:int8,a:int8,cal:max"),
    _r("W8A8 static+smooth", quant="w:int8,a:int8,cal:max,smooth:0.5"),
    _r("W4A4 nvfp4", quant="w:nvfp4,a:nvfp4"),
    _r("W4A4 nvfp4+hadamard", quant="w:nvfp4,a:nvfp4,rotate:hadamard"),
    _r("W4A4 nvfp4+block16", quant="w:nvfp4,a:nvfp4,rotate:block16"),
    _r("W4A4 mxfp4", quant="w:mxfp4,a:mxfp4"),
    _r("W4A4 mxfp4+hadamard", quant="w:mxfp4,a:mxfp4,rotate:hadamard"),
    _r("W4A4 mxfp4+block32", quant="w:mxfp4,a:mxfp4,rotate:block32"),
    _r("2:4 magnitude", sparsity="2:4"),
    _r("2:4 sparsegpt", sparsity="sparsegpt-2:4"),
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
    "llm-shootout": _LLM_SHOOTOUT,
    "llm-algorithms": _LLM_ALGORITHMS,
}


def preset(name: str) -> list[Recipe]:
    if name not in PRESETS:
        raise ConfigError(
            f"unknown recipe preset {name!r}; presets: {', '.join(PRESETS)} "
            f"{did_you_mean(name, PRESETS)}, or give a recipes YAML file"
        )
    return list(PRESETS[name])


def check_recipes(recipes: Iterable[Recipe], source: str = "recipes") -> list[Recipe]:
    """The recipes as a list, checked as a whole: not empty, every item a `Recipe`, unique
    names, every lever string parses. `source` prefixes messages (a path, or "recipes")."""
    if isinstance(recipes, str | bytes) or not isinstance(recipes, Iterable):
        raise ConfigError(
            f"{source}: expected a list of Recipe, got {type(recipes).__name__}; give a preset "
            "name to load_recipes() or a list of Recipe(name=..., quant=...)"
        )
    out = list(recipes)
    if not out:
        raise ConfigError(f"{source}: no recipes to run; give at least one")
    seen: set[str] = set()
    for i, r in enumerate(out, start=1):
        if not isinstance(r, Recipe):
            raise ConfigError(
                f"{source}: item #{i} is a {type(r).__name__}, not a Recipe; build it as "
                "Recipe(name=..., quant=...)"
            )
        if r.name in seen:
            raise ConfigError(
                f"{source}: recipe name {r.name!r} is used twice; names label the report rows, "
                "give each recipe its own"
            )
        seen.add(r.name)
        try:
            r.check_levers()
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    return out


def _presets_hint(name: str) -> str:
    return (
        f"presets: {', '.join(PRESETS)}{did_you_mean(name, PRESETS)}, or give a recipes YAML file"
    )


def load_recipes(spec: str | Path) -> list[Recipe]:
    """A preset name, or a YAML file holding a list of recipe mappings (optionally under a
    top-level `recipes:` key); checked with `check_recipes`."""
    if isinstance(spec, Path):
        spec = str(spec)
    if not isinstance(spec, str):
        raise ConfigError(
            f"recipes: expected a preset name or a YAML path, got {type(spec).__name__}"
        )
    if not spec.strip():
        raise ConfigError(f"--recipes is empty; {_presets_hint('')}")
    if spec in PRESETS:
        return preset(spec)
    path = Path(spec).expanduser()
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long for the OS, or a NUL byte in it
        exists = False
    if not exists:
        if path.suffix.lower() in (".yaml", ".yml") or "/" in spec:
            raise ConfigError(f"{spec}: no such recipes file; check the path, or use one of the "
                              f"{_presets_hint(spec)}")  # fmt: skip
        return preset(spec)  # raises with the list of presets
    from picojoule.yamlio import load_yaml_file

    return check_recipes(_from_yaml(load_yaml_file(path), str(path)), str(path))


def _from_yaml(raw: Any, source: str) -> list[Recipe]:
    """Recipes from parsed YAML: a list of mappings, or a mapping with a `recipes:` list."""
    if isinstance(raw, dict):
        extra = [k for k in raw if k != "recipes"]
        if extra or "recipes" not in raw:
            key = str(extra[0]) if extra else ""
            hint = did_you_mean(key, ["recipes"])
            if "name" in raw:
                raise ConfigError(
                    f"{source}: holds one recipe mapping, not a list; put '- ' before its "
                    f"first key (- name: {_short(raw['name'])})"
                )
            raise ConfigError(
                f"{source}: a top-level mapping may hold only 'recipes:', found "
                f"{', '.join(_short(k) for k in extra)}{hint}"
            )
        raw = raw["recipes"]
    if not isinstance(raw, list) or not raw:
        what = "is empty" if raw is None or raw == [] else f"holds a {type(raw).__name__}"
        raise ConfigError(
            f"{source}: {what}; expected a non-empty list of recipes, e.g. '- name: int8' then "
            "'  quant: w:int8,a:int8'"
        )
    return [_recipe_from_mapping(item, i, source) for i, item in enumerate(raw, start=1)]


def _recipe_from_mapping(item: Any, index: int, source: str) -> Recipe:
    if not isinstance(item, dict):
        raise ConfigError(
            f"{source}: recipe #{index} is a {type(item).__name__} ({_short(item)}), not a "
            "mapping; "
            "write '- name: ...' with its fields indented below"
        )
    if "name" not in item:
        raise ConfigError(f"{source}: recipe #{index} has no 'name'; add name: <label>")
    label = item["name"] if isinstance(item["name"], str) else f"#{index}"
    unknown = [k for k in item if k not in _FIELDS]
    if unknown:
        guesses = [f"{k!r}{did_you_mean(str(k), _FIELDS, n=1)}" for k in unknown]
        raise ConfigError(
            f"{source}: recipe {label!r} has unknown keys {', '.join(guesses)}; valid: "
            f"{', '.join(_FIELDS)}"
        )
    fields = dict(item)
    lr = fields.get("finetune_lr")
    if isinstance(lr, str):
        # YAML 1.1 reads 1e-3 (no dot) as text; accept what is plainly a number
        with contextlib.suppress(ValueError):
            fields["finetune_lr"] = float(lr)
    try:
        return Recipe(**fields)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
