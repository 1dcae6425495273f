import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from picojoule.errors import ConfigError, ShapeError
from picojoule.sparsity import nm_mask, pack, storage, storage_bytes, unpack, unstructured_mask
from picojoule.sparsity.bitpack import bits_for, pack_bits, unpack_bits


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(1, 17), count=st.integers(0, 200), seed=st.integers(0, 999))
def test_bitpack_round_trip_and_size(bits, count, seed) -> None:
    codes = torch.randint(0, 1 << bits, (count,), generator=torch.Generator().manual_seed(seed))
    stream = pack_bits(codes, bits)
    assert stream.dtype == torch.uint8 and stream.numel() == math.ceil(count * bits / 8)
    assert torch.equal(unpack_bits(stream, bits, count), codes)


def test_bitpack_is_lsb_first_and_rejects_wide_codes() -> None:
    assert pack_bits(torch.tensor([1, 2, 3, 0]), 2).tolist() == [0b00111001]
    with pytest.raises(ConfigError, match="does not fit in a 2-bit field"):
        pack_bits(torch.tensor([4]), 2)
    assert [bits_for(c) for c in (1, 2, 3, 4, 5, 4096)] == [1, 1, 2, 2, 3, 12]


def _sparse(rows: int, cols: int, density: float, seed: int) -> torch.Tensor:
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    return w * unstructured_mask(w, density)


@settings(max_examples=40, deadline=None)
@given(
    layout=st.sampled_from(["csr", "bitmask", "rle", "dense"]),
    rows=st.integers(1, 12),
    cols=st.integers(1, 40),
    density=st.floats(0.01, 1.0),
    seed=st.integers(0, 999),
    dtype=st.sampled_from([torch.float32, torch.float16, torch.bfloat16]),
)
def test_pack_unpack_is_exact(layout, rows, cols, density, seed, dtype) -> None:
    w = _sparse(rows, cols, density, seed).to(dtype)
    assert torch.equal(unpack(pack(layout, w)), w)


@settings(max_examples=30, deadline=None)
@given(
    nm=st.sampled_from([(2, 4), (1, 4), (2, 8), (4, 8)]),
    rows=st.integers(1, 8),
    groups=st.integers(1, 8),
    seed=st.integers(0, 999),
)
def test_nm_pack_unpack_is_exact(nm, rows, groups, seed) -> None:
    n, m = nm
    w = torch.randn(rows, groups * m, generator=torch.Generator().manual_seed(seed))
    w = w * nm_mask(w, n, m)
    w[0, :m] = 0  # a group with fewer than n non-zeros still packs
    packed = pack(f"{n}:{m}", w)
    assert packed.values.shape == (rows, groups * n)
    assert torch.equal(unpack(packed), w)


def test_conv_weight_packs_in_gemm_view() -> None:
    w = torch.randn(8, 16, 3, 3)
    w = w * nm_mask(w, 2, 4, dim=1)
    packed = pack("2:4", w)
    assert packed.shape == (8, 144)


@pytest.mark.parametrize(
    ("dtype", "ratio"), [("fp16", 0.5625), ("bf16", 0.5625), ("int8", 0.625), ("fp32", 0.53125)]
)
def test_2to4_bytes_match_closed_form(dtype, ratio) -> None:
    w = torch.randn(64, 128)
    w = w * nm_mask(w, 2, 4)
    s = storage("2:4", w, dtype)
    assert s.ratio == ratio
    assert s.total_bytes == storage_bytes("2:4", w, dtype)


@pytest.mark.parametrize(("n", "m"), [(1, 4), (2, 8), (4, 8), (1, 2)])
def test_nm_bytes_match_closed_form(n, m) -> None:
    rows, cols = 16, 64
    w = torch.randn(rows, cols)
    w = w * nm_mask(w, n, m)
    kept = rows * cols * n // m
    expected = kept * 16 // 8 + math.ceil(kept * math.ceil(math.log2(m)) / 8)
    assert storage_bytes(f"{n}:{m}", w, "fp16") == expected


def test_csr_bitmask_bytes_match_closed_form() -> None:
    rows, cols = 32, 100
    w = _sparse(rows, cols, 0.3, seed=1)
    nnz = int((w != 0).sum())
    csr = nnz * 2 + math.ceil(nnz * 7 / 8) + math.ceil((rows + 1) * bits_for(nnz + 1) / 8)
    assert storage_bytes("csr", w, "fp16") == csr
    assert storage_bytes("csr", w, "fp16", index_bits=16, ptr_bits=32) == (
        nnz * 2 + nnz * 2 + (rows + 1) * 4
    )
    assert storage_bytes("bitmask", w, "int8") == nnz + math.ceil(rows * cols / 8)


def _rle_stream(flat: list[float], run_bits: int) -> list[tuple[int, float]]:
    """Reference encoder, one element at a time, as EIE describes it: (zeros skipped, value);
    a run too long for the field gets a filler entry (value 0). Trailing zeros are implied."""
    longest, stream, zeros = (1 << run_bits) - 1, [], 0
    for v in flat:
        if v != 0:
            stream.append((zeros, v))
            zeros = 0
        elif zeros == longest:  # this zero becomes a filler entry after `longest` skipped
            stream.append((longest, 0.0))
            zeros = 0
        else:
            zeros += 1
    while stream and stream[-1][1] == 0.0:  # fillers before trailing zeros are not needed
        stream.pop()
    return stream


@pytest.mark.parametrize("run_bits", [2, 4])
def test_rle_stream_and_bytes_match_reference_encoder(run_bits) -> None:
    w = _sparse(16, 50, 0.1, seed=2)
    ref = _rle_stream(w.flatten().tolist(), run_bits)
    packed = pack("rle", w, run_bits=run_bits)
    assert packed.field("run").tolist() == [r for r, _ in ref]
    assert packed.values.tolist() == [v for _, v in ref]
    entries = len(ref)
    assert storage_bytes("rle", w, "fp16", run_bits=run_bits) == (
        entries * 2 + math.ceil(entries * run_bits / 8)
    )
    assert torch.equal(unpack(packed), w)


def test_block_scaled_value_bits_come_from_the_format_registry() -> None:
    w = torch.randn(16, 64)
    w = w * nm_mask(w, 2, 4)
    s = storage("2:4", w, "nvfp4")
    assert s.value_bits == 4.5
    assert s.values_bytes == math.ceil(16 * 32 * 4.5 / 8)


def test_bad_layout_inputs() -> None:
    with pytest.raises(ConfigError, match="unknown layout"):
        pack("coo", torch.randn(4, 4))
    with pytest.raises(ShapeError, match="not 2:4 sparse"):
        pack("2:4", torch.randn(4, 8))
    with pytest.raises(ShapeError, match="weight matrix"):
        pack("csr", torch.randn(8))
