"""`check_mask_shape` (what `pattern_fits` and the study's reach check use) refuses exactly
the shapes `weight_mask` cannot mask, with the same message, and loads no compiler."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from picojoule.errors import ShapeError
from picojoule.sparsity.masks import check_mask_shape, weight_mask
from picojoule.sparsity.patterns import parse_pattern

PATTERNS = [
    "2:4",
    "1:4",
    "2:8",
    "block:4x4:0.5",
    "block:2x3:0.5",
    "unstructured:0.5",
    "channel:0.5",
]
SHAPES = [(8, 8), (8, 6), (6, 8), (4, 12, 3, 3), (4, 6, 3, 3), (16, 3, 7, 7), (8,), (3, 5)]


@pytest.mark.parametrize("text", PATTERNS)
@pytest.mark.parametrize("shape", SHAPES)
def test_shape_check_agrees_with_weight_mask(text, shape):
    pattern = parse_pattern(text)
    try:
        weight_mask(torch.randn(shape), pattern)
        want = None
    except ShapeError as e:
        want = str(e)
    try:
        check_mask_shape(shape, pattern)
        got = None
    except ShapeError as e:
        got = str(e)
    assert got == want


def test_reach_check_loads_no_compiler():
    code = (
        "import sys, torch\n"
        "from picojoule.sparsity.sparsify import pattern_fits\n"
        "from picojoule.sparsity.patterns import parse_pattern\n"
        "assert pattern_fits((64, 6, 3, 3), parse_pattern('2:4'))\n"
        "assert pattern_fits((64, 8, 3, 3), parse_pattern('2:4')) == ''\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"  # a meta tensor's abs() imported it: ~2 s per study
