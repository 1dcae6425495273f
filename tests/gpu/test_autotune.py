"""Tile-config candidates, M buckets and the JSON tuning cache (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

from picojoule.gpu.autotune import KernelConfig, TuningCache, candidates, m_bucket, tune


def test_m_buckets() -> None:
    assert [m_bucket(m) for m in (1, 16, 17, 64, 65, 256, 257, 8192)] == [
        16, 16, 64, 64, 256, 256, 4096, 4096
    ]  # fmt: skip


def test_candidates_fit_the_shape() -> None:
    for m in (1, 40, 200, 5000):
        for kp in (32, 96, 384, 8192):
            for fmt in ("vsq4_v16_s4", "vsq8_v16_s4", "nvfp4"):
                for c in candidates(m, 520, kp, fmt=fmt):
                    if c.path != "fused":
                        assert fmt != "vsq8_v16_s4"  # W8 q*s_q is not exact in bf16
                        continue
                    assert kp % c.block_k == 0 and c.block_k >= 32
                    assert c.split_k == 1 or kp // c.block_k >= 2 * c.split_k
                    if fmt == "vsq8_v16_s4":
                        assert (c.block_m + c.block_n) * c.block_k <= 24576


def test_small_n_caps_block_n() -> None:
    assert all(c.block_n <= 16 for c in candidates(16, 10, 256, fmt="nvfp4"))


def test_cache_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "tuning.json"
    cfg = KernelConfig(block_m=16, block_n=64, block_k=128, split_k=4)
    TuningCache(path).put("gpu|vsq4_v16_s4|a16|m16|n8192|k8192", cfg)
    assert json.loads(path.read_text())["gpu|vsq4_v16_s4|a16|m16|n8192|k8192"]["split_k"] == 4
    assert TuningCache(path).get("gpu|vsq4_v16_s4|a16|m16|n8192|k8192") == cfg


def test_shipped_h100_configs_load() -> None:
    cache = TuningCache(Path("/nonexistent/tuning.json"))
    key = "NVIDIA H100 80GB HBM3|vsq4_v16_s4|a16|m16|n8192|k8192"
    found = cache.get(key)
    assert found is not None and found.block_m == 16
    cache.forget()  # bench_gpu_kernels.py --retune: every candidate is timed again
    assert cache.get(key) is None


def test_decode_candidates_include_hand_prefetch() -> None:
    cands = candidates(16, 8192, 8192, fmt="vsq4_v16_s4")
    assert any(c.prefetch for c in cands) and any(not c.prefetch for c in cands)
    assert all("prefetch" in c.label() for c in cands if c.prefetch)


def test_tune_picks_fastest_and_records_failures() -> None:
    cfgs = [KernelConfig(block_m=16, block_n=n, block_k=128) for n in (32, 64, 128)]
    times = {32: 3.0, 64: 1.0}

    def run(c: KernelConfig):
        if c.block_n == 128:
            raise RuntimeError("out of shared memory")
        return lambda: c.block_n

    best, trials = tune(run, cfgs, lambda fn: times[fn()])
    assert best.block_n == 64
    assert [t.error for t in trials][2].startswith("RuntimeError: out of shared memory")
