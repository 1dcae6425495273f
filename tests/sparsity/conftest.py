"""Shared fixtures: small models with the digits CNN's layer structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from picojoule.models import digits


@pytest.fixture
def cnn() -> nn.Sequential:
    """The untrained digits CNN with fixed random weights."""
    torch.manual_seed(0)
    return digits.build().eval()


@pytest.fixture
def digits_batch() -> torch.Tensor:
    return torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
