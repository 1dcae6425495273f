"""Study outputs: `report.json` (versioned schema), a self-contained `report.html`
(interactive plotly charts with plotly.js inlined once: it opens offline, from one file), and
a rich summary table for the terminal.

Files are written to a temporary name and renamed, so an interrupted run never leaves a
half-written report that looks complete.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from picojoule.fsio import atomic_write_text, dumps_json, prepare_out_dir
from picojoule.study.plots import Unit, energy_unit, figure_html, time_unit
from picojoule.study.runner import RecipeResult, StudyResult

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "REPORT_SCHEMA",
    "to_json",
    "summary_table",
    "write_report",
    "check_writable",
    "skip_text",
    "skip_detail",
]

REPORT_SCHEMA = "picojoule.study/1"
OWN_DATA_MARK = "†"  # a fine-tuned row scored on the batches it trained on


def on_front(study: StudyResult) -> set[str]:
    """Recipes on the accuracy-energy Pareto front: no other recipe is both cheaper and at
    least as accurate. The quick read of a study: every other recipe is dominated."""
    res = [r for r in study.results if r.cost.get("energy_pj")]
    pts = [(r.cost["energy_pj"], study.score(r)) for r in res]  # oriented: higher is better
    return {res[i].recipe.name for i in _pareto(pts)}


def to_json(study: StudyResult) -> dict[str, Any]:
    """The report as data. Schema `picojoule.study/1` (docs/study.md documents every field)."""
    front = on_front(study)
    return {
        "schema": REPORT_SCHEMA,
        "task": study.task,
        "primary_metric": study.primary_metric,
        "higher_is_better": study.higher_is_better,
        "delta_kind": "ratio" if study.ratio else "difference",
        "notes": list(study.notes),
        "scored_on": study.scored_on,
        "held_out": study.held_out,
        "metric_unit": study.unit,
        "target": study.target,
        "targets": list(study.targets),
        "target_names": [study.label(x) for x in study.targets],
        "model_version": study.model_version,
        "recipes": [_recipe_json(study, r, front) for r in study.results],
    }


def _recipe_json(study: StudyResult, r: RecipeResult, front: set[str]) -> dict[str, Any]:
    d = {
        "name": r.recipe.name,
        "description": r.recipe.describe(),
        "delta": study.delta(r),
        "pareto_front": r.recipe.name in front,
        "cached": r.cached,
        "scored_on": study.scored_on if not r.skipped else None,
        "scored_on_training_data": study.scored_on_training_data(r),
        "cost": r.cost,
        **r.to_dict(),
    }
    if r.skipped:  # not run: no number stands for it (null, never NaN or a zero)
        d.update(delta=None, bits_per_weight=None, model_bytes=None, seconds=None)
    return d


def skip_text(r: RecipeResult) -> Text:
    """A skipped recipe's terminal cell: its reason, left-aligned in a right-aligned column
    (the cells beside it are empty; a narrow terminal wraps it, never cuts it)."""
    return Text(f"skipped: {r.skip_reason}", justify="left")


def skip_detail(r: RecipeResult, limit: int = 3) -> str:
    """The distinct per-layer reasons behind a skipped recipe, e.g. 'stride (2, 2): Winograd
    here is stride-1 only', at most `limit` of them, on one line."""
    seen: list[str] = []
    for lines in r.applied.values():
        for line in lines:
            why = line.partition(": skipped: ")[2]
            if why and why not in seen:
                seen.append(why)
    more = f" (+{len(seen) - limit} more)" if len(seen) > limit else ""
    return "; ".join(seen[:limit]) + more


def _sol_cell(cost: dict[str, Any]) -> str:
    """Energy / speed of light of one target's bill, e.g. "1.17x"; "-" where it has none."""
    sol = cost.get("sol_ratio")
    return f"{sol:.2f}x" if isinstance(sol, int | float) else "-"


def _bill_cells(cost: dict[str, Any], unit: Unit) -> tuple[str, str]:
    """(energy per inference in the column's `unit`, energy / speed of light) of one target's
    bill: the terminal table's cells, one unit per column as in the HTML."""
    return unit.text(cost.get("energy_pj")), _sol_cell(cost)


def _where(study: StudyResult) -> str:
    return ", ".join(study.label(x) for x in study.targets)


