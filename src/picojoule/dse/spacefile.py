"""Design-space files: YAML -> a validated `DesignSpace`.

Public: `parse_space`, `load_space`, `find_space`, `SPACES_DIR`, `Catalog`.

A space file names a workload, the objectives, the search, optional budgets and, per design
parameter, either one fixed value, a list, or a range::

    name: magnet-resnet50
    workload: resnet50            # a picojoule.workload builtin; batch: 1 by default
    preset: magnet                # picojoule.arch preset whose keywords are parameters
    objectives: [energy, latency, area]
    mapper: {objective: energy}   # per-layer mapping search (also seed, samples, starts)
    search: {method: nsga2, trials: 300, population: 32, seed: 0}
    constraints: {area_mm2: 30, power_w: 5}
    parameters:
      vector_width: [4, 8, 16]                       # list
      vector_units: {low: 4, high: 32, pow2: true}   # 4 8 16 32
      pe_rows: {low: 2, high: 8, step: 2}            # 2 4 6 8
      weight_format: int8                            # fixed

Which parameter names exist, and what values they accept, is the evaluator's `ParamSpec`
catalogue (`picojoule.dse.params.catalog(preset)`), not this file's; YAML only feeds the
dataclasses of `picojoule.dse.space`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from picojoule.dse.errors import SpaceError
from picojoule.dse.space import (
    MAX_GRID,
    OBJECTIVES,
    Constraints,
    DesignSpace,
    MapperSettings,
    Parameter,
    ParamSpec,
    Scalar,
    SearchSettings,
    did_you_mean,
)
from picojoule.errors import ConfigError, PicojouleError
from picojoule.yamlio import load_yaml_file

__all__ = ["Catalog", "parse_space", "load_space", "find_space", "SPACES_DIR"]

SPACES_DIR = Path(__file__).parent / "spaces"  # packaged example spaces
Method = Literal["grid", "random", "nsga2"]

# Strict numbers: `trials: "300"`, `batch: true` or `seed: 1.5` are typos, not values to coerce.
# Upper bounds are where a count stops being a plan and becomes a slip of the keyboard.
Count = Annotated[int, Strict()]
Seed = Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)]  # numpy seeds are 32-bit
Budget = Annotated[float, Strict(), Field(allow_inf_nan=False)]


class _Search(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Method = "grid"
    trials: Count | None = Field(default=None, ge=1, le=10_000_000)  # days of evaluation
    population: Count = Field(default=32, ge=2, le=100_000)
    seed: Seed = 0


class _Mapper(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objective: Literal["energy", "latency", "edp"] = "energy"
    seed: Seed = 0
    samples: Count = Field(default=1000, ge=1, le=10_000_000)  # per layer: minutes each
    starts: Count = Field(default=8, ge=1, le=10_000)

    @model_validator(mode="after")
    def _starts_from_samples(self) -> _Mapper:
        if self.starts > self.samples:
            raise ValueError(
                f"mapper.starts {self.starts} > mapper.samples {self.samples}: descents start "
                "from the best samples; give starts <= samples"
            )
        return self


class _Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A 300 mm wafer is 70,686 mm^2 and a rack ~100 kW: budgets past 1e6 are unit slips.
    area_mm2: Budget | None = Field(default=None, gt=0, le=1e6)
    power_w: Budget | None = Field(default=None, gt=0, le=1e6)


class _Space(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    workload: str = Field(min_length=1)
    batch: Count = Field(default=1, ge=1, le=65536)
    preset: str = Field(default="magnet", min_length=1)
    mapper: _Mapper = Field(default_factory=_Mapper)
    objectives: list[str] = Field(default_factory=lambda: list(OBJECTIVES))
    search: _Search = Field(default_factory=_Search)
    constraints: _Constraints = Field(default_factory=_Constraints)
    parameters: dict[str, Any]

    @model_validator(mode="after")
    def _objectives_known(self) -> _Space:
        if not self.objectives:
            raise ValueError(f"objectives is empty; choose from {list(OBJECTIVES)}")
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise ValueError(f"unknown objective {o!r}; choose from {list(OBJECTIVES)}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives {self.objectives} repeat a name")
        return self


_SECTIONS: dict[str, type[BaseModel]] = {
    "search": _Search,
    "mapper": _Mapper,
    "constraints": _Constraints,
}
_EXAMPLES = {
    "search": "{method: nsga2, trials: 300}",
    "mapper": "{objective: energy, samples: 1000}",
    "constraints": "{area_mm2: 30, power_w: 5}; budgets are numbers, not expressions",
    "parameters": "name: values lines",
}


def _pydantic_message(err: ValidationError) -> str:
    """The first problem (field path, message, bad value) and how many more there are."""
    errors = err.errors()
    e = errors[0]
    loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
    msg = str(e["msg"]).removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        model = _SECTIONS.get(str(e["loc"][0]), _Space) if len(e["loc"]) > 1 else _Space
        fields = list(model.model_fields)
        msg = f"unknown field{did_you_mean(str(e['loc'][-1]), fields)}; known: {', '.join(fields)}"
        return f"{loc}: {msg}"
    if e["type"] in ("model_type", "dict_type"):
        example = _EXAMPLES.get(str(e["loc"][0]), "key: value lines")
        return f"{loc}: expected a mapping ({example}), got {e.get('input')!r}"
    value = e.get("input")
    shown = "" if isinstance(value, dict | list) or e["type"] == "missing" else f" (got {value!r})"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{loc}: {msg}{shown}{more}"


def _is_scalar(v: object) -> bool:
    return isinstance(v, int | float | str) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    """A finite int or float (not a yes/no, not .nan or .inf)."""
    return _is_scalar(v) and not isinstance(v, str) and math.isfinite(v)


def _range_values(name: str, spec: dict[str, Any]) -> list[Scalar]:
    unknown = set(spec) - {"low", "high", "step", "pow2"}
    if unknown or not {"low", "high"} <= set(spec):
        raise SpaceError(
            f"parameter {name!r}: a range is {{low, high, step}} or {{low, high, pow2: true}}; "
            f"got keys {sorted(spec)}"
        )
    low, high, step, pow2 = spec["low"], spec["high"], spec.get("step"), spec.get("pow2", False)
    if not all(_is_number(x) for x in (low, high)):
        raise SpaceError(
            f"parameter {name!r}: range ends must be finite numbers, got {low!r}, {high!r}"
        )
    if not isinstance(pow2, bool):
        raise SpaceError(f"parameter {name!r}: pow2 is true or false, got {pow2!r}")
    if low > high:
        raise SpaceError(f"parameter {name!r}: range low {low} > high {high}; swap them")
    if pow2:
        if step is not None:
            raise SpaceError(f"parameter {name!r}: give either step or pow2, not both")
        ends = [int(x) for x in (low, high) if x == int(x) and x > 0]
        if len(ends) != 2 or any(x & (x - 1) for x in ends):
            raise SpaceError(
                f"parameter {name!r}: pow2 range ends must be powers of two, got {low}..{high}"
            )
        return [1 << k for k in range(ends[0].bit_length() - 1, ends[1].bit_length())]
    if step is None:
        if isinstance(low, float) or isinstance(high, float):
            raise SpaceError(
                f"parameter {name!r}: a float range needs a step (designs must be discrete)"
            )
        step = 1
    if not _is_number(step) or step <= 0:
        raise SpaceError(f"parameter {name!r}: step must be a positive number, got {step!r}")
    count = math.floor((high - low) / step + 1e-9) + 1
    if count > MAX_GRID:
        raise SpaceError(f"parameter {name!r}: range has {count:,} values; use a larger step")
    values = [low + i * step for i in range(count)]
    if all(isinstance(x, int) for x in (low, high, step)):
        return values
    return [round(v, 12) for v in values]  # 0.1 + 2*0.1 -> 0.3, not 0.30000000000000004


def _check_value(spec: ParamSpec, value: Scalar) -> Scalar:
    where = f"parameter {spec.name!r} value {value!r}"
    if isinstance(value, bool):
        want = "text" if spec.type == "str" else f"a number ({spec.type})"
        raise SpaceError(f"{where}: expected {want}, not a yes/no value")
    if not _is_scalar(value):
        raise SpaceError(f"{where}: expected a single {spec.type} value, not a nested structure")
    if spec.type == "str":
        if not isinstance(value, str):
            hint = ""
            if isinstance(value, int) and spec.name == "sparsity":
                hint = " (YAML reads an unquoted 2:4 as the base-60 number 124; quote it: '2:4')"
            raise SpaceError(f"{where}: expected text{hint}")
    elif isinstance(value, str):
        raise SpaceError(f"{where}: expected a number ({spec.type})")
    elif not math.isfinite(value):
        raise SpaceError(f"{where}: expected a finite number ({spec.type})")
    elif spec.type == "int":
        if value != int(value):
            raise SpaceError(f"{where}: expected a whole number")
        value = int(value)
    else:
        value = float(value)
    if spec.minimum is not None and not isinstance(value, str) and value < spec.minimum:
        raise SpaceError(f"{where}: must be >= {spec.minimum:g}")
    if spec.check is not None:
        try:
            spec.check(value)
        except SpaceError:
            raise
        except PicojouleError as e:
            raise SpaceError(f"{where}: {e}") from None
    return value


def _values(spec: ParamSpec, raw: object) -> tuple[Scalar, ...]:
    name = spec.name
    if isinstance(raw, dict):
        items: list[Any] = _range_values(name, raw)
    elif isinstance(raw, list):
        if not raw:
            raise SpaceError(f"parameter {name!r}: empty list; give at least one value")
        items = raw
    elif _is_scalar(raw):
        items = [raw]
    else:
        raise SpaceError(
            f"parameter {name!r}: expected a value, a list, or a range {{low, high, step}}; "
            f"got {raw!r}"
        )
    values = tuple(_check_value(spec, v) for v in items)
    if len(set(values)) != len(values):
        dup = sorted({v for v in values if values.count(v) > 1}, key=str)
        raise SpaceError(f"parameter {name!r}: values repeat: {dup}")
    if spec.check_ends is not None and spec.type != "str":
        for end in sorted({min(values), max(values)}):
            try:
                spec.check_ends(end)
            except PicojouleError as e:
                raise SpaceError(f"parameter {name!r} value {end!r}: {e}") from None
    return values


Catalog = Mapping[str, ParamSpec] | Callable[[str], Mapping[str, ParamSpec]]


def parse_space(data: object, catalog: Catalog, *, where: str = "space") -> DesignSpace:
    """Validate a loaded YAML document against the schema and the parameter catalogue
    (a mapping, or a function of the space's `preset` returning one)."""
    if not isinstance(data, dict):
        raise SpaceError(f"{where}: expected a mapping with name, workload and parameters")
    try:
        doc = _Space.model_validate(data)
    except ValidationError as e:
        raise SpaceError(f"{where}: {_pydantic_message(e)}") from None
    if callable(catalog):
        try:
            catalog = catalog(doc.preset)
        except SpaceError:
            raise
        except PicojouleError as e:
            raise SpaceError(f"{where}: preset: {e}") from None
    if not doc.parameters:
        raise SpaceError(f"{where}: parameters is empty; name at least one of {sorted(catalog)}")
    swept: list[Parameter] = []
    fixed: dict[str, Scalar] = {}
    for name, raw in doc.parameters.items():
        if name not in catalog:
            raise SpaceError(
                f"{where}: unknown parameter {name!r}{did_you_mean(name, catalog)}; "
                f"known: {', '.join(sorted(catalog))}"
            )
        try:
            values = _values(catalog[name], raw)
        except SpaceError as e:
            raise SpaceError(f"{where}: {e}") from None
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            swept.append(Parameter(name=name, values=values))
    if doc.search.method != "grid" and doc.search.trials is None:
        raise SpaceError(f"{where}: search.method {doc.search.method} needs search.trials")
    size = math.prod(len(p.values) for p in swept)
    if doc.search.method == "grid" and size > MAX_GRID:
        raise SpaceError(
            f"{where}: the grid has {size:,} designs, more than {MAX_GRID:,}; use search "
            "{method: nsga2, trials: N} or fewer values"
        )
    return DesignSpace(
        name=doc.name,
        workload=doc.workload,
        batch=doc.batch,
        preset=doc.preset,
        mapper=MapperSettings(**doc.mapper.model_dump()),
        parameters=tuple(swept),
        fixed=tuple(sorted(fixed.items())),
        objectives=tuple(doc.objectives),
        constraints=Constraints(**doc.constraints.model_dump()),
        search=SearchSettings(**doc.search.model_dump()),
        source=doc.model_dump(),
    )


def load_space(path: str | Path, catalog: Catalog) -> DesignSpace:
    """Read and validate a design-space YAML file (data only; a key given twice, e.g. two
    `parameters:` blocks, is an error rather than one block silently dropped)."""
    p = Path(path)
    try:
        data = load_yaml_file(p)
    except SpaceError:
        raise
    except ConfigError as e:
        raise SpaceError(str(e)) from None
    if data is None:
        raise SpaceError(f"{p} is empty; a space needs name, workload and parameters")
    return parse_space(data, catalog, where=str(p))


def find_space(name_or_path: str | Path) -> Path:
    """A space file: the path itself, or a packaged space by name (`magnet-resnet50`)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    packaged = SPACES_DIR / f"{name_or_path}.yaml"
    if packaged.exists():
        return packaged
    names = sorted(q.stem for q in SPACES_DIR.glob("*.yaml"))
    raise SpaceError(
        f"no design-space file {str(name_or_path)!r}{did_you_mean(str(name_or_path), names)}; "
        "give a YAML path or a packaged space: "
        f"{', '.join(names)}"
    )
