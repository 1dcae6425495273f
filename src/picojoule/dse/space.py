"""Design spaces: a YAML file -> a validated, fully discrete `DesignSpace`.

Public: `ParamSpec`, `Parameter`, `Constraints`, `SearchSettings`, `DesignSpace`, `Design`,
`parse_space`, `load_space`.

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

Every parameter becomes a finite tuple of values, so designs are exact keys for the results
store and grid, random and NSGA-II searches draw from the same set. Which parameter names
exist, and what values they accept, is the evaluator's `ParamSpec` catalogue, not this file's.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from picojoule.dse.errors import SpaceError
from picojoule.errors import PicojouleError, nearest

__all__ = [
    "Scalar",
    "ParamSpec",
    "Parameter",
    "Constraints",
    "SearchSettings",
    "MapperSettings",
    "DesignSpace",
    "Design",
    "OBJECTIVES",
    "parse_space",
    "load_space",
    "find_space",
    "SPACES_DIR",
]

Scalar = int | float | str
Method = Literal["grid", "random", "nsga2"]
# Objective name -> metric it minimises (keys of `evaluate.DesignMetrics.as_dict()`).
OBJECTIVES: dict[str, str] = {
    "energy": "energy_pj",
    "latency": "latency_s",
    "area": "area_mm2",
}
SPACES_DIR = Path(__file__).parent / "spaces"  # packaged example spaces
MAX_GRID = 200_000  # past this a grid is a typo, not a plan: say so instead of enumerating


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """One design parameter the evaluator understands: its type, lower bound and checker."""

    name: str
    type: Literal["int", "float", "str"]
    doc: str
    minimum: float | None = None
    check: Callable[[Scalar], None] | None = None  # raises PicojouleError on a bad value


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """A swept parameter and its finite, ordered, duplicate-free values."""

    name: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True, kw_only=True)
class Constraints:
    """Budgets every reported design must meet; None = unconstrained."""

    area_mm2: float | None = None
    power_w: float | None = None


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    method: Method = "grid"
    trials: int | None = None  # random / nsga2: designs to evaluate
    population: int = 32  # nsga2 generation size (also the batch sent to the backend)
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class Design:
    """One point of a space: every parameter (swept and fixed) with its value."""

    params: tuple[tuple[str, Scalar], ...]

    @classmethod
    def of(cls, values: Mapping[str, Scalar]) -> Design:
        return cls(params=tuple(sorted(values.items())))

    def as_dict(self) -> dict[str, Scalar]:
        return dict(self.params)

    @property
    def key(self) -> str:
        """Stable 16-hex-digit identity: same parameters, same key, in any process."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class MapperSettings:
    """How `picojoule.hw.map_workload` searches each layer (its defaults): minimise
    `objective`; draw `samples` random mappings and descend from the `starts` best."""

    objective: Literal["energy", "latency", "edp"] = "energy"
    seed: int = 0
    samples: int = 1000
    starts: int = 8


@dataclass(frozen=True, kw_only=True)
class DesignSpace:
    name: str
    workload: str
    batch: int
    preset: str
    mapper: MapperSettings
    parameters: tuple[Parameter, ...]  # swept (two or more values)
    fixed: tuple[tuple[str, Scalar], ...]  # single-valued
    objectives: tuple[str, ...]
    constraints: Constraints
    search: SearchSettings
    source: dict[str, Any] = field(compare=False, repr=False)

    @property
    def size(self) -> int:
        return math.prod(len(p.values) for p in self.parameters)

    @property
    def digest(self) -> str:
        """Hash of everything that decides which designs a run evaluates, and how."""
        text = json.dumps(self.source, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def design(self, choice: Mapping[str, Scalar]) -> Design:
        return Design.of({**dict(self.fixed), **choice})

    def grid(self) -> Iterator[Design]:
        """Every design, in a fixed order (first parameter varies slowest)."""
        if self.size > MAX_GRID:
            raise SpaceError(
                f"space {self.name!r} has {self.size:,} designs, more than a grid search "
                f"should enumerate ({MAX_GRID:,}); use search.method random or nsga2 "
                "with search.trials"
            )
        idx = [0] * len(self.parameters)
        for _ in range(self.size):
            yield self.design(
                {p.name: p.values[i] for p, i in zip(self.parameters, idx, strict=True)}
            )
            for d in reversed(range(len(idx))):
                idx[d] += 1
                if idx[d] < len(self.parameters[d].values):
                    break
                idx[d] = 0


# --- the file format (pydantic validates structure; values are checked against the catalogue) ---


class _Search(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Method = "grid"
    trials: int | None = Field(default=None, ge=1)
    population: int = Field(default=32, ge=2)
    seed: int = 0


class _Mapper(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objective: Literal["energy", "latency", "edp"] = "energy"
    seed: int = 0
    samples: int = Field(default=1000, ge=1)
    starts: int = Field(default=8, ge=1)


class _Constraints(BaseModel):
    model_config = ConfigDict(extra="forbid")
    area_mm2: float | None = Field(default=None, gt=0)
    power_w: float | None = Field(default=None, gt=0)


class _Space(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    workload: str = Field(min_length=1)
    batch: int = Field(default=1, ge=1)
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


def _pydantic_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _is_scalar(v: object) -> bool:
    return isinstance(v, int | float | str) and not isinstance(v, bool)


def _range_values(name: str, spec: dict[str, Any]) -> list[Scalar]:
    unknown = set(spec) - {"low", "high", "step", "pow2"}
    if unknown or not {"low", "high"} <= set(spec):
        raise SpaceError(
            f"parameter {name!r}: a range is {{low, high, step}} or {{low, high, pow2: true}}; "
            f"got keys {sorted(spec)}"
        )
    low, high, step, pow2 = spec["low"], spec["high"], spec.get("step"), spec.get("pow2", False)
    if not all(_is_scalar(x) and not isinstance(x, str) for x in (low, high)):
        raise SpaceError(f"parameter {name!r}: range ends must be numbers, got {low!r}, {high!r}")
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
    if not (_is_scalar(step) and not isinstance(step, str)) or step <= 0:
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
                f"{where}: unknown parameter {name!r} (did you mean: {nearest(name, catalog)}?); "
                f"known: {', '.join(sorted(catalog))}"
            )
        values = _values(catalog[name], raw)
        if len(values) == 1:
            fixed[name] = values[0]
        else:
            swept.append(Parameter(name=name, values=values))
    if doc.search.method != "grid" and doc.search.trials is None:
        raise SpaceError(f"{where}: search.method {doc.search.method} needs search.trials")
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
    """Read and validate a design-space YAML file (`yaml.safe_load`: data only)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise SpaceError(f"cannot read design space {p}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpaceError(f"{p} is not valid YAML: {e}") from None
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
        f"no design-space file {str(name_or_path)!r} (did you mean: "
        f"{nearest(str(name_or_path), names)}?); give a YAML path or a packaged space: "
        f"{', '.join(names)}"
    )
