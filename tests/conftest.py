"""Test-session settings: a private model cache so tests never touch the user's. Fixtures
shared by several test folders: tiny causal LMs saved as Hugging Face directories."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("PICOJOULE_CACHE", os.path.join(tempfile.gettempdir(), "picojoule-tests"))
# rich wraps tables to the terminal; captured output has none, so fix a wide one for CLI tests.
os.environ["COLUMNS"] = "200"
torch.set_num_threads(1)  # pytest -n 2 already uses both cores


def _tokenizer(vocab: int) -> object:
    """A byte-level BPE tokenizer trained on pydoc text, as a transformers fast tokenizer."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from picojoule.lm.corpus import pydoc_split

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"])
    tok.train_from_iterator(pydoc_split("calibration").split("\n\n")[:300], trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def _save(model: torch.nn.Module, tok: object, path: Path) -> Path:
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama-style causal LM (GQA, RoPE, tied embeddings; 64 positions), random weights:
    an `hf:DIR` input (tests/lm, tests/models)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(
        vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("llama")
    return _save(transformers.LlamaForCausalLM(cfg), _tokenizer(300), path)


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2-style causal LM (Conv1D projections; 48 positions), random weights."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=4, n_positions=48)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gpt2")
    return _save(transformers.GPT2LMHeadModel(cfg), _tokenizer(300), path)
