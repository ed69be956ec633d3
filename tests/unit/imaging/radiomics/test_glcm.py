from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue, glcm
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
CASES = phantom_cases("cm_", glcm.AGGREGATIONS)
TAGS = [tag for tag, _ in glcm._FEATURES]


@functools.cache
def _phantom(aggregation: str) -> dict[str, float]:
    return glcm.compute(PHANTOM, aggregation=aggregation)


def _checkerboard(n: int) -> np.ndarray:
    """One slice of n x n voxels alternating grey levels 1 and 2."""
    y, x = np.indices((n, n))
    return (1 + (x + y) % 2)[None].astype(np.float64)


def test_every_feature_and_aggregation_has_a_phantom_reference() -> None:
    assert len(TAGS) == 25
    assert len(CASES) == 25 * 6
    assert {(tag, agg) for tag, agg, _, _ in CASES} == {
        (tag, agg) for tag in TAGS for agg in glcm.AGGREGATIONS
    }


@pytest.mark.parametrize(("tag", "aggregation", "value", "tolerance"), CASES)
def test_ibsi_digital_phantom(tag: str, aggregation: str, value: float, tolerance: float) -> None:
    ours = _phantom(aggregation)[tag]
    assert agrees(ours, value, tolerance), f"{tag}_{aggregation}: ours {ours}, IBSI {value}"


def test_default_aggregation_is_pyradiomics_3d_average() -> None:
    assert glcm.DEFAULT_AGGREGATION == "3D_avg"
    assert glcm.compute(PHANTOM) == _phantom("3D_avg")


def test_catalogue_lists_every_feature_with_code_name_and_meaning() -> None:
    specs = {s.tag: s for s in catalogue.catalogue("glcm")}
    assert list(specs) == TAGS
    assert specs["cm_contrast"].code == "ACUI"
    assert specs["cm_contrast"].column == "original_glcm_Contrast"
    assert specs["cm_joint_var"].name == "SumSquares"
    assert not specs["cm_sum_var"].pyradiomics
    for spec in specs.values():
        assert len(spec.code) == 4
        assert spec.meaning.endswith("."), spec.tag


def test_checkerboard_contrast_by_hand() -> None:
    # Axis neighbours always differ by 1 (contrast 1), diagonal neighbours never (contrast 0).
    # A 4 x 4 board has 2 * 4 * 3 = 24 axis pairs and 2 * 3 * 3 = 18 diagonal pairs.
    ctx = unit_context(_checkerboard(4))
    assert glcm.compute(ctx, aggregation="2D_avg")["cm_contrast"] == pytest.approx(0.5)
    assert glcm.compute(ctx, aggregation="2D_comb")["cm_contrast"] == pytest.approx(24 / 42)
    assert glcm.compute(ctx, aggregation="2_5D_comb")["cm_contrast"] == pytest.approx(24 / 42)
    # In 3D only the 4 in-plane directions find pairs in a single slice.
    assert glcm.compute(ctx, aggregation="3D_avg")["cm_contrast"] == pytest.approx(0.5)
    assert glcm.compute(ctx, aggregation="3D_comb")["cm_contrast"] == pytest.approx(24 / 42)


def test_checkerboard_by_hand_other_features() -> None:
    ctx = unit_context(_checkerboard(4))
    merged = glcm.compute(ctx, aggregation="2D_comb")
    # Half of all pairs are (1, 2) or (2, 1), a quarter-ish each (1, 1) and (2, 2) - exactly:
    # p12 = p21 = 12/42, p11 = p22 = 9/42.
    p = np.array([9, 12, 12, 9]) / 42
    assert merged["cm_joint_max"] == pytest.approx(12 / 42)
    assert merged["cm_energy"] == pytest.approx(float((p**2).sum()))
    assert merged["cm_joint_entr"] == pytest.approx(float(-(p * np.log2(p)).sum()))
    assert merged["cm_joint_avg"] == pytest.approx(1.5)
    assert merged["cm_sum_avg"] == pytest.approx(3.0)
    assert merged["cm_corr"] == pytest.approx((9 - 12) / 21)
    assert merged["cm_inv_diff"] == pytest.approx(18 / 42 + 24 / 42 / 2)


def test_distance_option_reaches_further_neighbours() -> None:
    # At distance 2 every neighbour along an axis has the same grey level.
    ctx = unit_context(_checkerboard(6))
    assert glcm.compute(ctx, aggregation="2D_avg", distance=2)["cm_contrast"] == pytest.approx(0.0)
    assert glcm.compute(ctx, aggregation="2D_avg", distance=1)["cm_contrast"] > 0


def test_uniform_region_gives_defined_values_or_nan() -> None:
    values = glcm.compute(unit_context(np.full((3, 4, 5), 7.0)), aggregation="3D_comb")
    assert set(values) == set(TAGS)
    assert values["cm_joint_max"] == 1.0
    assert values["cm_contrast"] == 0.0
    assert values["cm_energy"] == 1.0
    assert values["cm_inv_diff"] == 1.0
    assert values["cm_joint_var"] == 0.0
    assert values["cm_info_corr2"] == 0.0
    assert math.isnan(values["cm_corr"])
    assert math.isnan(values["cm_info_corr1"])


@pytest.mark.parametrize("aggregation", glcm.AGGREGATIONS)
def test_one_voxel_region_is_nan_not_an_error(aggregation: str) -> None:
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    values = glcm.compute(
        unit_context(np.arange(27.0).reshape(3, 3, 3), mask), aggregation=aggregation
    )
    assert set(values) == set(TAGS)
    assert all(math.isnan(v) for v in values.values())


def test_pairs_stay_inside_the_intensity_mask() -> None:
    # The masked-out voxel's grey level (9) must not be paired with anything.
    image = np.array([[[1.0, 2.0, 9.0]]])
    mask = np.array([[[True, True, False]]])
    values = glcm.compute(unit_context(image, mask), aggregation="3D_comb")
    assert values["cm_contrast"] == pytest.approx(1.0)
    assert values["cm_joint_avg"] == pytest.approx(1.5)


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="Unknown GLCM aggregation '4D'"):
        glcm.compute(PHANTOM, aggregation="4D")
    with pytest.raises(ConfigError, match=r"distance must be a whole number.*got 0"):
        glcm.compute(PHANTOM, distance=0)
    with pytest.raises(ConfigError, match="Unknown GLCM option"):
        glcm.compute(PHANTOM, angles=4)
