"""winogradize_ takes a WinogradConfig or a dict and exposes hidden layers (issue 17)."""

from __future__ import annotations

import pytest
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.winograd import WinogradConfig, winogradize_
from picojoule.winograd.conv import WinogradConv2d
from picojoule.winograd.convert import config_from_dict


def test_dict_and_object_configs_equal_the_keywords() -> None:
    assert config_from_dict({"tile": 6, "kernel_sizes": [3]}) == WinogradConfig(tile=(6, 6))
    for cfg in ({"tile": 2}, WinogradConfig(tile=(2, 2))):
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3, stride=2))
        recs = winogradize_(model, cfg)
        assert isinstance(model[0], WinogradConv2d) and not isinstance(model[1], WinogradConv2d)
        assert recs[0].action == "F(2x2,3x3): 2.25x fewer multiplies"


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        ({"tiel": 4}, r"unknown key 'tiel'; valid keys: tile, .*did you mean: tile"),
        ({"tile": "x"}, r"tile must be an int or a pair of ints"),
        ({"kernel_sizes": "3"}, r"kernel_sizes: a list"),
        ({"transform_format": 8}, r"transform_format: a format name"),
    ],
)
def test_bad_dict_configs_are_config_errors(cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        winogradize_(nn.Sequential(nn.Conv2d(3, 4, 3)), cfg)


def test_options_beside_a_config_are_refused() -> None:
    with pytest.raises(ConfigError, match="inside the config"):
        winogradize_(nn.Sequential(nn.Conv2d(3, 4, 3)), {"tile": 2}, kernel_sizes=(5,))


def test_hidden_layers_are_exposed_and_recorded() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(2), nn.MultiheadAttention(8, 2))
    recs = winogradize_(model)
    assert [(r.name, r.kind, r.action) for r in recs][0] == ("2", "MultiheadAttention",
                                                             "unfused")  # fmt: skip
    assert type(model[2]).__name__ == "UnfusedAttention"
    kept = nn.Sequential(nn.Conv2d(3, 8, 3), nn.MultiheadAttention(8, 2))
    assert [r.kind for r in winogradize_(kept, expose=False)] == ["Conv2d"]
    assert isinstance(kept[1], nn.MultiheadAttention)
