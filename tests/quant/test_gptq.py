"""GPTQ (Frantar et al., ICLR 2023) and the layer Hessian.

(a) gptq_quantize against the paper's equations written out here in float64 - one column at a
    time, the full inverse Hessian updated by the OBS / Schur step, no blocking, no Cholesky:
        e = (w_q - quant(w_q)) / Hinv_qq ;  W[:, q+1:] -= e Hinv[q, q+1:]
        Hinv <- Hinv - Hinv[:, q] Hinv[q, :] / Hinv_qq
    with the same scale policy (per-channel from the original W; per-group from the current
    weights at the group's first column). Results agree to 1e-9 - a different rounding
    decision would move a value by a grid step, orders of magnitude more.
(b) what the paper reports in kind: on inputs with a strongly non-diagonal covariance the
    layer output error is well below round-to-nearest's.
(c) failure paths.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from picojoule.errors import ConfigError, PicojouleError, ShapeError
from picojoule.formats import ScaledFormat, get
from picojoule.quant.gptq import gptq_quantize
from picojoule.quant.hessian import (
    HessianAccumulator,
    HessianError,
    dampened_inverse_cholesky,
    dead_columns,
)

F64 = torch.float64
Quant = Callable[[torch.Tensor, int], torch.Tensor]  # (current W, column) -> quantized column


def correlated(
    rows: int, cols: int, seed: int, dtype: torch.dtype = F64, *, mix: int | None = None
) -> torch.Tensor:
    """Inputs X = Z A (+ 0.3 Z): a random mixing A (seeded by `mix`, default `seed`) makes the
    covariance strongly non-diagonal; Z is seeded by `seed`."""
    a = torch.randn(
        cols, cols, generator=torch.Generator().manual_seed(seed if mix is None else mix), dtype=F64
    )
    z = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed + 7919), dtype=F64)
    return (z @ (a / cols**0.5) + 0.3 * z).to(dtype)


def hessian_of(x: torch.Tensor) -> torch.Tensor:
    acc = HessianAccumulator()
    acc.add_batch(x)
    return acc.hessian()


def dampened(h: torch.Tensor, damp: float) -> torch.Tensor:
    return h + damp * h.diagonal().mean() * torch.eye(h.shape[0], dtype=h.dtype)


def obq_direct(w: torch.Tensor, h: torch.Tensor, quant: Quant, damp: float = 0.01):
    """The paper's equations, unblocked, with the explicit inverse Hessian. Returns
    (Q, loss) with loss = sum_q ||w_q - quant(w_q)||^2 / (2 Hinv_qq)."""
    w = w.clone().to(F64)
    hinv = torch.linalg.inv(dampened(h.to(F64), damp))
    q_all = torch.zeros_like(w)
    loss = 0.0
    for q in range(w.shape[1]):
        wq = w[:, q].clone()
        qq = quant(w, q)
        d = hinv[q, q]
        q_all[:, q] = qq
        loss += float(((wq - qq) ** 2).sum() / d) / 2
        w[:, q + 1 :] -= ((wq - qq) / d)[:, None] * hinv[q, q + 1 :][None, :]
        hinv = hinv - torch.outer(hinv[:, q], hinv[q, :]) / d
    return q_all, loss


def int4_hand(x: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    """int4 with an fp32 scale amax / 7, by hand: round half to even, clamp to [-8, 7]."""
    s = amax / 7.0
    s = torch.where(s == 0, 1.0, s)
    return torch.round(x / s).clamp(-8, 7) * s


def per_channel_hand(w0: torch.Tensor) -> Quant:
    amax = w0.abs().amax(dim=1)  # once, from the original W

    def quant(w: torch.Tensor, q: int) -> torch.Tensor:
        return int4_hand(w[:, q], amax)

    return quant


def per_group_hand(group: int) -> Quant:
    state: dict[str, torch.Tensor] = {}

    def quant(w: torch.Tensor, q: int) -> torch.Tensor:
        if q % group == 0:  # refit on the group's current weights
            state["amax"] = w[:, q : q + group].abs().amax(dim=1)
        return int4_hand(w[:, q], state["amax"])

    return quant


def refit_api(fmt: ScaledFormat, w0: torch.Tensor) -> Quant:
    """Group scales refit on current weights through fit_scales / quantize_fixed (checked
    against quantize in tests/formats/test_fixed_scales.py); NVFP4's tensor amax and VS-Quant's
    row amax from the original W."""
    amax = None
    if fmt.kind == "nvfp4":
        amax = w0.abs().amax()
    elif fmt.kind == "vsq" and fmt.scale_bits:
        amax = w0.abs().amax(dim=1)
    group = fmt.block
    assert group is not None
    state: dict = {}

    def quant(w: torch.Tensor, q: int) -> torch.Tensor:
        if q % group == 0:
            state["s"] = fmt.fit_scales(w[:, q : q + group], amax=amax)
            state["start"] = q
        return fmt.quantize_fixed(w[:, q : q + 1], state["s"], cols=q - state["start"])[:, 0]

    return quant


def static_api(fmt: ScaledFormat, w0: torch.Tensor, cols: list[int] | None = None) -> Quant:
    """Scales fit once on the original W; column q of the (maybe permuted) problem is original
    column cols[q]."""
    scales = fmt.fit_scales(w0)

    def quant(w: torch.Tensor, q: int) -> torch.Tensor:
        c = q if cols is None else cols[q]
        return fmt.quantize_fixed(w[:, q : q + 1], scales, cols=c)[:, 0]

    return quant


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, torch.Tensor]:
    """W [16, 48] and H of 400 correlated input rows, float64."""
    x = correlated(400, 48, seed=0)
    w = torch.randn(16, 48, generator=torch.Generator().manual_seed(1), dtype=F64)
    return w, hessian_of(x)


def assert_same(result, q_ref: torch.Tensor, loss_ref: float) -> None:
    assert result.weight.dtype == F64 and result.weight.shape == q_ref.shape
    torch.testing.assert_close(result.weight, q_ref, rtol=0.0, atol=1e-9)
    assert result.loss == pytest.approx(loss_ref, rel=1e-9)
    assert result.seconds > 0


@pytest.mark.parametrize(
    ("name", "block_size", "quant_of"),
    [
        ("int4/channel", 5, lambda f, w0: per_channel_hand(w0)),
        ("int4/block8", 20, lambda f, w0: per_group_hand(8)),
        ("int4/block8", 3, lambda f, w0: per_group_hand(8)),
        ("mxfp4", 7, refit_api),
        ("nvfp4", 40, refit_api),
        ("vsq4_v16_s4", 16, refit_api),
        ("e2m1/block16", 128, refit_api),
        ("bf16", 10, lambda f, w0: lambda w, q: f.quantize(w[:, q])),
    ],
)
def test_matches_direct_equations(problem, name: str, block_size: int, quant_of) -> None:
    w, h = problem
    fmt = get(name)
    q_ref, loss_ref = obq_direct(w, h, quant_of(fmt, w))
    result = gptq_quantize(w, h, fmt, block_size=block_size)
    assert_same(result, q_ref, loss_ref)
    # the loss is the objective 1/2 tr(dW H dW^T) under the dampened H (exact for a quadratic)
    dw = w - result.weight
    objective = float(torch.einsum("ri,ij,rj->", dw, dampened(h, 0.01), dw)) / 2
    assert result.loss == pytest.approx(objective, rel=1e-9)


def test_matches_direct_small_and_recipe_name() -> None:
    """8 x 32, and a recipe's bare `int4` resolves to int4/channel as in quantize_."""
    x = correlated(200, 32, seed=5)
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(6), dtype=F64)
    h = hessian_of(x)
    q_ref, loss_ref = obq_direct(w, h, per_channel_hand(w), damp=0.05)
    assert_same(gptq_quantize(w, h, "int4", block_size=12, damp=0.05), q_ref, loss_ref)


