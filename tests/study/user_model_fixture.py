"""A user model for the CLI test: `--model user_model_fixture:build` etc."""

import torch
import torch.nn as nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def loader():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(32, 8, generator=g), torch.randint(0, 4, (32,), generator=g))]


def bad_loader():
    return [(torch.randn(32, 5), torch.zeros(32))]


def score(model, batches):
    return float(sum((model(x).argmax(-1) == y).float().mean() for x, y in batches) / len(batches))
