"""GPU generations: datasheet peaks, efficiency, and where the throughput gains came from.

Public: `GpuSpec`, `gpu(name)`, `gpus()`, `peak_key(fmt)`, `Factor`, `Speedup`,
`speedup(base, target, ...)`.

`speedup("k20x", "a100", target_format="int8", sparse=True)` reproduces the seed's 317x
(A100 sparse INT8 1248 TOPS / K20X FP32 3.935 TFLOPS) and splits it two ways, each an exact
product of ratios of datasheet numbers:

- hardware: SM count x clock x ops per SM per clock x 2:4 sparsity;
- levers: number representation (FP32 -> FP16 on the SIMT cores, x FP16 -> the target format
  on the tensor cores) x complex instructions (tensor-core FP16 / SIMT FP16) x sparsity x
  the rest, i.e. FP32 throughput growth = power budget (TDP ratio) x FP32 ops per joule
  (process and circuit design).
The levers are measured on the target GPU's own datasheet, so they need its SIMT FP16 rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from picojoule.energy.tables import GpuRow, Table, load_table
from picojoule.energy.units import GIGA, MHZ, TERA
from picojoule.errors import ConfigError, suggest

__all__ = ["GpuSpec", "gpu", "gpus", "peak_key", "Factor", "Speedup", "speedup"]


@dataclass(frozen=True, kw_only=True)
class GpuSpec:
    """One GPU's datasheet numbers (vendor units: TOPS = 10^12 op/s, GB/s, W, MHz)."""

    name: str
    title: str
    arch: str
    year: int
    process: str
    node_nm: float
    sms: int | None
    clock_mhz: float | None
    memory: str
    dram_energy: str
    memory_gb: float
    bandwidth_gbs: float
    tdp_w: float
    peak_tops: dict[str, float]
    sparse_tops: dict[str, float]
    citation: str | None
    note: str | None = None

    @property
    def bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_gbs * GIGA

    def peak(self, fmt: object, *, sparse: bool = False) -> float:
        """Peak op/s for `fmt` (a format or a table key such as 'fp16_simt')."""
        key = fmt if isinstance(fmt, str) and fmt in self.peak_tops else peak_key(fmt)
        table = self.sparse_tops if sparse else self.peak_tops
        if key not in table:
            kind = "2:4 sparse" if sparse else "dense"
            raise ConfigError(
                f"{self.name} has no {kind} peak for {key}; it lists {', '.join(table) or 'none'}"
            )
        return table[key] * TERA

    def has(self, key: str, *, sparse: bool = False) -> bool:
        return key in (self.sparse_tops if sparse else self.peak_tops)

    def best(self, *, sparse: bool = False) -> tuple[str, float]:
        """(format key, TOPS) of the fastest tabulated format, dense or sparse."""
        table = self.sparse_tops if sparse and self.sparse_tops else self.peak_tops
        keys = [k for k in table if not k.endswith("_simt")] or list(table)
        key = max(keys, key=table.__getitem__)
        return key, table[key]

    def tops_per_watt(self, key: str, *, sparse: bool = False) -> float:
        """Peak efficiency at TDP, TOPS/W (= ops per pJ)."""
        return self.peak(key, sparse=sparse) / TERA / self.tdp_w

    def ops_per_sm_per_clock(self, key: str, *, sparse: bool = False) -> float:
        if self.sms is None or self.clock_mhz is None:
            raise ConfigError(f"{self.name}: the datasheet gives no SM count or clock")
        return self.peak(key, sparse=sparse) / (self.sms * self.clock_mhz * MHZ)


def peak_key(fmt: object) -> str:
    """The GPU-table key of a format: fp32 tf32 bf16 fp16 e4m3 e5m2 e3m2 e2m3 e2m1 int8 int4.

    Scaled formats use their element format (MX/NVFP4 run on the FP8/FP6/FP4 tensor cores).
    """
    from picojoule.formats import FloatFormat, IntFormat, ScaledFormat, get

    f = get(fmt)  # type: ignore[arg-type]
    el = f.element if isinstance(f, ScaledFormat) else f
    if isinstance(el, IntFormat):
        return f"int{el.bits}"
    if isinstance(el, FloatFormat):
        wide = {(8, 23): "fp32", (8, 10): "tf32", (8, 7): "bf16", (5, 10): "fp16"}
        return wide.get((el.ebits, el.mbits), f"e{el.ebits}m{el.mbits}")
    raise ConfigError(f"{el.name}: GPUs have no native rate for this format")


def _spec(row: GpuRow) -> GpuSpec:
    """A GpuSpec from a validated row; `citation` None marks an uncited user row."""
    return GpuSpec(**row.model_dump())


@cache
def _builtin() -> tuple[GpuSpec, ...]:
    table = load_table("gpus")
    return tuple(_spec(r) for r in table.rows)  # type: ignore[arg-type]


