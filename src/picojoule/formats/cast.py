"""Reference casts: float in, float out, every output value exactly representable.

Plain torch, the single source of truth that every fast path (Triton, CUDA) is tested against.

Float rounding works on the magnitude `a`: with `q = 2^(max(e(a), emin) - mbits)` the spacing of
the target grid around `a` (a power of two built straight from the exponent bits), the result is
`round(a / q) * q`. Both the scaling and the product are exact, so the only rounding is the
integer rounding of `a / q` - `torch.round` is round-half-to-even, which gives IEEE RNE, ties
included, for normals and subnormals alike. The same `t = a / q` gives truncation and stochastic
rounding.

Work is done in cache-sized chunks so that the ~10 elementwise passes stay in L2 and the tensor
is read from and written to main memory once (benchmarks/bench_formats.py measures this).
`chunk_loop` picks the intra-op thread count per chunk (see `ChunkThreads`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import torch

from picojoule.errors import FormatError
from picojoule.formats.spec import FloatFormat, IntFormat, LNSFormat, Rounding

__all__ = ["quantize_float", "quantize_int", "quantize_lns", "CHUNK", "chunk_loop", "ChunkThreads"]

CHUNK = 1 << 16  # elements per chunk: 256 KiB of fp32, intermediates stay in L2
_ROUNDINGS = ("nearest_even", "stochastic", "toward_zero")


def _check(x: torch.Tensor, fmt_name: str, rounding: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise FormatError(f"{fmt_name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise FormatError(
            f"{fmt_name}: quantize takes a floating-point tensor, got {x.dtype}; "
            "convert first, e.g. x.float()"
        )
    if rounding not in _ROUNDINGS:
        raise FormatError(f"unknown rounding {rounding!r}; use one of {', '.join(_ROUNDINGS)}")


class ChunkThreads:
    """Intra-op threads for each chunk: torch's count or one, whichever runs chunks faster now.

    A chunk is ~10 small elementwise ops, and with several threads each op ends at a barrier
    that waits for its slowest thread. On an idle machine 2 threads nearly halve the time; when
    other processes keep the cores busy a descheduled thread stalls every barrier, and 2
    threads ran e4m3 26x slower than 1 while a clone (one op, one barrier) slowed 2.4x
    (BENCHMARKS.md). So chunks are timed (seconds per element, an exponential average per
    choice, shared by all calls in this thread) and run with the faster choice; the slower one
    is retried every `probe_every(ratio)` chunks, sparsely enough that a retry costs ~3% even
    when it is 25x slower, and soon enough that a change of load is noticed within a fraction of
    a second of fake-quant. Only the speed depends on the choice: the ops are elementwise or
    max-reductions, whose values do not depend on the thread count. A loop nested in another
    (a block's element cast inside a scaled format's chunk) runs with the outer choice.
    """

    DECAY = 0.25  # weight of the newest chunk in the average
    PROBE = 32  # retry the slower choice after PROBE * (its slowdown) chunks
    MAX_GAP = 4096

    def __init__(self) -> None:
        self.cost: dict[int, float] = {}  # threads -> seconds per element (average)
        self.since_probe = 0

    def choose(self, many: int) -> int:
        """Threads for the next chunk (`many`: torch's own count, > 1)."""
        for t in (many, 1):
            if t not in self.cost:
                return t
        best, other = (many, 1) if self.cost[many] <= self.cost[1] else (1, many)
        self.since_probe += 1
        if self.since_probe >= self.probe_every(self.cost[other] / self.cost[best]):
            self.since_probe = 0
            return other
        return best

    def probe_every(self, ratio: float) -> int:
        return min(self.MAX_GAP, max(self.PROBE, math.ceil(self.PROBE * ratio)))

    def record(self, threads: int, seconds: float, numel: int) -> None:
        per = seconds / numel
        old = self.cost.get(threads)
        self.cost[threads] = per if old is None else old + self.DECAY * (per - old)


ADAPT_THREADS = True  # False: every chunk uses torch's thread count (benchmarks compare both)
_LOCAL = threading.local()  # per Python thread: {key: ChunkThreads} and the loop depth


def chunk_loop(
    n: int, step: int, body: Callable[[int, int], int], *, key: object, cpu: bool = True
) -> None:
    """Call `body(start, stop)` for consecutive ranges of `n` items, `step` at a time; `body`
    returns the elements it processed. Each call runs with the intra-op thread count that the
    `ChunkThreads` of `key` (one per kind of work: a format and its rounding) picks; torch's
    count is restored afterwards. CPU only; a loop nested in another runs plainly."""
    many = torch.get_num_threads()
    depth = getattr(_LOCAL, "depth", 0)
    if not (ADAPT_THREADS and cpu and many > 1) or depth:
        for i in range(0, n, step):
            body(i, min(i + step, n))
        return
    policies = getattr(_LOCAL, "policies", None)
    if policies is None:
        policies = _LOCAL.policies = {}
    pol = policies.get(key) or policies.setdefault(key, ChunkThreads())
    _LOCAL.depth = depth + 1
    current = many
    try:
        for i in range(0, n, step):
            t = pol.choose(many)
            if t != current:
                torch.set_num_threads(t)
                current = t
            start = time.perf_counter()
            numel = body(i, min(i + step, n))
            if numel >= CHUNK // 2:  # small chunks time mostly Python overhead
                pol.record(t, time.perf_counter() - start, numel)
    finally:
        _LOCAL.depth = depth
        if current != many:
            torch.set_num_threads(many)


def _chunked(
    x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], key: object
) -> torch.Tensor:
    # Casts are values, not graph nodes: gradients go through picojoule.quant.ste.
    flat = x.detach().reshape(-1)
    n, cpu = flat.numel(), flat.device.type == "cpu"
    if n <= CHUNK:  # one chunk: no output buffer to copy into
        res = [flat]  # n == 0: returned as is

        def one(i: int, j: int) -> int:
            res[0] = fn(flat)
            return n

        chunk_loop(n, CHUNK, one, key=key, cpu=cpu)
        return res[0].view(x.shape)
    out = torch.empty_like(flat)

    def body(i: int, j: int) -> int:
        out[i:j] = fn(flat[i:j])
        return j - i

    chunk_loop(n, CHUNK, body, key=key, cpu=cpu)
    return out.view(x.shape)


