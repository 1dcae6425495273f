"""Apply input-channel permutations to a model without changing what it computes.

Public: `PermutationReport`, `permute_pair_`, `permute_channels_`.

Permuting a consumer's input channels is only function-preserving if the tensor it reads is
permuted the same way, i.e. the PRODUCER's output channels (weight rows, bias) and every
per-channel op in between (BatchNorm statistics; ReLU/pooling/dropout commute with a channel
permutation). `permute_channels_` finds producer -> consumer chains with torch.fx and skips,
with a reason, any chain it cannot prove safe: a producer feeding several consumers (residual
adds, concatenations), grouped convolutions, or a flatten that spreads one channel over
several input features of a Linear.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils import parametrize

from picojoule.errors import ConfigError, ShapeError
from picojoule.sparsity.permutation import search_permutation

__all__ = ["PermutationReport", "permute_pair_", "permute_channels_"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Modules/functions that act on each channel independently: a channel permutation commutes.
_CHANNELWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Identity,
    nn.Dropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
)
_CHANNELWISE_FUNCTIONS: tuple[Callable[..., object], ...] = (
    F.relu,
    torch.relu,
    F.gelu,
    F.silu,
    torch.sigmoid,
    torch.tanh,
    F.max_pool2d,
    F.avg_pool2d,
    F.dropout,
)
_FLATTENS: tuple[Callable[..., object], ...] = (torch.flatten,)


@dataclass(frozen=True, kw_only=True)
class PermutationReport:
    """What `permute_channels_` did for one consumer layer.

    `kept_before`/`kept_after` are fractions of the layer's total |w| an n:m mask keeps;
    `reason` is set (and the layer untouched) when it was skipped.
    """

    consumer: str
    producer: str = ""
    kept_before: float = 0.0
    kept_after: float = 0.0
    reason: str = ""

    @property
    def permuted(self) -> bool:
        return not self.reason


@torch.no_grad()
def permute_pair_(
    producer: nn.Module,
    consumer: nn.Module,
    perm: torch.Tensor,
    between: tuple[nn.Module, ...] = (),
) -> None:
    """Reorder `consumer`'s input channels by `perm` and `producer`'s outputs to match, in place.

    `between` lists the BatchNorm (or other channelwise) modules on the path; BatchNorms get
    their affine parameters and running statistics permuted.
    """
    for mod in (producer, consumer):
        if not isinstance(mod, _WEIGHTED):
            raise ConfigError(f"can only permute Linear/Conv layers, got {type(mod).__name__}")
        if parametrize.is_parametrized(mod):
            raise ConfigError("permute channels before sparsify_/quantize_: the layer is masked")
    if producer.weight.shape[0] != consumer.weight.shape[1]:
        raise ShapeError(
            f"producer has {producer.weight.shape[0]} output channels but consumer reads "
            f"{consumer.weight.shape[1]}: they are not a producer -> consumer pair"
        )
    consumer.weight.copy_(consumer.weight[:, perm])
    producer.weight.copy_(producer.weight[perm])
    if producer.bias is not None:
        producer.bias.copy_(producer.bias[perm])
    for mod in between:
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            for name in ("weight", "bias", "running_mean", "running_var"):
                t = getattr(mod, name)
                if t is not None:
                    t.copy_(t[perm])


def _is_channelwise(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], _CHANNELWISE_MODULES)
    if node.op == "call_function":
        return node.target in _CHANNELWISE_FUNCTIONS
    return node.op == "call_method" and node.target in ("relu", "sigmoid", "tanh")


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], nn.Flatten)
    if node.op == "call_function":
        return node.target in _FLATTENS
    return node.op == "call_method" and node.target in ("flatten", "view", "reshape")


def _spatial(node: fx.Node) -> int:
    """Elements per channel of a node's output (1 for [B, C])."""
    shape = node.meta["tensor_meta"].shape
    return int(torch.Size(shape[2:]).numel())


