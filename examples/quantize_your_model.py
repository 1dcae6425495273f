"""Quantize your own model, calibrate, and read the per-layer report (CI runs this file).

python examples/quantize_your_model.py
"""

import torch
import torch.nn as nn

from picojoule.quant import calibrate, quantize_, report

torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
)  # fmt: skip
batches = [torch.randn(16, 3, 16, 16) for _ in range(4)]
reference = model(batches[0])

records = quantize_(
    model,
    "w:vsq4_v16_s4,a:int8,cal:percentile99.9",
    overrides={"6": "w:int8"},  # keep the classifier at 8 bits
)
calibrate(model, batches)
for r in records:
    print(f"{r.name:>3} {r.kind:<7} {r.action or 'skipped: ' + r.reason}")
for row in report(model):
    print(
        f"{row.name:>3} {row.weight_format:<14} {row.bits_per_weight:5.2f} bits/weight  "
        f"rel. RMS weight error {row.weight_rel_rmse:.3f}"
    )
err = (model(batches[0]) - reference).norm() / reference.norm()
print(f"relative output error: {err:.4f}")
