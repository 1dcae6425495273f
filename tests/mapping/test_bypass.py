"""Per-layer buffer bypass (`MemoryLevel.bypassable`, `Mapping.bypass`): hand counts, the
model against the reference simulator, batches of mixed patterns, and the mapper's choice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pydantic import ValidationError
from randcase import random_case

from picojoule.arch.spec import Arch, Fanout, MacUnit, MemoryLevel
from picojoule.mapping import (
    Mapping,
    MappingBatch,
    MappingError,
    MapSpace,
    evaluate,
    evaluate_batch,
    exhaustive,
    search,
    simulate,
)
from picojoule.mapping.space import bypass_choices
from picojoule.workload import Layer
from picojoule.workload.layer import OPERANDS

W, I, O = range(3)


def _small_arch(capacity_bits: int | None = None) -> Arch:
    """DRAM -> Buf (all three operands, weights bypassable) -> MACs."""
    return Arch(
        name="bypass-small",
        levels=(
            MemoryLevel(
                name="DRAM",
                holds=OPERANDS,
                memory="dram",
                read_pj_per_bit=10.0,
                write_pj_per_bit=10.0,
            ),
            MemoryLevel(
                name="Buf",
                holds=OPERANDS,
                bypassable=("weights",),
                capacity_bits=capacity_bits,
                read_pj_per_bit=1.0,
                write_pj_per_bit=1.0,
            ),
        ),
        mac=MacUnit(energy_pj=1.0, accumulator_bits=8),
    )


def _small_mapping(bypass: tuple[tuple[str, ...], ...] = ()) -> Mapping:
    """K=2 at DRAM; C=3 then N=2 (innermost) at Buf: the Buf weight tile (3 weights) is
    reused by both images."""
    one = (1,) * 8
    return Mapping(
        temporal=((1, 1, 2, 1, 1, 1, 1, 1), (2, 1, 1, 3, 1, 1, 1, 1)),
        spatial_x=(one, one),
        spatial_y=(one, one),
        order=(tuple("NGKCPQRS"), tuple("GKCPQRSN")),
        bypass=bypass,
    )


LAYER = Layer(name="mv", N=2, K=2, C=3, output_format="int8")


def test_hand_counted_weights_bypassing_the_buffer() -> None:
    """12 MACs. Kept: the Buf takes 3 weights per K step from DRAM (6 DRAM reads, 6 Buf
    writes) and the lanes read them there (12 Buf reads). Bypassed: the lanes read every
    weight from DRAM (12 DRAM reads) and the Buf sees none. Inputs and outputs unchanged."""
    arch = _small_arch()
    kept = evaluate(LAYER, arch, _small_mapping())
    byp = evaluate(LAYER, arch, _small_mapping(((), ("weights",))))
    assert kept.reads["DRAM"]["weights"] == 6
    assert kept.writes["Buf"]["weights"] == 6
    assert kept.reads["Buf"]["weights"] == 12
    assert byp.reads["DRAM"]["weights"] == 12
    assert byp.writes["Buf"]["weights"] == 0
    assert byp.reads["Buf"]["weights"] == 0
    for op in ("inputs", "outputs"):
        for level in ("DRAM", "Buf"):
            assert kept.reads[level][op] == byp.reads[level][op]
            assert kept.writes[level][op] == byp.writes[level][op]
    # 8-bit weights: +6 DRAM reads x 8 bits x 10 pJ, -(6 writes + 12 reads) x 8 bits x 1 pJ.
    assert byp.energy_pj - kept.energy_pj == pytest.approx(6 * 8 * 10 - 18 * 8 * 1)


def test_bypassed_operand_takes_no_capacity() -> None:
    """Buf tiles: 3 weights + 6 inputs + 2 outputs = 11 bytes; 8 bytes fit only without
    the weights."""
    arch = _small_arch(capacity_bits=8 * 8)
    with pytest.raises(MappingError, match="capacity"):
        evaluate(LAYER, arch, _small_mapping())
    cost = evaluate(LAYER, arch, _small_mapping(((), ("weights",))))
    assert cost.reads["DRAM"]["weights"] == 12


def test_model_equals_reference_with_bypass() -> None:
    """200 random cases: random bypassable operands on the inner levels and a random
    pattern among them; counts equal the literal walk, and equal the model on the
    architecture that simply does not hold the bypassed operands there."""
    checked = bypassing = 0
    for seed in range(3000, 3400):
        rng = np.random.default_rng(seed)
        layer, arch, mapping = random_case(rng, max_dim=3)
        levels, skip = [arch.levels[0]], [()]
        for level in arch.levels[1:]:
            able = tuple(op for op in level.holds if rng.random() < 0.6)
            levels.append(level.model_copy(update={"bypassable": able}))
            skip.append(tuple(op for op in able if rng.random() < 0.6))
        arch = arch.model_copy(update={"levels": tuple(levels)})
        mapping = dataclasses.replace(mapping, bypass=tuple(skip) if any(skip) else ())
        model = evaluate_batch(layer, arch, MappingBatch.of([mapping]))
        if not model.fits[0]:
            continue  # a gapped input window, outside the model's domain
        ref = simulate(layer, arch, mapping)
        for name in ("reads", "writes", "deliveries"):
            got, want = getattr(model, name)[0], getattr(ref, name)
            assert np.array_equal(got, want), (seed, name, got, want)
        if all(len(lv.holds) > len(s) for lv, s in zip(arch.levels, skip, strict=True)):
            plain = arch.model_copy(
                update={
                    "levels": tuple(
                        lv.model_copy(
                            update={
                                "holds": tuple(op for op in lv.holds if op not in s),
                                "bypassable": (),
                            }
                        )
                        for lv, s in zip(arch.levels, skip, strict=True)
                    )
                }
            )
            same = evaluate_batch(
                layer, plain, MappingBatch.of([dataclasses.replace(mapping, bypass=())])
            )
            assert np.array_equal(same.reads, model.reads), seed
            assert np.array_equal(same.writes, model.writes), seed
            assert np.allclose(same.energy_pj, model.energy_pj), seed
        checked += 1
        bypassing += any(skip)
        if checked == 200:
            break
    assert checked == 200
    assert bypassing > 100


def _rs_arch() -> Arch:
    """A small row-stationary-like chip: DRAM, a shared buffer over a 4x4 array whose
    operands may each bypass it, and a per-PE register file."""
    return Arch(
        name="bypass-rs",
        levels=(
            MemoryLevel(
                name="DRAM",
                holds=OPERANDS,
                memory="dram",
                read_pj_per_bit=200 / 16,
                write_pj_per_bit=200 / 16,
            ),
            MemoryLevel(
                name="GBUF",
                holds=OPERANDS,
                bypassable=OPERANDS,
                capacity_bits=256 * 16,
                read_pj_per_bit=6 / 16,
                write_pj_per_bit=6 / 16,
                fanout=Fanout(mesh_x=4, mesh_y=4, network_pj_per_bit=2 / 16),
            ),
            MemoryLevel(
                name="RF",
                holds=OPERANDS,
                capacity_bits=32 * 16,
                read_pj_per_bit=1 / 16,
                write_pj_per_bit=1 / 16,
            ),
        ),
        mac=MacUnit(format="int16", accumulator_bits=16, energy_pj=1.0),
    )


def test_mixed_patterns_in_one_batch_equal_single_evaluations() -> None:
    layer = Layer(name="t", N=2, K=4, C=4, P=4, Q=2, R=3)
    arch = _rs_arch()
    choices = bypass_choices(arch)
    assert len(choices) == 8 and choices[0] == ()
    rng = np.random.default_rng(0)
    spaces = [MapSpace.of(layer, arch, b) for b in choices]
    F = next(spaces[0].factor_chunks(2000))[::50]
    O = np.zeros((len(F), len(arch.levels)), dtype=np.int64)
    mappings = [spaces[int(rng.integers(8))].to_mapping(F[i], O[i]) for i in range(len(F))]
    assert len({m.bypass for m in mappings}) > 4
    batch = evaluate_batch(layer, arch, MappingBatch.of(mappings))
    for i, m in enumerate(mappings):
        one = evaluate_batch(layer, arch, MappingBatch.of([m]))
        assert one.energy_pj[0] == batch.energy_pj[i]
        assert np.array_equal(one.reads[0], batch.reads[i])
        assert np.array_equal(one.writes[0], batch.writes[i])
        assert np.array_equal(one.deliveries[0], batch.deliveries[i])
        assert one.cycles[0] == batch.cycles[i]
        assert one.fits[0] == batch.fits[i]


def test_exhaustive_picks_the_best_bypass_pattern() -> None:
    """Exhaustive search with bypassable operands = the best of the exhaustive searches of
    each pattern's fixed architecture (operands dropped from the buffer's holds)."""
    layer = Layer(name="t", N=2, K=2, C=2, P=2, R=2, input_format="int16", weight_format="int16")
    arch = _rs_arch()
    best = exhaustive(layer, arch)
    per_pattern = []
    for skip in bypass_choices(arch):
        kept = tuple(op for op in OPERANDS if op not in skip[1]) if skip else OPERANDS
        if not kept:
            continue  # a level must hold something; covered by the search above
        fixed = arch.model_copy(
            update={
                "levels": (
                    arch.levels[0],
                    arch.levels[1].model_copy(update={"holds": kept, "bypassable": ()}),
                    arch.levels[2],
                )
            }
        )
        per_pattern.append(exhaustive(layer, fixed).value)
    assert best.value <= min(per_pattern) * (1 + 1e-12)
    # On a layer this small the buffer only adds accesses: every operand streams past it,
    # which no fixed architecture above can express (a level must hold something).
    assert best.mapping.bypass == ((), OPERANDS, ())
    assert best.value < min(per_pattern)
    # The winner re-evaluates to the same cost through the public path.
    again = evaluate(layer, arch, best.mapping)
    assert again.energy_pj == pytest.approx(best.cost.energy_pj)
    no_bypass = exhaustive(
        layer,
        arch.model_copy(
            update={
                "levels": (
                    arch.levels[0],
                    arch.levels[1].model_copy(update={"bypassable": ()}),
                    arch.levels[2],
                )
            }
        ),
    )
    assert best.value < no_bypass.value


def test_search_explores_bypass_and_never_does_worse() -> None:
    layer = Layer(name="c", N=4, K=16, C=8, P=8, Q=8, R=3, S=3)
    arch = _rs_arch()
    plain = arch.model_copy(
        update={
            "levels": (
                arch.levels[0],
                arch.levels[1].model_copy(update={"bypassable": ()}),
                arch.levels[2],
            )
        }
    )
    with_bypass = search(layer, arch)
    without = search(layer, plain)
    assert with_bypass.value <= without.value
    assert with_bypass.mapping.bypass
    assert evaluate(layer, arch, with_bypass.mapping).energy_pj == pytest.approx(
        with_bypass.cost.energy_pj
    )
    # Round trip through plain data keeps the pattern.
    again = Mapping.from_dict(with_bypass.mapping.to_dict())
    assert again == with_bypass.mapping
    assert "bypassed" in with_bypass.mapping.describe(arch)


def test_bypass_validation() -> None:
    with pytest.raises(ValidationError, match="does not hold"):
        MemoryLevel(name="B", holds=("inputs",), bypassable=("weights",))
    with pytest.raises(ValidationError, match="outermost"):
        Arch(
            name="x",
            levels=(MemoryLevel(name="D", holds=OPERANDS, memory="dram", bypassable=("inputs",)),),
        )
    arch = _small_arch()
    with pytest.raises(MappingError, match="cannot bypass"):
        evaluate(LAYER, arch, _small_mapping(((), ("inputs",))))
    with pytest.raises(MappingError, match="one per level"):
        evaluate(LAYER, arch, _small_mapping((("weights",),)))
