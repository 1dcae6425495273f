"""Numeric and choice options of `map`, `dse`, `winograd`, `sparsity` and `explain` on bad
values: each exits 2 with one `error:` line naming the option, the value and the fix, prints
no traceback, and fails before any work (no model trained, no design evaluated).

Runs `cli.main()` in-process, as the `picojoule` script does: it mounts the sub-app, owns the
exit code and renders a `PicojouleError` as one line. Click's own parse errors (`--batch abc`)
also exit 2 without a traceback; a few cases pin that too.
"""

from __future__ import annotations

import sys

import pytest

from picojoule import cli

# (id, argv after `picojoule`, message fragment)
CASES = [
    # --- picojoule map ------------------------------------------------------------------------
    ("map-batch-zero", ["map", "--batch", "0"], "--batch 0: out of range 1..65536"),
    ("map-batch-negative", ["map", "--batch", "-5"], "--batch -5: out of range"),
    ("map-batch-huge", ["map", "--batch", "10000000"], "--batch 10000000: out of range"),
    ("map-batch-text", ["map", "--batch", "abc"], "Invalid value for '--batch'"),
    ("map-budget-negative", ["map", "--time-budget", "-1"], "--time-budget -1.0: out of range"),
    ("map-budget-zero", ["map", "--time-budget", "0"], "out of range >0..604800"),
    ("map-budget-nan", ["map", "--time-budget", "nan"], "give a finite number"),
    ("map-budget-inf", ["map", "--time-budget", "inf"], "give a finite number"),
    ("map-budget-year", ["map", "--time-budget", "31536000"], "seconds, at most a week"),
    ("map-seed-negative", ["map", "--seed", "-1"], "--seed -1: out of range 0..4294967295"),
    ("map-seed-huge", ["map", "--seed", "99999999999"], "numpy and torch seeds are 32-bit"),
    ("map-objective-typo", ["map", "--objective", "energi"], "did you mean: energy"),
    ("map-objective-case", ["map", "--objective", "Latency"], "did you mean: latency"),
    ("map-model-typo", ["map", "--model", "resnet19"], "did you mean: resnet18"),
    ("map-model-empty", ["map", "--model", ""], "--model is empty; give a built-in workload"),
    ("map-model-st-missing", ["map", "--model", "st:no/such/dir"], "is not a directory"),
    ("map-model-hf-missing", ["map", "--model", "hf:no/such/dir"], "give hf:DIR"),
    ("map-user-no-data", ["map", "--model", "no_such_mod:build"], "needs --data"),
    (
        "map-user-no-module",
        ["map", "--model", "no_such_mod:build", "--data", "no_such_mod:load"],
        "cannot import 'no_such_mod'",
    ),
    ("map-builtin-with-data", ["map", "--data", "m:load"], "resnet18 is a built-in workload"),
    ("map-arch-typo", ["map", "--arch", "eyriss"], "did you mean: eyeriss"),
    ("map-arch-missing-file", ["map", "--arch", "no/such/arch.yaml"], "no preset or file named"),
    ("map-arch-directory", ["map", "--arch", "."], "is a directory"),
    ("map-recipe-bad", ["map", "--recipe", "w:int77"], "int77"),
    # --- picojoule dse ------------------------------------------------------------------------
    ("dse-workers-negative", ["dse", "run", "magnet-resnet50", "--workers", "-2"], "--workers -2"),
    ("dse-workers-zero", ["dse", "run", "magnet-resnet50", "--workers", "0"], "1..4096"),
    ("dse-workers-huge", ["dse", "run", "magnet-resnet50", "--workers", "100000"], "out of range"),
    ("dse-workers-text", ["dse", "run", "magnet-resnet50", "--workers", "all"], "Invalid value"),
    ("dse-limit-negative", ["dse", "run", "magnet-resnet50", "--limit", "-1"], "--limit -1"),
    ("dse-backend-typo", ["dse", "run", "magnet-resnet50", "--backend", "rayy"], "mean: ray"),
    ("dse-backend-unknown", ["dse", "run", "magnet-resnet50", "--backend", "slurm"], "local, ray"),
    (
        "dse-address-without-ray",
        ["dse", "run", "magnet-resnet50", "--address", "10.0.0.1:6379"],
        "needs --backend ray",
    ),
    ("dse-space-typo", ["dse", "run", "magnet-resnet5"], "did you mean: magnet-resnet50"),
    ("dse-space-missing", ["dse", "run", "no/such/space.yaml"], "no design-space file"),
    ("dse-model-typo", ["dse", "run", "formats-digits", "--model", "resnt18"], "mean: resnet18"),
    (
        "dse-model-hf-missing",
        ["dse", "run", "formats-digits", "--model", "hf:no/such/dir"],
        "give hf:DIR",
    ),
    ("dse-show-limit", ["dse", "show", ".", "--limit", "-3"], "--limit -3: out of range"),
    ("dse-show-missing", ["dse", "show", "no/such/run"], "no results database"),
    # --- picojoule winograd -------------------------------------------------------------------
    ("wino-threads-zero", ["winograd", "study", "--threads", "0"], "--threads 0: out of range"),
    ("wino-threads-negative", ["winograd", "study", "--threads", "-1"], "--threads -1"),
    ("wino-r-zero", ["winograd", "study", "--r", "0"], "--r 0: out of range 1..15"),
    ("wino-r-huge", ["winograd", "study", "--r", "99"], "--r 99: out of range"),
    ("wino-channels-zero", ["winograd", "study", "--channels", "0"], "--channels 0"),
    ("wino-channels-huge", ["winograd", "study", "--channels", "100000"], "memory grows"),
    ("wino-size-zero", ["winograd", "study", "--size", "0"], "--size 0: out of range"),
    ("wino-size-huge", ["winograd", "study", "--size", "100000"], "--size 100000"),
    ("wino-size-below-r", ["winograd", "study", "--size", "2"], "smaller than the kernel"),
    ("wino-batch-zero", ["winograd", "study", "--batch", "0"], "--batch 0: out of range"),
    ("wino-seed-negative", ["winograd", "study", "--seed", "-7"], "--seed -7"),
    ("wino-samples-zero", ["winograd", "study", "--real-samples", "0"], "--real-samples 0"),
    ("wino-tiles-zero", ["winograd", "study", "--tiles", "0"], "--tiles '0': 0 is out of range"),
    ("wino-tiles-huge", ["winograd", "study", "--tiles", "2,99"], "99 is out of range 1..16"),
    ("wino-tiles-text", ["winograd", "study", "--tiles", "2,x"], "comma-separated integers"),
    ("wino-tiles-empty", ["winograd", "study", "--tiles", " , "], "--tiles is empty"),
    ("wino-acc-tiles", ["winograd", "study", "--accuracy-tiles", "-2"], "--accuracy-tiles"),
    ("wino-format-typo", ["winograd", "study", "--formats", "fp17"], "fp17"),
    ("wino-points-typo", ["winograd", "study", "--point-sets", "chebyshev"], "'chebyshev'"),
    ("wino-model-typo", ["winograd", "study", "--model", "digts"], "did you mean: digits"),
    ("wino-model-st-missing", ["winograd", "study", "--model", "st:nowhere"], "not a directory"),
    ("wino-user-no-metric", ["winograd", "study", "--model", "m:b", "--data", "m:d"], "--metric"),
    ("wino-transforms-m-zero", ["winograd", "transforms", "0", "3"], "--m 0: out of range"),
    ("wino-transforms-r-huge", ["winograd", "transforms", "2", "99"], "--r 99: out of range"),
    # --- picojoule sparsity -------------------------------------------------------------------
    ("sp-steps-negative", ["sparsity", "report", "--finetune-steps", "-1"], "--finetune-steps"),
    ("sp-lr-zero", ["sparsity", "report", "--lr", "0"], "--lr 0.0: out of range >0..10"),
    ("sp-lr-negative", ["sparsity", "report", "--lr", "-0.1"], "--lr -0.1"),
    ("sp-lr-nan", ["sparsity", "report", "--lr", "nan"], "give a finite number"),
    ("sp-dtype-typo", ["sparsity", "report", "--dtype", "fp61"], "did you mean: fp16"),
    ("sp-recipe-bad-nm", ["sparsity", "report", "--recipe", "5:4"], "5:4"),
    ("sp-recipe-text", ["sparsity", "report", "--recipe", "sparse please"], "sparse please"),
    ("sp-measured-missing", ["sparsity", "report", "--measured", "no.json"], "no such file"),
    ("sp-model-typo", ["sparsity", "report", "--model", "minilim"], "did you mean: minilm"),
    ("sp-model-hf-empty", ["sparsity", "report", "--model", "hf:"], "give hf:DIR"),
    ("sp-user-no-data", ["sparsity", "report", "--model", "m:build"], "needs --data"),
    ("sp-digits-with-data", ["sparsity", "report", "--data", "m:d"], "--data only go with"),
    ("sp-shape-zero", ["sparsity", "layouts", "--shape", "0x5"], "2 positive sizes"),
    ("sp-shape-one-dim", ["sparsity", "layouts", "--shape", "4096"], "2 positive sizes"),
    ("sp-shape-negative", ["sparsity", "layouts", "--shape", "-4x4"], "2 positive sizes"),
    ("sp-shape-side-huge", ["sparsity", "layouts", "--shape", "100000000x4"], "is over 1,048,576"),
    ("sp-shape-too-big", ["sparsity", "layouts", "--shape", "100000x100000"], "1 GiB of fp32"),
    ("sp-density-over-one", ["sparsity", "layouts", "--density", "1.5"], "--density 1.5"),
    ("sp-density-negative", ["sparsity", "layouts", "--density", "-0.1"], "out of range 0..1"),
    ("sp-layout-dtype", ["sparsity", "layouts", "--dtype", "fp61"], "did you mean: fp16"),
    ("sp-layout-seed", ["sparsity", "layouts", "--seed", "-1"], "--seed -1"),
    ("sp-gemm-two-dims", ["sparsity", "costs", "--gemm", "1x2"], "3 positive sizes"),
    ("sp-costs-density", ["sparsity", "costs", "--density", "2"], "--density 2.0"),
    ("sp-costs-input", ["sparsity", "costs", "--input-density", "-1"], "--input-density -1.0"),
    ("sp-costs-dtype", ["sparsity", "costs", "--dtype", "fp64"], "choose fp32, fp16 or int8"),
    # --- picojoule explain --------------------------------------------------------------------
    ("ex-node-zero", ["explain", "formats", "--node", "0"], "--node 0.0: out of range 1..1000"),
    ("ex-node-huge", ["explain", "formats", "--node", "1e9"], "CMOS process node"),
    ("ex-reduction-zero", ["explain", "formats", "--reduction", "0"], "--reduction 0"),
    ("ex-reduction-huge", ["explain", "formats", "--reduction", "99999999999"], "--reduction"),
    ("ex-format-typo", ["explain", "formats", "fp61"], "did you mean: fp16"),
    ("ex-formats-empty", ["explain", "formats", ","], "comma-separated list of format names"),
    ("ex-math-typo", ["explain", "overhead", "--math", "publish"], "did you mean: published"),
    ("ex-overhead-negative", ["explain", "overhead", "--overhead-pj", "-5"], "--overhead-pj"),
    ("ex-overhead-node", ["explain", "overhead", "--node", "-45"], "--node -45.0"),
    ("ex-roofline-batch", ["explain", "roofline", "--batch", "0"], "--batch 0: out of range"),
    ("ex-roofline-gpu", ["explain", "roofline", "--gpu", "h101"], "unknown GPU 'h101'"),
    ("ex-roofline-model", ["explain", "roofline", "--model", "resnet19"], "did you mean"),
    ("ex-gpus-base", ["explain", "gpus", "--base", "k21x"], "k21x"),
]


def run_cli(monkeypatch, capsys, argv: list[str]) -> tuple[int, str]:
    """`picojoule ARGV` through `cli.main()`: (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["picojoule", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    cap = capsys.readouterr()
    return int(exc.value.code or 0), cap.out + cap.err


def assert_one_error(code: int, out: str, fragment: str) -> None:
    flat = " ".join(out.split())  # rich wraps long lines at the console width
    assert code == 2, out
    assert "Traceback" not in out, out
    assert fragment in flat, f"{fragment!r} not in {flat!r}"


@pytest.mark.parametrize(("argv", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_option(monkeypatch, capsys, tmp_path, argv, fragment):
    monkeypatch.chdir(tmp_path)  # nothing may be written; if it were, not into the repo
    code, out = run_cli(monkeypatch, capsys, argv)
    assert_one_error(code, out, fragment)
    if "Invalid value" not in fragment:  # ours, not click's usage box: exactly one line
        assert " ".join(out.split()).count("error:") == 1, out
    assert not any(tmp_path.iterdir()), "a refused command must not write anything"


def test_cases_are_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len({tuple(c[1]) for c in CASES}) == len(CASES)
