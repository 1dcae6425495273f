"""Fake-quant building blocks: float in, float out, values bit-exact.

- `WeightFakeQuant`: a `torch.nn.utils.parametrize` parametrization on `weight`. Weight
  transforms stack in one list; a sparsity mask (picojoule.sparsity) sits before it, so
  sparse + quantized is mask-then-quantize.
- `CodebookWeight`: EIE/Deep-Compression weight sharing; the centroids are an `nn.Parameter`
  and receive the summed gradient of the weights that share them.
- `ActivationFakeQuant`: applied to a layer's input by a forward pre-hook; holds the
  calibration observer for static scales.

Layouts: scaled formats expect the reduction dimension last. A Linear weight [out, in] already
is; a Conv weight [K, C, R, S] is viewed as [K, R*S*C] (C fastest, so blocks and vectors run
along input channels as in VS-Quant and NVDLA); a conv input [N, C, H, W] as [N*H*W, C]
(role "activation"), and a Linear input [..., in] of any rank as [prod(...), in] (role
"features"), so vectors always run along the dimension the layer reduces.
Gradients use the straight-through estimator: d(fake_quant(x))/dx = 1.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from picojoule.formats import CodebookFormat, Format, ScaledFormat
from picojoule.formats.codebook import assign_index, fit
from picojoule.quant.calibrate import Observer

__all__ = [
    "ste",
    "WeightFakeQuant",
    "CodebookWeight",
    "ActivationFakeQuant",
    "reduction_last",
    "restore_layout",
]


def ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator: the value of `q`, the gradient of `x`.

    Written q + (x - x.detach()), not x + (q - x).detach(): x - x.detach() is exactly 0, so
    the value is q bit for bit even when q is far from x (a GPTQ-solved weight)."""
    return q.detach() + (x - x.detach())


def reduction_last(t: torch.Tensor, role: str) -> torch.Tensor:
    """View a weight or activation with its reduction dimension last (see module docstring).

    role: "weight" (reduction over dim 1 and the kernel), "activation" (a conv input,
    channels in dim 1) or "features" (a Linear input, features in the last dim)."""
    if role == "features":
        return t.reshape(-1, t.shape[-1]) if t.dim() > 2 else t
    if t.dim() <= 2:
        return t
    if role == "weight":  # [K, C, *kernel] -> [K, *kernel, C] -> [K, prod(kernel) * C]
        perm = (0, *range(2, t.dim()), 1)
        return t.permute(perm).reshape(t.shape[0], -1)
    perm = (0, *range(2, t.dim()), 1)  # [N, C, *spatial] -> [N, *spatial, C]
    return t.permute(perm).reshape(-1, t.shape[1])


def restore_layout(flat: torch.Tensor, like: torch.Tensor, role: str) -> torch.Tensor:
    """Inverse of `reduction_last`."""
    if like.dim() <= 2 or role == "features":
        return flat.view(like.shape)
    if role == "weight":
        k, c, *kernel = like.shape
        t = flat.view(k, *kernel, c)
    else:
        n, c, *spatial = like.shape
        t = flat.view(n, *spatial, c)
    inv = (0, t.dim() - 1, *range(1, t.dim() - 1))
    return t.permute(inv).contiguous()


def _fake_quant(fmt: Format, t: torch.Tensor, role: str, rounding: str, amax=None) -> torch.Tensor:
    flat = reduction_last(t.detach(), role)
    if isinstance(fmt, ScaledFormat):
        coarse = "row" if role == "weight" else "tensor"
        q = fmt.quantize(flat, rounding=rounding, amax=amax, coarse=coarse)  # type: ignore[arg-type]
    else:
        q = fmt.quantize(flat, rounding=rounding)  # type: ignore[arg-type]
    return restore_layout(q, t, role)


