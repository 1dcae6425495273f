"""The study report's figures: interactive plotly charts that work offline in one HTML file.

Every figure is built from a `StudyResult` as a `plotly.graph_objects.Figure` (tests read its
data), then turned into an HTML fragment by `figure_html`: plotly.js goes inline into the first
fragment of a report only, so the page needs no network and carries the library once.

Units: one unit per quantity and plot, its SI prefix chosen from the data (`si_unit`): a plot
of energies around 9 uJ reads "µJ" on its axis, and the report's tables print the same
quantity in the same unit. Energies are stored in pJ and times in s (the bills' units).
Labels never overlap: no text sits on the data; names are in the legend (click to hide a
trace) and a recipe's exact numbers in its hover box.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from picojoule.study.runner import RecipeResult, StudyResult

__all__ = [
    "Unit",
    "si_unit",
    "energy_unit",
    "time_unit",
    "lever_of",
    "error_grid",
    "pareto_figure",
    "layers_figure",
    "error_figure",
    "figure_html",
    "CONFIG",
]

# Interactive, but nothing that leaves the page: no logo link, no "edit in the cloud".
CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "showSendToCloud": False,
    "toImageButtonOptions": {"format": "svg"},
}

# 24 distinct colours x 6 marker shapes: a sweep of dozens of recipes stays tellable apart.
_COLOURS = ("#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100",
            "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D",
            "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA",
            "#6C4516", "#0D2A63", "#AF0038")  # fmt: skip
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")

_PREFIXES = ((1e-18, "a"), (1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "µ"), (1e-3, "m"),
             (1.0, ""), (1e3, "k"), (1e6, "M"), (1e9, "G"))  # fmt: skip


@dataclass(frozen=True)
class Unit:
    """A unit with its SI prefix, e.g. µJ, for values stored in another (pJ): `of(v)` is v
    in this unit, `text(v)` its table cell."""

    symbol: str  # "µJ", "ms", ...
    per_stored: float  # a stored value times this is the value in `symbol`

    def of(self, v: float) -> float:
        return v * self.per_stored

    def text(self, v: float | None, digits: int = 3) -> str:
        """`digits` significant digits, no exponent for values the prefix was chosen for
        (0.0123 / 7.06 / 456); "-" for a missing or NaN value."""
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        x = self.of(v)
        return f"{x:,.0f}" if abs(x) >= 10 ** (digits - 1) else f"{x:.{digits}g}"


def si_unit(values: Iterable[float | None], base: str, stored_exp: int = 0) -> Unit:
    """The SI prefix that puts the largest |value| in [1, 1000) of the unit.

    values: in the stored unit, 10**stored_exp of `base` (pJ: base "J", stored_exp -12);
    None, NaN and zeros are ignored, and with none left the stored unit is kept.
    """
    stored = 10.0**stored_exp
    top = max(
        (abs(v) * stored for v in values if v and math.isfinite(v)), default=stored
    )  # in base units
    factor, prefix = _PREFIXES[0]
    for f, p in _PREFIXES:
        if top >= f * (1 - 1e-12):
            factor, prefix = f, p
    return Unit(prefix + base, stored / factor)


def energy_unit(values_pj: Iterable[float | None]) -> Unit:
    """The unit for energies given in pJ (nJ, µJ, mJ, ... from the data)."""
    return si_unit(values_pj, "J", -12)


def time_unit(values_s: Iterable[float | None]) -> Unit:
    """The unit for times given in s (ns, µs, ms, ... from the data)."""
    return si_unit(values_s, "s", 0)


def colour(i: int) -> str:
    return _COLOURS[i % len(_COLOURS)]


def _esc(s: str) -> str:
    """Plotly renders names and hover text as a small HTML subset: a recipe named `a<b`
    must show as typed."""
    return html.escape(s, quote=False)


def _layout(fig: go.Figure, title: str, height: int, **kw: Any) -> None:
    fig.update_layout(
        title={"text": _esc(title), "x": 0, "xanchor": "left", "font": {"size": 15}},
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 60, "b": 40},
        hoverlabel={"align": "left"},
        font={"family": "system-ui, sans-serif", "size": 12},
        **kw,
    )
    fig.update_xaxes(automargin=True)  # long tick labels push the margin, never overlap it
    fig.update_yaxes(automargin=True)


def _metric_label(study: StudyResult) -> str:
    m = study.primary_metric + (f" ({study.unit})" if study.unit else "")
    return m + ("" if study.higher_is_better else " (lower is better)")


def recipe_hover(
    study: StudyResult, r: RecipeResult, energy: Unit, time: Unit, front: set[str]
) -> str:
    """A recipe's exact numbers for its hover box: metric and delta, bits, bytes, energy
    (and vs speed of light), latency, Pareto membership."""
    c = r.cost
    m = study.primary_metric
    sol = c.get("sol_ratio")
    lines = [
        f"<b>{_esc(r.recipe.name)}</b>",
        _esc(r.recipe.describe()),
        f"{_esc(m)}: {r.metrics[m]:.6g}{(' ' + _esc(study.unit)) if study.unit else ''}"
        f" (delta {_esc(study.delta_text(r))})",
        f"bits/weight: {r.bits_per_weight:.3f}; weight bytes: {r.model_bytes:,}",
        f"energy/inf: {energy.text(c.get('energy_pj'), 4)} {energy.symbol}"
        + (f" ({sol:.2f}x speed of light)" if isinstance(sol, int | float) else ""),
        f"latency: {time.text(c.get('latency_s'), 4)} {time.symbol}",
        "on the Pareto front" if r.recipe.name in front else "dominated",
    ]
    return "<br>".join(lines)


def pareto_figure(
    study: StudyResult, energy: Unit, time: Unit, front: set[str]
) -> go.Figure | None:
    """Metric vs energy per inference on the first target (log x), one legend entry per
    recipe (click to hide it), the Pareto front as a line through ringed points. None when no
    recipe has an energy."""
    import plotly.graph_objects as go

    res = [r for r in study.results if r.cost.get("energy_pj")]
    if not res:
        return None
    m = study.primary_metric
    fig = go.Figure()
    for i, r in enumerate(res):
        fig.add_trace(
            go.Scatter(
                x=[energy.of(r.cost["energy_pj"])],
                y=[r.metrics[m]],
                mode="markers",
                name=_esc(r.recipe.name),
                marker={
                    "size": 11,
                    "color": colour(i),
                    "symbol": _SYMBOLS[i // len(_COLOURS) % len(_SYMBOLS)],
                    "line": {"width": 1, "color": "white"},
                },  # fmt: skip
                hovertext=[recipe_hover(study, r, energy, time, front)],
                hoverinfo="text",
            )
        )
    on = sorted((r for r in res if r.recipe.name in front), key=lambda r: r.cost["energy_pj"])
    fig.add_trace(
        go.Scatter(
            x=[energy.of(r.cost["energy_pj"]) for r in on],
            y=[r.metrics[m] for r in on],
            mode="lines+markers",
            name="Pareto front",
            line={"color": "#cc0000", "width": 1.5, "shape": "hv" if len(on) > 1 else "linear"},
            marker={"size": 19, "symbol": "circle-open", "color": "#cc0000"},
            hoverinfo="skip",
        )
    )
    per = "request" if "phases" in res[0].cost else "inference"
    _layout(fig, f"{m} vs energy per {per} on {study.label(study.target)}", 460,
            legend={"title": {"text": "recipe (click to hide)"}},
            hovermode="closest")  # fmt: skip
    on = _esc(study.label(study.target))
    fig.update_xaxes(type="log", title_text=f"energy per {per} on {on} "
                     f"({energy.symbol}, log scale)")  # fmt: skip
    fig.update_yaxes(title_text=_esc(_metric_label(study)))
    return fig


def _layer_latencies(cost: dict[str, Any]) -> list[float] | None:
    """Each layer's share of the latency (s) where the bill has cycles per layer (an
    accelerator: latency = cycles / clock, so the split is exact); None otherwise (a GPU's
    roofline bill has no per-layer cycles)."""
    rows = cost.get("layers_energy") or []
    cycles = [x.get("cycles") for x in rows]
    total = cost.get("latency_s")
    if not rows or total is None or any(c is None for c in cycles) or not sum(cycles):
        return None
    return [total * c / sum(cycles) for c in cycles]


def layers_figure(study: StudyResult, energy: Unit, time: Unit) -> go.Figure | None:
    """Stacked bars per recipe on the first target: each layer's energy per inference, and
    below it each layer's latency where the target reports cycles per layer. One legend entry
    per layer toggles it in both panels."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    res = [r for r in study.results if r.cost.get("energy_pj")]
    if not res:
        return None
    names = [_esc(r.recipe.name) for r in res]
    layer_names = [x["name"] for x in res[0].cost.get("layers_energy", [])]
    rows = [{x["name"]: x for x in r.cost.get("layers_energy", [])} for r in res]
    # An LM's bill is per request, its layer rows one decode step's: no latency split there
    lm = "phases" in res[0].cost
    per = "decode step (the first)" if lm else "inference"
    lats = [None if lm else _layer_latencies(r.cost) for r in res]
    with_time = all(lat is not None for lat in lats)
    fig = make_subplots(
        rows=2 if with_time else 1, cols=1, shared_xaxes=True, vertical_spacing=0.08,
        subplot_titles=[f"energy per {per}", *(["latency"] if with_time else [])],
    )  # fmt: skip
    for j, ln in enumerate(layer_names):
        e = [row.get(ln, {}).get("energy_pj") or 0.0 for row in rows]
        hover = []
        for r, row, v in zip(res, rows, e, strict=True):
            x = row.get(ln, {})
            total = sum(y.get("energy_pj") or 0.0 for y in row.values())
            hover.append(
                f"<b>{_esc(r.recipe.name)}</b><br>layer {_esc(ln)}<br>"
                f"energy: {energy.text(v, 4)} {energy.symbol} ({v / (total or 1):.1%} of "
                f"{energy.text(total, 4)} {energy.symbol})<br>"
                f"math {energy.text(x.get('math_pj'), 4)} / memory "
                f"{energy.text(x.get('memory_pj'), 4)} {energy.symbol}"
            )
        kw = {"name": _esc(ln), "legendgroup": ln, "marker_color": colour(j)}
        fig.add_trace(go.Bar(x=names, y=[energy.of(v) for v in e], hovertext=hover,
                             hoverinfo="text", **kw), row=1, col=1)  # fmt: skip
        if with_time:
            t = [lat[j] if j < len(lat) else 0.0 for lat in lats]  # type: ignore[index]
            fig.add_trace(
                go.Bar(x=names, y=[time.of(v) for v in t], showlegend=False, hoverinfo="text",
                       hovertext=[f"<b>{n}</b><br>layer {_esc(ln)}<br>latency: "
                                  f"{time.text(v, 4)} {time.symbol}"
                                  for n, v in zip(names, t, strict=True)], **kw),
                row=2, col=1,
            )  # fmt: skip
    what = "per-layer energy" + (" and latency" if with_time else "")
    _layout(fig, f"{what} on {study.label(study.target)}",
            700 if with_time else 460, barmode="stack",
            legend={"title": {"text": "layer"}})  # fmt: skip
    fig.update_yaxes(title_text=f"{energy.symbol} per {per.split(' (')[0]}", row=1, col=1)
    if with_time:
        fig.update_yaxes(title_text=time.symbol, row=2, col=1)
    return fig


