"""`--backend ray`: a study on a local Ray (started and stopped by the code) gives the local
backend's numbers and fills the same SQLite cache; a bad backend or address is one line."""

from __future__ import annotations

import functools
import json
import pickle
import socket
import sys
from pathlib import Path

import pytest
import torch.nn as nn

from picojoule import cli
from picojoule.errors import ConfigError
from picojoule.study import Recipe, load_recipes, run_task
from picojoule.study.runner import _factory_of
from picojoule.study.tasks import DigitsTask, UserTask, load_task

HERE = Path(__file__).parent
USER = "user_model_fixture"  # tests/study/user_model_fixture.py
SPECS = (f"{USER}:build", f"{USER}:loader", f"{USER}:score")
RECIPES = "- name: int8\n  quant: w:int8,a:int8\n- name: int4\n  quant: w:int4/channel,a:int4\n"


@pytest.fixture(autouse=True)
def _fast_cli(monkeypatch):
    monkeypatch.setattr(cli, "busy_cores", lambda: None)  # no 0.2 s /proc/stat sample per run
    monkeypatch.syspath_prepend(str(HERE))


def _study(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["picojoule", "study", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    cap = capsys.readouterr()
    return int(exc.value.code or 0), " ".join((cap.out + cap.err).split())


def _numbers(report: Path) -> list[dict]:
    """Each recipe of a report.json as the model's numbers: everything but the wall time."""
    rows = json.loads(report.read_text())["recipes"]
    return [{k: v for k, v in r.items() if k not in ("seconds", "cached")} for r in rows]


@pytest.mark.ray
@pytest.mark.slow
def test_ray_study_equals_local_and_shares_its_cache(tmp_path, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    assert not ray.is_initialized()
    # a local Ray's workers import the user's module from PYTHONPATH, as a user would set it
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    recipes = tmp_path / "r.yaml"
    recipes.write_text(RECIPES)
    model = ["--model", SPECS[0], "--data", SPECS[1], "--metric", SPECS[2]]
    common = [*model, "--recipes", str(recipes), "--threads", "1", "--target", "eyeriss,h100"]
    db = tmp_path / "cache.sqlite"
    code, out = _study(monkeypatch, capsys, *common, "--cache", str(tmp_path / "local.sqlite"),
                       "--out", str(tmp_path / "local"))  # fmt: skip
    assert code == 0, out
    code, out = _study(monkeypatch, capsys, *common, "--backend", "ray", "--cache", str(db),
                       "--out", str(tmp_path / "ray"))  # fmt: skip
    assert code == 0, out
    assert not ray.is_initialized()  # the local Ray it started is gone again
    on_ray = _numbers(tmp_path / "ray" / "report.json")
    assert [r["name"] for r in on_ray] == ["fp32", "int8", "int4"]  # recipe order
    assert on_ray == _numbers(tmp_path / "local" / "report.json")  # metrics, bits, energy ...
    assert not any(r["cached"] for r in json.loads((tmp_path / "ray/report.json").read_text())[
        "recipes"])  # fmt: skip
    # every recipe went to the cache as it finished: either backend finds all of them there
    # (and `ray` starts no Ray for a study with nothing left to run)
    for backend in ("ray", "local"):
        again = run_task(load_task(*SPECS), load_recipes(str(recipes)),
                         target=["eyeriss", "h100"], cache=db, backend=backend)  # fmt: skip
        assert [r.recipe.name for r in again.results] == ["fp32", "int8", "int4"]
        assert all(r.cached for r in again.results), backend
        assert not ray.is_initialized()


def test_workers_get_a_factory_not_the_model():
    task = UserTask(build=functools.partial(nn.Linear, 64, 64), loader=list, score=max)
    task.model()  # the driver's task holds its built model (16 kB of weights) ...
    shipped = pickle.dumps(_factory_of(task))
    assert task._model is not None and len(shipped) < 2000  # ... which is not shipped
    rebuilt = pickle.loads(shipped)()
    assert rebuilt._model is None and rebuilt.build.func is nn.Linear
    assert rebuilt.labels == task.labels and rebuilt.name == task.name
    assert _factory_of(DigitsTask.__new__(DigitsTask)) is DigitsTask

    class Other:
        name = "mine"

    with pytest.raises(ConfigError, match="pass factory="):
        _factory_of(Other())  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens


@pytest.mark.parametrize(
    "backend, address, fragment",
    [
        ("dask", None, "--backend 'dask': use local or ray"),
        ("local", "127.0.0.1:6379", "names a Ray cluster; add --backend ray"),
        ("ray", "head-node", "is not host:port"),
        ("ray", "CLOSED", "no Ray cluster answers at 127.0.0.1:"),
    ],
)
def test_bad_backend_or_address_is_one_line(tmp_path, monkeypatch, capsys, backend, address,
                                            fragment):  # fmt: skip
    if backend == "ray":
        pytest.importorskip("ray")
    if address == "CLOSED":
        address = f"127.0.0.1:{_closed_port()}"
    built = []
    task = UserTask(build=lambda: built.append(1) or nn.Linear(4, 2), loader=list, score=min)
    with pytest.raises(ConfigError, match=fragment) as err:
        run_task(task, [Recipe(name="fp32")], cache=tmp_path / "c.sqlite", backend=backend,
                 address=address)  # fmt: skip
    assert "\n" not in str(err.value) and not built  # before any work
    # the CLI: exit 2, one error line, no --out created
    out = tmp_path / "report"
    args = ["--backend", backend] + (["--address", address] if address else [])
    code, text = _study(monkeypatch, capsys, "--out", str(out), *args)
    assert code == 2 and text.count("error:") == 1 and fragment in text, text
    assert "Traceback" not in text and not out.exists()


def test_help_documents_the_backend(monkeypatch, capsys):
    code, text = _study(monkeypatch, capsys, "--help")
    assert code == 0 and "--backend" in text and "--address" in text and "HOST:PORT" in text


def test_a_gpu_is_requested_where_the_cluster_has_one():
    from picojoule.study.backends import _task_resources

    assert _task_resources({"CPU": 2.0, "memory": 1e9}) == (0, 2)  # no GPU: CPUs only
    assert _task_resources({"CPU": 16.0, "GPU": 2.0}) == (1, 2)  # one GPU each, 2 at a time
    assert _task_resources({"CPU": 1.0, "GPU": 8.0}) == (1, 1)
    assert _task_resources({}) == (0, 1)
