"""What a causal LM costs per phase: prefill of a prompt and decode with a KV cache.

- **Prefill** of P prompt tokens: one forward pass over [1, P] (matmuls with M = P: compute-
  bound on most targets). Energy per token = pass energy / P; tokens/s = P / pass latency.
- **Decode** of T tokens at batch B after a context of L tokens: each step runs [B, 1] new
  tokens against a KV cache; every weight byte and the whole cache are read per step, and
  attention's two products grow with the cache. A step's cost is linear in its cache length
  (only the attention products depend on it), so the mean over the T steps (cache lengths
  L .. L+T-1) is the mean of the first and the last step - two recorded steps, exact for
  linear costs. Energy per token = mean step energy / B; tokens/s = B / mean step latency.

Both phases are recorded with the study's own recorder (`picojoule.study.cost.layer_counts`:
module hooks plus a torch function mode) on the real model, so every Linear, attention product,
KV-cache read and the LM head are counted, with the recipe's formats; grouped-query attention's
shared key/value heads are read once (`picojoule.workload.from_torch`). The cache used for
recording holds random values of the model's cache shape: costs depend on shapes and formats,
not on values (densities of random values are 1, as for real keys and values).

Where the energy goes, per phase: `math` (the multiplies and adds), `kv_cache` (the data the
attention products move: at decode, the KV cache read), `weights` (the data the Linear layers
move: at decode, nearly all weights). On accelerators the three add up to the energy; on GPUs
they split the roofline's component energies (math at the GPU's pJ/op, compulsory DRAM bytes),
while the energy itself is TDP x roofline time (`picojoule.study.targets`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from picojoule.errors import ConfigError

__all__ = ["Phases", "PhaseCost", "kv_cache_bytes", "phase_counts", "phase_costs", "lm_costs"]

PHASES = ("prefill", "decode")


@dataclass(frozen=True, kw_only=True)
class Phases:
    """The serving scenario: prompt P, batch B, context L, decode length T (tokens)."""

    prompt: int = 512
    batch: int = 1
    context: int = 1024
    decode: int = 128

    def __post_init__(self) -> None:
        for name in ("prompt", "batch", "context", "decode"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"--{name} {v!r}: give a whole number of tokens >= 1")
        if self.batch > 4096:
            raise ConfigError(f"--batch {self.batch}: at most 4096 sequences per step")

    def check_positions(self, max_positions: int) -> None:
        """Refuse a scenario longer than the model's positions, before any work."""
        if max_positions <= 0:
            return
        if self.prompt > max_positions:
            raise ConfigError(
                f"--prompt {self.prompt}: the model has {max_positions} positions; give at most "
                f"{max_positions}"
            )
        if self.context + self.decode > max_positions:
            raise ConfigError(
                f"--context {self.context} + --decode {self.decode} tokens exceed the model's "
                f"{max_positions} positions; shorten one of them"
            )


