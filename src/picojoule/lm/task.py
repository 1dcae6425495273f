"""The study's task for causal language models: `--model smollm2` or `--model hf:DIR`.

Accuracy is perplexity (primary; lower is better, so deltas are ratios) and next-token top-1
accuracy over `tokens` targets of the evaluation text, in sliding windows of `seq_len` tokens
(stride seq_len / 2; `picojoule.lm.perplexity`). The evaluation text is held out from
calibration (static activation scales) and fine-tuning, which read their own parts
(`picojoule.lm.corpus`, or the user's `--calib` file).

Cost is per phase (`picojoule.lm.phases`): prefill of P tokens and decode of T tokens at batch
B after L tokens of context, on every target.

Policy for the embeddings and the LM head: the embedding table is a lookup, not a layer, and
stays float; the LM head (tied to the embeddings in SmolLM2) is kept in float by default, as
llm-compressor, AutoGPTQ and ModelOpt do, because its error goes straight into every logit;
`quantize_lm_head=True` (`--quantize-lm-head`) quantizes it like any Linear.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from picojoule.errors import ConfigError
from picojoule.lm.phases import Phases

__all__ = ["LMOptions", "LMStudyTask", "read_text", "check_lm_spec"]

_MAX_TEXT_BYTES = 64 << 20  # a larger --text is almost surely the wrong file


@dataclass(frozen=True, kw_only=True)
class LMOptions:
    """What a language-model study evaluates and costs (CLI: --text, --calib, --tokens, ...)."""

    text: Path | None = None  # evaluation text (default: pydoc evaluation part)
    calib: Path | None = None  # calibration / fine-tuning text (default: pydoc parts)
    tokens: int = 2048  # targets scored
    seq_len: int = 512  # evaluation window (context) length
    phases: Phases = field(default_factory=Phases)
    quantize_lm_head: bool = False

    def __post_init__(self) -> None:
        for name, low, high in (("tokens", 16, 1 << 22), ("seq_len", 8, 1 << 17)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                flag = name.replace("_", "-")
                raise ConfigError(f"--{flag} {v!r}: give a whole number from {low} to {high}")

    @classmethod
    def fitted(cls, max_positions: int) -> LMOptions:
        """The defaults, shortened where they exceed a model's `max_positions` (0: unknown):
        evaluation window and prompt at most the positions, decode at most an eighth of them
        and the context the rest. What a language model runs on when no option is given."""
        d, ph = cls(), Phases()
        if max_positions <= 0 or (max(d.seq_len, ph.prompt, ph.context + ph.decode)
                                  <= max_positions):  # fmt: skip
            return d
        n = max(8, max_positions)
        decode = min(ph.decode, max(1, n // 8))
        phases = Phases(prompt=min(ph.prompt, n), batch=ph.batch,
                        context=max(1, min(ph.context, n - decode)), decode=decode)  # fmt: skip
        return cls(seq_len=min(d.seq_len, n), phases=phases)

    def describe(self) -> str:
        ph = self.phases
        head = "lm_head quantized" if self.quantize_lm_head else "lm_head float"
        return (f"ppl {self.tokens} tok @ {self.seq_len} | P{ph.prompt} B{ph.batch} "
                f"L{ph.context} T{ph.decode} | {head}")  # fmt: skip


def read_text(path: Path, what: str) -> str:
    """A user's text file as str: one clear line if it is missing, binary, empty or huge."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"--{what} {p}: is a directory; give a UTF-8 text file")
    try:
        size = p.stat().st_size
        if size > _MAX_TEXT_BYTES:
            raise ConfigError(f"--{what} {p}: {size >> 20} MiB; give at most 64 MiB of text")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--{what} {p}: no such file; check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--{what} {p}: not UTF-8 text; give a plain text file") from None
    except OSError as e:
        raise ConfigError(f"--{what} {p}: cannot be read ({e.strerror})") from None
    if not text.strip():
        raise ConfigError(f"--{what} {p}: the file is empty; give English (or any) text")
    return text


def check_lm_spec(model: str, opts: LMOptions) -> None:
    """Everything checkable before the model loads: the spec, the weights package or
    directory, the text files. Raises `ConfigError`."""
    from picojoule.lm.loader import smollm2_gguf

    if model == "smollm2":
        smollm2_gguf()
    elif model.startswith("hf:"):
        path = Path(model[3:]).expanduser()
        if not model[3:].strip() or not path.is_dir():
            raise ConfigError(f"--model {model}: {path} is not a directory; give hf:DIR")
    else:
        raise ConfigError(f"--model {model}: language models are `smollm2` or `hf:DIR`")
    for what, p in (("text", opts.text), ("calib", opts.calib)):
        if p is not None:
            read_text(p, what)


