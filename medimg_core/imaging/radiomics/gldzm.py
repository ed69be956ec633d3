"""Grey level distance zone matrix (GLDZM) features, IBSI 3.9 (family code VMDZ).

Zones are those of the GLSZM (connected voxels of one grey level in the intensity mask,
26-connected in 3D, 8-connected within a slice for 2D and 2.5D). A zone's distance is the
smallest distance of its voxels to the region's edge. As IBSI defines it, that distance is
measured in the *morphological* mask, in city-block steps (6-connected in 3D, 4-connected within
the slice for 2D and 2.5D), and a voxel on the edge has distance 1. Element ``d_ij`` counts the
zones of grey level ``i`` at distance ``j``.

Aggregation as for the GLSZM: ``2D`` per slice then averaged, ``2_5D`` slice matrices summed,
``3D`` one volume matrix (the default). PyRadiomics has no GLDZM, so names are IBSI's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from scipy import ndimage

from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.glszm import (
    ZoneMatrix,
    check_call,
    compute_matrices,
    crop,
    evaluate,
    label_zones,
)
from medimg_core.imaging.radiomics.roi import RoiContext

__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "FEATURES", "compute", "edge_distance"]

AGGREGATIONS: tuple[str, ...] = ("2D", "2_5D", "3D")
DEFAULT_AGGREGATION: str | None = "3D"

F = TypeVar("F", bound=Callable[..., Any])

FEATURES: dict[str, Callable[[ZoneMatrix], float]] = {}
"""IBSI tag -> feature function, in IBSI order."""


def _feature(tag: str, *, code: str, name: str) -> Callable[[F], F]:
    register = feature("gldzm", tag, code=code, name=name, pyradiomics=False)

    def collect(function: F) -> F:
        FEATURES[tag] = function
        return register(function)

    return collect


def edge_distance(mask: np.ndarray, *, in_plane: bool) -> np.ndarray:
    """City-block distance of each voxel of ``mask`` to the nearest voxel outside it.

    Voxels on the edge have distance 1; voxels outside the mask 0. Beyond the array counts as
    outside. ``in_plane`` measures within each slice (4-connected steps), otherwise in 3D
    (6-connected steps). This equals IBSI's repeated erosion with the same structure element.
    """
    mask = np.asarray(mask, dtype=bool)
    padded = np.pad(mask, 1, constant_values=False)
    if in_plane:
        metric = np.zeros((3, 3, 3), dtype=bool)
        metric[1] = ndimage.generate_binary_structure(2, 1)
    else:
        metric = ndimage.generate_binary_structure(3, 1)
    distance = ndimage.distance_transform_cdt(padded, metric=metric)
    return np.asarray(distance[1:-1, 1:-1, 1:-1], dtype=np.int64)


@_feature("dzm_sde", code="0GBI", name="SmallDistanceEmphasis")
def small_distance_emphasis(m: ZoneMatrix) -> float:
    """Small distance emphasis: high when patches touch the lesion edge (1 = all on the edge).

    IBSI: ``F = 1/N_s sum_j d_.j / j^2``.
    """
    return m.emphasis(0, -2)


@_feature("dzm_lde", code="MB4I", name="LargeDistanceEmphasis")
def large_distance_emphasis(m: ZoneMatrix) -> float:
    """Large distance emphasis: high when patches lie deep inside the lesion, away from its edge.

    IBSI: ``F = 1/N_s sum_j j^2 d_.j``.
    """
    return m.emphasis(0, 2)


@_feature("dzm_lgze", code="S1RA", name="LowGrayLevelZoneEmphasis")
def low_grey_level_zone_emphasis(m: ZoneMatrix) -> float:
    """Low grey level zone emphasis: high when most patches are dark (low grey levels).

    IBSI: ``F = 1/N_s sum_i d_i. / i^2``.
    """
    return m.emphasis(-2, 0)


@_feature("dzm_hgze", code="K26C", name="HighGrayLevelZoneEmphasis")
def high_grey_level_zone_emphasis(m: ZoneMatrix) -> float:
    """High grey level zone emphasis: high when most patches are bright (high grey levels).

    IBSI: ``F = 1/N_s sum_i i^2 d_i.``.
    """
    return m.emphasis(2, 0)


@_feature("dzm_sdlge", code="RUVG", name="SmallDistanceLowGrayLevelEmphasis")
def small_distance_low_grey_level_emphasis(m: ZoneMatrix) -> float:
    """Small distance low grey level emphasis: high when dark patches sit at the lesion edge.

    IBSI: ``F = 1/N_s sum_ij d_ij / (i^2 j^2)``.
    """
    return m.emphasis(-2, -2)


@_feature("dzm_sdhge", code="DKNJ", name="SmallDistanceHighGrayLevelEmphasis")
def small_distance_high_grey_level_emphasis(m: ZoneMatrix) -> float:
    """Small distance high grey level emphasis: high when bright patches sit at the lesion edge.

    IBSI: ``F = 1/N_s sum_ij i^2 d_ij / j^2``.
    """
    return m.emphasis(2, -2)


@_feature("dzm_ldlge", code="A7WM", name="LargeDistanceLowGrayLevelEmphasis")
def large_distance_low_grey_level_emphasis(m: ZoneMatrix) -> float:
    """Large distance low grey level emphasis: high when dark patches lie deep inside the lesion.

    IBSI: ``F = 1/N_s sum_ij j^2 d_ij / i^2``.
    """
    return m.emphasis(-2, 2)


@_feature("dzm_ldhge", code="KLTH", name="LargeDistanceHighGrayLevelEmphasis")
def large_distance_high_grey_level_emphasis(m: ZoneMatrix) -> float:
    """Large distance high grey level emphasis: high when bright patches lie deep inside.

    IBSI: ``F = 1/N_s sum_ij i^2 j^2 d_ij``.
    """
    return m.emphasis(2, 2)


@_feature("dzm_glnu", code="VFT7", name="GrayLevelNonUniformity")
def grey_level_non_uniformity(m: ZoneMatrix) -> float:
    """Grey level non-uniformity: high when the patches concentrate on few grey levels.

    IBSI: ``F = 1/N_s sum_i d_i.^2``.
    """
    return m.grey_non_uniformity()


@_feature("dzm_glnu_norm", code="7HP3", name="GrayLevelNonUniformityNormalized")
def grey_level_non_uniformity_normalised(m: ZoneMatrix) -> float:
    """Normalised grey level non-uniformity: the share of patches on the same grey level (0-1).

    IBSI: ``F = 1/N_s^2 sum_i d_i.^2``.
    """
    return m.grey_non_uniformity(normalised=True)


@_feature("dzm_zdnu", code="V294", name="ZoneDistanceNonUniformity")
def zone_distance_non_uniformity(m: ZoneMatrix) -> float:
    """Zone distance non-uniformity: high when the patches mostly lie at one depth from the edge.

    IBSI: ``F = 1/N_s sum_j d_.j^2``.
    """
    return m.value_non_uniformity()


@_feature("dzm_zdnu_norm", code="IATH", name="ZoneDistanceNonUniformityNormalized")
def zone_distance_non_uniformity_normalised(m: ZoneMatrix) -> float:
    """Normalised zone distance non-uniformity: the share of patches at the same depth (0-1).

    IBSI: ``F = 1/N_s^2 sum_j d_.j^2``.
    """
    return m.value_non_uniformity(normalised=True)


@_feature("dzm_z_perc", code="VIWW", name="ZonePercentage")
def zone_percentage(m: ZoneMatrix) -> float:
    """Zone percentage: patches per voxel; low in homogeneous regions, 1 if no neighbours match.

    IBSI: ``F = N_s / N_v``.
    """
    return m.percentage()


@_feature("dzm_gl_var", code="QK93", name="GrayLevelVariance")
def grey_level_variance(m: ZoneMatrix) -> float:
    """Grey level variance: how widely the patches' grey levels spread.

    IBSI: ``F = sum_ij (i - mu)^2 p_ij`` with ``p_ij = d_ij / N_s``, ``mu = sum_ij i p_ij``.
    """
    return m.grey_variance()


@_feature("dzm_zd_var", code="7WT1", name="ZoneDistanceVariance")
def zone_distance_variance(m: ZoneMatrix) -> float:
    """Zone distance variance: how widely the patches' depths from the lesion edge spread.

    IBSI: ``F = sum_ij (j - mu)^2 p_ij`` with ``mu = sum_ij j p_ij``.
    """
    return m.value_variance()


@_feature("dzm_zd_entr", code="GBDU", name="ZoneDistanceEntropy")
def zone_distance_entropy(m: ZoneMatrix) -> float:
    """Zone distance entropy: how unpredictable a patch's depth and grey level are.

    IBSI: ``F = -sum_ij p_ij log2 p_ij`` with ``p_ij = d_ij / N_s``.
    """
    return m.entropy()


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """GLDZM features of a region.

    Parameters
    ----------
    ctx : the prepared region; zones from ``ctx.levels`` (intensity mask), distances from
        ``ctx.morph_mask``.
    aggregation : ``2D``, ``2_5D`` or ``3D`` (default).
    **options : none are accepted; any raises :class:`ConfigError`.

    Returns
    -------
    dict
        IBSI tag (``dzm_sde`` ...) -> value; NaN for every feature when the intensity mask is empty.
    """
    chosen = check_call("GLDZM", aggregation, options)
    in_plane = chosen != "3D"
    box = crop(ctx)
    levels = ctx.levels[box]
    int_mask = ctx.int_mask[box] & (levels > 0)
    zones = label_zones(np.where(int_mask, levels, 0), in_plane=in_plane)
    if zones.n_zones == 0:
        return evaluate([], FEATURES)
    distance = edge_distance(ctx.morph_mask[box], in_plane=in_plane)
    nearest = ndimage.minimum(distance, labels=zones.labels, index=np.arange(1, zones.n_zones + 1))
    # An intensity voxel outside the morphological mask cannot happen after IBSI
    # re-segmentation; should one occur, count it as on the edge rather than divide by 0.
    zone_distance = np.maximum(np.asarray(nearest, dtype=np.int64), 1)
    matrices = compute_matrices(zones, zone_distance, int_mask, chosen)
    return evaluate(matrices, FEATURES)