def lever_of(r: RecipeResult) -> str:
    """The lever that changes a recipe's weights, the group its heat-map row is scaled in:
    "pruning" (with or without quantization: pruning's error dominates), "quantization",
    "Winograd", or "fine-tuning"."""
    if r.recipe.sparsity:
        return "pruning"
    if r.recipe.quant:
        return "quantization"
    return "Winograd" if r.recipe.winograd else "fine-tuning"


@dataclass(frozen=True)
class ErrorGrid:
    """The per-layer weight error heat map's numbers: `errors[i][j]` is recipe i's relative
    RMS weight error on layer j (NaN where it has no such layer), `scaled` the same divided by
    the largest error of the recipe's lever group (0..1)."""

    recipes: list[str]
    levers: list[str]
    layers: list[str]
    errors: list[list[float]]
    scaled: list[list[float]]
    lever_max: dict[str, float]


def error_grid(study: StudyResult) -> ErrorGrid | None:
    """Per-layer weight errors of the recipes that change weights, scaled per lever: a
    pruning row 100x a quantization row does not flatten the latter to one colour."""
    rs = [r for r in study.results if r.layers and not r.recipe.is_baseline]
    if not rs:
        return None
    layers = [x["name"] for x in rs[0].layers]
    errors = [
        [next((x["weight_rel_rmse"] for x in r.layers if x["name"] == ln), math.nan)
         for ln in layers]
        for r in rs
    ]  # fmt: skip
    levers = [lever_of(r) for r in rs]
    lever_max: dict[str, float] = {}
    for lev, row in zip(levers, errors, strict=True):
        top = max((v for v in row if math.isfinite(v)), default=0.0)
        lever_max[lev] = max(lever_max.get(lev, 0.0), top)
    scaled = [
        [v / lever_max[lev] if lever_max[lev] else (0.0 if math.isfinite(v) else math.nan)
         for v in row]
        for lev, row in zip(levers, errors, strict=True)
    ]  # fmt: skip
    return ErrorGrid([r.recipe.name for r in rs], levers, layers, errors, scaled, lever_max)


