"""Packed layouts (CPU): exact pack/unpack, and dequant == picojoule.formats fake-quant."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from picojoule.errors import FormatError, ShapeError
from picojoule.formats import get
from picojoule.gpu.packing import (
    PACKED_FORMATS,
    dequant,
    pack,
    pack_int4,
    padded_k,
    unpack_int4,
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 5),
    pairs=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_pack_unpack_int4_roundtrip(rows: int, pairs: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (rows, 2 * pairs), generator=g, dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (rows, pairs) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), codes)
    # element 2i in the low nibble, 2i+1 in the high nibble
    assert torch.equal(packed & 15, codes[:, 0::2])
    assert torch.equal(packed >> 4, codes[:, 1::2])


def test_pack_int4_every_byte() -> None:
    hi, lo = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    codes = torch.stack((lo.reshape(-1), hi.reshape(-1)), dim=1).to(torch.uint8)
    assert torch.equal(pack_int4(codes).reshape(-1), torch.arange(256, dtype=torch.uint8))


def test_pack_int4_rejects_bad_codes() -> None:
    with pytest.raises(FormatError, match="exceeds 15"):
        pack_int4(torch.tensor([[16, 0]], dtype=torch.uint8))
    with pytest.raises(ShapeError, match="even"):
        pack_int4(torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(FormatError, match="uint8"):
        pack_int4(torch.zeros(2, 4, dtype=torch.int32))


SHAPES = [(64, 256), (7, 40), (3, 17), (5, 33), (1, 1), (16, 1000)]
SCALES = [1.0, 1e-30, 1e20, 3e-3]


@pytest.mark.parametrize("fmt", PACKED_FORMATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", SCALES)
def test_dequant_equals_fake_quant(fmt: str, shape: tuple[int, int], scale: float) -> None:
    g = torch.Generator().manual_seed(shape[0] * 1000 + shape[1])
    w = torch.randn(*shape, generator=g) * scale
    w[0, : min(5, shape[1])] = 0.0  # an all-zero start of a block
    ref = get(fmt).quantize(w)
    got = dequant(pack(w, fmt))
    assert got.shape == w.shape and got.dtype == torch.float32
    assert torch.equal(got, ref)  # values bit for bit (+0 == -0: integer codes have no -0)
    if fmt in ("nvfp4", "mxfp4"):  # E2M1 codes carry a sign bit, so even zeros match
        assert torch.equal(torch.signbit(got), torch.signbit(ref))


@pytest.mark.parametrize("fmt", PACKED_FORMATS)
def test_dequant_of_bf16_weight(fmt: str) -> None:
    w = torch.randn(32, 96).to(torch.bfloat16)
    assert torch.equal(dequant(pack(w, fmt)), get(fmt).quantize(w.float()))


def test_vsq4_layout_pairs_i_with_i_plus_8() -> None:
    """Byte i of each 16-vector holds element i (low nibble) and i + 8 (high), offset by 8."""
    w = torch.zeros(1, 32)
    w[0, 3] = 7.0  # the row's amax: s = 1, gamma = 1/15, s_q = 15 -> q = 7
    w[0, 11] = -7.0
    p = pack(w, "vsq4_v16_s4")
    assert p.qweight.shape == (1, 16)
    assert int(p.qweight[0, 3]) == (7 + 8) | ((-7 + 8) << 4)
    assert int(p.qweight[0, 0]) == 8 | (8 << 4)  # zeros are nibble 8
    assert int(p.scales[0, 0]) & 15 == 15  # vector 0: s_q = 15 in the low nibble
    torch.testing.assert_close(p.gamma, torch.tensor([7.0 / 7 / 15]))


def test_sizes_and_storage() -> None:
    w = torch.randn(48, 200)
    assert padded_k(200) == 224
    p4, p8 = pack(w, "vsq4_v16_s4"), pack(w, "vsq8_v16_s4")
    assert p4.qweight.shape == (48, 112) and p4.scales.shape == (48, 7)
    assert p8.qweight.shape == (48, 224) and p8.qweight.dtype == torch.int8
    assert p4.storage_bytes == 48 * 112 + 48 * 7 + 48 * 4
    nv, mx = pack(w, "nvfp4"), pack(w, "mxfp4")
    assert nv.scales.shape == (48, 14) and nv.tensor_scale is not None
    assert mx.scales.shape == (48, 7) and mx.gamma is None


def test_bad_weights_raise_clear_errors() -> None:
    with pytest.raises(FormatError, match="NaN or inf"):
        pack(torch.tensor([[1.0, float("nan")]]), "nvfp4")
    with pytest.raises(ShapeError, match="2-D"):
        pack(torch.randn(4), "mxfp4")
    with pytest.raises(ShapeError, match="empty"):
        pack(torch.randn(0, 16), "vsq4_v16_s4")
    with pytest.raises(FormatError, match="packed formats"):
        pack(torch.randn(4, 16), "int4/channel")
