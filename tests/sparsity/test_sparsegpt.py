"""SparseGPT (Frantar & Alistarh, ICML 2023) against a direct OBS prune loop written here in
float64, without blocking or Cholesky:

    saliency of column j = w_j^2 / [H_{>=j}^-1]_jj   ([H_{>=j}^-1] = inv(H[j:, j:]), the
                                                     inverse Hessian once columns < j are
                                                     fixed: the squared Cholesky diagonal)
    N:M: at every m-th column, on the current weights, prune the m - n lowest of the group
    e = (w_q - kept_q) / Hinv_qq ;  W[:, q+1:] -= e Hinv[q, q+1:] ;  Hinv <- Schur(Hinv, q)

picojoule's N:M keeps n of every m (2:4 keeps 2); the masks are checked with
`picojoule.sparsity.is_nm`. Then: SparseGPT beats magnitude pruning on correlated inputs, and
the failure paths.
"""

from __future__ import annotations

import pytest
import torch

from picojoule.errors import ConfigError, ShapeError
from picojoule.quant.hessian import HessianAccumulator, HessianError
from picojoule.sparsity import is_nm, nm_mask, unstructured_mask
from picojoule.sparsity.sparsegpt import sparsegpt_prune

F64 = torch.float64


def correlated(
    rows: int, cols: int, seed: int, dtype: torch.dtype = F64, *, mix: int | None = None
) -> torch.Tensor:
    """X = Z A + 0.3 Z with a random mixing A (seeded by `mix`, default `seed`)."""
    ga = torch.Generator().manual_seed(seed if mix is None else mix)
    a = torch.randn(cols, cols, generator=ga, dtype=F64) / cols**0.5
    z = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed + 7919), dtype=F64)
    return (z @ a + 0.3 * z).to(dtype)


def hessian_of(x: torch.Tensor) -> torch.Tensor:
    acc = HessianAccumulator()
    acc.add_batch(x)
    return acc.hessian()


def dampened(h: torch.Tensor, damp: float) -> torch.Tensor:
    return h + damp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=h.dtype)


def obs_prune_direct(
    w: torch.Tensor,
    h: torch.Tensor,
    *,
    n: int = 2,
    m: int = 4,
    sparsity: float | None = None,
    block: int = 128,
    damp: float = 0.01,
):
    """Direct OBS pruning, column by column; returns (weight, kept mask, loss)."""
    w = w.clone()
    hd = dampened(h, damp)
    cols = w.shape[1]
    seq = torch.stack([torch.linalg.inv(hd[j:, j:])[0, 0] for j in range(cols)])
    hinv = torch.linalg.inv(hd)
    drop = torch.zeros_like(w, dtype=torch.bool)
    loss = 0.0
    for q in range(cols):
        if sparsity is None and q % m == 0:
            sal = w[:, q : q + m] ** 2 / seq[q : q + m]
            order = torch.argsort(sal, dim=1, stable=True)[:, : m - n]
            drop[:, q : q + m].scatter_(1, order, True)
        if sparsity is not None and q % block == 0:
            sal = (w[:, q : q + block] ** 2 / seq[q : q + block]).flatten()
            k = round(sparsity * sal.numel())
            flat = torch.zeros_like(sal, dtype=torch.bool)
            flat[torch.argsort(sal, stable=True)[:k]] = True
            drop[:, q : q + block] = flat.view(w.shape[0], -1)
        wq = w[:, q].clone()
        kept = torch.where(drop[:, q], 0.0, wq)
        d = hinv[q, q]
        w[:, q] = kept
        loss += float(((wq - kept) ** 2).sum() / d) / 2
        w[:, q + 1 :] -= ((wq - kept) / d)[:, None] * hinv[q, q + 1 :][None, :]
        hinv = hinv - torch.outer(hinv[:, q], hinv[q, :]) / d
    return w, ~drop, loss


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.randn(16, 48, generator=torch.Generator().manual_seed(1), dtype=F64)
    return w, hessian_of(correlated(400, 48, seed=0))


@pytest.mark.parametrize(("n", "m", "block_size"), [(2, 4, 128), (2, 4, 10), (1, 4, 7), (4, 8, 16)])
def test_nm_matches_direct_obs(problem, n: int, m: int, block_size: int) -> None:
    w, h = problem
    w_ref, keep_ref, loss_ref = obs_prune_direct(w, h, n=n, m=m)
    result = sparsegpt_prune(w, h, n=n, m=m, block_size=block_size)
    assert torch.equal(result.mask, keep_ref)
    torch.testing.assert_close(result.weight, w_ref, rtol=0.0, atol=1e-9)
    assert result.loss == pytest.approx(loss_ref, rel=1e-9)
    # picojoule's N:M: exactly n kept of every m, and the weight holds the pattern
    assert (result.mask.view(16, -1, m).sum(-1) == n).all()
    assert is_nm(result.weight, n, m) and not is_nm(result.weight, n - 1, m)
    assert (result.weight[~result.mask] == 0).all() and (result.weight[result.mask] != 0).all()
    dw = w - result.weight
    objective = float(torch.einsum("ri,ij,rj->", dw, dampened(h, 0.01), dw)) / 2
    assert result.loss == pytest.approx(objective, rel=1e-9)


