"""sparsify_ exposes hidden layers by default (issue 17) and takes its config as a dict."""

from __future__ import annotations

import pytest
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.quant import describe_exposed
from picojoule.sparsity import SparsityConfig, mask_of, sparsify_
from picojoule.sparsity.recipe import config_from_dict


def gpt2_with_head() -> nn.Module:
    tf = pytest.importorskip("transformers")
    cfg = tf.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=0, eos_token_id=0)  # fmt: skip
    return tf.GPT2LMHeadModel(cfg).eval()


def masked(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if mask_of(m) is not None]


def test_default_prunes_the_conv1d_projections() -> None:
    model = gpt2_with_head()
    recs = sparsify_(model, "2:4")
    expected = [f"transformer.h.{i}.{p}" for i in range(2)
                for p in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]  # fmt: skip
    assert masked(model) == expected  # lm_head: the classifier, kept dense
    assert [(r.name, r.kind) for r in recs[:8]] == [(n, "Conv1D") for n in expected]
    assert describe_exposed(recs).startswith("exposed 8 Conv1D as nn.Linear")


def test_expose_false_leaves_them_dense() -> None:
    model = gpt2_with_head()
    recs = sparsify_(model, "2:4", expose=False)
    assert masked(model) == []
    hidden = [r for r in recs if r.kind == "Conv1D"]
    assert len(hidden) == 8 and all("expose=True prunes it" in r.reason for r in hidden)
    assert describe_exposed(recs).startswith("left hidden: transformer.h.0.attn.c_attn (hidden")
    assert type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"


def test_dict_config_equals_the_object() -> None:
    got = config_from_dict({"pattern": "2:4", "layers": {"fc1": "1:4", "fc2": "dense"},
                            "skip": "conv*", "skip_classifier": False})  # fmt: skip
    assert got == SparsityConfig(pattern="2:4", layers=(("fc1", "1:4"), ("fc2", "dense")),
                                 skip=("conv*",), skip_classifier=False)  # fmt: skip
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    recs = sparsify_(model, {"pattern": "2:4", "skip_classifier": False})
    assert [r.action for r in recs] == ["2:4 mask, density 0.500"] * 2


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"patern": "2:4"}, r"unknown key 'patern'; valid keys: pattern, .*did you mean: pattern"),
        ({"pattern": 24}, r"SparsityConfig pattern: a string"),
        ({"skip": [1]}, r"SparsityConfig skip: a glob or a list of globs"),
        ({"layers": ["fc1"]}, r"SparsityConfig layers: a dict of glob -> pattern"),
        ({"skip_classifier": "no"}, r"skip_classifier: True or False"),
        (24, r"recipe string or SparsityConfig \(or a dict"),
    ],
)
def test_bad_dict_configs_are_config_errors(recipe: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sparsify_(nn.Sequential(nn.Linear(8, 8)), recipe)  # type: ignore[arg-type]
