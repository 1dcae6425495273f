"""Tile-config search for the packed GEMM, with a JSON cache.

Candidates depend on the M bucket (decode M <= 16 wants thin tiles and split-K to fill 132
SMs; prefill wants 128-wide tiles). The first call for a (GPU, format, activation, M bucket,
N, Kp) key times every candidate that fits on the real inputs (L2 flushed, median of repeats,
split-K's zero-fill and cast included) and keeps the fastest; later calls read it from memory,
then from `$PICOJOULE_CACHE_DIR/gpu_tuning.json` (default `~/.cache/picojoule`), then from the
configs measured on an H100 that ship with the package (`tuned_h100.json`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from picojoule.fsio import write_json

__all__ = ["KernelConfig", "candidates", "m_bucket", "TuningCache", "tune", "DEFAULT_CONFIG"]


@dataclass(frozen=True, kw_only=True)
class KernelConfig:
    block_m: int
    block_n: int
    block_k: int
    split_k: int = 1
    swap_ab: bool = False
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3
    prefetch: bool = False  # carry tile t+1's loads in registers (hand software pipelining)
    deq_asm: bool = True  # packed-PTX dequant (GPU); False: portable Triton ops (interpreter)
    # "fused": dequantize in the GEMM's registers; "dequant+cublas": write the exact bf16 partial
    # products once, then one cuBLAS GEMM (wins at large M, where the GEMM is compute bound)
    path: str = "fused"

    def label(self) -> str:
        if self.path != "fused":
            return f"{self.path} (dequant tile {self.block_n}x{self.block_k})"
        sw = "swap" if self.swap_ab else "std"
        asm = "" if self.deq_asm else " portable"
        pf = " prefetch" if self.prefetch else ""
        return (
            f"{self.block_m}x{self.block_n}x{self.block_k} sk{self.split_k} {sw} "
            f"w{self.num_warps} s{self.num_stages}{pf}{asm}"
        )


DEFAULT_CONFIG = KernelConfig(
    block_m=16, block_n=64, block_k=64, num_warps=4, num_stages=2, deq_asm=False
)


def m_bucket(m: int) -> int:
    """Tuning bucket of M: 16, 64, 256 or 4096 (one config serves a whole bucket)."""
    for b in (16, 64, 256):
        if m <= b:
            return b
    return 4096


def _c(
    bm: int, bn: int, bk: int, sk: int, swap: bool, w: int, s: int, pf: bool = False
) -> KernelConfig:
    return KernelConfig(
        block_m=bm, block_n=bn, block_k=bk, split_k=sk, swap_ab=swap, num_warps=w, num_stages=s,
        prefetch=pf,
    )  # fmt: skip


# Fused prefill measured 0.26x cuBLAS bf16 at 8192^3 on an H100; dequantize-then-cuBLAS leads.
# block_n/block_k here tile the dequantization kernel.
_DQ = KernelConfig(block_m=128, block_n=64, block_k=128, path="dequant+cublas")
_DQ2 = KernelConfig(block_m=128, block_n=16, block_k=512, path="dequant+cublas")
_DQ3 = KernelConfig(block_m=128, block_n=32, block_k=256, path="dequant+cublas")

_CANDIDATES: dict[int, tuple[KernelConfig, ...]] = {
    # Decode: weights as the wgmma's left operand (swap) measured 3 instructions per weight in
    # the compiled loop against 5 for the standard orientation (SASS, sm_90).
    # Measured on an H100 (first run): split-K 2 beat 1 in every format; the kernel is latency
    # bound at ~8 warps per SM, so deeper splits with fewer stages raise the warps in flight.
    16: (
        _c(16, 64, 128, 2, False, 4, 4),
        _c(16, 64, 128, 4, False, 4, 3),
        _c(16, 64, 128, 8, False, 4, 2),
        _c(16, 32, 128, 8, False, 4, 3),
        _c(16, 64, 256, 4, False, 4, 2),
        _c(16, 128, 128, 4, True, 4, 3),
        _c(16, 128, 128, 8, True, 4, 2),
        _c(16, 64, 128, 8, True, 4, 2),
        # Not yet measured (written without a GPU): tile t+1's scales, weights and activations
        # loaded by hand a tile ahead, against the ~3.4 us per-tile latency measured above.
        _c(16, 64, 128, 4, False, 4, 1, True),
        _c(16, 64, 256, 4, False, 4, 1, True),
        _c(16, 128, 128, 4, True, 4, 1, True),
        _c(16, 64, 128, 8, True, 4, 1, True),
    ),
    64: (
        _c(32, 64, 128, 4, False, 4, 3),
        _c(32, 64, 128, 2, True, 4, 4),
        _c(64, 64, 128, 4, False, 4, 3),
        _c(64, 128, 128, 4, True, 4, 3),
        _DQ,
    ),
    # BLOCK_K >= 128 keeps each row's scale bytes >= 4 contiguous bytes, which the compiler
    # pipelines with cp.async (narrower loads are waited on every iteration).
    256: (
        _DQ,
        _DQ2,
        _DQ3,
        _c(64, 128, 128, 2, True, 4, 3),
        _c(64, 128, 128, 1, True, 4, 3),
        _c(128, 128, 128, 1, True, 8, 3),
        _c(64, 128, 128, 1, False, 4, 4),
        _c(128, 64, 128, 1, True, 4, 3),
    ),
    4096: (
        _DQ,
        _DQ2,
        _DQ3,
        _c(128, 256, 128, 1, False, 8, 3),
        _c(128, 256, 128, 1, True, 8, 3),
        _c(128, 128, 128, 1, True, 8, 4),
        _c(256, 128, 128, 1, True, 8, 3),
        _c(128, 128, 128, 1, False, 8, 4),
    ),
}


def candidates(m: int, n: int, kp: int, *, fmt: str) -> list[KernelConfig]:
    """Configs of M's bucket that fit the shape (BLOCK_K divides Kp; split-K has work)."""
    out = []
    for c in _CANDIDATES[m_bucket(m)]:
        if c.path != "fused":
            if fmt != "vsq8_v16_s4":  # W8's q * s_q is not exact in bf16: fused only
                out.append(c)
            continue
        bk, bm, bn_cap, stages = c.block_k, c.block_m, c.block_n, c.num_stages
        if fmt == "vsq8_v16_s4":
            # fp32 operand tiles (tf32 MMA): keep (BM + BN) * BK * 4 B within ~96 KB of smem
            bk = min(bk, 128)
            while (bm + bn_cap) * bk > 24576 and bm > 16:
                bm //= 2
            while (bm + bn_cap) * bk > 24576 and bn_cap > 32:
                bn_cap //= 2
            stages = min(stages, 3)
        while kp % bk:
            bk //= 2
        if bk < 32:
            continue
        sk = c.split_k
        while sk > 1 and kp // bk < 2 * sk:
            sk //= 2
        bn = min(bn_cap, max(16, 1 << (n - 1).bit_length()))
        fields = {"block_k": bk, "split_k": sk, "block_n": bn, "block_m": bm, "num_stages": stages}
        out.append(KernelConfig(**{**asdict(c), **fields}))
    return list(dict.fromkeys(out))


