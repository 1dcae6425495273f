"""Sliding-window perplexity against a direct evaluation of its defining sum, token by token."""

from __future__ import annotations

import math

import pytest
import torch

from picojoule.errors import ConfigError
from picojoule.lm.perplexity import score_lm, windows

transformers = pytest.importorskip("transformers")


def tiny_llama(vocab: int = 97) -> torch.nn.Module:
    cfg = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(cfg).eval()


def reference(model: torch.nn.Module, ids: torch.Tensor, context: int, stride: int):
    """PPL = exp(-1/N sum_j log p(x_j | x_b(j) .. x_{j-1})), one forward per target, with b(j)
    the start of the first window [k*stride, k*stride + context) that holds j."""
    nll, hits = 0.0, 0
    for j in range(1, ids.numel()):
        k = max(0, math.ceil((j - context + 1) / stride))
        with torch.no_grad():
            logits = model(input_ids=ids[None, k * stride : j]).logits[0, -1].double()
        logp = torch.log_softmax(logits, dim=-1)
        nll -= logp[ids[j]].item()
        hits += int(logp.argmax() == ids[j])
    n = ids.numel() - 1
    return math.exp(nll / n), 100.0 * hits / n


@pytest.mark.parametrize(("context", "stride"), [(16, 15), (16, 8), (16, 5), (12, 1)])
def test_matches_token_by_token_reference(context: int, stride: int) -> None:
    model = tiny_llama()
    ids = torch.randint(0, 97, (41,), generator=torch.Generator().manual_seed(1))
    got = score_lm(model, ids, context=context, stride=stride, batch=3)
    ppl, top1 = reference(model, ids, context, stride)
    assert got.tokens == 40
    # float32 logits: a window and a shorter prefix differ in summation order only.
    assert got.perplexity == pytest.approx(ppl, rel=1e-5)
    assert got.top1 == pytest.approx(top1)


def test_first_window_equals_transformers_own_loss() -> None:
    """One window: the sum of HF's own cross-entropy (labels=), an independent implementation."""
    model = tiny_llama()
    ids = torch.randint(0, 97, (11,), generator=torch.Generator().manual_seed(2))
    ours = score_lm(model, ids, context=11, stride=5)
    with torch.no_grad():
        hf = model(input_ids=ids[None], labels=ids[None]).loss.double().item() * 10
    assert ours.tokens == 10
    assert ours.nll_nats == pytest.approx(hf, rel=1e-5)


def test_windows_score_every_target_once() -> None:
    for n, c, s in [(1000, 64, 32), (65, 64, 63), (5, 64, 7), (100, 10, 3)]:
        seen: list[int] = []
        for b, e, first in windows(n, c, s):
            assert e - b <= c and b < first <= e
            seen.extend(range(first, e))
        assert seen == list(range(1, n))


def test_max_tokens_and_bad_arguments() -> None:
    model = tiny_llama()
    ids = torch.randint(0, 97, (200,), generator=torch.Generator().manual_seed(3))
    assert score_lm(model, ids, context=32, max_tokens=50).tokens == 50
    for kw, msg in [
        ({"context": 1}, "at least 2 tokens"),
        ({"context": 8, "stride": 9}, "stride"),
        ({"context": 8, "stride": 8}, "stride 8: give 1 <= stride < context"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            score_lm(model, ids, **kw)
    with pytest.raises(ConfigError, match="fewer than 2 tokens"):
        score_lm(model, ids[:1], context=8)
    with pytest.raises(ConfigError, match="1-D"):
        score_lm(model, ids[None], context=8)
