"""picojoule.hw against nn_dataflow 2.1 (Gao et al., Stanford): row stationary on the same
Eyeriss-style chip, AlexNet CONV1-5, measured side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/vs_nn_dataflow.py [--venv DIR] [--reuse]

1. Installs `nn_dataflow==2.1` with `sympy<1.6` and `numpy<2` (its pins for Python 3.11)
   into a scratch virtualenv (pip, PyPI) and runs its own search tool, `nn_dataflow_search`,
   on its own AlexNet with the configuration of its ISCA'16 verification test
   (`tests/dataflow_test/test_nn_dataflow.py::test_eyeriss_isca16`): batch 16, 16-bit words,
   one node, a 16 x 16 PE array, 512 B register file per PE, 128 kB global buffer, energies
   per word access MAC 1, DRAM 200, buffer 6, array 2, RF 1 (Chen et al., ISCA 2016), no NoC
   hop or static cost, energy objective. Twice: with its default global-buffer bypass
   (each of ifmaps, ofmaps, filters may skip the buffer, chosen per layer) and with
   `--disable-bypass i o f`.
2. Builds the same chip in picojoule (`twin`): the same array, RF and buffer sizes (shared,
   not partitioned, as nn_dataflow sizes them), the same per-word energies as pJ/bit at 16
   bits, row-stationary unrolling (filter rows R and channels C, K down the 16 rows, output
   rows P and filters K across the 16 columns). Maps nn_dataflow's own layer halves (its
   AlexNet splits every CONV layer in two, `_a`/`_b`, so `repeat=2`) with picojoule's mapper,
   energy objective, with the buffer's operands `bypassable` (the mapper picks per layer) and
   without, and tabulates energy per MAC by category (MAC, DRAM, buffer, array, RF) and the
   ratios picojoule / nn_dataflow. The default search and a 5x longer one (2000 samples, 16
   starts) are both reported: the search is a heuristic and the margin is a few percent.
3. A diagnostic: the same comparison with the twin's RF four times larger (see
   `DIAGNOSTIC`); nn_dataflow sizes a PE's RF for one sliding window per row (S inputs, one
   psum), so its RF keeps more than a 512 B RF holds as whole tiles.

Writes benchmarks/results/vs_nn_dataflow.json. Run time: about 3 minutes for the two
nn_dataflow searches (2 processes each), a few seconds for picojoule; `--reuse` reuses the
nn_dataflow results kept in the venv directory from an earlier run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from picojoule.arch import Arch, Fanout, MacUnit, MemoryLevel
from picojoule.fsio import write_json
from picojoule.mapping import map_workload
from picojoule.workload import Workload
from picojoule.workload.layer import OPERANDS, Layer

RESULTS = Path(__file__).parent / "results"
NN_DATAFLOW = "nn_dataflow==2.1"
PINS = ("sympy<1.6", "numpy<2")  # nn_dataflow 2.1 needs sympy's pre-1.6 API and numpy 1.x
BATCH = 16
WORD = 16  # bits
ARRAY = (16, 16)  # rows x columns
REGF_BYTES = 512
GBUF_BYTES = 128 * 1024
COSTS = {"mac": 1.0, "dram": 200.0, "gbuf": 6.0, "array": 2.0, "rf": 1.0}  # per 16-bit word
NND_ARGS = [
    "alex_net",
    "--batch",
    str(BATCH),
    "--word",
    str(WORD),
    "--nodes",
    "1",
    "1",
    "--array",
    *map(str, ARRAY),
    "--regf",
    str(REGF_BYTES),
    "--gbuf",
    str(GBUF_BYTES),
    "--op-cost",
    str(COSTS["mac"]),
    "--hier-cost",
    *(str(COSTS[k]) for k in ("dram", "gbuf", "array", "rf")),
    "--hop-cost",
    "0",
    "--unit-idle-cost",
    "0",
    "--goal",
    "e",
]
CATEGORIES = ("mac", "dram", "gbuf", "array", "rf")
CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
DEFAULT = {"samples": 400, "starts": 6}
LONGER = {"samples": 2000, "starts": 16}
DIAGNOSTIC = 4  # RF size multiplier of the diagnostic twin
TARGET = 0.10
_DE = ("weights", "inputs", "outputs")  # nn_dataflow's data categories FIL, IFM, OFM


def run_nn_dataflow(venv: Path, bypass: bool, processes: int, reuse: bool) -> dict:
    """nn_dataflow_search's JSON result (kept as `<venv>/runs/<bypass|nobypass>.json`)."""
    out = venv / "runs" / ("bypass.json" if bypass else "nobypass.json")
    if reuse and out.exists():
        return json.loads(out.read_text())
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", NN_DATAFLOW, *PINS],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    args = [*NND_ARGS, "--processes", str(processes)]
    if not bypass:
        args += ["--disable-bypass", "i", "o", "f"]
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run(
        [str(venv / "bin" / "nn_dataflow_search"), *args],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(done.stdout)
    return json.loads(done.stdout)


def nnd_layers(res: dict) -> dict[str, dict]:
    """Per CONV layer (both halves): MACs, energy by category, accesses [level][category],
    and the categories that skipped the buffer (DRAM traffic but no buffer access)."""
    cost = res["cost"]
    out = {}
    for name in CONVS:
        acc = [[0.0] * 3 for _ in range(4)]  # DRAM, GBUF, ITCN, REGF x FIL, IFM, OFM
        macs = 0.0
        bypassed: set[str] = set()
        for part, sched in res["schedules"].items():
            if not part.startswith(name + "_"):
                continue
            sr = sched[0]
            macs += sr["ops"]
            for m in range(4):
                for c in range(3):
                    acc[m][c] += sr["access"][m][c]
            bypassed |= {
                _DE[c] for c in range(3) if sr["access"][0][c] > 0 and sr["access"][1][c] == 0
            }
        energy = {"mac": macs * cost["mac_op"]}
        for m, key in enumerate(("dram", "gbuf", "array", "rf")):
            energy[key] = sum(acc[m]) * cost["mem_hier"][m]
        out[name] = {
            "macs": macs,
            "energy": energy,
            "accesses": dict(zip(("dram", "gbuf", "array", "rf"), acc, strict=True)),
            "bypassed": sorted(bypassed, key=_DE.index),
        }
    return out


def workload() -> Workload:
    """nn_dataflow's AlexNet CONV layers (`nns/alex_net.py`): each of its `_a`/`_b` halves is
    one layer here with `repeat=2`; inputs are the padded maps it reads ((P-1)*stride + R,
    so no zero halo is generated)."""
    f = {"weight_format": "int16", "input_format": "int16", "output_format": "int16"}
    shapes = {  # C, K, P, R, stride (per half)
        "conv1": (3, 48, 55, 11, 4),
        "conv2": (48, 128, 27, 5, 1),
        "conv3": (256, 192, 13, 3, 1),
        "conv4": (192, 192, 13, 3, 1),
        "conv5": (192, 128, 13, 3, 1),
    }
    layers = tuple(
        Layer(
            name=name,
            N=BATCH,
            K=k,
            C=c,
            P=p,
            Q=p,
            R=r,
            S=r,
            stride_h=s,
            stride_w=s,
            repeat=2,
            **f,
        )
        for name, (c, k, p, r, s) in shapes.items()
    )
    return Workload(name="alexnet-nn_dataflow", layers=layers)


def twin(bypass: bool, rf_scale: int = 1) -> Arch:
    """nn_dataflow's chip in picojoule: per-word costs / 16 as pJ/bit (MAC = 1), a shared
    128 kB buffer whose three operands may each be bypassed (`bypass`), a 16 x 16 array
    unrolled row stationary, a shared 512 B RF per PE."""
    per_bit = {k: v / WORD for k, v in COSTS.items()}
    return Arch(
        name="nn_dataflow-eyeriss" + ("-bypass" if bypass else ""),
        levels=(
            MemoryLevel(
                name="DRAM",
                holds=OPERANDS,
                memory="dram",
                read_pj_per_bit=per_bit["dram"],
                write_pj_per_bit=per_bit["dram"],
            ),
            MemoryLevel(
                name="GBUF",
                holds=OPERANDS,
                bypassable=OPERANDS if bypass else (),
                capacity_bits=GBUF_BYTES * 8,
                read_pj_per_bit=per_bit["gbuf"],
                write_pj_per_bit=per_bit["gbuf"],
                fanout=Fanout(
                    mesh_x=ARRAY[1],
                    mesh_y=ARRAY[0],
                    x_dims=("P", "K"),
                    y_dims=("R", "C", "K"),
                    network_pj_per_bit=per_bit["array"],
                ),
            ),
            MemoryLevel(
                name="RF",
                holds=OPERANDS,
                capacity_bits=REGF_BYTES * 8 * rf_scale,
                read_pj_per_bit=per_bit["rf"],
                write_pj_per_bit=per_bit["rf"],
                temporal_dims=("N", "K", "C", "P", "Q", "S"),
            ),
        ),
        mac=MacUnit(format="int16", accumulator_bits=WORD, energy_pj=COSTS["mac"]),
    )


def ours(arch: Arch, search: dict) -> tuple[dict[str, dict], float]:
    """Per layer (both halves): MACs, energy by category, reads/writes, the bypass chosen."""
    cpu = time.process_time()
    res = map_workload(workload(), arch, cache=False, **search)
    cpu = time.process_time() - cpu
    out = {}
    for r in res.layers:
        c, n = r.result.cost, r.layer.repeat
        lv = c.energy_by_level_pj
        out[r.layer.name] = {
            "macs": c.macs * n,
            "energy": {
                "mac": c.mac_energy_pj * n,
                "dram": sum(lv["DRAM"].values()) * n,
                "gbuf": sum(lv["GBUF"].values()) * n,
                "array": sum(c.network_energy_pj.values()) * n,
                "rf": sum(lv["RF"].values()) * n,
            },
            "reads": {k: {o: v * n for o, v in d.items()} for k, d in c.reads.items()},
            "writes": {k: {o: v * n for o, v in d.items()} for k, d in c.writes.items()},
            "bypassed": list(r.result.mapping.bypass[1]) if r.result.mapping.bypass else [],
            "mapping": r.result.mapping.to_dict(),
        }
    return out, cpu


def per_mac(rows: dict[str, dict], names: tuple[str, ...] = CONVS) -> dict[str, float]:
    """Energy per MAC by category (and "total") over `names`."""
    macs = sum(rows[n]["macs"] for n in names)
    out = {k: sum(rows[n]["energy"][k] for n in names) / macs for k in CATEGORIES}
    out["total"] = sum(out.values())
    return out


def _short(ops: list[str]) -> str:
    return "+".join(op[0].upper() for op in ops) or "-"


def layer_table(console: Console, title: str, theirs: dict, runs: dict[str, dict]) -> dict:
    """Energy per MAC per layer: nn_dataflow, then each picojoule run as "value (ratio)" and
    the operands each bypassed (W weights, I inputs, O outputs)."""
    table = Table(title=title)
    table.add_column("layer")
    table.add_column("nn_dataflow", justify="right")
    for label in runs:
        table.add_column(f"picojoule, {label}", justify="right")
    ratios: dict[str, dict[str, float]] = {label: {} for label in runs}
    for name in (*CONVS, "total"):
        names = CONVS if name == "total" else (name,)
        t = per_mac(theirs, names)["total"]
        byp = "" if name == "total" else f" [{_short(theirs[name]['bypassed'])}]"
        cells = [name, f"{t:.3f}{byp}"]
        for label, rows in runs.items():
            o = per_mac(rows, names)["total"]
            ratios[label][name] = o / t
            byp = "" if name == "total" else f" [{_short(rows[name]['bypassed'])}]"
            cells.append(f"{o:.3f} ({o / t:.3f}){byp}")
        table.add_row(*cells)
    console.print(table)
    return ratios


def category_table(console: Console, title: str, theirs: dict, runs: dict[str, dict]) -> dict:
    """Energy per MAC by category over CONV1-5: nn_dataflow, each run, ratios."""
    table = Table(title=title)
    table.add_column("category")
    table.add_column("nn_dataflow", justify="right")
    for label in runs:
        table.add_column(label, justify="right")
        table.add_column("ratio", justify="right")
    t = per_mac(theirs)
    out = {"nn_dataflow": t}
    mine = {label: per_mac(rows) for label, rows in runs.items()}
    out |= mine
    for k in (*CATEGORIES, "total"):
        cells = [k, f"{t[k]:.3f}"]
        for label in runs:
            o = mine[label][k]
            cells += [f"{o:.3f}", f"{o / t[k]:.2f}" if t[k] > 0.01 else "-"]
        table.add_row(*cells)
    console.print(table)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path(tempfile.gettempdir()) / "pj-nn-dataflow")
    parser.add_argument("--processes", type=int, default=2, help="nn_dataflow search processes")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse nn_dataflow results from an earlier run"
    )
    args = parser.parse_args()
    console = Console(width=max(Console().width, 130))
    theirs_raw = {}
    for bypass in (True, False):
        wall = time.perf_counter()
        console.print(
            f"nn_dataflow_search alex_net ({'bypass allowed' if bypass else '--disable-bypass'})"
            f" in {args.venv} (about 90 s)"
        )
        theirs_raw[bypass] = run_nn_dataflow(args.venv, bypass, args.processes, args.reuse)
        theirs_raw[bypass]["_wall_s"] = time.perf_counter() - wall
    theirs = {b: nnd_layers(r) for b, r in theirs_raw.items()}

    runs: dict[str, dict] = {}
    times: dict[str, float] = {}
    for label, bypass, search in (
        ("no bypass", False, DEFAULT),
        ("bypass", True, DEFAULT),
        ("no bypass, 5x search", False, LONGER),
        ("bypass, 5x search", True, LONGER),
    ):
        runs[label], times[label] = ours(twin(bypass), search)
    diag, times["diagnostic"] = ours(twin(True, rf_scale=DIAGNOSTIC), DEFAULT)

    out: dict = {
        "command": "PYTHONPATH=src .venv/bin/python benchmarks/vs_nn_dataflow.py",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_1min": os.getloadavg()[0],
        "nn_dataflow": f"{NN_DATAFLOW} with {' '.join(PINS)} (PyPI), Python "
        + ".".join(map(str, sys.version_info[:3])),
        "nn_dataflow_args": NND_ARGS,
        "configuration": {
            "batch": BATCH,
            "word_bits": WORD,
            "array_rows_cols": ARRAY,
            "regf_bytes_per_pe": REGF_BYTES,
            "gbuf_bytes": GBUF_BYTES,
            "energy_per_word": COSTS,
        },
        "nn_dataflow_search_s": {
            ("bypass" if b else "no bypass"): {
                "elapsed_s": r["elapsed"],
                "wall_s": r["_wall_s"],
            }
            for b, r in theirs_raw.items()
        },
        "picojoule_cpu_s": times,
    }
    console.print(
        "energy per MAC (MAC = 1), AlexNet CONV1-5, batch 16; bypassed = operands that skip "
        "the global buffer (W weights, I inputs, O outputs)"
    )
    out["per_layer_ratios"] = {
        "vs nn_dataflow with bypass (its default)": layer_table(
            console, "vs nn_dataflow with bypass (its default)", theirs[True], runs
        ),
        "vs nn_dataflow --disable-bypass i o f": layer_table(
            console,
            "vs nn_dataflow --disable-bypass i o f",
            theirs[False],
            {k: v for k, v in runs.items() if k.startswith("no bypass")},
        ),
    }
    out["per_mac_by_category"] = {
        "vs nn_dataflow with bypass": category_table(
            console,
            "by category, CONV1-5 (vs nn_dataflow with bypass)",
            theirs[True],
            {k: runs[k] for k in ("no bypass", "bypass", "bypass, 5x search")},
        ),
        "vs nn_dataflow --disable-bypass": category_table(
            console,
            "by category, CONV1-5 (vs nn_dataflow --disable-bypass)",
            theirs[False],
            {k: runs[k] for k in ("no bypass", "no bypass, 5x search")},
        ),
    }
    d = per_mac(diag)["total"] / per_mac(theirs[True])["total"]
    console.print(
        f"diagnostic: with an RF {DIAGNOSTIC}x larger ({REGF_BYTES * DIAGNOSTIC} B/PE) and "
        f"bypass, picojoule / nn_dataflow = {d:.3f} (nn_dataflow sizes a PE's RF for one "
        "sliding window per row: S inputs and 1 psum per row, not the row's tiles)"
    )
    out["diagnostic_rf_x4"] = {
        "ratio_total": d,
        "per_mac_by_category": per_mac(diag),
    }
    headline = per_mac(runs["bypass"])["total"] / per_mac(theirs[True])["total"]
    before = per_mac(runs["no bypass"])["total"] / per_mac(theirs[True])["total"]
    console.print(
        f"total energy per MAC, picojoule / nn_dataflow: {before:.3f} without bypass, "
        f"{headline:.3f} with it (target within {TARGET:.0%})"
    )
    out["ratio_total"] = {"before_bypass": before, "with_bypass": headline}
    out["nn_dataflow_layers"] = {"bypass": theirs[True], "no bypass": theirs[False]}
    out["picojoule_layers"] = runs
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "vs_nn_dataflow.json", out, indent=1)
    console.print(f"wrote {RESULTS / 'vs_nn_dataflow.json'}")


if __name__ == "__main__":
    main()
