"""SparseGPT: one layer pruned column by column with second-order error feedback.

Public: `sparsegpt_prune`, `SparseGPTResult`.

Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot",
ICML 2023. The same machinery as GPTQ (`picojoule.quant.gptq`, `picojoule.quant.hessian`):
with U the upper Cholesky factor of (H + lambda I)^-1, H = 2/n X X^T, columns are visited in
order and each pruned weight's error is spread over the columns after it (Algorithm 1):

    E = (W[:, j] - M[:, j] * W[:, j]) / U_jj ;  W[:, j+1:] -= E U_{j, j+1:}

Masks are chosen from the OBS saliency w^2 / U_cc^2 (section 3.2: the error of pruning w_c is
w_c^2 / [H^-1]_cc, and U_cc^2 = [H_F^-1]_cc is the inverse Hessian entry of column c once the
columns before it are fixed), on the CURRENT weights (error feedback applied):
- N:M (section 3.3): at every m-th column, for each row of the group of m consecutive columns
  starting there. picojoule's N:M convention (`picojoule.sparsity.patterns`): `n` is the
  number KEPT of every `m` - 2:4 keeps 2 of 4, 1:4 keeps 1 - so the m - n weights of lowest
  saliency are pruned. (The reference's `prunen` counts the pruned ones; the two agree at 2:4.)
- unstructured `sparsity` (fraction PRUNED, density = 1 - sparsity): "adaptive mask selection"
  (section 3.2) - at the start of every block of `block_size` columns, the round(sparsity *
  rows * block) weights of lowest saliency in that block (the reference prunes those up to
  its threshold value, one more plus ties).

`loss` is the reference's sum of (w - kept)^2 / U_jj^2 halved: the layer objective's increase,
the mean over calibration rows of ||(W - W_sparse) x||^2 under the dampened Hessian, output
units squared. Dead columns (H_ii == 0) are zeroed first, as in the reference. Column order:
as for GPTQ, the Hessian indexes the weight's columns (a conv: `reduction_last(w, "weight")`
[K, R*S*C], whose C-fastest order is also the one the N:M groups run along, `masks.gemm_view`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from picojoule.errors import ConfigError
from picojoule.quant.gptq import check_layer
from picojoule.quant.hessian import dampened_inverse_cholesky, dead_columns
from picojoule.sparsity.masks import check_nm

__all__ = ["SparseGPTResult", "sparsegpt_prune"]


@dataclass(frozen=True, eq=False)
class SparseGPTResult:
    """weight: the pruned and error-compensated weight [out, in], the input's dtype, zero
    where `mask` is False. mask: bool [out, in], True = kept (the `picojoule.sparsity.masks`
    convention). loss: the objective's increase, output units squared. seconds: wall time."""

    weight: torch.Tensor
    mask: torch.Tensor
    loss: float
    seconds: float


def _lowest(saliency: torch.Tensor, count: int) -> torch.Tensor:
    """bool mask of the `count` smallest entries of each row (ties: lowest index first)."""
    drop = torch.zeros_like(saliency, dtype=torch.bool)
    if count > 0:
        idx = torch.argsort(saliency, dim=-1, stable=True)[..., :count]
        drop.scatter_(-1, idx, True)
    return drop


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    *,
    n: int = 2,
    m: int = 4,
    block_size: int = 128,
    damp: float = 0.01,
    sparsity: float | None = None,
) -> SparseGPTResult:
    """Prune one layer's weight [out, in] with SparseGPT (Frantar & Alistarh 2023, Alg. 1).

    hessian: [in, in], H = 2/n X X^T of the layer's inputs, indexed like the weight's columns.
    n, m: keep n of every m consecutive input columns in each row (picojoule's N:M: 2:4 keeps
        two); `in` must be a multiple of m. Ignored when `sparsity` is given.
    sparsity: fraction of weights PRUNED in [0, 1), chosen per block of `block_size` columns;
        None (default) prunes N:M.
    block_size: columns per lazy batch update (and per adaptive mask, unstructured). With
        N:M it is rounded down to a multiple of m (at least m) so groups lie in one block.
    damp: lambda as a fraction of the mean diagonal of H.
    Works in float64 for float64 weights, else float32 (H^-1 factored in float64).
    """
    start_time = time.perf_counter()
    check_layer(weight, hessian, block_size, "sparsegpt_prune")
    rows, cols = weight.shape
    if sparsity is None:
        check_nm(cols, n, m, what=f"input columns of weight {tuple(weight.shape)}")
        block_size = max(m, block_size // m * m)
    elif not 0.0 <= sparsity < 1.0:
        raise ConfigError(
            f"sparsity={sparsity}: give the fraction of weights pruned in [0, 1), e.g. 0.5"
        )
    wd = torch.float64 if weight.dtype == torch.float64 else torch.float32
    w = weight.detach().to(wd).clone()
    h = hessian.detach().to(device=w.device)
    w[:, dead_columns(h)] = 0.0
    u = dampened_inverse_cholesky(h, damp).to(wd)
    u_diag = torch.diagonal(u)

    keep = torch.ones(rows, cols, dtype=torch.bool, device=w.device)
    out = torch.zeros_like(w)
    losses = torch.zeros(rows, dtype=wd, device=w.device)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        drop1 = torch.zeros_like(w1, dtype=torch.bool)
        if sparsity is not None:  # adaptive mask of the whole block, on its current weights
            sal = (w1 / u_diag[i1:i2]).square().flatten()
            k = round(sparsity * sal.numel())
            drop1.view(-1).copy_(_lowest(sal, k))
        for i in range(i2 - i1):
            c = i1 + i
            if sparsity is None and c % m == 0:  # N:M group starting at column c
                sal = (w1[:, i : i + m] / u_diag[c : c + m]).square()
                drop1[:, i : i + m] = _lowest(sal, m - n)
            col = w1[:, i]
            kept = torch.where(drop1[:, i], 0.0, col)
            out[:, c] = kept
            e = (col - kept) / u1[i, i]
            losses.addcmul_(e, e)
            w1[:, i + 1 :].addr_(e, u1[i, i + 1 :], alpha=-1.0)
            err1[:, i] = e
        keep[:, i1:i2] = ~drop1
        if i2 < cols:
            w[:, i2:].addmm_(err1, u[i1:i2, i2:], alpha=-1.0)

    return SparseGPTResult(
        weight=out.to(weight.dtype),
        mask=keep,
        loss=float(losses.sum()) / 2.0,
        seconds=time.perf_counter() - start_time,
    )
