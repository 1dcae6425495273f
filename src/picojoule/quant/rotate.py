"""Hadamard rotations for quantization (`rotate:` lever): `rotate:hadamard` and `rotate:block<N>`.

A rotation by an orthogonal `R` leaves a linear layer's output unchanged,
`y = x W^T = (x R)(W R)^T`, but spreads an outlier channel of `x` over many channels, so a
shared quantization scale fits the rotated input better ("incoherence processing"). Hadamard
matrices make good rotations: every entry is +-1/sqrt(n) and the product with a vector takes
n log2 n additions for a power of two n (fast Walsh-Hadamard transform).

- `rotate:block<N>` (`rotate_block_`): every `nn.Linear` whose input width N divides gets the
  block-diagonal Hadamard `H_bd = diag(H_N, ..., H_N)`: `W <- W H_bd` offline, and its input
  `x <- x H_bd` online (a forward pre-hook). With N the format's block (16 for NVFP4, 32 for
  MXFP4) each scale block sees one rotated block: the block-wise rotation that MR-GPTQ
  (Egiazarian et al., arXiv 2509.23202) and arXiv 2511.04214 find MXFP4 / NVFP4 need.
- `rotate:hadamard` (`rotate_hadamard_`): QuaRot (Ashkboos et al., "QuaRot: Outlier-Free 4-Bit
  Inference in Rotated LLMs", NeurIPS 2024, arXiv 2404.00456, section 4, stage 1a-1d) for a
  Llama-family causal LM; SpinQuant's (Liu et al. 2024, arXiv 2405.16406) names R1-R4 are
  used in the comments.

Orders: Sylvester (1867) builds every power of two; Paley (1933) builds q + 1 for a prime
q = 3 mod 4 (Paley I: 12, 20, 24, 44, 48, ...) and 2(q + 1) for a prime q = 1 mod 4 (Paley II:
12, 28, 36, 60, ...); Kronecker products of these cover real model widths:
576 = 12 * 12 * 4 (SmolLM2-135M's hidden size), 1536 = 12 * 128, 384 = 12 * 32.

Run-time cost: `hadamard_adds(n)` is the cost of one transform of one vector; the
`OnlineRotation` records that the rotating functions return say where a transform runs online
and what it costs per token, so a caller can bill it in energy. Offline rotations (folded into
weights) cost nothing at run time.

Order with `quantize_`: the online rotation is a forward pre-hook, and forward pre-hooks run in
registration order, so rotate first, then quantize (the activation fake-quant pre-hook that
`quantize_` installs then sees the rotated input, and the weight fake-quant rounds the rotated
weight). Rotating a layer that is already quantized raises `ConfigError`.

Importable with torch + numpy alone: transformers models are recognised by their attributes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.config import check_filter, check_model
from picojoule.errors import ConfigError, ShapeError

__all__ = [
    "RotationCost",
    "OnlineRotation",
    "RotationList",
    "hadamard_matrix",
    "hadamard_factors",
    "random_hadamard",
    "hadamard_adds",
    "fast_hadamard",
    "rotate_block_",
    "rotate_hadamard_",
    "rotation_of",
]

_MARK = "picojoule_rotation"  # model / module attribute: which rotation was applied


# ----------------------------------------------------------------------------- constructions


def _is_prime(q: int) -> bool:
    if q < 2:
        return False
    return all(q % d for d in range(2, math.isqrt(q) + 1))


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _paley_kind(m: int) -> str | None:
    """'I' if m = q + 1 (q prime, q = 3 mod 4), 'II' if m = 2(q + 1) (q prime, q = 1 mod 4)."""
    if _is_prime(m - 1) and (m - 1) % 4 == 3:
        return "I"
    if m % 2 == 0 and _is_prime(m // 2 - 1) and (m // 2 - 1) % 4 == 1:
        return "II"
    return None


def _jacobsthal(q: int) -> torch.Tensor:
    """Q[i, j] = chi(j - i), chi the quadratic character mod the prime q (0, +1 or -1)."""
    chi = torch.full((q,), -1.0, dtype=torch.float64)
    chi[0] = 0.0
    for a in range(1, q):
        chi[a * a % q] = 1.0
    idx = (torch.arange(q)[None, :] - torch.arange(q)[:, None]) % q
    return chi[idx]


@functools.lru_cache(maxsize=64)
def _paley(m: int) -> torch.Tensor:
    """The +-1 Hadamard matrix of Paley order m (unnormalised, float64)."""
    kind = _paley_kind(m)
    if kind == "I":  # H = I + [[0, 1^T], [-1, Q]] with Q skew-symmetric (q = 3 mod 4)
        q = m - 1
        s = torch.zeros(m, m, dtype=torch.float64)
        s[0, 1:], s[1:, 0], s[1:, 1:] = 1.0, -1.0, _jacobsthal(q)
        return torch.eye(m, dtype=torch.float64) + s
    assert kind == "II"  # conference matrix C = [[0, 1^T], [1, Q]], Q symmetric (q = 1 mod 4)
    q = m // 2 - 1
    c = torch.zeros(q + 1, q + 1, dtype=torch.float64)
    c[0, 1:], c[1:, 0], c[1:, 1:] = 1.0, 1.0, _jacobsthal(q)
    a = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    return torch.kron(c, a) + torch.kron(torch.eye(q + 1, dtype=torch.float64), b)


@functools.lru_cache(maxsize=256)
def _plan(n: int) -> tuple[tuple[int, ...], int] | None:
    """n = prod(Paley orders) * 2^k with the fewest multiply-adds (smallest sum of the Paley
    orders), or None. Paley factors that are powers of two are never used (Sylvester's
    butterfly is cheaper)."""
    if n < 1:
        return None
    if _is_pow2(n):
        return (), n.bit_length() - 1
    best: tuple[int, tuple[int, ...], int] | None = None
    for m in range(12, n + 1, 4):  # every Hadamard order above 2 is a multiple of 4
        if n % m or _is_pow2(m) or _paley_kind(m) is None:
            continue
        rest = _plan(n // m)
        if rest is None:
            continue
        factors = tuple(sorted((m, *rest[0])))
        key = (sum(factors), factors, rest[1])
        if best is None or key[:2] < best[:2]:
            best = key
    return None if best is None else (best[1], best[2])


def hadamard_factors(n: int) -> tuple[tuple[int, ...], int]:
    """`(paley_orders, k)` with `n = prod(paley_orders) * 2^k`: how `hadamard_matrix(n)` is
    built (`H_n = H_m1 (x) H_m2 (x) ... (x) H_2^k`, Kronecker product, the Paley orders in
    ascending order). `ShapeError` for an order with no construction."""
    plan = _plan(n) if isinstance(n, int) else None
    if plan is None:
        raise ShapeError(
            f"no Hadamard matrix of order {n}: picojoule builds 2^k times products of Paley "
            "orders (q+1 for a prime q = 3 mod 4, 2(q+1) for a prime q = 1 mod 4: 12, 20, 24, "
            "28, 36, 44, ...)"
        )
    return plan


def _sylvester(p: int) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=torch.float64)
    h2 = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    while h.shape[0] < p:
        h = torch.kron(h2, h)
    return h


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The orthonormal Hadamard matrix of order n (`H H^T = I`, entries +-1/sqrt(n)).

    Powers of two: Sylvester's construction (1867), `H_2n = [[H_n, H_n], [H_n, -H_n]]`
    (symmetric). Other orders: Kronecker products of Paley's matrices (Paley 1933: q + 1 for a
    prime q = 3 mod 4, 2(q + 1) for a prime q = 1 mod 4) with a Sylvester factor, see
    `hadamard_factors`; e.g. 24 = 12 * 2, 576 = 12 * 12 * 4, 1536 = 12 * 128.
    `ShapeError` for an order with no construction (odd n > 1, 92, ...).
    """
    factors, k = hadamard_factors(n)
    h = _sylvester(1 << k)
    for m in reversed(factors):
        h = torch.kron(_paley(m), h)
    return (h / math.sqrt(n)).to(dtype)


