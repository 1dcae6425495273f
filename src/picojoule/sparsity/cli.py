"""`picojoule sparsity`: prune a model and show what it bought; layouts; costs; GPU.

    picojoule sparsity report [--model SPEC [--data L --metric S --eval L]] [--recipe 2:4]
                              [--dtype fp16] [--finetune-steps 100] [--permute] [--json FILE]
                              [--measured sparsity_gpu.json]
    picojoule sparsity layouts [--shape 4096x4096] [--density 0.5] [--dtype fp16]
    picojoule sparsity costs [--gemm 4096x4096x1] [--dtype fp16] [--density 0.3]
                             [--input-density 0.5]
    picojoule sparsity gpu [--sizes 4096 8192] [--dtypes fp16 bf16 int8]

`report --model` takes every model spec (`picojoule.models.spec`: digits, minilm, smollm2,
st:DIR, hf:DIR, pkg.mod:build); the default is the digits CNN. `report --measured` joins
measured 2:4 speedups (benchmarks/results/sparsity_gpu.json) to the layers that would run the
2:4 kernel.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from picojoule.errors import ConfigError
from picojoule.fsio import check_out_file, write_json
from picojoule.models.options import DataOption, EvalOption, MetricOption, ModelOption
from picojoule.options import check_options
from picojoule.sparsity.costs import (
    Gemm,
    breakeven_density,
    dense_cost,
    horowitz_45nm,
    scheme_cost,
)
from picojoule.sparsity.gpu_check import load_measurements, measure_2to4, render_gpu_table
from picojoule.sparsity.layouts import Storage, storage, value_bits
from picojoule.sparsity.masks import nm_mask, unstructured_mask
from picojoule.sparsity.permute_model import permute_channels_
from picojoule.sparsity.report import render_table, report, to_dict
from picojoule.sparsity.sparsify import sparsify_
from picojoule.sparsity.training import finetune

__all__ = ["app"]

app = typer.Typer(help="Sparsity: N:M pruning, layouts, sparse-layer costs, 2:4 on the GPU.")
console = Console()


def _dims(text: str, count: int, what: str) -> tuple[int, ...]:
    parts = text.lower().split("x")
    if len(parts) != count or not all(p.isdigit() and int(p) > 0 for p in parts):
        example = "x".join(["64"] * count)
        raise ConfigError(f"{what} {text!r} must be {count} positive sizes like {example}")
    dims = tuple(int(p) for p in parts)
    if max(dims) > _MAX_DIM:
        raise ConfigError(
            f"--{what} {text!r}: a side of {max(dims):,} is over {_MAX_DIM:,} (no layer is that "
            "large); give sizes like 4096"
        )
    return dims


# 2^20 per side: 16x the largest LLM hidden size; past it a size is a typo (an extra digit).
_MAX_DIM = 2**20
# Random test matrices are materialized: 2^28 fp32 elements = 1 GiB.
_MAX_ELEMENTS = 2**28


@app.command("report")
def report_cmd(
    recipe: Annotated[str, typer.Option(help="sparsity recipe, e.g. 2:4 or 2:4,fc*=1:4")] = "2:4",
    dtype: Annotated[str, typer.Option(help="deployment dtype for kernels and bytes")] = "fp16",
    finetune_steps: Annotated[int, typer.Option(help="masked fine-tune steps (0: none)")] = 100,
    lr: Annotated[float, typer.Option(help="fine-tune learning rate")] = 1e-3,
    permute: Annotated[bool, typer.Option(help="permute input channels first (N:M)")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="write rows as JSON")] = None,
    measured: Annotated[
        Path | None, typer.Option(help="sparsity_gpu.json from bench_sparsity_gpu.py")
    ] = None,
    model: ModelOption = "digits",
    data: DataOption = None,
    metric: MetricOption = None,
    eval_data: EvalOption = None,
) -> None:
    """Prune a model (default: the digits CNN), fine-tune, and print the per-layer table with
    its metric dense, one-shot and fine-tuned."""
    from picojoule.formats import get as get_format
    from picojoule.models.spec import resolve, sample_inputs
    from picojoule.quant import expose_layers_
    from picojoule.sparsity.recipe import parse_recipe

    check_options(finetune_steps=finetune_steps, lr=lr)
    get_format(dtype)  # an unknown name fails now, with suggestions, not after training
    parse_recipe(recipe)
    source = resolve(model, data, metric, eval_data=eval_data)
    if measured is not None and not measured.is_file():
        raise ConfigError(f"--measured {measured}: no such file; give sparsity_gpu.json")
    if json_out is not None:
        check_out_file(json_out, option="--json")  # before fine-tuning, not after it

    task, dense = source.load()
    expose_layers_(dense)  # attention and GPT-2's Conv1D as prunable layers; same numbers
    name, unit = task.primary_metric, getattr(task, "unit", "")
    example = sample_inputs(task, 256)
    if permute and not isinstance(example, torch.Tensor):
        raise ConfigError(
            f"--permute traces the model with torch.fx on one input tensor; {source.spec} "
            "takes several inputs: drop --permute"
        )
    scores = {"dense": task.evaluate(dense)[name]}
    sparse = copy.deepcopy(dense)
    if permute:
        for r in permute_channels_(sparse, example):
            note = r.reason or f"kept |w| {r.kept_before:.4f} -> {r.kept_after:.4f}"
            console.print(f"permute {r.consumer}: {note}")
    applied = sparsify_(sparse, recipe)
    scores["one_shot"] = scores["finetuned"] = task.evaluate(sparse)[name]
    if finetune_steps > 0:
        torch.manual_seed(0)
        batches = _train_batches(task)
        loss_fn = getattr(task, "loss_fn", None)  # tasks without one train on cross-entropy
        finetune(sparse, batches, finetune_steps, lr, **({"loss_fn": loss_fn} if loss_fn else {}))
        scores["finetuned"] = task.evaluate(sparse.eval())[name]
    timed = load_measurements(measured) if measured is not None else ()
    rows = report(sparse, applied, example_input=example, dtype=dtype, measured=timed)
    console.print(render_table(rows, title=f"{source.spec}, recipe {recipe}, deployed as {dtype}"))
    shown = [_score(scores[k], unit) for k in ("dense", "one_shot", "finetuned")]
    console.print(
        f"{name}: dense {shown[0]}  one-shot {shown[1]}  "
        f"after {finetune_steps} fine-tune steps {shown[2]}"
    )
    if json_out is not None:
        payload: dict[str, object] = {"recipe": recipe, "dtype": dtype, "model": source.spec}
        higher = getattr(task, "higher_is_better", True)
        payload.update({"metric": name, "unit": unit, "higher_is_better": higher})
        payload["scores"] = scores
        if unit == "%":  # a percentage (the digits CNN's accuracy): the key scripts read
            payload["accuracy_pct"] = scores
        write_json(json_out, {**payload, **to_dict(rows)}, indent=2)
        console.print(f"wrote {json_out}")


def _score(value: float, unit: str) -> str:
    return f"{value:.2f}%" if unit == "%" else f"{value:.4g}"


def _train_batches(task: object) -> object:
    """The task's fine-tuning batches; one line saying how to do without where it has none."""
    batches = getattr(task, "train_batches", lambda: None)()
    if batches is None:
        raise ConfigError(
            f"{getattr(task, 'name', 'the model')} has no training data to fine-tune on; "
            "give --finetune-steps 0"
        )
    return batches


