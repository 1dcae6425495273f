"""Stochastic rounding (unbiased, on the grid, reproducible) and truncation (never grows a
magnitude), for every element format in the registry."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from fmtref import element_names, magnitudes, round_toward_zero_ref

from picojoule.formats import FloatFormat, FormatError, IntFormat, LNSFormat, get

ELEMENTS = element_names(16)
DRAWS = 1 << 16


def _neighbours(fmt, x: float) -> tuple[float, float]:
    """The grid values just below and above x > 0 (from the decode table / integer grid)."""
    if isinstance(fmt, IntFormat):
        return float(math.floor(x)), float(math.ceil(x))
    if isinstance(fmt, LNSFormat):
        step = 1 << fmt.frac_bits
        k = math.floor(math.log2(x) * step)
        return 2.0 ** (k / step), 2.0 ** ((k + 1) / step)
    mags = magnitudes(fmt)
    i = int(np.searchsorted(mags, x))
    return float(mags[i - 1]), float(mags[i])


def _probe_points(fmt) -> list[float]:
    """Points strictly between two grid values, at fractions 0.1, 0.5 and 0.85 of the gap,
    in the subnormal range, around 1 and near the top of the range."""
    if isinstance(fmt, IntFormat):
        anchors = sorted({float(fmt.qmin), 0.0, float(fmt.qmax - 1)})
        pairs = [(a, a + 1.0) for a in anchors]
    elif isinstance(fmt, LNSFormat):
        pairs = [_neighbours(fmt, v) for v in (1.3, fmt.max / 1.1)]
    else:
        mags = magnitudes(fmt)
        idx = [1, int(np.searchsorted(mags, 1.0)), len(mags) - 2]
        pairs = [(float(mags[i]), float(mags[i + 1])) for i in idx]
    return [lo + f * (hi - lo) for lo, hi in pairs for f in (0.1, 0.5, 0.85)]


@pytest.mark.parametrize("name", ELEMENTS)
def test_stochastic_rounding_is_unbiased(name: str) -> None:
    """E[SR(x)] = x: over 2^16 draws the mean is within 5 standard errors of x and every draw
    is one of the two neighbours, for x and -x (the rule is symmetric in distribution)."""
    fmt = get(name)
    g = torch.Generator().manual_seed(1234)
    # Integer probes already straddle qmin, 0 and qmax; signed float and LNS probes are mirrored.
    unsigned_float = isinstance(fmt, FloatFormat) and not fmt.signed
    signs = (1.0,) if isinstance(fmt, IntFormat) or unsigned_float else (1.0, -1.0)
    for x, sign in itertools.product(_probe_points(fmt), signs):
        lo, hi = _neighbours(fmt, x)
        xs = torch.full((DRAWS,), sign * x, dtype=torch.float64)
        q = sign * fmt.quantize(xs, rounding="stochastic", generator=g).numpy()
        on_grid = np.isclose(q, lo, rtol=1e-12, atol=0) | np.isclose(q, hi, rtol=1e-12, atol=0)
        assert on_grid.all(), f"{name}: SR left the grid at x={sign * x}"
        p = (x - lo) / (hi - lo)
        stderr = (hi - lo) * math.sqrt(p * (1 - p) / DRAWS)
        assert abs(q.mean() - x) <= 5 * stderr, f"{name}: biased at x={sign * x}"


@pytest.mark.parametrize("name", ["e4m3", "e2m1", "int4", "bf16"])
def test_stochastic_rounding_keeps_grid_points_and_is_reproducible(name: str) -> None:
    fmt = get(name)
    grid = (torch.linspace(-1.0, 1.0, 4001, dtype=torch.float64) * fmt.max).float()
    on_grid = fmt.quantize(grid)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(fmt.quantize(on_grid, rounding="stochastic", generator=g), on_grid)
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(3))
    a = fmt.quantize(x, rounding="stochastic", generator=torch.Generator().manual_seed(5))
    b = fmt.quantize(x, rounding="stochastic", generator=torch.Generator().manual_seed(5))
    c = fmt.quantize(x, rounding="stochastic", generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(fmt.quantize(a), a)  # every SR result is on the grid


@pytest.mark.parametrize("name", ELEMENTS)
def test_toward_zero_never_increases_magnitude(name: str) -> None:
    """|RTZ(x)| <= |x| for every finite x (with saturation); E8M0, which has no zero, only
    from its smallest value up."""
    fmt = get(name)
    g = torch.Generator().manual_seed(0)
    top = math.log2(float(fmt.max)) + 1
    mag = torch.exp2(torch.rand(200_000, generator=g, dtype=torch.float64) * (top + 30) - 30)
    x = torch.cat([mag, -mag]) if not (isinstance(fmt, FloatFormat) and not fmt.signed) else mag
    if isinstance(fmt, FloatFormat) and not fmt.has_zero:
        x = x[x >= fmt.min_normal]
    q = fmt.quantize(x, rounding="toward_zero")
    assert (q.abs() <= x.abs()).all(), f"{name}: |q| > |x| at {x[q.abs() > x.abs()][:4]}"
    assert torch.equal(torch.signbit(q[q != 0]), torch.signbit(x[q != 0]))


def test_toward_zero_matches_truncation_reference_on_e5m2() -> None:
    fmt = get("e5m2")
    x = np.random.default_rng(0).standard_normal(100_000) * 1000
    got = fmt.quantize(torch.from_numpy(x), rounding="toward_zero").numpy()
    assert np.array_equal(got, round_toward_zero_ref(x, fmt, saturate=True))


def test_unknown_rounding_is_refused() -> None:
    with pytest.raises(FormatError, match="unknown rounding 'up'.*nearest_even"):
        get("e4m3").quantize(torch.ones(3), rounding="up")  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="nearest centroid"):
        get("codebook16").quantize(torch.ones(3), rounding="stochastic")