def _flattens_to_features(node: fx.Node) -> bool:
    """True if `node` maps [B, C, *spatial] to [B, C * prod(spatial)] (a flatten)."""
    src = node.args[0]
    if not isinstance(src, fx.Node):
        return False
    shape_in = src.meta["tensor_meta"].shape
    shape_out = node.meta["tensor_meta"].shape
    return len(shape_out) == 2 and shape_out[1] == torch.Size(shape_in[1:]).numel()


def _find_producer(
    consumer: fx.Node, modules: dict[str, nn.Module]
) -> tuple[str, tuple[str, ...], str]:
    """Walk back from `consumer` to its producer: (producer name, modules between, reason)."""
    between: list[str] = []
    node = consumer.args[0]
    while isinstance(node, fx.Node):
        if len(node.users) != 1:
            return "", (), f"{node.name} feeds {len(node.users)} users (residual/concat)"
        if node.op == "call_module" and isinstance(modules[str(node.target)], _WEIGHTED):
            producer = modules[str(node.target)]
            if getattr(producer, "groups", 1) != 1:
                return "", (), f"producer {node.target} is a grouped convolution"
            return str(node.target), tuple(between), ""
        if _is_flatten(node, modules):
            if not _flattens_to_features(node):
                return "", (), f"{node.name} reshapes channels, not a flatten to [B, features]"
            per_channel = _spatial(node.args[0]) if isinstance(node.args[0], fx.Node) else 0
            if per_channel != 1:
                return (
                    "",
                    (),
                    (
                        f"flatten spreads each channel over {per_channel} features, so a channel "
                        "permutation moves whole groups and cannot change what N:M keeps"
                    ),
                )
        elif not _is_channelwise(node, modules):
            return "", (), f"path passes {node.name} ({node.op} {node.target}), not channelwise"
        if node.op == "call_module":
            between.append(str(node.target))
        node = node.args[0] if node.args else None
    return "", (), "input comes from the model input, not from a layer"


def permute_channels_(
    model: nn.Module,
    example_input: torch.Tensor,
    n: int = 2,
    m: int = 4,
    *,
    layers: Callable[[str], bool] | None = None,
    rounds: int = 20,
    seed: int = 0,
) -> list[PermutationReport]:
    """Permute every eligible layer's input channels to raise its n:m retained magnitude.

    Run before `sparsify_`. `layers(name)` selects consumers (default: all Linear/Conv).
    The model's output is unchanged up to float rounding.
    """
    try:
        gm = fx.symbolic_trace(model)
        ShapeProp(gm).propagate(example_input)
    except Exception as exc:  # tracing failures come in many types; all mean "not traceable"
        raise ConfigError(
            f"cannot trace the model with torch.fx ({type(exc).__name__}: {exc}); "
            "permute producer/consumer pairs yourself with permute_pair_"
        ) from exc
    modules = dict(gm.named_modules())
    reports: list[PermutationReport] = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[str(node.target)], _WEIGHTED):
            continue
        name = str(node.target)
        if layers is not None and not layers(name):
            continue
        consumer = model.get_submodule(name)
        c_in = consumer.weight.shape[1]
        if getattr(consumer, "groups", 1) != 1:
            reports.append(PermutationReport(consumer=name, reason="grouped convolution"))
            continue
        if c_in % m:
            reason = f"{c_in} input channels not divisible by M={m}"
            reports.append(PermutationReport(consumer=name, reason=reason))
            continue
        producer, between, reason = _find_producer(node, modules)
        if not reason and model.get_submodule(producer).weight.shape[0] != c_in:
            reason = f"producer {producer} does not output the {c_in} channels {name} reads"
        if reason:
            reports.append(PermutationReport(consumer=name, reason=reason))
            continue
        found = search_permutation(consumer.weight, n, m, rounds=rounds, seed=seed)
        mids = tuple(model.get_submodule(b) for b in between)
        permute_pair_(model.get_submodule(producer), consumer, found.perm, mids)
        reports.append(
            PermutationReport(
                consumer=name,
                producer=producer,
                kept_before=found.kept_fraction_before,
                kept_after=found.kept_fraction_after,
            )
        )
    return reports
