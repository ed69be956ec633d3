"""Intensity statistics: IBSI digital phantom reference values, hand-checked samples, edge cases."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from medimg_core.errors import ConfigError, ImageError
from medimg_core.imaging.radiomics import catalogue, statistics
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference

PHANTOM_TAGS = sorted(tag for tag in reference() if tag.startswith("stat_"))


def _region(values: list[float], **kwargs: Any) -> RoiContext:
    image = np.asarray(values, dtype=np.float64).reshape(1, 1, -1)
    return RoiContext.from_arrays(image, np.ones(image.shape, dtype=bool), **kwargs)


@pytest.fixture(scope="module")
def phantom() -> dict[str, float]:
    return statistics.compute(RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0))


def test_every_phantom_reference_value_is_tested() -> None:
    assert len(PHANTOM_TAGS) == 18


@pytest.mark.parametrize("tag", PHANTOM_TAGS)
def test_phantom_matches_ibsi(phantom: dict[str, float], tag: str) -> None:
    value, tolerance = reference()[tag]
    assert agrees(phantom[tag], value, tolerance), f"{tag}: ours {phantom[tag]}, IBSI {value}"


def test_hand_checked_sample() -> None:
    out = statistics.compute(_region([1, 2, 3, 4]))
    expected = {
        "stat_mean": 2.5,
        "stat_var": 1.25,
        "stat_skew": 0.0,
        "stat_kurt": 2.5625 / 1.25**2 - 3,
        "stat_median": 2.5,
        "stat_min": 1.0,
        "stat_p10": 1.3,
        "stat_p90": 3.7,
        "stat_max": 4.0,
        "stat_iqr": 1.5,
        "stat_range": 3.0,
        "stat_mad": 1.0,
        "stat_rmad": 0.5,  # only 2 and 3 lie within [P10, P90] = [1.3, 3.7]
        "stat_medad": 1.0,
        "stat_cov": math.sqrt(1.25) / 2.5,
        "stat_qcod": 1.5 / 5.0,
        "stat_energy": 30.0,
        "stat_rms": math.sqrt(7.5),
    }
    assert set(out) == set(expected)
    for tag, value in expected.items():
        assert out[tag] == pytest.approx(value, abs=1e-12), tag


def test_skewed_sample_has_positive_skewness_and_pyradiomics_kurtosis_minus_three() -> None:
    x = np.array([0.0, 0.0, 0.0, 1.0, 5.0])
    out = statistics.compute(_region(list(x)))
    m = x - x.mean()
    assert out["stat_skew"] == pytest.approx(np.mean(m**3) / np.mean(m**2) ** 1.5)
    assert out["stat_skew"] > 1
    # PyRadiomics' Kurtosis is m4 / m2²; IBSI's (ours) is 3 less.
    assert out["stat_kurt"] == pytest.approx(np.mean(m**4) / np.mean(m**2) ** 2 - 3)


def test_uniform_region_has_zero_spread_and_zero_shape_moments() -> None:
    out = statistics.compute(_region([7.0] * 6))
    assert out["stat_var"] == 0
    assert out["stat_skew"] == 0  # IBSI: 0 when the variance is 0
    assert out["stat_kurt"] == 0
    assert out["stat_cov"] == 0
    assert out["stat_rmad"] == 0
    assert out["stat_energy"] == 6 * 49


def test_single_voxel_gives_numbers_not_an_exception() -> None:
    out = statistics.compute(_region([3.0]))
    assert out["stat_mean"] == 3 and out["stat_p90"] == 3 and out["stat_rms"] == 3
    assert out["stat_var"] == 0 and out["stat_skew"] == 0 and out["stat_iqr"] == 0


def test_zero_mean_leaves_coefficient_of_variation_undefined() -> None:
    out = statistics.compute(_region([-2.0, -1.0, 1.0, 2.0]))
    assert math.isnan(out["stat_cov"])
    assert math.isnan(out["stat_qcod"])  # P25 + P75 = 0
    assert out["stat_mean"] == 0 and out["stat_var"] == 2.5


def test_robust_deviation_without_voxels_between_p10_and_p90_is_undefined() -> None:
    out = statistics.compute(_region([1.0, 2.0]))  # P10 = 1.1, P90 = 1.9
    assert math.isnan(out["stat_rmad"])
    assert out["stat_mad"] == 0.5


def test_reads_only_the_intensity_mask() -> None:
    ctx = _region([1.0, 2.0, 10.0, 20.0], resegment=(None, 15.0))
    out = statistics.compute(ctx)
    assert out["stat_max"] == 10 and out["stat_mean"] == pytest.approx(13 / 3)


def test_features_read_raw_intensities_not_grey_levels() -> None:
    out = statistics.compute(_region([0.5, 2.5, 4.5], bin_width=25.0))
    assert out["stat_mean"] == pytest.approx(2.5) and out["stat_range"] == 4


def test_aggregation_is_refused() -> None:
    with pytest.raises(ConfigError, match="aggregation '3D' does not apply"):
        statistics.compute(_region([1.0, 2.0]), aggregation="3D")
    assert statistics.AGGREGATIONS == () and statistics.DEFAULT_AGGREGATION is None


def test_an_empty_sample_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="holds 0 voxels"):
        statistics.Distribution.of(np.array([]))
    with pytest.raises(ImageError, match=r"1 of the 2 voxels .* are not finite"):
        statistics.Distribution.of(np.array([1.0, np.nan]))


def test_every_feature_is_registered_with_code_name_and_meaning() -> None:
    # catalogue.catalogue() imports every family module; read the registry itself so this test
    # stands on the statistics module alone.
    tags = statistics.compute(_region([1.0, 2.0]))
    for tag in tags:
        spec = catalogue._REGISTRY[tag]
        assert spec.family == "statistics"
        assert len(spec.code) == 4 and spec.meaning.endswith(".")
    assert catalogue._REGISTRY["stat_kurt"].name == "ExcessKurtosis"
    assert not catalogue._REGISTRY["stat_kurt"].pyradiomics
    assert catalogue._REGISTRY["stat_p10"].column == "original_firstorder_10Percentile"
