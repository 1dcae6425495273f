"""Packed weight layouts for the GPU kernels, and their pure-torch reference pack/dequant.

Weights are `W [N, K]` (N output features, K the reduction dimension, as in `nn.Linear`).
Blocks and vectors run along K. K is zero-padded to `Kp`, a multiple of 32, so every row holds
a whole number of scale bytes; the padding is zero in every field and never changes a result.

4-bit element layout (VS-Quant W4, NVFP4, MXFP4): `qweight` is uint8 `[N, Kp/2]`. Within each
16-element vector along K, byte `i` (0..7) holds element `i` in its low nibble and element
`i + 8` in its high nibble. A kernel then splits a tile into a "low" and a "high" half with
one mask and one shift each, and both halves are contiguous runs of 8 in K, so no in-register
interleave is needed. `pack_int4`/`unpack_int4` are the plain consecutive-pair packers that
this order is built from.

Per format (codes exactly as `picojoule.formats` defines the values):
- `vsq4_v16_s4` / `vsq8_v16_s4` (VS-Quant two-level, Dai et al., MLSys 2021, Eq. 7): W4 nibble
  = q + 8 (offset binary, q in [-7, 7]); W8 `qweight` is int8 `[N, Kp]` in natural order.
  `scales` uint8 `[N, Kp/32]`: the 4-bit integer scale s_q (1..15) of vector 2j in the low
  nibble of byte j, of vector 2j+1 in the high nibble. `gamma` fp32 `[N]`. Value = (q*s_q)*gamma.
- `nvfp4`: nibble = E2M1 code (sign in bit 3); `scales` uint8 `[N, Kp/16]` = E4M3 bit patterns;
  `tensor_scale` fp32 scalar. Value = (q*blk)*s_t.
- `mxfp4` (OCP MX v1.0): nibble = E2M1 code; `scales` uint8 `[N, Kp/32]` = E8M0 biased
  exponents e + 127. Value = q * 2^e.

`dequant(packed)` inverts every layout with its own decode arithmetic, independent of the
encoder, and equals `picojoule.formats.get(fmt).quantize(W)` bit for bit (tests/gpu).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from picojoule.errors import FormatError, ShapeError
from picojoule.formats import IntFormat, get

__all__ = [
    "PackedFormat",
    "PACKED_FORMATS",
    "PackedWeight",
    "pack_int4",
    "unpack_int4",
    "pack",
    "pack_vsq",
    "pack_nvfp4",
    "pack_mxfp4",
    "dequant",
    "padded_k",
]

PackedFormat = Literal["vsq4_v16_s4", "vsq8_v16_s4", "nvfp4", "mxfp4"]
PACKED_FORMATS: tuple[str, ...] = ("vsq4_v16_s4", "vsq8_v16_s4", "nvfp4", "mxfp4")
K_ALIGN = 32  # Kp is a multiple of this: whole scale bytes for every format
_E2M1_TWICE = (0, 1, 2, 3, 4, 6, 8, 12)  # 2 * |E2M1 value| of magnitude codes 0..7 (OCP MX 5.3.3)


@dataclass(frozen=True, kw_only=True, eq=False)
class PackedWeight:
    """A weight matrix in one of the packed layouts of the module docstring (all on one device).

    qweight: uint8 `[N, Kp/2]` (4-bit formats) or int8 `[N, Kp]` (vsq8_v16_s4).
    scales: uint8 per-vector/per-block scales, layout per format (module docstring).
    gamma: fp32 `[N]` per-row second-level scale (VS-Quant), else None.
    tensor_scale: fp32 0-d tensor (NVFP4), else None.
    """

    fmt: PackedFormat
    out_features: int
    in_features: int
    qweight: torch.Tensor
    scales: torch.Tensor
    gamma: torch.Tensor | None = None
    tensor_scale: torch.Tensor | None = None

    @property
    def padded_in_features(self) -> int:
        return padded_k(self.in_features)

    @property
    def element_bits(self) -> int:
        return 8 if self.fmt == "vsq8_v16_s4" else 4

    @property
    def storage_bytes(self) -> int:
        """Bytes the kernels read: elements, scales, gamma and tensor scale."""
        extra = [t for t in (self.gamma, self.tensor_scale) if t is not None]
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.scales, *extra))

    def to(self, device: torch.device | str) -> PackedWeight:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return PackedWeight(
            fmt=self.fmt,
            out_features=self.out_features,
            in_features=self.in_features,
            qweight=self.qweight.to(device),
            scales=self.scales.to(device),
            gamma=mv(self.gamma),
            tensor_scale=mv(self.tensor_scale),
        )


def padded_k(k: int) -> int:
    """K rounded up to a multiple of 32 (the packed row length in elements)."""
    return -(-k // K_ALIGN) * K_ALIGN


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit codes (uint8 in [0, 15], last dim even) in pairs: element 2i in the low nibble
    of byte i, element 2i+1 in the high nibble. Returns uint8 `[..., K/2]`."""
    if codes.dtype != torch.uint8:
        raise FormatError(f"pack_int4 takes uint8 codes in [0, 15], got {codes.dtype}")
    if codes.shape[-1] % 2:
        raise ShapeError(f"pack_int4 needs an even last dimension, got {codes.shape[-1]}")
    if codes.numel() and int(codes.max()) > 15:
        raise FormatError("pack_int4: a code exceeds 15; codes must fit in 4 bits")
    pairs = codes.reshape(*codes.shape[:-1], -1, 2)
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_int4`: uint8 `[..., K/2]` -> uint8 codes `[..., K]`."""
    if packed.dtype != torch.uint8:
        raise FormatError(f"unpack_int4 takes uint8, got {packed.dtype}")
    return torch.stack((packed & 15, packed >> 4), dim=-1).reshape(*packed.shape[:-1], -1)


def _split_order(codes: torch.Tensor) -> torch.Tensor:
    """[N, Kp] codes -> the (i, i+8)-within-16 pair order that `pack_int4` then packs."""
    n, kp = codes.shape
    return codes.reshape(n, kp // 16, 2, 8).transpose(-1, -2).reshape(n, kp)


def _unsplit_order(codes: torch.Tensor) -> torch.Tensor:
    n, kp = codes.shape
    return codes.reshape(n, kp // 16, 8, 2).transpose(-1, -2).reshape(n, kp)


def _check_weight(w: torch.Tensor, fmt: str) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.dim() != 2:
        what = f"{w.dtype} {tuple(w.shape)}" if isinstance(w, torch.Tensor) else type(w).__name__
        raise ShapeError(f"{fmt}: pack takes a 2-D floating-point weight [N, K], got {what}")
    if w.numel() == 0:
        raise ShapeError(f"{fmt}: cannot pack an empty weight {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise FormatError(f"{fmt}: the weight holds NaN or inf, which no packed code can hold")
    w32 = w.detach().float()
    pad = padded_k(w.shape[1]) - w.shape[1]
    return torch.nn.functional.pad(w32, (0, pad)) if pad else w32


def _vectors(w: torch.Tensor, size: int) -> torch.Tensor:
    return w.reshape(w.shape[0], w.shape[1] // size, size)


def pack_vsq(w: torch.Tensor, fmt: str = "vsq4_v16_s4") -> PackedWeight:
    """VS-Quant two-level W4 or W8 (arithmetic of `picojoule.formats`, kind "vsq")."""
    if fmt not in ("vsq4_v16_s4", "vsq8_v16_s4"):
        raise FormatError(f"pack_vsq packs vsq4_v16_s4 or vsq8_v16_s4, not {fmt!r}")
    spec = get(fmt)
    el = spec.element
    assert isinstance(el, IntFormat)
    wp = _check_weight(w, fmt)
    xb = _vectors(wp, 16)
    qmax, levels = float(el.qmax), 15.0
    s = xb.abs().amax(dim=-1, keepdim=True) / qmax  # [N, Kp/16, 1] per-vector scale
    gamma = s.amax(dim=-2, keepdim=True) / levels  # [N, 1, 1] per-row scale (Eq. 7, M = 4)
    gamma = torch.where(gamma == 0, 1.0, gamma)
    s_q = torch.round(s / gamma).clamp_(1.0, levels)
    q = el.quantize(xb / (s_q * gamma))
    s_codes = s_q.reshape(wp.shape[0], -1).to(torch.uint8)
    scales = pack_int4(s_codes)  # vector 2j low nibble, 2j+1 high nibble
    if fmt == "vsq4_v16_s4":
        nib = (q.reshape(wp.shape) + 8).to(torch.uint8)
        qweight = pack_int4(_split_order(nib))
    else:
        qweight = q.reshape(wp.shape).to(torch.int8)
    return PackedWeight(
        fmt=fmt,  # type: ignore[arg-type]
        out_features=w.shape[0],
        in_features=w.shape[1],
        qweight=qweight.contiguous(),
        scales=scales.contiguous(),
        gamma=gamma.reshape(-1).contiguous(),
    )


def _e2m1_codes(y: torch.Tensor) -> torch.Tensor:
    return get("e2m1").encode(y).to(torch.uint8)


def pack_nvfp4(w: torch.Tensor) -> PackedWeight:
    """NVFP4: E2M1 elements, E4M3 scale per 16, fp32 tensor scale (arithmetic of formats)."""
    wp = _check_weight(w, "nvfp4")
    s_t = wp.abs().amax() / (6.0 * 448.0)
    s_t = torch.where(s_t == 0, 1.0, s_t).to(torch.float32)
    xb = _vectors(wp, 16)
    blk = get("e4m3").quantize(xb.abs().amax(dim=-1, keepdim=True) / (6.0 * s_t))
    eff = blk * s_t
    q = get("e2m1").quantize(xb / torch.where(eff == 0, 1.0, eff))
    q = torch.where(eff == 0, 0.0, q)
    codes = _e2m1_codes(q.reshape(wp.shape))
    blk_codes = get("e4m3").encode(blk.reshape(wp.shape[0], -1)).to(torch.uint8)
    return PackedWeight(
        fmt="nvfp4",
        out_features=w.shape[0],
        in_features=w.shape[1],
        qweight=pack_int4(_split_order(codes)).contiguous(),
        scales=blk_codes.contiguous(),
        tensor_scale=s_t.reshape(()),
    )


def pack_mxfp4(w: torch.Tensor) -> PackedWeight:
    """MXFP4 (OCP MX v1.0 6.3): E2M1 elements, E8M0 scale 2^e per 32, e = floor(log2 amax) - 2."""
    wp = _check_weight(w, "mxfp4")
    xb = _vectors(wp, 32)
    amax = xb.abs().amax(dim=-1, keepdim=True)
    _, ex = torch.frexp(amax)  # amax = m * 2^ex, m in [0.5, 1): floor(log2 amax) = ex - 1
    e = (ex.to(torch.int64) - 1 - 2).clamp(-127, 127)  # emax(E2M1) = 2
    e = torch.where(amax == 0, -127, e)
    scale = ((e + 1023) << 52).view(torch.float64).to(torch.float32)  # exact 2^e
    q = get("e2m1").quantize(xb / scale)
    codes = _e2m1_codes(q.reshape(wp.shape))
    return PackedWeight(
        fmt="mxfp4",
        out_features=w.shape[0],
        in_features=w.shape[1],
        qweight=pack_int4(_split_order(codes)).contiguous(),
        scales=(e + 127).reshape(wp.shape[0], -1).to(torch.uint8).contiguous(),
    )


def pack(w: torch.Tensor, fmt: str) -> PackedWeight:
    """Pack `w [N, K]` into `fmt` (one of `PACKED_FORMATS`)."""
    if fmt in ("vsq4_v16_s4", "vsq8_v16_s4"):
        return pack_vsq(w, fmt)
    if fmt == "nvfp4":
        return pack_nvfp4(w)
    if fmt == "mxfp4":
        return pack_mxfp4(w)
    raise FormatError(
        f"no packed GPU layout for {fmt!r}; packed formats: {', '.join(PACKED_FORMATS)}"
    )


# --- decode (independent of the encoders above) ---------------------------------------------


def _e2m1_value(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 code (uint8, sign in bit 3) -> fp32 value, from the bit fields."""
    c = codes.to(torch.int32)
    mag = c & 7
    e, m = mag >> 1, mag & 1
    twice = torch.where(e == 0, m, (2 + m) << (e - 1).clamp(min=0))  # 2 * |value|
    val = twice.to(torch.float32) * 0.5
    return torch.where((c & 8) != 0, -val, val)


def _e4m3_value(codes: torch.Tensor) -> torch.Tensor:
    return codes.view(torch.float8_e4m3fn).to(torch.float32)


def _expand(per_vec: torch.Tensor, size: int) -> torch.Tensor:
    """[N, Kp/size] -> [N, Kp], each value repeated over its vector/block."""
    return per_vec.repeat_interleave(size, dim=1)


def dequant(p: PackedWeight) -> torch.Tensor:
    """fp32 `[N, K]` values of a packed weight (the exact fake-quant values)."""
    if p.fmt == "vsq8_v16_s4":
        q = p.qweight.to(torch.float32)
    elif p.fmt == "vsq4_v16_s4":
        q = _unsplit_order(unpack_int4(p.qweight)).to(torch.float32) - 8.0
    else:
        q = _e2m1_value(_unsplit_order(unpack_int4(p.qweight)))
    sc = p.scales
    if p.fmt in ("vsq4_v16_s4", "vsq8_v16_s4"):
        assert p.gamma is not None
        s_q = _expand(unpack_int4(sc).to(torch.float32), 16)
        w = (q * s_q) * p.gamma[:, None]
    elif p.fmt == "nvfp4":
        assert p.tensor_scale is not None
        w = (q * _expand(_e4m3_value(sc), 16)) * p.tensor_scale
    else:
        e = sc.to(torch.int64) - 127
        w = q * _expand(((e + 1023) << 52).view(torch.float64).to(torch.float32), 32)
    return w[:, : p.in_features]
