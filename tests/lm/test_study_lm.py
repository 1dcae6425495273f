"""`picojoule study` on causal LMs end to end (hf:DIR, Llama- and GPT-2-style, random
weights): perplexity as a lower-is-better metric, phase costs, the kv: lever, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_run import run_main
from picojoule import cli

pytest.importorskip("transformers")

SMALL = ["--tokens", "48", "--seq-len", "24", "--prompt", "16", "--context", "24",
         "--decode", "4", "--no-cache"]  # fmt: skip
RECIPES = """
- {name: fp32}
- {name: int4, quant: "w:int4/channel"}
- {name: kv int2 kivi, quant: "kv:int2@kivi8"}
- {name: nvfp4 w+a kv e4m3, quant: "w:nvfp4,a:nvfp4,kv:e4m3"}
"""


@pytest.fixture(autouse=True)
def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli, "busy_cores", lambda: None)  # no 0.2 s /proc/stat sample per run
    global _MP, _CAP
    _MP, _CAP = monkeypatch, capsys


def _main(*args: str) -> tuple[int, str]:
    """`picojoule ARGS` in-process through cli.main(), which owns the exit code and the
    one-line rendering of errors."""
    return run_main(_MP, _CAP, *args)


def _study(tmp_path: Path, model_dir: Path, *extra: str) -> tuple[int, str, dict | None]:
    recipes = tmp_path / "recipes.yaml"
    recipes.write_text(RECIPES)
    out = tmp_path / "report"
    code, output = _main("study", "--model", f"hf:{model_dir}", "--recipes", str(recipes),
                         "--out", str(out), *SMALL, *extra)  # fmt: skip
    data = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return code, output, data


@pytest.mark.parametrize("fixture", ["llama_dir", "gpt2_dir"])
def test_study_on_a_causal_lm(fixture: str, request: pytest.FixtureRequest, tmp_path: Path):
    code, output, data = _study(tmp_path, request.getfixturevalue(fixture),
                                "--target", "eyeriss,h100")  # fmt: skip
    assert code == 0, output
    assert "Traceback" not in output
    assert data["primary_metric"] == "perplexity" and data["higher_is_better"] is False
    assert data["delta_kind"] == "ratio"
    rows = {r["name"]: r for r in data["recipes"]}
    base = rows["fp32"]
    assert base["metrics"]["perplexity"] > 1 and 0 <= base["metrics"]["top1"] <= 100
    for r in rows.values():  # deltas are ratios to the baseline's perplexity
        want = r["metrics"]["perplexity"] / base["metrics"]["perplexity"]
        assert r["delta"] == pytest.approx(want)
        for target in ("eyeriss", "h100"):
            cost = r["costs"][target]
            assert set(cost["phases"]) == {"prefill", "decode"}
            assert cost["energy_pj"] > 0 and cost["latency_s"] > 0
            assert cost["phases"]["decode"]["energy_per_token_pj"] > 0
    # kv: shrinks the cache (bits with scales) and its share of decode energy; weights untouched
    kv = rows["kv int2 kivi"]["costs"]["eyeriss"]
    fp = base["costs"]["eyeriss"]
    # int2 + one fp32 scale per 8 (head_dim 8 per token; 8 tokens per channel): 6 bits, not 32
    assert kv["kv_bits_per_element"] == 6
    assert kv["kv_cache_bytes"] == pytest.approx(fp["kv_cache_bytes"] * 6 / 32)
    assert kv["phases"]["decode"]["kv_cache_pj"] < fp["phases"]["decode"]["kv_cache_pj"]
    # weights: 4-bit layers, the float LM head (300 x 32 x 4 bytes) counted as it is stored
    assert base["model_bytes"] / 2 > rows["int4"]["model_bytes"] > 300 * 32 * 4
    # the LM head stays float unless asked: its weight is not in a 4-bit format
    head = next(lay for lay in rows["int4"]["layers"] if lay["name"] == "lm_head")
    assert head["weight_format"] == "float32"
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Prefill and decode" in html and "Where each phase" in html
    assert "perplexity" in output and "ratio" in output


def test_quantize_lm_head_flag(llama_dir: Path, tmp_path: Path) -> None:
    code, output, data = _study(tmp_path, llama_dir, "--quantize-lm-head")
    assert code == 0, output
    int4 = next(r for r in data["recipes"] if r["name"] == "int4")
    head = next(lay for lay in int4["layers"] if lay["name"] == "lm_head")
    assert head["weight_format"] == "int4/channel"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tokens", "100000"], "--tokens 100000 needs 100001"),
        (["--context", "60", "--decode", "10"], "exceed the model's 64 positions"),
        (["--seq-len", "128"], "--seq-len 128: the model has 64 positions"),
        (["--prompt", "0"], "--prompt 0: give a whole number"),
        (["--batch", "-1"], "--batch -1"),
        (["--tokens", "3"], "--tokens 3: give a whole number from 16"),
    ],
)
def test_bad_lm_options_are_one_line(
    extra: list[str], message: str, llama_dir: Path, tmp_path: Path
) -> None:
    code, output, data = _study(tmp_path, llama_dir, *extra)
    assert code == 2 and data is None
    assert message in " ".join(output.split()), output
    assert "Traceback" not in output
    assert not (tmp_path / "report").exists()


def test_bad_text_files_and_specs(llama_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    short = tmp_path / "short.txt"
    short.write_text("A few words only.")
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    cases = [
        (["--model", f"hf:{llama_dir}", "--text", str(empty)], "the file is empty"),
        (["--model", f"hf:{llama_dir}", "--text", str(binary)], "not UTF-8 text"),
        (["--model", f"hf:{llama_dir}", "--text", str(tmp_path / "nope.txt")], "no such file"),
        (["--model", f"hf:{llama_dir}", "--text", str(short)], "the evaluation text"),
        (["--model", f"hf:{llama_dir}", "--calib", str(short)], "fewer than one --seq-len"),
        (["--model", f"hf:{tmp_path / 'missing'}"], "is not a directory"),
        (["--model", "digits", "--text", str(short)], "go with a language model"),
    ]
    for args, message in cases:
        out = tmp_path / "r"
        opts = SMALL if args[1] != "digits" else ["--no-cache"]
        code, output = _main("study", *args, "--out", str(out), *opts)
        assert code == 2, (args, output)
        assert message in " ".join(output.split()), (args, output)
        assert "Traceback" not in output and not out.exists()
    # kv: on a model without a KV cache: the recipe is skipped with the reason (a recipe whose
    # lever reaches nothing never stops a study), and the warning says every recipe was
    out = tmp_path / "r"
    code, output = _main("study", "--model", "digits", "--recipes", str(_kv_recipes(tmp_path)),
                         "--out", str(out), "--no-cache")  # fmt: skip
    text = " ".join(output.split())
    assert code == 0 and "skipped: no KV cache" in text and "every recipe but the baseline" in text
    assert "Traceback" not in output


def _kv_recipes(tmp_path: Path) -> Path:
    p = tmp_path / "kv.yaml"
    p.write_text('- {name: kv, quant: "kv:int4"}\n')
    return p


@pytest.mark.slow
def test_smollm2_study_runs_offline(tmp_path: Path) -> None:
    """The shipped model end to end, kept small: two recipes, 64 scored tokens."""
    recipes = tmp_path / "r.yaml"
    recipes.write_text('- {name: fp32}\n- {name: kv int4, quant: "kv:int4@kivi"}\n')
    out = tmp_path / "report"
    code, output = _main("study", "--model", "smollm2", "--recipes", str(recipes), "--out",
                         str(out), "--tokens", "64", "--seq-len", "64", "--prompt", "32",
                         "--context", "64", "--decode", "4", "--no-cache")  # fmt: skip
    assert code == 0, output
    data = json.loads((out / "report.json").read_text())
    assert "Q4_1" in " ".join(data["notes"])
    base, kv = data["recipes"]
    assert 2 < base["metrics"]["perplexity"] < 100
    assert kv["costs"]["eyeriss"]["kv_cache_bytes"] < base["costs"]["eyeriss"]["kv_cache_bytes"] / 5
