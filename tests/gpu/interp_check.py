"""Run by test_kernels_interpreter.py in a subprocess with TRITON_INTERPRET=1: the fused GEMM
and the dequantization kernel on the CPU, in Triton's interpreter, against the references.

Exits non-zero with the failing case on stdout. The interpreter runs the portable dequant
path (inline PTX needs a GPU); tests/gpu/test_kernels_cuda.py covers both paths on a GPU.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import interp_shim  # noqa: E402

interp_shim.install()

import torch  # noqa: E402

from picojoule.formats import get  # noqa: E402
from picojoule.gpu.autotune import KernelConfig  # noqa: E402
from picojoule.gpu.ops import (  # noqa: E402
    dequant_partial,
    packed_matmul,
    quantize_rows_fp8,
    reference_matmul,
)
from picojoule.gpu.packing import PACKED_FORMATS, dequant, pack  # noqa: E402

CONFIGS = [
    KernelConfig(block_m=16, block_n=32, block_k=32, deq_asm=False),
    KernelConfig(block_m=16, block_n=32, block_k=128, split_k=2, swap_ab=True, deq_asm=False),
    # hand prefetch; split-K 4 leaves some splits of the short K without a tile
    KernelConfig(block_m=16, block_n=32, block_k=32, split_k=4, prefetch=True, deq_asm=False),
    KernelConfig(block_m=16, block_n=32, block_k=64, swap_ab=True, prefetch=True, deq_asm=False),
]
SHAPES = [(5, 40, 70), (16, 32, 250), (1, 17, 128)]


def close(y: torch.Tensor, ref: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> bool:
    """Within one bf16 rounding (the interpreter truncates: 2^-7) plus 2^-16 sum|x||w|."""
    tol = ref.abs() * 2.0**-7 + (x.double().abs() @ w.double().abs().T) * 2.0**-16
    return bool(((y.double() - ref).abs() <= tol).all())


def main() -> int:
    torch.manual_seed(0)
    failures = []
    for fmt in PACKED_FORMATS:
        for m, n, k in SHAPES:
            w = torch.randn(n, k)
            x = torch.randn(m, k).to(torch.bfloat16)
            bias = torch.randn(n)
            p = pack(w, fmt)
            wq = dequant(p)
            for cfg in CONFIGS:
                if p.padded_in_features % cfg.block_k:
                    continue
                y = packed_matmul(x, p, bias, config=cfg)
                if not close(y, reference_matmul(x, p, bias), x.float(), wq):
                    failures.append(f"{fmt} {(m, n, k)} {cfg.label()}")
            if fmt == "vsq4_v16_s4":
                xq, sx = quantize_rows_fp8(x.float() * 3)
                y = packed_matmul(xq, p, x_scale=sx, config=CONFIGS[0])
                ref = reference_matmul(xq, p, x_scale=sx)
                if not close(y, ref, xq.float() * sx[:, None], wq):
                    failures.append(f"W4A8 {(m, n, k)}")
            if fmt != "vsq8_v16_s4":
                d = dequant_partial(p, deq_asm=False).float()[:, :k]
                d = d * p.gamma[:, None] if p.gamma is not None else d
                d = d * p.tensor_scale if p.tensor_scale is not None else d
                if not torch.equal(d, get(fmt).quantize(w)):
                    failures.append(f"dequant kernel {fmt} {(n, k)}")
    print("\n".join(failures) or "all cases match")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