def _round(t: torch.Tensor, rounding: str, generator: torch.Generator | None) -> torch.Tensor:
    """Round `t` to integer values (a new tensor). All three modes are symmetric under negation
    (half-to-even, truncation, and floor + [u < frac] stochastic rounding)."""
    if rounding == "nearest_even":
        return torch.round(t)
    if rounding == "toward_zero":
        return torch.trunc(t)
    # Stochastic: floor(t) + [u < frac(t)] is exactly unbiased: torch.rand draws multiples of
    # 2^-24 and frac(t) has at most 24 significant bits here.
    floor = torch.floor(t)
    u = torch.rand(t.shape, generator=generator, dtype=t.dtype, device=t.device)
    return floor.add_((u < t - floor).to(t.dtype))


def _work_dtype(x: torch.Tensor, fmt: FloatFormat) -> tuple[torch.dtype, torch.dtype, int, int]:
    """(float dtype, same-width int dtype, mantissa bits, bias) in which rounding is exact."""
    fits32 = fmt.emin - fmt.mbits >= -126 and fmt.emax <= 126 and fmt.mbits <= 22
    if x.dtype != torch.float64 and fits32:
        return torch.float32, torch.int32, 23, 127
    if fmt.emin - fmt.mbits >= -1022 and fmt.emax <= 1022 and fmt.mbits <= 51:
        return torch.float64, torch.int64, 52, 1023
    raise FormatError(f"{fmt.name}: range too wide to emulate in float64")


