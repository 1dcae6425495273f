"""The study's figure: error vs tile size, and error vs multiply reduction.

Public: `plot_errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never opens a window
import matplotlib.pyplot as plt  # noqa: E402

from picojoule.fsio import save_figure  # noqa: E402
from picojoule.winograd.study import ErrorRow  # noqa: E402

__all__ = ["plot_errors"]

_STYLES = ("-", "--", ":", "-.")


def plot_errors(rows: Sequence[ErrorRow], path: Path, *, data: str = "random") -> Path:
    """Two panels for the rows of one data set: max relative error (log) against the tile size m
    and against the 2-D multiply reduction; one colour per format, one line style per point
    set, a dotted horizontal line at the direct convolution's error in that format."""
    picked = [row for row in rows if row.data == data]
    fmts = list(dict.fromkeys(row.format for row in picked))
    sets = list(dict.fromkeys(row.point_set for row in picked))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (by_tile, by_mult) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for i, fmt in enumerate(fmts):
        color = colors[i % len(colors)]
        direct = next(row.direct.max_rel for row in picked if row.format == fmt)
        for ax in (by_tile, by_mult):
            ax.axhline(direct, color=color, linestyle=":", linewidth=0.8)
        for j, ps in enumerate(sets):
            line = sorted(
                (row for row in picked if row.format == fmt and row.point_set == ps),
                key=lambda row: row.m,
            )
            errs = [row.winograd.max_rel for row in line]
            style = dict(color=color, linestyle=_STYLES[j % len(_STYLES)], marker="o", ms=3)
            by_tile.plot([row.m for row in line], errs, label=f"{fmt}, {ps} points", **style)
            by_mult.plot([row.multiply_reduction for row in line], errs, **style)
    r = picked[0].r if picked else 3
    by_tile.set_xlabel(f"tile m in F(m x m, {r} x {r})")
    by_mult.set_xlabel("multiply reduction vs direct (x)")
    by_tile.set_ylabel("max relative error vs float64 direct")
    for ax in (by_tile, by_mult):
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Winograd error on {data} data (dotted: direct conv in the same format)")
    fig.legend(loc="lower center", ncol=min(4, max(len(fmts) * len(sets), 1)), fontsize=8)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(fmts) * len(sets) - 1) // 4), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)  # atomic: never writes through a planted symlink
    plt.close(fig)
    return path
