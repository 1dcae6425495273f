"""Sparsity patterns as data: `"2:4"`, `"unstructured:0.5"`, `"block:4x4:0.5"`, `"channel:0.5"`.

Public: `Pattern`, `parse_pattern(text)`.

A pattern says which weights a mask keeps; it never says how the mask is stored (that is
`layouts`) or which kernel runs it (that is `kernels`). Densities are the fraction KEPT
(0.5 = half the weights are non-zero), so `2:4` has density 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picojoule.errors import ConfigError

__all__ = ["Pattern", "PatternKind", "parse_pattern"]

PatternKind = Literal["nm", "unstructured", "block", "channel"]

_EXAMPLES = '"2:4", "1:4", "4:8", "unstructured:0.5", "block:4x4:0.5", "channel:0.5"'


@dataclass(frozen=True, kw_only=True)
class Pattern:
    """One sparsity pattern.

    kind "nm":           keep the `n` largest of every `m` consecutive weights along the
                         reduction dim.
    kind "unstructured": keep the largest `density` fraction of the whole tensor.
    kind "block":        keep the largest `density` fraction of `block` = (rows, cols) tiles of the
                         [out, reduction] matrix, ranked by tile L1 norm.
    kind "channel":      keep the largest `density` fraction of input channels (reduction slices).
    """

    kind: PatternKind
    n: int = 0
    m: int = 0
    density: float = 1.0
    block: tuple[int, int] = (1, 1)

    def __post_init__(self) -> None:
        if self.kind == "nm":
            if self.m < 1 or self.n < 1:
                raise ConfigError(f"N:M pattern needs positive N and M, got {self.n}:{self.m}")
            if self.n >= self.m:
                raise ConfigError(
                    f"N:M pattern {self.n}:{self.m} keeps every weight (N >= M); "
                    "use N < M, e.g. 2:4 or 1:4"
                )
            object.__setattr__(self, "density", self.n / self.m)
        elif not 0.0 < self.density <= 1.0:
            raise ConfigError(
                f"{self.kind} density must be in (0, 1] (the fraction kept), got {self.density}"
            )
        if self.kind == "block" and (self.block[0] < 1 or self.block[1] < 1):
            raise ConfigError(f"block shape must be positive, got {self.block[0]}x{self.block[1]}")

    @property
    def name(self) -> str:
        """The canonical text that `parse_pattern` reads back to an equal Pattern."""
        if self.kind == "nm":
            return f"{self.n}:{self.m}"
        if self.kind == "block":
            return f"block:{self.block[0]}x{self.block[1]}:{self.density:g}"
        return f"{self.kind}:{self.density:g}"

    def __str__(self) -> str:
        return self.name


def _density(text: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"bad density {text!r} in pattern {whole!r}: give the kept fraction, e.g. 0.5"
        ) from None
    return value


def _int(text: str, whole: str) -> int:
    if not text.strip().isdigit():
        raise ConfigError(f"bad integer {text!r} in pattern {whole!r}; examples: {_EXAMPLES}")
    return int(text)


def parse_pattern(text: str) -> Pattern:
    """Parse a pattern string; raises `ConfigError` naming the fix on anything malformed."""
    whole = text
    parts = [p.strip() for p in text.strip().lower().split(":")]
    head = parts[0]
    if len(parts) == 2 and head.isdigit():
        return Pattern(kind="nm", n=_int(parts[0], whole), m=_int(parts[1], whole))
    if head in ("unstructured", "channel") and len(parts) == 2:
        return Pattern(kind=head, density=_density(parts[1], whole))
    if head == "block" and len(parts) == 3:
        dims = parts[1].split("x")
        if len(dims) != 2:
            raise ConfigError(f"block shape in {whole!r} must look like 4x4")
        block = (_int(dims[0], whole), _int(dims[1], whole))
        return Pattern(kind="block", block=block, density=_density(parts[2], whole))
    raise ConfigError(f"unknown sparsity pattern {whole!r}; examples: {_EXAMPLES}")