def error_figure(study: StudyResult) -> go.Figure | None:
    """Heat map of each layer's weight relative RMS error per recipe, the colour scaled per
    lever (`error_grid`), the exact error in the hover box. Layers run along whichever axis
    keeps the labels readable: down the page when there are many."""
    import plotly.graph_objects as go

    g = error_grid(study)
    if g is None:
        return None
    ylabels = [f"{_esc(n)} ({lev})" for n, lev in zip(g.recipes, g.levers, strict=True)]
    xlabels = [_esc(x) for x in g.layers]
    hover = [
        [f"<b>{_esc(n)}</b> ({lev})<br>layer {_esc(ln)}<br>weight rel. RMS error: "
         + ("-" if math.isnan(e) else f"{e:.4g}")
         + f"<br>{s:.0%} of the largest {lev} error ({g.lever_max[lev]:.4g})"
         for ln, e, s in zip(g.layers, row, srow, strict=True)]
        for n, lev, row, srow in zip(g.recipes, g.levers, g.errors, g.scaled, strict=True)
    ]  # fmt: skip
    z = [[None if math.isnan(v) else v for v in row] for row in g.scaled]
    tall = len(g.layers) > 16
    if tall:  # layers down the page, recipes across
        z = [list(col) for col in zip(*z, strict=True)]
        hover = [list(col) for col in zip(*hover, strict=True)]
        xlabels, ylabels = ylabels, xlabels
    fig = go.Figure(
        go.Heatmap(
            z=z, x=xlabels, y=ylabels, zmin=0.0, zmax=1.0, colorscale="Magma",
            reversescale=True, hovertext=hover, hoverinfo="text", xgap=1, ygap=1,
            colorbar={"title": {"text": "share of the<br>lever's largest<br>error",
                                "side": "right"}},
        )
    )  # fmt: skip
    height = 150 + 22 * len(ylabels)
    _layout(fig, "per-layer weight error (colour scaled per lever)", max(height, 260))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", tickangle=-45 if len(xlabels) > 6 else 0)
    return fig


