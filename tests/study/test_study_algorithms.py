"""The algorithm keys in a study on the digits CNN: they run where they apply, say so where
they do not, are timed, and online rotations are billed."""

from __future__ import annotations

import math

import pytest

from picojoule.errors import ConfigError
from picojoule.study.recipes import Recipe, check_recipes, preset


def test_llm_algorithms_preset_parses() -> None:
    recipes = check_recipes(preset("llm-algorithms"))
    names = {r.name for r in recipes}
    assert {"int4/g128 gptq", "int4/g128 awq", "W8A8 static+smooth", "2:4 sparsegpt"} <= names
    assert {"W4A4 nvfp4+hadamard", "W4A4 mxfp4+block32"} <= names


def test_gptq_with_finetuning_is_refused() -> None:
    with pytest.raises(ConfigError, match="fine-tuning could not change them"):
        check_recipes([Recipe(name="x", quant="w:int4,wcal:gptq", finetune_steps=10)])


def test_digits_study_with_every_algorithm() -> None:
    from picojoule.study import DigitsTask
    from picojoule.study.runner import run

    recipes = [
        Recipe(name="fp32"),
        Recipe(name="int4 rtn", quant="w:int4"),
        Recipe(name="int4 gptq", quant="w:int4,wcal:gptq"),
        Recipe(name="int4 awq", quant="w:int4,wcal:awq"),
        Recipe(name="w8a8 smooth", quant="w:int8,a:int8,cal:max,smooth:0.5"),
        Recipe(name="nvfp4 hadamard", quant="w:nvfp4,rotate:hadamard"),
        Recipe(name="mxfp4", quant="w:mxfp4,a:mxfp4"),
        Recipe(name="mxfp4 block32", quant="w:mxfp4,a:mxfp4,rotate:block32"),
        Recipe(name="2:4 sparsegpt", sparsity="sparsegpt-2:4"),
    ]
    res = run(DigitsTask(), recipes, target="eyeriss", cache=None)
    by = {r.recipe.name: r for r in res.results}
    for r in res.results:
        assert math.isfinite(r.metrics["accuracy"])
    gptq = by["int4 gptq"]
    assert gptq.algorithms["seconds"]["gptq"] > 0
    assert any("rounded to nearest" in line for line in gptq.applied["algorithms"])  # convs
    assert gptq.metrics["accuracy"] >= by["int4 rtn"].metrics["accuracy"] - 2.0
    assert "awq" in by["int4 awq"].algorithms["seconds"]
    # the CNN has no norm or linear feeding a Linear alone (fc2 reads a ReLU): nothing folds
    smooth = by["w8a8 smooth"].applied["algorithms"][0]
    assert "left unsmoothed" in smooth
    hadamard = by["nvfp4 hadamard"]
    assert any("skipped" in line for line in hadamard.applied["algorithms"])
    assert "rotate" not in hadamard.algorithms.get("seconds", {})
    block = by["mxfp4 block32"]
    assert [o["layer"] for o in block.algorithms["online"]] == ["9", "11"]  # 256 and 64 inputs
    layers = {row["name"]: row for row in block.cost["layers"]}
    fc1, fc2, conv = layers["9"], layers["11"], layers["5"]
    # per input row (the layer's N x P x Q), log2(32) = 5 adds per element
    assert fc1["transform_adds"] == 256 * 5 * fc1["N"] * fc1["P"] * fc1["Q"]
    assert fc2["transform_adds"] == 64 * 5 * fc2["N"] * fc2["P"] * fc2["Q"]
    assert conv["transform_adds"] == 0  # convolutions are not rotated
    billed = {r["name"]: r["energy_pj"] for r in block.cost["layers_energy"]}
    unrotated = {r["name"]: r["energy_pj"] for r in by["mxfp4"].cost["layers_energy"]}
    assert billed["9"] > unrotated["9"] and billed["5"] == pytest.approx(unrotated["5"])
    from picojoule.study.report import render_html, summary_table, to_json

    table = summary_table(res)
    assert "calib s" in [c.header for c in table.columns]
    assert "online rotation ops/token" in render_html(res)
    row = next(r for r in to_json(res)["recipes"] if r["name"] == "mxfp4 block32")
    assert row["algorithms"]["online"][0]["adds"] == 256 * 5  # per token, fc1
    sgpt = by["2:4 sparsegpt"]
    assert sgpt.algorithms["seconds"]["sparsegpt"] > 0
    assert any("re-masked" in line for line in sgpt.applied["algorithms"])
