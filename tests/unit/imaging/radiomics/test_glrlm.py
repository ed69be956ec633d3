from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue, glrlm
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import (
    IMAGE,
    MASK,
    SPACING,
    agrees,
    phantom_cases,
    unit_context,
)

PHANTOM = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
CASES = phantom_cases("rlm_", glrlm.AGGREGATIONS)
TAGS = [tag for tag, _ in glrlm._FEATURES]


@functools.cache
def _phantom(aggregation: str) -> dict[str, float]:
    return glrlm.compute(PHANTOM, aggregation=aggregation)


def _checkerboard(n: int) -> np.ndarray:
    """One slice of n x n voxels alternating grey levels 1 and 2."""
    y, x = np.indices((n, n))
    return (1 + (x + y) % 2)[None].astype(np.float64)


def test_every_feature_and_aggregation_has_a_phantom_reference() -> None:
    assert len(TAGS) == 16
    assert len(CASES) == 16 * 6
    assert {(tag, agg) for tag, agg, _, _ in CASES} == {
        (tag, agg) for tag in TAGS for agg in glrlm.AGGREGATIONS
    }


@pytest.mark.parametrize(("tag", "aggregation", "value", "tolerance"), CASES)
def test_ibsi_digital_phantom(tag: str, aggregation: str, value: float, tolerance: float) -> None:
    ours = _phantom(aggregation)[tag]
    assert agrees(ours, value, tolerance), f"{tag}_{aggregation}: ours {ours}, IBSI {value}"


def test_default_aggregation_is_pyradiomics_3d_average() -> None:
    assert glrlm.DEFAULT_AGGREGATION == "3D_avg"
    assert glrlm.compute(PHANTOM) == _phantom("3D_avg")


def test_catalogue_lists_every_feature_with_code_name_and_meaning() -> None:
    specs = {s.tag: s for s in catalogue.catalogue("glrlm")}
    assert list(specs) == TAGS
    assert specs["rlm_sre"].code == "22OV"
    assert specs["rlm_r_perc"].column == "original_glrlm_RunPercentage"
    for spec in specs.values():
        assert spec.pyradiomics
        assert len(spec.code) == 4
        assert spec.meaning.endswith("."), spec.tag


def test_line_of_one_grey_level_by_hand() -> None:
    # Five voxels in a row along x: one run of 5 along x; in each of the 12 other 3D
    # directions every voxel is a run of its own.
    ctx = unit_context(np.full((1, 1, 5), 3.0))
    values = glrlm.compute(ctx, aggregation="3D_avg")
    assert values["rlm_sre"] == pytest.approx((1 / 25 + 12) / 13)
    assert values["rlm_lre"] == pytest.approx((25 + 12) / 13)
    assert values["rlm_r_perc"] == pytest.approx((1 / 5 + 12) / 13)
    merged = glrlm.compute(ctx, aggregation="3D_comb")
    # 61 runs: 1 of length 5 and 60 of length 1, over 13 * 5 voxels.
    assert merged["rlm_sre"] == pytest.approx((1 / 25 + 60) / 61)
    assert merged["rlm_r_perc"] == pytest.approx(61 / 65)
    assert merged["rlm_rlnu"] == pytest.approx((1 + 60**2) / 61)
    assert merged["rlm_gl_var"] == pytest.approx(0.0)


def test_checkerboard_by_hand() -> None:
    # 4 x 4 board: along x and y every run has length 1 (16 runs per direction); along each
    # diagonal the runs are whole diagonals, lengths 1, 2, 3, 4, 3, 2, 1 (7 runs).
    ctx = unit_context(_checkerboard(4))
    per_direction = glrlm.compute(ctx, aggregation="2D_avg")
    diagonal_sre = (2 + 2 / 4 + 2 / 9 + 1 / 16) / 7
    assert per_direction["rlm_sre"] == pytest.approx((1 + 1 + 2 * diagonal_sre) / 4)
    assert per_direction["rlm_r_perc"] == pytest.approx((1 + 1 + 2 * 7 / 16) / 4)
    merged = glrlm.compute(ctx, aggregation="2D_comb")
    assert merged["rlm_r_perc"] == pytest.approx((16 + 16 + 7 + 7) / 64)
    assert merged["rlm_glnu_norm"] == pytest.approx(0.5)


def test_diagonal_runs_follow_the_anti_diagonal_too() -> None:
    # An anti-diagonal of grey level 2 in a 3 x 3 slice of 1s: direction (y+1, x-1) finds
    # one run of 3; direction (y+1, x+1) finds only single voxels of level 2.
    image = np.ones((1, 3, 3))
    image[0, [0, 1, 2], [2, 1, 0]] = 2.0
    counts, voxels = glrlm.matrices(unit_context(image), "2_5D_avg")
    # Directions in order: x, y, (y+1, x+1), (y+1, x-1); rows = grey levels 1, 2.
    assert counts[3][1].tolist() == [0, 0, 1]
    assert counts[2][1].tolist() == [3, 0, 0]
    assert voxels.tolist() == [9, 9, 9, 9]


def test_uniform_region_gives_defined_values() -> None:
    values = glrlm.compute(unit_context(np.full((4, 4, 4), 2.0)), aggregation="2_5D_comb")
    assert set(values) == set(TAGS)
    assert all(math.isfinite(v) for v in values.values())
    assert values["rlm_gl_var"] == 0.0
    assert values["rlm_glnu_norm"] == 1.0


@pytest.mark.parametrize("aggregation", glrlm.AGGREGATIONS)
def test_one_voxel_region_is_defined_not_an_error(aggregation: str) -> None:
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    values = glrlm.compute(
        unit_context(np.arange(27.0).reshape(3, 3, 3), mask), aggregation=aggregation
    )
    assert values["rlm_sre"] == 1.0
    assert values["rlm_r_perc"] == 1.0
    assert values["rlm_rl_entr"] == 0.0


def test_runs_stop_at_the_edge_of_the_intensity_mask() -> None:
    image = np.array([[[1.0, 1.0, 1.0, 1.0]]])
    mask = np.array([[[True, True, False, True]]])
    counts, _ = glrlm.matrices(unit_context(image, mask), "3D_avg")
    along_x = counts[glrlm._directions(3).index((0, 0, 1))]
    # Along x: runs of lengths 2 and 1, not one of 4.
    assert along_x[0].tolist() == [1, 1, 0, 0]


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="Unknown GLRLM aggregation '3D'"):
        glrlm.compute(PHANTOM, aggregation="3D")
    with pytest.raises(ConfigError, match="GLRLM takes no options"):
        glrlm.compute(PHANTOM, distance=2)
