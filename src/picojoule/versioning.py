"""Code digests for result caches: a cached number is only as good as the code that made it.

`code_digest(packages)` hashes every source and data file of the named packages, so a cache
keyed by it invalidates itself when the model that produced its rows changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path

__all__ = ["code_digest"]

_SUFFIXES = {".py", ".yaml", ".csv", ".json", ".jsonl"}


@cache
def code_digest(packages: tuple[str, ...]) -> str:
    """12-hex-digit SHA-256 of the files of `packages` (sorted by package-relative path)."""
    h = hashlib.sha256()
    for pkg in sorted(packages):
        spec = importlib.util.find_spec(pkg)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).parent
        for path in sorted(root.rglob("*")):
            if path.suffix in _SUFFIXES and "__pycache__" not in path.parts:
                h.update(f"{pkg}/{path.relative_to(root)}".encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:12]
