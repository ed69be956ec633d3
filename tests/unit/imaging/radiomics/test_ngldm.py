"""NGLDM features: IBSI digital phantom reference values, hand-checked matrices, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import ngldm
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference

TAGS = (
    "ngl_lde",
    "ngl_hde",
    "ngl_lgce",
    "ngl_hgce",
    "ngl_ldlge",
    "ngl_ldhge",
    "ngl_hdlge",
    "ngl_hdhge",
    "ngl_glnu",
    "ngl_glnu_norm",
    "ngl_dcnu",
    "ngl_dcnu_norm",
    "ngl_dc_perc",
    "ngl_gl_var",
    "ngl_dc_var",
    "ngl_dc_entr",
    "ngl_dc_energy",
)
CASES = [
    (tag, aggregation)
    for aggregation in ngldm.AGGREGATIONS
    for tag in TAGS
    if f"{tag}_{aggregation}" in reference()
]


@pytest.fixture(scope="module")
def phantom() -> dict[str, dict[str, float]]:
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
    return {a: ngldm.compute(ctx, aggregation=a) for a in ngldm.AGGREGATIONS}


def _context(levels: list[list[list[int]]]) -> RoiContext:
    image = np.array(levels, dtype=np.float64)
    return RoiContext.from_arrays(image, np.ones(image.shape, dtype=bool), bin_width=1.0)


def test_every_phantom_reference_value_is_tested() -> None:
    assert len(CASES) == 51


@pytest.mark.parametrize(("tag", "aggregation"), CASES)
def test_phantom_matches_ibsi(
    phantom: dict[str, dict[str, float]], tag: str, aggregation: str
) -> None:
    value, tolerance = reference()[f"{tag}_{aggregation}"]
    ours = phantom[aggregation][tag]
    assert agrees(ours, value, tolerance), f"{tag}_{aggregation}: ours {ours}, IBSI {value}"


def test_family_api() -> None:
    assert ngldm.AGGREGATIONS == ("2D", "2_5D", "3D")
    assert ngldm.DEFAULT_AGGREGATION == "3D"
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
    assert ngldm.compute(ctx) == ngldm.compute(ctx, aggregation="3D")
    assert set(ngldm.compute(ctx)) == set(TAGS)


def test_matrix_of_pyradiomics_example() -> None:
    # PyRadiomics' GLDM docstring example (5 x 5, alpha 0): its column d holds d dependent
    # neighbours, which is IBSI's dependence j = d + 1.
    ctx = _context(
        [
            [
                [5, 2, 5, 4, 4],
                [3, 3, 3, 1, 3],
                [2, 1, 1, 1, 3],
                [4, 2, 2, 2, 3],
                [3, 5, 3, 3, 2],
            ]
        ]
    )
    expected = [[0, 1, 2, 1], [1, 2, 3, 0], [1, 4, 4, 0], [1, 2, 0, 0], [3, 0, 0, 0]]
    for in_plane in (False, True):
        (m,) = ngldm.ngldm_matrices(ctx, in_plane=in_plane)
        np.testing.assert_array_equal(m.s[:, :4], expected)
        assert m.s[:, 4:].sum() == 0


def test_features_by_hand() -> None:
    # 1 1 2 / 1 1 2 / 2 2 2: the four 1s each have 3 like neighbours (j = 4); the 2s have
    # j = 2, 4, 3, 4, 2 (corner, edge, corner, edge, corner). s = {(1,4): 4, (2,2): 2,
    # (2,3): 1, (2,4): 2}, N_s = 9.
    ctx = _context([[[1, 1, 2], [1, 1, 2], [2, 2, 2]]])
    out = ngldm.compute(ctx)
    p = np.array([4, 2, 1, 2]) / 9
    assert out["ngl_lde"] == pytest.approx(71 / 648)
    assert out["ngl_hde"] == pytest.approx(113 / 9)
    assert out["ngl_lgce"] == pytest.approx((4 + 5 / 4) / 9)
    assert out["ngl_hgce"] == pytest.approx((4 + 5 * 4) / 9)
    assert out["ngl_ldlge"] == pytest.approx((4 / 16 + (2 / 4 + 1 / 9 + 2 / 16) / 4) / 9)
    assert out["ngl_hdhge"] == pytest.approx((4 * 16 + 4 * (2 * 4 + 9 + 2 * 16)) / 9)
    assert out["ngl_glnu"] == pytest.approx(41 / 9)
    assert out["ngl_glnu_norm"] == pytest.approx(41 / 81)
    assert out["ngl_dcnu"] == pytest.approx(41 / 9)
    assert out["ngl_dcnu_norm"] == pytest.approx(41 / 81)
    assert out["ngl_dc_perc"] == 1.0
    assert out["ngl_gl_var"] == pytest.approx(20 / 81)
    mean_j = (2 * 2 + 3 + 4 * 6) / 9
    assert out["ngl_dc_var"] == pytest.approx(
        (2 * (2 - mean_j) ** 2 + (3 - mean_j) ** 2 + 6 * (4 - mean_j) ** 2) / 9
    )
    assert out["ngl_dc_entr"] == pytest.approx(-np.sum(p * np.log2(p)))
    assert out["ngl_dc_energy"] == pytest.approx(25 / 81)


def test_alpha_makes_close_levels_dependent() -> None:
    # With alpha = 1 every neighbour counts: j = 1 + neighbours = 4 (corners), 6 (edges), 9.
    ctx = _context([[[1, 1, 2], [1, 1, 2], [2, 2, 2]]])
    expected = (16 * 4 + 36 * 4 + 81) / 9
    assert ngldm.compute(ctx, alpha=1)["ngl_hde"] == pytest.approx(expected)
    assert ngldm.compute(ctx, gldm_a=1)["ngl_hde"] == pytest.approx(expected)
    assert ngldm.compute(ctx, alpha=0)["ngl_hde"] == pytest.approx(113 / 9)


def test_neighbours_outside_the_mask_do_not_count() -> None:
    image = np.ones((1, 3, 3))
    mask = np.zeros(image.shape, dtype=bool)
    mask[0, 0, :] = True
    ctx = RoiContext.from_arrays(image, mask, bin_width=1.0)
    (m,) = ngldm.ngldm_matrices(ctx, in_plane=False)
    # A row of three 1s: the ends have one neighbour in the mask (j = 2), the middle two (j = 3).
    assert m.s[0, 1] == 2 and m.s[0, 2] == 1 and m.s.sum() == 3


def test_2d_and_3d_differ_across_slices() -> None:
    # Two uniform 2 x 2 slices of one level: in-plane j = 4, in 3D j = 8.
    ctx = _context([[[1, 1], [1, 1]], [[1, 1], [1, 1]]])
    assert ngldm.compute(ctx, aggregation="2D")["ngl_hde"] == 16.0
    assert ngldm.compute(ctx, aggregation="2_5D")["ngl_hde"] == 16.0
    assert ngldm.compute(ctx, aggregation="3D")["ngl_hde"] == 64.0


def test_single_voxel_and_single_level_are_defined() -> None:
    # Every voxel is its own neighbourhood (j >= 1), so nothing is undefined; no exception.
    image = np.arange(27, dtype=np.float64).reshape(3, 3, 3)
    mask = np.zeros(image.shape, dtype=bool)
    mask[1, 1, 1] = True
    one = RoiContext.from_arrays(image, mask, bin_width=1.0)
    for aggregation in ngldm.AGGREGATIONS:
        out = ngldm.compute(one, aggregation=aggregation)
        assert out["ngl_lde"] == 1.0 and out["ngl_hde"] == 1.0
        assert out["ngl_gl_var"] == 0.0 and out["ngl_dc_var"] == 0.0
        assert out["ngl_dc_entr"] == 0.0 and out["ngl_dc_energy"] == 1.0
        assert all(math.isfinite(v) for v in out.values())
    uniform = _context([[[2, 2, 2], [2, 2, 2], [2, 2, 2]]])
    out = ngldm.compute(uniform)
    assert out["ngl_gl_var"] == 0.0 and out["ngl_glnu_norm"] == 1.0


def test_bad_settings_raise_config_error() -> None:
    ctx = _context([[[1, 2], [2, 1]]])
    with pytest.raises(ConfigError, match="aggregation '3D_comb'"):
        ngldm.compute(ctx, aggregation="3D_comb")
    with pytest.raises(ConfigError, match="got -1"):
        ngldm.compute(ctx, gldm_a=-1)
    with pytest.raises(ConfigError, match="got 'wide'"):
        ngldm.compute(ctx, alpha="wide")
    with pytest.raises(ConfigError, match="set twice"):
        ngldm.compute(ctx, alpha=0, gldm_a=1)
    with pytest.raises(ConfigError, match=r"distances=\[2\]"):
        ngldm.compute(ctx, distances=[2])
    assert ngldm.compute(ctx, binWidth=25) == ngldm.compute(ctx)
