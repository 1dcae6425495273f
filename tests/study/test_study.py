"""The main job end to end on a small user model: recipes applied, costed, cached, reported."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest
import torch
import torch.nn as nn

from picojoule.errors import ConfigError
from picojoule.study import Recipe, load_recipes, run, summary_table, write_report
from picojoule.study.store import CacheError, ResultCache


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 8 * 8, 10),
    ).eval()  # fmt: skip


def _data():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))]


def _agreement(model: nn.Module, data) -> float:
    """Top-1 agreement (%) with the FP32 model: a metric that needs no training."""
    ref = _model()
    hits = total = 0
    for x, _ in data:
        hits += int((model(x).argmax(-1) == ref(x).argmax(-1)).sum())
        total += x.shape[0]
    return 100.0 * hits / total


RECIPES = [
    Recipe(name="fp32"),
    Recipe(name="int4", quant="w:int4/channel,a:int4"),
    Recipe(name="2:4", sparsity="2:4"),
    Recipe(name="wino", winograd=2),
]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    db = tmp_path_factory.mktemp("cache") / "s.sqlite"
    return run(_model, _data, _agreement, RECIPES, target="eyeriss", cache=db), db


def test_recipes_change_what_they_should(study):
    res, _ = study
    by = {r.recipe.name: r for r in res.results}
    assert by["fp32"].metrics["metric"] == 100.0
    assert (
        4.0 < by["int4"].bits_per_weight < 4.3 and 32.0 < by["fp32"].bits_per_weight < 32.2
    )  # biases counted
    assert by["int4"].model_bytes < by["fp32"].model_bytes / 4
    # 2:4 masks half the weights of the layers it applies to
    dens = [lay["density"] for lay in by["2:4"].layers]
    assert min(dens) == pytest.approx(0.5)
    # Winograd F(2,3) needs fewer multiplies than direct for the 3x3 convs
    assert by["wino"].cost["mults"] < by["fp32"].cost["mults"]
    assert by["wino"].cost["macs"] == by["fp32"].cost["macs"]
    # narrower formats cost less energy on the accelerator, and never beat the bound
    assert by["int4"].cost["energy_pj"] < by["fp32"].cost["energy_pj"]
    for r in res.results:
        assert r.cost["energy_pj"] >= r.cost["sol_energy_pj"] > 0


def test_second_run_is_served_from_cache(study):
    _, db = study
    again = run(_model, _data, _agreement, RECIPES, target="eyeriss", cache=db)
    assert all(r.cached for r in again.results)
    assert [r.metrics for r in again.results] == [r.metrics for r in study[0].results]


def test_report_files(study, tmp_path):
    jpath, hpath = write_report(study[0], tmp_path / "out")
    doc = json.loads(jpath.read_text())
    assert doc["schema"] == "picojoule.study/1"
    assert [r["name"] for r in doc["recipes"]] == [r.name for r in RECIPES]
    # the front: no other recipe both cheaper and at least as accurate
    rows = [
        (r["cost"]["energy_pj"], r["metrics"]["metric"], r["pareto_front"]) for r in doc["recipes"]
    ]
    for e, m, front in rows:
        better = [(e2, m2) for e2, m2, _ in rows if e2 <= e and m2 >= m and (e2, m2) != (e, m)]
        assert front == (not better)
    assert any(front for *_, front in rows)
    page = hpath.read_text()
    # three interactive plots, plotly.js inlined once, nothing fetched: opens offline
    assert re.findall(r'<div id="(plot-\w+)" class="plotly-graph-div"', page) == [
        "plot-pareto",
        "plot-layers",
        "plot-errors",
    ]
    assert page.count("* plotly.js v") == 1
    external = r"<script[^>]*\bsrc\s*=|<link\b|<img\b|<iframe\b|url\(\s*[\"']?(https?:)?//"
    assert not re.search(external, page, re.I)
    assert "<th>energy/inf (µJ)</th>" in page  # the plots' unit, chosen from the data


def _chromium(chromium: str, profile, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with no network at all (every host name fails to resolve), given
    10 s of virtual time so plotly has drawn before the page is captured."""
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
         "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.mark.browser
