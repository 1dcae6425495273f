"""The report's interactive figures (picojoule.study.plots): what each plot holds, the units it
picks, the per-lever heat-map scale, and a page that carries plotly.js once and needs no
network. Built from hand-made results: no model runs here."""

from __future__ import annotations

import math
import re

import pytest

from picojoule.study import Recipe
from picojoule.study.plots import (
    Unit,
    energy_unit,
    error_figure,
    error_grid,
    pareto_figure,
    si_unit,
    time_unit,
)
from picojoule.study.report import figures, on_front, render_html, units
from picojoule.study.report_lm import phase_plot, phase_section
from picojoule.study.runner import RecipeResult, StudyResult

LAYERS = ("conv1", "conv2", "fc")


def _cost(energy_pj: float, latency_s: float, cycles: tuple[int, ...] = (1, 2, 1)) -> dict:
    share = [c / sum(cycles) for c in cycles]
    return {
        "energy_pj": energy_pj, "sol_energy_pj": energy_pj / 2, "sol_ratio": 2.0,
        "latency_s": latency_s, "macs": 1000, "mults": 1000,
        "layers_energy": [{"name": n, "energy_pj": energy_pj * s, "math_pj": energy_pj * s / 4,
                           "memory_pj": energy_pj * s * 3 / 4, "cycles": c}
                          for n, s, c in zip(LAYERS, share, cycles, strict=True)],
        "assumptions": ["made by hand"],
    }  # fmt: skip


def _result(recipe: Recipe, metric: float, energy_pj: float, errors=(0.0, 0.0, 0.0), **cost):
    return RecipeResult(
        recipe=recipe, metrics={"accuracy": metric}, bits_per_weight=32.0 * (1 - max(errors)),
        model_bytes=4096, layers=[{"name": n, "weight_rel_rmse": e}
                                  for n, e in zip(LAYERS, errors, strict=True)],
        sparsity=[], costs={"eyeriss": {**_cost(energy_pj, 2e-5), **cost}}, applied={},
        seconds=0.1,
    )  # fmt: skip


def _study() -> StudyResult:
    base = _result(Recipe(name="fp32"), 97.5, 9.35e6)
    rs = [
        base,
        _result(Recipe(name="int8", quant="w:int8"), 97.25, 2.4e6, (0.004, 0.006, 0.005)),
        _result(Recipe(name="int4", quant="w:int4"), 95.125, 1.49e6, (0.07, 0.02, 0.05)),
        # pruning: 100x the quantization errors on one layer
        _result(Recipe(name="2:4", sparsity="2:4"), 80.0, 8.0e6, (0.0, 7.0, 0.5)),
    ]
    return StudyResult(task="hand-made", primary_metric="accuracy", unit="%", targets=("eyeriss",),
                       model_version="v0", results=rs, baseline=base)  # fmt: skip


@pytest.mark.parametrize(
    ("values", "base", "exp", "want"),
    [
        ([9.35e6, 1.49e6], "J", -12, "µJ"),  # the largest picks it: 9.35 µJ
        ([999.0, 12.0], "J", -12, "pJ"),
        ([1000.0], "J", -12, "nJ"),
        ([2.5e9, 3.0e5], "J", -12, "mJ"),
        ([1.2e12], "J", -12, "J"),
        ([None, 0.0, float("nan")], "J", -12, "pJ"),  # nothing to go by: the stored unit
        ([5.03e-5], "s", 0, "µs"),
        ([2.09e-8], "s", 0, "ns"),
        ([1.5], "s", 0, "s"),
    ],
)
def test_si_prefix_is_chosen_from_the_data(values, base, exp, want):
    assert si_unit(values, base, exp).symbol == want


def test_unit_conversion_and_cells():
    uj = energy_unit([9.35e6])
    assert uj == Unit("µJ", 1e-6) and uj.of(9.35e6) == pytest.approx(9.35)
    assert uj.text(9351751.7) == "9.35" and uj.text(1.2e4) == "0.012"
    assert uj.text(456.7e6) == "457" and uj.text(456.7e6, 4) == "456.7"
    assert uj.text(None) == "-" and uj.text(float("nan")) == "-"
    assert time_unit([5.03e-5]).text(5.03e-5, 4) == "50.3"


