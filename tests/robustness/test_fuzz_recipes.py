"""Fuzzing the recipe inputs: random mutations of valid quant strings, sparsity strings and
recipe YAML documents. The only acceptable outcomes are a valid result or a `PicojouleError`;
anything else (a TypeError, an IndexError, a hang) is a bug the validation layer let through.

Only parsing and validation run here (no study), so a few hundred examples take seconds.
"""

from __future__ import annotations

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picojoule.errors import PicojouleError
from picojoule.quant import QuantConfig, parse_recipe
from picojoule.sparsity import SparsityConfig
from picojoule.sparsity import parse_recipe as parse_sparsity
from picojoule.study import PRESETS, Recipe, check_recipes, load_recipes

# PJ_FUZZ_EXAMPLES=5000 for a long hunt; the default keeps this file to a few seconds
FUZZ = settings(
    max_examples=int(os.environ.get("PJ_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

QUANT_SEEDS = sorted({r.quant for rs in PRESETS.values() for r in rs if r.quant} | {
    "w:int8,a:int8,cal:percentile99.9", "w:e4m3,round:stochastic", "a:e4m3/none",
    "w:int4/channel,a:int8,cal:mse", "w:mxfp4,attn:e4m3", "fp32",
})  # fmt: skip
SPARSITY_SEEDS = ["2:4", "1:4", "4:8", "unstructured:0.5", "block:4x4:0.5", "channel:0.25",
                  "2:4,fc1=1:4,conv3=dense", "unstructured:0.5,skip=conv*|fc2",
                  "2:4,first_conv=sparse,classifier=sparse"]  # fmt: skip
YAML_SEEDS = [
    "- name: int8\n  quant: w:int8,a:int8\n- name: 2:4\n  sparsity: '2:4'\n",
    "recipes:\n- name: fp32\n- name: qat\n  quant: w:int4/channel,a:int4\n  finetune_steps: 40\n"
    "  finetune_lr: 0.0001\n",
    "- {name: wino, winograd: 4}\n- {name: wino+fp16, winograd: 4, quant: 'w:fp16,a:fp16'}\n",
    "- name: all\n  quant: w:nvfp4\n  sparsity: 2:4\n  winograd: 2\n  finetune_steps: 0\n",
]

# What users type: the recipe vocabulary, numbers at the edges, and stray punctuation.
TOKENS = ["w:", "a:", "attn:", "cal:", "round:", ",", ":", "/", "=", "|", "x", "int", "e4m3",
          "mxfp", "nvfp4", "vsq4_v", "_s4", "/channel", "/none", "percentile", "0", "-1", "1e400",
          "nan", "inf", "99999999999999999999", "unstructured:", "block:", "dense", "skip=",
          "- ", "name:", "quant:", "winograd:", "finetune_lr:", "\n", "  ", "\t", "'", '"', "[",
          "]", "{", "}", "#", "&a", "*a", "!!", "? ", "~", "null", "yes", "é", "\x00",
          "---"]  # fmt: skip
CHUNK = st.one_of(st.sampled_from(TOKENS), st.text(max_size=4))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str]) -> str:
    """A seed with up to four random edits: insert, delete, replace or duplicate a span."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        i = draw(st.integers(0, len(text)))
        j = min(len(text), i + draw(st.integers(0, 6)))
        if op == "insert":
            text = text[:i] + draw(CHUNK) + text[i:]
        elif op == "delete":
            text = text[:i] + text[j:]
        elif op == "replace":
            text = text[:i] + draw(CHUNK) + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@FUZZ
@given(mutated(QUANT_SEEDS))
def test_quant_strings(text):
    try:
        cfg = parse_recipe(text)
    except PicojouleError:
        return
    assert isinstance(cfg, QuantConfig)


@FUZZ
@given(mutated(SPARSITY_SEEDS))
def test_sparsity_strings(text):
    try:
        cfg = parse_sparsity(text)
    except PicojouleError:
        return
    assert isinstance(cfg, SparsityConfig)


@FUZZ
@given(mutated(QUANT_SEEDS), mutated(SPARSITY_SEEDS))
def test_recipe_levers(quant, sparsity):
    try:
        recipes = check_recipes([Recipe(name="r", quant=quant, sparsity=sparsity)])
    except PicojouleError:
        return
    assert recipes[0].quant == quant


def _assert_valid(recipes: list) -> None:
    assert recipes and all(isinstance(r, Recipe) for r in recipes)
    assert len({r.name for r in recipes}) == len(recipes)


@FUZZ
@given(mutated(YAML_SEEDS))
def test_yaml_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "recipes.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        recipes = load_recipes(str(path))
    except PicojouleError:
        return
    _assert_valid(recipes)


# Structural mutations: the documents parse, but a field holds any YAML value.
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
    | st.sampled_from(QUANT_SEEDS + SPARSITY_SEEDS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6,
)  # fmt: skip
FIELDS = ["name", "quant", "sparsity", "winograd", "finetune_steps", "finetune_lr", "qaunt", ""]


@FUZZ
@given(
    st.lists(st.dictionaries(st.sampled_from(FIELDS), YAML_VALUES, max_size=5), max_size=4),
    st.booleans(),
)
def test_yaml_documents(tmp_path_factory, items, wrapped):
    doc = {"recipes": items} if wrapped else items
    path = tmp_path_factory.mktemp("fuzz") / "recipes.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    try:
        recipes = load_recipes(str(path))
    except PicojouleError:
        return
    _assert_valid(recipes)