def random_hadamard(n: int, seed: int = 0) -> torch.Tensor:
    """`H diag(s)` with `s` random +-1 (float64, orthonormal; deterministic from `seed`): the
    randomised Hadamard rotation QuaRot applies to the residual stream."""
    h = hadamard_matrix(n)
    gen = torch.Generator().manual_seed(int(seed))
    signs = torch.randint(0, 2, (n,), generator=gen, dtype=torch.int64).to(torch.float64) * 2 - 1
    return h * signs[None, :]


# ----------------------------------------------------------------------------- cost


@dataclass(frozen=True)
class RotationCost:
    """Run-time work of online rotations, per vector: additions/subtractions and
    multiply-adds."""

    adds: int = 0
    macs: int = 0

    def __add__(self, other: RotationCost) -> RotationCost:
        return RotationCost(self.adds + other.adds, self.macs + other.macs)

    def __mul__(self, k: int) -> RotationCost:
        return RotationCost(self.adds * k, self.macs * k)

    __rmul__ = __mul__

    def to_dict(self) -> dict[str, int]:
        return {"adds": self.adds, "macs": self.macs}


def hadamard_adds(n: int) -> RotationCost:
    """Cost of one Hadamard transform of order n on one vector of n elements.

    n = 2^k: `n * k` additions (fast Walsh-Hadamard transform, k butterfly stages of n
    adds/subtracts each), no multiplies. n = m * 2^k with Paley factors m_1 ... m_j
    (`hadamard_factors`): `n * k` additions for the 2^k part plus `n * (m_1 + ... + m_j)`
    multiply-adds for the m_i x m_i parts - the "small matmul" of a fused Hadamard kernel (for
    each factor, n / m_i vectors times an m_i x m_i matrix: n * m_i multiply-adds), run as a
    matmul although its entries are +-1. The 1/sqrt(n) normalisation folds into the weights
    or the quantization scale and is not counted.
    """
    factors, k = hadamard_factors(n)
    return RotationCost(adds=n * k, macs=n * sum(factors))


