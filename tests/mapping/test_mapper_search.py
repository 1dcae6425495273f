"""The mapper: valid results, near the exhaustive optimum, deterministic, bounded in time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from picojoule.arch import Arch, Fanout, MacUnit, MemoryLevel, presets
from picojoule.arch.energy import operand_bits
from picojoule.errors import ConfigError, PicojouleError
from picojoule.mapping import (
    NoMappingError,
    check_mapping,
    evaluate,
    exhaustive,
    map_workload,
    search,
)
from picojoule.workload import Layer, Workload, builtin

ALL = ("weights", "inputs", "outputs")


def small_arch() -> Arch:
    """DRAM, a 2 kB buffer with a 4x2 array, per-PE scratchpads (Eyeriss-like, tiny)."""
    return Arch(
        name="small",
        levels=(
            MemoryLevel(
                name="DRAM",
                holds=ALL,
                memory="dram",
                read_pj_per_bit=12.5,
                write_pj_per_bit=12.5,
                bandwidth_bits_per_cycle=32,
            ),
            MemoryLevel(
                name="GLB",
                holds=("inputs", "outputs"),
                capacity_bits=2048 * 8,
                read_pj_per_bit=0.4,
                write_pj_per_bit=0.4,
                fanout=Fanout(mesh_x=4, mesh_y=2, network_pj_per_bit=0.1),
            ),
            MemoryLevel(
                name="RF",
                holds=ALL,
                partition_bits={"weights": 16 * 8, "inputs": 8 * 8, "outputs": 4 * 24},
                read_pj_per_bit=0.06,
                write_pj_per_bit=0.06,
            ),
        ),
        mac=MacUnit(energy_pj=0.3, accumulator_bits=24),
    )


SMALL_LAYERS = [
    Layer(name="a", N=2, K=4, C=3, P=4, R=3),
    Layer(name="b", K=4, C=4, P=2, Q=2, R=2, S=2, stride_h=2),
    Layer(name="c", kind="linear", N=4, K=12, C=8),
]


@pytest.mark.parametrize("objective", ["energy", "latency", "edp"])
@pytest.mark.parametrize("layer", SMALL_LAYERS, ids=lambda layer: layer.name)
def test_search_is_within_2_percent_of_exhaustive(layer: Layer, objective: str) -> None:
    arch = small_arch()
    best = exhaustive(layer, arch, objective)
    found = search(layer, arch, objective, seed=1)
    # Both minimise the score (the objective with near-ties broken by the other metric).
    assert found.score <= best.score * 1.02
    assert found.score >= best.score * (1 - 1e-9)  # the exhaustive one is a true optimum
    assert found.evaluated < best.evaluated


@pytest.mark.parametrize(
    "arch",
    [
        presets.eyeriss(costs="normalized"),
        *(presets.eyeriss(costs="normalized", dataflow=d) for d in ("rs", "ws", "os", "nlr")),
    ],
    ids=lambda a: a.name,
)
def test_found_mappings_are_valid(arch: Arch) -> None:
    for layer in builtin("alexnet").layers[1:3]:
        found = search(layer, arch, samples=200, starts=4)
        bits = operand_bits(arch, layer)
        check_mapping(found.mapping, layer, arch, bits)  # factors, fanouts, capacities
        again = evaluate(layer, arch, found.mapping)
        assert again.energy_pj == pytest.approx(found.cost.energy_pj)


def test_dataflow_constraints_are_respected() -> None:
    arch = presets.eyeriss(costs="normalized", dataflow="ws")
    layer = builtin("alexnet").layers[2]
    found = search(layer, arch, samples=200, starts=4)
    rf = arch.level_index("RegisterFile")
    assert "".join(found.mapping.order[rf]).endswith("NPQ")  # weights stay in place
    for d, f in zip("NGKCPQRS", found.mapping.temporal[rf], strict=True):
        assert f == 1 or d in "NPQ"


def test_search_is_deterministic_under_a_seed() -> None:
    layer, arch = builtin("resnet18").layers[1], presets.eyeriss(costs="normalized")
    a = search(layer, arch, seed=3, samples=300, starts=4)
    b = search(layer, arch, seed=3, samples=300, starts=4)
    assert a.mapping == b.mapping and a.value == b.value and a.evaluated == b.evaluated


def test_timeout_returns_best_so_far_and_says_so() -> None:
    layer, arch = builtin("resnet18").layers[1], presets.eyeriss(costs="normalized")
    found = search(layer, arch, time_budget_s=0.0)
    assert found.timed_out and "best mapping found so far" in found.note
    check_mapping(found.mapping, layer, arch, operand_bits(arch, layer))


def test_capacity_too_small_for_any_mapping_is_explained() -> None:
    tiny = small_arch().model_copy(
        update={
            "levels": (
                small_arch().levels[0],
                small_arch().levels[1].model_copy(update={"capacity_bits": 16}),
                small_arch().levels[2],
            )
        }
    )
    with pytest.raises(NoMappingError, match=r"level 'GLB'.*needs 32 bits but capacity_bits is 16"):
        search(SMALL_LAYERS[0], tiny)


def test_loop_no_level_can_hold_is_explained() -> None:
    arch = presets.eyeriss(costs="normalized", dataflow="ws")
    levels = tuple(lv.model_copy(update={"temporal_dims": ("N",)}) for lv in arch.levels)
    fan = levels[1].fanout.model_copy(update={"x_dims": ("N",), "y_dims": ("N",)})
    levels = (levels[0], levels[1].model_copy(update={"fanout": fan}), levels[2])
    with pytest.raises(PicojouleError, match="loop K .* can be placed at no level"):
        search(SMALL_LAYERS[0], arch.model_copy(update={"levels": levels}))


def test_bad_objective() -> None:
    with pytest.raises(ConfigError, match="use one of energy, latency, edp"):
        search(SMALL_LAYERS[0], small_arch(), "power")


def test_map_workload_totals_and_speed_of_light() -> None:
    work = Workload(name="w", layers=(*SMALL_LAYERS, SMALL_LAYERS[0]))
    work = Workload(
        name="w", layers=(*work.layers[:3], Layer(name="a2", N=2, K=4, C=3, P=4, R=3, repeat=3))
    )
    result = map_workload(work, small_arch(), samples=200, starts=4)
    assert result.macs == sum(layer.macs * layer.repeat for layer in work.layers)
    assert result.energy_pj == pytest.approx(
        sum(r.result.cost.energy_pj * r.layer.repeat for r in result.layers)
    )
    # Layers with the same shape share one search.
    assert result.layers[3].result is result.layers[0].result
    by_level = result.energy_by_level_pj
    total = sum(sum(row.values()) for row in by_level.values())
    assert total + result.mac_energy_pj + result.network_energy_pj == pytest.approx(
        result.energy_pj
    )
    assert result.sol_energy_pj <= result.energy_pj and result.sol_cycles <= result.cycles
    assert 0 < result.utilization <= 1
    json.dumps(result.to_dict())


def test_cli_prints_tables_and_writes_json(tmp_path) -> None:
    from typer.testing import CliRunner

    from picojoule.mapping.cli import app

    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        app,
        [
            "--arch",
            "eyeriss-normalized",
            "--model",
            "digits-cnn",
            "--recipe",
            "w:int8,a:int8",
            "--json",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0
    assert "pJ/MAC" in res.output and "speed of light" in res.output and "mac" in res.output
    data = json.loads(out.read_text())
    assert data["arch"] == "eyeriss" and len(data["layers"]) == 5
    with pytest.raises(ConfigError, match="did you mean"):
        CliRunner().invoke(
            app, ["--arch", "eyriss", "--model", "digits-cnn"], catch_exceptions=False
        )


def test_map_workload_time_budget_marks_layers() -> None:
    result = map_workload(
        builtin("digits-cnn"), presets.eyeriss(costs="normalized"), time_budget_s=0.0
    )
    assert result.timed_out == tuple(r.layer.name for r in result.layers)
    assert result.to_dict()["timed_out_layers"] == list(result.timed_out)
    assert all(np.isfinite(r.result.value) for r in result.layers)


def test_map_workload_reuses_results_for_the_same_inputs() -> None:
    arch = presets.eyeriss(costs="normalized")
    first = map_workload(builtin("digits-cnn"), arch, seed=11)
    again = map_workload(builtin("digits-cnn"), arch, seed=11)
    assert all(a.result is b.result for a, b in zip(first.layers, again.layers, strict=True))
    fresh = map_workload(builtin("digits-cnn"), arch, seed=11, cache=False)
    assert fresh.layers[0].result is not first.layers[0].result
    assert fresh.energy_pj == first.energy_pj
    other = map_workload(
        builtin("digits-cnn"), presets.eyeriss(costs="normalized", mac_pj=2.0), seed=11
    )
    assert other.layers[0].result is not first.layers[0].result


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--objective", "power"], "use one of energy, latency, edp"),
        (["--model", "resnet19"], "did you mean: resnet18"),
        (["--recipe", "w:int99"], "int99"),
    ],
)
def test_cli_bad_input_is_a_picojoule_error(args: list[str], match: str) -> None:
    from typer.testing import CliRunner

    from picojoule.mapping.cli import app

    with pytest.raises(PicojouleError, match=match):
        CliRunner().invoke(
            app,
            ["--arch", "eyeriss-normalized", "--model", "digits-cnn", *args],
            catch_exceptions=False,
        )
