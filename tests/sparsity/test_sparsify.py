import pytest
import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from picojoule.config import apply
from picojoule.errors import ConfigError
from picojoule.quant import quantize_
from picojoule.quant.modules import WeightFakeQuant
from picojoule.sparsity import (
    SparsityConfig,
    SparsityMask,
    finetune,
    gradual_density,
    is_nm,
    mask_of,
    parse_recipe,
    prune_gradually,
    sparsify_,
)
from picojoule.sparsity.sparsify import unmasked_weight


def _records(applied):
    return {a.name: a for a in applied}


def test_default_recipe_prunes_middle_layers_and_explains_skips(cnn) -> None:
    rec = _records(sparsify_(cnn, "2:4"))
    assert rec["0"].reason == "first conv (kept dense)"
    assert rec["11"].reason == "classifier (kept dense)"
    for name in ("2", "5", "9"):
        assert rec[name].action == "2:4 mask, density 0.500"
        assert is_nm(cnn.get_submodule(name).weight, 2, 4)
    assert mask_of(cnn[0]) is None and mask_of(cnn[11]) is None


def test_shapes_a_pattern_cannot_serve_are_skipped_not_raised(cnn) -> None:
    rec = _records(sparsify_(cnn, "2:4,first_conv=sparse,classifier=sparse"))
    assert "2:4 cannot serve it" in rec["0"].reason
    assert "not divisible by M=4" in rec["0"].reason
    assert rec["11"].action.startswith("2:4")  # 64 in-features divide by 4


def test_per_layer_globs_and_skip_rules(cnn) -> None:
    rec = _records(sparsify_(cnn, "2:4,9=1:4,skip=5"))
    assert rec["9"].action == "1:4 mask, density 0.250"
    assert rec["5"].reason == "skip rule '5'"
    assert rec["2"].action.startswith("2:4")
    rec = _records(sparsify_(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)), "2:4,0=dense"))
    assert rec["0"].reason == "rule 0=dense"


def test_unstructured_and_block_recipes(cnn) -> None:
    rec = _records(sparsify_(cnn, "unstructured:0.3"))
    w = cnn[9].weight
    assert int((w != 0).sum()) == round(0.3 * w.numel())
    assert rec["9"].action == "unstructured:0.3 mask, density 0.300"
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 4))
    sparsify_(model, "block:4x4:0.5")
    assert int((model[0].weight != 0).sum()) == 64


def test_non_prunable_weights_are_reported_with_reason() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 8))
    rec = _records(sparsify_(model, "2:4"))
    assert "no reduction dimension" in rec["1"].reason


def test_bad_recipes_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="two default patterns"):
        parse_recipe("2:4,1:4")
    with pytest.raises(ConfigError, match="dense or sparse"):
        parse_recipe("2:4,classifier=maybe")
    with pytest.raises(ConfigError, match="N >= M"):
        SparsityConfig(pattern="4:4")
    with pytest.raises(ConfigError, match="recipe string or SparsityConfig"):
        sparsify_(nn.Linear(4, 4), 24)  # type: ignore[arg-type]


def test_raw_apply_needs_roles_resolved(cnn) -> None:
    with pytest.raises(ConfigError, match="call sparsify_"):
        apply(cnn, SparsityConfig())
    out = apply(cnn, SparsityConfig(skip_first_conv=False, skip_classifier=False))
    assert len(out) == 5


def test_mask_sits_before_quant_whichever_verb_runs_first() -> None:
    torch.manual_seed(0)
    for order in ("sparse-first", "quant-first"):
        model = nn.Sequential(nn.Linear(32, 16), nn.Linear(16, 16))
        if order == "quant-first":
            quantize_(model, "w:nvfp4")
        sparsify_(model, "2:4,classifier=sparse")
        if order == "sparse-first":
            quantize_(model, "w:nvfp4")
        for layer in model:
            chain = list(layer.parametrizations.weight)
            assert isinstance(chain[0], SparsityMask) and isinstance(chain[1], WeightFakeQuant)
            masked = unmasked_weight(layer).detach() * mask_of(layer).mask
            expected = chain[1](masked)
            torch.testing.assert_close(layer.weight, expected, rtol=0, atol=0)
            assert is_nm(layer.weight, 2, 4)


def test_resparsifying_prunes_further_and_keeps_pruned_weights_pruned() -> None:
    layer = nn.Sequential(nn.Linear(16, 8))
    sparsify_(layer, "3:4,classifier=sparse")
    first = mask_of(layer[0]).mask.clone()
    sparsify_(layer, "2:4,classifier=sparse")
    second = mask_of(layer[0]).mask
    assert not (second & ~first).any()
    assert is_nm(layer[0].weight, 2, 4)
    assert len(layer[0].parametrizations.weight) == 1  # updated in place, not stacked


def _toy_task(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 16, generator=gen)
    y = (x[:, :4].sum(1) > 0).long()
    return [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]


def test_finetune_keeps_zeros_zero_and_lowers_loss() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    sparsify_(model, "2:4,classifier=sparse")
    masks = [mask_of(m).mask.clone() for m in (model[0], model[2])]
    result = finetune(model, _toy_task(), steps=60, lr=1e-2)
    assert result.steps == 60 and result.last_loss < result.first_loss
    for layer, mask in zip((model[0], model[2]), masks, strict=True):
        assert torch.equal(mask_of(layer).mask, mask)  # masks fixed
        assert (layer.weight[~mask] == 0).all()  # pruned stay exactly zero
        assert (unmasked_weight(layer)[mask] != 0).all()


def test_finetune_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="steps >= 1"):
        finetune(nn.Linear(2, 2), [], steps=0, lr=1e-3)


def test_gradual_schedule_is_cubic_and_ends_at_target() -> None:
    assert gradual_density(0.5, 0.0) == 1.0
    assert gradual_density(0.5, 1.0) == 0.5
    assert gradual_density(0.25, 0.5) == pytest.approx(0.25 + 0.75 * 0.125)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    out = prune_gradually(model, "1:4,classifier=sparse", _toy_task(), events=6, steps_per_event=3)
    # kept density 0.68, 0.47, 0.34, 0.28, 0.25+, 0.25 -> N rounded up, never below target
    assert out.schedule == ("3:4", "2:4", "2:4", "2:4", "2:4", "1:4")
    assert is_nm(model[0].weight, 1, 4) and is_nm(model[2].weight, 1, 4)
    assert {a.action for a in out.applied} == {"1:4 mask, density 0.250"}
    out = prune_gradually(
        nn.Sequential(nn.Linear(16, 8)),
        "unstructured:0.2,classifier=sparse",
        _toy_task(),
        events=2,
        steps_per_event=2,
    )
    assert out.schedule == ("unstructured:0.3", "unstructured:0.2")


def test_sparsity_mask_is_a_real_parametrization() -> None:
    layer = nn.Linear(8, 4)
    sparsify_(nn.Sequential(layer), "2:4,classifier=sparse")
    assert parametrize.is_parametrized(layer, "weight")
    state = layer.state_dict()
    assert "parametrizations.weight.0.mask" in state


def test_finetune_rejects_an_empty_loader() -> None:
    with pytest.raises(ConfigError, match="no batches"):
        finetune(nn.Linear(2, 2), [], steps=1, lr=1e-3)
