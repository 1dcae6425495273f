"""Code digests for result caches: a cached number is only as good as the code that made it.

`code_digest(names)` hashes every source and data file of the named packages (or the one file
of a named module), so a cache keyed by it invalidates itself when the model that produced its
rows changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path

__all__ = ["code_digest"]

_SUFFIXES = {".py", ".yaml", ".csv", ".json", ".jsonl"}


@cache
def code_digest(names: tuple[str, ...]) -> str:
    """12-hex-digit SHA-256 of the files of the packages or modules in `names`."""
    h = hashlib.sha256()
    for name in sorted(names):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if spec.submodule_search_locations is None:  # a module: its own file
            files = [(name, origin)]
        else:
            root = origin.parent
            files = [
                (f"{name}/{p.relative_to(root)}", p)
                for p in sorted(root.rglob("*"))
                if p.suffix in _SUFFIXES and "__pycache__" not in p.parts
            ]
        for label, path in files:
            h.update(label.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]
