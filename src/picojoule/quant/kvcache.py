"""KV-cache quantization (`kv:` lever): keys and values rounded as they are stored in the cache.

Spec `kv:ELEM[@GRAN[G]]`:
- `ELEM`: any element format (`int4`, `int2`, `e4m3`, `e2m1`, ...), which gets one fp32 scale per
  group below (absmax / element max, `ELEM/channel` on the grouped layout), or a block-scaled
  format (`mxfp4`, `nvfp4`, `vsq4_v16_s4`, ...), whose blocks run along the group's dimension.
  `ELEM/none` stores the element without a scale; `fp16` / `bf16` need none.
- `GRAN` (where a scale is shared; keys and values are [batch, kv_heads, tokens, head_dim]):
  - `token` (default): one scale per token per head, over head_dim - what a cache that writes
    each token as it comes can do (vLLM-style per-token scales; the per-token scaling of
    KIVI's values).
  - `channel`: one scale per channel (head_dim index) per head per group of G tokens (default
    32): keys have outlier channels, so per-channel scales keep them apart (KIVI, Liu et al.,
    ICML 2024, section 3). Groups fill as tokens arrive; the last, incomplete group stays in
    float until it is complete (KIVI's full-precision residual).
  - `head`: one scale per head per group of G tokens (G x head_dim values); residual as above.
  - `kivi`: keys per `channel`, values per `token` - the KIVI split.

Emulation: `install_kv(model, spec)` makes every forward pass run with a `KVQuantCache` (a
transformers `DynamicCache` whose `update` stores the float keys/values and returns them
rounded), injected when the caller passes no cache and wrapping one the caller passes. The
attention (SDPA, eager, grouped-query alike) therefore reads exactly what a quantized cache
would hold, the current tokens included, as in a kernel that writes the cache before reading
it. Rounding is re-derived from the float copy on every update: a group's rounding depends
only on its own tokens, so this equals rounding each group once when it fills.

Teacher-forced passes (perplexity) and group granularities: a pass over a window stores the
window's keys and values at once, so each complete group of G tokens is rounded with its own
scale, and a query inside a group sees that group rounded with a scale its later tokens helped
set; token-by-token decoding keeps the group in float until it fills (KIVI). Per-token scales
have no such difference: one pass equals decoding token by token (tested). This is how
KV-cache papers evaluate perplexity with fake quantization (e.g. KVQuant, Hooper et al. 2024).

Two-level formats (NVFP4's fp32 tensor scale, VS-Quant's gamma) take their coarse scale per
row of the grouped layout (per token for `token`), never across tokens a cache has not seen.

Key rotation (`install_key_rotation(model, H)`, set by `rotate:hadamard`): QuaRot rotates
queries and keys by a per-head Hadamard H after RoPE, so the cache stores round(K H). With a
`kv:` format installed (before or after), the cache then returns round(K H) H^T to the
unrotated attention - the same scores, see `KVQuantCache.update`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn

from picojoule.errors import ConfigError, PicojouleError, ShapeError, did_you_mean

__all__ = [
    "KVSpec",
    "parse_kv",
    "round_kv",
    "install_kv",
    "check_kv_model",
    "kv_spec_of",
    "install_key_rotation",
    "key_rotation_of",
    "KV_GRANULARITIES",
]

Granularity = Literal["token", "channel", "head"]
KV_GRANULARITIES = ("token", "channel", "head", "kivi")
DEFAULT_GROUP = 32  # tokens per scale group (KIVI's default group size)


@dataclass(frozen=True, kw_only=True)
class KVSpec:
    """Parsed `kv:` value."""

    element: str  # the format name as written (resolved by `fmt`)
    granularity: str = "token"  # token | channel | head | kivi
    group: int = DEFAULT_GROUP  # tokens per group for channel / head / kivi keys

    @property
    def key_granularity(self) -> Granularity:
        return "channel" if self.granularity == "kivi" else self.granularity  # type: ignore[return-value]

    @property
    def value_granularity(self) -> Granularity:
        return "token" if self.granularity == "kivi" else self.granularity  # type: ignore[return-value]

    @property
    def fmt(self) -> Any:
        """The format applied to each group's vector (scale per row of the grouped layout)."""
        from picojoule.formats import CodebookFormat, get
        from picojoule.quant.recipe import resolve_format

        if isinstance(get(self.element.removesuffix("/none")), CodebookFormat):
            raise ConfigError(f"{self.element}: codebooks hold weights, not a KV cache")
        return resolve_format(self.element, "weight")  # ints / <= 8-bit floats: scale per row

    def bits_per_element(self, head_dim: int) -> float:
        """Stored bits per key/value element, scales included (mean of keys and values)."""
        from picojoule.formats import ScaledFormat

        fmt = self.fmt

        def bits(gran: Granularity) -> float:
            if not isinstance(fmt, ScaledFormat) or fmt.block is not None:
                return float(fmt.bits_per_element)  # unscaled, or block scales included
            per = {"token": head_dim, "channel": self.group, "head": self.group * head_dim}
            return fmt.element.bits + 32.0 / per[gran]  # one fp32 scale per row

        return (bits(self.key_granularity) + bits(self.value_granularity)) / 2

    def describe(self) -> str:
        g = "" if self.granularity == "token" else f"@{self.granularity}{self.group}"
        return f"kv:{self.element}{g}"


