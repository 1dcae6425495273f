"""The language-model tests need transformers; the tiny causal LMs they run on (`llama_dir`,
`gpt2_dir`: random weights, a BPE tokenizer trained on pydoc text) are shared fixtures in
tests/conftest.py."""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")
