"""Compressed sparse layouts with exact byte counts: N:M, CSR, bitmask, run-length.

Public: `Packed`, `pack(layout, w)`, `unpack(packed)`, `Storage`, `storage(layout, w, dtype)`,
`storage_bytes(layout, w, dtype)`, `value_bits(dtype)`.

Layouts act on a 2-D [rows, reduction] matrix (a conv weight is taken in its GEMM view, see
`masks.gemm_view`). `layout` is "csr", "bitmask", "rle", "dense", or an N:M pattern like "2:4".

- N:M (Ampere sparse tensor cores; Mishra et al., "Accelerating Sparse Deep Neural Networks",
  arXiv:2104.08378): exactly N value slots per group of M, each with a ceil(log2 M)-bit
  position index. 2:4 fp16 = 0.5625 and int8 = 0.625 of dense bytes.
- CSR (the compressed-row form EIE's hardware walks; Han et al., ISCA 2016): non-zero values,
  one column index each (ceil(log2 cols) bits by default), and rows+1 row pointers.
- bitmask: the non-zero values plus one presence bit per element.
- rle: EIE's relative indexing over the row-major stream: each entry is (zeros skipped since the
  previous entry, value) with a `run_bits`-bit run field (EIE used 4); a gap longer than the
  field holds is bridged with a filler entry whose value is zero.

Every field is bit-packed for real (`bitpack`), so `storage` counts the bytes `pack` produced:
each stream (values, and each metadata stream) is rounded up to whole bytes on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from picojoule.errors import ConfigError, ShapeError
from picojoule.sparsity.bitpack import bits_for, pack_bits, unpack_bits
from picojoule.sparsity.masks import check_nm, gemm_view
from picojoule.sparsity.patterns import parse_pattern

__all__ = ["Packed", "pack", "unpack", "Storage", "storage", "storage_bytes", "value_bits"]

LAYOUTS = ("dense", "csr", "bitmask", "rle", "N:M (e.g. 2:4)")


@dataclass(frozen=True, kw_only=True)
class Packed:
    """A packed matrix: `values` in the source dtype and bit-packed uint8 metadata streams.

    `fields` maps stream name -> (uint8 stream, bits per code, code count).
    """

    layout: str
    shape: tuple[int, int]
    values: torch.Tensor
    fields: tuple[tuple[str, torch.Tensor, int, int], ...] = ()

    def field(self, name: str) -> torch.Tensor:
        for key, stream, bits, count in self.fields:
            if key == name:
                return unpack_bits(stream, bits, count)
        raise KeyError(name)

    @property
    def metadata_bits(self) -> int:
        return sum(bits * count for _, _, bits, count in self.fields)

    @property
    def metadata_bytes(self) -> int:
        return sum(stream.numel() for _, stream, _, _ in self.fields)


def _matrix(w: torch.Tensor) -> torch.Tensor:
    if w.dim() < 2:
        raise ShapeError(f"layouts pack a weight matrix; got shape {tuple(w.shape)}")
    return gemm_view(w.detach())


def _pack_nm(mat: torch.Tensor, n: int, m: int, layout: str) -> Packed:
    rows, cols = mat.shape
    check_nm(cols, n, m, what="reduction dim")
    groups = mat.reshape(rows, cols // m, m)
    nonzero = groups != 0
    worst = int(nonzero.sum(-1).max()) if groups.numel() else 0
    if worst > n:
        raise ShapeError(f"matrix is not {n}:{m} sparse (a group has {worst} non-zeros); mask it")
    rank = nonzero.cumsum(dim=-1, dtype=torch.int8) - 1  # slot of each non-zero in its group
    if bool((rank[..., -1] == n - 1).all()):
        # The usual case, a freshly masked weight: scatter each non-zero's position to its
        # slot; zeros go to a spare slot n that is dropped.
        slot = torch.where(nonzero, rank, n).to(torch.int64)
        where = torch.arange(m, device=mat.device).expand_as(slot)
        idx = torch.zeros(rows, cols // m, n + 1, dtype=torch.int64, device=mat.device)
        idx = idx.scatter_(-1, slot, where)[..., :n]
    else:
        # Non-zeros first (stable keeps their order), zero slots fill the rest; then ascending.
        order = torch.sort(nonzero.to(torch.int8), dim=-1, descending=True, stable=True).indices
        idx = order[..., :n].sort(dim=-1).values
    values = torch.gather(groups, -1, idx).reshape(rows, cols // m * n)
    bits = bits_for(m)
    meta = ("index", pack_bits(idx, bits), bits, idx.numel())
    return Packed(layout=layout, shape=(rows, cols), values=values, fields=(meta,))


def _pack_csr(mat: torch.Tensor, index_bits: int | None, ptr_bits: int | None) -> Packed:
    rows, cols = mat.shape
    nz = mat != 0
    col_idx = nz.nonzero()[:, 1]
    row_ptr = torch.zeros(rows + 1, dtype=torch.int64, device=mat.device)
    row_ptr[1:] = nz.sum(dim=1).cumsum(0)
    nnz = int(row_ptr[-1])
    ib = index_bits or bits_for(cols)
    pb = ptr_bits or bits_for(nnz + 1)
    fields = (
        ("col_index", pack_bits(col_idx, ib), ib, nnz),
        ("row_ptr", pack_bits(row_ptr, pb), pb, rows + 1),
    )
    return Packed(layout="csr", shape=(rows, cols), values=mat[nz], fields=fields)


def _pack_rle(mat: torch.Tensor, run_bits: int) -> Packed:
    flat = mat.reshape(-1)
    where = (flat != 0).nonzero().flatten()
    prev_end = torch.cat([where.new_zeros(1), where[:-1] + 1])[: where.numel()]
    gap = where - prev_end
    longest = (1 << run_bits) - 1
    fillers = gap // (longest + 1)  # each filler covers `longest` zeros plus its own zero slot
    counts = fillers + 1
    owner = torch.repeat_interleave(torch.arange(where.numel(), device=mat.device), counts)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.arange(owner.numel(), device=mat.device) - first[owner]
    last = slot == fillers[owner]
    values = torch.where(last, flat[where][owner], torch.zeros((), dtype=mat.dtype))
    runs = torch.where(last, gap[owner] % (longest + 1), torch.full_like(owner, longest))
    fields = (("run", pack_bits(runs, run_bits), run_bits, runs.numel()),)
    return Packed(layout="rle", shape=tuple(mat.shape), values=values, fields=fields)


def pack(
    layout: str,
    w: torch.Tensor,
    *,
    index_bits: int | None = None,
    ptr_bits: int | None = None,
    run_bits: int = 4,
) -> Packed:
    """Pack weight `w` (2-D, or a conv weight in GEMM view) in `layout`; exact `unpack` inverse."""
    mat = _matrix(w)
    if layout == "dense":
        return Packed(layout="dense", shape=tuple(mat.shape), values=mat.reshape(-1).clone())
    if layout == "csr":
        return _pack_csr(mat, index_bits, ptr_bits)
    if layout == "bitmask":
        nz = mat != 0
        fields = (("bitmap", pack_bits(nz.reshape(-1), 1), 1, nz.numel()),)
        return Packed(layout="bitmask", shape=tuple(mat.shape), values=mat[nz], fields=fields)
    if layout == "rle":
        return _pack_rle(mat, run_bits)
    if ":" in layout:
        pattern = parse_pattern(layout)
        if pattern.kind == "nm":
            return _pack_nm(mat, pattern.n, pattern.m, pattern.name)
    raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def unpack(packed: Packed) -> torch.Tensor:
    """The dense [rows, cols] matrix a `Packed` holds (bit-exact)."""
    rows, cols = packed.shape
    vals = packed.values
    out = torch.zeros(rows * cols, dtype=vals.dtype, device=vals.device)
    if packed.layout == "dense":
        return vals.reshape(rows, cols).clone()
    if packed.layout == "csr":
        ptr = packed.field("row_ptr")
        row_of = torch.repeat_interleave(torch.arange(rows, device=vals.device), ptr.diff())
        out[row_of * cols + packed.field("col_index")] = vals
    elif packed.layout == "bitmask":
        out[packed.field("bitmap").to(torch.bool)] = vals
    elif packed.layout == "rle":
        out[torch.cumsum(packed.field("run") + 1, 0) - 1] = vals
    else:
        pattern = parse_pattern(packed.layout)
        idx = packed.field("index").reshape(rows, cols // pattern.m, pattern.n)
        groups = out.reshape(rows, cols // pattern.m, pattern.m)
        groups.scatter_(-1, idx, vals.reshape(rows, cols // pattern.m, pattern.n))
    return out.reshape(rows, cols)


def value_bits(dtype: str | torch.dtype) -> float:
    """Bits per stored value: a torch dtype, or a picojoule format name (amortized scale bits
    included, e.g. nvfp4 = 4.5)."""
    if isinstance(dtype, torch.dtype):
        return float(torch.empty((), dtype=dtype).element_size() * 8)
    from picojoule import formats  # deferred: formats pulls ml_dtypes-sized tables

    return float(formats.get(dtype).bits_per_element)


@dataclass(frozen=True, kw_only=True)
class Storage:
    """Bytes of one matrix in one layout; `ratio` = total / dense bytes."""

    layout: str
    value_bits: float
    values_bytes: int
    metadata_bytes: int
    dense_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.values_bytes + self.metadata_bytes

    @property
    def ratio(self) -> float:
        return self.total_bytes / self.dense_bytes

    @property
    def saved_bytes(self) -> int:
        return self.dense_bytes - self.total_bytes


def storage(layout: str, w: torch.Tensor, dtype: str | torch.dtype, **widths: int) -> Storage:
    """Exact bytes of `w` packed in `layout` with values stored as `dtype`."""
    packed = pack(layout, w, **widths)
    vb = value_bits(dtype)
    rows, cols = packed.shape
    return Storage(
        layout=packed.layout,
        value_bits=vb,
        values_bytes=math.ceil(packed.values.numel() * vb / 8),
        metadata_bytes=packed.metadata_bytes,
        dense_bytes=math.ceil(rows * cols * vb / 8),
    )


def storage_bytes(layout: str, w: torch.Tensor, dtype: str | torch.dtype, **widths: int) -> int:
    """Total bytes (values + metadata) of `w` in `layout`; see `storage` for the breakdown."""
    return storage(layout, w, dtype, **widths).total_bytes
