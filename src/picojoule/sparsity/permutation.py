"""Input-channel permutation search that raises the magnitude an N:M mask keeps.

Public: `PermutationResult`, `search_permutation(w, n, m, ...)`, `retained_magnitude`.

Why: an N:M mask keeps the N largest of every M consecutive input channels. Which channels
share a group is arbitrary -- reorder the input channels (and the producing layer's output
channels to match, see `permute_model`) and the network computes the same function while
the mask keeps more magnitude. Pool & Yu, "Channel Permutations for N:M Sparsity",
NeurIPS 2021, is the method behind NVIDIA's ASP; we follow its two ideas:

1. a cheap start: sort channels by L1 norm and deal them so each group of M gets one channel
   from each of M norm bands (the strong channels then rarely compete for the N slots);
2. exhaustive search over pairs of groups: for two groups (2M channels) try every way to split
   them into two groups of M (35 splits for M=4; for M > 4, the M*M single-channel swaps),
   on many disjoint random pairs at once, and keep the best split when it helps.

Candidates are ranked on a random row sample (`sample_rows`) for speed, but a change is
accepted only if the EXACT retained magnitude over all rows rises, so the result never
keeps less magnitude than the start, which itself is never worse than the identity.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import torch

from picojoule.sparsity.masks import check_nm

__all__ = ["PermutationResult", "search_permutation", "retained_magnitude"]

# Bound on floats materialised per candidate-scoring chunk (~64 MiB of fp32).
_CHUNK_FLOATS = 16 * 1024 * 1024
# Smallest relative gain of a pair of groups that counts as an improvement.
_MIN_GAIN = 1e-9


@dataclass(frozen=True, kw_only=True)
class PermutationResult:
    """A permutation of input channels and the |w| an N:M mask keeps before and after it.

    `perm[j]` is the ORIGINAL channel placed at position j: permuted weight = w[:, perm].
    Magnitudes are sums of |w| (same unit as the weights).
    """

    perm: torch.Tensor
    n: int
    m: int
    total_magnitude: float
    retained_before: float
    retained_after: float
    rounds: int
    accepted: int

    @property
    def kept_fraction_before(self) -> float:
        return self.retained_before / self.total_magnitude if self.total_magnitude else 1.0

    @property
    def kept_fraction_after(self) -> float:
        return self.retained_after / self.total_magnitude if self.total_magnitude else 1.0

    @property
    def gain(self) -> float:
        """Relative rise in retained magnitude (0.02 = 2% more kept)."""
        return self.retained_after / self.retained_before - 1.0 if self.retained_before else 0.0


def _channel_matrix(w: torch.Tensor) -> torch.Tensor:
    """|w| as [rows, C] with input channels (dim 1) as columns, in float32."""
    return w.detach().abs().float().movedim(1, -1).reshape(-1, w.shape[1])


def _retained(mat: torch.Tensor, perm: torch.Tensor, n: int, m: int) -> float:
    groups = mat[:, perm].reshape(mat.shape[0], -1, m)
    return groups.topk(n, dim=-1).values.sum(dtype=torch.float64).item()


def retained_magnitude(w: torch.Tensor, n: int, m: int, perm: torch.Tensor | None = None) -> float:
    """Sum of |w| an n:m mask over input channels (dim 1) keeps, after optional `perm`."""
    check_nm(w.shape[1], n, m, what=f"input channels of weight {tuple(w.shape)}")
    mat = _channel_matrix(w)
    return _retained(mat, torch.arange(mat.shape[1]) if perm is None else perm, n, m)


@cache
def _splits(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate splits of 2m channels into groups (A, B); row 0 is the current split."""
    if m <= 4:
        # Every split, counted once: A holds channel 0. C(2m-1, m-1) = 35 for m = 4.
        firsts = [a for a in itertools.combinations(range(2 * m), m) if a[0] == 0]
    else:
        # C(15, 7) = 6435 splits for m = 8 is too many; single swaps cover the useful moves.
        base = list(range(m))
        firsts = [tuple(base)]
        for i, j in itertools.product(range(m), range(m, 2 * m)):
            firsts.append(tuple(sorted(base[:i] + [j] + base[i + 1 :])))
    seconds = [tuple(c for c in range(2 * m) if c not in a) for a in firsts]
    return torch.tensor(firsts), torch.tensor(seconds)


