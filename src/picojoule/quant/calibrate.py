"""Static activation scales: observe calibration batches, then choose an amax.

Methods (the usual post-training set; Wu et al., "Integer Quantization for Deep Learning
Inference", NVIDIA 2020, section 4 compares them):
- `max`: the largest |x| seen.
- `percentile`: the p-th percentile of |x| (clips rare outliers).
- `mse`: the clip value, on a grid of fractions of max, that minimises the quantization MSE of
  the observed sample in the layer's own format.
- `entropy`: TensorRT's KL-divergence threshold (Migacz, GTC 2017): the clip whose quantized
  histogram diverges least from the float one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.formats import Format, IntFormat, ScaledFormat

__all__ = ["Observer", "calibrate"]

_SAMPLE_ROWS = 2048
_BINS = 2048


class Observer:
    """Running max of |x| plus a bounded random sample of rows (for percentile/MSE/entropy)."""

    def __init__(self, method: str, percentile: float = 99.99, seed: int = 0) -> None:
        self.method = method
        self.percentile = percentile
        self.running_max = 0.0
        self.rows: list[torch.Tensor] = []
        self._gen = torch.Generator().manual_seed(seed)
        self.seen = 0

    def update(self, x2d: torch.Tensor) -> None:
        x2d = x2d.float()
        finite = x2d[torch.isfinite(x2d)]
        if finite.numel():
            self.running_max = max(self.running_max, float(finite.abs().max()))
        keep = min(x2d.shape[0], max(1, _SAMPLE_ROWS // 8))
        idx = torch.randperm(x2d.shape[0], generator=self._gen)[:keep]
        self.rows.append(x2d[idx].clone())
        self.seen += 1

    def amax(self, fmt: Format) -> float:
        if self.seen == 0:
            raise ConfigError(
                "static activation calibration saw no data; run picojoule.quant.calibrate"
                "(model, batches) before evaluating"
            )
        if self.method == "max" or self.running_max == 0.0:
            return self.running_max
        sample = torch.cat(self.rows)[: _SAMPLE_ROWS * 8]
        if self.method == "percentile":
            a = sample.abs().flatten()
            a = a[torch.isfinite(a)].double().numpy()
            return float(np.percentile(a, self.percentile))
        if self.method == "mse":
            return _mse_amax(sample, fmt, self.running_max)
        if self.method == "entropy":
            return _entropy_amax(sample, fmt, self.running_max)
        raise ConfigError(f"unknown calibration {self.method!r}")


def _mse_amax(sample: torch.Tensor, fmt: Format, amax: float) -> float:
    if not isinstance(fmt, ScaledFormat):
        return amax
    best, best_err = amax, float("inf")
    for frac in np.linspace(0.3, 1.0, 36):
        cand = float(frac) * amax
        q = fmt.quantize(sample, amax=cand, coarse="tensor")
        err = float(((q - sample) ** 2).mean())
        if err < best_err:
            best, best_err = cand, err
    return best


def _entropy_amax(sample: torch.Tensor, fmt: Format, amax: float) -> float:
    """TensorRT entropy calibration on a 2048-bin histogram of |x|."""
    el = fmt.element if isinstance(fmt, ScaledFormat) else fmt
    levels = el.qmax + 1 if isinstance(el, IntFormat) else 128
    a = sample.abs().flatten().double().numpy()
    hist, edges = np.histogram(a[np.isfinite(a)], bins=_BINS, range=(0.0, amax))
    hist = hist.astype(np.float64)
    best_i, best_kl = _BINS, float("inf")
    for i in range(max(levels, 16), _BINS + 1, 16):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()  # clipped mass lands in the last bin
        if p.sum() == 0:
            continue
        # Quantize the first i bins into `levels` groups, spread back over non-empty bins.
        groups = np.array_split(np.arange(i), min(levels, i))
        q = np.zeros(i)
        for g in groups:
            nz = hist[g] > 0
            if nz.any():
                q[g[nz]] = hist[g].sum() / nz.sum()
        pn, qn = p / p.sum(), q / max(q.sum(), 1e-300)
        mask = pn > 0
        if (qn[mask] == 0).any():
            continue
        kl = float(np.sum(pn[mask] * np.log(pn[mask] / qn[mask])))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return float(edges[best_i])


def calibrate(model: nn.Module, batches: Iterable) -> int:
    """Run `batches` through `model` to fix every static activation scale.

    Each batch is a tensor or a tuple/list/dict of model inputs. Returns the number of
    activation quantizers calibrated.
    """
    from picojoule.quant.modules import ActivationFakeQuant

    quantizers = [m for m in model.modules() if isinstance(m, ActivationFakeQuant)]
    static = [q for q in quantizers if q.observer is not None]
    if not static:
        return 0
    for q in static:
        q.observing = True
    was_training = model.training
    model.eval()
    n = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if isinstance(batch, dict):
                    model(**batch)
                elif isinstance(batch, tuple | list):
                    model(*batch)
                else:
                    model(batch)
                n += 1
    finally:
        for q in static:
            q.observing = False
        model.train(was_training)
    if n == 0:
        raise ConfigError("calibrate: the calibration data yielded no batches")
    for q in static:
        q.freeze()
    return len(static)
