"""Triton kernels on a real GPU against the float64 reference (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from picojoule.errors import ShapeError
from picojoule.gpu.autotune import KernelConfig
from picojoule.gpu.packing import PACKED_FORMATS, pack

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs an NVIDIA GPU (CUDA)", allow_module_level=True)
pytest.importorskip("triton")

from picojoule.gpu.ops import packed_matmul, quantize_rows_fp8, reference_matmul  # noqa: E402

DEV = torch.device("cuda")
# (M, N, K): odd M, N not a multiple of any tile, K not a multiple of 16 or 32, decode, prefill
SHAPES = [(1, 64, 64), (7, 96, 200), (16, 257, 1000), (300, 520, 384)]
CONFIGS = [
    None,  # the bucket's default (these shapes are below the tuning threshold)
    KernelConfig(block_m=16, block_n=64, block_k=32, swap_ab=True),
    KernelConfig(block_m=32, block_n=32, block_k=32, split_k=2, deq_asm=False),
    KernelConfig(block_m=16, block_n=64, block_k=64, split_k=4, prefetch=True),
    KernelConfig(block_m=128, block_n=64, block_k=128, path="dequant+cublas"),
]


def _check(y: torch.Tensor, ref: torch.Tensor, x: torch.Tensor, w_abs: torch.Tensor) -> None:
    """bf16 output: within one bf16 rounding of the float64 result plus an fp32-accumulation
    allowance of 2^-16 of sum|x||w| (small enough that one wrong weight code fails)."""
    assert torch.isfinite(y).all()
    mag = x.double().abs() @ w_abs.T
    tol = ref.abs() * 2.0**-8 + mag * 2.0**-16
    bad = (y.double() - ref).abs() > tol
    assert not bad.any(), f"{int(bad.sum())} of {bad.numel()} outputs off"
    assert float((y.double() - ref).norm() / ref.norm()) < 4e-3


@pytest.mark.parametrize("fmt", PACKED_FORMATS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "tuned" if c is None else c.label())
def test_packed_matmul_matches_float64(fmt: str, shape: tuple[int, int, int], cfg) -> None:
    m, n, k = shape
    g = torch.Generator(device=DEV).manual_seed(m * 7919 + n * 31 + k)
    w = torch.randn(n, k, device=DEV, generator=g) * 0.05
    x = torch.randn(m, k, device=DEV, generator=g).to(torch.bfloat16)
    bias = torch.randn(n, device=DEV, generator=g)
    p = pack(w, fmt)
    if cfg is not None and cfg.path == "fused" and p.padded_in_features % cfg.block_k:
        pytest.skip("block_k does not divide the packed K")
    if cfg is not None and cfg.path != "fused" and fmt == "vsq8_v16_s4":
        pytest.skip("W8 runs fused only")
    y = packed_matmul(x, p, bias, config=cfg)
    from picojoule.gpu.packing import dequant

    _check(y, reference_matmul(x, p, bias), x, dequant(p).double().abs())


@pytest.mark.parametrize("shape", SHAPES)
def test_w4a8_matches_float64(shape: tuple[int, int, int]) -> None:
    m, n, k = shape
    g = torch.Generator(device=DEV).manual_seed(k)
    w = torch.randn(n, k, device=DEV, generator=g)
    x = torch.randn(m, k, device=DEV, generator=g) * 3
    xq, sx = quantize_rows_fp8(x)
    p = pack(w, "vsq4_v16_s4")
    from picojoule.gpu.packing import dequant

    y = packed_matmul(xq, p, x_scale=sx)
    xs = xq.float() * sx[:, None]
    _check(y, reference_matmul(xq, p, x_scale=sx), xs, dequant(p).double().abs())


def test_extreme_scales_stay_exact() -> None:
    """Tiny and huge weights reach bf16 subnormals (MXFP4 2^-127 scales) and large scales."""
    for scale in (1e-30, 1e-3, 1e4):
        w = torch.randn(64, 256, device=DEV) * scale
        x = torch.randn(16, 256, device=DEV).to(torch.bfloat16)
        for fmt in PACKED_FORMATS:
            p = pack(w, fmt)
            from picojoule.gpu.packing import dequant

            _check(packed_matmul(x, p), reference_matmul(x, p), x, dequant(p).double().abs())


@pytest.mark.parametrize("fmt", ["vsq4_v16_s4", "nvfp4", "mxfp4"])
@pytest.mark.parametrize("deq_asm", [True, False])
def test_kernel_dequant_bit_matches_fake_quant(fmt: str, deq_asm: bool) -> None:
    """The kernels' in-register dequantization (here written out by the dequant kernel), times
    the fp32 second-level scale, equals picojoule.formats' fake-quant bit for bit."""
    from picojoule.formats import get
    from picojoule.gpu.ops import dequant_partial

    w = torch.randn(96, 1000, device=DEV) * 0.3
    w[:, :40] *= 1e-6  # blocks with tiny scales (E4M3 / E8M0 subnormal range)
    p = pack(w, fmt)
    d = dequant_partial(p, deq_asm=deq_asm).float()[:, : w.shape[1]]
    if p.gamma is not None:
        d = d * p.gamma[:, None]
    if p.tensor_scale is not None:
        d = d * p.tensor_scale
    assert torch.equal(d, get(fmt).quantize(w))


def test_leading_dims_and_empty_batch() -> None:
    p = pack(torch.randn(48, 64, device=DEV), "vsq4_v16_s4")
    x = torch.randn(2, 3, 64, device=DEV)
    y = packed_matmul(x, p)
    assert y.shape == (2, 3, 48) and y.dtype == torch.bfloat16
    assert packed_matmul(x[:, :0], p).shape == (2, 0, 48)


def test_bad_inputs_raise_clear_errors() -> None:
    p = pack(torch.randn(32, 64, device=DEV), "nvfp4")
    with pytest.raises(ShapeError, match="K=65"):
        packed_matmul(torch.randn(4, 65, device=DEV), p)
    xq, sx = quantize_rows_fp8(torch.randn(4, 64, device=DEV))
    with pytest.raises(ShapeError, match="vsq4_v16_s4"):
        packed_matmul(xq, p, x_scale=sx)
    with pytest.raises(ShapeError, match="x_scale"):
        packed_matmul(xq, pack(torch.randn(32, 64, device=DEV), "vsq4_v16_s4"))


def test_packed_linear_and_quantize_backend_triton() -> None:
    from picojoule.gpu.modules import PackedLinear, to_packed_

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(200, 96), torch.nn.ReLU(), torch.nn.Linear(96, 10))
    model = model.to(DEV)
    x = torch.randn(5, 200, device=DEV)
    cpu_copy = PackedLinear.from_linear(model[0].cpu(), "vsq4_v16_s4")
    model[0].to(DEV)
    applied = to_packed_(model, "vsq4_v16_s4")
    assert [a.name for a in applied] == ["0", "2"]
    assert isinstance(model[0], PackedLinear)
    y_gpu = model[0](x).float().cpu()
    y_cpu = cpu_copy(x.cpu()).float()
    torch.testing.assert_close(y_gpu, y_cpu, rtol=2**-7, atol=1e-3)
    assert model(x).shape == (5, 10)
