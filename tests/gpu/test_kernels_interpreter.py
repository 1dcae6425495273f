"""The Triton kernels in Triton's CPU interpreter (no GPU needed), against the references."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
torch = pytest.importorskip("torch")


@pytest.mark.skipif(
    torch.cuda.is_available(),
    reason="with CUDA the compiled kernels themselves are tested (test_kernels_cuda.py); "
    "Triton 3.6's interpreter failed inside its own __call__ on the H100 machine",
)
def test_kernels_match_references_in_interpreter() -> None:
    # A subprocess: TRITON_INTERPRET must be set before the kernels are first decorated.
    env = {**os.environ, "TRITON_INTERPRET": "1", "TRITON_DEFAULT_FP_FUSION": "1"}
    src = Path(__file__).resolve().parents[2] / "src"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
    script = Path(__file__).with_name("interp_check.py")
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]
    assert "all cases match" in run.stdout
