"""Energy and hardware tables: data files with one citation per row, validated on load.

Public: `load_table(kind, source=None) -> Table`, the row models `OpRow`, `SramRow`, `DramRow`,
`NodeRow`, `GpuRow`, `Table`, `UncitedDataWarning`, `TABLE_KINDS`.

The built-in tables live in `picojoule/energy/data/*.yaml`. A user table is a YAML file (a list
of rows, or a mapping with a `rows:` list) or a CSV file with one header row; in CSV a nested
field is spelled with a dot (`peak_tops.fp16`). Every row is validated by its pydantic model; a
malformed row raises `TableError` naming the file, the row number and the field. A row without a
citation is accepted with an `UncitedDataWarning`, and every result computed from it lists it in
its `uncited` field so that reports can mark it.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from picojoule.errors import ConfigError, suggest
from picojoule.yamlio import load_yaml

__all__ = [
    "TABLE_KINDS",
    "TableError",
    "UncitedDataWarning",
    "OpRow",
    "SramRow",
    "DramRow",
    "NodeRow",
    "GpuRow",
    "Table",
    "load_table",
]

TableKind = Literal["ops", "sram", "dram", "nodes", "gpus"]
TABLE_KINDS: tuple[TableKind, ...] = ("ops", "sram", "dram", "nodes", "gpus")


class TableError(ConfigError):
    """A data table that cannot be used as written (the message names file, row and field)."""


class UncitedDataWarning(UserWarning):
    """A table row has no citation; results that use it say so."""


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    citation: str | None = None

    @field_validator("citation")
    @classmethod
    def _blank_is_missing(cls, value: str | None) -> str | None:
        return value or None

    @property
    def label(self) -> str:
        """Short identification of the row for messages and report footnotes."""
        return type(self).__name__


class OpRow(_Row):
    """Energy of one arithmetic operation on operands of `dtype` (a picojoule format name)."""

    op: Literal["add", "mul", "fma"]
    dtype: str
    energy_pj: float = Field(gt=0)
    node_nm: float = Field(default=45, gt=0)

    @field_validator("dtype")
    @classmethod
    def _known_format(cls, value: str) -> str:
        from picojoule.formats import get

        get(value)  # raises FormatError (a ValueError) naming the nearest formats
        return value.lower()

    @property
    def label(self) -> str:
        return f"{self.op} {self.dtype}"


class SramRow(_Row):
    """One SRAM access of `width_bits` from an array of `capacity_bytes`."""

    capacity_bytes: int = Field(gt=0)
    width_bits: int = Field(gt=0)
    read_energy_pj: float = Field(gt=0)
    write_energy_pj: float | None = Field(default=None, gt=0)
    node_nm: float = Field(default=45, gt=0)

    @property
    def label(self) -> str:
        return f"{self.capacity_bytes} B x {self.width_bits} b"


class DramRow(_Row):
    """Off-chip memory energy per bit moved; `pj_per_bit_high` closes a published range."""

    kind: str
    pj_per_bit: float = Field(gt=0)
    pj_per_bit_high: float | None = Field(default=None, gt=0)

    @property
    def label(self) -> str:
        return self.kind


class NodeRow(_Row):
    """Energy of a circuit at `node_nm` relative to the same circuit at 45 nm, 0.9 V."""

    node_nm: float = Field(gt=0)
    energy_factor: float = Field(gt=0)

    @property
    def label(self) -> str:
        return f"{self.node_nm:g} nm"


class GpuRow(_Row):
    """One GPU: datasheet peaks per format (dense and 2:4 sparse), memory, power, process."""

    name: str
    title: str
    arch: str
    year: int = Field(ge=1990)
    process: str
    node_nm: float = Field(gt=0)
    sms: int | None = Field(default=None, gt=0)
    clock_mhz: float | None = Field(default=None, gt=0)
    memory: str
    dram_energy: str
    memory_gb: float = Field(gt=0)
    bandwidth_gbs: float = Field(gt=0)
    tdp_w: float = Field(gt=0)
    peak_tops: dict[str, float] = Field(min_length=1)
    sparse_tops: dict[str, float] = Field(default_factory=dict)
    note: str | None = None

    @field_validator("peak_tops", "sparse_tops")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not v > 0]
        if bad:
            raise ValueError(f"peaks must be positive, got {', '.join(bad)}")
        return {k.lower(): v for k, v in value.items()}

    @property
    def label(self) -> str:
        return self.name


_ROW_MODELS: dict[str, type[_Row]] = {
    "ops": OpRow,
    "sram": SramRow,
    "dram": DramRow,
    "nodes": NodeRow,
    "gpus": GpuRow,
}
R = TypeVar("R", bound=_Row)


@dataclass(frozen=True, kw_only=True)
class Table(Generic[R]):
    """Validated rows of one table and where they came from."""

    kind: str
    source: str
    rows: tuple[R, ...]

    @property
    def uncited(self) -> tuple[str, ...]:
        """Labels of the rows that carry no citation (marked in every report using them)."""
        return tuple(f"{self.source}: {r.label}" for r in self.rows if r.citation is None)


def _read_rows(path: Path) -> list[Any]:
    """Raw rows of a YAML or CSV file (untrusted data: safe_load only)."""
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TableError(f"cannot read table {path}: {err.strerror}") from err
    if suffix in (".yaml", ".yml"):
        try:
            data = load_yaml(text, str(path))
        except ConfigError as err:  # bad syntax or a key given twice: one line, as TableError
            raise TableError(str(err)) from None
        if isinstance(data, dict) and "rows" in data:
            data = data["rows"]
        if not isinstance(data, list):
            raise TableError(f"{path}: expected a list of rows (or a mapping with 'rows:')")
        return data
    if suffix == ".csv":
        return [_nest(row) for row in csv.DictReader(text.splitlines())]
    raise TableError(f"{path}: tables are .yaml, .yml or .csv files, not {suffix or 'no suffix'}")


def _nest(flat: dict[str, str | None]) -> dict[str, Any]:
    """CSV row -> nested mapping: empty cells dropped, `a.b` columns become {'a': {'b': ..}}."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if key is None or value is None or value.strip() == "":
            continue
        head, _, tail = key.strip().partition(".")
        if tail:
            out.setdefault(head, {})[tail] = value
        else:
            out[head] = value
    return out


