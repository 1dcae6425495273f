"""English technical prose that ships with every Python: the documentation topics of the
standard library's `pydoc_data.topics` (~465k characters on CPython 3.11).

The text is cut into paragraphs (blank-line separated) and each paragraph goes to one part by
a hash of its own text, so the parts never overlap - not even where two topics repeat a
paragraph word for word - and the split does not depend on dict order:
calibration 20 %, fine-tuning 30 %, evaluation 50 % of paragraphs (by count). The evaluation
part is held out from everything else. The topics differ between Python releases, so reports
state `corpus_id()` (Python version and a hash of the part's text).
"""

from __future__ import annotations

import hashlib
import sys
from functools import cache
from typing import Literal

from picojoule.errors import ConfigError

__all__ = ["PARTS", "Part", "pydoc_split", "corpus_id", "part_of"]

Part = Literal["calibration", "finetune", "evaluation"]
PARTS: tuple[Part, ...] = ("calibration", "finetune", "evaluation")
# Hash bucket (0..9) -> part: 2/10 calibration, 3/10 fine-tuning, 5/10 evaluation.
_BUCKETS: tuple[Part, ...] = ("calibration",) * 2 + ("finetune",) * 3 + ("evaluation",) * 5


def part_of(paragraph: str) -> Part:
    """The part a paragraph belongs to: a function of its text alone (sha256, first byte)."""
    digest = hashlib.sha256(paragraph.encode("utf-8")).digest()
    return _BUCKETS[digest[0] % 10]


def _paragraphs() -> list[str]:
    from pydoc_data.topics import topics

    out: list[str] = []
    for key in sorted(topics):
        for para in topics[key].split("\n\n"):
            para = para.strip("\n")
            if para.strip():
                out.append(para)
    return out


@cache
def pydoc_split(part: Part) -> str:
    """The text of one part: its paragraphs in topic order, joined by blank lines. Paragraphs
    that occur more than once are kept once (first occurrence), so no text repeats."""
    if part not in PARTS:
        raise ConfigError(f"text part {part!r}: choose one of {', '.join(PARTS)}")
    seen: set[str] = set()
    keep: list[str] = []
    for para in _paragraphs():
        if para in seen or part_of(para) != part:
            continue
        seen.add(para)
        keep.append(para)
    return "\n\n".join(keep)


def corpus_id(part: Part) -> str:
    """'pydoc-3.11/evaluation@<sha256[:12]>': which text a figure was measured on."""
    digest = hashlib.sha256(pydoc_split(part).encode("utf-8")).hexdigest()[:12]
    return f"pydoc-{sys.version_info.major}.{sys.version_info.minor}/{part}@{digest}"
