import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from picojoule.errors import ConfigError, ShapeError
from picojoule.sparsity import (
    nm_mask,
    permute_channels_,
    permute_pair_,
    retained_magnitude,
    search_permutation,
    sparsify_,
)


def _column_scaled(rows: int, cols: int, seed: int) -> torch.Tensor:
    """Weights whose input channels differ in scale, as trained layers' do."""
    gen = torch.Generator().manual_seed(seed)
    scale = torch.exp(torch.randn(cols, generator=gen))
    return torch.randn(rows, cols, generator=gen) * scale


@settings(max_examples=25, deadline=None)
@given(
    nm=st.sampled_from([(2, 4), (1, 4), (2, 8)]),
    rows=st.integers(1, 24),
    groups=st.integers(1, 8),
    seed=st.integers(0, 10_000),
)
def test_search_never_lowers_retained_magnitude(nm, rows, groups, seed) -> None:
    n, m = nm
    w = _column_scaled(rows, groups * m, seed)
    found = search_permutation(w, n, m, rounds=4, sample_rows=8, seed=seed)
    assert sorted(found.perm.tolist()) == list(range(groups * m))
    assert found.retained_before == pytest.approx(retained_magnitude(w, n, m))
    assert found.retained_after == pytest.approx(retained_magnitude(w, n, m, found.perm))
    assert found.retained_after >= found.retained_before


def test_search_raises_kept_magnitude_on_uneven_channels() -> None:
    w = _column_scaled(64, 64, seed=3)
    found = search_permutation(w, 2, 4, rounds=10)
    kept_plain = (w * nm_mask(w, 2, 4)).abs().sum().item()
    kept_perm = (w[:, found.perm] * nm_mask(w[:, found.perm], 2, 4)).abs().sum().item()
    assert kept_plain == pytest.approx(found.retained_before, rel=1e-6)
    assert kept_perm == pytest.approx(found.retained_after, rel=1e-6)
    assert found.gain > 0.01  # at least 1% more magnitude kept
    assert 0 < found.kept_fraction_before < found.kept_fraction_after <= 1


def test_search_is_deterministic_for_a_seed() -> None:
    w = _column_scaled(32, 32, seed=5)
    a = search_permutation(w, 2, 4, seed=7)
    b = search_permutation(w, 2, 4, seed=7)
    assert torch.equal(a.perm, b.perm)


def test_search_rejects_channel_counts_the_pattern_cannot_group() -> None:
    with pytest.raises(ShapeError, match="not divisible by M=4"):
        search_permutation(torch.randn(8, 6), 2, 4)


def test_permute_channels_keeps_the_digits_cnn_function(cnn, digits_batch) -> None:
    before = cnn(digits_batch)
    reports = {r.consumer: r for r in permute_channels_(cnn, digits_batch)}
    after = cnn(digits_batch)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert reports["2"].producer == "0" and reports["5"].producer == "2"
    assert reports["11"].producer == "9"
    assert reports["0"].reason == "1 input channels not divisible by M=4"
    assert "flatten spreads each channel over 4 features" in reports["9"].reason
    for r in reports.values():
        if r.permuted:
            assert r.kept_after >= r.kept_before


def test_permutation_then_2to4_keeps_more_than_plain_2to4(cnn, digits_batch) -> None:
    kept_plain = retained_magnitude(cnn[2].weight, 2, 4)
    permute_channels_(cnn, digits_batch)
    assert retained_magnitude(cnn[2].weight, 2, 4) >= kept_plain


def test_batchnorm_between_producer_and_consumer_is_permuted() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 4)
    )
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(5, 8)
    before = model(x)
    (report,) = [r for r in permute_channels_(model, x) if r.consumer == "4"]
    assert report.producer == "0"
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-6)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        return self.b(h) + h


def test_shared_producer_is_skipped_with_reason() -> None:
    model = _Residual()
    x = torch.randn(2, 8)
    before = model(x)
    (report,) = [r for r in permute_channels_(model, x) if r.consumer == "b"]
    assert not report.permuted and "feeds 2 users" in report.reason
    torch.testing.assert_close(model(x), before)


def test_permute_pair_refuses_masked_layers_and_mismatched_pairs() -> None:
    a, b = nn.Linear(4, 8), nn.Linear(8, 4)
    with pytest.raises(ShapeError, match="not a producer -> consumer pair"):
        permute_pair_(b, b, torch.arange(8))
    sparsify_(nn.Sequential(a, b), "2:4,classifier=sparse")
    with pytest.raises(ConfigError, match="before sparsify_"):
        permute_pair_(a, b, torch.arange(8))
