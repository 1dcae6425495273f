"""Design spaces as data: a fully discrete `DesignSpace` and its `Design`s.

Public: `Scalar`, `ParamSpec`, `Parameter`, `Constraints`, `SearchSettings`,
`MapperSettings`, `DesignSpace`, `Design`, `OBJECTIVES`, `MAX_GRID`.

Every swept parameter holds a finite tuple of values, so designs are exact keys for the
results store, and grid, random and NSGA-II searches draw from the same set. Files are read
and validated by `picojoule.dse.spacefile`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from picojoule.dse.errors import SpaceError
from picojoule.errors import did_you_mean

__all__ = [
    "did_you_mean",
    "Scalar",
    "ParamSpec",
    "Parameter",
    "Constraints",
    "SearchSettings",
    "MapperSettings",
    "DesignSpace",
    "Design",
    "OBJECTIVES",
    "MAX_GRID",
]

Scalar = int | float | str


Method = Literal["grid", "random", "nsga2"]
# Objective name -> metric it minimises (keys of `evaluate.DesignMetrics.as_dict()`).
OBJECTIVES: dict[str, str] = {
    "energy": "energy_pj",
    "latency": "latency_s",
    "area": "area_mm2",
}
MAX_GRID = 200_000  # past this a grid is a typo, not a plan: say so instead of enumerating


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """One design parameter the evaluator understands: its type, lower bound and checker."""

    name: str
    type: Literal["int", "float", "str"]
    doc: str
    minimum: float | None = None
    check: Callable[[Scalar], None] | None = None  # raises PicojouleError on a bad value
    # Run on a numeric parameter's smallest and largest value only (a preset keyword: building
    # the Arch at both ends catches a 10^30-bit buffer without building every grid point).
    check_ends: Callable[[Scalar], None] | None = None


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
