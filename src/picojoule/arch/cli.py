"""`picojoule arch`: the accelerator presets, one of them in detail, or as YAML to edit.

Public: `app` (a Typer app mounted by the main CLI as `arch`), `yaml_text`.

`picojoule arch show eyeriss --yaml > my_accel.yaml` writes a spec `load_arch` reads back to
the same `Arch`; edit it and pass it as `picojoule study --target my_accel.yaml` (or
`picojoule map --arch my_accel.yaml`). docs/accelerator.md describes every field.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from picojoule.arch.io import ArchError, arch_to_yaml, load_arch
from picojoule.arch.presets import PRESETS, preset
from picojoule.arch.spec import Arch, MemoryLevel
from picojoule.errors import did_you_mean
from picojoule.workload.layer import DIMS

__all__ = ["app", "yaml_text"]

app = typer.Typer(
    help="Accelerator presets: list them, show one, export it as YAML to edit.",
    no_args_is_help=True,
)


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 130, highlight=False)


def _gpus() -> list[str]:
    from picojoule.study.targets import gpu_names

    return gpu_names()


def _load(name: str) -> Arch:
    """A preset by name, or an accelerator YAML file; one line naming the fix otherwise."""
    if not name.strip():
        raise ArchError(f"arch name is empty; give a preset ({', '.join(PRESETS)}) or a YAML file")
    if name not in PRESETS and name in _gpus():
        raise ArchError(
            f"{name!r} is a GPU: picojoule costs it by its roofline (picojoule study --target "
            f"{name}), it has no accelerator spec to show; accelerator presets: "
            f"{', '.join(PRESETS)}"
        )
    if name in PRESETS:
        return load_arch(name)
    if not name.endswith((".yaml", ".yml")) and "/" not in name:
        raise ArchError(
            f"unknown accelerator preset {name!r}{did_you_mean(name, PRESETS)}; "
            "`picojoule arch list` lists them, or give an accelerator YAML file"
        )
    if not Path(name).expanduser().exists():
        raise ArchError(
            f"{name}: no such file; give the path of an accelerator YAML file, or a preset "
            f"({', '.join(PRESETS)})"
        )
    return load_arch(Path(name).expanduser())


def _bytes(bits: int | None) -> str:
    if bits is None:
        return "unbounded"
    if bits < 8 * 1024:
        return f"{bits / 8:g} B"
    return f"{bits / 8 / 1024:,.4g} KiB"


def _capacity(level: MemoryLevel) -> str:
    if level.partition_bits is not None:
        return ", ".join(f"{op[0].upper()} {_bytes(b)}" for op, b in level.partition_bits.items())
    return _bytes(level.capacity_bits)


def _energy(value: float | dict | None) -> str:
    if value is None:
        return "table"  # filled from picojoule.energy when costed
    if isinstance(value, dict):
        return ", ".join(f"{op[0].upper()} {v:g}" for op, v in value.items())
    return f"{value:g}"


def _dims(dims: tuple[str, ...]) -> str:
    return "any" if len(set(dims)) == len(DIMS) else ",".join(dims)


def _mac(arch: Arch) -> str:
    fmt = arch.mac.format or "the layer's formats"
    energy = f", {arch.mac.energy_pj:g} pJ" if arch.mac.energy_pj is not None else ""
    return f"{fmt}, {arch.mac.accumulator_bits}-bit accumulators{energy}"


def _sparse(arch: Arch) -> str:
    s = arch.sparse
    parts = [
        *(["zero MACs gated"] if s.gate_zero_macs else []),
        *(["zero inputs gated"] if s.gate_zero_inputs else []),
        *([f"compressed ({s.metadata_bits_per_element:g} metadata bits/element)"]
          if s.compressed else []),
        *([f"{s.structured} sparse tensor core"] if s.structured else []),
    ]  # fmt: skip
    return ", ".join(parts) or "none (zeros are multiplied like any value)"


@app.command("list")
def list_presets() -> None:
    """Every accelerator preset: MAC lanes, memory levels, MAC format, node, clock."""
    t = Table(title="picojoule accelerator presets", title_justify="left")
    for col, just in (("name", "left"), ("MAC lanes", "right"), ("levels (outermost first)",
                      "left"), ("MAC", "left"), ("node", "right"), ("clock", "right"),
                      ("description", "left")):  # fmt: skip
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for name in PRESETS:
        a = preset(name)
        t.add_row(name, f"{a.lanes:,}", " > ".join(lv.name for lv in a.levels),
                  a.mac.format or "layer's", f"{a.node_nm:g} nm", f"{a.clock_ghz:g} GHz",
                  escape(a.description))  # fmt: skip
    t.caption = (
        f"GPU targets (costed by roofline, no spec): {', '.join(_gpus())}. "
        "`picojoule arch show NAME` for one preset; `--yaml` prints a spec to save and edit"
    )
    _console().print(t)


def yaml_text(arch: Arch, source: str) -> str:
    """`arch_to_yaml(arch)` under a comment saying where it came from and how to use it."""
    head = (
        f"# picojoule accelerator spec, from {source} (picojoule arch show {source} --yaml).\n"
        "# Edit it, then: picojoule study --target THIS.yaml (or picojoule map --arch THIS.yaml).\n"
        "# Fields left out take their defaults; per-bit energies left out come from\n"
        "# picojoule.energy at node_nm (docs/accelerator.md lists every field).\n"
    )
    return head + arch_to_yaml(arch)


@app.command()
def show(
    name: Annotated[
        str, typer.Argument(help="a preset (picojoule arch list) or an accelerator YAML file")
    ],
    yaml: Annotated[
        bool,
        typer.Option("--yaml", help="print the spec as YAML to save and edit (a starting point)"),
    ] = False,
) -> None:
    """One accelerator: its memory levels, arrays, MAC unit and sparsity support."""
    arch = _load(name)
    if yaml:
        sys.stdout.write(yaml_text(arch, name))  # plain text: no markup, no wrapping
        return
    con = _console()
    con.print(f"[bold]{escape(arch.name)}[/]: {escape(arch.description or '(no description)')}")
    con.print(
        f"{arch.lanes:,} MAC lanes at {arch.clock_ghz:g} GHz, {arch.node_nm:g} nm; MAC: "
        f"{escape(_mac(arch))}; sparsity: {escape(_sparse(arch))}"
    )
    t = Table(title_justify="left")
    for col in ("level", "holds", "capacity", "width", "bandwidth", "pJ/bit read / write",
                "array below", "dataflow"):  # fmt: skip
        t.add_column(col)
    for lv in arch.levels:
        f = lv.fanout
        array = (f"{f.mesh_x}x{f.mesh_y} ({_dims(f.x_dims)} | {_dims(f.y_dims)})"
                 if f is not None else "")  # fmt: skip
        restricted = len(set(lv.temporal_dims)) < len(DIMS)
        flow = ", ".join(
            [*([f"{lv.stationary} stationary"] if lv.stationary else []),
             *([f"loops {','.join(lv.temporal_dims)}"] if restricted else [])]
        )  # fmt: skip
        t.add_row(
            lv.name + (f" ({lv.dram_kind})" if lv.memory == "dram" else ""),
            " ".join(op[0].upper() for op in lv.holds),
            _capacity(lv),
            f"{lv.width_bits} b",
            f"{lv.bandwidth_bits_per_cycle:.4g} b/cycle" if lv.bandwidth_bits_per_cycle else "-",
            f"{_energy(lv.read_pj_per_bit)} / {_energy(lv.write_pj_per_bit)}",
            array,
            flow,
        )
    t.caption = (
        "outermost first; W I O = weights, inputs, outputs; array below = mesh_x x mesh_y "
        "copies of the levels under it (loops it may unroll along x | y); 'table' energies come "
        "from picojoule.energy at the node. "
        f"`picojoule arch show {name} --yaml` prints it to save and edit"
    )
    con.print(t)
