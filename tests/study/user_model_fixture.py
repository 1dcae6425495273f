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


def held_out():
    """24 other samples: what --eval scores."""
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(24, 8, generator=g), torch.randint(0, 4, (24,), generator=g))]


def splits():
    return {"train": loader(), "eval": held_out()}


def count(model, batches):
    """How many samples the metric was given: says which data scored a row."""
    model(batches[0][0])
    return float(sum(len(y) for _, y in batches))


THREADS_SEEN: dict[str, list[int]] = {}


class ThreadSpy(nn.Sequential):
    """Records the intra-op thread count of every forward pass (the metric's and the study's)."""

    def forward(self, x):
        THREADS_SEEN.setdefault("forward", []).append(torch.get_num_threads())
        return super().forward(x)


def build_threads():
    THREADS_SEEN.setdefault("build", []).append(torch.get_num_threads())
    torch.manual_seed(0)
    return ThreadSpy(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def loader_threads():
    THREADS_SEEN.setdefault("loader", []).append(torch.get_num_threads())
    return loader()


def score_threads(model, batches):
    THREADS_SEEN.setdefault("score", []).append(torch.get_num_threads())
    forwards = THREADS_SEEN.setdefault("forward", [])
    n = len(forwards)
    out = score(model, batches)
    THREADS_SEEN.setdefault("metric forward", []).extend(forwards[n:])
    return out
