"""A user model's data, metric and threads: `--eval` held-out batches (or an 'eval' split of
`--data`) score the recipes while `--data` calibrates and fine-tunes; without held-out data the
fine-tuned rows are marked; `--metric-name` and `--lower-is-better`; and `build()`, the
loaders and the metric run under the process's own thread count, not `--threads`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import user_model_fixture as fx

from picojoule import cli
from picojoule.study import tasks as T
from picojoule.study.tasks import UserTask

MOD = "user_model_fixture"
RECIPES = (
    "- name: fp32\n- name: int8\n  quant: w:int8,a:int8\n"
    "- name: 2:4+ft\n  sparsity: '2:4'\n  finetune_steps: 20\n"
)


@pytest.fixture(autouse=True)
def _cli(monkeypatch):
    monkeypatch.setattr(cli, "busy_cores", lambda: None)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def _study(monkeypatch, capsys, tmp_path, *args: str) -> tuple[int, str, dict | None]:
    recipes = tmp_path / "r.yaml"
    recipes.write_text(RECIPES)
    out_dir = tmp_path / "o"
    monkeypatch.setattr(sys, "argv", [
        "picojoule", "study", "--model", f"{MOD}:build", "--recipes", str(recipes), "--out",
        str(out_dir), "--no-cache", "--threads", "1", *args,
    ])  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        cli.main()
    cap = capsys.readouterr()
    doc_path = out_dir / "report.json"
    doc = json.loads(doc_path.read_text()) if doc_path.exists() else None
    return int(exc.value.code or 0), cap.out + cap.err, doc


def test_eval_loader_scores_every_row(monkeypatch, capsys, tmp_path):
    code, out, doc = _study(monkeypatch, capsys, tmp_path, "--data", f"{MOD}:loader",
                            "--metric", f"{MOD}:count", "--eval", f"{MOD}:held_out")  # fmt: skip
    assert code == 0, out
    # the metric saw the 24 held-out samples on every row, never the 32 training ones
    assert [r["metrics"]["metric"] for r in doc["recipes"]] == [24.0, 24.0, 24.0]
    assert doc["held_out"] is True
    assert doc["scored_on"] == f"--eval {MOD}:held_out (held out)"
    assert all(r["scored_on"] == doc["scored_on"] for r in doc["recipes"])
    assert not any(r["scored_on_training_data"] for r in doc["recipes"])
    assert "†" not in out
    page = (tmp_path / "o" / "report.html").read_text()
    assert f"scored on --eval {MOD}:held_out (held out)" in page
    assert page.count("<td>held-out data</td>") == 3


def test_without_held_out_data_fine_tuned_rows_are_marked(monkeypatch, capsys, tmp_path):
    code, out, doc = _study(monkeypatch, capsys, tmp_path, "--data", f"{MOD}:loader",
                            "--metric", f"{MOD}:count")  # fmt: skip
    assert code == 0, out
    assert [r["metrics"]["metric"] for r in doc["recipes"]] == [32.0, 32.0, 32.0]
    assert doc["held_out"] is False and "not held out" in doc["scored_on"]
    flags = {r["name"]: r["scored_on_training_data"] for r in doc["recipes"]}
    assert flags == {"fp32": False, "int8": False, "2:4+ft": True}
    row = next(ln for ln in out.splitlines() if ln.startswith("│ 2:4+ft"))
    assert "32 †" in row
    assert "scored on its own training data" in " ".join(out.split())
    page = (tmp_path / "o" / "report.html").read_text()
    assert page.count("<td>† its own training data</td>") == 1
    assert "No held-out data: every recipe is scored on --data" in page  # the task's note


def test_data_loader_returning_splits(monkeypatch, capsys, tmp_path):
    code, out, doc = _study(monkeypatch, capsys, tmp_path, "--data", f"{MOD}:splits",
                            "--metric", f"{MOD}:count")  # fmt: skip
    assert code == 0, out
    assert [r["metrics"]["metric"] for r in doc["recipes"]] == [24.0, 24.0, 24.0]
    assert doc["held_out"] is True
    assert doc["scored_on"] == f"the 'eval' split of --data {MOD}:splits (held out)"


def test_each_split_serves_its_role():
    def batches(n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        return [(torch.randn(n, 8, generator=g), torch.zeros(n, dtype=torch.long))]

    train, calib, held = batches(4, 0), batches(5, 1), batches(6, 2)
    seen = []
    task = UserTask(build=fx.build, loader=lambda: {"train": train, "calib": calib},
                    score=lambda m, b: seen.append(b) or 1.0, eval_loader=lambda: held)  # fmt: skip
    assert task.calibration_batches(4)[0] is calib[0][0]
    assert task.train_batches()[0] is train[0]
    assert task.example_input().shape == (1, 8)
    task.evaluate(task.model())
    assert seen == [held]
    assert task.held_out
    plain = UserTask(build=fx.build, loader=lambda: train, score=lambda m, b: 1.0)
    assert not plain.held_out and plain.calibration_batches(1)[0] is train[0][0]


def test_metric_name_and_lower_is_better(monkeypatch, capsys, tmp_path):
    code, out, doc = _study(monkeypatch, capsys, tmp_path, "--data", f"{MOD}:loader",
                            "--metric", f"{MOD}:score", "--eval", f"{MOD}:held_out",
                            "--metric-name", "error rate", "--lower-is-better")  # fmt: skip
    assert code == 0, out
    assert doc["primary_metric"] == "error rate" and doc["higher_is_better"] is False
    assert doc["delta_kind"] == "difference"
    assert "error rate" in next(ln for ln in out.splitlines() if "┃ recipe" in ln)
    rows = [(r["cost"]["energy_pj"], r["metrics"]["error rate"], r["pareto_front"], r["delta"])
            for r in doc["recipes"]]  # fmt: skip
    base = rows[0][1]
    for e, m, front, delta in rows:
        # lower is better: a row is on the front when none is cheaper and at most as high
        better = [(e2, m2) for e2, m2, *_ in rows if e2 <= e and m2 <= m and (e2, m2) != (e, m)]
        assert front == (not better)
        assert delta is None or delta == pytest.approx(m - base)


def test_user_code_runs_under_the_process_threads(monkeypatch, capsys, tmp_path):
    """--threads (or the idle cores) is picojoule's choice for its own work; build(), the
    loader and the metric see the thread count the process had before."""
    before = torch.get_num_threads()
    start = 1 if before != 1 else 2
    monkeypatch.setattr(T, "_START_THREADS", None)
    fx.THREADS_SEEN.clear()
    try:
        torch.set_num_threads(start)
        code, out, _ = _study(monkeypatch, capsys, tmp_path, "--data", f"{MOD}:loader_threads",
                              "--metric", f"{MOD}:score_threads", "--model",
                              f"{MOD}:build_threads", "--threads", "3")  # fmt: skip
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert code == 0, out
    seen = fx.THREADS_SEEN
    assert seen["build"] == [start]
    assert set(seen["loader"]) == {start} and set(seen["score"]) == {start}
    assert set(seen["metric forward"]) == {start}
    assert 3 in seen["forward"]  # picojoule's own passes (costing) ran on its 3 threads
    assert after == 3  # and picojoule's count is back after each call into user code


def test_user_threads_is_a_no_op_where_picojoule_never_chose(monkeypatch):
    monkeypatch.setattr(T, "_START_THREADS", None)
    n = torch.get_num_threads()
    with T.user_threads():
        assert torch.get_num_threads() == n


def test_python_api_takes_held_out_data_and_the_metric_name():
    from picojoule.errors import ConfigError
    from picojoule.study import Recipe, run

    seen = []
    res = run(fx.build, fx.loader, lambda m, b: seen.append(len(b[0][1])) or 0.5,
              [Recipe(name="fp32"), Recipe(name="int8", quant="w:int8")], eval_data=fx.held_out,
              metric_name="loss", higher_is_better=False)  # fmt: skip
    assert seen == [24, 24]  # held-out batches, every row
    assert res.primary_metric == "loss" and not res.higher_is_better and res.held_out
    assert res.results[1].metrics == {"loss": 0.5} and res.delta(res.results[1]) == 0.0
    with pytest.raises(ConfigError, match="eval_data must be an iterable of held-out"):
        run(fx.build, fx.loader, fx.score, "formats-sweep", eval_data=3)
    with pytest.raises(ConfigError, match="--metric-name is empty"):
        run(fx.build, fx.loader, fx.score, "formats-sweep", metric_name="")
