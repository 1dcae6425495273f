"""Scaled formats: element format x granularity x scale.

Conventions (every scaled format):
- The LAST dimension is the reduction dimension; blocks and vectors run along it. "Per channel"
  means one scale per row, i.e. per index of all leading dimensions (a weight [out, in] gets one
  scale per output channel; an activation [tokens, features] one per token, the only
  activation scaling a matmul can factor out).
- A last dimension that the block size does not divide is zero-padded to a whole block: the
  ragged block's scale comes from its real elements only (zeros never raise an amax).
- A block holding NaN or +-inf gets a NaN scale, so the whole block decodes as NaN (OCP MX v1.0
  section 6.3 does the same for NaN; we extend it to inf since no finite scale can hold it).

Families and their exact arithmetic (the GPU kernels bit-match these):
- plain (`int8/channel`, `e4m3/tensor`, `e2m1/block16`): fp32 scale = amax / element.max,
  y = Q(x / scale) * scale.
- MX (OCP Microscaling Formats v1.0, section 6.3): blocks of 32, E8M0 scale 2^X with
  X = floor(log2(amax)) - emax_elem (the spec; `scale_rule` "ceil" and "round" offered because
  torchao, ModelOpt and microxcaling disagree - see docs/formats.md), clamped to [-127, 127];
  elements always saturate (`saturate=False` is refused). y = Q(x / 2^X) * 2^X. MXINT8's element
  is a 1.6 fixed-point number (emax_elem 0): we hold it as an integer q = P * 2^6, so the
  effective exponent is X - 6, in [-133, 121] - the clamp comes before the implicit 2^-6.
- NVFP4 (NVIDIA Blackwell): E2M1 elements, E4M3 scale per 16 elements, fp32 tensor scale
  s_t = amax / (6 * 448). blk = E4M3(amax_blk / (6 * s_t)); q = E2M1(x / (blk * s_t));
  y = (q * blk) * s_t.
- VS-Quant (Dai et al., MLSys 2021): INT-N with one scale per V-element vector,
  s = amax_vec / qmax. Two-level (`_s<M>`, paper Eq. 7): s = s_q * gamma with gamma one fp32
  per row (weights) or per tensor (activations), gamma = max(s) / (2^M - 1), and
  s_q = clamp(round(s / gamma), 1, 2^M - 1) an M-bit unsigned integer. Elements are rounded with
  the stored scale (`order="reround"`, default: what hardware storing s_q must do) or, as the
  paper's text literally orders it, with the unquantized s (`order="paper"`).
  y = (q * s_q) * gamma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from picojoule.errors import FormatError, ShapeError
from picojoule.formats.spec import FloatFormat, IntFormat, LNSFormat, Rounding

if TYPE_CHECKING:  # torch loads on the first quantize: listing formats needs only the data
    import torch

__all__ = [
    "PerTensor",
    "PerChannel",
    "PerBlock",
    "Granularity",
    "ScaledFormat",
    "ScaledKind",
]

ElementFormat = FloatFormat | IntFormat | LNSFormat
ScaledKind = Literal["plain", "mx", "nvfp4", "vsq"]
Coarse = Literal["row", "tensor"]


@dataclass(frozen=True)
class PerTensor:
    """One scale for the whole tensor."""


@dataclass(frozen=True)
class PerChannel:
    """One scale per row (every index of the leading dimensions)."""


@dataclass(frozen=True)
class PerBlock:
    """One scale per `size` consecutive elements of the last (reduction) dimension."""

    size: int


Granularity = PerTensor | PerChannel | PerBlock

_E4M3 = FloatFormat(name="float8_e4m3fn", ebits=4, mbits=3, bias=7, inf=False, nan="all_ones")
_E8M0_RANGE = (-127, 127)


def _pow2(e: torch.Tensor) -> torch.Tensor:
    """Exact float32 2^e for integer e in [-149, 127] (built in float64, where all are normal;
    below -126 the float32 is subnormal, still exact)."""
    import torch

    return ((e.to(torch.int64) + 1023) << 52).view(torch.float64).to(torch.float32)


def _blocks(x: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    """View x [..., K] as [..., K/size, size], zero-padding K up to a whole block."""
    import torch

    k = x.shape[-1]
    pad = (-k) % size
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(*x.shape[:-1], (k + pad) // size, size), pad


def _unblock(y: torch.Tensor, shape: torch.Size, pad: int) -> torch.Tensor:
    y = y.reshape(*shape[:-1], shape[-1] + pad)
    return y[..., : shape[-1]] if pad else y


def _amax(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """max |x| (over `dim`, kept) without a full-size |x| temporary; NaN where non-finite."""
    import torch

    if dim is None:
        hi, lo = x.amax(), x.amin()
    else:
        hi, lo = x.amax(dim=dim, keepdim=True), x.amin(dim=dim, keepdim=True)
    m = torch.maximum(hi, -lo)
    return torch.where(torch.isfinite(m), m, float("nan"))


@dataclass(frozen=True, kw_only=True)
class ScaledFormat:
    """Element format x granularity x scale; see the module docstring for the arithmetic."""

    name: str
    kind: ScaledKind
    element: ElementFormat
    granularity: Granularity
    scale: FloatFormat | None = None  # block-scale format (E8M0, E4M3); None: fp32
    scale_bits: int = 0  # VS-Quant two-level: bits of the per-vector integer scale (0: fp32)
    scale_rule: Literal["floor", "ceil", "round"] = "floor"
    order: Literal["reround", "paper"] = "reround"
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def block(self) -> int | None:
        return self.granularity.size if isinstance(self.granularity, PerBlock) else None

    @property
    def bits(self) -> int:
        return self.element.bits

    @property
    def bits_per_element(self) -> float:
        """Element bits plus block-scale bits amortized over the block. Per-tensor and
        per-channel scales amortize over a whole row or tensor and count as 0 here;
        `storage_bits(shape)` counts everything."""
        if self.block is None:
            return float(self.element.bits)
        if self.kind == "vsq" and self.scale_bits:
            return self.element.bits + self.scale_bits / self.block
        sbits = self.scale.bits if self.scale is not None else 32
        return self.element.bits + sbits / self.block

    @property
    def max(self) -> float:
        return self.element.max

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        """Exact bits to store a tensor of `shape`: every element and every scale (a ragged
        last block stores its real elements and one scale; zero padding is not stored)."""
        k = shape[-1] if shape else 1
        rows = math.prod(shape[:-1]) if len(shape) > 1 else 1
        n = rows * k
        total = n * self.element.bits
        if self.block is not None:
            nblocks = rows * math.ceil(k / self.block)
            total += nblocks * (
                self.scale_bits
                if self.kind == "vsq" and self.scale_bits
                else (self.scale.bits if self.scale is not None else 32)
            )
            if self.kind == "nvfp4":
                total += 32
            if self.kind == "vsq" and self.scale_bits:
                total += rows * 32
        elif isinstance(self.granularity, PerChannel):
            total += rows * 32
        else:
            total += 32
        return total

    def quantize(
        self,
        x: torch.Tensor,
        *,
        rounding: Rounding = "nearest_even",
        saturate: bool = True,
        generator: torch.Generator | None = None,
        amax: torch.Tensor | float | None = None,
        coarse: Coarse = "row",
    ) -> torch.Tensor:
        """Fake-quantize `x` (same shape and dtype).

        amax: a calibrated (static) amax for the coarse scale - per tensor (scalar) or per row
            (`[rows]`) for plain per-tensor/per-channel formats, per tensor for NVFP4, per row
            or tensor for two-level VS-Quant. Block scales are always computed from the data.
        coarse: granularity of VS-Quant's second-level scale: "row" for weights (per output
            channel, as in the paper), "tensor" for activations.
        """
        import torch

        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise FormatError(f"{self.name}: quantize takes a floating-point tensor, got {got}")
        if x.numel() == 0:
            return x.clone()
        kw = {"rounding": rounding, "generator": generator}
        x32 = (x.float() if x.dtype != torch.float64 else x).detach()
        if self.kind == "plain" and not isinstance(self.granularity, PerBlock):
            y = self._plain_coarse(x32, amax, saturate, kw)
        else:
            y = self._blockwise(x32, amax, coarse, saturate, kw)
        return y.to(x.dtype)

    # --- per-tensor / per-channel (fp32 scale) ----------------------------------------------

    def _plain_coarse(self, x: torch.Tensor, amax, saturate: bool, kw: dict) -> torch.Tensor:
        import torch

        rows = x.reshape(-1, x.shape[-1]) if x.dim() > 0 else x.reshape(1, 1)
        if isinstance(self.granularity, PerChannel):
            m = _amax(rows, -1) if amax is None else _as_rows(amax, rows.shape[0], self.name)
        else:
            m = _amax(x) if amax is None else torch.as_tensor(amax, dtype=x.dtype)
            m = m.reshape(1, 1).expand(rows.shape[0], 1)
        s = m / self.element.max
        s = torch.where(s == 0, 1.0, s)
        out = _map_rows(rows, [s], lambda r, sc: self._elem(r / sc[0], kw, saturate).mul_(sc[0]))
        return out.view(x.shape)

    # --- block families: MX, NVFP4, VS-Quant, plain per-block --------------------------------

    def _blockwise(self, x, amax, coarse: Coarse, saturate: bool, kw: dict) -> torch.Tensor:
        """Scales for every block first (small tensors, one vectorized pass), then the
        elementwise y = Q(x / d) * m1 * m2 in cache-sized chunks."""
        import torch

        size = self.granularity.size  # type: ignore[union-attr]
        if x.dim() == 0:  # a scalar is a one-element row
            return self._blockwise(x.reshape(1), amax, coarse, saturate, kw).reshape(())
        xb, pad = _blocks(x, size)
        m = _block_amax(xb.reshape(-1, size)).view(*xb.shape[:-1], 1)  # [..., nb, 1]
        if self.kind == "mx":
            self._no_amax(amax)
            if not saturate:
                raise FormatError(
                    f"{self.name}: OCP MX v1.0 elements always saturate; saturate=False does "
                    "not apply (the floor scale rule lets a block's top value pass the "
                    "element max)"
                )
            s = torch.where(torch.isnan(m), float("nan"), _pow2(self._shared_exponent(m)))
            d, m1, m2 = s, s, None
        elif self.kind == "plain":
            self._no_amax(amax)
            s = m / self.element.max
            d = m1 = torch.where(s == 0, 1.0, s)
            m2 = None
        elif self.kind == "nvfp4":
            # the tensor amax is the max of the block amaxes: no second pass over x
            m_t = m.amax() if amax is None else torch.as_tensor(amax, dtype=torch.float32)
            s_t = m_t / (6.0 * 448.0)
            s_t = torch.where(s_t == 0, 1.0, s_t).to(torch.float32)
            blk = _E4M3.quantize(m / (6.0 * s_t))
            eff = blk * s_t
            # eff == 0 means blk == 0: y is 0 whatever q is (q is finite: elements saturate).
            d, m1, m2 = torch.where(eff == 0, 1.0, eff), blk, s_t
        else:
            qmax = float(self.element.qmax)  # type: ignore[union-attr]
            s = m / qmax
            if not self.scale_bits:
                self._no_amax(amax)
                d, m1, m2 = torch.where(s == 0, 1.0, s), s, None
            else:
                gamma = self._vsq_gamma(xb, m, amax, coarse)
                levels = float((1 << self.scale_bits) - 1)
                s_q = torch.round(s / gamma).clamp_(1.0, levels)
                s_q = torch.where(torch.isnan(s), float("nan"), s_q)
                d = s_q * gamma if self.order == "reround" else torch.where(s == 0, 1.0, s)
                m1, m2 = s_q, gamma
        shape = (*xb.shape[:-1], 1)
        per_block = [t.expand(shape).reshape(-1, 1) for t in (d, m1, m2) if t is not None]

        def fn(b: torch.Tensor, sc: list[torch.Tensor]) -> torch.Tensor:
            y = self._elem(b / sc[0], kw, saturate).mul_(sc[1])
            return y.mul_(sc[2]) if len(sc) == 3 else y

        out = _map_rows(xb.reshape(-1, size), per_block, fn)
        return _unblock(out.view(xb.shape), x.shape, pad)

    def _no_amax(self, amax: object) -> None:
        if amax is not None:
            raise FormatError(f"{self.name}: block scales come from the data; amax= does not apply")

    def _elem(self, t: torch.Tensor, kw: dict, saturate: bool = True) -> torch.Tensor:
        return self.element.quantize(t, saturate=saturate, **kw)

    def _shared_exponent(self, amax: torch.Tensor) -> torch.Tensor:
        """Exponent of each block's effective scale: the E8M0 X (OCP MX v1.0 6.3:
        floor(log2 amax) - emax_elem, clamped to [-127, 127]) minus the element's implicit
        fraction bits. An integer element stands for the spec's fixed-point one (MXINT8: 1.6,
        emax_elem 0, q = P * 2^6): the clamp applies to X, before the implicit 2^-6."""
        import torch

        el = self.element
        if isinstance(el, FloatFormat):
            emax_elem, frac = el.emax, 0
        else:  # q in [-qmax, qmax] is the fixed-point value q * 2^-frac, |value| < 2
            emax_elem, frac = 0, math.floor(math.log2(el.max))
        mant, ex = torch.frexp(torch.nan_to_num(amax, nan=1.0))
        floor_log2 = ex.to(torch.int64) - 1  # amax = mant * 2^ex, mant in [0.5, 1)
        x = floor_log2 - emax_elem
        if self.scale_rule == "ceil":  # smallest X with amax / 2^(X - frac) <= max: never clips
            x = torch.where(amax / _pow2(x.clamp(*_E8M0_RANGE) - frac) > el.max, x + 1, x)
        elif self.scale_rule == "round":  # amax rounded to the nearest power of two first
            x = torch.where(mant >= 0.75, x + 1, x)
        x = torch.where(amax == 0, _E8M0_RANGE[0], x)
        return x.clamp(*_E8M0_RANGE) - frac

    def _vsq_gamma(self, xb: torch.Tensor, m: torch.Tensor, amax, coarse: Coarse) -> torch.Tensor:
        """VS-Quant's second-level fp32 scale, broadcastable against the blocks' amax `m`."""
        import torch

        qmax = float(self.element.qmax)  # type: ignore[union-attr]
        levels = float((1 << self.scale_bits) - 1)
        if amax is not None:
            mt = torch.as_tensor(amax, dtype=torch.float32)
            if coarse == "row" and mt.dim() > 0:
                rows = xb[..., 0, 0].numel()
                mt = _as_rows(mt, rows, self.name).reshape(*xb.shape[:-2], 1, 1)
        elif coarse == "row":
            mt = m.amax(dim=-2, keepdim=True)
        else:
            mt = m.amax()
        # max over vectors of (amax / qmax) == (max amax) / qmax: division is monotonic.
        gamma = (mt / qmax) / levels
        return torch.where(gamma == 0, 1.0, gamma)


def _block_amax(blocks: torch.Tensor) -> torch.Tensor:
    """max |x| of every row of [n, size] blocks (NaN where non-finite), in cache-sized chunks:
    torch's reduction over a short inner dim is slow, |x| of a hot chunk is cheap."""
    import torch

    from picojoule.formats.cast import CHUNK

    n, size = blocks.shape
    out = torch.empty(n, 1, dtype=blocks.dtype, device=blocks.device)
    step = max(1, CHUNK // size)
    for i in range(0, n, step):
        torch.amax(blocks[i : i + step].abs(), dim=-1, keepdim=True, out=out[i : i + step])
    return torch.where(torch.isfinite(out), out, float("nan"))


def _map_rows(rows: torch.Tensor, per_row: list[torch.Tensor], fn) -> torch.Tensor:
    """Apply `fn(rows_chunk, [per_row_chunk...])` over cache-sized chunks of a 2-D tensor.

    Rows longer than a chunk are split along their length (per-row values are shared)."""
    import torch

    from picojoule.formats.cast import CHUNK

    n, k = rows.shape
    if n * k <= CHUNK:
        return fn(rows, per_row)
    out = torch.empty_like(rows)
    if k >= CHUNK:
        for i in range(n):
            pr = [t[i : i + 1] for t in per_row]
            for j in range(0, k, CHUNK):
                out[i : i + 1, j : j + CHUNK] = fn(rows[i : i + 1, j : j + CHUNK], pr)
        return out
    step = max(1, CHUNK // k)
    for i in range(0, n, step):
        out[i : i + step] = fn(rows[i : i + step], [t[i : i + step] for t in per_row])
    return out


def _as_rows(amax, rows: int, name: str) -> torch.Tensor:
    import torch

    a = torch.as_tensor(amax, dtype=torch.float32)
    if a.dim() == 0:
        return a.expand(rows, 1)
    if a.numel() != rows:
        raise ShapeError(f"{name}: per-channel amax has {a.numel()} values for {rows} rows")
    return a.reshape(rows, 1)
