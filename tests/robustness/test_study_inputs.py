"""`picojoule study` on malformed inputs: every case exits 2 with one `error:` line that names
the problem, prints no traceback, and (for inputs checked up front) creates no `--out`.

Three tables: recipe YAML files, option values (`--recipes`, `--model/--data/--metric`,
`--target`), and user callables that fail only when the study runs them. Runs `cli.main()`
in-process (what the `picojoule` script calls), since it owns the exit code and the one-line
rendering of `PicojouleError`; a subprocess per case would cost a second of imports each.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from picojoule import cli

HERE = Path(__file__).parent
USER = "pj_study_user_fixture"


@pytest.fixture(autouse=True)
def _fast_cli(monkeypatch):
    # idle_threads samples /proc/stat for 0.2 s per call; no case here depends on it
    monkeypatch.setattr(cli, "busy_cores", lambda: None)
    monkeypatch.syspath_prepend(str(HERE))


def _study(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["picojoule", "study", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out + cap.err


def _assert_one_error(code: int, out: str, fragment: str) -> None:
    flat = " ".join(out.split())  # rich wraps long lines at the console width
    assert code == 2, out
    assert "Traceback" not in out, out
    assert flat.count("error:") == 1, out
    assert fragment in flat, f"{fragment!r} not in {flat!r}"


# --- recipe YAML files: (id, file text, message fragment) -------------------------------------
YAML_CASES = [
    ("empty-file", "", "is empty; expected a non-empty list of recipes"),
    ("comment-only", "# recipes go here\n", "is empty"),
    ("empty-list", "[]\n", "is empty"),
    ("empty-recipes-key", "recipes: []\n", "is empty"),
    ("null-recipes-key", "recipes:\n", "is empty"),
    ("recipes-is-mapping", "recipes:\n  name: a\n  quant: w:int8\n", "holds a dict"),
    ("one-mapping-not-list", "name: int8\nquant: w:int8,a:int8\n", "put '- ' before"),
    ("top-key-typo", "recipe:\n- name: a\n", "did you mean: recipes?"),
    ("top-key-extra", "recipes:\n- name: a\nmodel: digits\n", "may hold only 'recipes:'"),
    ("plain-string", "int8 and nvfp4\n", "holds a str"),
    ("plain-number", "42\n", "holds a int"),
    ("list-of-strings", "- int8\n- nvfp4\n", "recipe #1 is a str ('int8'), not a mapping"),
    ("list-of-lists", "- [name, int8]\n", "recipe #1 is a list"),
    ("null-item", "- name: a\n-\n", "recipe #2 is a NoneType"),
    ("missing-name", "- quant: w:int8\n", "recipe #1 has no 'name'"),
    ("key-typo-quant", "- name: a\n  qaunt: w:int8\n", "'qaunt' (did you mean: quant?)"),
    ("key-typo-sparse", "- name: a\n  sparse: '2:4'\n", "(did you mean: sparsity?)"),
    ("key-typo-steps", "- name: a\n  finetune_step: 10\n", "(did you mean: finetune_steps?)"),
    ("key-typo-lr", "- name: a\n  lr: 0.01\n", "unknown keys 'lr'"),
    ("key-capitalised", "- name: a\n  Quant: w:int8\n", "(did you mean: quant?)"),
    ("key-unrelated", "- name: a\n  colour: red\n", "unknown keys 'colour'; valid: name,"),
    ("key-number", "- name: a\n  8: w:int8\n", "unknown keys 8"),
    ("dup-key", "- name: a\n  quant: w:int8\n  quant: w:int4\n", "key 'quant' is given twice"),
    ("dup-key-flow", "- {name: a, quant: 'w:int8', name: b}\n", "key 'name' is given twice"),
    ("dup-top-key", "recipes:\n- name: a\nrecipes:\n- name: b\n", "key 'recipes' is given twice"),
    ("dup-name", "- name: a\n- name: a\n  quant: w:int8\n", "recipe name 'a' is used twice"),
    ("name-null", "- name:\n  quant: w:int8\n", "name must be a non-empty"),
    ("name-empty", "- name: ''\n", "name must be a non-empty"),
    ("name-blank", "- name: '   '\n", "name must be a non-empty"),
    ("name-number", "- name: 8\n  quant: w:int8\n", "got 8"),
    ("name-bool", "- name: yes\n", "got True"),
    ("name-list", "- name: [a, b]\n", "got ['a', 'b']"),
    ("name-two-lines", '- name: "int8\\nper channel"\n', "one-line string"),
    ("quant-number", "- name: a\n  quant: 8\n", "recipe 'a': quant must be"),
    ("quant-list", "- name: a\n  quant: [w:int8, a:int8]\n", "quant must be"),
    ("quant-mapping", "- name: a\n  quant: {w: int8}\n", "quant must be"),
    ("quant-null", "- name: a\n  quant:\n", "got None"),
    ("quant-bad-format", "- name: a\n  quant: w:int9x\n", "unknown number format 'int9x'"),
    ("quant-equals", "- name: a\n  quant: w=int8\n", "is not key:value"),
    ("quant-semicolon", "- name: a\n  quant: w:int8;a:int8\n", "unknown number format"),
    ("quant-bad-key", "- name: a\n  quant: x:int8\n", "unknown key 'x'"),
    ("quant-key-twice", "- name: a\n  quant: w:int8,w:int4\n", "key 'w' given twice"),
    ("quant-trailing-comma", "- name: a\n  quant: 'w:int8,'\n", "is not key:value"),
    ("quant-bare-format", "- name: a\n  quant: int8\n", "is not key:value"),
    ("quant-cal-only", "- name: a\n  quant: cal:max\n", "cal: calibrates activations"),
    ("quant-bad-round", "- name: a\n  quant: w:int8,round:up\n", "round:up: use one of"),
    ("quant-percentile", "- name: a\n  quant: a:int8,cal:percentile150\n", "(0, 100]"),
    ("quant-bad-cal", "- name: a\n  quant: a:int8,cal:minmax\n", "unknown calibration"),
    ("quant-fp32", "- name: a\n  quant: fp32\n", "quantizes nothing"),
    ("quant-codebook-act", "- name: a\n  quant: a:codebook16\n", "codebooks share weights"),
    ("sparsity-unquoted", "- name: a\n  sparsity: 2:4\n", "sparsity must be a sparsity pattern"),
    ("sparsity-n-ge-m", "- name: a\n  sparsity: '3:2'\n", "keeps every weight"),
    ("sparsity-density", "- name: a\n  sparsity: unstructured:1.5\n", "must be in (0, 1]"),
    ("sparsity-word", "- name: a\n  sparsity: half\n", "unknown sparsity pattern 'half'"),
    ("sparsity-blank", "- name: a\n  sparsity: ' '\n", "empty sparsity recipe"),
    ("sparsity-percent", "- name: a\n  sparsity: 50%\n", "unknown sparsity pattern"),
    ("sparsity-number", "- name: a\n  sparsity: 0.5\n", "got 0.5 (float)"),
    ("winograd-negative", "- name: a\n  winograd: -2\n", "winograd must be a Winograd tile"),
    ("winograd-float", "- name: a\n  winograd: 4.0\n", "got 4.0 (float)"),
    ("winograd-quoted", "- name: a\n  winograd: '4'\n", "got '4' (str)"),
    ("winograd-notation", "- name: a\n  winograd: F(4,3)\n", "got 'F(4,3)'"),
    ("winograd-huge", "- name: a\n  winograd: 44\n", "got 44 (int)"),
    ("winograd-bool", "- name: a\n  winograd: true\n", "got True (bool)"),
    ("winograd-pair", "- name: a\n  winograd: [4, 4]\n", "winograd must be"),
    ("steps-negative", "- name: a\n  finetune_steps: -1\n", "finetune_steps must be a non-neg"),
    ("steps-fraction", "- name: a\n  finetune_steps: 1.5\n", "got 1.5 (float)"),
    ("steps-word", "- name: a\n  finetune_steps: lots\n", "got 'lots' (str)"),
    ("steps-null", "- name: a\n  finetune_steps:\n", "got None"),
    ("steps-sci", "- name: a\n  finetune_steps: 1e3\n", "got '1e3' (str)"),
    ("lr-zero", "- name: a\n  finetune_lr: 0\n", "finetune_lr must be a positive finite"),
    ("lr-negative", "- name: a\n  finetune_lr: -0.01\n", "got -0.01"),
    ("lr-inf", "- name: a\n  finetune_lr: .inf\n", "got inf"),
    ("lr-nan-yaml", "- name: a\n  finetune_lr: .nan\n", "got nan"),
    ("lr-nan-text", "- name: a\n  finetune_lr: nan\n", "got nan"),
    ("lr-word", "- name: a\n  finetune_lr: fast\n", "got 'fast' (str)"),
    ("lr-list", "- name: a\n  finetune_lr: [0.1]\n", "got [0.1] (list)"),
    ("lr-bool", "- name: a\n  finetune_lr: on\n", "got True (bool)"),
    ("second-recipe-bad", "- name: a\n- name: b\n  winograd: 3.5\n", "recipe 'b': winograd"),
    ("yaml-unclosed", "- name: [unclosed\n", "not valid YAML"),
    ("yaml-tab", "- name: a\n\tquant: w:int8\n", "not valid YAML"),
    ("yaml-indent", "- name: a\n  quant: w:int8\n - name: b\n", "not valid YAML"),
    ("yaml-python-tag", "!!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
    ("yaml-undefined-alias", "- name: a\n  <<: *base\n", "not valid YAML"),
    ("yaml-unhashable-key", "- name: a\n  ? [w, a]\n  : int8\n", "a mapping key must be"),
    ("yaml-two-documents", "- name: a\n---\n- name: b\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "fragment"), [c[1:] for c in YAML_CASES],
                         ids=[c[0] for c in YAML_CASES])  # fmt: skip
def test_recipes_yaml(monkeypatch, capsys, tmp_path, text, fragment):
    recipes = tmp_path / "recipes.yaml"
    recipes.write_text(text, encoding="utf-8")
    out_dir = tmp_path / "out"
    code, out = _study(monkeypatch, capsys, "--recipes", str(recipes), "--out", str(out_dir),
                       "--no-cache", "--model", "digits")  # fmt: skip
    _assert_one_error(code, out, fragment)
    assert not out_dir.exists()  # checked before --out is created


def test_recipes_file_not_utf8(monkeypatch, capsys, tmp_path):
    recipes = tmp_path / "recipes.yaml"
    recipes.write_bytes(b"- name: \xff\xfe caf\xe9\n")  # saved as Latin-1 by an old editor
    code, out = _study(monkeypatch, capsys, "--recipes", str(recipes), "--no-cache",
                       "--out", str(tmp_path / "out"))  # fmt: skip
    _assert_one_error(code, out, "not UTF-8")


# --- option values: (id, args, message fragment); "{tmp}" is a scratch directory ----------
_USER_ARGS = ["--model", f"{USER}:build", "--data", f"{USER}:loader", "--metric", f"{USER}:score"]
OPTION_CASES = [
    ("recipes-empty", ["--recipes", ""], "--recipes is empty"),
    ("recipes-blank", ["--recipes", "   "], "--recipes is empty"),
    ("recipes-directory", ["--recipes", "{tmp}"], "is a directory; give a YAML file"),
    ("recipes-missing-yaml", ["--recipes", "{tmp}/recipes.yaml"], "no such recipes file"),
    ("recipes-missing-dir", ["--recipes", "configs/"], "no such recipes file"),
    ("recipes-preset-typo", ["--recipes", "formats_sweep"], "did you mean: formats-sweep"),
    ("recipes-preset-case", ["--recipes", "Default"], "did you mean: default"),
    ("model-empty", ["--model", ""], "--model is empty"),
    ("model-unknown-name", ["--model", "resnet50"], "use 'digits', 'minilm'"),
    ("model-typo", ["--model", "digit"], "did you mean: digits"),
    ("model-st-empty", ["--model", "st:"], "needs a directory"),
    ("model-st-missing", ["--model", "st:{tmp}/no-such-model"], "is not a directory"),
    ("model-st-file", ["--model", "st:{tmp}/file.txt"], "is not a directory"),
    ("model-without-data", ["--model", f"{USER}:build"], "needs --data"),
    (
        "model-without-metric",
        ["--model", f"{USER}:build", "--data", f"{USER}:loader"],
        "needs --data pkg.module:loader and --metric",
    ),
    (
        "model-no-module",
        ["--model", ":build", "--data", "a:b", "--metric", "a:c"],
        "expected 'package.module:function'",
    ),
    (
        "model-no-function",
        ["--model", f"{USER}:", "--data", "a:b", "--metric", "a:c"],
        "expected 'package.module:function'",
    ),
    (
        "model-not-installed",
        [
            "--model",
            "no_such_pkg.mod:build",
            "--data",
            f"{USER}:loader",
            "--metric",
            f"{USER}:score",
        ],
        "cannot import 'no_such_pkg.mod'",
    ),
    (
        "model-file-path",
        ["--model", "models/net.py:build", "--data", "a:b", "--metric", "a:c"],
        "cannot import 'models/net.py'",
    ),
    (
        "model-missing-function",
        ["--model", f"{USER}:biuld", "--data", f"{USER}:loader", "--metric", f"{USER}:score"],
        "did you mean: build",
    ),
    (
        "model-not-callable",
        ["--model", f"{USER}:NUM_CLASSES", "--data", f"{USER}:loader", "--metric", f"{USER}:score"],
        "has no callable 'NUM_CLASSES'",
    ),
    (
        "data-missing-function",
        ["--model", f"{USER}:build", "--data", f"{USER}:load", "--metric", f"{USER}:score"],
        "--data 'pj_study_user_fixture:load'",
    ),
    (
        "metric-typo",
        ["--model", f"{USER}:build", "--data", f"{USER}:loader", "--metric", f"{USER}:scor"],
        "did you mean: score",
    ),
    (
        "data-with-builtin",
        ["--model", "digits", "--data", f"{USER}:loader"],
        "--data only go with a user model",
    ),
    (
        "metric-with-minilm",
        ["--model", "minilm", "--metric", f"{USER}:score"],
        "--metric only go with a user model",
    ),
    (
        "eval-with-builtin",
        ["--model", "digits", "--eval", f"{USER}:held_out"],
        "--eval only go with a user model",
    ),
    ("metric-name-with-builtin", ["--metric-name", "f1"], "--metric-name only go with a user"),
    (
        "lower-with-builtin",
        ["--model", "minilm", "--lower-is-better"],
        "--lower-is-better only go with a user model",
    ),
    ("eval-empty", [*_USER_ARGS, "--eval", ""], "--eval is empty"),
    (
        "eval-missing-function",
        [*_USER_ARGS, "--eval", f"{USER}:held"],
        "--eval 'pj_study_user_fixture:held'",
    ),
    (
        "eval-not-importable",
        [*_USER_ARGS, "--eval", "no_such_pkg_pj:held_out"],
        "--eval 'no_such_pkg_pj:held_out': cannot import",
    ),
    ("metric-name-empty", [*_USER_ARGS, "--metric-name", " "], "--metric-name is empty"),
    ("metric-name-two-lines", [*_USER_ARGS, "--metric-name", "top1\nacc"], "one-line name"),
    ("metric-name-long", [*_USER_ARGS, "--metric-name", "x" * 41], "at most 40 printable"),
    ("target-empty", ["--target", ""], "--target is empty"),
    ("target-commas", ["--target", " , "], "--target is empty"),
]


@pytest.mark.parametrize(("args", "fragment"), [c[1:] for c in OPTION_CASES],
                         ids=[c[0] for c in OPTION_CASES])  # fmt: skip
def test_option_values(monkeypatch, capsys, tmp_path, args, fragment):
    (tmp_path / "file.txt").write_text("not a model")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out_dir = tmp_path / "out"
    code, out = _study(monkeypatch, capsys, *args, "--out", str(out_dir), "--no-cache")
    _assert_one_error(code, out, fragment)
    assert not out_dir.exists()


# modules that fail on import, written where --model finds them: (id, source, fragment)
BROKEN_MODULES = [
    ("import-raises", "raise RuntimeError('needs CUDA')\n", "RuntimeError: needs CUDA"),
    ("syntax-error", "def build(:\n    pass\n", "SyntaxError"),
    ("exits-on-import", "import sys\nsys.exit('run me as a script')\n", "SystemExit"),
    ("missing-dependency", "import no_such_dependency_pj\n", "ModuleNotFoundError"),
]


@pytest.mark.parametrize(("source", "fragment"), [c[1:] for c in BROKEN_MODULES],
                         ids=[c[0] for c in BROKEN_MODULES])  # fmt: skip
def test_user_module_that_fails_to_import(monkeypatch, capsys, tmp_path, source, fragment):
    name = f"pj_broken_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    out_dir = tmp_path / "out"
    code, out = _study(monkeypatch, capsys, "--model", f"{name}:build", "--data",
                       f"{USER}:loader", "--metric", f"{USER}:score", "--out", str(out_dir),
                       "--no-cache")  # fmt: skip
    _assert_one_error(code, out, f"--model '{name}:build': cannot import")
    _assert_one_error(code, out, fragment)
    assert not out_dir.exists()


# --- user callables that fail when the study runs them: (id, build, loader, score, fragment)
RUNTIME_CASES = [
    (
        "build-raises",
        "build_raises",
        "loader",
        "score",
        "build_raises raised FileNotFoundError: [Errno 2] No such file",
    ),
    (
        "build-returns-none",
        "build_returns_none",
        "loader",
        "score",
        "returned NoneType, not a torch nn.Module",
    ),
    (
        "build-returns-state-dict",
        "build_returns_state_dict",
        "loader",
        "score",
        "returned OrderedDict, not a torch nn.Module",
    ),
    ("build-exits", "build_exits", "loader", "score", "raised SystemExit: no GPU found"),
    (
        "loader-raises",
        "build",
        "loader_raises",
        "score",
        "loader_raises raised RuntimeError: dataset not downloaded; run download.sh then retry",
    ),
    (
        "loader-returns-none",
        "build",
        "loader_returns_none",
        "score",
        "must return an iterable of (inputs, targets) batches",
    ),
    ("loader-empty", "build", "loader_empty", "score", "yielded no batches"),
    (
        "loader-bare-tensors",
        "build",
        "loader_bare_tensors",
        "score",
        "must yield (inputs, targets) pairs; its first batch is a Tensor",
    ),
    ("loader-triples", "build", "loader_triples", "score", "first batch is a tuple of 3"),
    (
        "loader-dict-inputs",
        "build_dict_model",
        "loader_dict_inputs",
        "score",
        "inputs of a batch must be a tensor batched along its first dimension, not dict",
    ),
    ("metric-nan", "build", "loader", "score_nan", "score_nan returned nan; it must return a fin"),
    ("metric-inf", "build", "loader", "score_inf", "returned inf"),
    ("metric-text", "build", "loader", "score_text", "returned a str ("),
    ("metric-none", "build", "loader", "score_none", "returned None"),
    ("metric-vector", "build", "loader", "score_per_class", "Tensor of shape (3,), not one num"),
    ("metric-empty-tensor", "build", "loader", "score_empty_tensor", "of shape (0,)"),
    ("metric-raises", "build", "loader", "score_raises", "score_raises failed: KeyError: 'top5'"),
    ("metric-complex", "build", "loader", "score_complex", "returned a complex"),
    ("metric-bool", "build", "loader", "score_bool", "returned a bool"),
    ("metric-dict", "build", "loader", "score_dict", "returned a dict"),
]


@pytest.mark.parametrize(("build", "loader", "score", "fragment"), [c[1:] for c in RUNTIME_CASES],
                         ids=[c[0] for c in RUNTIME_CASES])  # fmt: skip
def test_user_callables_that_fail(monkeypatch, capsys, tmp_path, build, loader, score, fragment):
    recipes = tmp_path / "r.yaml"
    recipes.write_text("- name: fp32\n")
    code, out = _study(monkeypatch, capsys, "--model", f"{USER}:{build}", "--data",
                       f"{USER}:{loader}", "--metric", f"{USER}:{score}", "--recipes",
                       str(recipes), "--out", str(tmp_path / "out"), "--no-cache")  # fmt: skip
    _assert_one_error(code, out, fragment)


def test_the_fixture_itself_runs(monkeypatch, capsys, tmp_path):
    """The good callables pass: every failure above is the one broken piece, not the rest."""
    recipes = tmp_path / "r.yaml"
    recipes.write_text("- name: fp32\n- name: int8\n  quant: w:int8\n")
    code, out = _study(monkeypatch, capsys, "--model", f"{USER}:build", "--data",
                       f"{USER}:loader", "--metric", f"{USER}:score", "--recipes",
                       str(recipes), "--out", str(tmp_path / "out"), "--no-cache")  # fmt: skip
    assert code == 0, out
    assert (tmp_path / "out" / "report.json").exists()


# --- held-out data and splits, which fail only when the study loads them: (id, --data loader,
# --eval loader or None, fragment)
DATA_CASES = [
    (
        "splits-typo",
        "loader_splits_typo",
        None,
        "returned a mapping with key 'test'; its keys are splits: train, calib, eval - held-out",
    ),
    ("splits-eval-only", "loader_splits_eval_only", None, "without 'train' or 'calib'"),
    (
        "splits-not-batches",
        "loader_splits_not_batches",
        None,
        "['train'] is a int; each split is an iterable of (inputs, targets) batches",
    ),
    ("splits-empty-train", "loader_splits_empty_train", None, "['train'] yielded no batches"),
    (
        "splits-and-eval",
        "loader_splits_with_eval",
        "held_out",
        "returned an 'eval' split and --eval pj_study_user_fixture:held_out gives held-out data "
        "too; keep one of them",
    ),
    ("eval-empty", "loader", "held_out_empty", "held_out_empty yielded no batches"),
    ("eval-mapping", "loader", "held_out_dict", "held-out data is one iterable of batches"),
    (
        "eval-raises",
        "loader",
        "held_out_raises",
        "--eval pj_study_user_fixture:held_out_raises raised OSError: held-out shard missing",
    ),
]


@pytest.mark.parametrize(("loader", "held", "fragment"), [c[1:] for c in DATA_CASES],
                         ids=[c[0] for c in DATA_CASES])  # fmt: skip
def test_held_out_data_and_splits(monkeypatch, capsys, tmp_path, loader, held, fragment):
    recipes = tmp_path / "r.yaml"
    recipes.write_text("- name: fp32\n")
    extra = ["--eval", f"{USER}:{held}"] if held else []
    code, out = _study(monkeypatch, capsys, "--model", f"{USER}:build", "--data",
                       f"{USER}:{loader}", "--metric", f"{USER}:score", "--recipes",
                       str(recipes), "--out", str(tmp_path / "out"), "--no-cache",
                       *extra)  # fmt: skip
    _assert_one_error(code, out, fragment)
    assert not (tmp_path / "out").exists()  # removed again: the run failed