@pytest.mark.parametrize(("sparsity", "block_size"), [(0.5, 128), (0.5, 16), (0.7, 20)])
def test_unstructured_matches_direct_obs(problem, sparsity: float, block_size: int) -> None:
    w, h = problem
    w_ref, keep_ref, loss_ref = obs_prune_direct(w, h, sparsity=sparsity, block=block_size)
    result = sparsegpt_prune(w, h, sparsity=sparsity, block_size=block_size)
    assert torch.equal(result.mask, keep_ref)
    torch.testing.assert_close(result.weight, w_ref, rtol=0.0, atol=1e-9)
    assert result.loss == pytest.approx(loss_ref, rel=1e-9)
    for i in range(0, 48, block_size):  # the adaptive mask holds the fraction per block
        blk = result.mask[:, i : i + block_size]
        assert (~blk).sum().item() == round(sparsity * blk.numel())


def test_error_feedback_moves_kept_weights(problem) -> None:
    """Not a plain mask: the kept weights are updated, and the mask is not magnitude's."""
    w, h = problem
    result = sparsegpt_prune(w, h)
    kept = result.mask
    assert (result.weight[kept] - w[kept]).abs().max() > 1e-2
    assert not torch.equal(result.mask, nm_mask(w, 2, 4))


def test_float32_weight_and_dead_columns() -> None:
    x = correlated(300, 32, seed=3, dtype=torch.float32)
    x[:, 5] = 0.0
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(4))
    result = sparsegpt_prune(w, hessian_of(x))
    assert result.weight.dtype == torch.float32 and result.mask.dtype == torch.bool
    assert (result.weight[:, 5] == 0).all()  # dead input: zeroed, so pruned first
    assert is_nm(result.weight, 2, 4)


@pytest.mark.parametrize("sparsity", [None, 0.5])
def test_beats_magnitude_on_correlated_inputs(sparsity: float | None) -> None:
    """2:4 against magnitude 2:4, and 50% unstructured (adaptive masks per 128 columns, four
    blocks here) against the global 50% magnitude mask, on held-out inputs."""
    cols = 512
    x_cal = correlated(4096, cols, seed=10, dtype=torch.float32)
    x_test = correlated(1024, cols, seed=11, dtype=torch.float32, mix=10)  # held out
    w = torch.randn(64, cols, generator=torch.Generator().manual_seed(12))
    sparse = sparsegpt_prune(w, hessian_of(x_cal), sparsity=sparsity).weight
    if sparsity is None:
        magnitude = w * nm_mask(w, 2, 4)
        assert is_nm(sparse, 2, 4)
    else:
        magnitude = w * unstructured_mask(w, 1.0 - sparsity)
        assert (sparse == 0).float().mean().item() == pytest.approx(sparsity)

    def out_err(q: torch.Tensor) -> float:
        return float(((x_test @ (w - q).T) ** 2).sum())

    assert out_err(sparse) < 0.8 * out_err(magnitude)


def test_refusals(problem) -> None:
    w, h = problem
    with pytest.raises(ShapeError, match="not divisible by M=5"):
        sparsegpt_prune(w, h, n=2, m=5)
    with pytest.raises(ShapeError, match="1 <= N < M"):
        sparsegpt_prune(w, h, n=4, m=4)
    with pytest.raises(ShapeError, match="48 input columns"):
        sparsegpt_prune(w, h[:40, :40])
    with pytest.raises(ConfigError, match="sparsity"):
        sparsegpt_prune(w, h, sparsity=1.0)
    nan_h = h.clone()
    nan_h[0, 0] = float("nan")
    with pytest.raises(HessianError, match="NaN"):
        sparsegpt_prune(w, nan_h)


def test_sparsegpt_recipe_in_a_model_beats_magnitude() -> None:
    """`sparsegpt-2:4` through `sparsify_` + `sparsegpt_`: valid 2:4 masks, and a smaller
    output error than magnitude 2:4 on a block of correlated inputs."""
    import copy

    import torch.nn as nn

    from picojoule.sparsity import sparsify_
    from picojoule.sparsity.calibrated import sparsegpt_
    from picojoule.sparsity.recipe import parse_recipe
    from picojoule.sparsity.sparsify import mask_of

    assert parse_recipe("sparsegpt-2:4").method == "sparsegpt"
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16), nn.Linear(16, 8))
    mix = torch.randn(32, 32)
    batches = [torch.randn(64, 32) @ mix for _ in range(4)]
    mag, sgpt = copy.deepcopy(base), copy.deepcopy(base)
    sparsify_(mag, "2:4,classifier=sparse")
    sparsify_(sgpt, "sparsegpt-2:4,classifier=sparse")
    lines = sparsegpt_(sgpt, batches)
    assert "3 Linear layer(s) re-masked" in lines[0]
    for m in (sgpt[0], sgpt[2], sgpt[3]):
        mk = mask_of(m)
        assert mk is not None
        assert torch.equal(mk.mask.view(-1, 4).sum(1), torch.full((m.weight.numel() // 4,), 2))
    held = torch.randn(256, 32) @ mix
    with torch.no_grad():
        ref = base(held)
        err_mag = float((mag(held) - ref).pow(2).mean())
        err_sgpt = float((sgpt(held) - ref).pow(2).mean())
    assert err_sgpt < 0.8 * err_mag