def _attention_shape(config: Any) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of an HF decoder config (Llama- or GPT-2-style)."""
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if not (layers and heads and hidden):
        raise ConfigError(
            f"{type(config).__name__}: no layer/head/hidden sizes; not a decoder config"
        )
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return int(layers), int(kv_heads), int(head_dim)


def kv_cache_bytes(config: Any, tokens: int, batch: int = 1, bits_per_element: float = 32.0):
    """Bytes of the KV cache holding `tokens` tokens for `batch` sequences: keys and values of
    every layer and key/value head, `bits_per_element` each (scales included in it)."""
    layers, kv_heads, head_dim = _attention_shape(config)
    return 2 * layers * kv_heads * head_dim * tokens * batch * bits_per_element / 8


def _filled_cache(model: Any, batch: int, tokens: int) -> Any:
    from transformers import DynamicCache

    layers, kv_heads, head_dim = _attention_shape(model.config)
    cache = DynamicCache(config=model.config)
    g = torch.Generator().manual_seed(0)
    for i in range(layers):
        k = torch.randn(batch, kv_heads, tokens, head_dim, generator=g)
        cache.update(k, torch.randn(k.shape, generator=g), i)
    return cache


def phase_counts(model: Any, phases: Phases) -> dict[str, list]:
    """Recorded layer calls: 'prefill' ([1, P]; the LM head on the last position only, where
    the model takes `logits_to_keep`), 'decode_first' and 'decode_last' (one step of [B, 1]
    tokens against caches of L and L+T-1 tokens)."""
    from picojoule.study.cost import layer_counts

    params = inspect.signature(model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"  # transformers >= 5.x: cache

    def step(cache_len: int) -> list:
        ids = torch.zeros(phases.batch, 1, dtype=torch.long)
        cache = _filled_cache(model, phases.batch, cache_len)
        return layer_counts(model, {"input_ids": ids, cache_kw: cache, "use_cache": True})

    prompt = {"input_ids": torch.zeros(1, phases.prompt, dtype=torch.long), "use_cache": False}
    if "logits_to_keep" in params:
        prompt["logits_to_keep"] = 1  # a server needs the last position's logits only
    out = {"prefill": layer_counts(model, prompt)}
    out["decode_first"] = step(phases.context)
    out["decode_last"] = step(phases.context + phases.decode - 1)
    return out


@dataclass(frozen=True, kw_only=True)
class PhaseCost:
    """One phase on one target."""

    phase: str  # "prefill" | "decode"
    energy_per_token_pj: float
    tokens_per_s: float
    sol_ratio: float | None  # energy / speed-of-light energy
    math_pj: float  # per token, by where it goes (see module doc)
    weights_pj: float
    kv_cache_pj: float

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _split(rows: list[dict], counts: list) -> tuple[float, float, float]:
    """(math, weights/linear data, attention data) pJ of one billed pass."""
    math = weights = kv = 0.0
    for row, c in zip(rows, counts, strict=True):
        math += row["math_pj"]
        if c.layer.kind == "matmul":  # attention's products: their operands are the KV cache
            kv += row["memory_pj"]
        else:
            weights += row["memory_pj"]
    return math, weights, kv


def _bills(counts: dict[str, list], target: str, measured: dict | None) -> dict[str, dict]:
    from picojoule.study.targets import bill

    return {k: bill(v, target, measured) for k, v in counts.items()}


def _phase_costs(counts: dict[str, list], bills: dict[str, dict], phases: Phases):
    pre, first, last = bills["prefill"], bills["decode_first"], bills["decode_last"]
    p = phases.prompt
    pm, pw, pk = _split(pre["layers_energy"], counts["prefill"])
    prefill = PhaseCost(
        phase="prefill",
        energy_per_token_pj=pre["energy_pj"] / p,
        tokens_per_s=p / pre["latency_s"],
        sol_ratio=pre["sol_ratio"],
        math_pj=pm / p,
        weights_pj=pw / p,
        kv_cache_pj=pk / p,
    )
    f = _split(first["layers_energy"], counts["decode_first"])
    la = _split(last["layers_energy"], counts["decode_last"])
    per_tok = 2 * phases.batch  # mean of the two steps, per sequence
    energy = first["energy_pj"] + last["energy_pj"]
    sol = first["sol_energy_pj"] + last["sol_energy_pj"]
    decode = PhaseCost(
        phase="decode",
        energy_per_token_pj=energy / per_tok,
        tokens_per_s=per_tok / (first["latency_s"] + last["latency_s"]),
        sol_ratio=energy / sol if sol else None,
        math_pj=(f[0] + la[0]) / per_tok,
        weights_pj=(f[1] + la[1]) / per_tok,
        kv_cache_pj=(f[2] + la[2]) / per_tok,
    )
    return {"prefill": prefill, "decode": decode}


def phase_costs(
    counts: dict[str, list], target: str, phases: Phases, measured: dict | None = None
) -> dict[str, PhaseCost]:
    """Bill `phase_counts` on `target` (an accelerator preset / YAML or a GPU)."""
    return _phase_costs(counts, _bills(counts, target, measured), phases)


def lm_costs(
    model: Any, targets: Sequence[str], phases: Phases, measured: dict | None = None
) -> dict[str, dict[str, Any]]:
    """The study's bill of a causal LM on each target, for one request: prefill of P tokens,
    then T decoded tokens of one of the B sequences decoding together.

    `energy_pj` / `latency_s` / `sol_energy_pj` are the request's (prefill + T x decode per
    token); `phases` holds each phase's `PhaseCost`; `layers_energy` the rows of the first
    decode step; `kv_cache_bytes` the cache of the B sequences at L + T tokens in the `kv:`
    format (FP32, the study's float, without one)."""
    from picojoule.quant.kvcache import kv_spec_of
    from picojoule.study.cost import STUDY_FLOAT

    counts = phase_counts(model, phases)
    kv = kv_spec_of(model)
    head_dim = _attention_shape(model.config)[2]
    bits = kv.bits_per_element(head_dim) if kv is not None else 32.0
    kv_bytes = kv_cache_bytes(model.config, phases.context + phases.decode, phases.batch, bits)
    macs = sum(c.macs for c in counts["prefill"])
    out: dict[str, dict[str, Any]] = {}
    for target in targets:
        bills = _bills(counts, target, measured)
        cost = _phase_costs(counts, bills, phases)
        pre, dec, first = cost["prefill"], cost["decode"], bills["decode_first"]
        t = phases.decode
        energy = pre.energy_per_token_pj * phases.prompt + dec.energy_per_token_pj * t
        sol = (
            pre.energy_per_token_pj * phases.prompt / pre.sol_ratio
            + dec.energy_per_token_pj * t / dec.sol_ratio
            if pre.sol_ratio and dec.sol_ratio
            else None
        )
        latency = phases.prompt / pre.tokens_per_s + t * phases.batch / dec.tokens_per_s
        out[target] = {
            "energy_pj": energy,
            "sol_energy_pj": sol,
            "sol_ratio": energy / sol if sol else None,
            "latency_s": latency,
            "utilization": None,
            "macs": macs,
            "mults": macs,
            "layers_energy": first["layers_energy"],
            "phases": {k: v.as_dict() for k, v in cost.items()},
            "kv_cache_bytes": kv_bytes,
            "kv_bits_per_element": bits,
            "assumptions": [
                f"one request: prefill of {phases.prompt} tokens, then {t} tokens decoded at "
                f"batch {phases.batch} after {phases.context} tokens of context; energy and "
                "latency are the request's (per sequence at decode), per-phase figures per token",
                "decode: the mean of the steps at cache lengths L and L+T-1 (cost is linear in "
                "the cache length); prefill computes the LM head for the last position only",
                "energy split: math, weights (Linear layers' data movement) and KV cache "
                "(attention products' data movement); grouped-query attention reads each "
                "key/value head once",
                f"KV cache: {kv.describe() if kv else STUDY_FLOAT}, {bits:g} bits per element "
                "with scales; per-layer rows: the first decode step",
                *first["assumptions"],
            ],
        }
    return out
