"""Winograd accounting: closed forms for multiplies and expansion, counted transform work."""

from __future__ import annotations

from fractions import Fraction

import pytest

from picojoule.winograd import WinogradError, cook_toom, layer_ops, transform_ops, winograd_cost


@pytest.mark.parametrize(("m", "expected"), [(2, 2.25), (4, 4.0), (6, 5.0625)])
def test_headline_2d_reductions_for_3x3(m: int, expected: float) -> None:
    # Lavin & Gray 2016: F(2x2,3x3) 2.25x, F(4x4,3x3) 4x; F(6x6,3x3) 324/64.
    assert winograd_cost(m, 3).multiply_reduction == expected


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("r", [1, 2, 3, 5])
@pytest.mark.parametrize("m", range(1, 9))
def test_multiply_counts_match_closed_forms(m: int, r: int, dims: int) -> None:
    cost = winograd_cost(m, r, dims=dims)
    n = m + r - 1
    assert cost.multiplies_per_tile == n**dims
    assert cost.direct_multiplies_per_tile == (m * r) ** dims
    assert cost.outputs_per_tile == m**dims
    assert cost.multiplies_per_output == pytest.approx(n**dims / m**dims, rel=1e-15)
    assert cost.multiply_reduction == pytest.approx((m * r / n) ** dims, rel=1e-15)
    assert cost.input_expansion == pytest.approx((n / m) ** dims, rel=1e-15)
    assert cost.weight_expansion == pytest.approx((n / r) ** dims, rel=1e-15)


def test_f2x3_transform_additions_match_lavin_gray() -> None:
    # Lavin & Gray 2016, Sec. 4.1: "The data transform uses 32 additions ... the inverse
    # transform uses 24 additions" for F(2x2, 3x3).
    cost = winograd_cost(2, 3)
    assert cost.input_transform.adds == 32
    assert cost.input_transform.const_mults == 0
    assert cost.output_transform.adds == 24
    assert cost.output_transform.const_mults == 0


@pytest.mark.parametrize(("m", "r"), [(2, 3), (4, 3), (6, 3), (3, 5)])
def test_nested_2d_counts_are_sums_of_1d_applications(m: int, r: int) -> None:
    n = m + r - 1
    at, g, bt = cook_toom(m, r)
    one, two = winograd_cost(m, r, dims=1), winograd_cost(m, r, dims=2)
    assert one.input_transform == transform_ops(bt)
    # 2-D: n columns then n rows (BT), n columns then m rows (AT), r columns then n rows (G).
    assert two.input_transform.adds == 2 * n * transform_ops(bt).adds
    assert two.output_transform.adds == (n + m) * transform_ops(at).adds
    assert two.weight_transform.const_mults == (r + n) * transform_ops(g).const_mults


def test_transform_ops_counts_nonzeros_and_constants() -> None:
    mat = tuple(
        tuple(Fraction(v) for v in row) for row in [[1, 0, -1], [Fraction(1, 2), 3, 0], [0, 0, 0]]
    )
    ops = transform_ops(mat)
    assert (ops.adds, ops.const_mults, ops.shift_mults) == (2, 2, 1)


def test_point_set_changes_constants_not_multiplies() -> None:
    default = winograd_cost(6, 3)
    integer = winograd_cost(6, 3, points=[0, 1, -1, 2, -2, 3, -3, "inf"])
    assert default.multiplies_per_tile == integer.multiplies_per_tile == 64
    assert default.input_transform != integer.input_transform


def test_layer_ops_whole_tiles_reach_the_nominal_reduction() -> None:
    ops = layer_ops(
        batch=2, in_channels=16, out_channels=32, out_hw=(8, 8), kernel_hw=(3, 3), tile=(4, 4)
    )
    assert ops.tiles == 4
    assert ops.direct_macs == 2 * 32 * 16 * 8 * 8 * 9
    assert ops.multiplies == 2 * 4 * 32 * 16 * 36
    assert ops.multiply_reduction == 4.0
    assert ops.accumulate_adds == 2 * 4 * 32 * 15 * 36


def test_layer_ops_edge_tiles_cost_reduction() -> None:
    # 8x8 outputs in 6x6 tiles: 2x2 tiles compute 12x12 outputs, 144/64 of the work.
    ops = layer_ops(
        batch=1, in_channels=16, out_channels=32, out_hw=(8, 8), kernel_hw=(3, 3), tile=(6, 6)
    )
    assert ops.tiles == 4
    assert ops.multiply_reduction == pytest.approx(5.0625 * 64 / 144, rel=1e-15)


def test_layer_ops_groups_and_bad_groups() -> None:
    dw = layer_ops(
        batch=1,
        in_channels=8,
        out_channels=8,
        groups=8,
        out_hw=(4, 4),
        kernel_hw=(3, 3),
        tile=(2, 2),
    )
    assert dw.direct_macs == 8 * 16 * 9
    assert dw.accumulate_adds == 0
    with pytest.raises(WinogradError, match="groups=3 must divide"):
        layer_ops(
            batch=1,
            in_channels=8,
            out_channels=8,
            groups=3,
            out_hw=(4, 4),
            kernel_hw=(3, 3),
            tile=(2, 2),
        )


def test_bad_dims() -> None:
    with pytest.raises(WinogradError, match="dims must be a positive int"):
        winograd_cost(2, 3, dims=0)