def test_report_renders_in_headless_chromium(study, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs Debian's chromium)")
    _, hpath = write_report(study[0], tmp_path / "out")
    shot = tmp_path / "shot.png"
    proc = _chromium(chromium, tmp_path / "p1", "--window-size=1200,2400",
                     f"--screenshot={shot}", hpath.as_uri())  # fmt: skip
    assert shot.exists(), proc.stderr[-2000:]
    # no script error, no console message at all (Chromium logs them as INFO:CONSOLE:...),
    # and no failed load: the page reaches for nothing
    logs = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    assert not logs, logs
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2400)  # the window asked for
    grey = img.convert("L")
    assert grey.getextrema()[0] < 100 < grey.getextrema()[1]  # dark text on a light page
    # the plots drew: the tables are black on grey, only plotly's markers and bars have
    # colour. Without plotly.js (or with a script error) this share is 0.
    px = np.asarray(img.resize((300, 600)), dtype=int).reshape(-1, 3)
    coloured = float(((px.max(1) - px.min(1)) > 80).mean())
    assert coloured > 0.02, coloured
    assert len(np.unique(px, axis=0)) > 500  # not a flat page: axes, bars, heat-map shades
    # the DOM after the scripts ran: every plot div holds plotly's SVG
    dom = _chromium(chromium, tmp_path / "p2", "--dump-dom", hpath.as_uri()).stdout
    parts = re.split(r'<div id="plot-(\w+)"', dom)[1:]
    drawn = {
        key: 'class="main-svg"' in body for key, body in zip(parts[::2], parts[1::2], strict=True)
    }
    assert drawn == {"pareto": True, "layers": True, "errors": True}, drawn


