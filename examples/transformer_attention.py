"""A torch-native transformer: unfuse its attention, quantize it (attention's products too),
and see what each piece costs on an accelerator and on a GPU (CI runs this file).

python examples/transformer_attention.py
"""

import copy

import torch
import torch.nn as nn

from picojoule.quant import quantize_, unfuse_attention_
from picojoule.study.cost import recipe_cost

torch.manual_seed(0)
model = nn.TransformerEncoder(
    nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, batch_first=True),
    num_layers=2,
    enable_nested_tensor=False,
).eval()
x = torch.randn(1, 32, 64)  # one sequence of 32 tokens
reference = model(x)

unfuse_attention_(model)  # nn.MultiheadAttention -> q/k/v/out Linear + SDPA, same numbers
print(f"unfused, max output change: {(model(x) - reference).abs().max():.2e}")
fp32 = copy.deepcopy(model)
records = quantize_(model, "w:vsq4_v16_s4,a:vsq4_v16_s4,attn:e4m3")
print(f"quantized {sum(not r.skipped for r in records)} pieces, e.g. {records[0].name}")

for target in ("eyeriss", "h100"):
    for name, m in (("fp32", fp32), ("vsq4 + attn:e4m3", model)):
        cost = recipe_cost(m, x, target)
        attn = sum(r["energy_pj"] for r in cost["layers_energy"] if ".sdpa." in r["name"])
        print(
            f"{target:>8} {name:<17} {cost['energy_pj'] / 1e6:8.3f} uJ/inference, "
            f"attention products {100 * attn / cost['energy_pj']:4.1f} %"
        )
err = (model(x) - reference).norm() / reference.norm()
print(f"relative output error: {err:.4f}")