@app.command()
def layouts(
    shape: Annotated[str, typer.Option(help="matrix rows x reduction")] = "4096x4096",
    density: Annotated[float, typer.Option(help="kept fraction for csr/bitmask/rle")] = 0.5,
    dtype: Annotated[str, typer.Option(help="value format, e.g. fp16, int8, nvfp4")] = "fp16",
    seed: int = 0,
) -> None:
    """Exact bytes of a random matrix in each compressed layout (N:M rows use their pattern)."""
    check_options(density=density, seed=seed)
    rows, cols = _dims(shape, 2, "shape")
    if rows * cols > _MAX_ELEMENTS:
        raise ConfigError(
            f"--shape {shape!r}: {rows * cols:,} elements is over {_MAX_ELEMENTS:,} (1 GiB of "
            "fp32, built in memory); give a smaller matrix"
        )
    value_bits(dtype)  # an unknown format fails before the matrix is built
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    table = Table(title=f"{rows}x{cols} in {dtype}: bytes per layout")
    for col in ("layout", "density", "values B", "metadata B", "total B", "of dense"):
        table.add_column(col, justify="right" if col != "layout" else "left")
    unstructured = w * unstructured_mask(w, density)
    cases = [("2:4", 2, 4), ("1:4", 1, 4), ("4:8", 4, 8)]
    for name, n, m in cases:
        s = storage(name, w * nm_mask(w, n, m), dtype)
        table.add_row(name, f"{n / m:.3f}", *_bytes(s))
    for name in ("csr", "bitmask", "rle"):
        table.add_row(name, f"{density:.3f}", *_bytes(storage(name, unstructured, dtype)))
    console.print(table)