def test_recipes_yaml_errors(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("- name: a\n  quant: w:int8\n  colour: red\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_recipes(str(bad))
    bad.write_text("- name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipes(str(bad))
    with pytest.raises(ConfigError, match="presets"):
        load_recipes("formats-sweeep")
    good = tmp_path / "g.yaml"
    good.write_text("recipes:\n- name: a\n  quant: w:int8\n- name: b\n  sparsity: '2:4'\n")
    assert [r.name for r in load_recipes(str(good))] == ["a", "b"]


def test_recipe_that_applies_to_nothing_is_skipped_not_an_error(tmp_path):
    # (tests/study/test_study_skips.py covers every lever, the report and the CLI)
    res = run(lambda: nn.Sequential(nn.Linear(4, 4)), lambda: [(torch.randn(2, 4), torch.zeros(2))],
              lambda m, d: 1.0, [Recipe(name="w", winograd=4)], cache=None)  # fmt: skip
    assert [(r.recipe.name, r.status) for r in res.results] == [("fp32", "ok"), ("w", "skipped")]


def test_cache_refuses_foreign_and_corrupt_files(tmp_path):
    foreign = tmp_path / "f.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(CacheError, match="did not write"):
        ResultCache(foreign)
    corrupt = tmp_path / "c.sqlite"
    corrupt.write_bytes(b"not a database at all" * 100)
    before = corrupt.read_bytes()
    with pytest.raises(CacheError, match="untouched"):
        ResultCache(corrupt)
    assert corrupt.read_bytes() == before


def test_interrupted_study_keeps_finished_recipes_and_resumes(tmp_path):
    db = tmp_path / "s.sqlite"
    calls = {"n": 0}

    def flaky(model, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third recipe
        return _agreement(model, data)

    with pytest.raises(KeyboardInterrupt):
        run(_model, _data, flaky, RECIPES, target="eyeriss", cache=db)
    resumed = run(_model, _data, _agreement, RECIPES, target="eyeriss", cache=db)
    assert [r.cached for r in resumed.results] == [True, True, False, False]


def _bench_json(path, device="h100", pj=0.5):
    rows = [{"fmt": f, "m": m, "energy_pj_per_op": pj * (2 if f == "fp32" else 1)}
            for f in ("fp32", "bf16", "int8", "e4m3 tensor") for m in (2048, 8192)]  # fmt: skip
    doc = {"peaks": {"name": device}, "device": {"name": "NVIDIA test"}, "gemm": rows}
    path.write_text(json.dumps(doc))
    return path


def test_gpu_target_with_measured_pj_per_op(tmp_path):
    m = _bench_json(tmp_path / "gpu.json")
    res = run(_model, _data, _agreement, RECIPES[:2], target="h100", cache=None, measured=m)
    fp32, int4 = res.results
    # fp32 layers run on fp32 units: 2 ops per multiply at the measured 1.0 pJ/op
    assert fp32.cost["measured_energy_pj"] == pytest.approx(2 * fp32.cost["mults"] * 1.0)
    assert fp32.cost["latency_s"] > 0 and fp32.cost["energy_pj"] > fp32.cost["sol_energy_pj"]
    # int4 x int4 runs on an 8-bit tensor-core peak (e4m3 or int8): cheaper per op than fp32
    assert int4.cost["measured_energy_pj"] < fp32.cost["measured_energy_pj"]


def test_measured_file_errors(tmp_path):
    wrong = _bench_json(tmp_path / "a100.json", device="a100")
    with pytest.raises(ConfigError, match="taken on a100"):
        run(_model, _data, _agreement, RECIPES[:1], target="h100", measured=wrong)
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    with pytest.raises(ConfigError, match="not a `picojoule bench gpu` result"):
        run(_model, _data, _agreement, RECIPES[:1], target="h100", measured=junk)
    with pytest.raises(ConfigError, match=r"none of the targets \(eyeriss\) is a GPU"):
        run(_model, _data, _agreement, RECIPES[:1], target="eyeriss",
            measured=_bench_json(tmp_path / "e.json", device="eyeriss"))  # fmt: skip


def test_several_targets_cost_one_evaluation_each(tmp_path):
    m = _bench_json(tmp_path / "gpu.json")
    both = run(_model, _data, _agreement, RECIPES[:2], target=["eyeriss", "h100"], measured=m)
    alone = run(_model, _data, _agreement, RECIPES[:2], target="h100", measured=m)
    assert both.targets == ("eyeriss", "h100") and both.target == "eyeriss"
    for r, a in zip(both.results, alone.results, strict=True):
        assert list(r.costs) == ["eyeriss", "h100"]
        assert r.cost is r.costs["eyeriss"]
        assert r.costs["h100"]["energy_pj"] == pytest.approx(a.cost["energy_pj"])
        assert r.costs["h100"]["measured_energy_pj"] == pytest.approx(a.cost["measured_energy_pj"])
        assert "measured_energy_pj" not in r.costs["eyeriss"]
        assert r.metrics == a.metrics
    table = summary_table(both)
    heads = [c.header for c in table.columns]
    assert "vs SOL h100" in heads
    e_heads = [h for h in heads if h.startswith("energy/inf eyeriss (")]
    assert len(e_heads) == 1 and e_heads[0].endswith("J)")  # one unit for the whole column
    col = heads.index(e_heads[0])
    cells = list(table.columns[col].cells)
    assert all(c.replace(".", "").replace(",", "").isdigit() for c in cells)  # no unit per cell
    jpath, hpath = write_report(both, tmp_path / "out")
    doc = json.loads(jpath.read_text())
    assert doc["targets"] == ["eyeriss", "h100"]
    assert set(doc["recipes"][0]["costs"]) == {"eyeriss", "h100"}
    assert doc["recipes"][0]["cost"] == doc["recipes"][0]["costs"]["eyeriss"]
    assert "<h2>Every target</h2>" in hpath.read_text()


def test_qat_takes_tuple_inputs_and_a_task_loss():
    """MiniLM-style QAT: the model takes (ids, mask); the loss is a cosine distillation."""
    from picojoule.quant import quantize_
    from picojoule.sparsity import finetune

    class TwoInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.lin(x * mask)

    torch.manual_seed(0)
    teacher = TwoInput()
    student = TwoInput()
    student.load_state_dict(teacher.state_dict())
    quantize_(student, "w:int4/channel,a:int4")
    xs = [(torch.randn(16, 8), torch.ones(16, 8)) for _ in range(4)]
    data = [(x, teacher(*x).detach()) for x in xs]

    def cos_loss(a, b):
        return (1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)).mean()

    res = finetune(student, data, 60, 1e-2, loss_fn=cos_loss)
    assert res.last_loss < res.first_loss


def test_default_model_study_with_sparsity_table(tmp_path):
    """The `make demo` path on the digits CNN: FP32 baseline, 2:4 + fine-tune, report."""
    from picojoule.study import DigitsTask
    from picojoule.study.runner import run as run_task

    res = run_task(
        DigitsTask(),
        [Recipe(name="fp32"), Recipe(name="2:4+ft", sparsity="2:4", finetune_steps=50)],
        target="eyeriss",
        cache=None,
    )
    base, sparse = res.results
    assert base.metrics["accuracy"] > 95.0
    assert abs(sparse.metrics["accuracy"] - base.metrics["accuracy"]) <= 1.0
    rows = {r["name"]: r for r in sparse.sparsity}
    assert rows["9"]["qualifies_2to4"] and rows["9"]["pattern"] == "2:4"  # fc1 256->64
    assert not rows["0"]["qualifies_2to4"]  # the first conv: skipped, and no conv kernel
    assert sparse.model_bytes < base.model_bytes * 0.6  # 2:4 values + 2-bit indices
    _, hpath = write_report(res, tmp_path)
    assert "which layers got the sparse kernel (2:4+ft)" in hpath.read_text()


def test_accelerator_yaml_target(tmp_path):
    from picojoule.arch import arch_to_yaml, presets

    spec = tmp_path / "my_accel.yaml"
    spec.write_text(arch_to_yaml(presets.preset("simba")))
    res = run(_model, _data, _agreement, RECIPES[:2], target=str(spec), cache=None)
    assert all(r.cost["energy_pj"] >= r.cost["sol_energy_pj"] > 0 for r in res.results)
    bad = tmp_path / "bad.yaml"
    bad.write_text("levels: 3\n")
    with pytest.raises(ConfigError, match="'name' is required"):
        run(_model, _data, _agreement, RECIPES[:1], target=str(bad), cache=None)


def test_torch_transformer_is_unfused_for_every_recipe():
    def build() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(
            nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True),
            nn.Flatten(), nn.Linear(16 * 4, 3),
        ).eval()  # fmt: skip

    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(8, 4, 16, generator=g), torch.randint(0, 3, (8,), generator=g))]

    def acc(model: nn.Module, batches) -> float:
        x, y = batches[0]
        return float((model(x).argmax(-1) == y).float().mean())

    res = run(build, data, acc, [Recipe(name="fp32"), Recipe(name="w8a8", quant="w:int8,a:int8")],
              target="h100")  # fmt: skip
    for r in res.results:
        assert r.applied["exposed"] == ["0.self_attn: unfused"]
        names = [lay["name"] for lay in r.cost["layers"]]
        assert "0.self_attn.sdpa.qk" in names and "0.self_attn.q_proj" in names
        assert not any(a.startswith("not costed") for a in r.cost["assumptions"])
    fp32 = res.results[0]
    assert fp32.metrics["metric"] == acc(build(), data)  # unfusing keeps the numbers


def test_yaml_target_is_named_by_its_spec(tmp_path):
    """A target given as an accelerator YAML file is named by the spec's `name` in the
    terminal table, the HTML and report.json (`target_names`); the cache keys on the file."""
    from picojoule.arch import arch_to_yaml, presets

    spec = presets.eyeriss().model_copy(update={"name": "my-eyeriss"})
    path = tmp_path / "mine.yaml"
    path.write_text(arch_to_yaml(spec))
    res = run(_model, _data, _agreement, RECIPES[:2], target=[str(path), "h100"])
    assert res.targets == (str(path), "h100") and res.label(str(path)) == "my-eyeriss"
    heads = [c.header for c in summary_table(res).columns]
    assert "vs SOL my-eyeriss" in heads and not any(str(path) in h for h in heads)
    jpath, hpath = write_report(res, tmp_path / "out")
    assert json.loads(jpath.read_text())["target_names"] == ["my-eyeriss", "h100"]
    page = hpath.read_text()
    assert "my-eyeriss" in page and str(path) not in page