def _topn_sum(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.topk(n, dim=-1).values.sum(dim=-1)


def _band_start(mat: torch.Tensor, m: int) -> torch.Tensor:
    """Deal channels sorted by L1 norm so group g holds the g-th channel of each norm band."""
    order = mat.sum(dim=0).argsort(descending=True)
    return order.reshape(m, -1).T.flatten()


def _one_round(
    mat: torch.Tensor, groups: torch.Tensor, n: int, m: int, sample_rows: int, gen: torch.Generator
) -> int:
    """Improve disjoint random pairs of groups in place; returns the number of accepted splits."""
    n_groups = groups.shape[0]
    pairs = torch.randperm(n_groups, generator=gen)[: n_groups // 2 * 2].reshape(-1, 2)
    cols = groups[pairs].reshape(-1, 2 * m)  # [P, 2m] channel ids of each pair
    rows = torch.randperm(mat.shape[0], generator=gen)[:sample_rows]
    sample = mat[rows]
    split_a, split_b = _splits(m)
    chunk = max(1, _CHUNK_FLOATS // (len(rows) * split_a.shape[0] * m))
    best = []
    for lo in range(0, cols.shape[0], chunk):
        x = sample[:, cols[lo : lo + chunk]]  # [r, p, 2m]
        score = _topn_sum(x[:, :, split_a], n) + _topn_sum(x[:, :, split_b], n)  # [r, p, S]
        best.append(score.sum(dim=0).argmax(dim=1))
    choice = torch.cat(best)
    moved = (choice != 0).nonzero().flatten()
    if moved.numel() == 0:
        return 0
    old = cols[moved]
    new_a = torch.gather(old, 1, split_a[choice[moved]])
    new_b = torch.gather(old, 1, split_b[choice[moved]])
    new = torch.cat([new_a, new_b], dim=1)
    # Exact check on every row, in float64, pair by pair.
    full = mat.shape[0]
    before = _topn_sum(mat[:, old].reshape(full, -1, 2, m), n).double().sum(dim=(0, 2))
    after = _topn_sum(mat[:, new].reshape(full, -1, 2, m), n).double().sum(dim=(0, 2))
    # A relative margin keeps float64 summation-order noise from ever counting as a gain.
    ok = after > before * (1.0 + _MIN_GAIN)
    groups[pairs[moved[ok], 0]] = new_a[ok]
    groups[pairs[moved[ok], 1]] = new_b[ok]
    return int(ok.sum())


def search_permutation(
    w: torch.Tensor,
    n: int = 2,
    m: int = 4,
    *,
    rounds: int = 20,
    patience: int = 3,
    sample_rows: int = 256,
    seed: int = 0,
) -> PermutationResult:
    """Search an input-channel (dim 1) permutation of `w` that raises the |w| kept by n:m.

    Runs at most `rounds` rounds, stopping after `patience` rounds with no accepted change.
    Deterministic for a given `seed`. Never returns less retained magnitude than the identity.
    """
    check_nm(w.shape[1], n, m, what=f"input channels of weight {tuple(w.shape)}")
    mat = _channel_matrix(w)
    total = mat.sum(dtype=torch.float64).item()
    identity = torch.arange(mat.shape[1])
    before = _retained(mat, identity, n, m)
    band = _band_start(mat, m)
    band_kept = _retained(mat, band, n, m)
    groups = (band if band_kept > before else identity).reshape(-1, m).clone()
    gen = torch.Generator().manual_seed(seed)
    accepted = idle = done = 0
    while done < rounds and idle < patience and groups.shape[0] > 1:
        gained = _one_round(mat, groups, n, m, sample_rows, gen)
        accepted += gained
        idle = 0 if gained else idle + 1
        done += 1
    perm = groups.flatten()
    return PermutationResult(
        perm=perm,
        n=n,
        m=m,
        total_magnitude=total,
        retained_before=before,
        retained_after=_retained(mat, perm, n, m),
        rounds=done,
        accepted=accepted,
    )
