import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from picojoule.errors import ShapeError
from picojoule.sparsity import (
    block_mask,
    channel_mask,
    nm_mask,
    parse_pattern,
    unstructured_mask,
    weight_mask,
)
from picojoule.sparsity.masks import from_gemm_view, gemm_view

NM = [(1, 2), (1, 4), (2, 4), (3, 4), (2, 8), (4, 8), (1, 8), (5, 16)]


@settings(max_examples=60, deadline=None)
@given(
    nm=st.sampled_from(NM),
    rows=st.integers(1, 6),
    groups=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
)
def test_nm_mask_keeps_exactly_n_largest_per_group(nm, rows, groups, seed, ties) -> None:
    n, m = nm
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, groups * m, generator=gen)
    if ties:  # heavy ties still give exactly n per group
        w = w.round()
    mask = nm_mask(w, n, m)
    g_mask = mask.reshape(rows, groups, m)
    g_abs = w.abs().reshape(rows, groups, m)
    assert (g_mask.sum(-1) == n).all()
    kept_min = torch.where(g_mask, g_abs, torch.inf).amin(-1)
    dropped_max = torch.where(~g_mask, g_abs, -torch.inf).amax(-1)
    assert (kept_min >= dropped_max).all()


def test_nm_mask_runs_along_the_given_dim() -> None:
    w = torch.randn(8, 3, 5)
    mask = nm_mask(w, 2, 4, dim=0)
    assert (mask.reshape(2, 4, 3, 5).sum(1) == 2).all()


def test_conv_weight_mask_groups_input_channels() -> None:
    w = torch.randn(6, 8, 3, 3)
    mask = weight_mask(w, parse_pattern("2:4"))
    # Every filter tap (k, r, s) keeps 2 of each 4 consecutive input channels.
    assert (mask.reshape(6, 2, 4, 3, 3).sum(2) == 2).all()


@pytest.mark.parametrize(
    ("shape", "n", "m", "fragment"),
    [((4, 6), 2, 4, "not divisible by M=4"), ((4, 8), 4, 4, "1 <= N < M"), ((), 2, 4, "scalar")],
)
def test_nm_mask_bad_input(shape, n, m, fragment) -> None:
    with pytest.raises(ShapeError, match=fragment):
        nm_mask(torch.randn(shape), n, m)


def test_first_conv_cannot_take_2to4() -> None:
    with pytest.raises(ShapeError, match="input channels .* not divisible by M=4"):
        weight_mask(torch.randn(16, 1, 3, 3), parse_pattern("2:4"))


def test_bias_has_no_reduction_dim() -> None:
    with pytest.raises(ShapeError, match="no reduction dimension"):
        weight_mask(torch.randn(16), parse_pattern("unstructured:0.5"))


@settings(max_examples=40, deadline=None)
@given(numel=st.integers(1, 300), density=st.floats(0.01, 1.0), seed=st.integers(0, 999))
def test_unstructured_mask_keeps_round_density_largest(numel, density, seed) -> None:
    w = torch.randn(numel, generator=torch.Generator().manual_seed(seed))
    mask = unstructured_mask(w, density)
    assert int(mask.sum()) == max(1, round(density * numel))
    if not mask.all():
        assert w.abs()[mask].min() >= w.abs()[~mask].max()


def test_block_mask_is_tile_constant_with_exact_count() -> None:
    w = torch.randn(8, 12)
    mask = block_mask(w, 2, 3, 0.5)
    tiles = mask.reshape(4, 2, 4, 3)
    assert (tiles.all(dim=(1, 3)) == tiles.any(dim=(1, 3))).all()  # whole tiles only
    assert int(tiles.all(dim=(1, 3)).sum()) == 8
    with pytest.raises(ShapeError, match="does not tile"):
        block_mask(w, 3, 3, 0.5)


def test_channel_mask_drops_weakest_input_channels() -> None:
    w = torch.ones(4, 6, 3, 3) * torch.tensor([5.0, 1, 4, 2, 6, 3])[None, :, None, None]
    mask = channel_mask(w, 0.5, dim=1)
    assert mask[0, :, 0, 0].tolist() == [True, False, True, False, True, False]
    assert (mask == mask[:1, :, :1, :1]).all()


def test_gemm_view_round_trips_and_puts_channels_fastest() -> None:
    w = torch.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    mat = gemm_view(w)
    assert mat.shape == (2, 12)
    assert mat[0, :3].tolist() == w[0, :, 0, 0].tolist()
    assert torch.equal(from_gemm_view(mat, w.shape), w)
