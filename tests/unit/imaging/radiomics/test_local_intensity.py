"""Local intensity peaks: IBSI digital phantom, hand-computed volumes, edges and ties."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue, local_intensity
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference

PHANTOM_TAGS = sorted(tag for tag in reference() if tag.startswith("loc_"))


def _peaks(image: np.ndarray, mask: np.ndarray, spacing: float) -> dict[str, float]:
    ctx = RoiContext.from_arrays(image, mask, (spacing, spacing, spacing))
    return local_intensity.compute(ctx)


def test_every_phantom_reference_value_is_tested() -> None:
    assert PHANTOM_TAGS == ["loc_peak_glob", "loc_peak_loc"]
    assert set(_peaks(IMAGE, MASK, 2.0)) == set(PHANTOM_TAGS)


@pytest.mark.parametrize("tag", PHANTOM_TAGS)
def test_phantom_matches_ibsi(tag: str) -> None:
    value, tolerance = reference()[tag]
    ours = _peaks(IMAGE, MASK, SPACING[0])[tag]
    assert agrees(ours, value, tolerance), f"{tag}: ours {ours}, IBSI {value}"


def test_the_voxel_outside_the_region_counts_in_the_peaks() -> None:
    # The sphere reads the image around and inside the region, the excluded voxel (9) too:
    # with 1 there the peaks fall to 2.42 and 2.84, off the reference values.
    filled = IMAGE.copy()
    filled[2, 2, 2] = 1.0
    peaks = _peaks(filled, MASK, SPACING[0])
    assert peaks["loc_peak_loc"] == pytest.approx(2.42, abs=0.01)
    assert peaks["loc_peak_glob"] == pytest.approx(2.84, abs=0.01)


def test_sphere_sizes_by_hand() -> None:
    # Lattice points within radius 6.2035 mm: at 2 mm spacing those with i² + j² + k² ≤ 9 (123);
    # at 5 mm the centre and its 6 face neighbours; at 10 mm the centre alone.
    assert local_intensity.sphere_kernel((2.0, 2.0, 2.0)).sum() == 123
    assert local_intensity.sphere_kernel((5.0, 5.0, 5.0)).sum() == 7
    assert local_intensity.sphere_kernel((10.0, 10.0, 10.0)).sum() == 1
    assert local_intensity.sphere_kernel((1.0, 3.0, 3.0)).shape == (13, 5, 5)


def test_line_of_voxels_by_hand() -> None:
    # At 5 mm spacing a voxel's sphere holds itself and its two neighbours along the line.
    image = np.array([[[8.0, 8.0, 8.0, 0.0, 9.0, 0.0]]])
    out = _peaks(image, np.ones(image.shape, dtype=bool), 5.0)
    assert out["loc_peak_loc"] == pytest.approx(3.0)  # around the 9: (0 + 9 + 0) / 3
    assert out["loc_peak_glob"] == pytest.approx(8.0)  # around the second 8


def test_sphere_reads_voxels_outside_the_region_and_not_past_the_edge() -> None:
    image = np.array([[[2.0, 8.0, 5.0, 100.0]]])
    mask = np.array([[[True, False, False, False]]])
    out = _peaks(image, mask, 5.0)
    # Only the voxel at the edge is in the region; its sphere covers it and its neighbour
    # (outside the region), nothing beyond the image: (2 + 8) / 2.
    assert out["loc_peak_loc"] == pytest.approx(5.0)
    assert out["loc_peak_glob"] == pytest.approx(5.0)


def test_ties_take_the_highest_sphere_mean() -> None:
    image = np.zeros((3, 3, 7))
    image[1, 1, 1] = image[1, 1, 5] = 6.0
    image[1, 1, 4] = 3.0
    out = _peaks(image, np.ones(image.shape, dtype=bool), 5.0)
    # The two 6s: (0 + 6 + 0 + 0·4) / 7 and (3 + 6 + 0 + 0·4) / 7.
    assert out["loc_peak_loc"] == pytest.approx(9.0 / 7.0)
    assert out["loc_peak_glob"] == pytest.approx(9.0 / 7.0)


def test_three_dimensional_sphere_with_anisotropic_spacing() -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 50, size=(6, 9, 9)).astype(np.float64)
    mask = np.zeros(image.shape, dtype=bool)
    mask[2:4, 3:6, 3:6] = True
    spacing = (3.0, 2.0, 2.0)
    out = local_intensity.compute(RoiContext.from_arrays(image, mask, spacing))
    # Direct reading of the definition, voxel by voxel (small volume, so loops are fine here).
    centres = np.indices(image.shape).reshape(3, -1).T * np.array(spacing)
    means = {}
    for index in np.argwhere(mask):
        near = np.linalg.norm(centres - index * np.array(spacing), axis=1) <= 6.2035
        means[tuple(index)] = image.ravel()[near].mean()
    brightest = image[mask].max()
    local = max(m for i, m in means.items() if image[i] == brightest)
    assert out["loc_peak_glob"] == pytest.approx(max(means.values()), rel=1e-12)
    assert out["loc_peak_loc"] == pytest.approx(local, rel=1e-12)


def test_one_voxel_region_and_nan_outside_the_region() -> None:
    image = np.full((3, 3, 3), 4.0)
    image[0, 0, 0] = np.nan  # missing intensities outside the region are left out
    image[1, 1, 0] = 10.0
    mask = np.zeros(image.shape, dtype=bool)
    mask[1, 1, 1] = True
    out = _peaks(image, mask, 5.0)
    assert out["loc_peak_loc"] == pytest.approx((4.0 * 6 + 10.0) / 7)
    assert out["loc_peak_glob"] == pytest.approx((4.0 * 6 + 10.0) / 7)


def test_aggregation_is_refused() -> None:
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING)
    with pytest.raises(ConfigError, match="3D only, got aggregation='3D_avg'"):
        local_intensity.compute(ctx, aggregation="3D_avg")
    assert local_intensity.AGGREGATIONS == () and local_intensity.DEFAULT_AGGREGATION is None


def test_catalogue_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogue, "_load_families", lambda: None)
    specs = {s.tag: s for s in catalogue.catalogue("local_intensity")}
    assert specs["loc_peak_loc"].code == "VJGA"
    assert specs["loc_peak_glob"].code == "0F91"
    assert specs["loc_peak_glob"].column == "original_localintensity_PeakGlobal"
    assert not any(s.pyradiomics for s in specs.values())