def test_error_feedback_changes_rounding(problem) -> None:
    """GPTQ is not round-to-nearest: some values round the other way (non-vacuous (a))."""
    w, h = problem
    fmt = get("int4/channel")
    result = gptq_quantize(w, h, fmt)
    assert (result.weight != fmt.quantize(w)).float().mean() > 0.1


def test_act_order_is_direct_on_permuted_problem(problem) -> None:
    w, h = problem
    perm = torch.argsort(h.diagonal(), descending=True, stable=True)
    inv = torch.argsort(perm)
    wp, hp = w[:, perm], h[perm][:, perm]
    fmt = get("int4/channel")
    q_ref, loss_ref = obq_direct(wp, hp, per_channel_hand(w))
    result = gptq_quantize(w, h, fmt, act_order=True, block_size=9)
    assert_same(result, q_ref[:, inv], loss_ref)
    assert not torch.equal(result.weight, gptq_quantize(w, h, fmt).weight)


def test_act_order_static_groups_is_direct_on_permuted_problem(problem) -> None:
    w, h = problem
    perm = torch.argsort(h.diagonal(), descending=True, stable=True)
    inv = torch.argsort(perm)
    fmt = get("nvfp4")
    assert isinstance(fmt, ScaledFormat)
    quant = static_api(fmt, w, cols=perm.tolist())
    q_ref, loss_ref = obq_direct(w[:, perm], h[perm][:, perm], quant)
    result = gptq_quantize(w, h, fmt, act_order=True, static_groups=True, block_size=11)
    assert_same(result, q_ref[:, inv], loss_ref)