def summary_table(study: StudyResult) -> Table:
    from picojoule.study.report_lm import is_lm, lm_summary_table

    if is_lm(study):
        return lm_summary_table(study, on_front(study))
    from picojoule.termtable import FitTable

    m = study.primary_metric
    # fits the console (FitTable): when narrow, the weights' and algorithms' columns move to
    # a second table, each with the recipe names; the metric column also holds skip reasons
    t = FitTable(title=f"picojoule study: {study.task} on {_where(study)}", title_justify="left")
    has_measured = any(r.cost.get("measured_energy_pj") for r in study.results)
    several = len(study.targets) > 1
    e_units = {x: units(study, x)[0] for x in study.targets}  # one prefix per column
    per_target = [
        (
            f"energy/inf {study.label(x)} ({e_units[x].symbol})"
            if several
            else f"energy/inf ({e_units[x].symbol})",
            f"vs SOL {study.label(x)}" if several else "vs SOL",
        )
        for x in study.targets
    ]
    t.add_column("recipe", kind="name")
    t.add_column(m + (f" ({study.unit})" if study.unit else ""), justify="right", kind="text")
    t.add_column("delta", justify="right", kind="text")
    for col in ("bits/weight", "weight KiB", "mults"):
        t.add_column(col, justify="right", rank=1)
    for col in (c for pair in per_target for c in pair):
        t.add_column(col, justify="right")
    measured = energy_unit(r.cost.get("measured_energy_pj") for r in study.ran)
    if has_measured:
        t.add_column(f"measured ({measured.symbol})", justify="right")
    if has_algorithms(study):
        t.add_column("calib s", justify="right", rank=1)
        t.add_column("rot ops/tok", justify="right", rank=1)
    t.add_column("front", justify="center")
    front = on_front(study)
    n_cols = len(t.columns)
    for r in study.results:
        if r.skipped:  # the reason where the numbers would be, the rest blank
            t.add_row(r.recipe.name, skip_text(r), *[""] * (n_cols - 2), style="dim")
            continue
        bills = [cell for x in study.targets for cell in _bill_cells(r.costs[x], e_units[x])]
        t.add_row(
            r.recipe.name,
            f"{r.metrics[m]:.4g}"
            + (f" {OWN_DATA_MARK}" if study.scored_on_training_data(r) else ""),
            study.delta_text(r),
            f"{r.bits_per_weight:.2f}",
            f"{r.model_bytes / 1024:.1f}",
            f"{r.cost.get('mults', 0):,}",
            *bills,
            *([measured.text(r.cost.get("measured_energy_pj"))] if has_measured else []),
            *(algorithm_cells(r) if has_algorithms(study) else ()),
            "*" if r.recipe.name in front else "",
        )
    t.caption = (
        "delta vs the FP32 baseline; energy from the target model (assumptions in report.html); "
        "vs SOL = energy / speed-of-light bound; front * = no recipe is both cheaper"
        + (f" on {study.target}" if several else "")
        + " and at least as accurate"
        + (
            f"; {OWN_DATA_MARK} = scored on its own training data: no held-out data, give --eval"
            if any(study.scored_on_training_data(r) for r in study.results)
            else ""
        )
    )
    return t


# --- plots ---------------------------------------------------------------------------------


def _pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the undominated points, by energy: lower energy and higher metric are
    better, and a point is dominated when another is no worse in both and better in one."""

    def dominated(i: int) -> bool:
        (e, m) = points[i]
        return any(e2 <= e and m2 >= m and (e2, m2) != (e, m) for e2, m2 in points)

    return sorted((i for i in range(len(points)) if not dominated(i)), key=lambda i: points[i])


def units(study: StudyResult, target: str | None = None) -> tuple[Unit, Unit]:
    """(energy unit, time unit) of one target's energies per inference (pJ) and latencies (s),
    the prefix chosen from the data: the plots and the tables print them alike."""
    costs = [r.costs[target or study.target] for r in study.ran]
    return (
        energy_unit(c.get("energy_pj") for c in costs),
        time_unit(c.get("latency_s") for c in costs),
    )


def figures(study: StudyResult) -> list[tuple[str, str, go.Figure, str]]:
    """The report's figures in page order: (key, heading, figure, caption)."""
    from picojoule.study import plots
    from picojoule.study.report_lm import is_lm, phase_plot

    energy, time = units(study)
    front = on_front(study)
    m = study.primary_metric
    unit_note = f"Energies in {energy.symbol}, times in {time.symbol}, as in the tables. "
    layers_note = (
        "the bars are the first decode step's energy per layer (the request is billed by phase)."
        if is_lm(study)
        else "on a target that reports cycles per layer, the latency panel splits the latency "
        "by them."
    )
    out: list[tuple[str, str, go.Figure | None, str]] = [
        ("pareto", f"{m} vs energy", plots.pareto_figure(study, energy, time, front),
         unit_note + "Hover a point for the recipe's exact numbers; click a legend entry to hide "
         "a recipe (double-click: show it alone); drag to zoom, double-click to reset. The red "
         "line rings the Pareto front: no other recipe is both cheaper and at least as "
         "accurate."),
        ("phases", "Where each phase's energy goes", phase_plot(study), ""),
        ("layers", "Energy per layer", plots.layers_figure(study, energy, time),
         unit_note + "One bar per recipe, split by layer (click a layer in the legend to hide "
         f"it); {layers_note}"),
        ("errors", "Error per layer", plots.error_figure(study),
         "Colour: a layer's relative RMS weight error divided by the largest such error among "
         "the recipes of the same lever (quantization, pruning, Winograd, fine-tuning; the "
         "lever follows each recipe's name), so a pruning row does not wash out the "
         "quantization rows beside it. Hover a cell for the exact error."),
    ]  # fmt: skip
    return [(k, t, f, c) for k, t, f, c in out if f is not None]