def test_pareto_plot_one_trace_per_recipe_with_exact_numbers():
    study = _study()
    energy, time = units(study)
    assert (energy.symbol, time.symbol) == ("µJ", "µs")
    front = on_front(study)
    assert front == {"fp32", "int8", "int4"}
    fig = pareto_figure(study, energy, time, front)
    names = [t.name for t in fig.data]
    assert names == [r.recipe.name for r in study.results] + ["Pareto front"]  # legend toggles
    assert not any(t.text for t in fig.data)  # no labels on the points: nothing can overlap
    for r, t in zip(study.results, fig.data[:-1], strict=True):
        assert t.x == (pytest.approx(r.cost["energy_pj"] / 1e6),)
        (hover,) = t.hovertext
        assert f"accuracy: {r.metrics['accuracy']:.6g} %" in hover
        assert f"(delta {study.delta_text(r)})" in hover
        assert f"bits/weight: {r.bits_per_weight:.3f}" in hover
        assert f"energy/inf: {energy.text(r.cost['energy_pj'], 4)} µJ" in hover
        assert "latency: 20 µs" in hover
        assert ("on the Pareto front" in hover) == (r.recipe.name in front)
    line = fig.data[-1]
    assert list(line.x) == pytest.approx([1.49, 2.4, 9.35])  # the front, cheapest first
    assert "µJ" in fig.layout.xaxis.title.text and fig.layout.xaxis.type == "log"
    # the table prints the same quantity in the same unit
    page = render_html(study)
    assert "<th>energy/inf (µJ)</th>" in page and "<td>9.35</td>" in page
    assert "<th>latency (µs)</th>" in page


def test_heat_map_is_scaled_per_lever():
    study = _study()
    g = error_grid(study)
    assert g.recipes == ["int8", "int4", "2:4"]
    assert g.levers == ["quantization", "quantization", "pruning"]
    assert g.lever_max == {"quantization": 0.07, "pruning": 7.0}
    by = dict(zip(g.recipes, g.scaled, strict=True))
    # a single scale would squeeze int4 into 0..1% of it; per lever it spans the colours
    assert by["int4"] == pytest.approx([1.0, 0.02 / 0.07, 0.05 / 0.07])
    assert by["int8"] == pytest.approx([0.004 / 0.07, 0.006 / 0.07, 0.005 / 0.07])
    assert by["2:4"] == pytest.approx([0.0, 1.0, 0.5 / 7])
    (hm,) = error_figure(study).data
    assert [list(row) for row in hm.z] == [pytest.approx(row) for row in g.scaled]
    assert (hm.zmin, hm.zmax) == (0.0, 1.0)
    assert "weight rel. RMS error: 0.006" in hm.hovertext[0][1]  # the exact error on hover
    assert "(quantization)" in hm.y[0] and "(pruning)" in hm.y[2]


def test_heat_map_turns_when_there_are_many_layers():
    study = _study()
    many = [f"blocks.{i}.mlp" for i in range(20)]
    rs = [
        RecipeResult(**{**r.__dict__, "layers": [{"name": n, "weight_rel_rmse": 0.01 * (i + 1)}
                                                 for i, n in enumerate(many)]})
        for r in study.results
    ]  # fmt: skip
    tall = StudyResult(**{**study.__dict__, "results": rs})
    (hm,) = error_figure(tall).data
    assert list(hm.y) == many and len(hm.x) == 3  # layers down the page, recipes across
    assert len(hm.z) == 20 and len(hm.z[0]) == 3


def _lm_study() -> StudyResult:
    def lm(name: str, quant: str, scale: float) -> RecipeResult:
        r = _result(Recipe(name=name, quant=quant), 30.0 / scale, 8e7 * scale)
        phases = {
            ph: {"energy_per_token_pj": k * 2e6 * scale, "tokens_per_s": 1e4 / k,
                 "sol_ratio": 1.1, "weights_pj": k * 1.5e6 * scale,
                 "kv_cache_pj": k * 0.4e6 * scale, "math_pj": k * 0.1e6 * scale}
            for ph, k in (("prefill", 1.0), ("decode", 40.0))
        }  # fmt: skip
        cost = {**r.cost, "phases": phases, "kv_cache_bytes": 4096}
        metrics = {"perplexity": 30.0 / scale, "top1": 40.0}
        return RecipeResult(**{**r.__dict__, "costs": {"eyeriss": cost}, "metrics": metrics})

    rs = [lm("fp32", "", 1.0), lm("int4", "w:int4", 0.5)]
    return StudyResult(task="lm", primary_metric="perplexity", unit="", targets=("eyeriss",),
                       model_version="v0", results=rs, baseline=rs[0],
                       higher_is_better=False)  # fmt: skip