def quantize_float(
    x: torch.Tensor,
    fmt: FloatFormat,
    *,
    rounding: Rounding = "nearest_even",
    saturate: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round `x` onto `fmt`'s grid.

    Overflow (a finite value that rounds past `fmt.max`, or +-inf):
    `saturate=True` gives +-max (torch's float8 cast for e4m3fn, PTX `cvt.satfinite`, the OCP MX
    element conversion); `saturate=False` gives +-inf where the format has inf, else NaN
    (ml_dtypes' behaviour); under `rounding="toward_zero"` a finite value never overflows (it
    truncates to +-max, IEEE 754 section 7.4) and only +-inf does. Formats with neither inf nor
    NaN (e2m1, e3m2, e2m3) always saturate.
    NaN stays NaN (also for formats without a NaN code: the float container can hold it;
    `encode` refuses it). fnuz formats have no -0: negative values that round to zero give +0.
    Unsigned formats (e8m0) give NaN for negative inputs and for zero (which they cannot hold).
    """
    _check(x, fmt.name, rounding)
    in_dtype = x.dtype
    wdt, idt, wm, wbias = _work_dtype(x, fmt)
    e_lo, e_hi = fmt.emin + wbias, fmt.emax + wbias
    fmax, fmin = fmt.max, fmt.min_normal
    overflow_val = float("inf") if fmt.inf else float("nan")
    if saturate or (not fmt.inf and fmt.nan == "none"):
        overflow_val = fmax

    exp_mask = ((1 << (wdt.itemsize * 8 - 1 - wm)) - 1) << wm  # exponent field, in place
    lo_bits, hi_bits, m_bits = e_lo << wm, e_hi << wm, fmt.mbits << wm
    inv_base = (2 * wbias + fmt.mbits) << wm
    overflow = fmax if overflow_val == fmax else None

    def one(xc: torch.Tensor) -> torch.Tensor:
        xc = xc.to(wdt)
        # The exponent mask drops the sign bit: no |x| pass needed. Rounding modes are
        # symmetric, so rounding the signed t keeps the sign (and -0) for free.
        field = (xc.view(idt) & exp_mask).clamp_(lo_bits, hi_bits)  # exponent, in range
        q = (field - m_bits).view(wdt)  # grid spacing 2^(e - mbits)
        inv_q = torch.sub(inv_base, field).view(wdt)  # its exact reciprocal
        y = _round(xc * inv_q, rounding, generator).mul_(q)
        if overflow is not None:
            y = y.clamp_(-overflow, overflow)  # NaN passes through clamp
        elif rounding == "toward_zero":  # IEEE 754 7.4: roundTowardZero never overflows to inf
            y = y.clamp_(-fmax, fmax).masked_fill_(torch.isinf(xc), overflow_val).copysign_(xc)
        else:
            y = y.masked_fill_(y.abs() > fmax, overflow_val).copysign_(xc)
        if not fmt.signed:
            y = torch.where(xc > 0, y, float("nan"))
        if not fmt.has_zero:
            y = y.clamp_(min=fmin)  # no zero code (e8m0): the smallest value is the nearest
        if fmt.nan == "neg_zero":
            y = y.add_(0.0)  # -0 + 0 = +0 under RNE: fnuz has no negative zero
        return y.to(in_dtype)

    return _chunked(x, one, (fmt.name, rounding))


def quantize_int(
    x: torch.Tensor,
    fmt: IntFormat,
    *,
    rounding: Rounding = "nearest_even",
    saturate: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round `x` to integers in [qmin, qmax].

    `saturate=False` wraps modulo 2^bits (two's-complement hardware, and ml_dtypes' C-style cast
    when combined with `rounding="toward_zero"`). NaN stays NaN; +-inf saturates.
    """
    _check(x, fmt.name, rounding)
    if not saturate and fmt.narrow:
        raise FormatError(f"{fmt.name}: a narrow range cannot wrap; use saturate=True")
    lo, hi, span = float(fmt.qmin), float(fmt.qmax), float(1 << fmt.bits)

    def one(xc: torch.Tensor) -> torch.Tensor:
        w = xc if xc.dtype == torch.float64 else xc.float()
        r = _round(w, rounding, generator)  # round-half-even, trunc, SR: all symmetric
        if saturate:
            r = r.clamp_(lo, hi)
        else:  # wrap in exact integer arithmetic (float loses bits above 2^24)
            finite = torch.isfinite(r)
            wrapped = (torch.where(finite, r, 0.0).to(torch.int64) - int(lo)) % int(span) + int(lo)
            r = torch.where(finite, wrapped.to(r.dtype), r.clamp(lo, hi))
        return r.to(xc.dtype)

    return _chunked(x, one, (fmt.name, rounding))


def quantize_lns(
    x: torch.Tensor,
    fmt: LNSFormat,
    *,
    rounding: Rounding = "nearest_even",
    saturate: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Round log2|x| to the nearest multiple of 2^-frac_bits (in float64: log2 is not exact in
    float32 near code boundaries). Below half the smallest magnitude flushes to 0; above the
    largest saturates (`saturate=False`: inf)."""
    _check(x, fmt.name, rounding)
    step = float(1 << fmt.frac_bits)
    lo, hi = fmt.kmin, fmt.kmax

    def one(xc: torch.Tensor) -> torch.Tensor:
        w = xc.to(torch.float64)
        a = w.abs()
        logs = torch.log2(a).mul_(step)
        # toward_zero means toward zero magnitude: floor in the log domain, not trunc.
        k = logs.floor_() if rounding == "toward_zero" else _round(logs, rounding, generator)
        big = k > hi
        k = k.clamp_(lo, hi)
        y = torch.exp2(k / step)
        # Below the smallest magnitude: nearest is 0 under half of it; truncation always gives 0.
        tiny = fmt.min_normal if rounding == "toward_zero" else 0.5 * fmt.min_normal
        y = torch.where(a < tiny, 0.0, y)
        if not saturate:
            y = torch.where(big, float("inf"), y)
        y = torch.where(torch.isnan(a), float("nan"), y)
        return torch.copysign(y, w).to(xc.dtype)

    return _chunked(x, one, (fmt.name, rounding))
