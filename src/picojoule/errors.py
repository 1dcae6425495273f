"""Error types. Every error a user can cause is a `PicojouleError` whose message names the
problem and the fix; the CLI prints it as one line instead of a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "PicojouleError", "FormatError", "ConfigError", "ShapeError", "nearest"]


class PicojouleError(Exception):
    """Base class of every error picojoule raises on bad input."""


class FormatError(PicojouleError, ValueError):
    """Unknown or malformed number-format name, or a format applied where it cannot be."""


class ConfigError(PicojouleError, ValueError):
    """A recipe, config file or option that cannot be used as written."""


class ShapeError(PicojouleError, ValueError):
    """A tensor shape a transformation cannot serve (e.g. a block size that does not divide)."""


def nearest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """'did you mean' helper: the `n` closest of `choices` to `word`, comma separated
    ("none close" when none is; messages use `did_you_mean`, which then says nothing)."""
    found = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.4)
    return ", ".join(found) if found else "none close"


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: x, y?)' naming the `n` closest `choices` to `word`; '' when none is
    close (a message that already lists the valid names needs no "none close")."""
    found = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.4)
    return f" (did you mean: {', '.join(found)}?)" if found else ""


def suggest(word: str, choices: Iterable[str], n: int = 3, limit: int = 12) -> str:
    """Like `did_you_mean`, for a message that does not list the valid names itself: with
    none close, ' (valid: a, b, ...)' lists the first `limit` of them instead."""
    names = list(choices)
    hint = did_you_mean(word, names, n)
    if hint or not names:
        return hint
    more = ", ..." if len(names) > limit else ""
    return f" (valid: {', '.join(names[:limit])}{more})"
