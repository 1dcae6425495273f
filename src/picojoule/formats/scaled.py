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

Fixed scales (`fit_scales` / `quantize_fixed`): the same arithmetic split in two. `fit_scales(x)`
holds each block's divisor d and multipliers m1, m2 (`FixedScales`); `quantize_fixed` then
computes y = Q(x / d) * m1 (* m2) for any column range of a tensor laid out like `x`, so an
algorithm that changes the columns after the scales were chosen (GPTQ, `picojoule.quant.gptq`)
quantizes each column with its group's scales. `quantize_fixed(x, fit_scales(x))` is
bit-identical to `quantize(x)` for every deterministic rounding.
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
    "FixedScales",
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


@dataclass(frozen=True, eq=False)
class FixedScales:
    """A scaled format's scales for one 2-D layout, fit once (`ScaledFormat.fit_scales`) and
    applied to any column range later (`ScaledFormat.quantize_fixed`): y = Q(x / divisor) *
    mult (* mult2), exactly as `ScaledFormat.quantize` computes it.

    divisor, mult: [rows, nblocks] tensors (the per-block values of `ScaledFormat._scales`; for
        per-channel and per-tensor formats nblocks is 1 and the divisor is the fp32 scale).
    mult2: [rows, nblocks] second multiplier (NVFP4's tensor scale, VS-Quant's gamma) or None.
    block: elements per block along the last dimension (the whole row, `cols`, for per-channel
        and per-tensor formats). cols: the last-dimension size the scales were fit on.
    rows are every index of the leading dimensions, flattened (a weight [out, in]: out rows).
    """

    divisor: torch.Tensor
    mult: torch.Tensor
    mult2: torch.Tensor | None
    block: int
    cols: int
    format: str

    @property
    def rows(self) -> int:
        return int(self.divisor.shape[0])

    @property
    def nblocks(self) -> int:
        return int(self.divisor.shape[1])


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
        x32 = self._work(x, "quantize")
        if x.numel() == 0:
            return x.clone()
        kw = {"rounding": rounding, "generator": generator}
        if self.kind == "plain" and not isinstance(self.granularity, PerBlock):
            y = self._plain_coarse(x32, amax, saturate, kw)
        else:
            y = self._blockwise(x32, amax, coarse, saturate, kw)
        return y.to(x.dtype)

    def _work(self, x: torch.Tensor, what: str) -> torch.Tensor:
        """x detached in the working dtype (float64 stays, everything else float32)."""
        import torch

        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise FormatError(f"{self.name}: {what} takes a floating-point tensor, got {got}")
        return (x.float() if x.dtype != torch.float64 else x).detach()

    # --- fixed scales: fit once, quantize any column range later ----------------------------

    def fit_scales(
        self,
        x: torch.Tensor,
        *,
        amax: torch.Tensor | float | None = None,
        coarse: Coarse = "row",
    ) -> FixedScales:
        """The scales `quantize(x, amax=amax, coarse=coarse)` would use, held for
        `quantize_fixed`. x: [..., k] (leading dimensions are rows); amax and coarse as in
        `quantize`. Held in the dtypes `quantize` computes them in (x float64: mostly float64)."""
        x32 = self._work(x, "fit_scales")
        x2 = x32.reshape(-1, x32.shape[-1]) if x32.dim() > 0 else x32.reshape(1, 1)
        rows, k = x2.shape
        if x2.numel() == 0:
            raise ShapeError(f"{self.name}: fit_scales needs a non-empty tensor, got {x.shape}")
        if self.kind == "plain" and not isinstance(self.granularity, PerBlock):
            s = self._coarse_scale(x2, amax)
            return FixedScales(
                divisor=s, mult=s, mult2=None, block=max(k, 1), cols=k, format=self.name
            )
        size = self.granularity.size  # type: ignore[union-attr]
        xb, _ = _blocks(x2, size)  # [rows, nb, size]
        m = _block_amax(xb.reshape(-1, size), (self.name, "fit")).view(*xb.shape[:-1], 1)
        d, m1, m2 = self._scales(xb, m, amax, coarse, True)
        nb = xb.shape[1]

        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.expand(rows, nb, 1).reshape(rows, nb)

        return FixedScales(
            divisor=flat(d),
            mult=flat(m1),
            mult2=None if m2 is None else flat(m2),
            block=size,
            cols=k,
            format=self.name,
        )

    def quantize_fixed(
        self,
        x: torch.Tensor,
        scales: FixedScales,
        *,
        cols: slice | int | None = None,
        rounding: Rounding = "nearest_even",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fake-quantize `x` with held scales: y = Q(x / d) * m1 (* m2), elements saturating,
        same shape and dtype as x.

        x: [..., c] laid out like the tensor the scales were fit on (same rows), holding the
            columns `cols` of it: None (all `scales.cols` columns), a start column (x holds
            columns start .. start + c), or a `slice(start, stop)` (step 1, stop - start == c).
            Column j uses the scales of block j // scales.block.
        `quantize_fixed(x, fit_scales(x))` equals `quantize(x)` bit for bit (stochastic
        rounding draws its random numbers in another order, so only in distribution).
        """
        import torch

        x32 = self._work(x, "quantize_fixed")
        if scales.format != self.name:
            raise FormatError(
                f"{self.name}: these scales were fit for {scales.format}; fit them with "
                f"{self.name}.fit_scales"
            )
        x2 = x32.reshape(-1, x32.shape[-1]) if x32.dim() > 0 else x32.reshape(1, 1)
        rows, c = x2.shape
        start = self._fixed_start(cols, c, scales)
        if rows != scales.rows:
            raise ShapeError(
                f"{self.name}: x has {rows} rows, the scales {scales.rows}; quantize_fixed "
                "takes the rows the scales were fit on"
            )
        if x.numel() == 0:
            return x.clone()
        held = [t for t in (scales.divisor, scales.mult, scales.mult2) if t is not None]
        first, last = start // scales.block, (start + c - 1) // scales.block
        if first == last:  # one block (a GPTQ column): broadcast, no gather
            pick = [t[:, first : first + 1] for t in held]
        else:
            idx = torch.arange(start, start + c, device=x2.device) // scales.block
            pick = [t[:, idx] for t in held]
        kw = {"rounding": rounding, "generator": generator}
        y = self._elem(x2 / pick[0], kw).mul_(pick[1])
        if len(pick) == 3:
            y = y.mul_(pick[2])
        return y.view(x32.shape).to(x.dtype)

    def _fixed_start(self, cols: slice | int | None, c: int, scales: FixedScales) -> int:
        """First column of x in the scales' layout; ShapeError naming the fix if out of range."""
        if cols is None:
            start, stop = 0, scales.cols
        elif isinstance(cols, slice):
            if cols.step not in (None, 1):
                raise ShapeError(f"{self.name}: quantize_fixed takes contiguous columns (step 1)")
            start = 0 if cols.start is None else int(cols.start)
            stop = start + c if cols.stop is None else int(cols.stop)
        else:
            start, stop = int(cols), int(cols) + c
        if stop - start != c or start < 0 or stop > scales.cols:
            raise ShapeError(
                f"{self.name}: x has {c} columns but cols={cols!r} selects [{start}, {stop}) of "
                f"the {scales.cols} the scales were fit on; pass the columns x holds"
            )
        return start

    # --- per-tensor / per-channel (fp32 scale) ----------------------------------------------

    def _coarse_scale(self, rows: torch.Tensor, amax) -> torch.Tensor:
        """fp32 scale [rows, 1] of a per-tensor / per-channel format (1 where amax is 0)."""
        import torch

        if isinstance(self.granularity, PerChannel):
            m = _amax(rows, -1) if amax is None else _as_rows(amax, rows.shape[0], self.name)
        else:
            m = _amax(rows) if amax is None else torch.as_tensor(amax, dtype=rows.dtype)
            m = m.reshape(1, 1).expand(rows.shape[0], 1)
        s = m / self.element.max
        return torch.where(s == 0, 1.0, s)

    def _plain_coarse(self, x: torch.Tensor, amax, saturate: bool, kw: dict) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]) if x.dim() > 0 else x.reshape(1, 1)
        s = self._coarse_scale(rows, amax)
        key = (self.name, kw["rounding"])
        out = _map_rows(
            rows, [s], lambda r, sc: self._elem(r / sc[0], kw, saturate).mul_(sc[0]), key
        )
        return out.view(x.shape)

    # --- block families: MX, NVFP4, VS-Quant, plain per-block --------------------------------

    def _blockwise(self, x, amax, coarse: Coarse, saturate: bool, kw: dict) -> torch.Tensor:
        """Scales for every block first (small tensors, one vectorized pass), then the
        elementwise y = Q(x / d) * m1 * m2 in cache-sized chunks."""

        size = self.granularity.size  # type: ignore[union-attr]
        if x.dim() == 0:  # a scalar is a one-element row
            return self._blockwise(x.reshape(1), amax, coarse, saturate, kw).reshape(())
        from picojoule.formats.cast import chunk_loop

        xb, pad = _blocks(x, size)
        key = (self.name, kw["rounding"])
        m = _block_amax(xb.reshape(-1, size), key).view(*xb.shape[:-1], 1)  # [..., nb, 1]
        # ~15 ops over all block scales at once: a thread count is chosen for them too
        scales: list[torch.Tensor | None] = []

        def scale_pass(i: int, j: int) -> int:
            scales.extend(self._scales(xb, m, amax, coarse, saturate))
            return m.numel()

        chunk_loop(1, 1, scale_pass, key=(key, "scales"), cpu=x.device.type == "cpu")
        shape = (*xb.shape[:-1], 1)
        per_block = [t.expand(shape).reshape(-1, 1) for t in scales if t is not None]

        def fn(b: torch.Tensor, sc: list[torch.Tensor]) -> torch.Tensor:
            y = self._elem(b / sc[0], kw, saturate).mul_(sc[1])
            return y.mul_(sc[2]) if len(sc) == 3 else y

        out = _map_rows(xb.reshape(-1, size), per_block, fn, key)
        return _unblock(out.view(xb.shape), x.shape, pad)

    def _scales(self, xb, m, amax, coarse: Coarse, saturate: bool) -> tuple:
        """(divisor d, multipliers m1, m2 or None) per block, from the blocks' amax `m`."""
        import torch

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
        return d, m1, m2

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


