import json
from dataclasses import asdict

import pytest
import torch
import torch.nn as nn
from rich.console import Console

from picojoule.errors import ConfigError
from picojoule.quant import quantize_
from picojoule.sparsity import render_table, report, sparsify_, to_dict
from picojoule.sparsity.gpu_check import GpuMeasurement, load_measurements
from picojoule.sparsity.report import layer_gemms


def _rows(model, applied=None, **kw):
    return {r.name: r for r in report(model, applied, **kw)}


def test_digits_cnn_report_after_2to4(cnn, digits_batch) -> None:
    applied = sparsify_(cnn, "2:4")
    rows = _rows(cnn, applied, example_input=digits_batch)
    assert rows["0"].status == "skipped: first conv (kept dense)"
    assert rows["11"].status == "skipped: classifier (kept dense)"
    fc1 = rows["9"]
    assert (fc1.status, fc1.pattern, fc1.density) == ("sparse", "2:4", 0.5)
    assert fc1.qualifies_2to4 and fc1.kernel == "cuSPARSELt 2:4 (float16)"
    assert fc1.predicted_speedup == 2.0
    # fp16 2:4: 0.5625 of 64*256*2 bytes
    assert (fc1.dense_bytes, fc1.sparse_bytes, fc1.layout) == (32768, 18432, "2:4")
    assert (fc1.macs, fc1.macs_saved) == (64 * 256, 64 * 128)
    conv = rows["5"]
    assert conv.status == "sparse" and not conv.qualifies_2to4
    assert conv.kernel == "dense cuDNN" and "no conv kernel" in conv.why_not
    assert conv.macs == 64 * 4 * 4 * 32 * 9 and conv.predicted_speedup == 1.0
    assert "out features 10 not a multiple of 16" in rows["11"].why_not


def test_report_without_records_or_input() -> None:
    model = nn.Sequential(nn.Linear(32, 32), nn.Linear(32, 16))
    rows = _rows(model)
    assert rows["0"].status == "dense" and rows["0"].macs is None
    assert rows["0"].bytes_saved == 0 and rows["0"].layout == "dense"


def test_int8_deployment_rules_and_bytes(cnn) -> None:
    sparsify_(cnn, "2:4")
    fc1 = _rows(cnn, dtype="int8")["9"]
    assert fc1.qualifies_2to4 and fc1.sparse_bytes == 64 * 256 * 5 // 8  # 0.625 of dense


def test_unstructured_layers_use_the_smaller_compressed_layout(cnn) -> None:
    sparsify_(cnn, "unstructured:0.1")
    fc1 = _rows(cnn)["9"]
    assert fc1.layout == "csr" and not fc1.qualifies_2to4
    assert "pattern unstructured:0.1 is not 2:4" in fc1.why_not


def test_sparse_plus_quant_is_reported_as_it_runs(cnn) -> None:
    sparsify_(cnn, "2:4")
    quantize_(cnn, "w:nvfp4")
    fc1 = _rows(cnn)["9"]
    assert fc1.status == "sparse" and fc1.qualifies_2to4
    assert fc1.density <= 0.5  # fp4 can round small kept weights to zero too


def test_table_and_json(cnn, digits_batch) -> None:
    applied = sparsify_(cnn, "2:4")
    rows = report(cnn, applied, example_input=digits_batch)
    console = Console(width=250, record=True)
    console.print(render_table(rows))
    text = console.export_text()
    assert "cuSPARSELt 2:4 (float16)" in text and "skipped: first conv" in text
    assert "math-bound upper bound" in text
    data = json.loads(json.dumps(to_dict(rows)))
    assert data["totals"]["layers_sparse"] == 3
    assert data["totals"]["layers_on_2to4_kernel"] == 1
    assert data["totals"]["macs_saved"] == sum(r.macs_saved for r in rows)
    assert data["layers"][3]["bytes_saved"] == 32768 - 18432


def test_layer_gemms_shapes(cnn) -> None:
    gemms = layer_gemms(cnn, torch.zeros(2, 1, 8, 8))
    assert (gemms["2"].m, gemms["2"].k, gemms["2"].n) == (32, 144, 2 * 64)
    assert (gemms["9"].m, gemms["9"].k, gemms["9"].n) == (64, 256, 2)


def _timed(n: int, call: float, kernel: float) -> GpuMeasurement:
    return GpuMeasurement(
        label=f"fc1 n{n}",
        m=64,
        k=256,
        n=n,
        dtype="float16",
        dense_ms=1.0,
        sparse_ms=1 / call,
        speedup=call,
        predicted_speedup=2.0,
        kernel_speedup=kernel,
        kernel="CUSPARSELT 2:4",
        device="NVIDIA H100 80GB HBM3",
    )


def test_measured_speedups_join_the_layer_with_the_nearest_batch(cnn, digits_batch, tmp_path):
    sparsify_(cnn, "2:4")
    rows_in = [_timed(256, 0.02, 0.38), _timed(4096, 0.03, 0.9)]
    path = tmp_path / "gpu.json"
    path.write_text(json.dumps({"rows": [asdict(r) for r in rows_in]}))
    measured = load_measurements(path)
    assert measured == rows_in
    rows = _rows(cnn, example_input=digits_batch, measured=measured)  # n = 8 tokens
    fc1 = rows["9"]
    assert (fc1.measured_speedup, fc1.measured_kernel_speedup) == (0.02, 0.38)
    assert fc1.measured_on == "NVIDIA H100 80GB HBM3, n=256"
    assert rows["5"].measured_speedup is None  # convs never reach the 2:4 kernel
    text = Console(width=250, record=True)
    text.print(render_table(list(rows.values())))
    assert "0.02x call, 0.38x kernel" in text.export_text()


def test_unreadable_measurements_raise_config_error(tmp_path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bench_sparsity_gpu.py"):
        load_measurements(bad)
