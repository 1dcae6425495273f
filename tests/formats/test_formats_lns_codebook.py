"""Logarithmic number system (nearest in the log domain) and k-means codebooks (EIE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from picojoule.formats import CodebookFormat, FormatError, LNSFormat, get
from picojoule.formats.codebook import assign_index, fit


def _log_codes(x: torch.Tensor, fmt: LNSFormat) -> torch.Tensor:
    """k such that |x| = 2^(k / 2^frac_bits) (x on the LNS grid)."""
    return torch.round(torch.log2(x.abs().double()) * (1 << fmt.frac_bits)).long()


@pytest.mark.parametrize("name", ["lns8", "lns16", "lns8_f2", "lns12_f6"])
def test_lns_is_nearest_in_log_domain(name: str) -> None:
    """The code minimizing |log2 v - log2 x|: brute force over every positive code value for
    formats of <= 1024 magnitudes, else over the two codes around log2|x|."""
    fmt = get(name)
    assert isinstance(fmt, LNSFormat)
    step = 1 << fmt.frac_bits
    g = torch.Generator().manual_seed(0)
    lo, hi = math.log2(fmt.min_normal), math.log2(fmt.max)
    x = torch.exp2(torch.rand(20_000, generator=g, dtype=torch.float64) * (hi - lo) + lo)
    x = x * torch.where(torch.rand(x.shape, generator=g) < 0.5, -1.0, 1.0).double()
    q = fmt.quantize(x)
    logx = torch.log2(x.abs())
    if fmt.kmax - fmt.kmin < 1024:
        ks = torch.arange(fmt.kmin, fmt.kmax + 1, dtype=torch.float64)[None, :]
    else:
        k0 = torch.floor(logx * step)
        ks = torch.stack([k0, k0 + 1], dim=1).clamp(fmt.kmin, fmt.kmax)
    dist = (logx[:, None] - ks / step).abs()
    want_k = ks.expand(dist.shape).gather(1, dist.argmin(dim=1, keepdim=True)).squeeze(1)
    assert torch.equal(_log_codes(q, fmt), want_k.long())
    assert torch.equal(torch.signbit(q), torch.signbit(x))
    assert ((torch.log2(q.abs()) - logx).abs() <= 0.5 / step + 1e-12).all()


def test_lns_range_ends() -> None:
    """Below min/2 flushes to (signed) zero, [min/2, min) goes to min, above max saturates
    (saturate=False: inf), NaN stays NaN."""
    fmt = get("lns8")
    assert isinstance(fmt, LNSFormat)
    m, mx = fmt.min_normal, fmt.max
    x = torch.tensor([0.49 * m, -0.49 * m, 0.51 * m, 2 * mx, -math.inf, math.nan, 0.0, -0.0])
    x = x.double()
    q = fmt.quantize(x)
    assert q[:2].tolist() == [0.0, 0.0] and torch.signbit(q[1])
    assert math.isclose(q[2].item(), m, rel_tol=1e-12)
    assert math.isclose(q[3].item(), mx, rel_tol=1e-12) and math.isclose(-q[4].item(), mx)
    assert math.isnan(q[5]) and q[6] == 0 and torch.signbit(q[7])
    q_ns = fmt.quantize(x, saturate=False)
    assert q_ns[3] == math.inf and q_ns[4] == -math.inf


def test_lns_encode_decode_agree_with_quantize() -> None:
    """decode(encode(x)) is the float32 value of quantize(x): the table and the arithmetic are
    two derivations of one grid."""
    fmt = get("lns8")
    x = torch.randn(50_000, generator=torch.Generator().manual_seed(1)) * 4
    x = torch.cat([x, torch.tensor([0.0, -0.0, 1e-9, 1e9])])
    assert torch.equal(fmt.decode(fmt.encode(x)), fmt.quantize(x))


def test_lns_name_grammar() -> None:
    assert get("lns8") is get("lns8_f4")
    assert get("lns16").name == "lns16_f10"
    f = get("lns8_f2")
    assert isinstance(f, LNSFormat) and (f.bits, f.frac_bits, f.kmax) == (8, 2, 63)
    assert f.max == 2.0 ** (63 / 4)


@pytest.mark.parametrize("bits", [3, 4])
def test_lns_smallest_widths_parse(bits: int) -> None:
    """The grammar accepts LNS widths from 3 bits; the default fraction must fit."""
    fmt = get(f"lns{bits}")
    assert isinstance(fmt, LNSFormat) and 0 <= fmt.frac_bits <= bits - 2


def _clusters(n: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([-3.0, -1.0, 0.5, 4.0])
    label = torch.randint(0, 4, (n,), generator=g)
    return centres[label] + 0.05 * torch.randn(n, generator=g), label


def test_codebook_recovers_clusters_and_is_a_lloyd_fixed_point() -> None:
    x, label = _clusters()
    c = fit(x, 4)
    assert torch.all(c[1:] > c[:-1])
    idx = assign_index(x, c)
    assert torch.equal(idx, label)  # centres are sorted, so cluster i is centroid i
    means = torch.stack([x[idx == i].mean() for i in range(4)])
    assert torch.allclose(c, means, rtol=0, atol=1e-5)


def test_codebook_is_deterministic_and_snaps_to_nearest_centroid() -> None:
    fmt = get("codebook16")
    assert isinstance(fmt, CodebookFormat) and fmt.bits == 4 and fmt.bits_per_element == 4.0
    x = torch.randn(3, 700, generator=torch.Generator().manual_seed(2)) ** 3
    q1, q2 = fmt.quantize(x), fmt.quantize(x.clone())
    assert torch.equal(q1, q2) and q1.shape == x.shape and q1.dtype == x.dtype
    c = fit(x, 16)
    assert torch.equal(fit(x, 16), c)
    assert set(q1.unique().tolist()) <= set(c.tolist())
    d = (x.reshape(-1, 1) - c.reshape(1, -1)).abs()
    nearest = c[d.argmin(dim=1)].reshape(x.shape)  # argmin breaks ties to the lower index
    assert torch.equal(q1, nearest)
    assert c[0] >= x.min() and c[-1] <= x.max()


def test_codebook_specials_and_degenerate_inputs() -> None:
    fmt = get("codebook4")
    x = torch.tensor([1.0, 2.0, math.nan, math.inf, 3.0, 4.0])
    q = fmt.quantize(x)
    assert math.isnan(q[2]) and q[3] == q[5]  # inf is ignored by the fit, snaps to the top
    assert torch.equal(fmt.quantize(torch.full((5,), 0.25)), torch.full((5,), 0.25))
    assert fmt.quantize(torch.empty(0, 3)).shape == (0, 3)
    with pytest.raises(FormatError, match="floating-point"):
        fmt.quantize(torch.arange(4))


def test_codebook_fit_matches_numpy_lloyd() -> None:
    """An independent Lloyd iteration in numpy (linear init over [min, max], 25 rounds, empty
    clusters keep their centroid) lands on the same centroids."""
    x = (torch.randn(5000, generator=torch.Generator().manual_seed(4)) * 2).exp()
    v = x.double().numpy()
    c = np.linspace(v.min(), v.max(), 8)
    for _ in range(25):
        idx = np.searchsorted((c[1:] + c[:-1]) / 2, v, side="left")
        c = np.sort(np.array([v[idx == i].mean() if (idx == i).any() else c[i] for i in range(8)]))
    assert np.allclose(fit(x, 8).double().numpy(), c, rtol=1e-5, atol=0)
