"""Error types. Every error a user can cause is a `PicojouleError` whose message names the
problem and the fix; the CLI prints it as one line instead of a traceback."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["PicojouleError", "FormatError", "ConfigError", "ShapeError", "nearest"]


class PicojouleError(Exception):
    """Base class of every error picojoule raises on bad input."""


class FormatError(PicojouleError, ValueError):
    """Unknown or malformed number-format name, or a format applied where it cannot be."""


class ConfigError(PicojouleError, ValueError):
    """A recipe, config file or option that cannot be used as written."""


class ShapeError(PicojouleError, ValueError):
    """A tensor shape a transformation cannot serve (e.g. a block size that does not divide)."""


def nearest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """'did you mean' helper: the `n` closest of `choices` to `word`, comma separated."""
    found = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.4)
    return ", ".join(found) if found else "none close"
