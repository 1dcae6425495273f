"""Errors of the design-space exploration package; each names the problem and the fix."""

from __future__ import annotations

from picojoule.errors import ConfigError, PicojouleError

__all__ = ["SpaceError", "StoreError", "BackendError", "InfeasibleError"]


class SpaceError(ConfigError):
    """A design-space file that is empty, contradictory or names unknown parameters."""


class StoreError(PicojouleError):
    """A results database that is corrupt, foreign, or belongs to another design space.

    The file is never modified when this is raised."""


class BackendError(PicojouleError):
    """An execution backend that cannot run: ray missing, or a cluster that does not answer."""


class InfeasibleError(PicojouleError):
    """No design of the space meets the constraints (area or power budget)."""
