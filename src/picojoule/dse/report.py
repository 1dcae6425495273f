"""Render a run from its stored points: Pareto front, chosen design, plots, JSON, HTML.

Public: `RunReport`, `build_report`, `write_outputs`, `front_table`.

Everything here reads `Point`s only - `picojoule dse show` re-renders a run from the database
without evaluating anything. The chosen design is the knee of the feasible Pareto front
(objectives normalised over the front, equal weights); the most efficient design is the one
with the highest TOPS/W (= the least energy per inference, since the workload is fixed).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from picojoule.dse.pareto import knee_index, pareto_indices
from picojoule.dse.results import Point, RunInfo
from picojoule.dse.runner import feasible
from picojoule.dse.space import OBJECTIVES, Constraints
from picojoule.fsio import atomic_write_text, save_figure, write_json

__all__ = ["RunReport", "build_report", "write_outputs", "front_table"]


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """What a run found, in plain data (JSON-ready via `as_dict`)."""

    run: RunInfo
    objectives: tuple[str, ...]
    points: int
    evaluated: int
    failed: int
    feasible: int
    front: tuple[Point, ...]  # feasible Pareto front, by the first objective
    chosen: Point | None  # knee of the front
    most_efficient: Point | None  # highest TOPS/W among feasible points
    most_efficient_onchip: Point | None  # highest TOPS/W with DRAM left out

    def as_dict(self) -> dict[str, Any]:
        def pt(p: Point | None) -> dict[str, Any] | None:
            if p is None:
                return None
            return {"design_key": p.design_key, "design": p.design, "metrics": p.metrics}

        return {
            "run": self.run.run_id,
            "workload": self.run.workload,
            "model_version": self.run.model_version,
            "objectives": list(self.objectives),
            "points": self.points,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "feasible": self.feasible,
            "chosen": pt(self.chosen),
            "most_efficient": pt(self.most_efficient),
            "most_efficient_onchip": pt(self.most_efficient_onchip),
            "front": [pt(p) for p in self.front],
        }


def _constraints(run: RunInfo) -> Constraints:
    c = run.space.get("constraints") or {}
    return Constraints(area_mm2=c.get("area_mm2"), power_w=c.get("power_w"))


def build_report(run: RunInfo, points: Sequence[Point]) -> RunReport:
    objectives = tuple(run.space.get("objectives") or OBJECTIVES)
    ok = feasible(points, _constraints(run))
    front: tuple[Point, ...] = ()
    chosen = best = best_chip = None
    if ok:
        values = np.array([[p.metrics[OBJECTIVES[o]] for o in objectives] for p in ok])  # type: ignore[index]
        front = tuple(ok[i] for i in pareto_indices(values))
        chosen = ok[knee_index(values)]
        best = max(ok, key=lambda p: p.metrics["tops_per_w"])  # type: ignore[index]
        best_chip = max(ok, key=lambda p: p.metrics["onchip_tops_per_w"])  # type: ignore[index]
    evaluated = sum(1 for p in points if p.metrics is not None)
    return RunReport(
        run=run,
        objectives=objectives,
        points=len(points),
        evaluated=evaluated,
        failed=len(points) - evaluated,
        feasible=len(ok),
        front=front,
        chosen=chosen,
        most_efficient=best,
        most_efficient_onchip=best_chip,
    )


# --- terminal ---------------------------------------------------------------------------------

# (header, metric, scale, format); "chip" columns leave DRAM energy out (see evaluate.py).
_COLUMNS = (
    ("energy uJ", "energy_pj", 1e-6, "{:.4g}"),
    ("latency ms", "latency_s", 1e3, "{:.4g}"),
    ("area mm2", "area_mm2", 1.0, "{:.3g}"),
    ("TOPS/W", "tops_per_w", 1.0, "{:.3g}"),
    ("TOPS/W chip", "onchip_tops_per_w", 1.0, "{:.3g}"),
    ("TOPS/mm2", "tops_per_mm2", 1.0, "{:.3g}"),
    ("power W", "power_w", 1.0, "{:.3g}"),
    ("math % chip", "onchip_math_energy_fraction", 100.0, "{:.0f}"),
)


def _swept(report: RunReport, limit: int | None = None) -> list[str]:
    """Design parameters that differ between front points, most varied first (the
    interesting columns); at most `limit` of them."""
    if not report.front:
        return []
    names = sorted(report.front[0].design)
    spread = {n: len({str(p.design[n]) for p in report.front}) for n in names}
    varied = sorted((n for n in names if spread[n] > 1), key=lambda n: -spread[n])
    return (varied or names)[:limit]


def front_table(report: RunReport, limit: int = 20) -> Table:
    title = (
        f"{report.run.run_id}: Pareto front ({len(report.front)} of {report.feasible} feasible, "
        f"{report.points} points)"
    )
    table = Table(title=title)
    params = _swept(report, limit=4)  # the terminal shows the most varied; JSON has all
    for name in params:
        table.add_column(name, overflow="fold")
    for head, *_ in _COLUMNS:
        table.add_column(head, justify="right")
    for p in report.front[:limit]:
        assert p.metrics is not None
        mark = (
            " *" if report.chosen is not None and p.design_key == report.chosen.design_key else ""
        )
        row = [str(p.design[n]) for n in params]
        row += [fmt.format(p.metrics[key] * scale) for _, key, scale, fmt in _COLUMNS]
        row[0] += mark
        table.add_row(*row)
    if len(report.front) > limit:
        table.caption = f"{len(report.front) - limit} more front points in front.json"
    else:
        table.caption = "* chosen design (knee of the front)"
    return table


# --- plots --------------------------------------------------------------------------------------


def _plot_front(report: RunReport, points: Sequence[Point], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [p for p in points if p.metrics is not None]
    energy = np.array([p.metrics["energy_pj"] * 1e-6 for p in ok])  # type: ignore[index]
    latency = np.array([p.metrics["latency_s"] * 1e3 for p in ok])  # type: ignore[index]
    area = np.array([p.metrics["area_mm2"] for p in ok])  # type: ignore[index]
    fe = np.array([p.metrics["energy_pj"] * 1e-6 for p in report.front])  # type: ignore[index]
    fl = np.array([p.metrics["latency_s"] * 1e3 for p in report.front])  # type: ignore[index]
    fa = np.array([p.metrics["area_mm2"] for p in report.front])  # type: ignore[index]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    sc = axes[0].scatter(latency, energy, c=area, s=10, cmap="viridis", alpha=0.7)
    axes[0].scatter(fl, fe, s=36, facecolors="none", edgecolors="crimson", label="Pareto front")
    axes[0].set(xlabel="latency per inference (ms)", ylabel="energy per inference (uJ)")
    fig.colorbar(sc, ax=axes[0], label="area (mm^2)")
    axes[1].scatter(area, energy, s=10, color="0.6", alpha=0.7)
    axes[1].scatter(fa, fe, s=36, facecolors="none", edgecolors="crimson", label="Pareto front")
    axes[1].set(xlabel="area (mm^2)", ylabel="energy per inference (uJ)")
    if report.chosen is not None:
        m = report.chosen.metrics
        assert m is not None
        axes[0].scatter(
            [m["latency_s"] * 1e3],
            [m["energy_pj"] * 1e-6],
            marker="*",
            s=180,
            color="crimson",
            label="chosen",
        )
        axes[1].scatter(
            [m["area_mm2"]],
            [m["energy_pj"] * 1e-6],
            marker="*",
            s=180,
            color="crimson",
            label="chosen",
        )
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"{report.run.run_id} on {report.run.workload}: {len(ok)} designs")
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def _plot_split(point: Point, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert point.metrics is not None
    split = point.metrics["energy_by_component_pj"]
    names = sorted(split, key=split.get, reverse=True)
    total = sum(split.values())
    fig, ax = plt.subplots(figsize=(6.5, 3.4), constrained_layout=True)
    shares = [100 * split[n] / total for n in names]
    bars = ax.barh(names[::-1], shares[::-1], color="steelblue")
    ax.bar_label(bars, fmt="%.1f%%", fontsize=8)
    ax.set(xlabel="share of energy per inference (%)", title=title)
    ax.set_xlim(0, max(shares) * 1.2 if shares else 1)
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


# --- files -------------------------------------------------------------------------------------


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _html(report: RunReport, pngs: Sequence[Path]) -> str:
    esc = html.escape
    rows = []
    params = _swept(report)
    head = "".join(f"<th>{esc(n)}</th>" for n in params) + "".join(
        f"<th>{esc(h)}</th>" for h, *_ in _COLUMNS
    )
    for p in report.front:
        assert p.metrics is not None
        chosen = report.chosen is not None and p.design_key == report.chosen.design_key
        cells = "".join(f"<td>{esc(str(p.design[n]))}</td>" for n in params)
        cells += "".join(
            f"<td>{fmt.format(p.metrics[key] * scale)}</td>" for _, key, scale, fmt in _COLUMNS
        )
        rows.append(f"<tr{' class=chosen' if chosen else ''}>{cells}</tr>")
    imgs = "".join(f'<img alt="{esc(p.stem)}" src="data:image/png;base64,{_b64(p)}">' for p in pngs)
    chosen = ""
    if report.chosen is not None:
        design = ", ".join(f"{k}={v}" for k, v in sorted(report.chosen.design.items()))
        chosen = f"<p><b>Chosen design</b> (knee of the front): {esc(design)}</p>"
    summary = (
        f"{report.points} points, {report.evaluated} evaluated, {report.failed} unmappable, "
        f"{report.feasible} within budget; cost model {esc(report.run.model_version)}"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>picojoule dse: {esc(report.run.run_id)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;
text-align:right}}tr.chosen{{background:#fde2e2}}img{{max-width:100%;display:block;
margin:1em 0}}</style></head><body>
<h1>Design-space exploration: {esc(report.run.run_id)}</h1>
<p>Workload <b>{esc(report.run.workload)}</b>. {summary}.</p>
{chosen}{imgs}
<h2>Pareto front ({len(report.front)} designs)</h2>
<table><tr>{head}</tr>{"".join(rows)}</table>
</body></html>
"""


def write_outputs(report: RunReport, points: Sequence[Point], out: str | Path) -> list[Path]:
    """Write front.json (strict JSON), pareto.png, energy_split.png (when a design was
    chosen) and report.html into `out`, each atomically (`picojoule.fsio`); returns the paths
    written."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    js = d / "front.json"
    write_json(js, report.as_dict(), indent=2, sort_keys=True, default=_json_default)
    written.append(js)
    pngs = []
    if report.front:
        pngs.append(_plot_front(report, points, d / "pareto.png"))
    if report.chosen is not None:
        pngs.append(_plot_split(report.chosen, d / "energy_split.png", "chosen design"))
    written += pngs
    page = d / "report.html"
    atomic_write_text(page, _html(report, pngs))
    written.append(page)
    return written


def _json_default(value: object) -> object:
    # Non-finite floats need no case here: `write_json` turns them into null.
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
