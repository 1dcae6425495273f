"""WinogradConv2d vs torch conv2d on the digits CNN's layers, and Cook–Toom derivation time.

Writes benchmarks/results/winograd.json and prints rich tables. For every eligible 3x3 conv of
the default model (batch --batch) and one ResNet-18 conv2_x layer (64 -> 64 channels, 56 x 56,
He et al., CVPR 2016, Table 1) it times nn.Conv2d and WinogradConv2d with the same weights in
the same run and reports winograd ms / conv2d ms next to the layer's multiply reduction. It also
times the exact derivation of F(8, 3) (and F(8, 5)) with the cache cleared.

    python benchmarks/bench_winograd.py                      # CPU, tiles 2 4 6
    python benchmarks/bench_winograd.py --device cuda --batch 1024
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from rich.console import Console
from rich.table import Table
from torch.utils.benchmark import Timer

from picojoule.winograd import WinogradConv2d, cook_toom, layer_ops
from picojoule.winograd.transforms import clear_cache

RESULTS = Path(__file__).parent / "results" / "winograd.json"


@dataclass(frozen=True, kw_only=True)
class LayerTiming:
    layer: str
    shape: str
    tile: int
    conv2d_ms: float
    winograd_ms: float
    multiply_reduction: float

    @property
    def time_ratio(self) -> float:
        """Winograd time / conv2d time (above 1: Winograd is slower)."""
        return self.winograd_ms / self.conv2d_ms


def _digits_layers(batch: int) -> list[tuple[str, nn.Conv2d, torch.Size]]:
    from picojoule.models import digits

    model = digits.build().eval()
    shapes: dict[str, torch.Size] = {}
    handles = [
        mod.register_forward_pre_hook(lambda m, a, name=name: shapes.__setitem__(name, a[0].shape))
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Conv2d) and mod.stride == (1, 1) and mod.kernel_size == (3, 3)
    ]
    with torch.no_grad():
        model(torch.zeros(batch, 1, 8, 8))
    for h in handles:
        h.remove()
    modules = dict(model.named_modules())
    return [(f"digits {name}", modules[name], shape) for name, shape in shapes.items()]  # type: ignore[misc]


def _ms(fn, x: torch.Tensor, device: str) -> float:
    timer = Timer(stmt="fn(x)", globals={"fn": fn, "x": x})
    if device == "cuda":
        torch.cuda.synchronize()
    return timer.blocked_autorange(min_run_time=0.3).median * 1e3


def time_layers(batch: int, tiles: list[int], device: str) -> list[LayerTiming]:
    layers = _digits_layers(batch)
    resnet = nn.Conv2d(64, 64, 3, padding=1)
    layers.append(("resnet18 conv2_x", resnet, torch.Size([1, 64, 56, 56])))
    rows = []
    for label, conv, shape in layers:
        conv = conv.to(device)
        x = torch.randn(shape, device=device)
        p, q = shape[2] + 2 * conv.padding[0] - 2, shape[3] + 2 * conv.padding[1] - 2
        with torch.no_grad():
            base = _ms(conv, x, device)
            for m in tiles:
                wino = WinogradConv2d(
                    conv.in_channels, conv.out_channels, 3, padding=conv.padding, tile=m
                ).to(device)
                wino.load_state_dict(conv.state_dict())
                ops = layer_ops(
                    batch=shape[0],
                    in_channels=conv.in_channels,
                    out_channels=conv.out_channels,
                    out_hw=(p, q),
                    kernel_hw=(3, 3),
                    tile=(m, m),
                )
                rows.append(
                    LayerTiming(
                        layer=label,
                        shape=f"{list(shape)} -> {conv.out_channels}",
                        tile=m,
                        conv2d_ms=base,
                        winograd_ms=_ms(wino, x, device),
                        multiply_reduction=ops.multiply_reduction,
                    )
                )
    return rows


def time_derivation(m: int, r: int, repeats: int = 50) -> float:
    """Median ms of one exact derivation of F(m, r), cache cleared before each run."""
    times = []
    for _ in range(repeats):
        clear_cache()
        start = time.perf_counter()
        cook_toom(m, r)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--tiles", type=int, nargs="+", default=[2, 4, 6])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    rows = time_layers(args.batch, args.tiles, args.device)
    table = Table(title=f"WinogradConv2d vs conv2d ({args.device}, fp32, same weights)")
    for col in ("layer", "input -> K", "tile"):
        table.add_column(col)
    for col in ("conv2d ms", "winograd ms", "time ratio", "mult. red."):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row.layer,
            row.shape,
            f"F({row.tile}x{row.tile},3x3)",
            f"{row.conv2d_ms:.3f}",
            f"{row.winograd_ms:.3f}",
            f"{row.time_ratio:.2f}x",
            f"{row.multiply_reduction:.2f}x",
        )
    console.print(table)
    derivation = {f"F({m},{r})": time_derivation(m, r) for m, r in ((8, 3), (8, 5), (4, 3))}
    for name, ms in derivation.items():
        console.print(f"exact derivation of {name}: {ms:.3f} ms (median, cold cache)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "device": args.device
                    if args.device == "cpu"
                    else torch.cuda.get_device_name(0),
                },
                "command": f"python benchmarks/bench_winograd.py --batch {args.batch} --tiles "
                + " ".join(map(str, args.tiles))
                + f" --device {args.device} --threads {args.threads}",
                "layers": [asdict(r) | {"time_ratio": r.time_ratio} for r in rows],
                "derivation_ms": derivation,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
