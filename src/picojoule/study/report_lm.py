"""The parts of a study report that only causal language models have: prefill and decode per
token on every target, where each phase's energy goes (weights, KV cache, math), and the KV
cache's size per recipe. Used by `picojoule.study.report` when the bills carry `phases`."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from rich.table import Table

from picojoule.study.plots import Unit, energy_unit, stacked_phase_figure
from picojoule.study.runner import StudyResult

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["is_lm", "lm_summary_table", "phase_section", "phase_plot"]

_MIB = 1 << 20


def is_lm(study: StudyResult) -> bool:
    return any("phases" in r.cost for r in study.results)


_PARTS = (
    ("weights_pj", "weights", "#3465a4"),
    ("kv_cache_pj", "attention data (KV cache)", "#f57900"),
    ("math_pj", "math", "#4e9a06"),
)


def phase_unit(study: StudyResult, target: str | None = None) -> Unit:
    """The unit of one target's energies per token (pJ in the bills): its prefix chosen from
    the data, shared by the phase plot and the phase table."""
    return energy_unit(
        v
        for r in study.ran
        if "phases" in r.costs[target or study.target]
        for p in r.costs[target or study.target]["phases"].values()
        for v in (p["energy_per_token_pj"], *(p[k] for k, _, _ in _PARTS))
    )


def _num(v: float) -> str:
    """3 significant digits without an exponent: 10,148 / 7.06 / 0.0123."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _sol(x: float | None) -> str:
    return f"{x:.2f}x" if isinstance(x, int | float) else "-"


def lm_summary_table(study: StudyResult, front: set[str]) -> Table:
    """Terminal table: perplexity, top-1, bytes, and per target the request's energy (mJ)
    and decode tokens/s. The per-phase detail is in the HTML (`phase_section`)."""
    from rich.markup import escape

    title = f"picojoule study: {study.task} on {', '.join(map(study.label, study.targets))}"
    from picojoule.termtable import FitTable

    # fits the console (FitTable): when narrow, per-target columns move to continuation
    # tables that repeat the recipe names
    t = FitTable(title=escape(title), title_justify="left")
    metric = "ppl" if study.primary_metric == "perplexity" else study.primary_metric
    from picojoule.study.report import algorithm_cells, has_algorithms, skip_text

    algs = has_algorithms(study)
    cols = [metric, "ratio", "top-1 %", "bits/w", "weight MiB", "KV MiB"]
    if algs:
        cols += ["calib s", "rot ops/tok"]
    for x in study.targets:
        cols += [f"{study.label(x)} mJ/req", f"{study.label(x)} tok/s"]
    t.add_column("recipe", kind="name")
    for c in cols:
        t.add_column(c, justify="right", rank=1 if c in ("bits/w", "weight MiB", "KV MiB") else 0)
    t.add_column("front", justify="center")
    for r in study.results:
        if r.skipped:  # the reason where the numbers would be
            t.add_row(r.recipe.name, skip_text(r), *[""] * len(cols), style="dim")
            continue
        row = [
            r.recipe.name,
            f"{r.metrics[study.primary_metric]:.4g}",
            study.delta_text(r),
            f"{r.metrics.get('top1', float('nan')):.3g}",
            f"{r.bits_per_weight:.2f}",
            f"{r.model_bytes / _MIB:.1f}",
            f"{r.cost.get('kv_cache_bytes', 0) / _MIB:.1f}",
            *(algorithm_cells(r) if algs else ()),
        ]
        for x in study.targets:
            c = r.costs[x]
            row += [_num(c["energy_pj"] / 1e9), _num(c["phases"]["decode"]["tokens_per_s"])]
        row.append("*" if r.recipe.name in front else "")
        t.add_row(*row)
    scenario = study.ran[0].cost["assumptions"][0] if study.ran else ""
    t.caption = (
        f"ratio = {study.primary_metric} / the FP32 baseline's (lower is better); mJ/req = "
        f"{scenario.removeprefix('one request: ')}; tok/s = decode tokens per second; bits/w "
        "and weight MiB count every Linear (a float LM head too); KV MiB at the end of "
        "decoding; "
        + (
            "calib s = wall time of the recipe's calibration algorithms; rot ops/tok = adds "
            "and multiplies of its online Hadamards per token (billed in the energy); "
            if algs
            else ""
        )
        + "front * = no recipe is both cheaper"
        + (f" on {study.target}" if len(study.targets) > 1 else "")
        + f" and lower in {study.primary_metric}; per-phase detail in report.html"
    )
    return t


def _phase_rows(study: StudyResult, target: str, u: Unit) -> list[list[Any]]:
    """Per recipe: prefill and decode per token (energy in `u`), the decode energy split."""
    rows = []
    for r in study.ran:
        c = r.costs[target]
        p, d = c["phases"]["prefill"], c["phases"]["decode"]
        rows.append([
            r.recipe.name,
            u.text(p["energy_per_token_pj"], 4), f"{p['tokens_per_s']:.4g}",
            _sol(p["sol_ratio"]), u.text(d["energy_per_token_pj"], 4),
            f"{d['tokens_per_s']:.4g}", _sol(d["sol_ratio"]), u.text(d["weights_pj"], 4),
            u.text(d["kv_cache_pj"], 4), u.text(d["math_pj"], 4),
            f"{c.get('kv_cache_bytes', 0) / _MIB:.2f}", f"{c.get('kv_bits_per_element', 32):g}",
        ])  # fmt: skip
    return rows


def phase_section(study: StudyResult, table) -> str:
    """HTML: per target, prefill and decode per token with their distance to the speed of
    light, the decode energy split, and the KV cache size per recipe."""
    out = ["<h2>Prefill and decode</h2>"]
    first = study.ran[0].cost if study.ran else {}
    out.append("<p class=note>" + html.escape("; ".join(first.get("assumptions", [])[:4])) + "</p>")
    for x in study.targets:
        unit = phase_unit(study, x)  # each target's own prefix; the first's is the plot's
        u = unit.symbol
        head = ["recipe", f"prefill {u}/tok", "prefill tok/s", "prefill vs SOL",
                f"decode {u}/tok", "decode tok/s", "decode vs SOL", f"decode: weights {u}",
                f"decode: KV cache {u}", f"decode: math {u}", "KV cache MiB",
                "KV bits/elem"]  # fmt: skip
        if len(study.targets) > 1:
            out.append(f"<h3>{html.escape(study.label(x))}</h3>")
        out.append(table(_phase_rows(study, x, unit), head))
    return "".join(out)


def phase_plot(study: StudyResult) -> go.Figure | None:
    """Stacked bars per recipe on the first target: energy per token at prefill and at decode,
    split into weights, KV cache and math; two panels, each its own y range (decode is often
    10-50x prefill), both in one unit (`phase_unit`). None for a study without phases."""
    res = [r for r in study.results if "phases" in r.cost]
    if not res:
        return None
    panels = [
        (f"{phase}: energy per token on {study.target}",
         [(label, colour, [r.cost["phases"][phase][key] for r in res])
          for key, label, colour in _PARTS])
        for phase in ("prefill", "decode")
    ]  # fmt: skip
    return stacked_phase_figure(
        [r.recipe.name for r in res], panels, phase_unit(study),
        f"energy per token by phase on {study.target}",
    )  # fmt: skip
