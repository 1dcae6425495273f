"""Energy of one add, multiply or FMA on a given format: cited table first, model otherwise.

Public: `OpEnergy`, `op_energy(op, dtype, *, node_nm=45)`, `op_energy_pj(...)`.

Lookup order: a row of the op table with exactly this op and dtype (scaled from its node to
`node_nm`) - else the calibrated datapath model of `picojoule.energy.arith`. The result says
which (`source`), so a report never passes a model number off as a measured one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from picojoule.energy.arith import BASE_NODE_NM, Calibration, calibrate
from picojoule.energy.scaling import NodeScaling, node_scaling
from picojoule.energy.tables import OpRow, Table, load_table
from picojoule.errors import ConfigError, FormatError, suggest

__all__ = ["OpEnergy", "OPS", "op_energy", "op_energy_pj", "element_of"]

Op = Literal["add", "mul", "fma"]
OPS: tuple[Op, ...] = ("add", "mul", "fma")


@dataclass(frozen=True, kw_only=True)
class OpEnergy:
    """Energy of one operation (or one MAC) with its parts, all in pJ at `node_nm`.

    `source` is "table: <citation>" for a looked-up value and "model" for a computed one;
    `notes` explain modelling choices (accumulator, widths, amortization); `uncited` lists
    table rows without a citation that the number depends on.
    """

    name: str
    energy_pj: float
    breakdown: dict[str, float]
    node_nm: float = BASE_NODE_NM
    source: str = "model"
    notes: tuple[str, ...] = ()
    uncited: tuple[str, ...] = field(default=())

    def scaled(self, ratio: float, node_nm: float) -> OpEnergy:
        """The same result multiplied by a node-scaling `ratio`, labelled with `node_nm`."""
        return OpEnergy(
            name=self.name,
            energy_pj=self.energy_pj * ratio,
            breakdown={k: v * ratio for k, v in self.breakdown.items()},
            node_nm=node_nm,
            source=self.source,
            notes=self.notes,
            uncited=self.uncited,
        )


def element_of(dtype: object):
    """The element format of `dtype` (a name or format object; scaled formats unwrap)."""
    from picojoule.formats import ScaledFormat, get

    fmt = get(dtype)  # type: ignore[arg-type]
    return fmt.element if isinstance(fmt, ScaledFormat) else fmt


def _model(op: Op, dtype: object, cal: Calibration) -> dict[str, float]:
    from picojoule.formats import FloatFormat, IntFormat

    el = element_of(dtype)
    if isinstance(el, IntFormat):
        parts = {
            "mul": {"multiply": cal.int_mul(el.bits, el.bits)},
            "add": {"add": cal.int_add(el.bits)},
        }
    elif isinstance(el, FloatFormat):
        parts = {
            "mul": cal.fp_mul_parts(el.ebits, el.mbits),
            "add": cal.fp_add_parts(el.ebits, el.mbits),
        }
    else:
        raise FormatError(
            f"{el.name}: a single {op} is defined for integer and float formats; "
            "use mac_energy() for LNS and codebook formats, which charge their conversions"
        )
    if op == "fma":
        return {**parts["mul"], **parts["add"]}
    return parts[op]


def op_energy(
    op: str,
    dtype: object,
    *,
    node_nm: float = BASE_NODE_NM,
    table: Table | None = None,
    scaling: NodeScaling | None = None,
) -> OpEnergy:
    """Energy of one `op` ("add", "mul", "fma") on `dtype` operands at `node_nm`."""
    if op not in OPS:
        raise ConfigError(f"unknown op {op!r}{suggest(op, OPS)}; for a MAC use mac_energy")
    scaling = scaling or node_scaling()
    table = table or load_table("ops")
    name = getattr(element_of(dtype), "name", str(dtype))
    rows: tuple[OpRow, ...] = table.rows  # type: ignore[assignment]
    for row in rows:
        if row.op == op and element_of(row.dtype) == element_of(dtype):
            ratio = scaling.ratio(row.node_nm, node_nm)
            uncited = () if row.citation else (f"{table.source}: {row.label}",)
            return OpEnergy(
                name=f"{op} {name}",
                energy_pj=row.energy_pj * ratio,
                breakdown={op: row.energy_pj * ratio},
                node_nm=node_nm,
                source=f"table: {row.citation or 'uncited row'}",
                uncited=uncited,
            )
    cal = calibrate(table, scaling)
    parts = _model(op, dtype, cal)  # type: ignore[arg-type]
    result = OpEnergy(
        name=f"{op} {name}",
        energy_pj=sum(parts.values()),
        breakdown=parts,
        source="model",
        notes=(f"no table row for {op} {name}: calibrated datapath model",),
        uncited=cal.uncited,
    )
    return result.scaled(scaling.ratio(BASE_NODE_NM, node_nm), node_nm)


def op_energy_pj(op: str, dtype: object, *, node_nm: float = BASE_NODE_NM) -> float:
    """pJ of one `op` on `dtype` at `node_nm` (see `op_energy` for the parts and source)."""
    return op_energy(op, dtype, node_nm=node_nm).energy_pj
