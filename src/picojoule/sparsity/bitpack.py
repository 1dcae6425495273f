"""Pack unsigned integer codes into a little-endian bit stream, and back.

Public: `bits_for(count)`, `pack_bits(codes, bits)`, `unpack_bits(stream, bits, count)`.

Compressed layouts store indices in fields narrower than a byte (2-bit N:M metadata, 4-bit
EIE run lengths); packing them for real is what makes the byte counts exact rather than
estimated. Code i occupies stream bits [i*bits, (i+1)*bits), least significant bit first.
"""

from __future__ import annotations

import math

import torch

from picojoule.errors import ConfigError

__all__ = ["bits_for", "pack_bits", "unpack_bits"]


def bits_for(count: int) -> int:
    """Bits of an unsigned field that can hold every value in [0, count) (at least 1)."""
    return max(1, math.ceil(math.log2(count))) if count > 1 else 1


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """1-D uint8 stream of ceil(len(codes) * bits / 8) bytes holding `codes` in `bits` each."""
    if not 1 <= bits <= 62:
        raise ConfigError(f"field width must be 1..62 bits, got {bits}")
    flat = codes.reshape(-1).to(torch.int64)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 1 << bits):
        raise ConfigError(
            f"a code ({int(flat.max())}) does not fit in a {bits}-bit field; widen the field"
        )
    if 8 % bits == 0:  # whole codes per byte (1, 2, 4, 8 bits): one shift-or per code
        per_byte = 8 // bits
        small = torch.nn.functional.pad(flat.to(torch.uint8), (0, (-flat.numel()) % per_byte))
        shifts = (torch.arange(per_byte, device=flat.device) * bits).to(torch.uint8)
        # Fields are disjoint, so summing them in uint8 is a bitwise OR without overflow.
        return (small.reshape(-1, per_byte) << shifts).sum(dim=1, dtype=torch.uint8)
    shifts = torch.arange(bits, device=flat.device)
    stream = ((flat[:, None] >> shifts) & 1).reshape(-1).to(torch.uint8)
    stream = torch.nn.functional.pad(stream, (0, (-stream.numel()) % 8))
    weights = (1 << torch.arange(8, device=flat.device)).to(torch.uint8)
    return (stream.reshape(-1, 8) * weights).sum(dim=1, dtype=torch.int64).to(torch.uint8)


def unpack_bits(stream: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """The first `count` codes of a `pack_bits` stream, as int64."""
    if stream.numel() * 8 < count * bits:
        raise ConfigError(f"stream of {stream.numel()} bytes holds fewer than {count} codes")
    if 8 % bits == 0:
        shifts = torch.arange(8 // bits, device=stream.device) * bits
        codes = (stream.to(torch.int64)[:, None] >> shifts) & ((1 << bits) - 1)
        return codes.reshape(-1)[:count]
    bit_stream = (stream.to(torch.int64)[:, None] >> torch.arange(8, device=stream.device)) & 1
    fields = bit_stream.reshape(-1)[: count * bits].reshape(count, bits)
    return (fields << torch.arange(bits, device=stream.device)).sum(dim=1)