# --- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f0f0f0} .note{color:#555;font-size:13px}
.plot{border:1px solid #e4e4e4;margin:.5em 0}
td.skip{text-align:left;color:#777;font-style:italic}
"""


class Spanned(list):
    """A table row whose last cell spans the columns left (a skipped recipe's reason)."""


def _table(rows: list[list[Any]], head: list[str]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in head)

    def cells(row: list[Any]) -> str:
        tds = [f"<td>{html.escape(str(c))}</td>" for c in row]
        if isinstance(row, Spanned) and len(row) < len(head):
            span = len(head) - len(row) + 1
            tds[-1] = f"<td colspan={span} class=skip>{html.escape(str(row[-1]))}</td>"
        return "".join(tds)

    body = "".join(f"<tr>{cells(row)}</tr>" for row in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _skip_cell(r: RecipeResult) -> str:
    detail = skip_detail(r)
    return f"skipped: {r.skip_reason}" + (f" ({detail})" if detail else "")


def has_algorithms(study: StudyResult) -> bool:
    return any(r.algorithms.get("seconds") for r in study.results)


def algorithm_cells(r: RecipeResult) -> tuple[str, str]:
    """(calibration wall time in s, online-rotation adds + multiplies per token) of a recipe;
    "-" where it has none (folded scales and offline rotations cost nothing at run time)."""
    secs = r.algorithms.get("seconds") or {}
    ops = sum(o.get("adds", 0) + o.get("macs", 0) for o in r.algorithms.get("online") or [])
    return (f"{sum(secs.values()):.0f}" if secs else "-"), (f"{ops:,}" if ops else "-")


def _recipe_rows(study: StudyResult, energy: Unit, time: Unit) -> list[list[Any]]:
    """The recipe table's rows: energies in `energy`, the latency in `time` (the plots')."""
    m = study.primary_metric
    rows = []
    front = on_front(study)
    for r in study.results:
        if r.skipped:
            rows.append(Spanned([r.recipe.name, r.recipe.describe(), _skip_cell(r)]))
            continue
        c = r.cost
        rows.append([
            r.recipe.name, r.recipe.describe(), f"{r.metrics[m]:.4g}",
            study.delta_text(r), _scored_cell(study, r),
            "yes" if r.recipe.name in front else "", f"{r.bits_per_weight:.2f}",
            f"{r.model_bytes:,}", f"{c.get('macs', 0):,}",
            f"{c.get('mults', 0):,}", energy.text(c.get("energy_pj")),
            energy.text(c.get("sol_energy_pj")), time.text(c.get("latency_s")),
            energy.text(c.get("measured_energy_pj")),
            *(algorithm_cells(r) if has_algorithms(study) else ()),
        ])  # fmt: skip
    return rows


def _scored_cell(study: StudyResult, r: RecipeResult) -> str:
    if study.held_out:
        return "held-out data"
    if study.scored_on_training_data(r):
        return f"{OWN_DATA_MARK} its own training data"
    return "its calibration data"


def _sparsity_section(study: StudyResult) -> str:
    sparse = [r for r in study.ran if r.recipe.sparsity]
    r = sparse[0] if sparse else study.baseline
    if r is None or not r.sparsity:
        return ""
    rows = [
        [x["name"], x["kind"], "x".join(map(str, x["shape"])), x["pattern"], f"{x['density']:.2f}",
         "yes" if x["qualifies_2to4"] else f"no: {x['why_not']}", x["kernel"],
         f"{x['bytes_saved']:,}", x["macs_saved"] if x["macs_saved"] is not None else "-",
         f"{x['predicted_speedup']:.2f}x"]
        for x in r.sparsity
    ]  # fmt: skip
    head = ["layer", "kind", "shape", "pattern", "density", "2:4 kernel?", "GPU kernel",
            "bytes saved", "MACs saved", "predicted speedup"]  # fmt: skip
    notes = sorted({x["speedup_assumption"] for x in r.sparsity})
    body = _table(rows, head) + "".join(f"<p class=note>{html.escape(n)}</p>" for n in notes)
    title = f"Sparsity: which layers got the sparse kernel ({html.escape(r.recipe.name)})"
    if not sparse:  # nothing pruned: the table only says what 2:4 could reach; fold it
        return (f"<h2>{title}</h2><details><summary>no recipe prunes weights; the {len(rows)} "
                "layers' 2:4 qualification</summary>" + body + "</details>")  # fmt: skip
    return f"<h2>{title}</h2>" + body


def _by_target(study: StudyResult) -> str:
    """One row per recipe, energy / vs SOL / latency on every target (several targets only)."""
    if len(study.targets) < 2:
        return ""
    per = {x: units(study, x) for x in study.targets}  # each target's own prefixes
    head = ["recipe"] + [
        f"{study.label(x)} {what}"
        for x, (e, t) in per.items()
        for what in (f"energy/inf ({e.symbol})", "vs SOL", f"latency ({t.symbol})")
    ]
    rows = []
    for r in study.results:
        if r.skipped:
            rows.append(Spanned([r.recipe.name, _skip_cell(r)]))
            continue
        cells = []
        for x, (e, t) in per.items():
            c = r.costs[x]
            cells += [e.text(c.get("energy_pj")), _sol_cell(c), t.text(c.get("latency_s"))]
        rows.append([r.recipe.name, *cells])
    return "<h2>Every target</h2>" + _table(rows, head)


def _plots_html(study: StudyResult) -> str:
    """Every figure under its heading and caption; plotly.js inlined in the first one only."""
    out = []
    for i, (key, title, fig, caption) in enumerate(figures(study)):
        out.append(
            f"<h2>{html.escape(title)}</h2>"
            + (f"<p class=note>{html.escape(caption)}</p>" if caption else "")
            + f"<div class=plot>{figure_html(fig, f'plot-{key}', first=i == 0)}</div>"
        )
    return "".join(out)


def render_html(study: StudyResult) -> str:
    energy, time = units(study)
    head = ["recipe", "levers", study.primary_metric, "delta", "scored on", "Pareto front",
            "bits/weight", "weight bytes", "MACs", "multiplies", f"energy/inf ({energy.symbol})",
            f"SOL energy ({energy.symbol})", f"latency ({time.symbol})",
            f"measured GPU energy ({energy.symbol})"]  # fmt: skip
    if has_algorithms(study):
        head += ["calibration (s)", "online rotation ops/token"]
    imgs = _plots_html(study)
    from picojoule.study.report_lm import is_lm, phase_section

    phases = phase_section(study, _table) if is_lm(study) else ""
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in study.notes)
    assumptions = ""
    for x in study.targets:
        first = study.ran[0].costs[x] if study.ran else {}
        items = [*first.get("assumptions", []), *filter(None, [first.get("measured_note")])]
        label = study.label(x)
        assumptions += (f"<h3>{html.escape(label)}</h3>" if len(study.targets) > 1 else "") + (
            "<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in items) + "</ul>"
        )
    scored = f"; scored on {html.escape(study.scored_on)}" if study.scored_on else ""
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>picojoule study</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>picojoule study: {html.escape(study.task)} on {html.escape(_where(study))}</h1>"
        f"<p class=note>model version {study.model_version}; schema {REPORT_SCHEMA}; recipe "
        f"table, plots and Pareto front on {html.escape(study.label(study.target))}{scored}</p>"
        f"{notes}<h2>Recipes</h2>{_table(_recipe_rows(study, energy, time), head)}"
        f"{_by_target(study)}"
        f"{phases}{imgs}"
        f"{_sparsity_section(study)}<h2>Assumptions and sources</h2>{assumptions}"
        "</body></html>"
    )


def check_writable(out_dir: Path) -> Path:
    """Create `out_dir` and prove it writable (before a long study, not after); see
    `picojoule.fsio.prepare_out_dir` for the context manager that also cleans up."""
    with prepare_out_dir(out_dir, what="the report") as d:
        return d


def write_report(study: StudyResult, out_dir: Path) -> tuple[Path, Path]:
    """Write report.json (strict JSON) and report.html into `out_dir` (created), each
    atomically; returns both paths."""
    out_dir = check_writable(out_dir)
    jpath, hpath = out_dir / "report.json", out_dir / "report.html"
    atomic_write_text(jpath, dumps_json(to_json(study), indent=1, default=float))
    atomic_write_text(hpath, render_html(study))
    return jpath, hpath
