"""AWQ building blocks: the scale search and the clip search against plain float64 loops, AWQ is
never worse than RTN on its calibration objective and beats it on inputs with salient
channels (the paper's claim, in kind), the clip reproduces exactly under the format's own block
scales, chunking changes nothing, bad input is refused."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

import picojoule.quant.awq as awq_mod
from picojoule.errors import ConfigError
from picojoule.quant import quantize_
from picojoule.quant.awq import apply_clip_, awq_clip, awq_search_scale
from picojoule.quant.recipe import resolve_format


def _qw(name: str):
    fmt = resolve_format(name, "weight")
    return lambda w: fmt.quantize(w)


def _salient(n: int, c_in: int, g: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """Inputs whose first few channels are much larger on average (AWQ's salient channels)."""
    x = torch.randn(n, c_in, generator=g, dtype=dtype)
    x[:, :4] *= 20.0
    return x


def _linears(shapes, c_in: int, seed: int, dtype=torch.float32) -> list[nn.Linear]:
    torch.manual_seed(seed)
    return [nn.Linear(c_in, k, dtype=dtype) for k in shapes]


# --- the scale search against plain loops ----------------------------------------------------


def _search_loop(x: list[list[float]], ws: list[list[list[float]]], quant_w, grid: int):
    """AWQ's grid search written out: s = mean|x|^alpha (>= 1e-4) / sqrt(max s * min s),
    W' = Q(W diag(s)) diag(s)^-1, loss = mean squared difference of every output."""
    n, c_in = len(x), len(x[0])
    x_mean = [sum(abs(x[t][j]) for t in range(n)) / n for j in range(c_in)]
    y_ref = [[[sum(x[t][j] * w[o][j] for j in range(c_in)) for o in range(len(w))]
              for t in range(n)] for w in ws]  # fmt: skip
    losses, scales = [], []
    for i in range(grid):
        alpha = i / grid
        s = [max(m**alpha, 1e-4) for m in x_mean]
        norm = math.sqrt(max(s) * min(s))
        s = [v / norm for v in s]
        sse, count = 0.0, 0
        for w, yr in zip(ws, y_ref, strict=True):
            scaled = torch.tensor([[w[o][j] * s[j] for j in range(c_in)] for o in range(len(w))],
                                  dtype=torch.float64)  # fmt: skip
            q = quant_w(scaled).tolist()
            cand = [[q[o][j] / s[j] for j in range(c_in)] for o in range(len(w))]
            for t in range(n):
                for o in range(len(w)):
                    y = sum(x[t][j] * cand[o][j] for j in range(c_in))
                    sse += (yr[t][o] - y) ** 2
                    count += 1
        losses.append(sse / count)
        scales.append(s)
    best = min(range(grid), key=lambda i: (losses[i], i))  # first of equal losses
    return best / grid, scales[best], losses


@pytest.mark.parametrize("n", [12, 80])  # fewer tokens than channels (direct) and more (Gram)
def test_search_scale_equals_paper_loop(n):
    g = torch.Generator().manual_seed(0)
    c_in = 64
    x = _salient(n, c_in, g, torch.float64)
    x[:, 10] = 0.0  # a dead channel: mean|x| = 0, s clamps to 1e-4 before normalising
    lins = _linears((5, 3), c_in, seed=1, dtype=torch.float64)
    q = _qw("int4/block32")
    got = awq_search_scale(x, lins, q)
    alpha, s, losses = _search_loop(x.tolist(), [m.weight.tolist() for m in lins], q, 20)
    assert got.alphas == tuple(i / 20 for i in range(20))
    torch.testing.assert_close(torch.tensor(got.losses), torch.tensor(losses), rtol=1e-9, atol=0)
    assert got.alpha == alpha and got.alpha > 0
    assert got.s.dtype == torch.float64
    torch.testing.assert_close(got.s, torch.tensor(s, dtype=torch.float64), rtol=1e-12, atol=0)
    assert got.loss == got.losses[int(round(alpha * 20))] and got.rtn_loss == got.losses[0]


@pytest.mark.parametrize("fmt", ["int4/block32", "int4/channel", "nvfp4", "mxfp4"])
@pytest.mark.parametrize("salient", [True, False])
def test_awq_is_never_worse_than_rtn_on_its_objective(fmt, salient):
    g = torch.Generator().manual_seed(2)
    c_in = 64
    x = _salient(96, c_in, g) if salient else torch.randn(96, c_in, generator=g)
    lins = _linears((48, 16), c_in, seed=3)
    q = _qw(fmt)
    res = awq_search_scale(x, lins, q)
    # alpha = 0 is s = 1: exactly round-to-nearest, and its loss is RTN's output MSE
    rtn = torch.cat([x @ (m.weight - q(m.weight)).detach().T for m in lins], 1).pow(2).mean()
    assert res.rtn_loss == pytest.approx(float(rtn), rel=1e-5)
    assert res.loss <= res.rtn_loss
    assert res.loss == min(res.losses)
    if res.alpha == 0.0:
        assert torch.equal(res.s, torch.ones(c_in))


def test_awq_beats_rtn_on_salient_channels():
    """int4/block32: scaling the salient channels up cuts the output error on held-out inputs
    (AWQ section 3.2) and the search picks alpha > 0."""
    g = torch.Generator().manual_seed(4)
    c_in = 128
    calib, test = _salient(512, c_in, g), _salient(512, c_in, g)
    lins = _linears((64, 32), c_in, seed=5)
    q = _qw("int4/block32")
    res = awq_search_scale(calib, lins, q)
    assert res.alpha > 0
    assert res.loss < 0.9 * res.rtn_loss
    for m in lins:
        w = m.weight.detach()
        rtn = (test @ (q(w) - w).T).pow(2).mean()
        scaled = (test @ (q(w * res.s) / res.s - w).T).pow(2).mean()
        assert scaled < 0.9 * rtn, (float(scaled), float(rtn))


def test_forward_mode_uses_the_callers_block_output():
    g = torch.Generator().manual_seed(6)
    c_in = 64
    x = _salient(200, c_in, g)
    gate, up = _linears((96, 96), c_in, seed=7)
    q = _qw("int4/block32")
    # forward = the concatenated linear outputs: the same objective as the default
    concat = awq_search_scale(
        x, [gate, up], q, forward=lambda ws: torch.cat([x @ w.T for w in ws], 1)
    )
    default = awq_search_scale(x, [gate, up], q)
    torch.testing.assert_close(torch.tensor(concat.losses), torch.tensor(default.losses),
                               rtol=1e-4, atol=0)  # fmt: skip
    assert concat.alpha == default.alpha
    # a real MLP block (SwiGLU with a float down projection) as the objective
    down = torch.randn(c_in, 96, generator=g) / 10
    seen = []

    def mlp(ws):
        seen.append(len(ws))
        return (F.silu(x @ ws[0].T) * (x @ ws[1].T)) @ down.T

    res = awq_search_scale(x, [gate, up], q, forward=mlp, grid=10)
    assert seen == [2] * 11  # the original weights once, then one call per alpha
    assert len(res.losses) == 10 and res.loss <= res.rtn_loss
    rtn = (mlp([q(gate.weight.detach()), q(up.weight.detach())]) - mlp(
        [gate.weight.detach(), up.weight.detach()])).pow(2).mean()  # fmt: skip
    assert res.rtn_loss == pytest.approx(float(rtn), rel=1e-5)


# --- the clip search against plain loops -----------------------------------------------------


def _clip_loop(x, w, quant_w, group, grid, max_shrink, max_tokens):
    """AWQ's auto-clip written out per (row, group): clamp the group to +-r*amax, quantize the
    group alone (the formats here are row/block-separable), score the group's partial output
    error on evenly spaced tokens; keep the first best r."""
    n, c_in = len(x), len(w[0])
    m = min(n, max_tokens)
    toks = [x[k * n // m] for k in range(m)]
    out = []
    for row in w:
        vals = []
        for g0 in range(0, c_in, group):
            cols = range(g0, min(g0 + group, c_in))
            amax = max(abs(row[j]) for j in cols)
            best_err, best_val = math.inf, amax
            for i in range(math.floor(grid * max_shrink)):
                mv = amax * (1 - i / grid)
                clamped = [min(max(row[j], -mv), mv) for j in cols]
                qg = quant_w(torch.tensor([clamped], dtype=torch.float64)).tolist()[0]
                err = sum(sum(t[j] * (qg[k] - row[j]) for k, j in enumerate(cols)) ** 2
                          for t in toks) / m  # fmt: skip
                if err < best_err:
                    best_err, best_val = err, mv
            vals.append(best_val)
        out.append(vals)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    "fmt, group, c_in",
    [("int4/block32", 32, 64), ("int4/channel", 48, 48), ("int4/block16", 16, 40)],
)
def test_clip_equals_paper_loop(fmt, group, c_in):
    g = torch.Generator().manual_seed(8)
    x = _salient(50, c_in, g, torch.float64)
    w = torch.randn(6, c_in, generator=g, dtype=torch.float64)
    w[:, 1] *= 8  # a weight outlier per row: clipping it pays
    q = _qw(fmt)
    got = awq_clip(x, w, q, group=group, max_tokens=16)
    want = _clip_loop(x.tolist(), w.tolist(), q, group, 20, 0.5, 16)
    assert got.shape == (6, -(-c_in // group))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    group_amax = F.pad(w, (0, got.shape[1] * group - c_in)).abs().reshape(6, -1, group).amax(-1)
    assert bool((got <= group_amax).all()) and bool((got < group_amax).any())  # some clipped


def test_clip_is_reproduced_exactly_by_the_formats_block_scales():
    """After apply_clip_, each block's amax is its clip value, so quantizing the clamped weight
    with the format's own data-derived scales is exactly the candidate the search scored: every
    (row, group)'s partial output error is at most RTN's."""
    g = torch.Generator().manual_seed(9)
    c_in, group = 128, 32
    x = _salient(300, c_in, g)
    lin = _linears((40,), c_in, seed=10)[0]
    with torch.no_grad():
        lin.weight[:, 7] *= 10
    w0 = lin.weight.detach().clone()
    q = _qw("int4/block32")
    mv = awq_clip(x, w0, q, group=group)
    apply_clip_(lin, mv)
    w1 = lin.weight.detach()
    assert torch.equal(w1.abs().reshape(40, -1, group).amax(-1), mv)
    assert bool((mv < w0.abs().reshape(40, -1, group).amax(-1)).any())  # some groups clipped
    xg = x.reshape(300, -1, group)  # all tokens: the search used all 300 (<= max_tokens)

    def per_group_err(wq):
        d = (wq - w0).reshape(40, -1, group)
        return torch.einsum("tgk,ogk->otg", xg, d).pow(2).mean(1)

    clipped, rtn = per_group_err(q(w1)), per_group_err(q(w0))
    assert bool((clipped <= rtn * (1 + 1e-5) + 1e-12).all())
    assert float(clipped.sum()) < 0.95 * float(rtn.sum())


def test_clip_lowers_per_channel_int4_output_error():
    """int4/channel on Gaussian weights: the row amax wastes levels on the tails; the searched
    clips (about 0.9 of the amax) cut the held-out output error (measured ~0.86x of RTN)."""
    g = torch.Generator().manual_seed(11)
    c_in = 96
    calib, test = torch.randn(512, c_in, generator=g), torch.randn(512, c_in, generator=g)
    w = torch.randn(64, c_in, generator=g)
    lin = nn.Linear(c_in, 64)
    lin.weight.data.copy_(w)
    q = _qw("int4/channel")
    apply_clip_(lin, awq_clip(calib, w, q, group=c_in))
    rtn = (test @ (q(w) - w).T).pow(2).mean()
    clipped = (test @ (q(lin.weight.detach()) - w).T).pow(2).mean()
    assert clipped < 0.92 * rtn, (float(clipped), float(rtn))


def test_chunking_changes_nothing(monkeypatch):
    g = torch.Generator().manual_seed(12)
    c_in = 64
    x = _salient(300, c_in, g)
    lins = _linears((24, 40), c_in, seed=13)
    q = _qw("int4/block32")
    big_s = awq_search_scale(x, lins, q, grid=8)
    big_c = awq_clip(x, lins[1].weight, q, group=32, max_tokens=100)
    monkeypatch.setattr(awq_mod, "_CHUNK", 1000)  # a few rows / tokens per chunk
    small_s = awq_search_scale(x, lins, q, grid=8)
    small_c = awq_clip(x, lins[1].weight, q, group=32, max_tokens=100)
    torch.testing.assert_close(torch.tensor(small_s.losses), torch.tensor(big_s.losses),
                               rtol=1e-5, atol=0)  # fmt: skip
    assert small_s.alpha == big_s.alpha
    assert torch.equal(small_c, big_c)


# --- refusals --------------------------------------------------------------------------------


def _one_liner(e: pytest.ExceptionInfo) -> None:
    assert str(e.value) and "\n" not in str(e.value)


def _bad_search(kind: str):
    x, q = torch.randn(10, 8), _qw("int4/channel")
    a, b = nn.Linear(8, 4), nn.Linear(8, 3)
    kw: dict = {}
    if kind == "grid0":
        kw["grid"] = 0
    elif kind == "width":
        x = torch.randn(10, 9)
    elif kind == "nan":
        x[2, 3] = float("nan")
    elif kind == "empty":
        x = torch.zeros(0, 8)
    elif kind == "mixed_in":
        b = nn.Linear(7, 3)
    elif kind == "quantized":
        quantize_(nn.Sequential(a), "w:int4/channel")
    elif kind == "parametrized":
        parametrize.register_parametrization(b, "weight", nn.Identity())
    elif kind == "duplicate":
        b = a
    elif kind == "not_linear":
        b = nn.Conv1d(8, 3, 1)
    elif kind == "bad_quant":
        q = lambda w: w[:, :2]  # noqa: E731
    elif kind == "no_linears":
        return x, [], q, kw
    return x, [a, b], q, kw


@pytest.mark.parametrize(
    "kind",
    ["grid0", "width", "nan", "empty", "mixed_in", "quantized", "parametrized", "duplicate",
     "not_linear", "bad_quant", "no_linears"],
)  # fmt: skip
def test_search_scale_refusals(kind):
    x, lins, q, kw = _bad_search(kind)
    with pytest.raises(ConfigError) as e:
        awq_search_scale(x, lins, q, **kw)
    _one_liner(e)


@pytest.mark.parametrize(
    "kw",
    [{"group": 0}, {"group": 32, "grid": 0}, {"group": 32, "max_shrink": 0.0},
     {"group": 32, "max_shrink": 1.5}, {"group": 32, "grid": 1, "max_shrink": 0.5},
     {"group": 32, "max_tokens": 0}, {"group": True}],
)  # fmt: skip
def test_clip_refusals(kw):
    with pytest.raises(ConfigError) as e:
        awq_clip(torch.randn(10, 64), torch.randn(4, 64), _qw("int4/block32"), **kw)
    _one_liner(e)


def test_clip_refuses_bad_tensors():
    q = _qw("int4/block32")
    for x, w in [(torch.randn(10, 63), torch.randn(4, 64)), (torch.randn(10, 64), torch.randn(64)),
                 (torch.randn(10, 64), torch.full((4, 64), float("inf")))]:  # fmt: skip
        with pytest.raises(ConfigError) as e:
            awq_clip(x, w, q, group=32)
        _one_liner(e)


@pytest.mark.parametrize(
    "max_val, kw",
    [(torch.ones(4, 3), {}), (torch.ones(5, 2), {}), (-torch.ones(4, 2), {}),
     (torch.full((4, 2), float("nan")), {}), (torch.ones(4, 2), {"group": 16}),
     (torch.ones(4), {})],
)  # fmt: skip
def test_apply_clip_refusals_change_nothing(max_val, kw):
    lin = nn.Linear(64, 4)
    w0 = lin.weight.detach().clone()
    with pytest.raises(ConfigError) as e:
        apply_clip_(lin, max_val, **kw)
    _one_liner(e)
    assert torch.equal(lin.weight.detach(), w0)


def test_apply_clip_ragged_group_needs_group():
    lin = nn.Linear(40, 2)
    with torch.no_grad():
        lin.weight.fill_(5.0)
    with pytest.raises(ConfigError, match="group="):
        apply_clip_(lin, torch.ones(2, 3))
    apply_clip_(lin, torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]), group=16)
    assert lin.weight[0, :16].eq(1).all() and lin.weight[0, 16:32].eq(2).all()
    assert lin.weight[0, 32:].eq(3).all() and lin.weight[1].eq(4).all()