def parse_kv(value: str) -> KVSpec:
    """`int4`, `int4@channel`, `int2@kivi64`, `e4m3@head16`, `nvfp4` -> KVSpec."""
    m = re.fullmatch(r"([^@\s]+)(?:@([a-z]+)(\d+)?)?", value.strip())
    if not m:
        raise ConfigError(
            f"kv:{value}: write kv:FORMAT or kv:FORMAT@GRANULARITY (e.g. kv:int4@kivi)"
        )
    element, gran, group = m[1], m[2] or "token", m[3]
    if gran not in KV_GRANULARITIES:
        raise ConfigError(
            f"kv:{value}: granularity {gran!r} unknown; use one of {', '.join(KV_GRANULARITIES)}"
            f"{did_you_mean(gran, KV_GRANULARITIES)}"
        )
    if group is not None and gran == "token":
        raise ConfigError(f"kv:{value}: per-token scales take no group size; drop {group}")
    size = int(group) if group is not None else DEFAULT_GROUP
    if not 1 <= size <= 65536:
        raise ConfigError(f"kv:{value}: group of {size} tokens; give 1 to 65536")
    spec = KVSpec(element=element, granularity=gran, group=size)
    try:
        spec.fmt  # noqa: B018 - resolve now: an unknown format fails at parse time
    except PicojouleError as e:
        raise ConfigError(f"kv:{value}: {e}") from None
    return spec


def _round_rows(fmt: Any, rows: torch.Tensor) -> torch.Tensor:
    from picojoule.formats import ScaledFormat

    if isinstance(fmt, ScaledFormat):
        return fmt.quantize(rows, coarse="row")
    return fmt.quantize(rows)


