"""The precision study: error definitions, the point-set effect, capture and accuracy."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from picojoule.winograd import WinogradError
from picojoule.winograd.study import (
    ConvOperands,
    accuracy_pct,
    accuracy_rows,
    capture_conv_operands,
    direct_conv_in_format,
    error_rows,
    random_operands,
    relative_error,
)


def test_relative_error_is_normwise() -> None:
    ref = torch.tensor([1.0, -4.0, 0.0, 3.0])
    y = torch.tensor([1.5, -4.0, 0.5, 3.0])
    stats = relative_error(y, ref)
    assert stats.max_rel == 0.5 / 4.0
    assert stats.mean_rel == pytest.approx((1.0 / 4) / (8.0 / 4), rel=1e-15)
    with pytest.raises(WinogradError, match="all zeros"):
        relative_error(y, torch.zeros(4))


def test_point_set_changes_fp16_error_for_f6x3() -> None:
    # The +-1/2 ladder (0, +-1, +-1/2, +-2, inf) against integers (0, +-1, +-2, +-3, inf).
    rows = error_rows(
        [random_operands(seed=1)],
        tiles=[6],
        point_sets=["default", "integer"],
        format_names=["fp16"],
    )
    err = {row.point_set: row.winograd.max_rel for row in rows}
    assert err["integer"] > 30 * err["default"]
    assert err["default"] < 0.05


def test_error_grows_with_tile_and_shrinks_with_precision() -> None:
    rows = error_rows(
        [random_operands(seed=2, channels=16, size=12)],
        tiles=[2, 4, 6, 8],
        point_sets=["default"],
        format_names=["fp32", "fp16", "bf16"],
    )
    by = {(row.format, row.m): row for row in rows}
    for fmt in ("fp32", "fp16", "bf16"):
        errs = [by[(fmt, m)].winograd.max_rel for m in (2, 4, 6, 8)]
        assert errs[0] < errs[1] and errs[1] < errs[3]  # 4 -> 6 may be flat; 8 is far worse
        assert by[(fmt, 2)].error_growth < 4  # F(2,3) is nearly as accurate as direct
        assert by[(fmt, 8)].error_growth > 100
    for m in (2, 4, 6, 8):
        assert by[("fp32", m)].winograd.max_rel < by[("fp16", m)].winograd.max_rel
        assert by[("fp16", m)].winograd.max_rel < by[("bf16", m)].winograd.max_rel
    assert by[("fp16", 4)].multiply_reduction == 4.0


def test_direct_baseline_is_operand_rounding_only() -> None:
    op = random_operands(seed=3, channels=8, size=6)
    exact = torch.nn.functional.conv2d(op.x, op.weight, padding=1)
    fp32 = relative_error(direct_conv_in_format(op, "fp32"), exact)
    fp16 = relative_error(direct_conv_in_format(op, "fp16"), exact)
    assert 0 < fp32.max_rel < 1e-6
    assert 1e-5 < fp16.max_rel < 5e-3


def test_non_square_kernels_are_refused() -> None:
    op = ConvOperands(
        name="odd", x=torch.randn(1, 1, 6, 6), weight=torch.randn(1, 1, 1, 3), padding=0
    )
    with pytest.raises(WinogradError, match="square kernels"):
        error_rows([op], tiles=[2], point_sets=["default"], format_names=["fp32"])


def _tiny_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.Conv2d(4, 6, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 3),
    )


def test_capture_takes_the_eligible_convs_real_operands() -> None:
    model = _tiny_model()
    ops = capture_conv_operands(model, torch.randn(5, 1, 8, 8))
    assert [(op.name, tuple(op.x.shape), tuple(op.weight.shape)) for op in ops] == [
        ("0", (5, 1, 8, 8), (4, 1, 3, 3)),
        ("3", (5, 4, 4, 4), (6, 4, 3, 3)),
    ]
    assert ops[0].x.dtype == torch.float64
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_accuracy_rows_cover_direct_and_every_tile() -> None:
    model = _tiny_model()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(40, 1, 8, 8, generator=gen)
    labels = model(x).argmax(-1)  # the float model is right by construction
    loader = [(x[:20], labels[:20]), (x[20:], labels[20:])]
    assert accuracy_pct(model, loader) == 100.0
    rows = accuracy_rows(model, loader, tiles=[2, 4], format_names=["fp32", "e4m3"])
    assert [(row.format, row.tile, row.converted) for row in rows] == [
        ("fp32", None, 0),
        ("fp32", 2, 2),
        ("fp32", 4, 2),
        ("e4m3", None, 0),
        ("e4m3", 2, 2),
        ("e4m3", 4, 2),
    ]
    by = {(row.format, row.tile): row.accuracy_pct for row in rows}
    assert by[("fp32", None)] == by[("fp32", 2)] == by[("fp32", 4)] == 100.0
    assert type(model[0]) is nn.Conv2d  # the caller's model is untouched
    with pytest.raises(WinogradError, match="no samples"):
        accuracy_pct(model, [])