@dataclass(frozen=True)
class OnlineRotation:
    """A Hadamard transform that runs at inference time (it cannot be folded into weights).

    layer: the module it belongs to (the Linear whose input it rotates, or the attention
    module for keys / queries); where: "input" (the layer's input), "keys" or "queries"
    (attention's, after RoPE); size: the Hadamard order n of one transform; transforms: how
    many transforms run per vector (in_features / block, or the number of heads); vectors:
    what one vector is ("token": one token's activation); cost: per vector, all its transforms
    together (`transforms * hadamard_adds(size)`).
    """

    layer: str
    where: Literal["input", "keys", "queries"]
    size: int
    transforms: int
    cost: RotationCost
    vectors: str = "token"

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "where": self.where,
            "size": self.size,
            "transforms": self.transforms,
            "vectors": self.vectors,
            **self.cost.to_dict(),
        }


class RotationList(list):  # type: ignore[type-arg]
    """The `OnlineRotation` records of one call; `skipped` lists the layers left unrotated,
    each as "name: reason"."""

    def __init__(self, records: Iterable[OnlineRotation] = (), skipped: Iterable[str] = ()) -> None:
        super().__init__(records)
        self.skipped: list[str] = list(skipped)

    def total(self) -> RotationCost:
        """The summed cost per token of every record."""
        out = RotationCost()
        for r in self:
            out = out + r.cost
        return out


def _online(layer: str, where: str, size: int, transforms: int) -> OnlineRotation:
    return OnlineRotation(
        layer=layer,
        where=where,  # type: ignore[arg-type]
        size=size,
        transforms=transforms,
        cost=hadamard_adds(size) * transforms,
    )


# ----------------------------------------------------------------------------- transform


def _factor_matrix(m: int, like: torch.Tensor) -> torch.Tensor:
    return _paley(m).to(device=like.device, dtype=like.dtype)


