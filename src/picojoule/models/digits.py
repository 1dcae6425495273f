"""The built-in default model: a small CNN with 3x3 convs on scikit-learn's `load_digits`.

1,797 8x8 grey-scale digit images ship inside scikit-learn, so nothing is downloaded. The
split is fixed (stratified, seed 0, 30 % test); the model trains once in a few seconds on a
CPU and is cached (weights only, loaded with `weights_only=True`) under the user cache dir.

Architecture (input [B, 1, 8, 8]):
    conv3x3(1->16, pad 1) - ReLU - conv3x3(16->32, pad 1) - ReLU - maxpool 2
    - conv3x3(32->64, pad 1) - ReLU - maxpool 2 - flatten(256) - Linear(256->64) - ReLU
    - Linear(64->10)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from picojoule.errors import PicojouleError
from picojoule.fsio import atomic_writer
from picojoule.paths import cache_dir

__all__ = ["build", "dataset", "train", "load_default", "evaluate", "DigitsData"]

_VERSION = "digits-cnn-v1"  # bump when the architecture or training recipe changes
_SEED = 0


def build() -> nn.Sequential:
    """The untrained digits CNN (see module docstring)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


@dataclass(frozen=True)
class DigitsData:
    """Train/test tensors: images [n, 1, 8, 8] scaled to [0, 1], labels [n] int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def loader(self, split: str = "test", batch_size: int = 256, shuffle: bool = False):
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_test, self.y_test)
        gen = torch.Generator().manual_seed(_SEED)
        return DataLoader(
            TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle, generator=gen
        )


def dataset() -> DigitsData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    idx = list(range(len(y)))
    tr, te = train_test_split(idx, test_size=0.3, random_state=_SEED, stratify=d.target)
    return DigitsData(x[tr], y[tr], x[te], y[te])


def train(
    model: nn.Module, data: DigitsData, *, epochs: int = 30, lr: float = 3e-3, seed: int = _SEED
) -> nn.Module:
    """Adam, cross-entropy, fixed seed; deterministic on one machine."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for xb, yb in data.loader("train", batch_size=64, shuffle=True):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    model.eval()
    return model


@torch.no_grad()
def evaluate(model: nn.Module, data: DigitsData) -> float:
    """Test accuracy in percent (0-100)."""
    model.eval()
    correct = 0
    for xb, yb in data.loader("test"):
        correct += int((model(xb).argmax(-1) == yb).sum())
    return 100.0 * correct / len(data.y_test)


_SPLITS = ("x_train", "y_train", "x_test", "y_test")


def _cached_data(obj: object) -> DigitsData | None:
    """The split the model cache carries, if it is whole: 1,797 8x8 images in [0, 1] and
    their labels. Keeping it there spares a warm run importing scikit-learn (~2 s of `make
    demo`'s start on the project's machine)."""
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), torch.Tensor) for k in _SPLITS):
        return None
    data = DigitsData(*(obj[k] for k in _SPLITS))
    shapes_ok = (
        data.x_train.dtype == data.x_test.dtype == torch.float32
        and data.y_train.dtype == data.y_test.dtype == torch.int64
        and data.x_train.shape[1:] == data.x_test.shape[1:] == (1, 8, 8)
        and len(data.x_train) == len(data.y_train)
        and len(data.x_test) == len(data.y_test)
        and len(data.y_train) + len(data.y_test) == 1797
    )
    return data if shapes_ok else None


def load_default(*, retrain: bool = False) -> tuple[nn.Module, DigitsData]:
    """The trained digits CNN and its data, training once and caching the weights with the
    train/test split they were trained and scored on."""
    path = cache_dir() / f"{_VERSION}.pt"
    model = build()
    if path.exists() and not retrain:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            if state.get("version") == _VERSION:
                data = _cached_data(state.get("data"))
                if data is None:  # a cache from before the split was kept in it
                    data = dataset()
                    with contextlib.suppress(PicojouleError):  # a read-only cache still serves
                        _save(path, {**state, "data": {k: getattr(data, k) for k in _SPLITS}})
                return model.eval(), data
        except Exception as e:  # a corrupt cache is rebuilt, never trusted
            _warn(f"ignoring unreadable model cache {path} ({type(e).__name__}); retraining")
    data = dataset()
    torch.manual_seed(_SEED)
    model = train(build(), data)
    split = {k: getattr(data, k) for k in _SPLITS}
    _save(path, {"version": _VERSION, "model": model.state_dict(), "data": split})
    return model.eval(), data


def _save(path: Path, obj: dict) -> None:
    """Write atomically (`picojoule.fsio`): a Ctrl-C mid-write never leaves a truncated cache
    file, and a symlink planted at `path` is replaced, not written through."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path) as f:
            torch.save(obj, f)
    except OSError as e:
        raise PicojouleError(
            f"cannot write the model cache {path}: {e.strerror}; set PICOJOULE_CACHE to a "
            "writable directory"
        ) from None


def _warn(msg: str) -> None:
    import warnings

    warnings.warn(msg, stacklevel=3)