def _validate(kind: str, source: str, raw: list[Any]) -> Table:
    model = _ROW_MODELS[kind]
    rows = []
    for index, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise TableError(f"{source}: row {index} is not a mapping of column -> value")
        try:
            rows.append(model.model_validate(item))
        except ValidationError as err:
            where = _row_name(item)
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in err.errors()
            )
            raise TableError(
                f"{source}: row {index}{where} is malformed - {problems}. "
                f"Columns of a {kind} row: {', '.join(model.model_fields)}"
            ) from None
    if not rows:
        raise TableError(f"{source}: the table has no rows")
    table = Table(kind=kind, source=source, rows=tuple(rows))
    for label in table.uncited:
        warnings.warn(
            f"{label}: row has no citation; results that use it are marked 'uncited'",
            UncitedDataWarning,
            stacklevel=3,
        )
    return table


def _row_name(item: dict[str, Any]) -> str:
    """' (op dtype)' or ' (key=value)' from the row's identifying column, for messages."""
    if "op" in item and "dtype" in item:
        return f" ({item['op']} {item['dtype']})"
    for key in ("name", "kind", "node_nm", "capacity_bytes"):
        if key in item:
            return f" ({key}={item[key]})"
    return ""


@cache
def _builtin(kind: str) -> Table:
    ref = resources.files("picojoule.energy").joinpath("data", f"{kind}.yaml")
    data = load_yaml(ref.read_text(encoding="utf-8"), f"builtin {kind}.yaml")
    return _validate(kind, f"builtin {kind}.yaml", data["rows"])


def load_table(kind: str, source: str | Path | None = None) -> Table:
    """Load and validate a table: the built-in one (`source=None`) or a user YAML/CSV file."""
    if kind not in _ROW_MODELS:
        raise TableError(f"unknown table kind {kind!r}{suggest(kind, TABLE_KINDS)}")
    if source is None:
        return _builtin(kind)
    path = Path(source)
    return _validate(kind, str(path), _read_rows(path))
