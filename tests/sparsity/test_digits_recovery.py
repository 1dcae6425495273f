"""On the default digits CNN: 2:4 plus masked fine-tuning stays within 1 point of dense."""

import copy

import pytest
import torch

from picojoule.models import digits
from picojoule.sparsity import finetune, is_nm, mask_of, sparsify_


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
