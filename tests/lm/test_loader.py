"""Loading causal LMs from local files: hf:DIR (Llama- and GPT-2-style, built from config),
refusals, and SmolLM2 from its GGUF with the dequantization cached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from picojoule.errors import ConfigError, PicojouleError
from picojoule.lm.corpus import pydoc_split
from picojoule.lm.loader import load_causal_lm, smollm2_gguf
from picojoule.lm.perplexity import score_lm

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize(("fixture", "positions"), [("llama_dir", 64), ("gpt2_dir", 48)])
def test_hf_dir_loads_fp32_and_scores(
    fixture: str, positions: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path = request.getfixturevalue(fixture)
    lm = load_causal_lm(f"hf:{path}", cache=tmp_path)
    assert lm.max_positions == positions
    assert all(p.dtype == torch.float32 for p in lm.model.parameters())
    assert not lm.model.training
    ids = torch.tensor(lm.tokenizer(pydoc_split("evaluation")[:4000]).input_ids)
    got = score_lm(lm.model, ids, context=32, max_tokens=100)
    # Random weights: close to uniform over the 300-token vocabulary.
    assert got.tokens == 100 and 100 < got.perplexity < 1000
    assert str(path) in lm.provenance


def _copy_with_config(src: Path, dst: Path, **changes: object) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_refusals(llama_dir: Path, tmp_path: Path) -> None:
    remote = _copy_with_config(
        llama_dir, tmp_path / "remote", auto_map={"AutoModelForCausalLM": "modeling_x.X"}
    )
    encoder = _copy_with_config(llama_dir, tmp_path / "enc", architectures=["BertModel"])
    empty = tmp_path / "empty"
    empty.mkdir()
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(b"GGUF")
    (two / "b.gguf").write_bytes(b"GGUF")
    bad_json = _copy_with_config(llama_dir, tmp_path / "badjson")
    (bad_json / "config.json").write_text("{not json")
    cases = [
        (f"hf:{remote}", "needs remote code"),
        (f"hf:{encoder}", "no causal-LM head"),
        (f"hf:{empty}", "no config.json or .gguf"),
        (f"hf:{two}", "several GGUF files"),
        (f"hf:{bad_json}", "not a readable JSON config"),
        (f"hf:{tmp_path / 'missing'}", "is not a directory"),
        ("gpt5", "language models are `smollm2` or `hf:DIR`"),
    ]
    for spec, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            load_causal_lm(spec, cache=tmp_path / "cache")


def test_a_gguf_transformers_cannot_read_is_one_line(tmp_path: Path) -> None:
    d = tmp_path / "g"
    d.mkdir()
    (d / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(PicojouleError) as e:
        load_causal_lm(f"hf:{d}", cache=tmp_path / "cache")
    assert "\n" not in str(e.value)
    assert not any((tmp_path / "cache").rglob("config.json"))  # nothing half-written is kept


@pytest.mark.slow
def test_smollm2_loads_offline_caches_and_is_a_language_model(tmp_path: Path) -> None:
    assert smollm2_gguf().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    lm = load_causal_lm("smollm2", cache=tmp_path)
    cached = list((tmp_path / "lm").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.safetensors").is_file()
    cfg = lm.model.config
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers) == (9, 3, 30)
    assert cfg.tie_word_embeddings and lm.max_positions == 8192
    assert "Q4_1" in lm.provenance and "dequantization" in lm.provenance
    ids = torch.tensor(lm.tokenizer(pydoc_split("evaluation")).input_ids)
    score = score_lm(lm.model, ids, context=256, max_tokens=256)
    assert 3 < score.perplexity < 40 and score.top1 > 30  # a real LM on English prose
    again = load_causal_lm("smollm2", cache=tmp_path)  # from the cache: same weights
    w = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(again.model.state_dict()[w], lm.model.state_dict()[w])
