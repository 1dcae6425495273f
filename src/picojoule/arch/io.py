"""YAML <-> `Arch`. The pydantic models are the only schema; this module turns their
validation errors into one message that names the field and the fix.

Public: `load_arch(source)`, `arch_from_dict(data, origin)`, `arch_to_yaml(arch)`,
`save_arch(arch, path)`, `ArchError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from picojoule.arch.presets import PRESETS, preset
from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel, SparseSupport
from picojoule.errors import ConfigError, nearest

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
            f"{', '.join(model_fields)} (did you mean: {nearest(str(loc[-1]), model_fields)})"
        )
    if kind == "missing":
        return f"{origin}: field {where!r} is required; add it"
    hint = _FIELD_HINTS.get(field, "")
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
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
            f"no preset or file named {text_source!r}; presets: {', '.join(PRESETS)} "
            f"(did you mean: {nearest(text_source, PRESETS)}), or give a path to a YAML file"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "unparsable YAML"
        raise ArchError(
            f"{path}:{line}: {problem}; fix the YAML syntax there (indent with spaces, "
            "'key: value' pairs)"
        ) from None
    return arch_from_dict(data, origin=str(path))


def arch_to_yaml(arch: Arch) -> str:
    """YAML text that `load_arch` reads back to an equal `Arch`."""
    data = arch.model_dump(mode="json", exclude_defaults=True)
    data = {"name": arch.name, **data}
    return yaml.safe_dump(data, sort_keys=False)


def save_arch(arch: Arch, path: str | Path) -> Path:
    out = Path(path)
    out.write_text(arch_to_yaml(arch))
    return out