def gpus(table: Table | None = None) -> tuple[GpuSpec, ...]:
    """Every GPU of the built-in table (or of a user table), oldest first."""
    specs = _builtin() if table is None else tuple(_spec(r) for r in table.rows)  # type: ignore[arg-type]
    return tuple(sorted(specs, key=lambda g: g.year))


def gpu(name: str, table: Table | None = None) -> GpuSpec:
    """The GPU called `name` (k20x p100 p40 v100 t4 a100 h100 h200 b200)."""
    specs = {g.name: g for g in gpus(table)}
    spec = specs.get(name.strip().lower())
    if spec is None:
        raise ConfigError(f"unknown GPU {name!r}{suggest(name.lower(), specs)}")
    return spec


@dataclass(frozen=True, kw_only=True)
class Factor:
    """One multiplicative factor of a speedup, with how it was computed."""

    name: str
    value: float
    detail: str


@dataclass(frozen=True, kw_only=True)
class Speedup:
    """target / base peak throughput and its two exact factorizations."""

    base: str
    target: str
    base_key: str
    target_key: str
    sparse: bool
    total: float
    hardware: tuple[Factor, ...]
    levers: tuple[Factor, ...]

    @staticmethod
    def product(factors: tuple[Factor, ...]) -> float:
        out = 1.0
        for f in factors:
            out *= f.value
        return out


def _hardware(b: GpuSpec, t: GpuSpec, bkey: str, tkey: str, sparse: bool) -> tuple[Factor, ...]:
    if None in (b.sms, b.clock_mhz, t.sms, t.clock_mhz):
        return ()
    b_ops, t_ops = b.ops_per_sm_per_clock(bkey), t.ops_per_sm_per_clock(tkey)
    out = [
        Factor(name="SM count", value=t.sms / b.sms, detail=f"{t.sms} / {b.sms}"),  # type: ignore[operator]
        Factor(
            name="clock",
            value=t.clock_mhz / b.clock_mhz,  # type: ignore[operator]
            detail=f"{t.clock_mhz:g} / {b.clock_mhz:g} MHz",
        ),
        Factor(
            name="ops per SM per clock",
            value=t_ops / b_ops,
            detail=f"{t_ops:.0f} {tkey} / {b_ops:.0f} {bkey}",
        ),
    ]
    if sparse:
        out.append(
            Factor(
                name="2:4 sparsity",
                value=t.peak(tkey, sparse=True) / t.peak(tkey),
                detail="sparse / dense",
            )
        )
    return tuple(out)


def _levers(b: GpuSpec, t: GpuSpec, bkey: str, tkey: str, sparse: bool) -> tuple[Factor, ...]:
    need = [k for k in ("fp32", "fp16_simt", "fp16") if not t.has(k)]
    if bkey != "fp32" or need or not b.has("fp32"):
        return ()
    fp32, simt16, tc16 = t.peak("fp32"), t.peak("fp16_simt"), t.peak("fp16")
    dense = t.peak(tkey)
    perf_w = (fp32 / t.tdp_w) / (b.peak("fp32") / b.tdp_w)
    out = [
        Factor(
            name="number representation",
            value=(simt16 / fp32) * (dense / tc16),
            detail=f"FP32->FP16 on SIMT {simt16 / fp32:g}x, FP16->{tkey} on tensor cores "
            f"{dense / tc16:g}x ({t.name} datasheet)",
        ),
        Factor(
            name="complex instructions",
            value=tc16 / simt16,
            detail=f"tensor-core FP16 / SIMT FP16 on {t.name}",
        ),
    ]
    if sparse:
        out.append(
            Factor(
                name="2:4 sparsity",
                value=t.peak(tkey, sparse=True) / dense,
                detail="sparse / dense",
            )
        )
    out += [
        Factor(
            name="power budget", value=t.tdp_w / b.tdp_w, detail=f"TDP {t.tdp_w:g} / {b.tdp_w:g} W"
        ),
        Factor(
            name="FP32 ops per joule",
            value=perf_w,
            detail=f"process and circuits: FP32 TFLOPS/W {t.name} / {b.name}",
        ),
    ]
    return tuple(out)


def speedup(
    base: str = "k20x",
    target: str = "a100",
    *,
    base_format: str = "fp32",
    target_format: str = "int8",
    sparse: bool = True,
    table: Table | None = None,
) -> Speedup:
    """Peak throughput of `target` in `target_format` (2:4 sparse if `sparse`) over `base`."""
    b, t = gpu(base, table), gpu(target, table)
    bkey, tkey = peak_key(base_format), peak_key(target_format)
    total = t.peak(tkey, sparse=sparse) / b.peak(bkey)
    return Speedup(
        base=b.name,
        target=t.name,
        base_key=bkey,
        target_key=tkey,
        sparse=sparse,
        total=total,
        hardware=_hardware(b, t, bkey, tkey, sparse),
        levers=_levers(b, t, bkey, tkey, sparse),
    )