def test_phase_plot_shares_its_unit_with_the_phase_table():
    study = _lm_study()
    fig = phase_plot(study)
    assert [t.name for t in fig.data] == ["weights", "attention data (KV cache)", "math"] * 2
    assert [t.showlegend for t in fig.data] == [True] * 3 + [False] * 3  # one legend entry
    decode_weights = fig.data[3]
    assert list(decode_weights.y) == pytest.approx([60.0, 30.0])  # 40 x 1.5e6 pJ in µJ
    assert fig.layout.yaxis.title.text == "µJ per token"
    assert "<th>decode µJ/tok</th>" in phase_section(study, _table_of)
    assert {k for k, *_ in figures(study)} == {"pareto", "phases", "layers", "errors"}
    # the layer bars of an LM are one decode step's: no latency panel made from the request's
    (layers,) = [f for k, _, f, _ in figures(study) if k == "layers"]
    assert len(layers.data) == len(LAYERS) and "decode step" in layers.layout.yaxis.title.text


def _table_of(rows, head) -> str:
    return "".join(f"<th>{h}</th>" for h in head)


_BUNDLE = re.compile(r"<script>/\*\*\s*\* plotly\.js v.*?</script>", re.S)


def test_page_carries_plotly_once_and_reaches_for_nothing():
    page = render_html(_study())
    assert len(_BUNDLE.findall(page)) == 1  # plotly.js inlined exactly once
    assert page.count('class="plotly-graph-div"') == 3
    assert page.index("plotly.js v") < page.index("Plotly.newPlot")  # loaded before first use
    own = _BUNDLE.sub("", page)  # the page without the library: not one URL in it
    assert "http://" not in own and "https://" not in own
    for ext in (r"<script[^>]*\bsrc\s*=", r"<link\b", r"<img\b", r"<iframe\b", r"url\(",
                r"@import", r"\bfetch\(", r"XMLHttpRequest"):  # fmt: skip
        assert not re.search(ext, own, re.I), ext
    bundle = _BUNDLE.search(page).group(0)
    assert not re.search(r"<script[^>]*\bsrc\s*=|<link\b", bundle[8:])  # nothing nested
    assert '"displaylogo": false' in page and '"responsive": true' in page


def test_names_cannot_break_the_page():
    study = _study()
    evil = "</script><script>alert(1)</script>"
    bad = Recipe(name=evil, quant="w:int4")
    rs = [RecipeResult(**{**study.results[2].__dict__, "recipe": bad}), *study.results]
    page = render_html(StudyResult(**{**study.__dict__, "results": rs}))
    assert "<script>alert(1)" not in page
    assert page.count("<script>") == page.count("</script>")


def test_every_figure_is_finite_json():
    """NaN errors (a layer a recipe lacks) become gaps, never NaN in the page's JSON."""
    study = _study()
    rs = [RecipeResult(**{**r.__dict__, "layers": r.layers[:2]}) if r.recipe.name == "int4"
          else r for r in study.results]  # fmt: skip
    g = error_grid(StudyResult(**{**study.__dict__, "results": rs}))
    assert math.isnan(g.errors[1][2]) and math.isnan(g.scaled[1][2])
    page = render_html(StudyResult(**{**study.__dict__, "results": rs}))
    assert "NaN" not in _BUNDLE.sub("", page)


@pytest.mark.parametrize("width", (80, 160, 200))
def test_lm_terminal_table_fits_two_targets(width):
    """The LM table (perplexity, KV cache, per target mJ/request and tokens/s) reads at 80
    columns and at 160-200 with two targets: no cell cut with an ellipsis."""
    from rich.console import Console

    from picojoule.study.report_lm import lm_summary_table

    one = _lm_study()
    rs = [RecipeResult(**{**r.__dict__, "costs": {"eyeriss": r.cost, "h100-sxm-80gb": r.cost}})
          for r in one.results]  # fmt: skip
    study = StudyResult(**{**one.__dict__, "results": rs, "baseline": rs[0],
                           "targets": ("eyeriss", "h100-sxm-80gb")})  # fmt: skip
    con = Console(width=width, record=True)
    con.print(lm_summary_table(study, set()))
    text = con.export_text()
    assert "…" not in text
    for word in ("fp32", "int4", "eyeriss", "h100-sxm-80gb", "mJ/req", "tok/s", "KV MiB"):
        assert word in text, (width, word)
    assert max(len(line) for line in text.splitlines()) <= width
