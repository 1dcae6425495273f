"""Fused Triton GEMM on packed weights: `out[M, N] = x[M, K] @ dequant(W)[N, K]^T`.

One kernel serves every packed format (`picojoule.gpu.packing`); the format, the activation
type and the tiling are compile-time constants, so each variant compiles to its own code.
Weights are dequantized in registers, never written back to memory.

Exactness (why the MMA can run on narrow operands and still equal the reference):
- vsq4_v16_s4: (q * s_q) is an integer with |q * s_q| <= 7 * 15 = 105, exact in bf16 (8-bit
  significand), so the MMA runs on bf16 (q * s_q) and gamma[n] multiplies the fp32 accumulator.
  The nibble becomes bf16 without an int->float conversion: 0x4300 | nibble is the bf16 bit
  pattern of 128 + nibble, and (128 + nibble - 136) * s_q is exact at each step.
- vsq8_v16_s4: |q * s_q| <= 127 * 15 = 1905 needs 11 significant bits: not exact in bf16, exact
  in tf32 (11-bit significand). bf16 activations are exact in tf32 too, so the MMA runs in tf32.
- nvfp4: q * blk (E2M1 x E4M3, at most 2 + 4 significant bits) is exact in bf16; the fp32
  tensor scale multiplies the accumulator.
- mxfp4: q * 2^e is exact in bf16 (same exponent range as fp32).
- W4A8 (`act_fp8`): activations are E4M3 with one fp32 scale per row; E4M3 -> bf16 is exact, so
  the MMA is the W4A16 one and s_x[m] * gamma[n] scale the accumulator. docs/gpu.md explains why
  the e4m3 tensor-core path cannot be used without losing exactness or speed.
The GEMM result then differs from float64 `x @ dequant(W).T` only by fp32 accumulation order
and the one rounding of the scale product.

Tiles: `x` is read as two [BLOCK_M, BLOCK_K/2] halves that match the low and high nibbles of
the packed weight bytes (elements i and i+8 of each 16-vector), so no in-register interleave is
needed. SWAP_AB computes out^T tiles (weights as the MMA's left operand), SPLIT_K splits the
reduction over programs that `atomic_add` into an fp32 output, PREFETCH loads K tile t+1 into
registers while tile t is computed (software pipelining by hand, scales included).
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["packed_gemm_kernel", "FMT_CODES"]

FMT_CODES = {"vsq4_v16_s4": 0, "vsq8_v16_s4": 1, "nvfp4": 2, "mxfp4": 3}


@triton.jit
def _vector_scales(sc_ptr, rn, t, stride_sn, FMT: tl.constexpr, BLOCK_K: tl.constexpr):
    """Per-16-vector scale factors [BLOCK_N, BLOCK_K/16] (fp32) of K tile t.

    Each row's scale bytes for the tile are one contiguous run, read in one load. (Reading
    them as 32-bit words instead lets Triton 3.6 put them in its cp.async pipeline, but the
    word unpacking cost more than it saved: 76 us against 56 us for the 16 x 8192 x 8192
    W4A16 decode on an H100, measured; docs/gpu.md.)"""
    if FMT == 2:  # nvfp4: one E4M3 byte per 16-vector
        j = tl.arange(0, BLOCK_K // 16)
        b = tl.load(sc_ptr + rn[:, None] * stride_sn + (t * (BLOCK_K // 16) + j)[None, :])
        return b.to(tl.float8e4nv, bitcast=True).to(tl.float32)
    if BLOCK_K == 32:  # one scale byte per tile: gather it for both vectors
        v = tl.arange(0, 2)
        b = tl.load(sc_ptr + rn[:, None] * stride_sn + (t + 0 * v)[None, :])
        if FMT == 3:
            e = b.to(tl.int32)
            return tl.where(e == 0, 0x00400000, e << 23).to(tl.float32, bitcast=True)
        return ((b >> (v * 4).to(tl.uint8)[None, :]) & 15).to(tl.float32)
    j = tl.arange(0, BLOCK_K // 32)
    b = tl.load(sc_ptr + rn[:, None] * stride_sn + (t * (BLOCK_K // 32) + j)[None, :])
    if FMT == 3:  # mxfp4: one E8M0 byte per 32-block, i.e. per two vectors
        e = b.to(tl.int32)
        # 2^(e - 127) from the fp32 bit pattern; e == 0 is 2^-127, an fp32 subnormal
        s = tl.where(e == 0, 0x00400000, e << 23).to(tl.float32, bitcast=True)
        pair = tl.join(s, s)
    else:  # VS-Quant: s_q of vector 2j in the low nibble of byte j, 2j+1 in the high
        pair = tl.join((b & 15).to(tl.float32), (b >> 4).to(tl.float32))
    return tl.reshape(pair, (b.shape[0], BLOCK_K // 16))


@triton.jit
def _weight_tile(qw_ptr, rn, t, stride_qn, FMT: tl.constexpr, BLOCK_K: tl.constexpr):
    """K tile t of the packed weight rows `rn`: int8 [BN, NV, 16] for W8 (natural order),
    else the bytes [BN, NV, 8] whose low/high nibbles are elements i and i+8 of each vector."""
    v = tl.arange(0, BLOCK_K // 16)
    if FMT == 1:
        i16 = tl.arange(0, 16)
        return tl.load(
            qw_ptr
            + rn[:, None, None] * stride_qn
            + (t * BLOCK_K + 16 * v)[None, :, None]
            + i16[None, None, :]
        )
    i8 = tl.arange(0, 8)
    return tl.load(
        qw_ptr
        + rn[:, None, None] * stride_qn
        + (t * (BLOCK_K // 2) + 8 * v)[None, :, None]
        + i8[None, None, :]
    )


@triton.jit
def _act_tile(x_ptr, rm, t, stride_xm, K, FMT: tl.constexpr, EVEN_K: tl.constexpr,
              BLOCK_K: tl.constexpr):  # fmt: skip
    """K tile t of the activation rows `rm`, matched to `_weight_tile`: [BM, NV, 16] for W8,
    else the halves (elements i and i+8 of each 16-vector), each [BM, NV, 8]. Zero past K."""
    v = tl.arange(0, BLOCK_K // 16)
    if FMT == 1:
        kk = t * BLOCK_K + 16 * v[None, :, None] + tl.arange(0, 16)[None, None, :]
        xp = x_ptr + rm[:, None, None] * stride_xm + kk
        if EVEN_K:  # noqa: SIM108 - constexpr branch: the unmasked load compiles alone
            xt = tl.load(xp)
        else:
            xt = tl.load(xp, mask=kk < K, other=0.0)
        return xt, xt  # one tile; the pair keeps the 4-bit path's shape
    kk = t * BLOCK_K + 16 * v[None, :, None] + tl.arange(0, 8)[None, None, :]
    xp = x_ptr + rm[:, None, None] * stride_xm + kk
    if EVEN_K:
        return tl.load(xp), tl.load(xp + 8)
    return tl.load(xp, mask=kk < K, other=0.0), tl.load(xp + 8, mask=kk + 8 < K, other=0.0)


@triton.jit
def _fp4_half(nib, s3):
    """E2M1 codes (uint8 [BN, NV, 8], sign in bit 3) times their scales -> bf16, exactly."""
    c = nib.to(tl.int32)
    mag = c & 7
    e = mag >> 1
    m = mag & 1
    twice = tl.where(e == 0, m, (2 + m) << tl.maximum(e - 1, 0))  # 2|v|: 0 1 2 3 4 6 8 12
    val = (twice | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0  # exact int -> float
    val = tl.where((c & 8) != 0, -val, val)
    return (val * (s3 * 0.5)).to(tl.bfloat16)


@triton.jit
def _vsq4_half(nib, s3):
    """Offset-binary nibbles (uint8 [BN, NV, 8]) times s_q -> bf16 (q * s_q), exactly."""
    v = (nib.to(tl.int32) | 0x4B000000).to(tl.float32, bitcast=True)  # 2^23 + nibble
    return ((v - 8388616.0) * s3).to(tl.bfloat16)  # (nibble - 8) * s_q, |.| <= 105: exact


# Four packed bytes (8 nibbles) -> 4 low and 4 high bf16 values of (nibble - 8) * s_q, in 12
# instructions: prmt spreads bytes 0,1 (2,3) into the two 16-bit halves; lop3 keeps each half's
# nibble and ORs in 0x4300 (bf16 128.0), giving 128 + nibble; one fma.rn.bf16x2 computes
# (128 + nibble) * s_q - 136 * s_q exactly (the exact product is at most 143 * 15, the result
# an integer of at most 105, rounded once). $0..$3 outputs, $4 bytes, $5/$6 s_q, $7/$8 -136*s_q.
_VSQ4_ASM = tl.constexpr(
    """
{
.reg .b32 t0, t1, u0, u1, a, b, c, d;
prmt.b32 t0, $4, 0, 0x4140;
prmt.b32 t1, $4, 0, 0x4342;
shr.b32 u0, t0, 4;
shr.b32 u1, t1, 4;
lop3.b32 a, t0, 0x000f000f, 0x43004300, 0xea;
lop3.b32 b, t1, 0x000f000f, 0x43004300, 0xea;
lop3.b32 c, u0, 0x000f000f, 0x43004300, 0xea;
lop3.b32 d, u1, 0x000f000f, 0x43004300, 0xea;
fma.rn.bf16x2 $0, a, $5, $7;
fma.rn.bf16x2 $1, b, $6, $8;
fma.rn.bf16x2 $2, c, $5, $7;
fma.rn.bf16x2 $3, d, $6, $8;
}
"""
)


# Four bytes of E2M1 codes -> 4 low and 4 high bf16 values of q * scale. For a code s e1 e0 m
# in the low bits of a 16-bit half, shifting it left by 6 puts e1 e0 m in bf16's bits 8..6
# (exponent LSBs, mantissa MSB), and by 12 puts the sign in bit 15: that bf16 is q * 2^-126
# exactly (e1 e0 = 0 lands on bf16 subnormals, as E2M1 subnormals are). Multiplying by 2^126
# (0x7e80) and then by the scale are exact (q * scale has at most 6 significant bits).
# -0.0 (0x80008000) is the fma addend, so fma(a, b, -0) = a * b with zeros' signs kept.
_FP4_ASM = tl.constexpr(
    """
{
.reg .b32 t0, t1, x, y, a, r, k, z;
mov.b32 k, 0x7e807e80;
mov.b32 z, 0x80008000;
prmt.b32 t0, $4, 0, 0x4140;
prmt.b32 t1, $4, 0, 0x4342;
shl.b32 x, t0, 6;
shl.b32 y, t0, 12;
and.b32 a, x, 0x01c001c0;
lop3.b32 r, y, 0x80008000, a, 0xea;
fma.rn.bf16x2 r, r, k, z;
fma.rn.bf16x2 $0, r, $5, z;
shl.b32 x, t1, 6;
shl.b32 y, t1, 12;
and.b32 a, x, 0x01c001c0;
lop3.b32 r, y, 0x80008000, a, 0xea;
fma.rn.bf16x2 r, r, k, z;
fma.rn.bf16x2 $1, r, $6, z;
shl.b32 x, t0, 2;
shl.b32 y, t0, 8;
and.b32 a, x, 0x01c001c0;
lop3.b32 r, y, 0x80008000, a, 0xea;
fma.rn.bf16x2 r, r, k, z;
fma.rn.bf16x2 $2, r, $5, z;
shl.b32 x, t1, 2;
shl.b32 y, t1, 8;
and.b32 a, x, 0x01c001c0;
lop3.b32 r, y, 0x80008000, a, 0xea;
fma.rn.bf16x2 r, r, k, z;
fma.rn.bf16x2 $3, r, $6, z;
}
"""
)


@triton.jit
def _fp4_asm(wb, s3):
    """(low, high) bf16 halves of E2M1 bytes [BN, NV, 8] times their scales (GPU only)."""
    sb = tl.broadcast_to(s3.to(tl.bfloat16), wb.shape)
    return tl.inline_asm_elementwise(
        _FP4_ASM,
        "=r,=r,=r,=r,r,r,r",
        [wb, sb],
        dtype=(tl.bfloat16, tl.bfloat16),
        is_pure=True,
        pack=4,
    )


@triton.jit
def _vsq4_asm(wb, s3):
    """(low, high) bf16 halves of VS-Quant W4 bytes [BN, NV, 8] via packed PTX (GPU only)."""
    sb = tl.broadcast_to(s3.to(tl.bfloat16), wb.shape)
    cb = tl.broadcast_to((s3 * -136.0).to(tl.bfloat16), wb.shape)
    return tl.inline_asm_elementwise(
        _VSQ4_ASM,
        "=r,=r,=r,=r,r,r,r,r,r",
        [wb, sb, cb],
        dtype=(tl.bfloat16, tl.bfloat16),
        is_pure=True,
        pack=4,
    )


@triton.jit
def packed_gemm_kernel(
    x_ptr,
    qw_ptr,
    sc_ptr,
    g_ptr,
    sx_ptr,
    b_ptr,
    out_ptr,
    M,
    N,
    K,
    KP,
    stride_xm,
    stride_qn,
    stride_sn,
    stride_om,
    ts_ptr,
    FMT: tl.constexpr,
    ACT_FP8: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,
    SWAP_AB: tl.constexpr,
    SPLIT_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
    DEQ_ASM: tl.constexpr,
    PREFETCH: tl.constexpr = False,
):
    HALF: tl.constexpr = BLOCK_K // 2
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    grid_m = tl.cdiv(M, BLOCK_M)
    grid_n = tl.cdiv(N, BLOCK_N)
    # Grouped order: GROUP_M row-tiles share each weight column tile while it is in L2.
    width = GROUP_M * grid_n
    group = pid // width
    first_m = group * GROUP_M
    size_m = tl.minimum(grid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = offs_m % M  # wrapped rows are computed and never stored: loads stay unmasked
    rn = offs_n % N

    k_tiles = KP // BLOCK_K
    per_split = tl.cdiv(k_tiles, SPLIT_K)
    t_lo = pid_k * per_split
    t_hi = tl.minimum(t_lo + per_split, k_tiles)
    if SWAP_AB:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)

    if PREFETCH:
        # Registers carry tile t+1's scales, weight bytes and activations while tile t is
        # dequantized and multiplied: the loads' latency hides behind the math without the
        # compiler's pipeliner (which leaves the scale bytes out; docs/gpu.md).
        t_first = tl.minimum(t_lo, k_tiles - 1)  # an empty split reads a valid tile, unused
        s_next = _vector_scales(sc_ptr, rn, t_first, stride_sn, FMT, BLOCK_K)
        w_next = _weight_tile(qw_ptr, rn, t_first, stride_qn, FMT, BLOCK_K)
        xa_next, xb_next = _act_tile(x_ptr, rm, t_first, stride_xm, K, FMT, EVEN_K, BLOCK_K)
    for t in range(t_lo, t_hi):
        if PREFETCH:
            s3, wt, xa, xb = s_next[:, :, None], w_next, xa_next, xb_next
            t_after = tl.minimum(t + 1, k_tiles - 1)
            s_next = _vector_scales(sc_ptr, rn, t_after, stride_sn, FMT, BLOCK_K)
            w_next = _weight_tile(qw_ptr, rn, t_after, stride_qn, FMT, BLOCK_K)
            xa_next, xb_next = _act_tile(x_ptr, rm, t_after, stride_xm, K, FMT, EVEN_K, BLOCK_K)
        else:
            s3 = _vector_scales(sc_ptr, rn, t, stride_sn, FMT, BLOCK_K)[:, :, None]
            wt = _weight_tile(qw_ptr, rn, t, stride_qn, FMT, BLOCK_K)
            xa, xb = _act_tile(x_ptr, rm, t, stride_xm, K, FMT, EVEN_K, BLOCK_K)
        if FMT == 1:
            # W8: natural order, one [BN, NV, 16] tile, tf32 MMA on exact (q * s_q)
            w = tl.reshape(wt.to(tl.float32) * s3, (BLOCK_N, BLOCK_K))
            xt = tl.reshape(xa.to(tl.float32), (BLOCK_M, BLOCK_K))
            if SWAP_AB:
                acc = tl.dot(w, tl.trans(xt), acc, input_precision="tf32")
            else:
                acc = tl.dot(xt, tl.trans(w), acc, input_precision="tf32")
        else:
            if FMT == 0 and DEQ_ASM:
                w_lo, w_hi = _vsq4_asm(wt, s3)
            elif FMT == 0:
                w_lo = _vsq4_half(wt & 15, s3)
                w_hi = _vsq4_half(wt >> 4, s3)
            elif DEQ_ASM:
                w_lo, w_hi = _fp4_asm(wt, s3)
            else:
                w_lo = _fp4_half(wt & 15, s3)
                w_hi = _fp4_half(wt >> 4, s3)
            w_lo = tl.reshape(w_lo, (BLOCK_N, HALF))
            w_hi = tl.reshape(w_hi, (BLOCK_N, HALF))
            x_lo = tl.reshape(xa.to(tl.bfloat16), (BLOCK_M, HALF))
            x_hi = tl.reshape(xb.to(tl.bfloat16), (BLOCK_M, HALF))
            if SWAP_AB:
                acc = tl.dot(w_lo, tl.trans(x_lo), acc)
                acc = tl.dot(w_hi, tl.trans(x_hi), acc)
            else:
                acc = tl.dot(x_lo, tl.trans(w_lo), acc)
                acc = tl.dot(x_hi, tl.trans(w_hi), acc)

    # Epilogue in [BLOCK_M, BLOCK_N] orientation.
    if SWAP_AB:
        acc = tl.trans(acc)
    if FMT <= 1:
        acc = acc * tl.load(g_ptr + rn)[None, :]
    elif FMT == 2:
        acc = acc * tl.load(ts_ptr)
    if ACT_FP8:
        acc = acc * tl.load(sx_ptr + rm)[:, None]
    if HAS_BIAS:
        bias = tl.load(b_ptr + rn).to(tl.float32)
        acc = acc + tl.where(pid_k == 0, bias, 0.0)[None, :]
    out = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    if SPLIT_K == 1:
        tl.store(out, acc.to(out_ptr.dtype.element_ty), mask=mask)
    else:
        tl.atomic_add(out, acc, mask=mask, sem="relaxed")


@triton.jit
def dequant_kernel(
    qw_ptr,
    sc_ptr,
    out_ptr,
    N,
    stride_qn,
    stride_sn,
    stride_on,
    FMT: tl.constexpr,
    DEQ_ASM: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """bf16 [N, Kp] of the exact partial products: q * s_q (VS-Quant W4), q * blk (NVFP4),
    q * 2^e (MXFP4); the fp32 second-level scale stays out, for the GEMM's epilogue."""
    NV: tl.constexpr = BLOCK_K // 16
    t = tl.program_id(1)
    rn = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)) % N
    v = tl.arange(0, NV)
    i8 = tl.arange(0, 8)
    k0 = t * BLOCK_K
    s3 = _vector_scales(sc_ptr, rn, t, stride_sn, FMT, BLOCK_K)[:, :, None]
    wb = _weight_tile(qw_ptr, rn, t, stride_qn, FMT, BLOCK_K)
    if FMT == 0 and DEQ_ASM:
        w_lo, w_hi = _vsq4_asm(wb, s3)
    elif FMT == 0:
        w_lo = _vsq4_half(wb & 15, s3)
        w_hi = _vsq4_half(wb >> 4, s3)
    elif DEQ_ASM:
        w_lo, w_hi = _fp4_asm(wb, s3)
    else:
        w_lo = _fp4_half(wb & 15, s3)
        w_hi = _fp4_half(wb >> 4, s3)
    o = out_ptr + rn[:, None, None] * stride_on + (k0 + 16 * v)[None, :, None] + i8[None, None, :]
    tl.store(o, w_lo)
    tl.store(o + 8, w_hi)
