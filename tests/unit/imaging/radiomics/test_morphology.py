"""Morphology: IBSI digital phantom reference values, hand-checked shapes, undefined cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue, morphology
from medimg_core.imaging.radiomics.roi import RoiContext
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference

PHANTOM_TAGS = sorted(tag for tag in reference() if tag.startswith("morph_"))
# IBSI publishes no phantom value for these, and medimg does not compute them.
NOT_COMPUTED = {
    "morph_vol_dens_ombb",
    "morph_area_dens_ombb",
    "morph_vol_dens_mvee",
    "morph_area_dens_mvee",
}


@pytest.fixture(scope="module")
def phantom() -> dict[str, float]:
    return morphology.compute(RoiContext.from_arrays(IMAGE, MASK, SPACING, bin_width=1.0))


def _context(mask: np.ndarray, image: np.ndarray | None = None, spacing: float = 1.0) -> RoiContext:
    values = np.ones(mask.shape) if image is None else image
    return RoiContext.from_arrays(values, mask, (spacing, spacing, spacing))


def test_every_phantom_reference_value_is_tested(phantom: dict[str, float]) -> None:
    assert len(PHANTOM_TAGS) == 25
    assert set(phantom) == set(PHANTOM_TAGS)
    assert not NOT_COMPUTED & set(reference())


@pytest.mark.parametrize("tag", PHANTOM_TAGS)
def test_phantom_matches_ibsi(phantom: dict[str, float], tag: str) -> None:
    value, tolerance = reference()[tag]
    assert agrees(phantom[tag], value, tolerance), f"{tag}: ours {phantom[tag]}, IBSI {value}"


@pytest.fixture(scope="module")
def sphere() -> dict[str, float]:
    z, y, x = np.mgrid[-12:13, -12:13, -12:13]
    ball = z**2 + y**2 + x**2 <= 10**2
    return morphology.compute(_context(ball, image=1.0 + (x > 0)))


def test_voxelised_sphere_volume_and_sphericity(sphere: dict[str, float]) -> None:
    exact = 4.0 / 3.0 * math.pi * 10**3
    assert sphere["morph_volume"] == pytest.approx(exact, rel=0.02)
    assert sphere["morph_vol_approx"] == 4169.0  # voxel centres within 10 mm, counted
    assert sphere["morph_sphericity"] > 0.9
    assert sphere["morph_diam"] == pytest.approx(21.0, abs=0.1)  # 2 × (10 + 0.5)
    assert sphere["morph_pca_elongation"] == pytest.approx(1.0, abs=1e-9)
    assert sphere["morph_pca_flatness"] == pytest.approx(1.0, abs=1e-9)
    # Left half 1, right half 2: strongly clustered intensities.
    assert sphere["morph_moran_i"] > 0.1
    assert sphere["morph_geary_c"] < 1.0


def _box_axis(n: int, n_voxels: int) -> float:
    """4√λ along a side of n voxels (1 mm): λ = (n² − 1)/12 × N/(N − 1), the sample variance."""
    return 4 * math.sqrt((n**2 - 1) / 12 * n_voxels / (n_voxels - 1))


def test_cube_fills_its_bounding_box() -> None:
    mask = np.zeros((14, 14, 14), dtype=bool)
    mask[2:12, 2:12, 2:12] = True
    out = morphology.compute(_context(mask, spacing=2.0))
    assert out["morph_vol_dens_aabb"] == pytest.approx(1.0, abs=0.02)
    assert out["morph_vol_approx"] == 8000.0
    assert out["morph_vol_dens_conv_hull"] == pytest.approx(1.0, abs=1e-9)
    assert out["morph_pca_maj_axis"] == pytest.approx(2.0 * _box_axis(10, 1000), rel=1e-12)
    assert out["morph_pca_least_axis"] == pytest.approx(out["morph_pca_maj_axis"], rel=1e-12)


def test_box_axes_follow_its_sides() -> None:
    mask = np.zeros((5, 8, 14), dtype=bool)
    mask[1:4, 1:7, 1:13] = True  # 3 × 6 × 12 voxels
    out = morphology.compute(_context(mask))
    lengths = {n: _box_axis(n, 216) for n in (3, 6, 12)}
    assert out["morph_pca_maj_axis"] == pytest.approx(lengths[12], rel=1e-12)
    assert out["morph_pca_min_axis"] == pytest.approx(lengths[6], rel=1e-12)
    assert out["morph_pca_least_axis"] == pytest.approx(lengths[3], rel=1e-12)
    assert out["morph_pca_elongation"] == pytest.approx(math.sqrt(35 / 143), rel=1e-12)
    assert out["morph_pca_flatness"] == pytest.approx(math.sqrt(8 / 143), rel=1e-12)


def test_single_voxel_is_an_octahedron_and_pca_is_undefined() -> None:
    mask = np.zeros((3, 3, 3), dtype=bool)
    mask[1, 1, 1] = True
    out = morphology.compute(_context(mask, image=np.full((3, 3, 3), 5.0)))
    # Marching cubes draws an octahedron with vertices 0.5 voxel from the centre.
    assert out["morph_volume"] == pytest.approx(1 / 6)
    assert out["morph_area_mesh"] == pytest.approx(math.sqrt(3))
    assert out["morph_diam"] == pytest.approx(1.0)
    assert out["morph_vol_dens_aabb"] == pytest.approx(1 / 6)
    assert out["morph_integ_int"] == pytest.approx(5 / 6)
    assert out["morph_com"] == 0.0
    for tag in (
        "morph_pca_maj_axis",
        "morph_pca_elongation",
        "morph_pca_flatness",
        "morph_vol_dens_aee",
        "morph_area_dens_aee",
        "morph_moran_i",
        "morph_geary_c",
    ):
        assert math.isnan(out[tag]), tag


def test_single_grey_level_leaves_autocorrelation_undefined() -> None:
    mask = np.ones((3, 4, 5), dtype=bool)
    out = morphology.compute(_context(mask, image=np.full(mask.shape, 7.0)))
    assert math.isnan(out["morph_moran_i"]) and math.isnan(out["morph_geary_c"])
    assert out["morph_integ_int"] == pytest.approx(7.0 * out["morph_volume"])
    assert out["morph_com"] == pytest.approx(0.0, abs=1e-12)


def test_two_voxel_autocorrelation_by_hand() -> None:
    # Values 0 and 1 one voxel apart: w = 1 both ways, mean 0.5, sum of squares 0.5.
    points = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    moran, geary = morphology.spatial_autocorrelation(points, np.array([0.0, 1.0]))
    assert moran == pytest.approx(-1.0)  # 2/2 × (2 × −0.25) / 0.5
    assert geary == pytest.approx(1.0)  # 1/4 × (2 × 1) / 0.5


def test_checkerboard_is_anticorrelated() -> None:
    z, y, x = np.indices((4, 6, 6))
    image = ((z + y + x) % 2).astype(np.float64)
    out = morphology.compute(_context(np.ones(image.shape, dtype=bool), image=image))
    assert out["morph_moran_i"] < 0
    assert out["morph_geary_c"] > 1


def test_autocorrelation_subsample_is_reproducible_and_close() -> None:
    rng = np.random.default_rng(3)
    z, y, x = np.indices((10, 10, 10))
    points = np.stack([z.ravel(), y.ravel(), x.ravel()], axis=1).astype(np.float64)
    values = x.ravel() + rng.normal(0, 2, size=x.size)
    exact = morphology.spatial_autocorrelation(points, values)
    sampled = morphology.spatial_autocorrelation(points, values, max_voxels=400)
    assert sampled == morphology.spatial_autocorrelation(points, values, max_voxels=400)
    assert sampled != exact
    assert sampled[0] == pytest.approx(exact[0], abs=0.02)
    assert sampled[1] == pytest.approx(exact[1], abs=0.05)


def test_centre_of_mass_shift_by_hand() -> None:
    mask = np.zeros((1, 1, 4), dtype=bool)
    mask[0, 0, 1:3] = True
    image = np.array([[[0.0, 1.0, 3.0, 0.0]]])
    out = morphology.compute(_context(mask, image=image, spacing=2.0))
    # Centres at 2 and 4 mm: geometric 3 mm, weighted (2 × 1 + 4 × 3) / 4 = 3.5 mm.
    assert out["morph_com"] == pytest.approx(0.5)


def test_ellipsoid_area_series() -> None:
    assert morphology.ellipsoid_area(3.0, 3.0, 3.0) == pytest.approx(4 * math.pi * 9)
    # Semi-axes 2, 1, 1: α = β = √(3/4), P_ν(1) = 1, so the series is Σ (3/4)^ν / (1 − 4ν²).
    series = sum(0.75**nu / (1 - 4 * nu**2) for nu in range(21))
    assert morphology.ellipsoid_area(2.0, 1.0, 1.0) == pytest.approx(8 * math.pi * series)


def test_aggregation_and_options_are_checked() -> None:
    ctx = RoiContext.from_arrays(IMAGE, MASK, SPACING)
    with pytest.raises(ConfigError, match="3D only, got aggregation='3D'"):
        morphology.compute(ctx, aggregation="3D")
    with pytest.raises(ConfigError, match=r"max_autocorrelation_voxels must be .* got 1"):
        morphology.compute(ctx, max_autocorrelation_voxels=1)
    assert morphology.AGGREGATIONS == () and morphology.DEFAULT_AGGREGATION is None


def test_catalogue_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalogue, "_load_families", lambda: None)
    specs = {s.tag: s for s in catalogue.catalogue("morphology")}
    assert set(specs) == set(PHANTOM_TAGS)
    assert specs["morph_volume"].column == "original_shape_MeshVolume"
    assert specs["morph_vol_approx"].name == "VoxelVolume"
    assert specs["morph_diam"].code == "L0JK"
    assert specs["morph_moran_i"].pyradiomics is False
    assert sum(s.pyradiomics for s in specs.values()) == 14
    assert len({s.code for s in specs.values()}) == 25
    assert all(s.meaning and len(s.meaning) < 100 for s in specs.values())