def test_static_groups_differ_from_refit(problem) -> None:
    w, h = problem
    fmt = get("int4/block8")
    assert isinstance(fmt, ScaledFormat)
    q_ref, loss_ref = obq_direct(w, h, static_api(fmt, w))
    static = gptq_quantize(w, h, fmt, static_groups=True, block_size=16)
    assert_same(static, q_ref, loss_ref)
    assert not torch.equal(static.weight, gptq_quantize(w, h, fmt).weight)


@pytest.mark.parametrize(
    "name",
    ["int4/channel", "int8/tensor", "int4/block8", "mxfp4", "mxint8", "nvfp4", "vsq4_v16_s4"],
)
def test_result_is_representable_under_its_scales(name: str) -> None:
    """float32 weights: quantize_fixed with the returned scales gives the weight back."""
    x = correlated(300, 40, seed=2, dtype=torch.float32)
    w = torch.randn(12, 40, generator=torch.Generator().manual_seed(3))
    fmt = get(name)
    result = gptq_quantize(w, hessian_of(x), fmt, block_size=16)
    assert result.weight.dtype == torch.float32 and result.scales is not None
    assert torch.equal(fmt.quantize_fixed(result.weight, result.scales), result.weight)
    assert not torch.equal(fmt.quantize_fixed(w, result.scales), w)  # w itself is not


@pytest.mark.parametrize("name", ["mxfp4", "mxfp8_e4m3", "mxint8", "mxfp4_ceil", "bf16", "e4m3"])
def test_requantize_is_identity_for_pow2_and_unscaled(name: str) -> None:
    """Power-of-two (MX) scales and plain casts: fmt.quantize(result) == result. (fp32- or
    E4M3-scaled formats do not promise this: see the gptq module docstring.)"""
    x = correlated(300, 64, seed=4, dtype=torch.float32)
    w = torch.randn(12, 64, generator=torch.Generator().manual_seed(5)) * 3
    fmt = get(name)  # a bare "e4m3" here is the raw cast (resolve_format would scale it)
    result = gptq_quantize(w, hessian_of(x), fmt)
    assert torch.equal(fmt.quantize(result.weight), result.weight)
    assert not torch.equal(fmt.quantize(w), w)


def test_requantize_moves_fp32_scaled_results() -> None:
    """Why the docstring warns: with a per-channel fp32 scale from the original W, a row whose
    largest magnitude moved during the loop gets another scale from fmt.quantize."""
    x = correlated(300, 40, seed=2, dtype=torch.float32)
    w = torch.randn(12, 40, generator=torch.Generator().manual_seed(3))
    fmt = get("int4/channel")
    result = gptq_quantize(w, hessian_of(x), fmt)
    assert not torch.equal(fmt.quantize(result.weight), result.weight)
    rtn = fmt.quantize(w)
    assert torch.equal(fmt.quantize(rtn), rtn)  # round-to-nearest alone is idempotent here


def test_sparsity_mask_held_at_zero_matches_direct(problem) -> None:
    """mask=: pruned weights quantize to 0 inside the loop (their error fed forward) and the
    group scales are fit on the masked current weights."""
    from picojoule.sparsity import nm_mask

    w, h = problem
    mask = nm_mask(w, 2, 4)
    base = per_group_hand(8)

    def quant(wc: torch.Tensor, q: int) -> torch.Tensor:
        return torch.where(mask[:, q], base(wc * mask, q), 0.0)

    q_ref, loss_ref = obq_direct(w * mask, h, quant)
    result = gptq_quantize(w, h, "int4/block8", mask=mask, block_size=16)
    assert_same(result, q_ref, loss_ref)
    assert (result.weight[~mask] == 0).all()
    # better than quantizing the masked weight and zeroing the pruned positions afterwards
    after = gptq_quantize(w * mask, h, "int4/block8").weight * mask
    hd = dampened(h, 0.01)

    def objective(q: torch.Tensor) -> float:
        dw = w * mask - q
        return float(torch.einsum("ri,ij,rj->", dw, hd, dw))

    assert objective(result.weight) < objective(after)
    with pytest.raises(ShapeError, match="mask"):
        gptq_quantize(w, h, "int4", mask=mask[:, :8])


def test_dead_columns_are_zeroed(problem) -> None:
    w, _ = problem
    x = correlated(400, 48, seed=0)
    x[:, [3, 17]] = 0.0
    h = hessian_of(x)
    assert dead_columns(h).nonzero().flatten().tolist() == [3, 17]
    for kw in ({}, {"act_order": True}):
        result = gptq_quantize(w, h, "int4/channel", **kw)
        assert (result.weight[:, [3, 17]] == 0).all()
        assert (result.weight[:, [2, 4]] != 0).any()


