"""Ranges and choices of command-line options: one table, checked before any work starts.

Public: `OptionRange`, `OPTIONS`, `check_option(name, value)`, `check_options(**values)`,
`check_choice(option, value, choices)`, `check_int_list(option, text)`.

`--workers -2` or `--batch 10000000` used to run until a pool refused to start or memory ran
out; each bound below is the widest value that still describes real work, with the reason
beside it, and a value outside it is one `ConfigError` line naming the option, the value, the
range and the fix. Sub-app commands call `check_options(workers=workers, limit=limit)` first
thing; `None` (an option left unset) passes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from picojoule.errors import ConfigError, did_you_mean

__all__ = [
    "OptionRange",
    "OPTIONS",
    "check_option",
    "check_options",
    "check_choice",
    "check_int_list",
]


@dataclass(frozen=True, kw_only=True)
class OptionRange:
    """Closed range [low, high] of one option (`low_open`: low itself excluded)."""

    low: float
    high: float
    why: str
    integer: bool = True
    low_open: bool = False

    def describe(self) -> str:
        def num(x: float) -> str:
            return str(int(x)) if self.integer else f"{x:g}"

        low = f">{num(self.low)}" if self.low_open else num(self.low)
        return f"{low}..{num(self.high)}"


OPTIONS: dict[str, OptionRange] = {
    "workers": OptionRange(low=1, high=4096, why="processes or Ray CPUs to run designs on"),
    "limit": OptionRange(low=0, high=1_000_000, why="rows of the front table to print"),
    "batch": OptionRange(
        low=1, high=65536, why="past 65536 samples a batch only scales every count linearly"
    ),
    "seed": OptionRange(low=0, high=2**32 - 1, why="numpy and torch seeds are 32-bit"),
    "time-budget": OptionRange(
        low=0, high=7 * 24 * 3600, low_open=True, integer=False, why="seconds, at most a week"
    ),
    "threads": OptionRange(low=1, high=1024, why="torch intra-op threads"),
    # Winograd F(m x m, r x r): beyond m + r - 1 = 17 points no format keeps the transforms
    # exact enough to be worth studying (error grows exponentially with the point count).
    "tiles": OptionRange(low=1, high=16, why="Winograd outputs per tile side"),
    "accuracy-tiles": OptionRange(low=1, high=16, why="Winograd outputs per tile side"),
    "r": OptionRange(low=1, high=15, why="kernel taps; real kernels are 1..11"),
    "m": OptionRange(low=1, high=16, why="Winograd outputs per tile side"),
    "channels": OptionRange(low=1, high=4096, why="random layer channels (memory grows as C^2)"),
    "size": OptionRange(low=1, high=1024, why="random layer input height = width, pixels"),
    "real-samples": OptionRange(low=1, high=100_000, why="test images for the real layer data"),
    "finetune-steps": OptionRange(low=0, high=1_000_000, why="masked fine-tune steps"),
    "lr": OptionRange(low=0, high=10, low_open=True, integer=False, why="SGD learning rate"),
    "node": OptionRange(low=1, high=1000, integer=False, why="CMOS process node, nm"),
    "reduction": OptionRange(low=1, high=2**24, why="dot-product length K"),
    "overhead-pj": OptionRange(
        low=0, high=1e6, integer=False, why="fixed pJ per instruction (30 pJ on 45 nm GPUs)"
    ),
    "density": OptionRange(low=0, high=1, integer=False, why="kept fraction of weights"),
    "input-density": OptionRange(low=0, high=1, integer=False, why="non-zero activations"),
}


def check_option(name: str, value: int | float | None) -> int | float | None:
    """`value` of option `--name` if it lies in `OPTIONS[name]`; ConfigError otherwise."""
    if value is None:
        return None
    rule = OPTIONS[name]
    flag = f"--{name} {value!r}"
    if not math.isfinite(value):
        raise ConfigError(f"{flag}: give a finite number in {rule.describe()} ({rule.why})")
    if rule.integer and value != int(value):
        raise ConfigError(f"{flag}: give a whole number in {rule.describe()} ({rule.why})")
    below = value <= rule.low if rule.low_open else value < rule.low
    if below or value > rule.high:
        raise ConfigError(
            f"{flag}: out of range {rule.describe()} ({rule.why}); give a value in it"
        )
    return value


def check_options(**values: int | float | None) -> None:
    """`check_option` for each keyword (`time_budget=...` is option `--time-budget`)."""
    for name, value in values.items():
        check_option(name.replace("_", "-"), value)


def check_choice(option: str, value: str, choices: Iterable[str]) -> str:
    """`value` if it is one of `choices`; else a ConfigError with the closest names."""
    allowed = list(choices)
    if value not in allowed:
        hint = did_you_mean(value, allowed)
        raise ConfigError(f"--{option} {value!r}: unknown; use one of {', '.join(allowed)}{hint}")
    return value


def check_int_list(option: str, text: str) -> list[int]:
    """Comma-separated integers of `--option`, each checked against `OPTIONS[option]`."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"--{option} is empty; give a comma-separated list, e.g. 2,4,6")
    try:
        values = [int(t) for t in items]
    except ValueError:
        raise ConfigError(
            f"--{option} {text!r}: give comma-separated integers, e.g. 2,4,6"
        ) from None
    for v in values:
        rule = OPTIONS[option]
        if not rule.low <= v <= rule.high:
            raise ConfigError(
                f"--{option} {text!r}: {v} is out of range {rule.describe()} ({rule.why})"
            )
    return values
