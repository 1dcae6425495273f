"""The 'did you mean' hints: a close name when there is one, never "none close"."""

from __future__ import annotations

import pytest

from picojoule.errors import ConfigError, did_you_mean, suggest


def test_did_you_mean_names_close_choices_or_says_nothing():
    assert did_you_mean("eyris", ["eyeriss", "simba"]) == " (did you mean: eyeriss?)"
    assert did_you_mean("zzzz", ["eyeriss", "simba"]) == ""
    assert suggest("h10", ["h100", "a100"]) == " (did you mean: h100, a100?)"
    assert suggest("zzzz", ["h100", "a100"]) == " (valid: h100, a100)"
    many = [f"gpu{i}" for i in range(20)]
    assert suggest("zzzz", many, limit=3) == " (valid: gpu0, gpu1, gpu2, ...)"


@pytest.mark.parametrize(
    "call",
    [
        lambda: __import__("picojoule.energy", fromlist=["gpu"]).gpu("qqqqqq"),
        lambda: __import__("picojoule.workload", fromlist=["builtin"]).builtin("qqqqqq"),
        lambda: __import__("picojoule.cluster", fromlist=["link"]).link("qqqqqq"),
        lambda: __import__("picojoule.arch", fromlist=["load_arch"]).load_arch("qqqqqq"),
    ],
)
def test_no_message_says_none_close(call):
    with pytest.raises(ConfigError) as err:
        call()
    assert "none close" not in str(err.value)
    assert "did you mean" not in str(err.value)
