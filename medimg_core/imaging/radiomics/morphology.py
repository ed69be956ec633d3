"""Morphological features (IBSI 3.1): the size and shape of the region, in millimetres.

Mesh-based features read a triangle mesh drawn by marching cubes (level 0.5) around the
morphological mask, padded by one voxel so regions touching the image edge close. PCA-based
features read the voxel centres of the morphological mask; the centre of mass shift, integrated
intensity, Moran's I and Geary's C also read the intensities inside the intensity mask.

The oriented minimum bounding box (OMBB) and minimum volume enclosing ellipsoid (MVEE) densities
are not computed: IBSI publishes no reliable reference value for them on the digital phantom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.polynomial import legendre
from scipy.spatial import ConvexHull, QhullError
from scipy.spatial.distance import cdist
from skimage.measure import marching_cubes

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.roi import RoiContext

__all__ = [
    "AGGREGATIONS",
    "AUTOCORRELATION_MAX_VOXELS",
    "DEFAULT_AGGREGATION",
    "Shape",
    "compute",
    "ellipsoid_area",
    "prepare",
    "spatial_autocorrelation",
]

AGGREGATIONS: tuple[str, ...] = ()
DEFAULT_AGGREGATION: str | None = None

AUTOCORRELATION_MAX_VOXELS = 4000
"""Moran's I and Geary's C use every voxel up to this many, else a fixed-seed random subsample."""

_FAMILY = "morphology"
_AEE_SERIES_TERMS = 20
_CHUNK = 512


@dataclass(frozen=True, eq=False)
class Shape:
    """Everything the morphological features read, computed once per region.

    Attributes
    ----------
    volume : mesh volume V in mm³.
    area : mesh surface area A in mm².
    approx_volume : voxel-counting volume in mm³.
    aabb_extent : edge lengths (z, y, x) in mm of the mesh's axis-aligned bounding box.
    hull_volume, hull_area : volume and area of the mesh's convex hull (nan if degenerate).
    diameter : largest distance between two mesh vertices in mm.
    eigenvalues : PCA eigenvalues (sample covariance) of the voxel centres, largest first, in
        mm²; nan for a single voxel.
    com_shift : distance in mm between the geometric and intensity-weighted centres of mass.
    mean_intensity : mean intensity inside the intensity mask.
    moran_i, geary_c : spatial autocorrelation of intensities (nan when undefined).
    """

    volume: float
    area: float
    approx_volume: float
    aabb_extent: tuple[float, float, float]
    hull_volume: float
    hull_area: float
    diameter: float
    eigenvalues: tuple[float, float, float]
    com_shift: float
    mean_intensity: float
    moran_i: float
    geary_c: float

    @property
    def semi_axes(self) -> tuple[float, float, float]:
        """Semi-axes a ≥ b ≥ c (mm) of the PCA ellipsoid: 2√λ each."""
        major, minor, least = self.eigenvalues
        return 2.0 * math.sqrt(major), 2.0 * math.sqrt(minor), 2.0 * math.sqrt(least)


def _ratio(numerator: float, denominator: float) -> float:
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0:
        return math.nan
    return numerator / denominator


def _voxel_centres(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    centres: np.ndarray = np.argwhere(mask).astype(np.float64) * np.asarray(spacing)
    return centres


def _mesh(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (mm, same frame as voxel centres) and faces of the mask's surface."""
    index = np.argwhere(mask)
    low, high = index.min(axis=0), index.max(axis=0) + 1
    crop = mask[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    padded = np.pad(crop, 1).astype(np.float32)
    vertices, faces, _, _ = marching_cubes(  # type: ignore[no-untyped-call]
        padded, level=0.5, spacing=spacing
    )
    vertices = vertices.astype(np.float64) + (low - 1) * np.asarray(spacing)
    return vertices, faces


def _mesh_volume_area(vertices: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    volume = abs(float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum())) / 6.0
    area = float(np.linalg.norm(np.cross(b - a, c - a), axis=1).sum()) / 2.0
    return volume, area


def _max_distance(points: np.ndarray) -> float:
    best = 0.0
    for start in range(0, len(points), _CHUNK):
        block = cdist(points[start : start + _CHUNK], points[start:])
        best = max(best, float(block.max()))
    return best


def _centre_of_mass_shift(ctx: RoiContext) -> float:
    geometric = _voxel_centres(ctx.morph_mask, ctx.spacing).mean(axis=0)
    weights = ctx.image[ctx.int_mask]
    total = float(weights.sum())
    if total == 0:
        return math.nan
    weighted = (_voxel_centres(ctx.int_mask, ctx.spacing) * weights[:, None]).sum(axis=0) / total
    return float(np.linalg.norm(geometric - weighted))


def spatial_autocorrelation(
    points: np.ndarray, values: np.ndarray, *, max_voxels: int = AUTOCORRELATION_MAX_VOXELS
) -> tuple[float, float]:
    """Moran's I and Geary's C with inverse-distance weights (IBSI N365, NPT7).

    Both are O(N²) in voxels. Up to ``max_voxels`` voxels every pair is used; beyond that a
    random subsample of ``max_voxels`` voxels (fixed seed, so results are reproducible) stands
    in for the region, as IBSI allows. The ratios of pair sums are consistent estimates of the
    full-region values.

    Returns
    -------
    (moran_i, geary_c) : nan when fewer than two voxels or when all intensities are equal.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) > max_voxels:
        keep = np.random.default_rng(0).choice(len(values), size=max_voxels, replace=False)
        points, values = points[keep], values[keep]
    n = len(values)
    deviation = values - values.mean()
    sum_squares = float(deviation @ deviation)
    if n < 2 or sum_squares == 0:
        return math.nan, math.nan
    total_weight = cross = weighted_squares = 0.0
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        distance = cdist(points[start:stop], points)
        weight = np.zeros_like(distance)
        np.divide(1.0, distance, out=weight, where=distance > 0)
        row_weight = weight.sum(axis=1)
        total_weight += float(row_weight.sum())
        cross += float(deviation[start:stop] @ (weight @ deviation))
        weighted_squares += float(deviation[start:stop] ** 2 @ row_weight)
    # The weights are symmetric, so sum_ij w_ij (x_i - x_j)^2 = 2 sum_i z_i^2 w_i. - 2 z'Wz.
    squared_differences = 2.0 * weighted_squares - 2.0 * cross
    moran = n / total_weight * cross / sum_squares
    geary = (n - 1) / (2.0 * total_weight) * squared_differences / sum_squares
    return moran, geary


def prepare(
    ctx: RoiContext, *, max_autocorrelation_voxels: int = AUTOCORRELATION_MAX_VOXELS
) -> Shape:
    """Compute the mesh, convex hull, PCA and intensity summaries of a region once."""
    vertices, faces = _mesh(ctx.morph_mask, ctx.spacing)
    volume, area = _mesh_volume_area(vertices, faces)
    extent = vertices.max(axis=0) - vertices.min(axis=0)
    try:
        hull = ConvexHull(vertices)
        hull_volume, hull_area = float(hull.volume), float(hull.area)
        diameter = _max_distance(vertices[hull.vertices])
    except QhullError:
        hull_volume = hull_area = math.nan
        diameter = _max_distance(vertices)
    centres = _voxel_centres(ctx.morph_mask, ctx.spacing)
    if len(centres) < 2:
        eigen = np.full(3, np.nan)
    else:
        # Sample covariance (N - 1): the IBSI reference values need it (PyRadiomics divides by N,
        # which gives axis lengths smaller by sqrt((N - 1) / N), 0.7 % on the phantom).
        covariance = np.cov(centres, rowvar=False)
        eigen = np.clip(np.sort(np.linalg.eigvalsh(covariance))[::-1], 0.0, None)
    moran, geary = spatial_autocorrelation(
        _voxel_centres(ctx.int_mask, ctx.spacing),
        ctx.image[ctx.int_mask],
        max_voxels=max_autocorrelation_voxels,
    )
    return Shape(
        volume=volume,
        area=area,
        approx_volume=float(ctx.morph_mask.sum()) * ctx.voxel_volume,
        aabb_extent=(float(extent[0]), float(extent[1]), float(extent[2])),
        hull_volume=hull_volume,
        hull_area=hull_area,
        diameter=diameter,
        eigenvalues=(float(eigen[0]), float(eigen[1]), float(eigen[2])),
        com_shift=_centre_of_mass_shift(ctx),
        mean_intensity=float(ctx.values.mean()),
        moran_i=moran,
        geary_c=geary,
    )


def ellipsoid_area(a: float, b: float, c: float, *, terms: int = _AEE_SERIES_TERMS) -> float:
    """Surface area of an ellipsoid with semi-axes a ≥ b ≥ c by IBSI's Legendre series.

    A = 4πab Σ_ν (αβ)^ν / (1 − 4ν²) P_ν((α² + β²) / (2αβ)), ν = 0..``terms``, with
    α = √(1 − b²/a²), β = √(1 − c²/a²). Each term is evaluated as a homogeneous polynomial in
    αβ and (α² + β²)/2, so a sphere (α = β = 0) needs no division.

    This is the series as IBSI states it, and the IBSI reference values follow it; it is exact
    for a sphere but falls short of the true area of elongated ellipsoids (17.3 instead of
    21.5 mm² for semi-axes 2, 1, 1), so ``morph_area_dens_aee`` is an IBSI convention rather than
    a true area ratio.
    """
    if not a > 0:
        return math.nan
    alpha = math.sqrt(max(0.0, 1.0 - (b / a) ** 2))
    beta = math.sqrt(max(0.0, 1.0 - (c / a) ** 2))
    product, half_sum = alpha * beta, (alpha**2 + beta**2) / 2.0
    series = 0.0
    for nu in range(terms + 1):
        coefficients = legendre.leg2poly([0.0] * nu + [1.0])
        term = sum(
            float(coefficient) * half_sum**k * product ** (nu - k)
            for k, coefficient in enumerate(coefficients)
        )
        series += term / (1.0 - 4.0 * nu**2)
    return 4.0 * math.pi * a * b * series


_FEATURES: list[tuple[str, Callable[[Shape], float]]] = []


def _morph(
    tag: str, *, code: str, name: str, pyradiomics: bool = False
) -> Callable[[Callable[[Shape], float]], Callable[[Shape], float]]:
    """Register a morphological feature in the catalogue and in this family's list."""
    register = feature(_FAMILY, tag, code=code, name=name, pyradiomics=pyradiomics)

    def add(function: Callable[[Shape], float]) -> Callable[[Shape], float]:
        _FEATURES.append((tag, function))
        return register(function)

    return add


@_morph("morph_volume", code="RNU0", name="MeshVolume", pyradiomics=True)
def volume(s: Shape) -> float:
    """Volume: the size of the region in mm³, measured on a smooth surface drawn around it.

    V = |Σ_k a_k · (b_k × c_k)| / 6 over the faces (a, b, c) of the marching-cubes mesh.
    """
    return s.volume


@_morph("morph_vol_approx", code="YEKZ", name="VoxelVolume", pyradiomics=True)
def approximate_volume(s: Shape) -> float:
    """Voxel volume: the region's size in mm³ by counting its voxels (overestimates small regions).

    Number of voxels in the morphological mask times the volume of one voxel.
    """
    return s.approx_volume


@_morph("morph_area_mesh", code="C0JK", name="SurfaceArea", pyradiomics=True)
def surface_area(s: Shape) -> float:
    """Surface area: the area in mm² of the surface enclosing the region.

    A = Σ_k |ab_k × ac_k| / 2 over the mesh faces.
    """
    return s.area


@_morph("morph_av", code="2PR5", name="SurfaceVolumeRatio", pyradiomics=True)
def surface_to_volume_ratio(s: Shape) -> float:
    """Surface to volume ratio (per mm): high for small or irregular, spiky regions.

    A / V (not dimensionless).
    """
    return _ratio(s.area, s.volume)


@_morph("morph_comp_1", code="SKGS", name="Compactness1", pyradiomics=True)
def compactness_1(s: Shape) -> float:
    """Compactness 1: how sphere-like the region is (1/(6π) ≈ 0.053 for a perfect sphere).

    V / (π^(1/2) A^(3/2)).
    """
    return _ratio(s.volume, math.sqrt(math.pi) * s.area**1.5)


@_morph("morph_comp_2", code="BQWJ", name="Compactness2", pyradiomics=True)
def compactness_2(s: Shape) -> float:
    """Compactness 2: how sphere-like the region is, 1 for a sphere and lower for other shapes.

    36π V² / A³.
    """
    return _ratio(36.0 * math.pi * s.volume**2, s.area**3)


@_morph("morph_sph_dispr", code="KRCK", name="SphericalDisproportion", pyradiomics=True)
def spherical_disproportion(s: Shape) -> float:
    """Spherical disproportion: surface relative to a sphere of equal volume; 1 for a sphere.

    A / (36π V²)^(1/3).
    """
    return _ratio(s.area, (36.0 * math.pi * s.volume**2) ** (1.0 / 3.0))


@_morph("morph_sphericity", code="QCFX", name="Sphericity", pyradiomics=True)
def sphericity(s: Shape) -> float:
    """Sphericity: how round the region is, 1 for a sphere and lower for irregular shapes.

    (36π V²)^(1/3) / A.
    """
    return _ratio((36.0 * math.pi * s.volume**2) ** (1.0 / 3.0), s.area)


@_morph("morph_asphericity", code="25C7", name="Asphericity")
def asphericity(s: Shape) -> float:
    """Asphericity: how far the region departs from a sphere, 0 for a sphere.

    (A³ / (36π V²))^(1/3) − 1.
    """
    return _ratio(s.area, (36.0 * math.pi * s.volume**2) ** (1.0 / 3.0)) - 1.0


@_morph("morph_com", code="KLMA", name="CentreOfMassShift")
def centre_of_mass_shift(s: Shape) -> float:
    """Centre of mass shift (mm): how far bright voxels sit off-centre in the region.

    ‖CoM_geom − CoM_gl‖ between the mean voxel centre of the morphological mask and the
    intensity-weighted mean voxel centre of the intensity mask.
    """
    return s.com_shift


@_morph("morph_diam", code="L0JK", name="Maximum3DDiameter", pyradiomics=True)
def maximum_3d_diameter(s: Shape) -> float:
    """Maximum 3D diameter (mm): the largest distance between two points on the region's surface.

    Largest pairwise distance between mesh vertices, searched among the convex hull's vertices.
    """
    return s.diameter


@_morph("morph_pca_maj_axis", code="TDIC", name="MajorAxisLength", pyradiomics=True)
def major_axis_length(s: Shape) -> float:
    """Major axis length (mm): the length of the region along its longest direction.

    4√λ_major, λ the largest eigenvalue of the covariance of the voxel centres (PCA).
    """
    return 4.0 * math.sqrt(s.eigenvalues[0])


@_morph("morph_pca_min_axis", code="P9VJ", name="MinorAxisLength", pyradiomics=True)
def minor_axis_length(s: Shape) -> float:
    """Minor axis length (mm): the length of the region along its second-longest direction.

    4√λ_minor, the second largest PCA eigenvalue.
    """
    return 4.0 * math.sqrt(s.eigenvalues[1])


@_morph("morph_pca_least_axis", code="7J51", name="LeastAxisLength", pyradiomics=True)
def least_axis_length(s: Shape) -> float:
    """Least axis length (mm): the thickness of the region along its shortest direction.

    4√λ_least, the smallest PCA eigenvalue.
    """
    return 4.0 * math.sqrt(s.eigenvalues[2])


@_morph("morph_pca_elongation", code="Q3CK", name="Elongation", pyradiomics=True)
def elongation(s: Shape) -> float:
    """Elongation: 1 for a round region, lower the more it is stretched in one direction.

    √(λ_minor / λ_major).
    """
    return math.sqrt(r) if math.isfinite(r := _ratio(s.eigenvalues[1], s.eigenvalues[0])) else r


@_morph("morph_pca_flatness", code="N17B", name="Flatness", pyradiomics=True)
def flatness(s: Shape) -> float:
    """Flatness: 1 for a round region, lower the flatter (plate-like) it is.

    √(λ_least / λ_major).
    """
    return math.sqrt(r) if math.isfinite(r := _ratio(s.eigenvalues[2], s.eigenvalues[0])) else r


@_morph("morph_vol_dens_aabb", code="PBX1", name="VolumeDensityAABB")
def volume_density_aabb(s: Shape) -> float:
    """Volume density (bounding box): how much of its enclosing box the region fills; 1 for a box.

    V / V_aabb, the axis-aligned bounding box of the mesh vertices.
    """
    return _ratio(s.volume, math.prod(s.aabb_extent))


@_morph("morph_area_dens_aabb", code="R59B", name="AreaDensityAABB")
def area_density_aabb(s: Shape) -> float:
    """Area density (bounding box): the region's surface relative to that of its enclosing box.

    A / A_aabb, A_aabb = 2(d_x d_y + d_y d_z + d_z d_x).
    """
    dz, dy, dx = s.aabb_extent
    return _ratio(s.area, 2.0 * (dx * dy + dy * dz + dz * dx))


@_morph("morph_vol_dens_aee", code="6BDE", name="VolumeDensityAEE")
def volume_density_aee(s: Shape) -> float:
    """Volume density (ellipsoid): the region's volume relative to its PCA ellipsoid.

    3V / (4π abc), with semi-axes a, b, c = 2√λ of the PCA eigenvalues.
    """
    a, b, c = s.semi_axes
    return _ratio(3.0 * s.volume, 4.0 * math.pi * a * b * c)


@_morph("morph_area_dens_aee", code="RDD2", name="AreaDensityAEE")
def area_density_aee(s: Shape) -> float:
    """Area density (ellipsoid): the region's surface relative to that of its PCA ellipsoid.

    A / A_aee, A_aee by the Legendre series of IBSI, stopped after ν = 20.
    """
    return _ratio(s.area, ellipsoid_area(*s.semi_axes))


@_morph("morph_vol_dens_conv_hull", code="R3ER", name="VolumeDensityConvexHull")
def volume_density_convex_hull(s: Shape) -> float:
    """Solidity: how much of its convex hull the region fills; low for lobulated, notched shapes.

    V / V_convex, the volume of the mesh's convex hull.
    """
    return _ratio(s.volume, s.hull_volume)


@_morph("morph_area_dens_conv_hull", code="7T7F", name="AreaDensityConvexHull")
def area_density_convex_hull(s: Shape) -> float:
    """Area density (convex hull): the region's surface relative to its convex hull's; 1 if convex.

    A / A_convex.
    """
    return _ratio(s.area, s.hull_area)


@_morph("morph_integ_int", code="99N0", name="IntegratedIntensity")
def integrated_intensity(s: Shape) -> float:
    """Integrated intensity: mean intensity times volume (total lesion glycolysis in FDG-PET).

    V × mean of the intensities in the intensity mask.
    """
    return s.volume * s.mean_intensity


@_morph("morph_moran_i", code="N365", name="MoransI")
def morans_i(s: Shape) -> float:
    """Moran's I: whether similar intensities cluster together (near 1) or alternate (near −1).

    N / Σw · Σ w_ij (x_i − μ)(x_j − μ) / Σ (x_i − μ)², i ≠ j, w_ij the inverse distance between
    voxel centres. Exact up to ``AUTOCORRELATION_MAX_VOXELS`` voxels, else on a fixed-seed random
    subsample of that many voxels.
    """
    return s.moran_i


@_morph("morph_geary_c", code="NPT7", name="GearysC")
def gearys_c(s: Shape) -> float:
    """Geary's C: how much neighbouring intensities differ; below 1 when similar values cluster.

    (N − 1) / (2Σw) · Σ w_ij (x_i − x_j)² / Σ (x_i − μ)², i ≠ j, w_ij the inverse distance.
    Exact up to ``AUTOCORRELATION_MAX_VOXELS`` voxels, else on a fixed-seed random subsample.
    """
    return s.geary_c


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Every morphological feature of a region.

    Parameters
    ----------
    ctx : the prepared region.
    aggregation : must be None: IBSI defines morphology in 3D only.
    **options : ``max_autocorrelation_voxels`` (int, default 4000) caps the voxels Moran's I and
        Geary's C use exactly; other options belong to other families and are ignored.

    Returns
    -------
    dict : IBSI tag -> value (nan where undefined, e.g. the PCA ratios of a single voxel).
    """
    if aggregation is not None:
        raise ConfigError(
            f"Morphological features are computed in 3D only, got aggregation={aggregation!r}; "
            "leave the aggregation unset for this family."
        )
    cap = options.get("max_autocorrelation_voxels", AUTOCORRELATION_MAX_VOXELS)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 2:
        raise ConfigError(
            f"max_autocorrelation_voxels must be a whole number of at least 2, got {cap!r}."
        )
    shape = prepare(ctx, max_autocorrelation_voxels=cap)
    with np.errstate(all="ignore"):
        return {tag: float(function(shape)) for tag, function in _FEATURES}
