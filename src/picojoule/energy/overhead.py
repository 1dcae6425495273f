"""Instruction overhead: energy per instruction = fixed overhead + the math it performs.

Public: `Instruction`, `INSTRUCTIONS`, `InstructionEnergy`, `instruction_energy(name, ...)`,
`Reproduction`, `reproduce_published()`, `OVERHEAD_PJ`.

The fixed overhead is fetching and decoding the instruction, scheduling it and delivering its
operands from the register file: ~30 pJ per instruction at 45 nm (Dally, Hot Chips 2023
keynote, 'complex instructions' table; the seed brief), whatever the instruction computes.
The math is that of the ops it performs, taken either as Dally's published per-instruction
figure or bottom-up from the cited per-op table (`picojoule.energy.ops`).

"Overhead" has two definitions, and the published figures mix them:
    overhead / math   (2000% for HFMA: 30 / 1.5)  - can exceed 100%
    overhead / total  (16% for IMMA: 30 / 190)    - a share, at most 100%
HFMA's 2000% and HDP4A's 500% are overhead/math; IMMA's 16% is overhead/total; HMMA's
published 22% is neither to the nearest percent: its inputs (30 pJ, 110 pJ) give 27.3%
(overhead/math) and 21.4% (overhead/total) - the 22% is the second, rounded up.
`reproduce_published()` computes both for every instruction and says which one matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from picojoule.energy.defaults import OVERHEAD_PJ
from picojoule.energy.ops import op_energy
from picojoule.energy.scaling import node_scaling
from picojoule.errors import ConfigError, suggest

__all__ = [
    "OVERHEAD_PJ",
    "DALLY_2023",
    "Instruction",
    "INSTRUCTIONS",
    "InstructionEnergy",
    "instruction_energy",
    "Reproduction",
    "reproduce_published",
]

DALLY_2023 = (
    "Dally, Hardware for Deep Learning, Hot Chips 35 keynote 2023, 'complex instructions' table "
    "(45 nm; overhead = instruction fetch, decode and operand fetch, 30 pJ)"
)


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """A GPU math instruction: how many MACs, on which multiply and accumulate formats."""

    name: str
    description: str
    macs: int
    mul_dtype: str
    add_dtype: str
    published_math_pj: float  # DALLY_2023
    published_overhead_pct: float  # DALLY_2023

    @property
    def ops(self) -> int:
        """Math ops (a MAC is a multiply and an add: 2 ops)."""
        return 2 * self.macs


INSTRUCTIONS: dict[str, Instruction] = {
    i.name: i
    for i in (
        Instruction(
            name="HFMA",
            description="scalar half-precision fused multiply-add (FP16 x FP16 + FP16)",
            macs=1,
            mul_dtype="fp16",
            add_dtype="fp16",
            published_math_pj=1.5,
            published_overhead_pct=2000,
        ),
        Instruction(
            name="HDP4A",
            description="4-element FP16 dot product and accumulate (Pascal-style dot-product op)",
            macs=4,
            mul_dtype="fp16",
            add_dtype="fp16",
            published_math_pj=6.0,
            published_overhead_pct=500,
        ),
        Instruction(
            name="HMMA",
            description="Volta tensor core 4x4x4 FP16 matrix multiply, FP32 accumulate",
            macs=64,
            mul_dtype="fp16",
            add_dtype="fp32",
            published_math_pj=110,
            published_overhead_pct=22,
        ),
        Instruction(
            name="IMMA",
            description="Turing tensor core INT8 matrix multiply 8x8x8, INT32 accumulate",
            macs=512,
            mul_dtype="int8",
            add_dtype="int32",
            published_math_pj=160,
            published_overhead_pct=16,
        ),
    )
}

MathSource = Literal["published", "bottom-up"]


@dataclass(frozen=True, kw_only=True)
class InstructionEnergy:
    """One instruction's energy split into fixed overhead and math, pJ at `node_nm`."""

    instruction: Instruction
    overhead_pj: float
    math_pj: float
    math_source: MathSource
    node_nm: float

    @property
    def total_pj(self) -> float:
        return self.overhead_pj + self.math_pj

    @property
    def overhead_over_math(self) -> float:
        return self.overhead_pj / self.math_pj

    @property
    def overhead_over_total(self) -> float:
        return self.overhead_pj / self.total_pj

    @property
    def pj_per_op(self) -> float:
        return self.total_pj / self.instruction.ops


def _lookup(name: str) -> Instruction:
    inst = INSTRUCTIONS.get(name.upper())
    if inst is None:
        raise ConfigError(f"unknown instruction {name!r}{suggest(name.upper(), INSTRUCTIONS)}")
    return inst


def instruction_energy(
    name: str,
    *,
    math: MathSource = "published",
    overhead_pj: float = OVERHEAD_PJ,
    node_nm: float = 45.0,
) -> InstructionEnergy:
    """Overhead + math of instruction `name` ("HFMA", "HDP4A", "HMMA", "IMMA").

    math="published" uses Dally's per-instruction figure; "bottom-up" prices every MAC as the
    cited multiply of `mul_dtype` plus the cited add of `add_dtype` (Horowitz, ISSCC 2014).
    Both are 45 nm figures; `node_nm` scales math and overhead alike with the node table.
    """
    inst = _lookup(name)
    if math not in ("published", "bottom-up"):
        raise ConfigError(f"math={math!r}: choose 'published' or 'bottom-up'")
    if not overhead_pj >= 0:
        raise ConfigError(f"overhead_pj must be >= 0, got {overhead_pj}")
    if math == "published":
        math_pj = inst.published_math_pj
    else:
        mac = (
            op_energy("mul", inst.mul_dtype).energy_pj + op_energy("add", inst.add_dtype).energy_pj
        )
        math_pj = inst.macs * mac
    ratio = node_scaling().ratio(45.0, node_nm)
    return InstructionEnergy(
        instruction=inst,
        overhead_pj=overhead_pj * ratio,
        math_pj=math_pj * ratio,
        math_source=math,
        node_nm=node_nm,
    )


@dataclass(frozen=True, kw_only=True)
class Reproduction:
    """A published overhead figure against both definitions, in percent."""

    name: str
    published_pct: float
    over_math_pct: float
    over_total_pct: float

    @property
    def matches(self) -> str:
        """Which definition gives the published figure to the nearest percent."""
        hits = [
            label
            for label, value in (
                ("overhead/math", self.over_math_pct),
                ("overhead/total", self.over_total_pct),
            )
            if round(value) == round(self.published_pct)
        ]
        return " and ".join(hits) if hits else "neither"

    @property
    def closest(self) -> tuple[str, float]:
        """The definition nearest to the published figure and its value."""
        pairs = (("overhead/math", self.over_math_pct), ("overhead/total", self.over_total_pct))
        return min(pairs, key=lambda p: abs(p[1] - self.published_pct))


def reproduce_published(
    *, math: MathSource = "published", overhead_pj: float = OVERHEAD_PJ
) -> tuple[Reproduction, ...]:
    """Every preset's published overhead against overhead/math and overhead/total."""
    out = []
    for name, inst in INSTRUCTIONS.items():
        e = instruction_energy(name, math=math, overhead_pj=overhead_pj)
        out.append(
            Reproduction(
                name=name,
                published_pct=inst.published_overhead_pct,
                over_math_pct=100 * e.overhead_over_math,
                over_total_pct=100 * e.overhead_over_total,
            )
        )
    return tuple(out)
