"""Transformer configurations and what one layer costs: parameters, FLOPs, bytes, activations.

Public: `TransformerConfig`, `model_presets(override=None)`, `load_model(spec, override=None)`
(a preset name, an HF `config.json` path, or a dict), `from_hf_config(dict, name)`, `Gemm`,
and the per-layer accounting methods of `TransformerConfig`.

Counting conventions (per layer, unsharded; the planner divides by tensor parallelism):
- FLOPs: 2 per multiply-accumulate. Forward GEMMs of T tokens: QKV 2Th(h + 2 kv_dim), output
  2Th^2, MLP 2Thf x (3 gated, 2 plain) x top_k experts; attention scores and values 4Tsh for a
  sequence of s, halved when a causal flash kernel skips the masked half. For a GPT layer this
  is Megatron's 24Tsh^2... = 24Th^2 + 4Ts h (Narayanan et al., SC21, Appendix).
- Activations kept for the backward pass, bytes per layer for b sequences of s tokens:
  Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models" (MLSys
  2023, arXiv 2205.05198), Section 4: sbh(34 + 5as/h) with 16-bit activations; with tensor
  parallelism t sbh(10 + 24/t + 5as/(ht)); with sequence parallelism sbh/t (34 + 5as/h);
  selective recomputation drops the 5as/h term; full recomputation keeps 2sbh (the layer input).
  `activation_bytes` generalizes the 34 term by term (GQA keys/values, a gated MLP of width f,
  no dropout) and returns exactly Korthikanti's numbers for a GPT layer (tests check it).
- Elementwise traffic (LayerNorm, bias-dropout-residual, GELU/SwiGLU, softmax + dropout): each
  op reads its inputs and writes its output once from HBM, counted term by term below; a flash
  attention kernel keeps the scores on chip (Dao et al., FlashAttention, NeurIPS 2022).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from picojoule.cluster.links import load_rows
from picojoule.errors import ConfigError, suggest

__all__ = ["TransformerConfig", "Gemm", "model_presets", "load_model", "from_hf_config"]

Recompute = Literal["none", "selective", "full"]


@dataclass(frozen=True, kw_only=True)
class Gemm:
    """One matrix multiply [m, k] x [k, n] (x count), its FLOPs and HBM bytes (each operand
    read and the output written once)."""

    name: str
    m: float
    k: float
    n: float
    count: float = 1.0
    weight: bool = True  # the [k, n] operand is a weight (bytes at the weight format)

    def flops(self) -> float:
        return 2.0 * self.m * self.k * self.n * self.count

    def bytes(self, act_bytes: float, weight_bytes: float) -> float:
        w = weight_bytes if self.weight else act_bytes
        return (self.m * self.k * act_bytes + self.k * self.n * w + self.m * self.n * act_bytes) * (
            self.count
        )


class TransformerConfig(BaseModel):
    """A decoder-only transformer (see presets/models.yaml for the fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: str
    title: str = ""
    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    ffn: int = Field(ge=1)
    vocab: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    gated: bool = False
    tied: bool = True
    positions: Literal["learned", "rope"] = "rope"
    bias: bool = False
    dropout: bool | None = None  # default: GPT-style (bias) models train with dropout
    experts: int = Field(default=1, ge=1)
    top_k: int = Field(default=1, ge=1)
    citation: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TransformerConfig:
        kv = self.kv_heads or self.heads
        if self.heads % kv:
            raise ValueError(f"heads {self.heads} must be a multiple of kv_heads {kv}")
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.top_k > self.experts:
            raise ValueError(f"top_k {self.top_k} exceeds experts {self.experts}")
        return self

    # --- shapes ------------------------------------------------------------------------------
    @property
    def kv(self) -> int:
        return self.kv_heads or self.heads

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv * self.hd

    @property
    def moe(self) -> bool:
        return self.experts > 1

    @property
    def has_dropout(self) -> bool:
        return self.bias if self.dropout is None else self.dropout

    # --- parameters --------------------------------------------------------------------------
    def attention_params(self) -> int:
        h, b = self.hidden, int(self.bias)
        return (
            h * (self.q_dim + 2 * self.kv_dim)
            + self.q_dim * h
            + b * (self.q_dim + 2 * self.kv_dim + h)
        )

    def expert_params(self) -> int:
        """One expert's MLP (the whole MLP of a dense model)."""
        h, f, b = self.hidden, self.ffn, int(self.bias)
        return (3 if self.gated else 2) * h * f + b * (f + h)

    def layer_params(self, *, active: bool = False) -> int:
        norms = (4 if self.bias else 2) * self.hidden
        router = self.hidden * self.experts if self.moe else 0
        mlp = self.expert_params() * (self.top_k if active else self.experts)
        return self.attention_params() + mlp + router + norms

    def embedding_params(self) -> int:
        pos = self.seq_len * self.hidden if self.positions == "learned" else 0
        return self.vocab * self.hidden + pos

    def output_params(self) -> int:
        """The LM head, 0 when tied to the input embedding (the table is counted once)."""
        return 0 if self.tied else self.vocab * self.hidden

    def params(self, *, active: bool = False) -> int:
        final_norm = (2 if self.bias else 1) * self.hidden
        return (
            self.layers * self.layer_params(active=active)
            + self.embedding_params()
            + self.output_params()
            + final_norm
        )

    # --- work per layer ----------------------------------------------------------------------
    def layer_gemms(self, tokens: float, *, tp: int = 1) -> list[Gemm]:
        """Forward weight GEMMs of one layer for `tokens` tokens on one of `tp` ranks."""
        h, t = self.hidden, tp
        out = [
            Gemm(name="qkv", m=tokens, k=h, n=(self.q_dim + 2 * self.kv_dim) / t),
            Gemm(name="attn-out", m=tokens, k=self.q_dim / t, n=h),
        ]
        mlp_in = (2 if self.gated else 1) * self.ffn / t
        routed = tokens * self.top_k  # each token visits top_k experts
        out += [
            Gemm(name="mlp-in", m=routed, k=h, n=mlp_in),
            Gemm(name="mlp-out", m=routed, k=self.ffn / t, n=h),
        ]
        if self.moe:
            out.append(Gemm(name="router", m=tokens, k=h, n=self.experts))
        return out

    def attention_gemms(self, batch: float, q_len: float, kv_len: float, *, tp: int = 1,
                        causal_skip: bool = False) -> list[Gemm]:  # fmt: skip
        """Scores (QK^T) and values (PV) for `batch` sequences: `q_len` queries over `kv_len`
        keys. `causal_skip`: the kernel skips the masked half (prefill/training with flash).
        The [k, n] operand (keys, values) is priced at the caller's `weight_bytes`: activation
        bytes in training, 0 in decode where the KV-cache read is counted once per KV head."""
        heads = self.heads / tp
        frac = 0.5 if causal_skip else 1.0
        kw = {"count": batch * heads, "weight": True}
        return [
            Gemm(name="scores", m=q_len, k=self.hd, n=kv_len * frac, **kw),
            Gemm(name="values", m=q_len, k=kv_len * frac, n=self.hd, **kw),
        ]

    def logits_gemm(self, tokens: float, *, tp: int = 1) -> Gemm:
        return Gemm(name="logits", m=tokens, k=self.hidden, n=self.vocab / tp)

    def elementwise_elems(self, b: float, s: float, *, tp: int = 1, sp: bool = False,
                          flash: bool = True) -> float:  # fmt: skip
        """Elements one layer's forward elementwise ops read + write in HBM (see docstring):
        2 norms (r+w: 4 sbh), 2 residual adds (+ bias-dropout: 3.5 sbh each, else 3), the MLP
        activation (r+w: 2 sbf; SwiGLU 3 sbf) x top_k, softmax (+ dropout) on the scores
        (r+w: 2 as^2 b; with dropout 4.5) unless flash keeps them on chip."""
        sbh = s * b * self.hidden
        rep = 4 * sbh + 2 * (3.5 if self.has_dropout else 3.0) * sbh  # norms, residuals
        act = (3 if self.gated else 2) * s * b * self.ffn * self.top_k
        scores = 0.0 if flash else (4.5 if self.has_dropout else 2.0) * self.heads * s * s * b
        return rep / (tp if sp else 1) + (act + scores) / tp

    def activation_bytes(self, b: float, s: float, *, tp: int = 1, sp: bool = False,
                         recompute: Recompute = "none", flash: bool = False) -> float:  # fmt: skip
        """Bytes one layer keeps for its backward pass (Korthikanti et al. 2022, generalized)."""
        sbh = s * b * self.hidden
        if recompute == "full":
            return 2 * sbh / (tp if sp else 1)
        kv = s * b * self.kv_dim
        mask = sbh if self.has_dropout else 0.0  # 1-byte dropout masks
        f = s * b * self.ffn * self.top_k
        replicated = 2 * sbh + mask + 2 * sbh + mask + 4 * sbh  # QKV in, masks, MLP in, 2 LN in
        split = 2 * sbh + 2 * kv + 2 * kv + 2 * sbh  # Q, K, V, attention-output linear input
        split += (6 if self.gated else 4) * f  # activation input(s) + second linear input
        if recompute == "none" and not flash:  # softmax out, its dropout mask and output
            split += (5 if self.has_dropout else 2) * self.heads * s * s * b
        return replicated / (tp if sp else 1) + split / tp


def model_presets(override: str | Path | None = None) -> dict[str, TransformerConfig]:
    """Every model preset by name, updated by the `models:` rows of `override`."""
    return load_rows("models", TransformerConfig, override)


_GATED_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gemma", "gemma2",
                "olmo", "olmo2", "phi3", "granite", "smollm3", "deepseek_v2"}  # fmt: skip