class WeightFakeQuant(nn.Module):
    """Parametrization: weight -> fake-quantized weight (STE gradient).

    `solved`: values an algorithm chose on the format's grid (GPTQ's error feedback picks
    them column by column, so rounding the float weight again would not give them back); when
    set, they are the layer's weight and the float original stays as it was (a tied embedding
    keeps its float values; `report` measures the error against the float weight)."""

    solved: torch.Tensor | None

    def __init__(self, fmt: Format, rounding: str = "nearest_even") -> None:
        super().__init__()
        self.fmt = fmt
        self.rounding = rounding
        self.register_buffer("solved", None)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.solved is not None:
            return ste(w, self.solved.to(w.dtype))
        return ste(w, _fake_quant(self.fmt, w, "weight", self.rounding))

    def set_solved(self, q: torch.Tensor) -> None:
        """Fix the weight to `q` (reduction-last layout undone: the module's weight shape)."""
        self.solved = q.detach().clone()

    def extra_repr(self) -> str:
        return f"{self.fmt.name}, rounding={self.rounding}"


class CodebookWeight(nn.Module):
    """Parametrization: weight -> centroids[index]. Indices are fixed when the codebook is
    fitted (at construction); the centroids train (Han et al., ICLR 2016, section 3.3)."""

    def __init__(self, fmt: CodebookFormat, weight: torch.Tensor) -> None:
        super().__init__()
        self.fmt = fmt
        w = weight.detach()
        self.centroids = nn.Parameter(fit(w, fmt.k, iters=fmt.iters))
        self.register_buffer("index", assign_index(w, self.centroids.detach()))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # A weight a sparsity mask (applied before this) zeroed stays zero: prune, then share.
        return torch.where(w == 0, 0.0, self.centroids[self.index].to(w.dtype))

    def extra_repr(self) -> str:
        return f"{self.fmt.name}"


class ActivationFakeQuant(nn.Module):
    """Fake-quantizes a layer input. `calibration="dynamic"` takes scales from each batch;
    otherwise `observe()` collects statistics and `freeze()` fixes a static amax.

    `role` says which dimension the layer reduces, and so where blocks and vectors run:
    "activation" for a conv input (channels in dim 1), "features" for a Linear input (the
    last dim, whatever the rank: a transformer's [batch, tokens, hidden])."""

    def __init__(
        self,
        fmt: Format,
        *,
        calibration: str = "dynamic",
        percentile: float = 99.99,
        rounding: str = "nearest_even",
        role: str = "activation",
    ) -> None:
        super().__init__()
        if role not in ("activation", "features"):
            raise ValueError(f"role {role!r}: use 'activation' (conv input) or 'features'")
        self.fmt = fmt
        self.role = role
        self.calibration = calibration
        self.rounding = rounding
        self.observer = Observer(calibration, percentile) if calibration != "dynamic" else None
        self.observing = False
        self.register_buffer("amax", torch.tensor(float("nan")))

    @property
    def static(self) -> bool:
        return self.observer is not None and not bool(torch.isnan(self.amax))

    def freeze(self) -> None:
        """Fix the static amax from what the observer saw (calibration's last step)."""
        if self.observer is None:
            return
        self.amax = torch.tensor(self.observer.amax(self.fmt))
        self.observing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            return x  # token ids and masks pass through untouched
        if self.observing and self.observer is not None:
            self.observer.update(reduction_last(x.detach(), self.role))
            return x
        amax = self.amax.item() if self.static and _takes_amax(self.fmt) else None
        return ste(x, _fake_quant(self.fmt, x, self.role, self.rounding, amax))

    def extra_repr(self) -> str:
        return f"{self.fmt.name}, calibration={self.calibration}, role={self.role}"


def _takes_amax(fmt: Format) -> bool:
    """Formats whose coarse scale can be static (block scales always come from the data)."""
    if not isinstance(fmt, ScaledFormat):
        return False
    return fmt.kind == "nvfp4" or fmt.block is None or (fmt.kind == "vsq" and fmt.scale_bits > 0)
