"""The digits model cache carries its train/test split, so a warm run needs no scikit-learn;
a cache without it (an older one) is upgraded, a damaged split is rebuilt, never trusted."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from picojoule.models import digits


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One training for the module: the shared test cache's file, or a fresh one."""
    from picojoule.paths import cache_dir

    shared = cache_dir() / f"{digits._VERSION}.pt"
    digits.load_default()  # trains once into the shared cache if it is not there yet
    return shared


@pytest.fixture()
def cache(trained, tmp_path, monkeypatch) -> Path:
    """A private copy of the trained cache (the tests rewrite it)."""
    monkeypatch.setenv("PICOJOULE_CACHE", str(tmp_path))
    path = tmp_path / f"{digits._VERSION}.pt"
    shutil.copyfile(trained, path)
    return path


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_warm_load_uses_the_cached_split_without_sklearn(cache, monkeypatch):
    model, data = digits.load_default()  # the copy: the split is already in it
    assert set(_state(cache)["data"]) == set(digits._SPLITS)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # importing it now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    again, cached = digits.load_default()
    for k in digits._SPLITS:
        assert torch.equal(getattr(cached, k), getattr(data, k))
    assert digits.evaluate(again, cached) == digits.evaluate(model, data)


def test_old_cache_is_upgraded_and_a_damaged_split_is_rebuilt(cache):
    model, data = digits.load_default()
    state = _state(cache)
    torch.save({"version": state["version"], "model": state["model"]}, cache)  # no split
    _, upgraded = digits.load_default()
    assert torch.equal(upgraded.x_test, data.x_test)
    assert "data" in _state(cache)  # written back
    bad = _state(cache)
    bad["data"]["x_test"] = bad["data"]["x_test"][:5]  # 1,797 images no more
    torch.save(bad, cache)
    _, rebuilt = digits.load_default()
    assert torch.equal(rebuilt.x_test, data.x_test)
    assert digits._cached_data({"x_train": "not a tensor"}) is None
