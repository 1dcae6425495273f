"""Run-length coding of activations between DRAM and the chip, as Eyeriss does it.

Public: `pairs_per_element(density, run_bits=5)`, `rlc_bits_per_element(density, value_bits=16,
word_bits=64, run_bits=5)`, `dram_bits(density, value_bits)`.

Eyeriss (Chen et al., JSSC 2017, Sec. V-A) moves feature maps to and from DRAM run-length
coded: a 64-bit word holds three (5-bit run, 16-bit level) pairs and a 1-bit flag marking the
last word; a pair codes up to 31 zeros and the value after them (a zero value when a run of
zeros is longer than the field: `picojoule.sparsity.layouts`' "rle" packs the same way).
`SparseSupport.rlc_activations` applies it in the cost model (`picojoule.mapping.model`).

With the zeros of a stream independent at `1 - density` each (an assumption: real feature
maps cluster zeros, which codes better), a pair covers E[min(G, 2^run_bits)] elements, G the
position of the first non-zero (geometric), = (1 - (1 - d)^(2^run_bits)) / d; so a dense stream
(d = 1) costs 64/3 = 21.3 bits per 16-bit element, 1.33x the raw words, and a 40 %-dense one
8.5. `dram_bits` takes the cheaper of coded and raw (the encoder can be bypassed, as Eyeriss
does for the input image of the first layer).
"""

from __future__ import annotations

from picojoule.errors import ConfigError

__all__ = ["pairs_per_element", "rlc_bits_per_element", "dram_bits"]

WORD_BITS = 64  # JSSC 2017, Sec. V-A
RUN_BITS = 5


def _check_density(density: float) -> float:
    if not 0.0 < density <= 1.0:
        raise ConfigError(f"density {density} must lie in (0, 1]: the fraction of non-zeros")
    return float(density)


def pairs_per_element(density: float, run_bits: int = RUN_BITS) -> float:
    """Expected (run, value) pairs per element of a stream with i.i.d. zeros."""
    d = _check_density(density)
    span = 1 << run_bits  # a pair covers up to span - 1 zeros and one value
    return d / (1.0 - (1.0 - d) ** span)


def rlc_bits_per_element(
    density: float, value_bits: float = 16, word_bits: int = WORD_BITS, run_bits: int = RUN_BITS
) -> float:
    """Bits per element of the coded stream, whole words amortized (one flag bit per word)."""
    per_word = (word_bits - 1) // (run_bits + int(round(value_bits)))
    if per_word < 1:
        raise ConfigError(
            f"a {word_bits}-bit word cannot hold one {run_bits}-bit run and {value_bits}-bit value"
        )
    return word_bits / per_word * pairs_per_element(density, run_bits)


def dram_bits(density: float, value_bits: float) -> float:
    """Bits per element an activation moves with between DRAM and the chip under run-length
    coding: the coded size, or the raw `value_bits` where coding would not shrink it."""
    try:
        coded = rlc_bits_per_element(density, value_bits)
    except ConfigError:  # a value too wide for the word: sent raw
        return float(value_bits)
    return min(float(value_bits), coded)