class LMStudyTask:
    """A causal LM on held-out text: perplexity (lower is better) and top-1 next token."""

    primary_metric = "perplexity"
    metrics = ("perplexity", "top1")
    unit = ""
    higher_is_better = False

    def __init__(self, model: str, opts: LMOptions | None = None, cache: Path | None = None):
        """`opts` None: the defaults, fitted to the model's positions (`LMOptions.fitted`)."""
        from picojoule.lm.corpus import corpus_id, pydoc_split
        from picojoule.lm.loader import load_causal_lm

        check_lm_spec(model, opts or LMOptions())
        self.lm = load_causal_lm(model, cache)
        self.opts = opts = opts or LMOptions.fitted(self.lm.max_positions)
        self.phases = opts.phases
        self.phases.check_positions(self.lm.max_positions)
        if self.lm.max_positions and opts.seq_len > self.lm.max_positions:
            raise ConfigError(
                f"--seq-len {opts.seq_len}: the model has {self.lm.max_positions} positions; "
                f"give at most {self.lm.max_positions}"
            )
        if opts.text is not None:
            eval_text, self.eval_source = read_text(opts.text, "text"), str(opts.text)
        else:
            eval_text, self.eval_source = pydoc_split("evaluation"), corpus_id("evaluation")
        if opts.calib is not None:
            calib = read_text(opts.calib, "calib")
            half = len(calib) // 2  # calibration and fine-tuning never share text
            calib_text, train_text = calib[:half], calib[half:]
            self.calib_source = str(opts.calib)
        else:
            calib_text, train_text = pydoc_split("calibration"), pydoc_split("finetune")
            self.calib_source = f"{corpus_id('calibration')}, {corpus_id('finetune')}"
        self.eval_ids = self._ids(eval_text)
        if self.eval_ids.numel() < opts.tokens + 1:
            raise ConfigError(
                f"the evaluation text ({self.eval_source}) has {self.eval_ids.numel()} tokens; "
                f"--tokens {opts.tokens} needs {opts.tokens + 1}: give a longer --text or "
                "fewer --tokens"
            )
        self.calib_ids = self._ids(calib_text)
        self.train_ids = self._ids(train_text)
        if self.calib_ids.numel() < opts.seq_len:
            raise ConfigError(
                f"the calibration text ({self.calib_source}) has {self.calib_ids.numel()} "
                f"tokens, fewer than one --seq-len window ({opts.seq_len}); give a longer --calib"
            )
        tag = "hf:" + self.lm.name if model.startswith("hf:") else model
        self.name = f"{tag} [{opts.describe()}]"
        heads = {n for n, _ in self.lm.model.named_modules()}
        keep = not opts.quantize_lm_head and "lm_head" in heads
        self.quant_overrides = {"lm_head": None} if keep else None
        self.notes = [
            self.lm.provenance,
            f"perplexity and top-1 over {opts.tokens} tokens of {self.eval_source}, windows "
            f"of {opts.seq_len} tokens every {opts.seq_len // 2} (each target scored once, "
            f"with >= {opts.seq_len - opts.seq_len // 2} tokens of history)",
            f"calibration and fine-tuning text: {self.calib_source} (never the evaluation text)",
            "embeddings stay float (a lookup); the LM head is "
            + ("quantized like every Linear" if opts.quantize_lm_head else "kept in float "
               "(--quantize-lm-head to quantize it)"),
        ]  # fmt: skip

    def _ids(self, text: str) -> torch.Tensor:
        return torch.tensor(self.lm.tokenizer(text).input_ids, dtype=torch.long)

    def model(self) -> nn.Module:
        return copy.deepcopy(self.lm.model)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from picojoule.lm.perplexity import score_lm

        o = self.opts
        s = score_lm(model, self.eval_ids, context=o.seq_len, max_tokens=o.tokens)
        return {"perplexity": s.perplexity, "top1": s.top1}

    def example_input(self) -> dict[str, Any]:
        return {"input_ids": self.eval_ids[None, : self.opts.seq_len], "use_cache": False}

    def _windows(self, ids: torch.Tensor, n: int) -> list[torch.Tensor]:
        L = self.opts.seq_len
        return [ids[None, i * L : (i + 1) * L] for i in range(min(n, ids.numel() // L))]

    def calibration_batches(self, n: int) -> list[torch.Tensor]:
        return self._windows(self.calib_ids, n)

    def train_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(w, w) for w in self._windows(self.train_ids, 64)]

    @staticmethod
    def loss_fn(out: Any, ids: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy: logits at t predict token t+1."""
        logits = out.logits if hasattr(out, "logits") else out
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
