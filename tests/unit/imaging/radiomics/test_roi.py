"""The prepared region: IBSI discretisation and re-segmentation."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import ConfigError, ImageError
from medimg_core.imaging.radiomics.roi import RoiContext, discretise
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING


def test_fixed_bin_width_starts_at_the_lower_bound() -> None:
    values = np.array([-1000.0, -975.0, -951.0, -950.0, 0.0])
    levels, n = discretise(values, method="fixed_bin_width", bin_width=25, lower_bound=-1000)
    assert levels.tolist() == [1, 2, 2, 3, 41]
    assert n == 41


def test_fixed_bin_width_without_a_bound_starts_at_the_region_minimum() -> None:
    levels, n = discretise(np.array([3.0, 3.5, 4.0, 7.9]), method="fixed_bin_width", bin_width=1)
    assert levels.tolist() == [1, 1, 2, 5]
    assert n == 5


def test_fixed_bin_count_puts_the_maximum_in_the_last_bin() -> None:
    levels, n = discretise(
        np.array([0.0, 2.5, 5.0, 7.5, 10.0]), method="fixed_bin_count", bin_count=4
    )
    assert levels.tolist() == [1, 2, 3, 4, 4]
    assert n == 4


def test_a_constant_region_is_one_level() -> None:
    levels, n = discretise(np.full(5, 7.0), method="fixed_bin_count", bin_count=8)
    assert levels.tolist() == [1] * 5 and n == 8


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "fixed_bin_width", "bin_width": 0}, "binWidth must be a positive"),
        ({"method": "fixed_bin_count", "bin_count": 0}, "binCount must be a whole number"),
        ({"method": "equal_probability"}, "Unknown discretisation"),
    ],
)
def test_bad_discretisation_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        discretise(np.arange(3.0), **kwargs)


def test_the_phantom_keeps_its_grey_levels_with_bin_width_one() -> None:
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
    assert ctx.n_levels == 6
    assert np.array_equal(ctx.levels[MASK], IMAGE[MASK].astype(int))
    assert (ctx.levels[~MASK] == 0).all()
    assert ctx.voxel_volume == 8.0
    assert ctx.values.size == 74


def test_resegmentation_leaves_the_morphological_mask_alone() -> None:
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING, resegment=(2.0, None))
    assert ctx.morph_mask.sum() == 74
    assert ctx.int_mask.sum() == 24  # the 3, 4 and 6 voxels
    assert ctx.lower_bound == 2.0
    assert ctx.levels[ctx.int_mask].min() == 2  # 3 - 2 → second bin of width 1


def test_an_empty_range_and_bad_shapes_are_image_errors() -> None:
    with pytest.raises(ImageError, match="no voxel inside the re-segmentation range"):
        RoiContext.from_arrays(IMAGE, MASK, SPACING, resegment=(100.0, 200.0))
    with pytest.raises(ImageError, match="3-D arrays of one shape"):
        RoiContext.from_arrays(IMAGE, MASK[:2], SPACING)
