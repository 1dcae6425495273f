"""On the default digits CNN: 2:4 plus masked fine-tuning stays within 1 point of dense,
alone and composed with nvfp4 weights."""

import copy

import pytest
import torch

from picojoule.models import digits
from picojoule.quant import quantize_
from picojoule.quant.modules import WeightFakeQuant
from picojoule.sparsity import SparsityMask, finetune, is_nm, mask_of, sparsify_


@pytest.fixture(scope="module")
def trained():
    return digits.load_default()


def _tune(model, data, steps: int = 100) -> None:
    torch.manual_seed(0)
    finetune(model, data.loader("train", batch_size=64, shuffle=True), steps, 1e-3)


def test_2to4_with_finetune_within_one_point_of_dense(trained) -> None:
    model, data = trained
    dense_acc = digits.evaluate(model, data)
    sparse = copy.deepcopy(model)
    sparsify_(sparse, "2:4")
    _tune(sparse, data)
    acc = digits.evaluate(sparse, data)
    assert acc >= dense_acc - 1.0, f"2:4 + fine-tune {acc:.2f}% vs dense {dense_acc:.2f}%"
    for name in ("2", "5", "9"):
        layer = sparse.get_submodule(name)
        assert mask_of(layer) is not None and is_nm(layer.weight, 2, 4)


def test_finetune_recovers_what_one_shot_1to4_loses(trained) -> None:
    model, data = trained
    dense_acc = digits.evaluate(model, data)
    sparse = copy.deepcopy(model)
    sparsify_(sparse, "1:4")
    one_shot = digits.evaluate(sparse, data)
    _tune(sparse, data)
    tuned = digits.evaluate(sparse, data)
    assert one_shot < dense_acc - 2.0  # 1:4 one-shot costs accuracy here
    assert tuned > one_shot + 3.0  # and masked fine-tuning wins most of it back


def test_2to4_plus_nvfp4_composes_on_the_digits_cnn(trained) -> None:
    model, data = trained
    dense_acc = digits.evaluate(model, data)
    both = copy.deepcopy(model)
    sparsify_(both, "2:4")
    quantize_(both, "w:nvfp4")
    _tune(both, data)  # quantization-aware and mask-fixed at once (STE through fake-quant)
    for name in ("2", "5", "9"):
        layer = both.get_submodule(name)
        mask, fake_quant = list(layer.parametrizations.weight)
        assert isinstance(mask, SparsityMask) and isinstance(fake_quant, WeightFakeQuant)
        original = layer.parametrizations.weight.original.detach()
        expected = fake_quant(original.masked_fill(~mask.mask, 0))
        torch.testing.assert_close(layer.weight, expected, rtol=0, atol=0)
        assert is_nm(layer.weight, 2, 4)
    assert digits.evaluate(both, data) >= dense_acc - 1.0
