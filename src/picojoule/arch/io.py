"""YAML <-> `Arch`. The pydantic models are the only schema; this module turns their
validation errors into one message that names the field and the fix.

Public: `load_arch(source)`, `arch_from_dict(data, origin)`, `arch_to_yaml(arch)`,
`save_arch(arch, path)`, `ArchError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from picojoule.arch.presets import PRESETS, preset
from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel, SparseSupport
from picojoule.errors import ConfigError, did_you_mean
from picojoule.fsio import atomic_write_text
from picojoule.yamlio import load_yaml_file

__all__ = ["ArchError", "load_arch", "arch_from_dict", "arch_to_yaml", "save_arch"]

_FIELD_HINTS = {
    "holds": "list operands by their names: weights, inputs, outputs",
    "stationary": "name one operand: weights, inputs or outputs",
    "x_dims": "list loop names from N G K C P Q R S",
    "y_dims": "list loop names from N G K C P Q R S",
    "temporal_dims": "list loop names from N G K C P Q R S",
    "memory": "use dram or sram",
}


class ArchError(ConfigError):
    """An architecture spec that cannot be used as written."""


# pydantic error type -> what a YAML author should write instead (the input's kind is added).
_TYPE_HINTS = {
    "model_type": "expected a mapping of fields (key: value lines)",
    "model_attributes_type": "expected a mapping of fields (key: value lines)",
    "dict_type": "expected a mapping (key: value lines)",
    "tuple_type": "expected a list ([a, b] or '- item' lines)",
    "list_type": "expected a list ([a, b] or '- item' lines)",
    "string_type": "expected text",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
}


def _kind(value: object) -> str:
    return {
        "str": "text",
        "list": "a list",
        "dict": "a mapping",
        "bool": "true/false",
        "NoneType": "null (an empty value)",
    }.get(type(value).__name__, f"a {type(value).__name__}")


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _message(err: dict[str, Any], origin: str) -> str:
    loc = tuple(err.get("loc", ()))
    where = _where(loc)
    kind = err.get("type", "")
    field = next((str(p) for p in reversed(loc) if isinstance(p, str)), "")
    if kind == "extra_forbidden":
        model_fields = _fields_at(loc[:-1])
        return (
            f"{origin}: unknown field {where!r}; remove it or use one of "
            f"{', '.join(model_fields)}{did_you_mean(str(loc[-1]), model_fields)}"
        )
    if kind == "missing":
        return f"{origin}: field {where!r} is required; add it"
    hint = _FIELD_HINTS.get(field, "")
    value = err.get("input")
    if kind in _TYPE_HINTS:
        shown = "" if isinstance(value, dict | list) else f" {value!r}"
        text = f"{_TYPE_HINTS[kind]}, got {_kind(value)}{shown}"
        return f"{origin}: {where}: {text}" + (f"; {hint}" if hint else "")
    # Our own validators (limits, partitions) already quote the value they refuse.
    quote = kind != "value_error" and not isinstance(value, dict | list)
    shown = f" (got {value!r})" if quote else ""
    text = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{origin}: {where}: {text}{shown}" + (f"; {hint}" if hint else "")


def _fields_at(loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model at `loc` (for 'did you mean' on unknown keys)."""
    named = [p for p in loc if isinstance(p, str)]
    model: type = Arch
    if named:
        model = {
            "levels": MemoryLevel,
            "fanout": Fanout,
            "mac": MacUnit,
            "sparse": SparseSupport,
        }.get(named[-1], Arch)
    return list(model.model_fields)


def arch_from_dict(data: object, origin: str = "arch") -> Arch:
    """Validate a parsed mapping into an `Arch`; errors name the field and the fix."""
    if not isinstance(data, dict):
        raise ArchError(
            f"{origin}: expected a mapping with name, levels, mac..., got "
            f"{type(data).__name__}; see docs/accelerator.md for the format"
        )
    try:
        return Arch.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = _message(errors[0], origin)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ArchError(first + more) from None


def load_arch(source: str | Path) -> Arch:
    """An `Arch` from a preset name (`eyeriss`, `simba`...) or a YAML file path."""
    text_source = str(source)
    if text_source in PRESETS:
        return preset(text_source)
    path = Path(source)
    if not path.exists():
        raise ArchError(
            f"no preset or file named {text_source!r}; presets: {', '.join(PRESETS)}"
            f"{did_you_mean(text_source, PRESETS)}, or give a path to a YAML file"
        )
    try:
        data = load_yaml_file(path)  # refuses duplicate keys: no field silently dropped
    except ArchError:
        raise
    except ConfigError as exc:
        raise ArchError(str(exc)) from None
    if data is None:
        raise ArchError(f"{path}: the file is empty; see docs/accelerator.md for the format")
    return arch_from_dict(data, origin=str(path))


def arch_to_yaml(arch: Arch) -> str:
    """YAML text that `load_arch` reads back to an equal `Arch`."""
    import yaml

    data = arch.model_dump(mode="json", exclude_defaults=True)
    data = {"name": arch.name, **data}
    return yaml.safe_dump(data, sort_keys=False)


def save_arch(arch: Arch, path: str | Path) -> Path:
    return atomic_write_text(path, arch_to_yaml(arch))  # mkstemp + replace: see fsio