def _bytes(s: Storage) -> tuple[str, str, str, str]:
    return (str(s.values_bytes), str(s.metadata_bytes), str(s.total_bytes), f"{s.ratio:.4f}")


@app.command()
def costs(
    gemm: Annotated[str, typer.Option(help="M x K x N of Y = W[M,K] @ X[K,N]")] = "4096x4096x1",
    dtype: Annotated[str, typer.Option(help="fp32, fp16 or int8 (Horowitz 45 nm)")] = "fp16",
    density: Annotated[float, typer.Option(help="weight density for csr/cartesian/gating")] = 0.3,
    input_density: Annotated[float, typer.Option(help="activation density")] = 0.5,
) -> None:
    """Multiplies, fetches, metadata and energy per scheme, with break-even densities."""
    check_options(density=density, input_density=input_density)
    m, k, n = _dims(gemm, 3, "gemm")
    g, e = Gemm(m=m, k=k, n=n), horowitz_45nm(dtype)
    dense = dense_cost(g, e)
    table = Table(title=f"GEMM {m}x{k}x{n}, {e.name}, weight density {density}")
    cols = ("scheme", "multiplies", "operand bits", "metadata bits", "energy uJ", "vs dense")
    for col in (*cols, "speedup", "break-even density"):
        table.add_column(col, justify="left" if col == "scheme" else "right")
    for scheme in ("dense", "2:4", "csr", "cartesian", "zero_gating"):
        c = scheme_cost(scheme, g, e, weight_density=density, input_density=input_density)
        even = "-"
        if scheme in ("csr", "cartesian", "zero_gating"):
            even = f"{breakeven_density(scheme, g, e, input_density=input_density):.3f}"
        table.add_row(
            scheme,
            f"{c.multiplies:.4g}",
            f"{c.operand_bits:.4g}",
            f"{c.metadata_bits:.4g}",
            f"{c.energy_pj * 1e-6:.4g}",
            f"{c.energy_ratio_to(dense):.3f}",
            f"{c.speedup_over(dense):.2f}x",
            even,
        )
    table.caption = (
        "scalar PE, operands from an 8 KB SRAM (10 pJ / 64 b), Horowitz ISSCC 2014; "
        f"cartesian/gating at input density {input_density}"
    )
    console.print(table)


@app.command()
def gpu(
    sizes: Annotated[list[int], typer.Option(help="square GEMM sizes")] = [4096, 8192],  # noqa: B006
    dtypes: Annotated[list[str], typer.Option(help="fp16, bf16, int8")] = ["fp16", "bf16", "int8"],  # noqa: B006
) -> None:
    """Time torch 2:4 semi-structured vs dense on this machine's GPU (skips without CUDA)."""
    rows = measure_2to4([(s, s, s) for s in sizes], dtypes)
    console.print(render_gpu_table(rows))
