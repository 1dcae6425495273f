import pytest
import torch

from picojoule.sparsity.gpu_check import cuda_note, measure_2to4

HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-CUDA path")
def test_without_cuda_every_row_is_skipped_with_a_note() -> None:
    rows = measure_2to4([(64, 256, 128), (10, 64, 32)], ["fp16", "int8"])
    assert len(rows) == 4
    for r in rows:
        assert r.speedup is None and r.dense_ms is None and r.kernel_speedup is None
        assert r.note == "skipped: no CUDA device (torch.cuda.is_available() is False)"
    assert [r.dtype for r in rows] == ["float16", "int8"] * 2
    assert cuda_note() == rows[0].note


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA or bool(cuda_note()), reason="needs an Ampere+ NVIDIA GPU")
def test_measures_2to4_against_dense_on_the_gpu() -> None:
    rows = measure_2to4(
        [(1024, 1024, 1024), (10, 64, 256)], ["fp16", "bf16", "int8"], iters=5, repeats=3
    )
    timed = [r for r in rows if r.m == 1024]
    for r in timed:
        assert r.speedup is not None and r.speedup > 0
        assert r.kernel_speedup is not None and r.kernel_speedup > 0
        assert r.dense_ms > 0 and r.sparse_ms > 0 and r.predicted_speedup == 2.0
        assert "MISMATCH" not in r.note and "disagrees" not in r.note
    skipped = [r for r in rows if r.m == 10]
    assert all(r.note.startswith("skipped: out features 10") for r in skipped)
