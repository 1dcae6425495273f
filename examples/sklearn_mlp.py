"""Your own model in `picojoule study`: an MLP on scikit-learn's breast-cancer data.

The three callables a study needs, in one module (the README's "Your own model" section):

    PYTHONPATH=examples picojoule study --model sklearn_mlp:build --data sklearn_mlp:train \
        --eval sklearn_mlp:held_out --metric sklearn_mlp:accuracy --metric-name "accuracy (%)"

- `build()` returns the trained model (it trains in ~1 s; the study calls it once per recipe
  and picojoule caches nothing of yours, so keep it deterministic: fixed seeds).
- `train()` gives the batches that calibrate activation formats and fine-tune (`--data`);
  `held_out()` the batches that score every recipe (`--eval`). A batch is an
  `(inputs, targets)` pair. One loader may return both instead: `splits()` below, a dict
  `{"train": ..., "eval": ...}` given as `--data sklearn_mlp:splits`.
- `accuracy(model, batches) -> float`: higher is better (`--lower-is-better` for a loss).

Run this file to train once and print the held-out accuracy (CI does, so it cannot rot).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_breast_cancer  # ships with scikit-learn: no download

BATCH = 64


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardized features, 75/25 split with a fixed permutation: (x_tr, y_tr, x_ev, y_ev)."""
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(0.75 * len(x))
    mean, std = x[:cut].mean(0), x[:cut].std(0) + 1e-8  # statistics of the training part only
    x = (x - mean) / std
    as_t = lambda a, dt: torch.tensor(a, dtype=dt)  # noqa: E731
    return (
        as_t(x[:cut], torch.float32),
        as_t(y[:cut], torch.long),
        as_t(x[cut:], torch.float32),
        as_t(y[cut:], torch.long),
    )


def _batches(x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]


def train() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The `--data` loader: the 426 training samples."""
    x_tr, y_tr, _, _ = _data()
    return _batches(x_tr, y_tr)


def held_out() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The `--eval` loader: the 143 held-out samples."""
    _, _, x_ev, y_ev = _data()
    return _batches(x_ev, y_ev)


def splits() -> dict[str, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Both in one `--data` loader, by role."""
    return {"train": train(), "eval": held_out()}


def build() -> nn.Module:
    """A 30-64-32-2 MLP trained for 60 full-batch Adam steps (deterministic)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2)
    )  # fmt: skip
    x, y, _, _ = _data()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def accuracy(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Top-1 accuracy in percent over `batches`."""
    right = total = 0
    with torch.no_grad():
        for x, y in batches:
            right += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return 100.0 * right / total


if __name__ == "__main__":
    data = splits()
    model = build()
    n = sum(len(y) for _, y in data["eval"])
    print(f"held-out accuracy {accuracy(model, data['eval']):.2f}% on {n} samples")
