"""No-GPU behaviour: clear errors, GPU-table lookup, CLI argument checks (CPU)."""

from __future__ import annotations

import pytest
import torch

from picojoule.errors import ConfigError, PicojouleError, ShapeError
from picojoule.gpu.device import GpuUnavailableError, require_cuda
from picojoule.gpu.spec import peaks, peaks_for_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")


@no_cuda
def test_require_cuda_says_what_and_why() -> None:
    with pytest.raises(GpuUnavailableError, match="needs an NVIDIA GPU") as e:
        require_cuda(what="the benchmark")
    assert isinstance(e.value, PicojouleError)


@no_cuda
def test_packed_matmul_without_gpu_is_a_clear_error() -> None:
    pytest.importorskip("triton")
    from picojoule.gpu.ops import packed_matmul
    from picojoule.gpu.packing import pack

    p = pack(torch.randn(16, 32), "vsq4_v16_s4")
    with pytest.raises(ShapeError, match="K=33"):
        packed_matmul(torch.randn(2, 33), p)
    with pytest.raises(GpuUnavailableError):
        packed_matmul(torch.randn(2, 32), p)


def test_peaks_come_from_the_energy_table() -> None:
    h100 = peaks_for_device("NVIDIA H100 80GB HBM3")
    assert h100 is not None and h100.name == "h100"
    assert h100.peak("bf16") == 989.4 and h100.peak("fp16", sparse=True) == 1978.9
    assert "whitepaper" in h100.citation
    assert peaks_for_device("NVIDIA H200").name == "h200"  # type: ignore[union-attr]
    assert peaks_for_device("NVIDIA H100 PCIe") is None  # other board, other peaks
    assert peaks_for_device("NVIDIA GeForce RTX 4090") is None
    assert peaks("h100").bandwidth_gbs == 3350


def test_cli_rejects_bad_arguments() -> None:
    pytest.importorskip("typer")
    from typer.testing import CliRunner

    from picojoule.gpu.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["--stages", "gemm,warp"])
    assert isinstance(bad.exception, ConfigError) and "warp" in str(bad.exception)
    bad = runner.invoke(app, ["--sizes", "1k"])
    assert isinstance(bad.exception, ConfigError)
    if not torch.cuda.is_available():
        r = runner.invoke(app, ["--stages", "gemm"])
        assert isinstance(r.exception, GpuUnavailableError)


@no_cuda
def test_benchmark_scripts_skip_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "benchmarks"
    for name in ("bench_gpu", "bench_gpu_kernels"):
        spec = importlib.util.spec_from_file_location(name, root / f"{name}.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        argv, sys.argv = sys.argv, [name]
        try:
            mod.main()
        finally:
            sys.argv = argv
        assert "skipped" in capsys.readouterr().out
