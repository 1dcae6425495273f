"""One layer as a loop nest: the seven convolution loops plus groups.

Public: `Layer`, `Workload`, `DIMS`, `OPERANDS`.

A layer computes, for every group g (K and C count channels *per group*):

    O[n, g, k, p, q] += W[g, k, c, r, s] * I[n, g, c, p*stride_h + r, q*stride_w + s]

Linear layers are the case P=Q=R=S=1 (rows in N); a matmul `A @ B` puts the rows of A in N,
the reduction in C and the columns of B in K, with heads in G (attention's QK^T and AV).
The input extent is the padded one the loop nest touches. `padding` says how many of its rows
and columns on each side are the zero halo (top, bottom, left, right, counted within the touched
extent): the cost model generates those on chip instead of reading them from DRAM, as ZigZag
counts the unpadded input (an arch with `padding_reads` reads them). A layer without it counts
its whole touched extent as data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from picojoule.errors import ShapeError

__all__ = [
    "DIMS",
    "OPERANDS",
    "Operand",
    "Layer",
    "Workload",
    "touched_extent",
    "touched_halo",
    "n_of_m",
]

# Loop dimensions in a fixed order; every array indexed by "dim" in picojoule.hw uses it.
DIMS: tuple[str, ...] = ("N", "G", "K", "C", "P", "Q", "R", "S")
Operand = Literal["weights", "inputs", "outputs"]
OPERANDS: tuple[Operand, ...] = ("weights", "inputs", "outputs")
LayerKind = Literal["conv", "depthwise", "linear", "matmul"]


def n_of_m(pattern: str) -> tuple[int, int] | None:
    """(N, M) of an "N:M" structured-sparsity pattern; None for anything else."""
    parts = pattern.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def touched_extent(out_extent: int, kernel_extent: int, stride: int) -> int:
    """Distinct input rows touched by `out_extent` output rows of a `kernel_extent` window.

    Rows are h = p*stride + r. With stride <= kernel the windows overlap and the rows form one
    run of (P-1)*stride + R; with stride > kernel they are disjoint, P*R rows. The smaller of
    the two is exact in both cases.
    """
    return min((out_extent - 1) * stride + kernel_extent, out_extent * kernel_extent)


def touched_halo(
    before: int, after: int, in_extent: int, out_extent: int, kernel_extent: int, stride: int
) -> tuple[int, int]:
    """Zero-padding rows the loop nest touches before and after the real input along one axis.

    The touched rows run from -`before` (unpadded coordinates) over the span (P-1)*stride + R;
    a conv whose last window stops short of the padded end (stride not dividing the padded
    extent) touches less than `after` of the far padding. Both are clipped to what is declared.
    """
    span = (out_extent - 1) * stride + kernel_extent
    top = min(before, span)
    return top, max(0, min(after, span - top - in_extent))


@dataclass(frozen=True, kw_only=True)
class Layer:
    """A convolution-like layer: loop bounds, strides, operand formats and densities.

    Formats are picojoule format names (`picojoule.formats.get`); `bits` include amortized
    scale bits. Densities are the expected fraction of non-zero elements (1.0 = dense).
    """

    name: str
    kind: LayerKind = "conv"
    N: int = 1
    G: int = 1
    K: int = 1
    C: int = 1
    P: int = 1
    Q: int = 1
    R: int = 1
    S: int = 1
    stride_h: int = 1
    stride_w: int = 1
    weight_format: str = "int8"
    input_format: str = "int8"
    output_format: str = "int8"
    weight_density: float = 1.0
    input_density: float = 1.0
    # Non-zero fraction of the stored outputs (after the activation that follows, e.g. the
    # next layer's input density); only run-length coding to DRAM reads it
    output_density: float = 1.0
    weight_pattern: str = ""  # the sparsity pattern that pruned the weights ("2:4"), if any
    repeat: int = 1
    # Zero halo within the touched input (top, bottom, left, right); see the module docstring.
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    def __post_init__(self) -> None:
        for dim in (*DIMS, "stride_h", "stride_w", "repeat"):
            value = getattr(self, dim)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ShapeError(f"layer {self.name!r}: {dim}={value!r} must be a positive integer")
        pad = self.padding
        if (
            not isinstance(pad, tuple)
            or len(pad) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pad)
        ):
            raise ShapeError(
                f"layer {self.name!r}: padding={pad!r} must be 4 non-negative integers "
                "(top, bottom, left, right)"
            )
        h = touched_extent(self.P, self.R, self.stride_h)
        w = touched_extent(self.Q, self.S, self.stride_w)
        if pad[0] + pad[1] >= h or pad[2] + pad[3] >= w:
            raise ShapeError(
                f"layer {self.name!r}: padding={pad} leaves no real input in the touched "
                f"{h}x{w} window; give the halo rows the loop nest touches on each side"
            )
        for operand in ("weight_density", "input_density", "output_density"):
            value = getattr(self, operand)
            if not 0.0 < value <= 1.0:
                raise ShapeError(
                    f"layer {self.name!r}: {operand}={value} must lie in (0, 1]; "
                    "it is the fraction of non-zero elements"
                )

    @property
    def bounds(self) -> tuple[int, ...]:
        """Loop bounds in `DIMS` order."""
        return tuple(getattr(self, d) for d in DIMS)

    @property
    def strides(self) -> tuple[int, int]:
        return (self.stride_h, self.stride_w)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one pass (dense; `repeat` not included)."""
        n = 1
        for b in self.bounds:
            n *= b
        return n

    @property
    def weight_elems(self) -> int:
        return self.G * self.K * self.C * self.R * self.S

    @property
    def input_elems(self) -> int:
        h = touched_extent(self.P, self.R, self.stride_h)
        w = touched_extent(self.Q, self.S, self.stride_w)
        return self.N * self.G * self.C * h * w

    @property
    def output_elems(self) -> int:
        return self.N * self.G * self.K * self.P * self.Q

    def shape_key(self) -> tuple[object, ...]:
        """Everything the cost model reads: layers with equal keys have equal costs."""
        return (
            self.bounds,
            self.strides,
            self.weight_format,
            self.input_format,
            self.output_format,
            self.weight_density,
            self.input_density,
            self.output_density,
            self.weight_pattern,
            self.padding,
        )

    def describe(self) -> str:
        dims = " ".join(f"{d}{getattr(self, d)}" for d in DIMS if getattr(self, d) > 1)
        stride = f" stride{self.stride_h}" if self.strides != (1, 1) else ""
        pad = ""
        if any(self.padding):
            same = len(set(self.padding)) == 1
            pad = f" pad{self.padding[0]}" if same else " pad" + ",".join(map(str, self.padding))
        return f"{self.kind} {dims}{stride}{pad}"


@dataclass(frozen=True, kw_only=True)
class Workload:
    """An ordered tuple of layers; `repeat` on a layer counts identical copies.

    exposed: what `from_model` rewrote to see the model's hidden layers (its `Applied`
    records: Hugging Face `Conv1D` counted as `nn.Linear`, `nn.MultiheadAttention` as its
    projections and SDPA); `picojoule.quant.unfuse.describe_exposed` says it in one line.
    Not compared: a workload equals the one recorded from the already-exposed model."""

    name: str
    layers: tuple[Layer, ...]
    exposed: tuple[Any, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ShapeError(f"workload {self.name!r} has no convolution, linear or matmul layer")

    @property
    def macs(self) -> int:
        return sum(layer.macs * layer.repeat for layer in self.layers)

    def with_formats(
        self, *, weight_format: str, input_format: str, output_format: str | None = None
    ) -> Workload:
        """Same layers with every operand in the given formats (output defaults to input's)."""
        out = output_format or input_format
        layers = tuple(
            replace(
                layer,
                weight_format=weight_format,
                input_format=input_format,
                output_format=out,
            )
            for layer in self.layers
        )
        return Workload(name=self.name, layers=layers, exposed=self.exposed)
