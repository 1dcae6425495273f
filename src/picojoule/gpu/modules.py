"""Real packed layers: `PackedLinear` and `to_packed_(model, fmt)`.

`quantize_(model, "w:vsq4_v16_s4", backend="triton")` (picojoule.quant) calls `to_packed_`,
which swaps every `nn.Linear` (including fake-quant ones made by `quantize_`: their current,
parametrized weight is what gets packed) for a `PackedLinear` holding the packed codes and
scales as buffers. Its forward runs the fused Triton GEMM; on a CPU tensor (no kernel there) it
falls back to the plain-torch dequantize-then-matmul reference, so a packed model still runs,
just not fast. The output is bf16 (the kernel's output); activations are cast to bf16.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from picojoule.config import Applied
from picojoule.errors import FormatError
from picojoule.formats import Format
from picojoule.gpu.packing import PACKED_FORMATS, PackedWeight, dequant, pack

__all__ = ["PackedLinear", "to_packed_"]


class PackedLinear(nn.Module):
    """`y = x @ dequant(W).T + b` with W stored packed (see `picojoule.gpu.packing`)."""

    def __init__(self, packed: PackedWeight, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.fmt = packed.fmt
        self.in_features = packed.in_features
        self.out_features = packed.out_features
        self.register_buffer("qweight", packed.qweight)
        self.register_buffer("scales", packed.scales)
        self.register_buffer("gamma", packed.gamma)
        self.register_buffer("tensor_scale", packed.tensor_scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, fmt: str | Format) -> PackedLinear:
        """Pack `linear.weight` (its parametrized value, if `quantize_` added one)."""
        name = fmt if isinstance(fmt, str) else fmt.name
        if name not in PACKED_FORMATS:
            raise FormatError(
                f"no packed GPU kernel for {name!r}; packed formats: {', '.join(PACKED_FORMATS)}"
            )
        with torch.no_grad():
            w = linear.weight.detach()
            packed = pack(w, name).to(w.device)
        return cls(packed, linear.bias)

    @property
    def packed(self) -> PackedWeight:
        return PackedWeight(
            fmt=self.fmt,  # type: ignore[arg-type]
            out_features=self.out_features,
            in_features=self.in_features,
            qweight=self.qweight,
            scales=self.scales,
            gamma=self.gamma,
            tensor_scale=self.tensor_scale,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda:
            from picojoule.gpu.ops import packed_matmul

            return packed_matmul(x, self.packed, self.bias)
        # Same numerics as the kernel: bf16 activations, fp32 products and sums.
        y = x.to(torch.bfloat16).float() @ dequant(self.packed).T
        if self.bias is not None:
            y = y + self.bias
        return y.to(torch.bfloat16)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"fmt={self.fmt}, bias={self.bias is not None}"
        )


def _set_child(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def to_packed_(model: nn.Module, fmt: str | Format) -> list[Applied]:
    """Replace every `nn.Linear` of `model` by a `PackedLinear` in `fmt`, in place.

    Returns one `Applied` per linear layer. Layers whose K is not a multiple of 16 are packed
    too (K is zero-padded to the packed row length; documented in docs/gpu.md).
    """
    name = fmt if isinstance(fmt, str) else fmt.name
    if name not in PACKED_FORMATS:
        raise FormatError(
            f"no packed GPU kernel for {name!r}; packed formats: {', '.join(PACKED_FORMATS)}"
        )
    done: list[Applied] = []
    for mod_name, mod in list(model.named_modules()):
        if not isinstance(mod, nn.Linear):
            continue
        _set_child(model, mod_name, PackedLinear.from_linear(mod, name))
        done.append(
            Applied(
                name=mod_name,
                kind="Linear",
                action=f"packed {name} ({mod.out_features}x{mod.in_features}, Triton kernel)",
            )
        )
    if not done:
        raise FormatError(f"{type(model).__name__} has no nn.Linear layer to pack")
    return done
