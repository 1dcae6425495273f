"""Sequential layer-by-layer capture: stages, producers, and block-cached inputs equal to
whole-model passes with every earlier stage already updated."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.quant.capture import run_batch, sequential, trace_stages


def _llama(seed: int = 0) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=97,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg).eval()


def _linears(model: nn.Module, skip: tuple[str, ...] = ("lm_head",)) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n not in skip]


class _Sum:
    def __init__(self) -> None:
        self.total = 0.0
        self.rows = 0

    def add_batch(self, x: torch.Tensor) -> None:
        self.total += float(x.double().sum())
        self.rows += x.reshape(-1, x.shape[-1]).shape[0]


def _halve(layers, stage) -> None:  # a stand-in for an algorithm that changes the weights
    for layer in layers:
        layer.module.weight.mul_(0.5).add_(0.01)


def test_llama_stages_and_producers() -> None:
    model = _llama()
    batch = torch.randint(0, 97, (2, 16))
    stages = trace_stages(model, _linears(model), batch)
    first = stages[:4]
    assert [s.names for s in first] == [
        ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
         "model.layers.0.self_attn.v_proj"),
        ("model.layers.0.self_attn.o_proj",),
        ("model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"),
        ("model.layers.0.mlp.down_proj",),
    ]  # fmt: skip
    assert first[0].producer == "model.layers.0.input_layernorm"
    assert first[2].producer == "model.layers.0.post_attention_layernorm"
    assert first[1].producer is None and first[3].producer is None  # reshape / product
    assert len(stages) == 12


@pytest.mark.parametrize("with_head", [False, True])
def test_block_cached_equals_whole_model_passes(with_head: bool) -> None:
    """The blocked run observes exactly what one whole-model pass per stage would, with every
    earlier stage already updated (the reference's sequential order)."""
    batches = [torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(i))
               for i in range(3)]  # fmt: skip
    skip = () if with_head else ("lm_head",)
    fast, slow = _llama(), _llama()
    names = _linears(fast, skip)
    seen: dict[str, _Sum] = {}

    def observer(name: str, module: nn.Module) -> _Sum:
        seen[name] = _Sum()
        return seen[name]

    stages = sequential(fast, names, batches, observer=observer, update=_halve)
    assert [n for s in stages for n in s.names] == names
    modules = dict(slow.named_modules())
    with torch.no_grad():
        for stage in trace_stages(slow, names, batches[0]):
            ref = {n: _Sum() for n in stage.names}
            hooks = [
                modules[n].register_forward_pre_hook(lambda m, a, obs=ref[n]: obs.add_batch(a[0]))
                for n in stage.names
            ]
            for b in batches:
                run_batch(slow, b)
            for h in hooks:
                h.remove()
            for n in stage.names:
                assert seen[n].rows == ref[n].rows == 72
                assert seen[n].total == pytest.approx(ref[n].total, rel=1e-9, abs=1e-6), n
                modules[n].weight.mul_(0.5).add_(0.01)
    # both models end with the same weights, so the same outputs
    x = batches[0]
    assert torch.allclose(fast(x).logits, slow(x).logits)


def test_sequential_without_blocks_cnn() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    )
    batches = [torch.randn(2, 1, 8, 8) for _ in range(2)]
    order: list[str] = []

    def update(layers, stage) -> None:
        order.extend(layer.name for layer in layers)
        _halve(layers, stage)

    obs: dict[str, _Sum] = {}
    sequential(model, ["0", "2", "4"], batches, observer=lambda n, m: obs.setdefault(n, _Sum()),
               update=update)  # fmt: skip
    assert order == ["0", "2", "4"]
    # layer 4's input reflects layers 0 and 2 already updated
    with torch.no_grad():
        x = torch.cat([model[:4](b) for b in batches])
    assert obs["4"].total == pytest.approx(float(x.double().sum()), rel=1e-9)


def test_uncalled_layer_is_refused() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.extra = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)  # `extra` is never called

    with pytest.raises(ConfigError, match="never called"):
        trace_stages(Net(), ["used", "extra"], torch.randn(2, 4))


def test_no_batches_is_refused() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ConfigError, match="no calibration batches"):
        sequential(model, ["0"], [], observer=lambda n, m: _Sum(), update=_halve)


def test_shared_input_feeds_one_observer_per_tensor() -> None:
    from picojoule.quant import quantize_
    from picojoule.quant.capture import SharedInput

    made: list[_Sum] = []

    def make(name: str, module: nn.Module) -> _Sum:
        made.append(_Sum())
        return made[-1]

    model = _llama()
    batches = [torch.randint(0, 97, (1, 8)) for _ in range(2)]
    q, k, v = (f"model.layers.0.self_attn.{p}_proj" for p in "qkv")
    seen: dict[str, object] = {}

    def keep(layers, stage) -> None:
        for layer in layers:
            seen[layer.name] = layer.observer.stats

    sequential(model, [q, k, v], batches, observer=SharedInput(make), update=keep)
    assert seen[q] is seen[k] is seen[v] and seen[q].rows == 16  # fed once per batch
    # behind their own activation fake-quant, each layer's input is its own tensor
    model2 = _llama()
    quantize_(model2, "a:int8")
    sequential(model2, [q, k, v], batches, observer=SharedInput(make), update=keep)
    assert len({id(seen[n]) for n in (q, k, v)}) == 3
    assert all(seen[n].rows == 16 for n in (q, k, v))