def stacked_phase_figure(
    names: Sequence[str],
    panels: Sequence[tuple[str, Sequence[tuple[str, str, Sequence[float]]]]],
    unit: Unit,
    title: str,
) -> go.Figure:
    """Side-by-side panels of stacked bars (the LM report's prefill and decode): each panel
    a title and its parts (label, colour, values in pJ per recipe), each part one legend
    entry toggling it in every panel; each panel its own y range, all in `unit`."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels],
                        horizontal_spacing=0.1)  # fmt: skip
    for k, (ptitle, parts) in enumerate(panels, start=1):
        totals = [sum(p[2][i] for p in parts) for i in range(len(names))]
        for label, col, vals in parts:
            hover = [
                f"<b>{_esc(n)}</b><br>{_esc(ptitle)}<br>{_esc(label)}: "
                f"{unit.text(v, 4)} {unit.symbol} of {unit.text(t, 4)} {unit.symbol}"
                for n, v, t in zip(names, vals, totals, strict=True)
            ]
            fig.add_trace(
                go.Bar(x=[_esc(n) for n in names], y=[unit.of(v) for v in vals],
                       name=_esc(label), legendgroup=label, showlegend=k == 1,
                       marker_color=col, hovertext=hover, hoverinfo="text"),
                row=1, col=k,
            )  # fmt: skip
        fig.update_yaxes(title_text=f"{unit.symbol} per token", row=1, col=k)
    _layout(fig, title, 460, barmode="stack")
    return fig


def figure_html(fig: go.Figure, div_id: str, first: bool) -> str:
    """An HTML fragment drawing `fig` in a div `div_id`; with `first`, plotly.js itself is
    inlined ahead of it (once per page: the later fragments use it). Never a CDN link."""
    import plotly.io as pio

    return pio.to_html(fig, config=CONFIG, include_plotlyjs=bool(first), full_html=False,
                       div_id=div_id, default_width="100%")  # fmt: skip
