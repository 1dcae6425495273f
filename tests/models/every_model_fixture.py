"""User models for tests/models/test_every_command.py: `--model every_model_fixture:build_mlp
--data every_model_fixture:mlp_data --metric every_model_fixture:accuracy` and the same for
a depthwise-separable CNN. Random weights and data (no sklearn, nothing downloaded); a few
small batches, so every command runs in a second."""

from __future__ import annotations

import torch
import torch.nn as nn


def build_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


def build_dwcnn() -> nn.Module:
    """Depthwise-separable: a 3x3 stem, a 3x3 depthwise conv (stride 1: Winograd-eligible),
    a 1x1 pointwise conv, then pooling and a classifier."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 16, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )


def _batches(shape: tuple[int, ...], n: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, *shape, generator=g), torch.randint(0, 4, (16,), generator=g))
            for _ in range(n)]  # fmt: skip


def mlp_data() -> dict[str, list]:
    return {"train": _batches((16,), 2, 0), "eval": _batches((16,), 1, 1)}


def cnn_data() -> dict[str, list]:
    return {"train": _batches((1, 8, 8), 2, 0), "eval": _batches((1, 8, 8), 1, 1)}


def accuracy(model: nn.Module, batches: list) -> float:
    """Top-1 accuracy in [0, 1]."""
    right = sum(int((model(x).argmax(-1) == y).sum()) for x, y in batches)
    return right / sum(len(y) for _, y in batches)


def broken() -> nn.Module:
    """A builder that fails: every command says so in one line and writes nothing."""
    raise RuntimeError("checkpoint.pt is missing")
