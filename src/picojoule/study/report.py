"""Study outputs: `report.json` (versioned schema), a self-contained `report.html` (plots
embedded as PNG data URIs, no network), and a rich summary table for the terminal.

Files are written to a temporary name and renamed, so an interrupted run never leaves a
half-written report that looks complete.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from picojoule.fsio import atomic_write_text, dumps_json, prepare_out_dir
from picojoule.study.runner import RecipeResult, StudyResult

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


def _fmt_energy(pj: float | None) -> str:
    if pj is None or (isinstance(pj, float) and math.isnan(pj)):
        return "-"
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _bill_cells(cost: dict[str, Any]) -> tuple[str, str, str]:
    """(energy per inference, energy / speed of light, latency in us) of one target's bill."""
    sol = cost.get("sol_ratio")
    return (
        _fmt_energy(cost.get("energy_pj")),
        f"{sol:.2f}x" if isinstance(sol, int | float) else "-",
        f"{cost['latency_s'] * 1e6:.3g}" if cost.get("latency_s") else "-",
    )


def _where(study: StudyResult) -> str:
    return ", ".join(study.targets)


def summary_table(study: StudyResult) -> Table:
    from picojoule.study.report_lm import is_lm, lm_summary_table

    if is_lm(study):
        return lm_summary_table(study, on_front(study))
    m = study.primary_metric
    t = Table(title=f"picojoule study: {study.task} on {_where(study)}", title_justify="left")
    has_measured = any(r.cost.get("measured_energy_pj") for r in study.results)
    several = len(study.targets) > 1
    per_target = [
        (f"energy/inf {x}" if several else "energy/inf", f"vs SOL {x}" if several else "vs SOL")
        for x in study.targets
    ]
    for col, just in [
        ("recipe", "left"),
        (m + (f" ({study.unit})" if study.unit else ""), "right"),
        ("delta", "right"),
        ("bits/weight", "right"),
        ("weight KiB", "right"),
        ("mults", "right"),
        *[(c, "right") for pair in per_target for c in pair],
        *([("measured", "right")] if has_measured else []),
        *([("calib s", "right"), ("rot ops/tok", "right")] if has_algorithms(study) else []),
        ("front", "center"),
    ]:
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    front = on_front(study)
    n_cols = len(t.columns)
    for r in study.results:
        if r.skipped:  # the reason where the numbers would be, the rest blank
            t.add_row(r.recipe.name, skip_text(r), *[""] * (n_cols - 2), style="dim")
            continue
        bills = [cell for x in study.targets for cell in _bill_cells(r.costs[x])[:2]]
        t.add_row(
            r.recipe.name,
            f"{r.metrics[m]:.4g}"
            + (f" {OWN_DATA_MARK}" if study.scored_on_training_data(r) else ""),
            study.delta_text(r),
            f"{r.bits_per_weight:.2f}",
            f"{r.model_bytes / 1024:.1f}",
            f"{r.cost.get('mults', 0):,}",
            *bills,
            *([_fmt_energy(r.cost.get("measured_energy_pj"))] if has_measured else []),
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


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the undominated points, by energy: lower energy and higher metric are
    better, and a point is dominated when another is no worse in both and better in one."""

    def dominated(i: int) -> bool:
        (e, m) = points[i]
        return any(e2 <= e and m2 >= m and (e2, m2) != (e, m) for e2, m2 in points)

    return sorted((i for i in range(len(points)) if not dominated(i)), key=lambda i: points[i])


def _plots(study: StudyResult) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, str] = {}
    m = study.primary_metric
    res = [r for r in study.results if r.cost.get("energy_pj")]
    if res:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        pts = [(r.cost["energy_pj"], r.metrics[m]) for r in res]
        oriented = [(e, study.score(r)) for (e, _), r in zip(pts, res, strict=True)]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="#3465a4", zorder=3)
        for r, (x, y) in zip(res, pts, strict=True):
            ax.annotate(
                r.recipe.name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        front = _pareto(oriented)
        ax.plot(
            [pts[i][0] for i in front],
            [pts[i][1] for i in front],
            color="#cc0000",
            lw=1,
            marker="o",
            markersize=9,
            markerfacecolor="none",  # a ring around each recipe on the front, even a lone one
            label="Pareto front",
        )
        ax.set_xscale("log")
        per = "request" if "phases" in res[0].cost else "inference"
        ax.set_xlabel(f"energy per {per} on {study.target} (pJ)")
        ax.set_ylabel(m + ("" if study.higher_is_better else " (lower is better)"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        out["pareto"] = _png(fig)

        fig, ax = plt.subplots(figsize=(8, 4.2))
        names = [r.recipe.name for r in res]
        layer_names = [lay["name"] for lay in res[0].cost.get("layers_energy", [])]
        bottom = [0.0] * len(res)
        cmap = plt.get_cmap("tab20")
        energy = [
            {x["name"]: x.get("energy_pj") or 0.0 for x in r.cost.get("layers_energy", [])}
            for r in res
        ]
        for j, ln in enumerate(layer_names):
            vals = [e.get(ln, 0.0) for e in energy]
            ax.bar(names, vals, bottom=bottom, label=ln, color=cmap(j % 20))
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        ax.set_ylabel("energy per inference (pJ)")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        # Many layers (a transformer has dozens): legend beside the plot, in columns.
        ncol = max(1, math.ceil(len(layer_names) / 24))
        ax.legend(fontsize=5 if len(layer_names) > 12 else 7, ncol=ncol, title="layer",
                  title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # fmt: skip
        ax.set_title("per-layer energy")
        out["layers"] = _png(fig)

    quantized = [r for r in study.results if r.layers and not r.recipe.is_baseline]
    if quantized:
        layer_names = [lay["name"] for lay in quantized[0].layers]
        grid = [
            [
                next((x["weight_rel_rmse"] for x in r.layers if x["name"] == ln), float("nan"))
                for ln in layer_names
            ]
            for r in quantized
        ]
        recipes = [r.recipe.name for r in quantized]
        # Layers along whichever axis leaves the labels readable: rows when there are many.
        tall = len(layer_names) > 16
        if tall:
            grid = [list(col) for col in zip(*grid, strict=True)]
            size = (2.5 + 0.45 * len(recipes), 1.0 + 0.22 * len(layer_names))
        else:
            size = (1.5 + 0.6 * len(layer_names), 1.2 + 0.3 * len(recipes))
        fig, ax = plt.subplots(figsize=size)
        im = ax.imshow(grid, aspect="auto", cmap="magma_r")
        xs, ys = (recipes, layer_names) if tall else (layer_names, recipes)
        ax.set_xticks(range(len(xs)), xs, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(ys)), ys, fontsize=6 if tall else 7)
        fig.colorbar(im, ax=ax, label="weight relative RMS error")
        ax.set_title("per-layer weight error")
        out["errors"] = _png(fig)
    from picojoule.study.report_lm import phase_plot

    if (phases := phase_plot(study, _png)) is not None:
        out["phases"] = phases
    return out


# --- HTML ----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f0f0f0} img{max-width:100%} .note{color:#555;font-size:13px}
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


def _recipe_rows(study: StudyResult) -> list[list[Any]]:
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
            f"{c.get('mults', 0):,}", _fmt_energy(c.get("energy_pj")),
            _fmt_energy(c.get("sol_energy_pj")), _bill_cells(c)[2],
            _fmt_energy(c.get("measured_energy_pj")),
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
    head = ["recipe"] + [
        f"{x} {what}" for x in study.targets for what in ("energy/inf", "vs SOL", "latency (us)")
    ]
    rows = []
    for r in study.results:
        if r.skipped:
            rows.append(Spanned([r.recipe.name, _skip_cell(r)]))
            continue
        rows.append([r.recipe.name, *(v for x in study.targets for v in _bill_cells(r.costs[x]))])
    return "<h2>Every target</h2>" + _table(rows, head)


def render_html(study: StudyResult) -> str:
    plots = _plots(study)
    head = ["recipe", "levers", study.primary_metric, "delta", "scored on", "Pareto front",
            "bits/weight", "weight bytes", "MACs", "multiplies", "energy/inf", "SOL energy",
            "latency (us)", "measured GPU energy"]  # fmt: skip
    if has_algorithms(study):
        head += ["calibration (s)", "online rotation ops/token"]
    imgs = "".join(
        f'<h2>{title}</h2><img alt="{key}" src="{plots[key]}">'
        for key, title in (("pareto", f"{study.primary_metric} vs energy"),
                           ("phases", "Where each phase's energy goes"),
                           ("layers", "Energy per layer"), ("errors", "Error per layer"))
        if key in plots
    )  # fmt: skip
    from picojoule.study.report_lm import is_lm, phase_section

    phases = phase_section(study, _table) if is_lm(study) else ""
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in study.notes)
    assumptions = ""
    for x in study.targets:
        first = study.ran[0].costs[x] if study.ran else {}
        items = [*first.get("assumptions", []), *filter(None, [first.get("measured_note")])]
        assumptions += (f"<h3>{html.escape(x)}</h3>" if len(study.targets) > 1 else "") + (
            "<ul>" + "".join(f"<li>{html.escape(a)}</li>" for a in items) + "</ul>"
        )
    scored = f"; scored on {html.escape(study.scored_on)}" if study.scored_on else ""
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>picojoule study</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>picojoule study: {html.escape(study.task)} on {html.escape(_where(study))}</h1>"
        f"<p class=note>model version {study.model_version}; schema {REPORT_SCHEMA}; recipe "
        f"table, plots and Pareto front on {html.escape(study.target)}{scored}</p>"
        f"{notes}<h2>Recipes</h2>{_table(_recipe_rows(study), head)}{_by_target(study)}"
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
