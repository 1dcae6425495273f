"""Make Triton's CPU interpreter multiply bf16 correctly (test-only).

Triton 3.9's interpreter stores bfloat16 as raw uint16 bits and its `create_dot` passes them
to `np.matmul` unconverted, so a bf16 `tl.dot` multiplies bit patterns. `install()` converts
bf16 dot operands to float32 first (exact: bf16 is a subset of float32). Kernels still do all
other arithmetic themselves; only the interpreter's dot is patched.
"""

from __future__ import annotations

import numpy as np


def install() -> None:
    import triton.language as tl
    from triton.runtime import interpreter as it

    original = it.InterpreterBuilder.create_dot

    def widen(h: it.TensorHandle) -> it.TensorHandle:
        if h.dtype.scalar != tl.bfloat16:
            return h
        data = it._convert_float(h.data, tl.bfloat16, tl.float32, None).view(np.float32)
        return it.TensorHandle(data.reshape(h.data.shape), tl.float32)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):  # noqa: ANN001
        return original(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    it.InterpreterBuilder.create_dot = create_dot
