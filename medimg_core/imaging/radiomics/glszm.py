"""Grey level size zone matrix (GLSZM) features, IBSI 3.8 (family code 9SAK).

A zone is a group of connected voxels of one grey level: 26-connected in 3D, 8-connected within
a slice for 2D and 2.5D. Element ``s_ij`` of the matrix counts the zones of grey level ``i`` and
size ``j`` voxels. ``N_s`` is the number of zones and ``N_v`` the number of voxels in the
intensity mask.

Aggregation (IBSI 3.8.1): ``2D`` one matrix per slice, features averaged over slices (8QNN);
``2_5D`` the slice matrices summed into one (62GR); ``3D`` one matrix of the volume (KOBO),
which is what PyRadiomics computes.

The matrix is kept as its non-zero cells (:class:`ZoneMatrix`) rather than a dense
``N_g x N_z`` array: a large uniform region has one zone of many thousand voxels, and every
feature is a sum over cells. The grey level distance zone matrix (``gldzm``) reuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from scipy import ndimage

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.roi import RoiContext

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_AGGREGATION",
    "FEATURES",
    "ZoneMatrix",
    "Zones",
    "check_call",
    "compute",
    "compute_matrices",
    "crop",
    "evaluate",
    "label_zones",
]

AGGREGATIONS: tuple[str, ...] = ("2D", "2_5D", "3D")
DEFAULT_AGGREGATION: str | None = "3D"

_NAN = float("nan")

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, eq=False)
class Zones:
    """The zones of a region, one entry per zone.

    Attributes
    ----------
    labels : int64 array of the region's shape: zone number 1..``n`` on each voxel of the
        intensity mask, 0 elsewhere.
    grey : int64 ``(n,)``, each zone's grey level.
    size : int64 ``(n,)``, each zone's number of voxels.
    slice_index : int64 ``(n,)``, the slice (z index) of each zone; for 3D zones, the first
        slice it reaches.
    """

    labels: np.ndarray
    grey: np.ndarray
    size: np.ndarray
    slice_index: np.ndarray

    @property
    def n_zones(self) -> int:
        """The number of zones."""
        return int(self.grey.size)


def label_zones(levels: np.ndarray, *, in_plane: bool) -> Zones:
    """Find the zones of a grey-level volume (0 = outside the intensity mask).

    Parameters
    ----------
    levels : int ``(z, y, x)`` grey levels 1..N_g inside the intensity mask, 0 outside.
    in_plane : True for 2D / 2.5D zones (8-connected within a slice, never across slices),
        False for 3D zones (26-connected).

    Returns
    -------
    Zones
    """
    levels = np.asarray(levels)
    structure = np.zeros((3, 3, 3), dtype=bool)
    if in_plane:
        structure[1] = True
    else:
        structure[:] = True
    labels = np.zeros(levels.shape, dtype=np.int64)
    greys: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    slices: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    offset = 0
    for grey in np.unique(levels[levels > 0]):
        lab, n = ndimage.label(levels == grey, structure=structure)
        # ndimage.label numbers zones in raster order of their first voxel, so zone k starts in
        # the first slice whose running maximum label reaches k.
        reached = np.maximum.accumulate(lab.reshape(lab.shape[0], -1).max(axis=1))
        slices.append(np.searchsorted(reached, np.arange(1, n + 1)).astype(np.int64))
        greys.append(np.full(n, grey, dtype=np.int64))
        lab[lab > 0] += offset
        labels += lab
        offset += int(n)
    return Zones(
        labels=labels,
        grey=np.concatenate(greys),
        size=np.bincount(labels.ravel(), minlength=offset + 1)[1:].astype(np.int64),
        slice_index=np.concatenate(slices),
    )


@dataclass(frozen=True, eq=False)
class ZoneMatrix:
    """A zone matrix held as its non-zero cells.

    Row ``i`` is the grey level; column ``j`` the zone size (GLSZM) or the zone's distance to the
    region edge (GLDZM). Cells are unique ``(i, j)`` pairs.

    Attributes
    ----------
    grey : float64 ``(cells,)``, grey level ``i`` of each cell.
    value : float64 ``(cells,)``, size or distance ``j`` of each cell.
    count : float64 ``(cells,)``, number of zones in the cell.
    n_voxels : N_v, the voxels the zones were counted in (summed over slices when merged).
    """

    grey: np.ndarray
    value: np.ndarray
    count: np.ndarray
    n_voxels: int

    @classmethod
    def from_zones(cls, grey: np.ndarray, value: np.ndarray, n_voxels: int) -> ZoneMatrix:
        """Count zones, given each zone's grey level and size (or distance)."""
        grey = np.asarray(grey, dtype=np.int64)
        value = np.asarray(value, dtype=np.int64)
        if grey.size == 0:
            empty = np.zeros(0, dtype=np.float64)
            return cls(grey=empty, value=empty, count=empty, n_voxels=int(n_voxels))
        width = int(value.max()) + 1
        cells, count = np.unique(grey * width + value, return_counts=True)
        return cls(
            grey=(cells // width).astype(np.float64),
            value=(cells % width).astype(np.float64),
            count=count.astype(np.float64),
            n_voxels=int(n_voxels),
        )

    @property
    def n_zones(self) -> float:
        """N_s, the number of zones."""
        return float(self.count.sum())

    def dense(self, n_levels: int | None = None) -> np.ndarray:
        """The matrix as a dense array: row ``i - 1`` for grey level ``i``, column ``j - 1`` for
        size or distance ``j`` (for inspection and tests)."""
        rows = int(self.grey.max(initial=0)) if n_levels is None else int(n_levels)
        out = np.zeros((rows, int(self.value.max(initial=0))), dtype=np.float64)
        out[self.grey.astype(np.int64) - 1, self.value.astype(np.int64) - 1] = self.count
        return out

    def emphasis(self, grey_power: float, value_power: float) -> float:
        """``sum_ij i^a j^b s_ij / N_s``: the emphasis features (SZE, LZE, LGZE ...)."""
        n = self.n_zones
        if n == 0:
            return _NAN
        weights = self.grey**grey_power * self.value**value_power
        return float(np.sum(weights * self.count) / n)

    def grey_non_uniformity(self, *, normalised: bool = False) -> float:
        """``sum_i s_i.^2 / N_s`` (divided by ``N_s^2`` when normalised)."""
        return self._non_uniformity(self.grey, normalised)

    def value_non_uniformity(self, *, normalised: bool = False) -> float:
        """``sum_j s_.j^2 / N_s`` (divided by ``N_s^2`` when normalised)."""
        return self._non_uniformity(self.value, normalised)

    def _non_uniformity(self, index: np.ndarray, normalised: bool) -> float:
        n = self.n_zones
        if n == 0:
            return _NAN
        _, group = np.unique(index, return_inverse=True)
        marginal = np.bincount(group.ravel(), weights=self.count)
        return float(np.sum(marginal**2) / (n * n if normalised else n))

    def percentage(self) -> float:
        """``N_s / N_v``."""
        if self.n_voxels == 0:
            return _NAN
        return self.n_zones / self.n_voxels

    def grey_variance(self) -> float:
        """Variance of the grey level over zones, ``sum_ij (i - mu)^2 p_ij``."""
        return self._variance(self.grey)

    def value_variance(self) -> float:
        """Variance of the size (distance) over zones, ``sum_ij (j - mu)^2 p_ij``."""
        return self._variance(self.value)

    def _variance(self, index: np.ndarray) -> float:
        n = self.n_zones
        if n == 0:
            return _NAN
        p = self.count / n
        mu = np.sum(index * p)
        return float(np.sum((index - mu) ** 2 * p))

    def entropy(self) -> float:
        """``-sum_ij p_ij log2 p_ij`` over the non-zero cells."""
        n = self.n_zones
        if n == 0:
            return _NAN
        p = self.count / n
        return float(-np.sum(p * np.log2(p)))


FEATURES: dict[str, Callable[[ZoneMatrix], float]] = {}
"""IBSI tag -> feature function, in IBSI order."""


def _feature(tag: str, *, code: str, name: str) -> Callable[[F], F]:
    register = feature("glszm", tag, code=code, name=name, pyradiomics=True)

    def collect(function: F) -> F:
        FEATURES[tag] = function
        return register(function)

    return collect


@_feature("szm_sze", code="5QRC", name="SmallAreaEmphasis")
def small_zone_emphasis(m: ZoneMatrix) -> float:
    """Small zone emphasis: high when many small same-grey patches make a fine texture.

    IBSI: ``F = 1/N_s sum_j s_.j / j^2``.
    """
    return m.emphasis(0, -2)


@_feature("szm_lze", code="48P8", name="LargeAreaEmphasis")
def large_zone_emphasis(m: ZoneMatrix) -> float:
    """Large zone emphasis: high when large uniform patches dominate (coarse, even texture).

    IBSI: ``F = 1/N_s sum_j j^2 s_.j``.
    """
    return m.emphasis(0, 2)


@_feature("szm_lgze", code="XMSY", name="LowGrayLevelZoneEmphasis")
def low_grey_level_zone_emphasis(m: ZoneMatrix) -> float:
    """Low grey level zone emphasis: high when most patches are dark (low grey levels).

    IBSI: ``F = 1/N_s sum_i s_i. / i^2``.
    """
    return m.emphasis(-2, 0)


@_feature("szm_hgze", code="5GN9", name="HighGrayLevelZoneEmphasis")
def high_grey_level_zone_emphasis(m: ZoneMatrix) -> float:
    """High grey level zone emphasis: high when most patches are bright (high grey levels).

    IBSI: ``F = 1/N_s sum_i i^2 s_i.``.
    """
    return m.emphasis(2, 0)


@_feature("szm_szlge", code="5RAI", name="SmallAreaLowGrayLevelEmphasis")
def small_zone_low_grey_level_emphasis(m: ZoneMatrix) -> float:
    """Small zone low grey level emphasis: high when small dark patches are common.

    IBSI: ``F = 1/N_s sum_ij s_ij / (i^2 j^2)``.
    """
    return m.emphasis(-2, -2)


@_feature("szm_szhge", code="HW1V", name="SmallAreaHighGrayLevelEmphasis")
def small_zone_high_grey_level_emphasis(m: ZoneMatrix) -> float:
    """Small zone high grey level emphasis: high when small bright patches are common.

    IBSI: ``F = 1/N_s sum_ij i^2 s_ij / j^2``.
    """
    return m.emphasis(2, -2)


@_feature("szm_lzlge", code="YH51", name="LargeAreaLowGrayLevelEmphasis")
def large_zone_low_grey_level_emphasis(m: ZoneMatrix) -> float:
    """Large zone low grey level emphasis: high when large dark patches dominate.

    IBSI: ``F = 1/N_s sum_ij j^2 s_ij / i^2``.
    """
    return m.emphasis(-2, 2)


@_feature("szm_lzhge", code="J17V", name="LargeAreaHighGrayLevelEmphasis")
def large_zone_high_grey_level_emphasis(m: ZoneMatrix) -> float:
    """Large zone high grey level emphasis: high when large bright patches dominate.

    IBSI: ``F = 1/N_s sum_ij i^2 j^2 s_ij``.
    """
    return m.emphasis(2, 2)


@_feature("szm_glnu", code="JNSA", name="GrayLevelNonUniformity")
def grey_level_non_uniformity(m: ZoneMatrix) -> float:
    """Grey level non-uniformity: high when the patches concentrate on few grey levels.

    IBSI: ``F = 1/N_s sum_i s_i.^2``.
    """
    return m.grey_non_uniformity()


@_feature("szm_glnu_norm", code="Y1RO", name="GrayLevelNonUniformityNormalized")
def grey_level_non_uniformity_normalised(m: ZoneMatrix) -> float:
    """Normalised grey level non-uniformity: the share of patches on the same grey level (0-1).

    IBSI: ``F = 1/N_s^2 sum_i s_i.^2``.
    """
    return m.grey_non_uniformity(normalised=True)


@_feature("szm_zsnu", code="4JP3", name="SizeZoneNonUniformity")
def zone_size_non_uniformity(m: ZoneMatrix) -> float:
    """Zone size non-uniformity: high when the patches are mostly of one size.

    IBSI: ``F = 1/N_s sum_j s_.j^2``.
    """
    return m.value_non_uniformity()


@_feature("szm_zsnu_norm", code="VB3A", name="SizeZoneNonUniformityNormalized")
def zone_size_non_uniformity_normalised(m: ZoneMatrix) -> float:
    """Normalised zone size non-uniformity: the share of patches of the same size (0-1).

    IBSI: ``F = 1/N_s^2 sum_j s_.j^2``.
    """
    return m.value_non_uniformity(normalised=True)


@_feature("szm_z_perc", code="P30P", name="ZonePercentage")
def zone_percentage(m: ZoneMatrix) -> float:
    """Zone percentage: patches per voxel; low in homogeneous regions, 1 if no neighbours match.

    IBSI: ``F = N_s / N_v``.
    """
    return m.percentage()


@_feature("szm_gl_var", code="BYLV", name="GrayLevelVariance")
def grey_level_variance(m: ZoneMatrix) -> float:
    """Grey level variance: how widely the patches' grey levels spread.

    IBSI: ``F = sum_ij (i - mu)^2 p_ij`` with ``p_ij = s_ij / N_s``, ``mu = sum_ij i p_ij``.
    """
    return m.grey_variance()


@_feature("szm_zs_var", code="3NSA", name="ZoneVariance")
def zone_size_variance(m: ZoneMatrix) -> float:
    """Zone size variance: how widely patch sizes spread.

    IBSI: ``F = sum_ij (j - mu)^2 p_ij`` with ``mu = sum_ij j p_ij``.
    """
    return m.value_variance()


@_feature("szm_zs_entr", code="GU8N", name="ZoneEntropy")
def zone_size_entropy(m: ZoneMatrix) -> float:
    """Zone size entropy: how unpredictable a patch's size and grey level are (heterogeneity).

    IBSI: ``F = -sum_ij p_ij log2 p_ij``.
    """
    return m.entropy()


def check_call(family: str, aggregation: str | None, options: dict[str, Any]) -> str:
    """Validate a zone family's ``compute`` arguments and return the aggregation to use."""
    if options:
        raise ConfigError(
            f"{family} takes no options, got {sorted(options)}; remove them from the settings."
        )
    chosen = DEFAULT_AGGREGATION if aggregation is None else aggregation
    if chosen is None or chosen not in AGGREGATIONS:
        raise ConfigError(
            f"Unknown {family} aggregation {aggregation!r}; use one of: {', '.join(AGGREGATIONS)}."
        )
    return chosen


def evaluate(
    matrices: list[ZoneMatrix], features: dict[str, Callable[[ZoneMatrix], float]]
) -> dict[str, float]:
    """Every feature on every matrix, averaged over the matrices (one matrix: its values).

    No matrix (an empty intensity mask) gives NaN for every feature.
    """
    if not matrices:
        return dict.fromkeys(features, _NAN)
    values = np.array([[f(m) for f in features.values()] for m in matrices], dtype=np.float64)
    return {tag: float(v) for tag, v in zip(features, values.mean(axis=0), strict=True)}


def compute_matrices(
    zones: Zones, value: np.ndarray, int_mask: np.ndarray, aggregation: str
) -> list[ZoneMatrix]:
    """The matrices an aggregation reads: one per slice with zones (``2D``), or one.

    ``value`` is each zone's column index (size or distance); ``zones`` must be in-plane zones
    for ``2D`` and ``2_5D``.
    """
    if zones.n_zones == 0:
        return []
    if aggregation != "2D":
        return [ZoneMatrix.from_zones(zones.grey, value, int(int_mask.sum()))]
    per_slice = int_mask.reshape(int_mask.shape[0], -1).sum(axis=1)
    order = np.argsort(zones.slice_index, kind="stable")
    in_order = zones.slice_index[order]
    slices, starts = np.unique(in_order, return_index=True)
    groups = np.split(order, starts[1:])
    return [
        ZoneMatrix.from_zones(zones.grey[g], value[g], int(per_slice[z]))
        for z, g in zip(slices, groups, strict=True)
    ]


def crop(ctx: RoiContext) -> tuple[slice, ...]:
    """The bounding box of the region (both masks), so labelling skips the empty margin."""
    present = ctx.morph_mask | ctx.int_mask
    if not present.any():
        return (slice(0, 0),) * 3
    box: list[slice] = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(present.any(axis=other))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """GLSZM features of a region.

    Parameters
    ----------
    ctx : the prepared region; zones are found in ``ctx.levels`` (the intensity mask).
    aggregation : ``2D``, ``2_5D`` or ``3D`` (default, as PyRadiomics).
    **options : none are accepted; any raises :class:`ConfigError`.

    Returns
    -------
    dict
        IBSI tag (``szm_sze`` ...) -> value; NaN for every feature when the intensity mask is empty.
    """
    chosen = check_call("GLSZM", aggregation, options)
    box = crop(ctx)
    levels = ctx.levels[box]
    int_mask = ctx.int_mask[box] & (levels > 0)
    zones = label_zones(np.where(int_mask, levels, 0), in_plane=chosen != "3D")
    matrices = compute_matrices(zones, zones.size, int_mask, chosen)
    return evaluate(matrices, FEATURES)
