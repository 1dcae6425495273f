"""The Python API on malformed inputs: `Recipe`, `check_recipes`, `load_recipes`,
`picojoule.study.run`, `metric_value`, `quantize_` / `parse_recipe`, `sparsify_`,
`winogradize_`, `apply`, and user energy tables. Every case raises a `PicojouleError` whose
message names the problem; none reaches torch as an AttributeError or TypeError."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from picojoule.config import apply
from picojoule.errors import ConfigError, PicojouleError
from picojoule.quant import QuantConfig, parse_recipe, quantize_
from picojoule.sparsity import sparsify_
from picojoule.study import Recipe, check_recipes, load_recipes, run
from picojoule.study.tasks import metric_value
from picojoule.winograd import winogradize_


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3))


def _data():
    return [(torch.randn(4, 8), torch.zeros(4, dtype=torch.long))]


def _metric(model, batches) -> float:
    return 1.0


# --- Recipe fields: (id, kwargs, fragment) ------------------------------------------------
RECIPE_CASES = [
    ("name-none", {"name": None}, "name must be a non-empty one-line string"),
    ("name-empty", {"name": ""}, "got ''"),
    ("name-tab-only", {"name": "\t"}, "name must be"),
    ("name-newline", {"name": "a\nb"}, "one-line"),
    ("name-int", {"name": 4}, "quote it"),
    ("quant-none", {"name": "a", "quant": None}, "quant must be a picojoule.quant recipe"),
    ("quant-config-object", {"name": "a", "quant": QuantConfig()}, "got QuantConfig("),
    ("sparsity-float", {"name": "a", "sparsity": 0.5}, "sparsity must be"),
    ("sparsity-int", {"name": "a", "sparsity": 124}, "quote it"),
    ("winograd-str", {"name": "a", "winograd": "4"}, "got '4' (str)"),
    ("winograd-bool", {"name": "a", "winograd": True}, "got True (bool)"),
    ("winograd-negative", {"name": "a", "winograd": -1}, "0 (off) or 1..16"),
    ("winograd-too-big", {"name": "a", "winograd": 17}, "got 17"),
    ("winograd-tuple", {"name": "a", "winograd": (4, 4)}, "got (4, 4) (tuple)"),
    ("steps-float", {"name": "a", "finetune_steps": 2.5}, "finetune_steps must be"),
    ("steps-negative", {"name": "a", "finetune_steps": -5}, "non-negative integer"),
    ("steps-str", {"name": "a", "finetune_steps": "100"}, "got '100' (str)"),
    ("lr-zero", {"name": "a", "finetune_lr": 0.0}, "finetune_lr must be a positive finite"),
    ("lr-nan", {"name": "a", "finetune_lr": math.nan}, "got nan"),
    ("lr-inf", {"name": "a", "finetune_lr": math.inf}, "got inf"),
    ("lr-str", {"name": "a", "finetune_lr": "1e-3"}, "got '1e-3' (str)"),
    ("lr-none", {"name": "a", "finetune_lr": None}, "got None"),
    ("lr-tensor", {"name": "a", "finetune_lr": torch.tensor(0.1)}, "(Tensor)"),
]


@pytest.mark.parametrize(("kwargs", "fragment"), [c[1:] for c in RECIPE_CASES],
                         ids=[c[0] for c in RECIPE_CASES])  # fmt: skip
def test_recipe_fields(kwargs, fragment):
    with pytest.raises(ConfigError, match=_re(fragment)):
        Recipe(**kwargs)


def _re(fragment: str) -> str:
    import re

    return re.escape(fragment)


def test_recipe_normalises_an_int_learning_rate():
    assert Recipe(name="a", finetune_lr=1).key() == Recipe(name="a", finetune_lr=1.0).key()


# --- recipe lists: (id, value given as recipes, fragment) ---------------------------------
LIST_CASES = [
    ("empty-list", [], "no recipes to run"),
    ("empty-tuple", (), "no recipes to run"),
    ("a-string", "w:int8", "expected a list of Recipe, got str"),
    ("none", None, "expected a list of Recipe, got NoneType"),
    ("one-recipe-not-list", Recipe(name="a"), "expected a list of Recipe, got Recipe"),
    ("dicts", [{"name": "a"}], "item #1 is a dict, not a Recipe"),
    ("strings", ["int8"], "item #1 is a str, not a Recipe"),
    ("duplicate-names", [Recipe(name="a"), Recipe(name="a", quant="w:int8")], "used twice"),
    ("bad-format", [Recipe(name="x", quant="w:int99")], "recipe 'x': quant: "),
    ("quant-no-colon", [Recipe(name="x", quant="int8")], "is not key:value"),
    ("quant-nothing", [Recipe(name="x", quant="none")], "quantizes nothing"),
    ("bad-pattern", [Recipe(name="x", sparsity="2-4")], "recipe 'x': sparsity: "),
    ("pattern-zero-n", [Recipe(name="x", sparsity="0:4")], "recipe 'x': sparsity: "),
]


@pytest.mark.parametrize(("recipes", "fragment"), [c[1:] for c in LIST_CASES],
                         ids=[c[0] for c in LIST_CASES])  # fmt: skip
def test_recipe_lists(recipes, fragment):
    with pytest.raises(ConfigError, match=_re(fragment)):
        check_recipes(recipes)


@pytest.mark.parametrize(("recipes", "fragment"), [c[1:] for c in LIST_CASES],
                         ids=[c[0] for c in LIST_CASES])  # fmt: skip
def test_study_run_checks_recipes_before_building(recipes, fragment):
    built = []

    def build() -> nn.Module:
        built.append(1)
        return _mlp()

    if isinstance(recipes, str):
        fragment = "unknown recipe preset"  # run() reads a string as a preset name
    with pytest.raises(ConfigError, match=_re(fragment)):
        run(build, _data, _metric, recipes, cache=None)
    assert not built


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [(None, "expected a preset name or a YAML path, got NoneType"),
     (3, "got int"),
     ("", "--recipes is empty"),
     ("nope.yml", "no such recipes file"),
     ("a\x00b", "unknown recipe preset"),
     ("x" * 5000, "unknown recipe preset")],
    ids=["none", "int", "empty", "missing-file", "nul-byte", "too-long-name"],
)  # fmt: skip
def test_load_recipes_specs(spec, fragment):
    with pytest.raises(ConfigError, match=_re(fragment)):
        load_recipes(spec)


def test_load_recipes_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; give a YAML file"):
        load_recipes(tmp_path)


# --- picojoule.study.run's other arguments -------------------------------------------------
RUN_CASES = [
    ("model-none", (None, _data, _metric), "model must be an nn.Module"),
    ("model-path", ("model.pt", _data, _metric), "not str"),
    ("data-none", (_mlp, None, _metric), "data must be an iterable"),
    ("data-path", (_mlp, "data/", _metric), "data must be an iterable"),
    ("metric-name", (_mlp, _data, "accuracy"), "metric must be a function"),
    ("metric-none", (_mlp, _data, None), "metric must be a function"),
]


@pytest.mark.parametrize(("args", "fragment"), [c[1:] for c in RUN_CASES],
                         ids=[c[0] for c in RUN_CASES])  # fmt: skip
def test_study_run_arguments(args, fragment):
    with pytest.raises(ConfigError, match=_re(fragment)):
        run(*args, [Recipe(name="fp32")], cache=None)


# --- what a metric returned: (id, value, fragment) -----------------------------------------
METRIC_CASES = [
    ("nan", math.nan, "returned nan"),
    ("inf", math.inf, "returned inf"),
    ("minus-inf", -math.inf, "returned -inf"),
    ("numpy-nan", np.float32("nan"), "returned nan"),
    ("tensor-nan", torch.tensor(float("nan")), "returned nan"),
    ("text", "0.93", "returned a str ('0.93')"),
    ("none", None, "returned None"),
    ("vector", torch.tensor([0.1, 0.2]), "Tensor of shape (2,)"),
    ("matrix-array", np.ones((2, 2)), "ndarray of shape (2, 2)"),
    ("empty-array", np.array([]), "of shape (0,)"),
    ("complex", 1 + 2j, "returned a complex"),
    ("bool", True, "returned a bool"),
    ("list", [0.9], "returned a list"),
    ("tuple", (0.9, 0.1), "returned a tuple"),
]


@pytest.mark.parametrize(("value", "fragment"), [c[1:] for c in METRIC_CASES],
                         ids=[c[0] for c in METRIC_CASES])  # fmt: skip
def test_metric_values(value, fragment):
    with pytest.raises(ConfigError, match=_re(fragment)):
        metric_value(value)


def test_metric_values_that_are_one_number_pass():
    assert metric_value(torch.tensor([0.5])) == 0.5
    assert metric_value(np.float32(0.25)) == 0.25
    assert metric_value(np.array(3)) == 3.0
    assert metric_value(7) == 7.0


# --- quantize_: (id, call, fragment) ---------------------------------------------------------
QUANT_CASES = [
    ("model-none", lambda m: quantize_(None, "w:int8"), "quantize_: the model must be a torch"),
    ("args-swapped", lambda m: quantize_("w:int8", m), "(the arguments are (model, recipe))"),
    ("model-class", lambda m: quantize_(nn.Linear, "w:int8"), "got type"),
    ("state-dict", lambda m: quantize_(m.state_dict(), "w:int8"), "got OrderedDict"),
    ("recipe-none", lambda m: quantize_(m, None), "not NoneType"),
    ("recipe-int", lambda m: quantize_(m, 8), "not int"),
    ("recipe-list", lambda m: quantize_(m, ["w:int8"]), "not list"),
    ("recipe-dict-short-key", lambda m: quantize_(m, {"w": "int8"}), "w: is weight here"),
    ("recipe-dict-typo", lambda m: quantize_(m, {"wieght": "int8"}), "did you mean: weight?"),
    ("recipe-dict-int-format", lambda m: quantize_(m, {"weight": 8}), "give a format name"),
    ("recipe-bytes", lambda m: quantize_(m, b"w:int8"), "not bytes"),
    ("recipe-bare-format", lambda m: quantize_(m, "int8"), "is not key:value"),
    ("recipe-empty-value", lambda m: quantize_(m, "w:"), "is not key:value"),
    ("recipe-trailing-comma", lambda m: quantize_(m, "w:int8,"), "is not key:value"),
    ("recipe-semicolons", lambda m: quantize_(m, "w:int8;a:int8"), "unknown number format"),
    ("recipe-unknown-key", lambda m: quantize_(m, "weight:int8"), "unknown key 'weight'"),
    ("recipe-cal-alone", lambda m: quantize_(m, "w:int8,cal:max"), "add a:<format>"),
    ("recipe-percentile-0", lambda m: quantize_(m, "a:int8,cal:percentile0"), "(0, 100]"),
    ("overrides-list", lambda m: quantize_(m, "w:int8", overrides=["2"]), "not list"),
    ("overrides-str", lambda m: quantize_(m, "w:int8", overrides="2=None"), "not str"),
    (
        "override-int-key",
        lambda m: quantize_(m, "w:int8", overrides={2: None}),
        "override key 2: give a layer-name glob",
    ),
    (
        "override-bad-recipe",
        lambda m: quantize_(m, "w:int8", overrides={"2": "w:nope"}),
        "override '2': recipe 'w:nope'",
    ),
    (
        "override-int-recipe",
        lambda m: quantize_(m, "w:int8", overrides={"2": 4}),
        "override '2': a recipe is a string",
    ),
    (
        "override-no-such-layer",
        lambda m: quantize_(m, "w:int8", overrides={"fc*": None}),
        "do not exist: fc*",
    ),
    (
        "filter-not-callable",
        lambda m: quantize_(m, "w:int8", filter_fn="0"),
        "filter_fn must be a function",
    ),
    ("backend-unknown", lambda m: quantize_(m, "w:int8", backend="cuda"), "unknown backend"),
    ("backend-none", lambda m: quantize_(m, "w:int8", backend=None), "not None"),
    ("no-layers", lambda m: quantize_(nn.Sequential(nn.ReLU()), "w:int8"), "no layer"),
    (
        "triton-activations",
        lambda m: quantize_(m, "w:int8,a:int8", backend="triton"),
        "weight-only",
    ),
    ("parse-bytes", lambda m: parse_recipe(b"w:int8"), "not bytes"),
]


@pytest.mark.parametrize("call, fragment", [c[1:] for c in QUANT_CASES],
                         ids=[c[0] for c in QUANT_CASES])  # fmt: skip
def test_quantize_inputs(call, fragment):
    with pytest.raises(PicojouleError, match=_re(fragment)):
        call(_mlp())


# A second quantize_ used to skip every layer as "already quantized" and keep the first recipe
# without a word. It refuses now, before anything changes: (id, first, second, filter of 2nd)
AGAIN_CASES = [
    ("same-recipe", "w:int8", "w:int8"),
    ("other-weight-format", "w:int8", "w:int4"),
    ("weights-then-activations", "w:int8", "a:int8"),
    ("activations-then-weights", "a:e4m3", "w:nvfp4"),
]


@pytest.mark.parametrize(("first", "second"), [c[1:] for c in AGAIN_CASES],
                         ids=[c[0] for c in AGAIN_CASES])  # fmt: skip
def test_second_quantize_refuses_and_changes_nothing(first, second):
    model = _mlp()
    quantize_(model, first)
    x = torch.randn(3, 8)
    before = model(x)
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError, match=r"already quantized: 0, 2; recipes do not stack"):
        quantize_(model, second)
    after = model.state_dict()
    assert state.keys() == after.keys()
    # amax of a dynamic activation quantizer is a NaN placeholder: compare NaN as equal
    assert all(
        torch.allclose(v, after[k], rtol=0, atol=0, equal_nan=True) for k, v in state.items()
    )
    assert torch.equal(model(x), before)


def test_second_quantize_on_other_layers_still_composes():
    model = _mlp()
    quantize_(model, "w:int8", filter_fn=lambda m, n: n == "0")
    recs = quantize_(model, "w:int4", filter_fn=lambda m, n: n == "2")
    assert [r.action for r in recs] == ["w:int4/channel"]
    quantize_(_mlp(), "w:int8", overrides={"2": None})  # an override keeps a layer float...
    model = _mlp()
    quantize_(model, "w:int8", overrides={"2": None})
    recs = quantize_(model, "w:int4", overrides={"0": None})  # ...for a later call
    assert [r.action for r in recs if r.action] == ["w:int4/channel"]


def test_apply_refuses_an_already_quantized_layer():
    model = _mlp()
    quantize_(model, "w:int8")
    with pytest.raises(ConfigError, match="0 is already quantized"):
        apply(model, parse_recipe("w:int4"))


# --- the other verbs of the handler table: (id, call, fragment) --------------------------
VERB_CASES = [
    ("sparsify-none", lambda: sparsify_(None, "2:4"), "sparsify_: the model must be a torch"),
    ("sparsify-swapped", lambda: sparsify_("2:4", _mlp()), "the arguments are (model, recipe)"),
    ("sparsify-int-recipe", lambda: sparsify_(_mlp(), 24), "got int"),
    ("sparsify-bad-pattern", lambda: sparsify_(_mlp(), "2/4"), "unknown sparsity pattern"),
    ("winograd-none", lambda: winogradize_(None), "winogradize_: the model must be a torch"),
    ("winograd-tile-none", lambda: winogradize_(_cnn(), tile=None), "tile must be an int"),
    ("winograd-tile-str", lambda: winogradize_(_cnn(), tile="4"), "tile must be an int"),
    ("winograd-tile-zero", lambda: winogradize_(_cnn(), tile=0), "tile must be positive"),
    ("winograd-kernels-int", lambda: winogradize_(_cnn(), kernel_sizes=3), "kernel_sizes must"),
    ("winograd-filter", lambda: winogradize_(_cnn(), filter_fn=1), "filter_fn must be a function"),
    ("apply-none", lambda: apply(None, parse_recipe("w:int8")), "apply: the model must be"),
    ("apply-unknown-config", lambda: apply(_mlp(), "w:int8"), "no handler for config type str"),
]


@pytest.mark.parametrize("call, fragment", [c[1:] for c in VERB_CASES],
                         ids=[c[0] for c in VERB_CASES])  # fmt: skip
def test_verb_inputs(call, fragment):
    with pytest.raises(PicojouleError, match=_re(fragment)):
        call()


# --- user energy tables: duplicate keys are an error in every YAML picojoule reads --------
TABLE_CASES = [
    (
        "dup-column",
        "rows:\n- {capacity_bytes: 8192, width_bits: 64, width_bits: 32}\n",
        "key 'width_bits' is given twice",
    ),
    ("dup-rows-key", "rows: []\nrows:\n- {capacity_bytes: 8192}\n", "key 'rows' is given twice"),
    ("bad-syntax", "rows:\n- {capacity_bytes: 8192\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "fragment"), [c[1:] for c in TABLE_CASES],
                         ids=[c[0] for c in TABLE_CASES])  # fmt: skip
def test_energy_tables(tmp_path, text, fragment):
    from picojoule.energy.tables import load_table

    path = tmp_path / "sram.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=_re(fragment)):
        load_table("sram", path)
