"""NGTDM features: IBSI digital phantom reference values, hand-checked matrices, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import ngtdm
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference

TAGS = ("ngt_coarseness", "ngt_contrast", "ngt_busyness", "ngt_complexity", "ngt_strength")
CASES = [
    (tag, aggregation)
    for aggregation in ngtdm.AGGREGATIONS
    for tag in TAGS
    if f"{tag}_{aggregation}" in reference()
]


@pytest.fixture(scope="module")
def phantom() -> dict[str, dict[str, float]]:
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
    return {a: ngtdm.compute(ctx, aggregation=a) for a in ngtdm.AGGREGATIONS}


def _context(levels: list[list[list[int]]]) -> RoiContext:
    image = np.array(levels, dtype=np.float64)
    return RoiContext.from_arrays(image, np.ones(image.shape, dtype=bool), bin_width=1.0)


def test_every_phantom_reference_value_is_tested() -> None:
    assert len(CASES) == 15


@pytest.mark.parametrize(("tag", "aggregation"), CASES)
def test_phantom_matches_ibsi(
    phantom: dict[str, dict[str, float]], tag: str, aggregation: str
) -> None:
    value, tolerance = reference()[f"{tag}_{aggregation}"]
    ours = phantom[aggregation][tag]
    assert agrees(ours, value, tolerance), f"{tag}_{aggregation}: ours {ours}, IBSI {value}"


def test_family_api() -> None:
    assert ngtdm.AGGREGATIONS == ("2D", "2_5D", "3D")
    assert ngtdm.DEFAULT_AGGREGATION == "3D"
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
    assert ngtdm.compute(ctx) == ngtdm.compute(ctx, aggregation="3D")
    assert set(ngtdm.compute(ctx)) == set(TAGS)


def test_matrix_of_pyradiomics_example() -> None:
    # PyRadiomics' NGTDM docstring example (4 x 4, every pixel in the mask). Its printed s_3
    # (2.63) uses a wrong neighbour mean for the pixel at row 1, column 0 (14/5 for 12/5).
    ctx = _context([[[1, 2, 5, 2], [3, 5, 1, 3], [1, 3, 5, 5], [3, 1, 1, 1]]])
    (m,) = ngtdm.ngtdm_matrices(ctx, in_plane=False)
    np.testing.assert_array_equal(m.n, [0, 6, 2, 4, 0, 4])
    np.testing.assert_allclose(m.s, [0, 13.35, 2.0, 91 / 30, 0, 10.075])
    (flat,) = ngtdm.ngtdm_matrices(ctx, in_plane=True)
    np.testing.assert_allclose(flat.s, m.s)


def test_features_of_a_bright_centre_by_hand() -> None:
    # 3 x 3 slice of 1s around one 2. Centre: |2 - 1| = 1. Corners: 3 neighbours, mean 4/3;
    # edges: 5 neighbours, mean 6/5. s_1 = 4/3 + 4/5 = 32/15, s_2 = 1, p = (8/9, 1/9).
    ctx = _context([[[1, 1, 1], [1, 2, 1], [1, 1, 1]]])
    out = ngtdm.compute(ctx, aggregation="3D")
    assert out["ngt_coarseness"] == pytest.approx(135 / 271)
    assert out["ngt_contrast"] == pytest.approx(8 / 81 * 47 / 135)
    assert out["ngt_busyness"] == pytest.approx(271 / 180)
    assert out["ngt_complexity"] == pytest.approx(542 / 1215)
    assert out["ngt_strength"] == pytest.approx(30 / 47)
    # One slice: 2D, 2.5D and 3D see the same neighbours.
    for aggregation in ("2D", "2_5D"):
        assert ngtdm.compute(ctx, aggregation=aggregation) == pytest.approx(out)


def test_2d_uses_in_plane_neighbours_only() -> None:
    # Two uniform slices of different levels: in-plane there are no differences at all.
    ctx = _context([[[1, 1], [1, 1]], [[2, 2], [2, 2]]])
    flat = ngtdm.compute(ctx, aggregation="2D")
    assert flat["ngt_coarseness"] == ngtdm.COARSENESS_MAX
    assert flat["ngt_strength"] == 0.0
    merged = ngtdm.compute(ctx, aggregation="2_5D")
    assert merged["ngt_coarseness"] == ngtdm.COARSENESS_MAX
    # In 3D each voxel sees 3 like and 4 unlike neighbours, |i - neighbour mean| = 4/7 for all
    # 8 voxels: s_1 = s_2 = 16/7, p = (1/2, 1/2).
    volume = ngtdm.compute(ctx, aggregation="3D")
    assert volume["ngt_coarseness"] == pytest.approx(7 / 16)
    assert volume["ngt_strength"] == pytest.approx(2 / (32 / 7))


def test_uniform_region_follows_ibsi_conventions() -> None:
    ctx = _context([[[3, 3, 3], [3, 3, 3]], [[3, 3, 3], [3, 3, 3]]])
    for aggregation in ngtdm.AGGREGATIONS:
        out = ngtdm.compute(ctx, aggregation=aggregation)
        assert out == {
            "ngt_coarseness": 1e6,
            "ngt_contrast": 0.0,
            "ngt_busyness": 0.0,
            "ngt_complexity": 0.0,
            "ngt_strength": 0.0,
        }


def test_one_voxel_region_gives_nan() -> None:
    image = np.arange(27, dtype=np.float64).reshape(3, 3, 3)
    mask = np.zeros(image.shape, dtype=bool)
    mask[1, 1, 1] = True
    ctx = RoiContext.from_arrays(image, mask, bin_width=1.0)
    for aggregation in ngtdm.AGGREGATIONS:
        out = ngtdm.compute(ctx, aggregation=aggregation)
        assert set(out) == set(TAGS)
        assert all(math.isnan(v) for v in out.values())


def test_2d_average_skips_slices_without_neighbourhoods() -> None:
    # Slice 0 holds one voxel (no in-plane neighbour); slice 1 is the hand-checked example.
    image = np.ones((2, 3, 3))
    image[1, 1, 1] = 2
    mask = np.ones(image.shape, dtype=bool)
    mask[0] = False
    mask[0, 0, 0] = True
    ctx = RoiContext.from_arrays(image, mask, bin_width=1.0)
    out = ngtdm.compute(ctx, aggregation="2D")
    assert out["ngt_coarseness"] == pytest.approx(135 / 271)


def test_busyness_with_zero_denominator_is_nan() -> None:
    # Two separate uniform blocks, 4 voxels of level 1 and 2 of level 2: p = (2/3, 1/3), so
    # |1 p_1 - 2 p_2| = 0 with two levels present, and no voxel differs from its neighbours.
    image = np.zeros((1, 3, 8))
    image[0, :2, :2] = 1
    image[0, 0, 5:7] = 2
    ctx = RoiContext.from_arrays(image, image > 0, bin_width=1.0)
    (m,) = ngtdm.ngtdm_matrices(ctx, in_plane=False)
    np.testing.assert_array_equal(m.n, [0, 4, 2])
    out = ngtdm.compute(ctx)
    assert math.isnan(out["ngt_busyness"])
    assert out["ngt_coarseness"] == 1e6
    assert out["ngt_contrast"] == 0.0
    assert out["ngt_strength"] == 0.0


def test_bad_settings_raise_config_error() -> None:
    ctx = _context([[[1, 2], [2, 1]]])
    with pytest.raises(ConfigError, match="aggregation '3D_avg'"):
        ngtdm.compute(ctx, aggregation="3D_avg")
    with pytest.raises(ConfigError, match=r"distances=\[1, 2\]"):
        ngtdm.compute(ctx, distances=[1, 2])
    assert ngtdm.compute(ctx, distances=[1], binWidth=25) == ngtdm.compute(ctx)
