"""Lazy package attributes (PEP 562): a package names what it exports and from which
submodule, and a submodule is imported on first use, so `import picojoule.<pkg>` stays cheap
(the CLI's start-up imports packages it may never use).

Public: `lazy_exports(package, exports) -> (__getattr__, __dir__)`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level `__getattr__` and `__dir__` for `package`, whose attribute `name` lives in
    submodule `exports[name]`. A name must not also be a submodule's name: importing that
    submodule would set the package attribute to the module and hide the export."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