# --- (b) what the paper reports, in kind -------------------------------------------------


@pytest.mark.parametrize("name", ["int4/channel", "int4/block32", "nvfp4"])
def test_beats_rtn_on_correlated_inputs(name: str) -> None:
    cols = 128
    x_cal = correlated(2048, cols, seed=10, dtype=torch.float32)
    x_test = correlated(1024, cols, seed=11, dtype=torch.float32, mix=10)  # held out
    w = torch.randn(64, cols, generator=torch.Generator().manual_seed(12))
    fmt = get(name)
    gptq = gptq_quantize(w, hessian_of(x_cal), fmt).weight
    rtn = fmt.quantize(w)

    def out_err(q: torch.Tensor) -> float:
        return float(((x_test @ w.T - x_test @ q.T) ** 2).sum())

    assert out_err(gptq) < 0.8 * out_err(rtn)


# --- the Hessian ------------------------------------------------------------------------


def test_accumulator_rows_batches_and_dtype() -> None:
    x = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(20))
    rows = x.reshape(-1, 7).to(F64)
    expected = 2.0 / 15 * rows.T @ rows
    whole = HessianAccumulator()
    whole.add_batch(x)
    parts = HessianAccumulator(7)
    for i in range(3):
        parts.add_batch(x[i])
    parts.add_batch(torch.empty(0, 7))
    assert whole.n == parts.n == 15
    torch.testing.assert_close(whole.hessian(), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(parts.hessian(), expected, rtol=1e-12, atol=1e-12)
    assert whole.hessian().dtype == F64
    f32 = HessianAccumulator(dtype=torch.float32)
    f32.add_batch(x)
    assert f32.hessian().dtype == torch.float32
    torch.testing.assert_close(f32.hessian().to(F64), expected, rtol=1e-5, atol=1e-5)


def test_accumulator_errors() -> None:
    acc = HessianAccumulator(7)
    with pytest.raises(HessianError, match="add_batch"):
        acc.hessian()
    with pytest.raises(ShapeError, match="7"):
        acc.add_batch(torch.randn(4, 6))
    with pytest.raises(ConfigError):
        HessianAccumulator(dtype=torch.float16)


def test_inverse_cholesky_factor() -> None:
    h = hessian_of(correlated(100, 12, seed=21))
    u = dampened_inverse_cholesky(h, 0.01)
    assert torch.equal(u, u.triu())
    torch.testing.assert_close(u.T @ u, torch.linalg.inv(dampened(h, 0.01)), rtol=1e-9, atol=1e-12)


def test_inverse_cholesky_retries_then_fails() -> None:
    h = torch.eye(6, dtype=F64)
    h[5, 5] = -0.05  # not PSD: damp 0.01 * mean(diag) leaves it negative, 0.1 does not
    with pytest.warns(RuntimeWarning, match="damp=0.1"):
        u = dampened_inverse_cholesky(h, 0.01)
    assert torch.isfinite(u).all()
    with pytest.raises(HessianError, match="raise damp"):
        dampened_inverse_cholesky(h, 0.01, retries=0)
    with pytest.raises(HessianError, match="raise damp"):
        dampened_inverse_cholesky(-torch.eye(4, dtype=F64), 0.01)


# --- (c) failure paths --------------------------------------------------------------------


def test_refusals(problem) -> None:
    w, h = problem
    with pytest.raises(ConfigError, match="wcal:rtn"):
        gptq_quantize(w, h, "codebook16")
    with pytest.raises(ShapeError, match="48 input columns"):
        gptq_quantize(w, h[:32, :32], "int4")
    with pytest.raises(ShapeError, match="2-D"):
        gptq_quantize(w[None], h, "int4")
    nan_h = h.clone()
    nan_h[3, 4] = float("nan")
    with pytest.raises(HessianError, match="NaN"):
        gptq_quantize(w, nan_h, "int4")
    with pytest.raises(ConfigError, match="static_groups=True"):
        gptq_quantize(w, h, "mxfp4", act_order=True)
    with pytest.raises(ConfigError, match="rounding"):
        gptq_quantize(w, h, "int4", rounding="nearest")
    with pytest.raises(ConfigError, match="block_size"):
        gptq_quantize(w, h, "int4", block_size=0)
    with pytest.raises(ConfigError, match="damp"):
        gptq_quantize(w, h, "int4", damp=-1.0)
    bad = w.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(PicojouleError, match="NaN/inf"):
        gptq_quantize(bad, h, "int4")