def round_kv(x: torch.Tensor, spec: KVSpec, granularity: Granularity) -> torch.Tensor:
    """Round keys or values `x` [batch, heads, tokens, head_dim] as the cache stores them."""
    fmt = spec.fmt
    if granularity == "token":
        return _round_rows(fmt, x)
    b, h, t, d = x.shape
    g = spec.group
    full = (t // g) * g  # complete groups; the residual stays float (KIVI)
    if full == 0:
        return x
    groups = x[..., :full, :].reshape(b, h, full // g, g, d)
    if granularity == "channel":  # rows = one channel over the group's tokens
        q = _round_rows(fmt, groups.transpose(-1, -2)).transpose(-1, -2)
    else:  # "head": rows = the whole group, tokens x head_dim
        q = _round_rows(fmt, groups.reshape(b, h, full // g, g * d)).reshape(groups.shape)
    return torch.cat([q.reshape(b, h, full, d), x[..., full:, :]], dim=-2)


def _cache_class() -> type:
    from transformers import DynamicCache

    class KVQuantCache(DynamicCache):
        """A DynamicCache that returns its keys and values rounded per `spec`."""

        def __init__(self, spec: KVSpec, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.kv_spec = spec
            self.key_rotation: torch.Tensor | None = None  # head_dim x head_dim, orthogonal

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):  # type: ignore[override]
            keys, values = super().update(key_states, value_states, layer_idx, *args, **kwargs)
            spec = self.kv_spec
            rot = self.key_rotation
            if rot is None:
                k = round_kv(keys, spec, spec.key_granularity)
            else:
                # QuaRot rotates queries and keys online by H after RoPE and caches round(K H).
                # Since H H^T = I, (q H)(round(K H))^T = q (round(K H) H^T)^T: returning
                # round(K H) H^T to the unrotated attention gives the same scores.
                if rot.shape[0] != keys.shape[-1]:
                    raise ShapeError(
                        f"key rotation of order {rot.shape[0]} on keys of head_dim {keys.shape[-1]}"
                    )
                r = rot.to(device=keys.device, dtype=keys.dtype)
                k = round_kv(keys @ r, spec, spec.key_granularity) @ r.T
            return k, round_kv(values, spec, spec.value_granularity)

    return KVQuantCache


_KVQuantCache: type | None = None


def kv_cache(spec: KVSpec, config: Any, like: Any = None) -> Any:
    """A fresh `KVQuantCache`, holding `like`'s (a transformers Cache) float contents if given."""
    global _KVQuantCache
    if _KVQuantCache is None:
        _KVQuantCache = _cache_class()
    cache = _KVQuantCache(spec, config=config)
    if like is not None:
        for i, layer in enumerate(like.layers):
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                cache.layers[i].update(layer.keys, layer.values)  # the float record, unrounded
    return cache


_CACHE_KWARGS = ("cache", "past_key_values")  # transformers 5 renamed it; either may come


def _inject(model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: run this pass with a KV-quantizing cache."""
    spec: KVSpec = model.kv_spec  # type: ignore[assignment]
    given = next((kwargs[n] for n in _CACHE_KWARGS if kwargs.get(n) is not None), None)
    if given is None or getattr(given, "kv_spec", None) != spec:  # ours passes back as is
        given = kv_cache(spec, model.config, like=given)
    given.key_rotation = getattr(model, "kv_key_rotation", None)  # read at each pass
    kwargs = {k: v for k, v in kwargs.items() if k not in _CACHE_KWARGS}
    kwargs[model.kv_cache_kwarg] = given  # type: ignore[index]
    kwargs["use_cache"] = True
    return args, kwargs


def check_kv_model(model: nn.Module, spec: KVSpec) -> str:
    """The keyword `model.forward` takes its cache by; `ConfigError` if it keeps none."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    name = next((n for n in _CACHE_KWARGS if n in params), None)
    if name is None or getattr(model, "config", None) is None:
        raise ConfigError(
            f"{spec.describe()}: {type(model).__name__} keeps no KV cache (no cache / "
            "past_key_values argument); kv: applies to transformers causal language models"
        )
    if getattr(model, "kv_spec", None) is not None:
        raise ConfigError(f"{spec.describe()}: this model already has {model.kv_spec.describe()}")
    return name


def install_kv(model: nn.Module, spec: KVSpec) -> None:
    """Make every forward pass of `model` (a transformers causal LM) read a quantized KV cache."""
    name = check_kv_model(model, spec)
    model.kv_spec = spec
    model.kv_cache_kwarg = name
    model.register_forward_pre_hook(_inject, with_kwargs=True)


def kv_spec_of(model: nn.Module) -> KVSpec | None:
    """The `kv:` spec installed on `model` (None: its cache is float)."""
    spec = getattr(model, "kv_spec", None)
    return spec if isinstance(spec, KVSpec) else None


def install_key_rotation(model: nn.Module, rotation: torch.Tensor) -> None:
    """Make `model`'s quantized KV cache store keys rotated by `rotation` (head_dim x head_dim,
    orthogonal; QuaRot's per-head Hadamard): round(K R) R^T is what attention reads. Applies
    only while a `kv:` format is installed (`install_kv`, before or after this call)."""
    r = torch.as_tensor(rotation).detach()
    if r.dim() != 2 or r.shape[0] != r.shape[1] or not r.is_floating_point():
        raise ShapeError(f"a key rotation is a square float matrix, not {tuple(r.shape)}")
    eye = torch.eye(r.shape[0], dtype=torch.float64)
    if not torch.allclose(r.double() @ r.double().T, eye, atol=1e-6):
        raise ShapeError("a key rotation must be orthogonal (R R^T = I)")
    if getattr(model, "kv_key_rotation", None) is not None:
        raise ConfigError("this model's KV cache already rotates its keys; rotations do not stack")
    model.kv_key_rotation = r.to(torch.float64).cpu()


def key_rotation_of(model: nn.Module) -> torch.Tensor | None:
    """The key rotation installed on `model` (None: keys are stored as computed)."""
    r = getattr(model, "kv_key_rotation", None)
    return r if isinstance(r, torch.Tensor) else None
