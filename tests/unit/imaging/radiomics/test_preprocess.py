"""Preprocessing (IBSI chapter 2): crop, grid-centred resampling, rounding, re-segmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_core.errors import ImageError
from medimg_core.imaging.radiomics.preprocess import SPHERE_RADIUS_MM, grid, prepare, resample
from medimg_core.imaging.radiomics.roi import RoiContext
from medimg_core.imaging.radiomics.settings import RadiomicsSettings
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING


def _settings(**setting: object) -> RadiomicsSettings:
    return RadiomicsSettings.from_mapping({"setting": setting})


def _ellipsoid(shape: tuple[int, int, int], radii: tuple[float, float, float]) -> np.ndarray:
    z, y, x = np.indices(shape, dtype=np.float64)
    centre = [(n - 1) / 2 for n in shape]
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (x - centre[2]) / radii[2]
    ) ** 2 <= 1


def test_sphere_radius_holds_one_cubic_centimetre() -> None:
    assert 4 / 3 * math.pi * SPHERE_RADIUS_MM**3 == pytest.approx(1000.0)
    assert pytest.approx(6.2035, abs=1e-4) == SPHERE_RADIUS_MM


def test_grid_follows_the_ibsi_align_grid_centres_example() -> None:
    # IBSI 2.4: 4 voxels of 3 mm resampled to 2 mm give 6 voxels centred on the old grid.
    n, origin, step = grid(4, 3.0, 2.0)
    assert (n, step) == (6, pytest.approx(2 / 3))
    assert origin == pytest.approx(0.5 * (3 - 2 / 3 * 5))
    centre_old, centre_new = 1.5, origin + step * 2.5
    assert centre_new == pytest.approx(centre_old)


def test_grid_size_rounds_up_without_floating_point_surprises() -> None:
    assert grid(10, 0.3, 0.1)[0] == 30
    assert grid(10, 3.0, 1.0)[0] == 30
    assert grid(5, 1.0, 2.0)[0] == 3
    assert grid(1, 1.0, 5.0)[0] == 1


def test_resample_triples_thick_slices() -> None:
    ramp = np.broadcast_to(np.arange(6, dtype=np.float64)[:, None, None], (6, 4, 5))
    out = resample(ramp, (3.0, 1.0, 1.0), (1.0, 1.0, 1.0), order=1)
    assert out.shape == (18, 4, 5)
    # New slice i lies at old index (i - 1) / 3: linear interpolation reproduces the ramp,
    # and the ends take the boundary value (IBSI: pad with the boundary intensities).
    expected = np.clip((np.arange(18) - 1) / 3, 0, 5)
    np.testing.assert_allclose(out[:, 2, 2], expected, atol=1e-12)
    nearest = resample(ramp, (3.0, 1.0, 1.0), (1.0, 1.0, 1.0), order=0)
    np.testing.assert_array_equal(nearest[:, 0, 0], np.repeat(np.arange(6.0), 3))


def test_bspline_resampling_keeps_a_constant_image() -> None:
    flat = np.full((5, 6, 7), 42.0)
    out = resample(flat, (2.0, 2.0, 2.0), (1.5, 1.5, 1.5), order=3)
    assert out.shape == (7, 8, 10)
    np.testing.assert_allclose(out, 42.0, atol=1e-9)


def test_the_ibsi_phantom_passes_through_unchanged() -> None:
    ctx = prepare(IMAGE, MASK, SPACING, _settings(binWidth=1))
    ref = RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0)
    np.testing.assert_array_equal(ctx.image, ref.image)
    np.testing.assert_array_equal(ctx.levels, ref.levels)
    assert (ctx.n_levels, ctx.spacing, int(ctx.morph_mask.sum())) == (6, SPACING, 74)


def test_the_region_is_cropped_with_room_for_the_local_intensity_sphere() -> None:
    image = np.arange(40 * 50 * 60, dtype=np.float64).reshape(40, 50, 60)
    mask = np.zeros(image.shape, dtype=np.uint8)
    mask[20:23, 25:28, 30:34] = 1
    ctx = prepare(image, mask, (1.0, 1.0, 1.0), _settings())
    margin = math.ceil(SPHERE_RADIUS_MM) + 1  # 8 voxels of 1 mm, more than padDistance 5
    assert ctx.image.shape == (3 + 2 * margin, 3 + 2 * margin, 4 + 2 * margin)
    assert ctx.image[margin, margin, margin] == image[20, 25, 30]
    assert int(ctx.morph_mask.sum()) == 36
    wide = prepare(image, mask, (1.0, 1.0, 1.0), _settings(padDistance=12))
    assert wide.image.shape == (27, 27, 28)


def test_cropping_gives_the_same_values_as_resampling_the_whole_image() -> None:
    rng = np.random.default_rng(7)
    image = rng.normal(0.0, 100.0, (30, 40, 40))
    mask = np.zeros(image.shape, dtype=bool)
    mask[12:18, 15:26, 14:25] = True
    spacing, new = (2.5, 0.8, 0.8), (1.0, 1.0, 1.0)
    for interpolator, order in (("linear", 1), ("bspline", 3)):
        ctx = prepare(
            image,
            mask,
            spacing,
            _settings(resampledPixelSpacing=[1, 1, 1], interpolator=interpolator),
        )
        full = resample(image, spacing, new, order=order)
        full_mask = resample(mask.astype(np.float64), spacing, new, order=1) >= 0.5
        starts = [
            int(np.nonzero(full_mask)[a].min()) - int(np.nonzero(ctx.morph_mask)[a].min())
            for a in range(3)
        ]
        window = tuple(slice(s, s + n) for s, n in zip(starts, ctx.image.shape, strict=True))
        np.testing.assert_array_equal(ctx.morph_mask, full_mask[window])
        assert int(full_mask.sum()) == int(ctx.morph_mask.sum())
        np.testing.assert_allclose(ctx.image, full[window], atol=1e-6)


def test_integer_images_are_rounded_after_interpolation_and_float_images_are_not() -> None:
    rng = np.random.default_rng(3)
    mask = _ellipsoid((10, 20, 20), (3, 7, 7))
    ct = rng.integers(-100, 100, mask.shape).astype(np.int16)
    settings = _settings(resampledPixelSpacing=[0.7, 0.7, 1.3])
    rounded = prepare(ct, mask, (2.0, 1.0, 1.0), settings)
    np.testing.assert_array_equal(rounded.image, np.rint(rounded.image))
    assert rounded.spacing == (1.3, 0.7, 0.7)
    mr = ct.astype(np.float64) + 0.25
    smooth = prepare(mr, mask, (2.0, 1.0, 1.0), settings)
    assert np.any(smooth.image != np.rint(smooth.image))


def test_zero_spacing_keeps_that_axis() -> None:
    mask = _ellipsoid((10, 20, 20), (3, 7, 7))
    image = np.ones(mask.shape)
    ctx = prepare(image, mask, (2.5, 1.0, 1.0), _settings(resampledPixelSpacing=[0.5, 0.5, 0]))
    assert ctx.spacing == (2.5, 0.5, 0.5)
    slices = np.unique(np.nonzero(ctx.morph_mask)[0])
    assert slices.size == np.unique(np.nonzero(mask)[0]).size == 6


def test_resegmentation_trims_the_intensity_mask_only() -> None:
    image = np.tile(np.arange(10, dtype=np.float64), (6, 6, 1)) * 10  # 0, 10, ..., 90 along x
    mask = np.zeros(image.shape, dtype=bool)
    mask[1:5, 1:5, :] = True
    ctx = prepare(image, mask, (1.0, 1.0, 1.0), _settings(resegmentRange=[20, 65], binWidth=10))
    assert int(ctx.morph_mask.sum()) == 160
    assert int(ctx.int_mask.sum()) == 16 * 5  # x = 20, 30, 40, 50, 60
    assert set(np.unique(ctx.values)) == {20.0, 30.0, 40.0, 50.0, 60.0}
    # The fixed bin width starts at the range's lower bound: 20 -> level 1, 60 -> level 5.
    assert ctx.lower_bound == 20.0
    assert (int(ctx.levels[ctx.int_mask].min()), ctx.n_levels) == (1, 5)
    only_low = prepare(image, mask, (1.0, 1.0, 1.0), _settings(resegmentRange=[75]))
    assert set(np.unique(only_low.values)) == {80.0, 90.0}


def test_bin_count_is_used_when_given() -> None:
    image = np.tile(np.arange(10, dtype=np.float64), (6, 6, 1))
    mask = np.ones(image.shape, dtype=bool)
    ctx = prepare(image, mask, (1.0, 1.0, 1.0), _settings(binCount=5))
    assert (ctx.n_levels, ctx.bin_width) == (5, None)
    assert sorted(np.unique(ctx.levels[ctx.int_mask])) == [1, 2, 3, 4, 5]


def test_the_label_selects_the_region() -> None:
    mask = np.zeros((5, 5, 5), dtype=np.int32)
    mask[1:3, 1:3, 1:3] = 2
    mask[3:5, 3:5, 3:5] = 1
    ctx = prepare(np.ones(mask.shape), mask, (1.0, 1.0, 1.0), _settings(label=2))
    assert int(ctx.morph_mask.sum()) == 8
    with pytest.raises(ImageError, match="no voxel with label 3 \\(labels present: 0, 1, 2\\)"):
        prepare(np.ones(mask.shape), mask, (1.0, 1.0, 1.0), _settings(label=3))


def test_a_region_that_vanishes_when_resampled_is_refused() -> None:
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[3, 3, 3] = True  # 1.5 old voxels from the nearest new centre (at index 1.5)
    with pytest.raises(
        ImageError, match=r"vanishes when resampled to .*finer resampledPixelSpacing"
    ):
        prepare(
            np.ones(mask.shape), mask, (1.0, 1.0, 1.0), _settings(resampledPixelSpacing=[4, 4, 4])
        )


def test_minimum_roi_dimensions_and_size() -> None:
    mask = np.zeros((5, 6, 6), dtype=bool)
    mask[2, 1:5, 1:5] = True
    image = np.ones(mask.shape)
    assert int(prepare(image, mask, (1.0, 1.0, 1.0), _settings()).morph_mask.sum()) == 16
    with pytest.raises(ImageError, match=r"extends over 2 axes .*minimumROIDimensions asks for 3"):
        prepare(image, mask, (1.0, 1.0, 1.0), _settings(minimumROIDimensions=3))
    with pytest.raises(ImageError, match="holds 16 voxels; minimumROISize asks for at least 17"):
        prepare(image, mask, (1.0, 1.0, 1.0), _settings(minimumROISize=17))


def test_an_empty_resegmentation_is_refused() -> None:
    with pytest.raises(ImageError, match="re-segmentation range"):
        prepare(IMAGE, MASK, SPACING, _settings(resegmentRange=[100, 200]))


@pytest.mark.parametrize(
    ("image", "mask", "spacing", "match"),
    [
        (np.ones((4, 4)), np.ones((4, 4), bool), (1, 1, 1), "must be 3-D arrays"),
        (np.ones((4, 4, 4)), np.ones((4, 4, 5), bool), (1, 1, 1), "must be 3-D arrays"),
        (np.full((4, 4, 4), "a"), np.ones((4, 4, 4), bool), (1, 1, 1), "not intensities"),
        (np.ones((4, 4, 4)), np.ones((4, 4, 4), bool), (1, 0, 1), "three positive sizes"),
        (np.ones((4, 4, 4)), np.ones((4, 4, 4), bool), (1, 1), "not three numbers"),
        (
            np.full((4, 4, 4), np.nan),
            np.ones((4, 4, 4), bool),
            (1, 1, 1),
            "64 non-finite intensities",
        ),
    ],
)
def test_unusable_inputs_are_image_errors(
    image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float], match: str
) -> None:
    with pytest.raises(ImageError, match=match):
        prepare(image, mask, spacing, _settings())
