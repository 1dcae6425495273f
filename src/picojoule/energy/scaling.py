"""Process-technology scaling of energies, applied visibly and overridable.

Public: `NodeScaling`, `node_scaling(table=None, overrides=None)`, `node_factor(node_nm)`,
`scale_energy(energy_pj, from_nm, to_nm)`, `KNOWN_NODES_NM`.

Every energy in `picojoule.energy` is first computed at the node of its source (45 nm for
Horowitz's table) and then multiplied by factor(to) / factor(from), with the factors of
`data/nodes.yaml` (Stillmaker & Baas 2017 fits at nominal supply; see the file for each row's
derivation). Only tabulated nodes are accepted: an unknown node raises `ConfigError` naming
the nearest ones rather than being silently interpolated. Override any factor with
`node_scaling(overrides={7: 0.1})` or a whole table with `node_scaling(table=load_table(...))`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from picojoule.energy.tables import NodeRow, Table, load_table
from picojoule.errors import ConfigError

__all__ = ["NodeScaling", "node_scaling", "node_factor", "scale_energy", "KNOWN_NODES_NM"]


@dataclass(frozen=True, kw_only=True)
class NodeScaling:
    """Energy factor per node relative to 45 nm / 0.9 V; `uncited` lists rows without a source."""

    factors: tuple[tuple[float, float], ...]  # (node_nm, factor), largest node first
    citations: tuple[tuple[float, str], ...]
    uncited: tuple[str, ...] = ()

    def factor(self, node_nm: float) -> float:
        """Energy at `node_nm` / energy at 45 nm."""
        for node, value in self.factors:
            if node == node_nm:
                return value
        known = sorted((n for n, _ in self.factors), key=lambda n: abs(n - node_nm))[:3]
        raise ConfigError(
            f"no energy factor for a {node_nm:g} nm process; nearest tabulated nodes: "
            f"{', '.join(f'{n:g} nm' for n in known)}. Add a row to a nodes table "
            "(picojoule.energy.load_table('nodes', path)) or pass overrides={node: factor}"
        )

    def ratio(self, from_nm: float, to_nm: float) -> float:
        """Multiplier that takes an energy at `from_nm` to `to_nm`."""
        return self.factor(to_nm) / self.factor(from_nm)

    def citation(self, node_nm: float) -> str:
        self.factor(node_nm)  # same error as factor() for an unknown node
        return dict(self.citations).get(node_nm, "user override")


def _from_table(table: Table) -> NodeScaling:
    rows: tuple[NodeRow, ...] = table.rows  # type: ignore[assignment]
    ordered = sorted(rows, key=lambda r: -r.node_nm)
    return NodeScaling(
        factors=tuple((r.node_nm, r.energy_factor) for r in ordered),
        citations=tuple((r.node_nm, r.citation or "uncited") for r in ordered),
        uncited=table.uncited,
    )


@lru_cache(maxsize=1)
def _default() -> NodeScaling:
    return _from_table(load_table("nodes"))


def node_scaling(
    table: Table | None = None, overrides: Mapping[float, float] | None = None
) -> NodeScaling:
    """The built-in node factors, or a user table, with optional per-node overrides."""
    base = _default() if table is None else _from_table(table)
    if not overrides:
        return base
    bad = {n: f for n, f in overrides.items() if not (n > 0 and f > 0)}
    if bad:
        raise ConfigError(f"node overrides need positive node_nm and factor, got {bad}")
    merged = dict(base.factors) | {float(n): float(f) for n, f in overrides.items()}
    return NodeScaling(
        factors=tuple(sorted(merged.items(), key=lambda kv: -kv[0])),
        citations=tuple((n, c) for n, c in base.citations if n not in overrides),
        uncited=base.uncited + tuple(f"override: {n:g} nm" for n in overrides),
    )


def node_factor(node_nm: float) -> float:
    """Built-in energy factor of `node_nm` relative to 45 nm."""
    return _default().factor(node_nm)


def scale_energy(
    energy_pj: float, from_nm: float, to_nm: float, *, scaling: NodeScaling | None = None
) -> float:
    """`energy_pj` at `from_nm` expressed at `to_nm`: multiplied by factor(to) / factor(from)."""
    return energy_pj * (scaling or _default()).ratio(from_nm, to_nm)


KNOWN_NODES_NM: tuple[float, ...] = tuple(n for n, _ in _default().factors)
