"""Where picojoule keeps files between runs (trained default model, study result cache)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """`$PICOJOULE_CACHE` or the platform's user cache dir."""
    env = os.environ.get("PICOJOULE_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("picojoule"))