def _block_amax(blocks: torch.Tensor, key: object) -> torch.Tensor:
    """max |x| of every row of [n, size] blocks (NaN where non-finite), in cache-sized chunks:
    torch's reduction over a short inner dim is slow, |x| of a hot chunk is cheap."""
    import torch

    from picojoule.formats.cast import CHUNK, chunk_loop

    n, size = blocks.shape
    out = torch.empty(n, 1, dtype=blocks.dtype, device=blocks.device)

    def body(i: int, j: int) -> int:
        m = torch.amax(blocks[i:j].abs(), dim=-1, keepdim=True)
        out[i:j] = torch.where(torch.isfinite(m), m, float("nan"))
        return (j - i) * size

    cpu = blocks.device.type == "cpu"
    chunk_loop(n, max(1, CHUNK // size), body, key=(key, "amax"), cpu=cpu)
    return out


def _map_rows(rows: torch.Tensor, per_row: list[torch.Tensor], fn, key: object) -> torch.Tensor:
    """Apply `fn(rows_chunk, [per_row_chunk...])` over cache-sized chunks of a 2-D tensor, each
    with the thread count `cast.chunk_loop` picks for `key`.

    Rows longer than a chunk are split along their length (per-row values are shared)."""
    import torch

    from picojoule.formats.cast import CHUNK, chunk_loop

    n, k = rows.shape
    cpu = rows.device.type == "cpu"
    if n * k <= CHUNK:  # one chunk: no output buffer to copy into
        res = [rows]

        def one(i: int, j: int) -> int:
            res[0] = fn(rows, per_row)
            return n * k

        chunk_loop(1, 1, one, key=key, cpu=cpu)
        return res[0]
    out = torch.empty_like(rows)
    if k >= CHUNK:  # items: (row, column chunk) pairs
        cols = -(-k // CHUNK)

        def part(i: int, _: int) -> int:
            r, c = divmod(i, cols)
            sl = slice(c * CHUNK, min((c + 1) * CHUNK, k))
            out[r : r + 1, sl] = fn(rows[r : r + 1, sl], [t[r : r + 1] for t in per_row])
            return sl.stop - sl.start

        chunk_loop(n * cols, 1, part, key=key, cpu=cpu)
        return out

    def body(i: int, j: int) -> int:
        out[i:j] = fn(rows[i:j], [t[i:j] for t in per_row])
        return (j - i) * k

    chunk_loop(n, max(1, CHUNK // k), body, key=key, cpu=cpu)
    return out


def _as_rows(amax, rows: int, name: str) -> torch.Tensor:
    import torch

    a = torch.as_tensor(amax, dtype=torch.float32)
    if a.dim() == 0:
        return a.expand(rows, 1)
    if a.numel() != rows:
        raise ShapeError(f"{name}: per-channel amax has {a.numel()} values for {rows} rows")
    return a.reshape(rows, 1)
