"""Live progress of a run on stderr (`dse run`, `cluster plan --search --out`): done / total,
rate, time left, best so far.

Public: `ProgressView`.

On a terminal, a rich progress bar (transient: it disappears when the run ends). Elsewhere (a
log file, CI) rich draws nothing, so one plain line is written every `every_s` seconds instead,
and a last one when the run ends. Stdout keeps only the results (tables, paths).

The best-so-far value is shown in the unit `units` gives its objective (scale, unit; default:
the DSE objectives - energy in uJ from pJ, latency in ms from s, area in mm^2).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from picojoule.dse.runner import RunProgress

__all__ = ["ProgressView"]

_UNITS = {"energy": (1e-6, "uJ"), "latency": (1e3, "ms"), "area": (1.0, "mm^2")}


def _best(p: RunProgress, units: Mapping[str, tuple[float, str]] = _UNITS) -> str:
    if p.best is None:
        return "best: -"
    scale, unit = units.get(p.objective, (1.0, ""))
    return f"best {p.objective} {p.best * scale:.4g} {unit}".rstrip()


class ProgressView:
    """Context manager; call it with each `RunProgress` (it is the runner's `progress`)."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        every_s: float = 10.0,
        units: Mapping[str, tuple[float, str]] | None = None,
    ) -> None:
        """units: objective -> (factor from the stored metric, unit shown) for best so far."""
        self.console = console or Console(stderr=True)
        self._every_s = every_s
        self._units = dict(units) if units is not None else _UNITS
        self._t0 = time.monotonic()
        self._last_line = self._t0
        self._first_eval: tuple[float, int] | None = None  # (time, evaluated) at first commit
        self._last: RunProgress | None = None
        self._bar: Progress | None = None
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("evaluating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[best]}"),
                console=self.console,
                transient=True,
            )
            self._task = self._bar.add_task("designs", total=None, rate="", best="")

    def __enter__(self) -> ProgressView:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._bar is None and self._last is not None and kind is None:
            self._line(self._last)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def rate(self) -> float | None:
        """Designs evaluated per second since the first commit (reused ones excluded)."""
        if self._first_eval is None or self._last is None:
            return None
        t, n = self._first_eval
        dt = time.monotonic() - t
        return (self._last.evaluated - n) / dt if dt > 0 and self._last.evaluated > n else None

    def __call__(self, p: RunProgress) -> None:
        if self._first_eval is None and p.evaluated:
            self._first_eval = (time.monotonic(), p.evaluated)
        self._last = p
        rate = self.rate()
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=p.done,
                total=p.planned,
                rate=f"{rate:.2f}/s" if rate else "",
                best=_best(p, self._units),
            )
            return
        now = time.monotonic()
        if now - self._last_line >= self._every_s:
            self._last_line = now
            self._line(p)

    def _line(self, p: RunProgress) -> None:
        rate = self.rate()
        left = p.planned - p.done
        eta = f", ETA {left / rate:.0f} s" if rate and left else ""
        speed = f", {rate:.2f}/s" if rate else ""
        self.console.print(
            f"evaluated {p.done}/{p.planned}{speed}{eta}, {_best(p, self._units)} "
            f"({time.monotonic() - self._t0:.0f} s)",
            highlight=False,
        )