_ROPE_KEYS = ("rope_theta", "rotary_dim", "rotary_pct", "rope_scaling")


def _first(cfg: dict[str, Any], keys: tuple[str, ...], what: str, default: Any = None) -> Any:
    for k in keys:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is None:
        raise ConfigError(f"HF config has no {what} (looked for {', '.join(keys)})")
    return default


def from_hf_config(cfg: dict[str, Any], name: str = "hf-model") -> TransformerConfig:
    """A `TransformerConfig` from a Hugging Face `config.json` dict (Llama, Mistral, Mixtral,
    Qwen2, GPT-2/NeoX-style keys). A SwiGLU MLP is assumed for Llama-family model types and for
    hidden_act silu/swiglu; learned positions when the config has no rope_theta/rotary keys."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{name}: an HF config must be a JSON object")
    hidden = int(_first(cfg, ("hidden_size", "n_embd", "d_model"), "hidden size"))
    mtype = str(cfg.get("model_type", ""))
    act = str(cfg.get("hidden_act", cfg.get("activation_function", "")))
    gated = mtype in _GATED_TYPES or act in ("silu", "swiglu", "swish")
    rope = mtype in _GATED_TYPES or any(k in cfg for k in _ROPE_KEYS)
    bias = bool(cfg.get("attention_bias", cfg.get("mlp_bias", not gated)))
    fields = {
        "name": name,
        "title": name,
        "layers": int(_first(cfg, ("num_hidden_layers", "n_layer", "num_layers"), "layer count")),
        "hidden": hidden,
        "heads": int(_first(cfg, ("num_attention_heads", "n_head"), "attention heads")),
        "kv_heads": cfg.get("num_key_value_heads") or (1 if cfg.get("multi_query") else None),
        "head_dim": cfg.get("head_dim"),
        "ffn": int(
            _first(
                cfg,
                ("intermediate_size", "n_inner", "ffn_dim", "moe_intermediate_size"),
                "MLP width",
                4 * hidden,
            )
        ),  # fmt: skip
        "vocab": int(_first(cfg, ("vocab_size",), "vocab_size")),
        "seq_len": int(
            _first(cfg, ("max_position_embeddings", "n_positions", "n_ctx"), "context length", 2048)
        ),  # fmt: skip
        "gated": gated,
        "tied": bool(cfg.get("tie_word_embeddings", True)),
        "positions": "rope" if rope else "learned",
        "bias": bias,
        "experts": int(cfg.get("num_local_experts") or cfg.get("num_experts") or 1),
        "top_k": int(cfg.get("num_experts_per_tok") or 1),
        "citation": f"Hugging Face config.json ({name})",
    }
    try:
        return TransformerConfig(**fields)
    except ValueError as e:
        raise ConfigError(f"{name}: {str(e).splitlines()[-1].strip()}") from None


def load_model(
    spec: str | Path | dict[str, Any], override: str | Path | None = None
) -> TransformerConfig:
    """A preset name (gpt3-175b, llama3-70b, ...), a path to an HF config.json, or its dict."""
    if isinstance(spec, dict):
        return from_hf_config(spec)
    text = str(spec)
    presets = model_presets(override)
    if text.lower() in presets:
        return presets[text.lower()]
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file; give a config.json or a preset") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not a readable JSON config ({e})") from None
        return from_hf_config(data, name=path.parent.name or path.stem)
    raise ConfigError(
        f"unknown model {text!r}{suggest(text.lower(), presets)}; or give an HF config.json"
    )