def fast_hadamard(x: torch.Tensor, n: int) -> torch.Tensor:
    """`x @ diag(H_n, ..., H_n)` along the last dim, without building a matrix of order n.

    `x.shape[-1]` must be a multiple of n (equal: one transform, `x @ hadamard_matrix(n)`;
    a multiple: the block-diagonal transform of `rotate:block<n>`). The power-of-two part runs
    as butterflies (fast Walsh-Hadamard transform, n log2 n adds); Paley factors as small
    m x m matmuls along their own axis of the Kronecker layout (see `hadamard_adds`).
    Computes in `x.dtype`; differentiable.
    """
    factors, k = hadamard_factors(n)
    if not x.is_floating_point():
        raise ShapeError(f"fast_hadamard needs a floating-point tensor, not {x.dtype}")
    width = x.shape[-1] if x.dim() else 0
    if width == 0 or width % n:
        raise ShapeError(f"fast_hadamard: last dim {width} is not a multiple of the order {n}")
    lead = x.shape[:-1]
    p = 1 << k
    y = x.reshape(-1, p)
    h = 1
    while h < p:  # butterfly stage: pairs (i, i + h) inside blocks of 2h -> (a + b, a - b)
        y = y.view(-1, p // (2 * h), 2, h)
        y = torch.stack((y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]), dim=2)
        h *= 2
    if factors:  # H = H_m1 (x) ... (x) H_p: index (i1, ..., j); multiply each axis by H_mi
        y = y.reshape(-1, *factors, p)
        for axis, m in enumerate(factors, start=1):
            y = torch.movedim(torch.movedim(y, axis, -1) @ _factor_matrix(m, y), -1, axis)
    return (y.reshape(*lead, width) * (1.0 / math.sqrt(n))).to(x.dtype)


