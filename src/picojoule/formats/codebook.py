"""1-D k-means codebooks (EIE; Han et al., "Deep Compression", ICLR 2016).

`fit` is Lloyd's algorithm with linear initialisation over [min, max] (the paper's best-accuracy
choice: it keeps the rare large weights, which density-based init loses) and a fixed iteration
count, so results are deterministic. `assign` snaps to the nearest centroid via `bucketize` on
the midpoints: O(n log k), no n x k distance matrix.
"""

from __future__ import annotations

import torch

from picojoule.errors import FormatError

__all__ = ["fit", "assign", "assign_index"]


def fit(x: torch.Tensor, k: int, *, iters: int = 25) -> torch.Tensor:
    """Return `k` sorted float32 centroids fitted to the values of `x`."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise FormatError(f"codebook: expected a floating-point tensor, got {got}")
    v = x.detach().reshape(-1).float()
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return torch.zeros(k)
    lo, hi = float(v.min()), float(v.max())
    c = torch.linspace(lo, hi, k)
    for _ in range(iters):
        idx = assign_index(v, c)
        sums = torch.zeros(k).index_add_(0, idx, v)
        counts = torch.bincount(idx, minlength=k).float()
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        c, _ = torch.sort(c)
    return c


def assign_index(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (sorted ascending) for every element (ties: lower index)."""
    mid = (centroids[1:] + centroids[:-1]) * 0.5
    return torch.bucketize(x.float(), mid, right=False)


def assign(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Snap every element of `x` to its nearest centroid (NaN stays NaN)."""
    out = centroids.to(x.dtype)[assign_index(x, centroids)]
    return torch.where(torch.isnan(x), x, out)
