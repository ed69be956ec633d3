"""Intensity histogram: IBSI digital phantom reference values, hand-checked histograms, edge cases."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue, histogram
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference

PHANTOM_TAGS = sorted(tag for tag in reference() if tag.startswith("ih_"))
GRADIENT_TAGS = ("ih_max_grad", "ih_max_grad_g", "ih_min_grad", "ih_min_grad_g")


def _region(values: list[float], **kwargs: Any) -> RoiContext:
    image = np.asarray(values, dtype=np.float64).reshape(1, 1, -1)
    return RoiContext.from_arrays(image, np.ones(image.shape, dtype=bool), **kwargs)


@pytest.fixture(scope="module")
def phantom() -> dict[str, float]:
    return histogram.compute(RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0))


def test_every_phantom_reference_value_is_tested() -> None:
    assert len(PHANTOM_TAGS) == 23


@pytest.mark.parametrize("tag", PHANTOM_TAGS)
def test_phantom_matches_ibsi(phantom: dict[str, float], tag: str) -> None:
    value, tolerance = reference()[tag]
    assert agrees(phantom[tag], value, tolerance), f"{tag}: ours {phantom[tag]}, IBSI {value}"


def test_phantom_histogram_and_gradient() -> None:
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
    h = histogram.Histogram.of(ctx.levels[ctx.int_mask], ctx.n_levels)
    assert h.counts.tolist() == [50, 0, 1, 16, 0, 7]  # bins without voxels are kept
    assert h.gradient.tolist() == [-50.0, -24.5, 8.0, -0.5, -4.5, 7.0]


def test_hand_checked_histogram() -> None:
    out = histogram.compute(_region([1, 1, 2, 4]))  # counts 2, 1, 0, 1
    assert out["ih_mode"] == 1
    assert out["ih_entropy"] == pytest.approx(1.5)  # p = 1/2, 1/4, 1/4
    assert out["ih_uniformity"] == pytest.approx(0.375)
    # H' = [1 - 2, (0 - 2) / 2, (1 - 1) / 2, 1 - 0] = [-1, -1, 0, 1]
    assert out["ih_max_grad"] == 1 and out["ih_max_grad_g"] == 4
    assert out["ih_min_grad"] == -1 and out["ih_min_grad_g"] == 1  # the lower level on ties
    assert out["ih_mean"] == 2 and out["ih_range"] == 3 and out["ih_median"] == 1.5


def test_features_read_grey_levels_not_raw_intensities() -> None:
    # bin width 2 from the lowest intensity 0: levels 1, 1, 2, 2, 3
    out = histogram.compute(_region([0.0, 1.0, 2.0, 3.0, 5.0], bin_width=2.0))
    assert out["ih_max"] == 3 and out["ih_min"] == 1
    assert out["ih_mean"] == pytest.approx(9 / 5)
    assert out["ih_mode"] == 2  # levels 1 and 2 tie; 2 is closer to the mean 1.8
    out = histogram.compute(_region([0.0, 1.0, 2.0, 4.0, 5.0], bin_width=2.0))
    assert out["ih_mode"] == 1  # levels 1, 1, 2, 3, 3: 1 and 3 as close to the mean 2


def test_mode_ties_go_to_the_level_closest_to_the_mean_then_the_lower_one() -> None:
    assert histogram.compute(_region([1, 1, 3, 4, 4]))["ih_mode"] == 4  # mean 2.6
    assert histogram.compute(_region([1, 1, 3, 3]))["ih_mode"] == 1  # mean 2, equidistant


def test_fixed_bin_count_histogram_spans_every_bin() -> None:
    ctx = _region([0.0, 0.0, 10.0], bin_width=None, bin_count=4)
    h = histogram.Histogram.of(ctx.levels[ctx.int_mask], ctx.n_levels)
    assert h.counts.tolist() == [2, 0, 0, 1]
    out = histogram.compute(ctx)
    assert out["ih_min_grad"] == -2 and out["ih_min_grad_g"] == 1
    assert out["ih_max_grad"] == 1 and out["ih_max_grad_g"] == 4


def test_single_grey_level_gives_nan_gradients_not_an_exception() -> None:
    out = histogram.compute(_region([5.0, 5.2, 5.4]))  # one bin of width 1
    for tag in GRADIENT_TAGS:
        assert math.isnan(out[tag]), tag
    assert out["ih_entropy"] == 0 and out["ih_uniformity"] == 1
    assert out["ih_skew"] == 0 and out["ih_kurt"] == 0 and out["ih_mode"] == 1


def test_single_voxel_gives_numbers_or_nan() -> None:
    out = histogram.compute(_region([42.0]))
    assert out["ih_mean"] == 1 and out["ih_var"] == 0 and out["ih_cov"] == 0
    assert math.isnan(out["ih_max_grad"])


def test_aggregation_is_refused() -> None:
    with pytest.raises(ConfigError, match="histogram features"):
        histogram.compute(_region([1.0, 2.0]), aggregation="3D")
    assert histogram.AGGREGATIONS == () and histogram.DEFAULT_AGGREGATION is None


def test_every_feature_is_registered_with_code_name_and_meaning() -> None:
    # catalogue.catalogue() imports every family module; read the registry itself so this test
    # stands on the histogram module alone.
    tags = histogram.compute(_region([1.0, 2.0, 3.0]))
    assert len(tags) == 23
    for tag in tags:
        spec = catalogue._REGISTRY[tag]
        assert spec.family == "histogram"
        assert len(spec.code) == 4 and spec.meaning.endswith(".")
    assert catalogue._REGISTRY["ih_entropy"].column == "original_histogram_Entropy"
    assert catalogue._REGISTRY["ih_uniformity"].pyradiomics
    assert not catalogue._REGISTRY["ih_mean"].pyradiomics
