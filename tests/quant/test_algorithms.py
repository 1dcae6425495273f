"""`apply_algorithms_`: rotate -> smooth -> awq -> quantize_ -> calibrate -> gptq on a tiny
Llama, each step's effect checked against what it must do."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.quant import quantize_
from picojoule.quant.algorithms import _smooth, apply_algorithms_, needs_algorithms
from picojoule.quant.recipe import parse_recipe

transformers = pytest.importorskip("transformers")


def _llama(kv_heads: int = 2) -> nn.Module:
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        vocab_size=101,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # outlier channels in the residual stream, as trained LMs have
        for layer in model.model.layers:
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
            layer.input_layernorm.weight[:3] *= 20.0
    return model


def _batches(n: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 101, (1, 32), generator=g) for _ in range(n)]


def _linears(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"]


def _nll(model: nn.Module, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        loss = 0.0
        for b in batches:
            logits = model(b, use_cache=False).logits
            loss += float(nn.functional.cross_entropy(logits[0, :-1], b[0, 1:]))
    return loss / len(batches)


def _logit_mse(a: nn.Module, b: nn.Module, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return sum(
            float((a(x, use_cache=False).logits - b(x, use_cache=False).logits).pow(2).mean())
            for x in batches
        )


def test_needs_algorithms() -> None:
    assert not needs_algorithms(parse_recipe("w:int4"))
    assert needs_algorithms(parse_recipe("w:int4,wcal:gptq"))
    assert needs_algorithms(parse_recipe("w:int8,a:int8,smooth:0.5"))
    assert needs_algorithms(parse_recipe("w:nvfp4,rotate:block16"))


def test_smoothing_alone_is_exact_in_fp32() -> None:
    ref, model = _llama(), _llama()
    lines = _smooth(model, _linears(model), _batches(3), 0.5)
    # per layer: input norm -> q/k/v, post-attention norm -> gate/up, up -> down; o_proj reads
    # grouped-query attention's output (2 kv heads for 4 heads): no producer to fold into
    assert "folded into 6 producer(s); 2 stage(s)" in lines[0]
    norm = model.model.layers[0].input_layernorm.weight
    assert not torch.allclose(norm, ref.model.layers[0].input_layernorm.weight)
    assert _logit_mse(model, ref, _batches(2)) < 1e-10


def test_smoothquant_rescues_static_w8a8() -> None:
    base = _llama()
    cal = _batches(6)
    plain, smooth = copy.deepcopy(base), copy.deepcopy(base)
    apply_algorithms_(plain, "w:int8,a:int8,cal:max", cal)
    rep = apply_algorithms_(smooth, "w:int8,a:int8,cal:max,smooth:0.5", cal)
    assert set(rep.seconds) == {"smooth"}
    held = _batches(9)[6:]
    assert _logit_mse(smooth, base, held) < 0.5 * _logit_mse(plain, base, held)


def test_awq_beats_rtn_on_int4() -> None:
    base = _llama()
    cal = _batches(6)
    rtn, awq = copy.deepcopy(base), copy.deepcopy(base)
    quantize_(rtn, "w:int4/block32")
    rep = apply_algorithms_(awq, "w:int4/block32,wcal:awq", cal)
    assert "scales searched and folded" in rep.lines[0]
    assert _logit_mse(awq, base, cal) < _logit_mse(rtn, base, cal)


def test_gptq_beats_rtn_and_keeps_the_float_original() -> None:
    pytest.importorskip("picojoule.quant.gptq")
    base = _llama()
    cal = _batches(8)
    rtn, gptq = copy.deepcopy(base), copy.deepcopy(base)
    quantize_(rtn, "w:int4/block32")
    rep = apply_algorithms_(gptq, "w:int4/block32,wcal:gptq", cal)
    assert rep.seconds["gptq"] > 0
    assert _logit_mse(gptq, base, cal) < 0.9 * _logit_mse(rtn, base, cal)
    q_proj = gptq.model.layers[0].self_attn.q_proj
    orig = q_proj.parametrizations["weight"].original
    assert torch.equal(orig, base.model.layers[0].self_attn.q_proj.weight)  # float kept
    assert not torch.equal(q_proj.weight, rtn.model.layers[0].self_attn.q_proj.weight)
    quant = q_proj.parametrizations["weight"][0]
    assert quant.solved is not None and torch.equal(q_proj.weight, quant.solved)


def test_rotation_billed_on_the_rotated_layers() -> None:
    from picojoule.study.cost import layer_counts

    model = _llama()
    rep = apply_algorithms_(model, "w:nvfp4,a:nvfp4,rotate:hadamard,kv:e4m3", _batches(2))
    where = {r.where for r in rep.online}
    assert where == {"input", "queries", "keys"}
    counts = {c.name: c for c in layer_counts(model, _batches(1)[0])}
    down = counts["model.layers.0.mlp.down_proj"]
    assert down.transform_adds == 32 * 128 * 7  # 32 tokens, n log2 n adds for n = 128 = 2^7
    assert down.mults == down.macs  # a power of two needs no multiplies
    assert counts["model.layers.0.self_attn.k_proj"].transform_adds > 0
    assert counts["model.layers.0.self_attn.v_proj"].transform_adds == 0  # folded offline


def test_block_rotation_helps_w4a4_mxfp4() -> None:
    base = _llama()
    cal = _batches(4)
    plain, rot = copy.deepcopy(base), copy.deepcopy(base)
    apply_algorithms_(plain, "w:mxfp4,a:mxfp4", cal)
    rep = apply_algorithms_(rot, "w:mxfp4,a:mxfp4,rotate:block32", cal)
    assert all(r.where == "input" for r in rep.online) and rep.online
    assert _logit_mse(rot, base, cal) < _logit_mse(plain, base, cal)


def test_empty_batches_refused() -> None:
    with pytest.raises(ConfigError, match="calibration batches"):
        apply_algorithms_(_llama(), "w:int4,wcal:gptq", [])
