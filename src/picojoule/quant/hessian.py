"""Layer Hessians for GPTQ and SparseGPT: H = 2/n sum x x^T over calibration inputs.

Public: `HessianAccumulator`, `dampened_inverse_cholesky`, `dead_columns`, `HessianError`.

Both papers minimise one layer's output error ||W X - W' X||^2 over calibration inputs X
[in, n]; its Hessian with respect to a weight row is H = 2 X X^T (Frantar et al., "GPTQ",
ICLR 2023, section 3, Eq. 1-2; Frantar & Alistarh, "SparseGPT", ICML 2023, section 3). We
divide by the number of input rows n, H = 2/n sum_i x_i x_i^T, so H does not grow with the
calibration set and the solvers' loss reads as a mean over samples. Units: H holds the
square of the layer input's units.

Accumulation: the raw sum sum_i x_i x_i^T is kept in float64 (the default `dtype`) and divided
by n once, in `hessian()`. The reference implementation keeps float32 and rescales the running
H by n_old / n_new before each batch; float64 without rescaling rounds less and costs twice the
memory ([in, in] * 8 bytes: 128 MiB for in = 4096). `dtype=torch.float32` halves it.

Rows: every index of the leading dimensions of an input is one sample - a Linear input
[batch, seq, in] gives batch * seq rows (the reference counts sequences, a constant factor that
neither solver sees: both are invariant to scaling H, and the dampening is relative to its mean
diagonal). For a convolution, pass the unfolded input [rows, R*S*C] in the column order of the
weight view `picojoule.quant.modules.reduction_last(w, "weight")` ([K, R*S*C], C fastest).
"""

from __future__ import annotations

import math
import warnings

import torch

from picojoule.errors import ConfigError, PicojouleError, ShapeError

__all__ = ["HessianAccumulator", "HessianError", "dampened_inverse_cholesky", "dead_columns"]


class HessianError(PicojouleError, ValueError):
    """A Hessian the solvers cannot use: empty, non-finite, or not positive definite even after
    dampening. The message names the fix."""


class HessianAccumulator:
    """Running H = 2/n sum_i x_i x_i^T over the rows x_i of every batch added.

    columns: the input width (None: taken from the first batch). device: where H lives (None:
    the first batch's device). dtype: accumulation dtype (float64 default; see module doc).
    """

    def __init__(
        self,
        columns: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise ConfigError(f"HessianAccumulator accumulates in float32 or float64, not {dtype}")
        self.columns = columns
        self.device = torch.device(device) if device is not None else None
        self.dtype = dtype
        self._sum: torch.Tensor | None = None
        self._n = 0

    @property
    def n(self) -> int:
        """Rows (samples) added so far."""
        return self._n

    def add_batch(self, x: torch.Tensor) -> None:
        """Add the rows of x [..., in] (any leading dims; each index is one sample)."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            raise ShapeError("add_batch takes a tensor [..., in] of layer inputs")
        cols = x.shape[-1]
        if self.columns is None:
            self.columns = cols
        if cols != self.columns:
            raise ShapeError(
                f"add_batch got inputs with {cols} features, the Hessian has {self.columns}; "
                "feed every batch of the same layer input (in reduction_last column order)"
            )
        rows = x.detach().reshape(-1, cols)
        if rows.shape[0] == 0:
            return
        if self._sum is None:
            dev = self.device if self.device is not None else rows.device
            self.device = dev
            self._sum = torch.zeros(cols, cols, dtype=self.dtype, device=dev)
        r = rows.to(device=self._sum.device, dtype=self.dtype)
        self._sum.addmm_(r.T, r)
        self._n += rows.shape[0]

    def hessian(self) -> torch.Tensor:
        """H = 2/n sum x x^T [in, in] in the accumulation dtype (a new tensor)."""
        if self._sum is None or self._n == 0:
            raise HessianError(
                "no calibration inputs were added; call add_batch with the layer's inputs "
                "before hessian()"
            )
        return self._sum * (2.0 / self._n)


def dead_columns(hessian: torch.Tensor) -> torch.Tensor:
    """bool [in]: input features that were zero in every calibration sample (H_ii == 0). Their
    weights never reach the output; GPTQ and SparseGPT zero them, as the reference does."""
    return torch.diagonal(hessian) == 0


def dampened_inverse_cholesky(
    hessian: torch.Tensor, damp: float = 0.01, *, retries: int = 2
) -> torch.Tensor:
    """Upper Cholesky factor U of (H + lambda I)^-1, float64 [in, in]: U^T U = (H + lambda I)^-1.

    GPTQ section 3, "Step 3: Cholesky reformulation": row q of U, divided by U_qq, is the OBS
    update of the columns after q once columns < q are fixed, and U_qq^2 = [H_F^-1]_qq for
    F = {q, q+1, ...} (the inverse Hessian of the remaining columns), so the solvers never
    update H^-1 themselves. Steps, as in the reference: dead columns (H_ii == 0) get H_ii = 1
    (the caller zeroes their weights: `dead_columns`); lambda = damp * mean(diag H) is added to
    the diagonal ("dampening", GPTQ section 4, 1% by default); then Cholesky of H, its inverse
    from the factor, and the upper Cholesky factor of that inverse.

    If a factorisation fails (H not positive definite: too few calibration samples for the
    input width, or float32 rounding), damp is multiplied by 10 and retried, `retries` times,
    with a RuntimeWarning naming the damp used; then HessianError. A non-finite H raises
    HessianError at once. damp = 0 is allowed (no retries then: 10 * 0 is 0).
    """
    if not isinstance(hessian, torch.Tensor) or hessian.dim() != 2:
        got = tuple(hessian.shape) if isinstance(hessian, torch.Tensor) else type(hessian).__name__
        raise ShapeError(f"the Hessian must be a square [in, in] matrix, got {got}")
    n = hessian.shape[0]
    if hessian.shape[1] != n or n == 0:
        raise ShapeError(
            f"the Hessian must be a square [in, in] matrix, got {tuple(hessian.shape)}"
        )
    if not (math.isfinite(damp) and damp >= 0):
        raise ConfigError(
            f"damp={damp}: give a fraction of the mean Hessian diagonal >= 0, e.g. 0.01"
        )
    if not torch.isfinite(hessian).all():
        raise HessianError(
            "the Hessian holds NaN/inf: a calibration input was non-finite (fp16 overflow?); "
            "check the layer's inputs and recompute it"
        )
    h = hessian.detach().to(torch.float64).clone()
    diag = torch.diagonal(h)  # a view: writes go into h
    diag[diag == 0] = 1.0
    mean = float(diag.mean())
    eye = torch.eye(n, dtype=h.dtype, device=h.device)
    tries = [damp * 10.0**k for k in range(retries + 1)] if damp > 0 else [0.0]
    for k, d in enumerate(tries):
        lower, info = torch.linalg.cholesky_ex(h + (d * mean) * eye)
        if int(info) == 0:
            upper, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(lower), upper=True)
            if int(info) == 0 and bool(torch.isfinite(upper).all()):
                if k:
                    warnings.warn(
                        f"Hessian not positive definite at damp={damp:g}; used damp={d:g} "
                        "(more calibration samples avoid this)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return upper
    raise HessianError(
        f"the Hessian [{n}x{n}] is not positive definite even with damp={tries[-1]:g}: raise "
        f"damp or use more calibration samples (at least {n} input rows)"
    )