def _cache_path() -> Path:
    root = os.environ.get("PICOJOULE_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "picojoule"
    )
    return Path(root) / "gpu_tuning.json"


_SHIPPED = Path(__file__).with_name("tuned_h100.json")


class TuningCache:
    """Best config per key: memory, then the user cache file, then the shipped H100 file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _cache_path()
        self._mem: dict[str, KernelConfig] = {}
        for p in (_SHIPPED, self.path):
            if p.is_file():
                for k, v in json.loads(p.read_text()).items():
                    self._mem[k] = KernelConfig(**v)

    def get(self, key: str) -> KernelConfig | None:
        return self._mem.get(key)

    def put(self, key: str, cfg: KernelConfig) -> None:
        self._mem[key] = cfg
        self.path.parent.mkdir(parents=True, exist_ok=True)
        on_disk = json.loads(self.path.read_text()) if self.path.is_file() else {}
        on_disk[key] = asdict(cfg)
        write_json(self.path, on_disk, indent=1, sort_keys=True)  # atomic, mkstemp + replace

    def items(self) -> dict[str, KernelConfig]:
        return dict(self._mem)

    def forget(self) -> None:
        """Drop every known config (shipped and cached) from memory, so the next call per key
        times the current candidates again; the winners are written back as usual."""
        self._mem.clear()


@dataclass(frozen=True, kw_only=True)
class TuneTrial:
    config: KernelConfig
    time_s: float | None
    error: str = ""


def tune(
    run: Callable[[KernelConfig], Callable[[], object]],
    configs: list[KernelConfig],
    timer: Callable[[Callable[[], object]], float],
) -> tuple[KernelConfig, list[TuneTrial]]:
    """Time each config (`run(cfg)` returns a closure launching it); fastest wins.

    A config that fails to compile or launch (too much shared memory, say) is recorded with
    its error and skipped; if none runs, the first error is raised.
    """
    trials: list[TuneTrial] = []
    for cfg in configs:
        try:
            fn = run(cfg)
            trials.append(TuneTrial(config=cfg, time_s=timer(fn)))
        except Exception as e:  # noqa: BLE001 - recorded and reported in the trial list
            trials.append(TuneTrial(config=cfg, time_s=None, error=f"{type(e).__name__}: {e}"))
    ok = [t for t in trials if t.time_s is not None]
    if not ok:
        raise RuntimeError(f"no kernel config ran; first error: {trials[0].error}")
    best = min(ok, key=lambda t: t.time_s or 0.0)
    return best.config, trials
