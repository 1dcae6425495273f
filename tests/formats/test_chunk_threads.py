"""The per-chunk thread policy of fake-quant (`picojoule.formats.cast.ChunkThreads`).

The policy only changes speed, never values: it is tested with synthetic timings (which choice
it makes, how often it re-tries the slower one) and end to end (same bits with and without it,
torch's thread count restored).
"""

from __future__ import annotations

import math

import pytest
import torch

from picojoule.formats import cast, get


def _feed(pol: cast.ChunkThreads, cost: dict[int, float], chunks: int, many: int = 2) -> list[int]:
    """Run `chunks` choices against fixed per-element costs; the threads chosen, in order."""
    chosen = []
    for _ in range(chunks):
        t = pol.choose(many)
        chosen.append(t)
        pol.record(t, cost[t] * cast.CHUNK, cast.CHUNK)
    return chosen


def test_tries_both_then_keeps_the_faster():
    pol = cast.ChunkThreads()
    chosen = _feed(pol, {2: 1.0, 1: 3.0}, 20)
    assert chosen[:2] == [2, 1]  # each choice timed once
    assert set(chosen[2:]) == {2}  # the faster one from then on (no probe yet: ratio 3 -> 96)
    pol = cast.ChunkThreads()
    assert set(_feed(pol, {2: 25.0, 1: 1.0}, 40)[2:]) == {1}  # a loaded machine: one thread


@pytest.mark.parametrize("ratio", [1.5, 4.0, 25.0, 1e6])
def test_slower_choice_is_retried_at_the_stated_interval(ratio):
    pol = cast.ChunkThreads()
    n = 3 * pol.probe_every(ratio) + 2
    chosen = _feed(pol, {2: ratio, 1: 1.0}, n)
    probes = [i for i, t in enumerate(chosen) if t == 2][1:]  # after the first timing
    gap = pol.probe_every(ratio)
    assert gap == min(pol.MAX_GAP, max(pol.PROBE, math.ceil(pol.PROBE * ratio)))
    assert len(probes) == 3
    assert all(b - a == gap for a, b in zip(probes, probes[1:], strict=False))
    # what a probe costs: at most 1/PROBE (~3%) of the chunks in between, unless the gap is
    # capped (MAX_GAP) so that a change of load is still noticed in bounded time
    if pol.PROBE * ratio <= pol.MAX_GAP:
        assert ratio / gap <= 1 / pol.PROBE + 1e-12
    else:
        assert gap == pol.MAX_GAP


def test_a_change_of_load_is_followed():
    pol = cast.ChunkThreads()
    _feed(pol, {2: 1.0, 1: 2.0}, 50)  # idle: two threads win
    after = _feed(pol, {2: 30.0, 1: 2.0}, 2 * pol.probe_every(2.0))  # cores now busy
    assert after[-10:] == [1] * 10
    back = _feed(pol, {2: 1.0, 1: 2.0}, 2 * pol.probe_every(15.0) + 10)  # idle again
    assert back[-5:] == [2] * 5


def test_exponential_average():
    pol = cast.ChunkThreads()
    pol.record(1, 4.0, 2)
    assert pol.cost[1] == 2.0
    pol.record(1, 12.0, 2)
    assert pol.cost[1] == pytest.approx(2.0 + pol.DECAY * (6.0 - 2.0))


@pytest.mark.parametrize("name", ["e4m3", "mxfp4", "nvfp4", "int8"])
def test_same_bits_with_and_without_policy_and_threads_restored(name, monkeypatch):
    x = torch.randn(3 * cast.CHUNK + 123, generator=torch.Generator().manual_seed(1))
    fmt = get(name)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(cast, "ADAPT_THREADS", False)
        plain = fmt.quantize(x)
        monkeypatch.setattr(cast, "ADAPT_THREADS", True)
        adapted = fmt.quantize(x)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert torch.equal(plain.view(torch.int32), adapted.view(torch.int32))


def test_chunk_loop_restores_threads_when_the_body_raises():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    calls = []

    def body(i: int, j: int) -> int:
        calls.append(torch.get_num_threads())
        if len(calls) == 2:
            raise RuntimeError("boom")
        return cast.CHUNK

    try:
        with pytest.raises(RuntimeError):
            cast.chunk_loop(4 * cast.CHUNK, cast.CHUNK, body, key=("test", object()))
        assert calls == [2, 1]  # the second chunk times the other choice
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
