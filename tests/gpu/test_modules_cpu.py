"""PackedLinear / to_packed_ / quantize_(backend="triton") without a GPU (reference path)."""

from __future__ import annotations

import pytest
import torch

from picojoule.errors import FormatError
from picojoule.formats import get
from picojoule.gpu.modules import PackedLinear, to_packed_


@pytest.mark.parametrize("fmt", ["vsq4_v16_s4", "vsq8_v16_s4", "nvfp4", "mxfp4"])
def test_packed_linear_matches_fake_quant_linear(fmt: str) -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(70, 24)
    x = torch.randn(3, 70)
    y = PackedLinear.from_linear(lin, fmt)(x)
    wq = get(fmt).quantize(lin.weight.detach())
    ref = x.to(torch.bfloat16).double() @ wq.double().T + lin.bias.detach().double()
    assert y.dtype == torch.bfloat16 and y.shape == (3, 24)
    torch.testing.assert_close(y.double(), ref, rtol=2**-8, atol=1e-6)


def test_to_packed_swaps_every_linear() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    done = to_packed_(model, "nvfp4")
    assert [a.name for a in done] == ["0", "2"] and all(not a.skipped for a in done)
    assert isinstance(model[0], PackedLinear) and isinstance(model[2], PackedLinear)
    assert "fmt=nvfp4" in repr(model[0])
    assert model(torch.randn(2, 32)).shape == (2, 4)


def test_quantize_backend_triton_packs_the_fake_quant_weight() -> None:
    from picojoule.quant import quantize_

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(48, 8))
    w_before = model[0].weight.detach().clone()
    quantize_(model, "w:vsq4_v16_s4", backend="triton")
    packed = model[0]
    assert isinstance(packed, PackedLinear)
    from picojoule.gpu.packing import dequant

    assert torch.equal(dequant(packed.packed), get("vsq4_v16_s4").quantize(w_before))


def test_unsupported_format_and_empty_model() -> None:
    with pytest.raises(FormatError, match="packed formats"):
        to_packed_(torch.nn.Sequential(torch.nn.Linear(8, 8)), "int8/channel")
    with pytest.raises(FormatError, match="no nn.Linear"):
        to_packed_(torch.nn.Sequential(torch.nn.ReLU()), "nvfp4")
    with pytest.raises(FormatError, match="packed formats"):
        PackedLinear.from_linear(torch.nn.Linear(8, 8), get("mxfp8_e4m3"))