class _InputRotation:
    """Forward pre-hook: the layer's input `x <- x diag(H_n, ..., H_n)` (online)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        if not args or not torch.is_tensor(args[0]) or not args[0].is_floating_point():
            return args
        return (fast_hadamard(args[0], self.n), *args[1:])


# ----------------------------------------------------------------------------- helpers


def rotation_of(model: nn.Module) -> str | None:
    """The rotation applied to `model` ("hadamard", "block16", ...) or None."""
    mark = getattr(model, _MARK, None)
    return mark if isinstance(mark, str) else None


def _check_float(module: nn.Module, name: str) -> None:
    from picojoule.quant.api import is_quantized

    label = name or type(module).__name__
    if is_quantized(module):
        raise ConfigError(
            f"{label} is already quantized; rotate a float model before quantize_ (the "
            "rotation's pre-hook must run before the activation fake-quant)"
        )
    if parametrize.is_parametrized(module, "weight"):
        raise ConfigError(
            f"{label}: its weight is parametrized (a sparsity mask?); rotate before pruning"
        )
    if getattr(module, _MARK, None) is not None:
        raise ConfigError(
            f"{label} is already rotated ({getattr(module, _MARK)}); rotations do not stack"
        )


@torch.no_grad()
def _set(param: torch.Tensor, value: torch.Tensor) -> None:
    param.copy_(value.to(param.dtype))


def _rotate_in_blocks(w: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """`W diag(h, ..., h)`: every block of `h.shape[0]` columns times h (float64)."""
    b = h.shape[0]
    out, inp = w.shape
    return (w.reshape(out, inp // b, b) @ h.to(w.device)).reshape(out, inp)


# ----------------------------------------------------------------------------- rotate:block


def rotate_block_(
    model: nn.Module,
    block: int,
    *,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
) -> RotationList:
    """`rotate:block<N>`: block-diagonal Hadamard on every `nn.Linear`'s input, in place.

    For each Linear (that `filter_fn(module, name)` accepts) whose in_features is a multiple of
    `block`: `W <- W H_bd` offline (exact) and a forward pre-hook `x <- x H_bd` online, with
    `H_bd = diag(H_block, ..., H_block)`, so the float output is unchanged:
    `(x H_bd)(W H_bd)^T = x W^T`. Other Linears are left alone and listed in `.skipped`.
    A Linear whose weight is tied to another module (lm_head and embed_tokens) gets its own
    copy first (and `config.tie_word_embeddings = False`).

    Cost: one record per rotated layer, per token `in_features / block * hadamard_adds(block)`
    additions (`block * log2 block` each).

    Call it before `quantize_`: forward pre-hooks run in registration order, so the rotation
    must be registered before the activation fake-quant's pre-hook. A layer that is already
    quantized (or rotated) raises `ConfigError`. `block` must be a power of two >= 2 (the
    format's block: 16 for NVFP4, 32 for MXFP4).
    """
    check_model(model, "rotate_block_")
    check_filter(filter_fn, "rotate_block_")
    if isinstance(block, bool) or not isinstance(block, int) or block < 2 or not _is_pow2(block):
        raise ConfigError(
            f"rotate:block{block}: the block must be a power of two >= 2 (the format's block: "
            "16 for NVFP4, 32 for MXFP4)"
        )
    if rotation_of(model) is not None:
        raise ConfigError(
            f"this model is already rotated ({rotation_of(model)}); rotations do not stack"
        )
    todo: list[tuple[str, nn.Linear]] = []
    skipped: list[str] = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear) or (filter_fn is not None and not filter_fn(m, name)):
            continue
        if m.in_features % block:
            skipped.append(f"{name}: in_features {m.in_features} is not a multiple of {block}")
            continue
        todo.append((name, m))
    for name, m in todo:  # refuse before any change
        _check_float(m, name)
    h = hadamard_matrix(block)
    shared = _shared_weights(model)
    records = []
    for name, m in todo:
        if id(m.weight) in shared:  # lm_head tied to the embedding: rotate the head's own copy
            _untie(model, m, name)
        _set(m.weight, _rotate_in_blocks(m.weight.detach().double(), h))
        m.register_forward_pre_hook(_InputRotation(block))
        setattr(m, _MARK, f"block{block}")
        records.append(_online(name, "input", block, m.in_features // block))
    setattr(model, _MARK, f"block{block}")
    return RotationList(records, skipped)


# ----------------------------------------------------------------------------- rotate:hadamard

_LAYER_CHILDREN = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"}
_ATTN_CHILDREN = {"q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"}
_MLP_CHILDREN = {"gate_proj", "up_proj", "down_proj"}
_MODEL_CHILDREN = {"embed_tokens", "layers", "norm"}
_REFUSE = "rotate:hadamard needs a Llama-family causal LM; use rotate:block<N> for other models"


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=True))


def _is_rmsnorm(norm: Any, width: int) -> bool:
    """`norm(x) == x / sqrt(mean(x^2) + eps) * weight` on a probe (no mean subtraction, no
    bias, no `1 + weight`): the norm that commutes with an orthogonal rotation once its gain
    is folded into the next layers."""
    import copy

    w = getattr(norm, "weight", None)
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    if not isinstance(norm, nn.Module) or not isinstance(w, torch.Tensor) or eps is None:
        return False
    if w.shape != (width,) or any(n != "weight" for n, _ in norm.named_parameters()):
        return False
    probe = copy.deepcopy(norm).float()
    x = torch.randn(3, width, generator=torch.Generator().manual_seed(0)) * 3 + 1
    x = x.to(w.device)
    with torch.no_grad():
        got = probe(x)
        want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + float(eps)) * probe.weight
    return bool(torch.allclose(got, want, rtol=1e-4, atol=1e-5))


def _llama_parts(model: nn.Module) -> tuple[nn.Module, list[nn.Module], int, int, int]:
    """(inner model, decoder layers, heads, kv heads, head_dim); `ConfigError` otherwise."""
    inner = getattr(model, "model", None)
    head = getattr(model, "lm_head", None)
    config = getattr(model, "config", None)
    embed = getattr(inner, "embed_tokens", None)
    layers = getattr(inner, "layers", None)
    if not (
        isinstance(inner, nn.Module)
        and isinstance(head, nn.Linear)
        and isinstance(embed, nn.Embedding)
        and isinstance(layers, nn.ModuleList)
        and len(layers) > 0
        and config is not None
    ):
        raise ConfigError(_REFUSE)
    hidden = embed.embedding_dim
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if not isinstance(heads, int) or not isinstance(kv_heads, int) or heads < 1:
        raise ConfigError(_REFUSE)
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    extra = [n for n, c in inner.named_children() if n not in _MODEL_CHILDREN and _has_params(c)]
    ok = (
        not extra
        and head.in_features == hidden
        and _is_rmsnorm(getattr(inner, "norm", None), hidden)
    )
    for layer in layers if ok else ():
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        lin = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        lin += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if not all(isinstance(x, nn.Linear) for x in lin):
            ok = False
            break
        q, k, v, o, gate, up, down = lin
        stray = [
            n for n, c in layer.named_children() if n not in _LAYER_CHILDREN and _has_params(c)
        ]
        stray += [n for n, c in attn.named_children() if n not in _ATTN_CHILDREN and _has_params(c)]
        stray += [n for n, c in mlp.named_children() if n not in _MLP_CHILDREN and _has_params(c)]
        ok = (
            not stray
            and all(x.in_features == hidden for x in (q, k, v, gate, up))
            and o.out_features == hidden
            and down.out_features == hidden
            and q.out_features == heads * head_dim == o.in_features
            and k.out_features == kv_heads * head_dim == v.out_features
            and gate.out_features == up.out_features == down.in_features
            and _is_rmsnorm(getattr(layer, "input_layernorm", None), hidden)
            and _is_rmsnorm(getattr(layer, "post_attention_layernorm", None), hidden)
        )
        if not ok:
            break
    if not ok:
        raise ConfigError(_REFUSE)
    return inner, list(layers), heads, kv_heads, head_dim


def _shared_weights(model: nn.Module) -> set[int]:
    """ids of the parameters that more than one module holds (tied weights)."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    return {i for i, c in seen.items() if c > 1}


def _untie(model: nn.Module, module: nn.Module, name: str) -> None:
    """Give `module` its own copy of a weight it shares (lm_head tied to embed_tokens): a
    rotation of its input must not change the other holder."""
    w = module.weight
    module.weight = nn.Parameter(w.detach().clone(), requires_grad=w.requires_grad)
    config = getattr(model, "config", None)
    if config is not None:
        text = getattr(config, "get_text_config", lambda: config)()
        for cfg in {id(c): c for c in (config, text)}.values():
            if getattr(cfg, "tie_word_embeddings", False):
                cfg.tie_word_embeddings = False
    tied = getattr(model, "all_tied_weights_keys", None)  # transformers 5's record of ties
    if isinstance(tied, dict):
        tied.pop(f"{name}.weight", None)


def rotate_hadamard_(
    model: nn.Module, *, seed: int = 0, online_down: bool = True, online_kv: bool = True
) -> RotationList:
    """`rotate:hadamard`: QuaRot (arXiv 2404.00456, section 4) on a Llama-family causal LM,
    in place; the float output is unchanged (to float rounding).

    Recognised by structure: `model.model.embed_tokens`, `model.model.layers[i]` with
    `input_layernorm`, `self_attn.{q,k,v,o}_proj`, `post_attention_layernorm`,
    `mlp.{gate,up,down}_proj`, `model.model.norm` (RMSNorms, checked on a probe) and
    `model.lm_head`; anything else raises `ConfigError` (use `rotate_block_`). Grouped-query
    attention and widths that are not powers of two work (see `hadamard_matrix`).

    Offline (folded into weights; no run-time cost):
    - RMSNorm gains fold into the next linears' columns and become 1 (QuaRot stage 1a:
      an RMSNorm without gain commutes with an orthogonal rotation). lm_head is untied from
      embed_tokens first (its own Parameter, `config.tie_word_embeddings = False`), since the
      final norm's gain changes only the head.
    - R1 (stage 1a): the residual stream rotates by `Q = random_hadamard(hidden, seed)`:
      `E <- E Q`; the linears that read it (q, k, v, gate, up, lm_head) `W <- W Q`; the ones
      that write it (o_proj, down_proj) `W <- Q^T W`, bias `b <- b Q`.
    - R2 (stage 1c): per head, `H = hadamard_matrix(head_dim)`: v_proj's output rows of each
      kv head `W_v,h <- H^T W_v,h` (bias too) and o_proj's input columns of each head
      `W_o,h <- W_o,h H`; attention mixes tokens only, so `H H^T = I` cancels between them.
      The KV cache then stores rotated values.
    Online (returned as `OnlineRotation`s, cost per token):
    - R4 (stage 1b), `online_down`: down_proj's input `x <- x H_int` by a forward pre-hook and
      `W_down <- W_down H_int` offline; `hadamard_adds(intermediate)` per token.
    - R3 (stage 1d), `online_kv`: queries and keys rotate by H_head after RoPE, so the keys a
      quantized cache stores are incoherent. Emulated in the KV cache
      (`picojoule.quant.kvcache.install_key_rotation`): with a `kv:` format installed (before
      or after this call) the cache holds `round(K H) H^T`; without one it has no effect.
      Records: keys `kv_heads * hadamard_adds(head_dim)`, queries
      `heads * hadamard_adds(head_dim)` per token per layer. Pass `online_kv=False` when no
      `kv:` format is used (QuaRot needs R3 only for a quantized cache). `attn:` product
      quantization is not rotated.

    Call before `quantize_`; a quantized or already rotated model raises `ConfigError`.
    """
    check_model(model, "rotate_hadamard_")
    inner, layers, heads, kv_heads, head_dim = _llama_parts(model)
    if rotation_of(model) is not None:
        raise ConfigError(
            f"this model is already rotated ({rotation_of(model)}); rotations do not stack"
        )
    if online_kv and getattr(model, "kv_key_rotation", None) is not None:
        raise ConfigError("this model's KV cache already rotates its keys; rotations do not stack")
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            _check_float(m, name)
    embed: nn.Embedding = inner.embed_tokens
    hidden = embed.embedding_dim
    q_res = random_hadamard(hidden, seed)  # R1
    h_head = hadamard_matrix(head_dim)  # R2 / R3
    if id(model.lm_head.weight) in _shared_weights(model):
        _untie(model, model.lm_head, "lm_head")  # the final norm's gain folds into the head only
    names = {id(m): n for n, m in model.named_modules()}

    def read(lin: nn.Linear, gain: torch.Tensor) -> None:  # W <- W diag(g) Q
        w = lin.weight.detach().double()
        _set(lin.weight, (w * gain.to(w.device)[None, :]) @ q_res.to(w.device))

    def write(lin: nn.Linear, w: torch.Tensor) -> None:  # W <- Q^T W, b <- b Q
        _set(lin.weight, q_res.to(w.device).T @ w)
        if lin.bias is not None:
            _set(lin.bias, lin.bias.detach().double() @ q_res.to(lin.bias.device))

    _set(embed.weight, embed.weight.detach().double() @ q_res.to(embed.weight.device))
    records: list[OnlineRotation] = []
    for layer in layers:
        attn, mlp = layer.self_attn, layer.mlp
        g_in = layer.input_layernorm.weight.detach().double()
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj):
            read(lin, g_in)
        # R2: v rows per kv head <- H^T W_v,h ; o columns per head <- W_o,h H
        wv = attn.v_proj.weight.detach().double().reshape(kv_heads, head_dim, hidden)
        _set(attn.v_proj.weight, (h_head.to(wv.device).T @ wv).reshape(-1, hidden))
        if attn.v_proj.bias is not None:
            bv = attn.v_proj.bias.detach().double().reshape(kv_heads, head_dim)
            _set(attn.v_proj.bias, (bv @ h_head.to(bv.device)).reshape(-1))
        write(attn.o_proj, _rotate_in_blocks(attn.o_proj.weight.detach().double(), h_head))
        g_post = layer.post_attention_layernorm.weight.detach().double()
        for lin in (mlp.gate_proj, mlp.up_proj):
            read(lin, g_post)
        down = mlp.down_proj
        w_down = down.weight.detach().double()
        if online_down:  # R4: W_down <- W_down H_int, input x <- x H_int online
            w_down = _rotate_in_blocks(w_down, hadamard_matrix(down.in_features))
        write(down, w_down)
        if online_down:
            down.register_forward_pre_hook(_InputRotation(down.in_features))
            setattr(down, _MARK, "hadamard")
            records.append(_online(names[id(down)], "input", down.in_features, 1))
        if online_kv:
            a = names[id(attn)]
            records.append(_online(a, "queries", head_dim, heads))
            records.append(_online(a, "keys", head_dim, kv_heads))
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            with torch.no_grad():
                norm.weight.fill_(1.0)
    read(model.lm_head, inner.norm.weight.detach().double())
    with torch.no_grad():
        inner.norm.weight.fill_(1.0)
    if online_kv:
        from picojoule.quant.kvcache import install_key_rotation

        install_key_rotation(model, h_head)
    setattr(model, _MARK, "hadamard")
    return RotationList(records)
