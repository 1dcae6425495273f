"""The pydoc text split: deterministic, disjoint, complete."""

from __future__ import annotations

import pytest

from picojoule.errors import ConfigError
from picojoule.lm.corpus import PARTS, _paragraphs, corpus_id, part_of, pydoc_split


def test_parts_are_disjoint_and_cover_every_distinct_paragraph() -> None:
    parts = {p: set(pydoc_split(p).split("\n\n")) for p in PARTS}
    for a in PARTS:
        for b in PARTS:
            if a < b:
                assert not parts[a] & parts[b], (a, b)
    assert set.union(*parts.values()) == set(_paragraphs())


def test_split_sizes_and_no_repeats() -> None:
    sizes = {p: len(pydoc_split(p)) for p in PARTS}
    assert sizes["evaluation"] > sizes["finetune"] > sizes["calibration"] > 30_000
    paras = pydoc_split("evaluation").split("\n\n")
    assert len(paras) == len(set(paras))


def test_assignment_is_a_function_of_the_text() -> None:
    assert part_of("The for statement") == part_of("The for statement")
    counts = {p: 0 for p in PARTS}
    for i in range(10_000):
        counts[part_of(f"paragraph {i}")] += 1
    assert abs(counts["evaluation"] / 10_000 - 0.5) < 0.03
    assert abs(counts["calibration"] / 10_000 - 0.2) < 0.03


def test_corpus_id_names_python_part_and_hash() -> None:
    cid = corpus_id("evaluation")
    assert cid.startswith("pydoc-3.") and "/evaluation@" in cid and len(cid.split("@")[1]) == 12
    with pytest.raises(ConfigError, match="choose one of"):
        pydoc_split("test")  # type: ignore[arg-type]
