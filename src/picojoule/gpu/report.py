"""Run the GPU benchmarks into plain dicts (JSON-ready), and plot them.

`gemm_report` and `kernel_report` are what `picojoule bench gpu` and `benchmarks/bench_gpu*.py`
run; each stage is independent and records a failure as a note in its section, so one stage
that cannot run never loses the others' results. `plot_report` writes PNGs next to the JSON.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from picojoule.fsio import save_figure, write_json
from picojoule.gpu.device import device_info, require_cuda
from picojoule.gpu.spec import peaks_for_device

__all__ = ["gemm_report", "kernel_report", "save_json", "plot_report", "M_SWEEP"]

M_SWEEP = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]


def _header(command: str) -> dict[str, Any]:
    info = device_info()
    peaks = peaks_for_device(info.name)
    return {
        "device": asdict(info),
        "peaks": asdict(peaks) if peaks else None,
        "command": command,
        "python_executable": sys.executable,
        "host": platform.node(),
        "started_unix": time.time(),
    }


def gemm_report(
    sizes: list[int],
    formats: list[str] | None = None,
    *,
    energy_s: float = 0.5,
    command: str = "",
    on_row: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    from picojoule.gpu.gemm_bench import gemm_sweep, measure_bandwidth

    require_cuda(what="picojoule bench gpu")
    out = _header(command)
    peaks = peaks_for_device(out["device"]["name"])
    out["bandwidth"] = asdict(measure_bandwidth(peaks))
    rows = gemm_sweep(sizes, formats, peaks=peaks, energy_s=energy_s, on_result=on_row)
    out["gemm"] = [asdict(r) for r in rows]
    return out


def _stage(out: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """Run one stage; its failure becomes a note and the other stages still run."""
    t0 = time.perf_counter()
    try:
        out[name] = fn()
    except Exception as e:  # kept in the JSON next to the stages that did run
        out[name] = {"error": f"{type(e).__name__}: {e}"}
    out.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - t0, 1)


def kernel_report(
    *,
    stages: tuple[str, ...] = ("decode", "prefill", "msweep", "e2e"),
    ms: list[int] | None = None,
    compile_baseline: bool = True,
    command: str = "",
) -> dict[str, Any]:
    from picojoule.gpu import kernel_bench as kb
    from picojoule.gpu.gemm_bench import measure_bandwidth

    require_cuda((8, 0), what="the packed-kernel benchmark")
    out = _header(command)
    bw = measure_bandwidth(peaks_for_device(out["device"]["name"]))
    out["bandwidth"] = asdict(bw)
    copy_tbs = bw.tb_per_s

    def rows(fn: Callable[[], list]) -> Callable[[], list[dict]]:
        return lambda: [asdict(r) for r in fn()]

    if "decode" in stages:
        _stage(out, "decode", rows(lambda: kb.decode_rows(copy_tbs=copy_tbs,
                                                          compile_=compile_baseline)))  # fmt: skip
    if "prefill" in stages:
        _stage(out, "prefill", rows(lambda: kb.prefill_rows(copy_tbs=copy_tbs)))
    if "msweep" in stages:
        _stage(out, "msweep", rows(lambda: kb.m_sweep(ms or M_SWEEP, copy_tbs=copy_tbs)))
    if "e2e" in stages:
        from picojoule.gpu.e2e import minilm_throughput

        def e2e() -> list[dict]:
            return [asdict(minilm_throughput(batch=b, seq_len=128)) for b in (1, 32, 256)]

        _stage(out, "e2e", e2e)
    out["tuning"] = kb.tuning_trials()
    return out


def save_json(data: dict[str, Any], path: Path) -> None:
    """Strict JSON (NaN/inf as null), written atomically (`picojoule.fsio`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data, indent=1, default=str)


def plot_report(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG plots of whatever sections `data` holds; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    dev = data.get("device", {}).get("name", "GPU")
    gemm = [r for r in data.get("gemm", []) if r.get("tflops")]
    if gemm:
        size = max(r["m"] for r in gemm)
        rows = [r for r in gemm if r["m"] == size]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        labels = [r["fmt"] for r in rows]
        a1.bar(labels, [r["tflops"] for r in rows], label="measured")
        peaks = [r["peak_tflops"] or 0 for r in rows]
        a1.scatter(labels, peaks, color="k", marker="_", s=400, label="datasheet peak")
        a1.set_ylabel("TFLOPS / TOPS")
        a1.set_title(f"{size}^3 GEMM on {dev}")
        a1.legend()
        pj = [r["energy_pj_per_op"] or 0 for r in rows]
        a2.bar(labels, pj, color="tab:orange")
        a2.set_ylabel("board energy, pJ per op")
        a2.set_title("NVML board energy / ops")
        for ax in (a1, a2):
            ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        p = save_figure(fig, out_dir / "gpu_gemm.png", dpi=120)
        plt.close(fig)
        written.append(p)
    sweep = data.get("msweep")
    if isinstance(sweep, list) and sweep:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for method in dict.fromkeys(r["method"] for r in sweep):
            pts = [(r["m"], r["tflops"]) for r in sweep if r["method"] == method and r["tflops"]]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=method)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel("TFLOPS (2MNK / t)")
        ax.set_title(f"N = K = 8192 on {dev}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        p = save_figure(fig, out_dir / "gpu_msweep.png", dpi=120)
        plt.close(fig)
        written.append(p)
    return written
