"""Interconnect links as data: PCIe, NVLink generations, InfiniBand, with bandwidth, per-step
latency (alpha), achievable efficiency, energy per bit and a source for each.

Public: `Link`, `links(override=None)`, `link(name, override=None)`, `SIGNALING`,
`load_rows(section, model, override)` (the shared loader behind `links`, `nodes`, `models`).

The built-in rows live in `presets/links.yaml` (every figure cited beside it). A user file given
as `override` (`--hardware FILE` on the command line) is strict YAML (`picojoule.yamlio`:
duplicate keys refused) holding any of the sections `links:`, `nodes:`, `models:`, each a list of
rows of the same schema; a row replaces the built-in row of the same name or adds a new one.

Units: bandwidth in GB/s = 10^9 B/s per direction, latency in us, energy in pJ per bit per hop
(`picojoule.energy.units`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from picojoule.errors import ConfigError, suggest
from picojoule.yamlio import load_yaml, load_yaml_file

__all__ = ["Link", "SIGNALING", "Signaling", "links", "link", "load_rows"]

Source = Literal["primary", "secondary", "assumption"]
Row = TypeVar("Row", bound=BaseModel)


class Signaling(BaseModel):
    """A measured signaling energy from NVIDIA Research, the reference the link energies use."""

    model_config = ConfigDict(frozen=True)

    what: str
    pj_per_bit: float
    per_mm: bool = False
    citation: str


# Ground-referenced signaling (GRS) test chips: the energy floor of moving a bit at each distance.
SIGNALING: tuple[Signaling, ...] = (
    Signaling(what="on-chip wire", pj_per_bit=0.17, per_mm=True,
              citation="Turner et al., Ground-Referenced Signaling for Intra-Chip and Short-Reach "
              "Chip-to-Chip Interconnects, IEEE CICC 2018: 16 Gb/s, 170 fJ/b/mm"),
    Signaling(what="across an organic package", pj_per_bit=0.54,
              citation="Poulton et al., A 0.54 pJ/b 20 Gb/s GRS short-reach link in 28 nm CMOS, "
              "IEEE JSSC Dec 2013 (4.5 mm organic substrate); 0.58 pJ/b in Turner et al. 2018"),
    Signaling(what="over a printed-circuit board", pj_per_bit=1.17,
              citation="Turner et al., IEEE CICC 2018: 25 Gb/s GRS link over a PCB, 1.17 pJ/b"),
)  # fmt: skip


class Link(BaseModel):
    """One interconnect link (see the header of presets/links.yaml for every field)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: str
    title: str
    kind: Literal["nvlink", "pci", "net"]  # NCCL's hardware classes (latency tables)
    bandwidth_gbs: float = Field(gt=0)  # per direction
    latency_us: float = Field(ge=0)  # alpha per ring step, NCCL Simple protocol
    efficiency: float = Field(gt=0, le=1)  # achievable fraction of the line rate
    energy_pj_per_bit: float = Field(ge=0)  # per hop
    source: Source
    citation: str = Field(min_length=1)
    note: str | None = None

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Line rate per direction, B/s."""
        return self.bandwidth_gbs * 1e9

    @property
    def achievable_bytes_per_s(self) -> float:
        """What bulk collective traffic gets per direction, B/s."""
        return self.bandwidth_bytes_per_s * self.efficiency


def _builtin_text(section: str) -> str:
    return (
        resources.files("picojoule.cluster")
        .joinpath("presets")
        .joinpath(f"{section}.yaml")
        .read_text()
    )


def _rows(data: object, source: str, section: str, model: type[Row]) -> list[Row]:
    if not isinstance(data, list):
        raise ConfigError(f"{source}: `{section}` must be a list of rows")
    out = []
    for i, raw in enumerate(data, 1):
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: {section} row {i} must be a mapping of fields")
        try:
            out.append(model(**raw))
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "row"
            name = raw.get("name", "?")
            raise ConfigError(
                f"{source}: {section} row {i} ({name}): {where}: {err['msg']}"
            ) from None
    names = [r.name for r in out]  # type: ignore[attr-defined]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ConfigError(f"{source}: {section} row {dup!r} is given twice; keep one")
    return out


@cache
def _builtin(section: str, model: type[Row]) -> tuple[Row, ...]:
    data = load_yaml(_builtin_text(section), f"presets/{section}.yaml")
    return tuple(_rows(data["rows"], f"presets/{section}.yaml", section, model))


def load_rows(section: str, model: type[Row], override: str | Path | None = None) -> dict[str, Row]:
    """Built-in rows of `presets/<section>.yaml` by name, updated by `override`'s `section:`."""
    rows = {r.name: r for r in _builtin(section, model)}  # type: ignore[attr-defined]
    if override is None:
        return rows
    data = load_yaml_file(override)
    if not isinstance(data, dict):
        raise ConfigError(f"{override}: give a mapping with links:, nodes: or models: lists")
    unknown = sorted(set(data) - {"links", "nodes", "models"})
    if unknown:
        raise ConfigError(
            f"{override}: unknown section {unknown[0]!r}; use links:, nodes: or models:"
        )
    for row in _rows(data.get(section, []), str(override), section, model):
        rows[row.name] = row  # type: ignore[attr-defined]
    return rows


def links(override: str | Path | None = None) -> dict[str, Link]:
    """Every link by name: the built-in table, updated by the `links:` rows of `override`."""
    return load_rows("links", Link, override)


def link(name: str, override: str | Path | None = None) -> Link:
    """The link called `name` (pcie4-x16, nvlink4, ib-ndr, ...)."""
    table = links(override)
    if name not in table:
        raise ConfigError(f"unknown link {name!r}{suggest(name, table)}")
    return table[name]
