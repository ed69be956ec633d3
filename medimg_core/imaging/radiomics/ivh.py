"""Intensity-volume histogram features (IBSI 3.5, family code P88C).

The (cumulative) intensity-volume histogram gives, for each intensity i of a grid spanning the
total range G, the fraction ν_i of the region's volume with an intensity of at least i, and the
intensity fraction γ_i = (i − min G) / (max G − min G). How intensities are put on the grid
depends on the kind of image (IBSI 3.5):

``none`` (discrete calibrated intensities, e.g. CT in HU, and the IBSI digital phantom)
    the intensities themselves, step 1, G = [lower bound, max(X)]; the lower bound is the
    re-segmentation range's lower end when there is one, else min(X).
``fixed_bin_width`` (continuous calibrated intensities, e.g. PET SUV)
    the centre of each voxel's bin, X_min + (X_d − 0.5) w, step w, G from the first bin's centre
    to the centre of the highest bin holding a voxel.
``fixed_bin_count`` (arbitrary units, e.g. most MRI)
    the bin numbers 1..Ng, step 1, G = [1, Ng].

With ``auto`` (the default) the region's own discretisation decides: a fixed bin count gives
``fixed_bin_count`` on the region's grey levels; a fixed bin width gives ``none`` when every
intensity is a whole number (CT, the phantom) and ``fixed_bin_width`` otherwise.

Deviations from the IBSI text, all at its edges: the upper end of G is the highest intensity (or
occupied bin centre) in the region, not a re-segmentation upper bound, which the prepared region
does not carry; IBSI writes max G = X_max − w/2 for a fixed bin width, which is the same bin
centre whenever the range spans whole bins. When no grid intensity has ν ≤ x (many voxels share
the highest intensity), I_x is the next grid intensity above G, where ν = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import statistics as stats
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.roi import RoiContext, discretise
from medimg_core.imaging.radiomics.statistics import Distribution

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_AGGREGATION",
    "IVH_DISCRETISATIONS",
    "IntensityVolumeHistogram",
    "compute",
    "intensity_volume_histogram",
]

AGGREGATIONS: tuple[str, ...] = ()
DEFAULT_AGGREGATION: str | None = None

FAMILY = "ivh"
IVH_DISCRETISATIONS = ("auto", "none", "fixed_bin_width", "fixed_bin_count")

# Above this many grid intensities "auto" bins whole-number intensities instead of using them
# one by one (a 32-bit range would need gigabytes).
_MAX_GRID = 1_000_000
# Fractions are compared with this slack: 0.1 computed as 0.3 / 3 must still count as 10 %.
_EPS = 1e-9


@dataclass(frozen=True, eq=False)
class IntensityVolumeHistogram:
    """The intensity-volume histogram of a region.

    Attributes
    ----------
    intensities : the grid intensities i over the total range G, ascending, one ``step`` apart.
    volume_fractions : ν_i, the fraction of voxels with intensity ≥ i (non-increasing).
    intensity_fractions : γ_i in [0, 1]; NaN when G is a single intensity.
    step : the discretisation interval w_d.
    """

    intensities: np.ndarray
    volume_fractions: np.ndarray
    intensity_fractions: np.ndarray
    step: float

    def volume_at(self, fraction: float) -> float:
        """V_x: the largest volume fraction ν whose intensity fraction γ is at least ``fraction``."""
        reached = self.intensity_fractions >= fraction - _EPS
        if not reached.any():
            return math.nan
        # ν never increases with γ, so the first grid point past the fraction holds the largest ν.
        return float(self.volume_fractions[int(np.argmax(reached))])

    def intensity_at(self, fraction: float) -> float:
        """I_x: the lowest grid intensity present in at most ``fraction`` of the volume."""
        within = self.volume_fractions <= fraction + _EPS
        if not within.any():
            return float(self.intensities[-1] + self.step)
        return float(self.intensities[int(np.argmax(within))])


def _histogram(
    index: np.ndarray, n_grid: int, origin: float, step: float
) -> IntensityVolumeHistogram:
    """IVH from each voxel's grid index (intensity ``origin + index * step``, index ≥ 0)."""
    counts = np.bincount(np.minimum(index, n_grid - 1), minlength=n_grid)
    # ν_k: voxels at grid index k or above, i.e. a reversed cumulative sum.
    at_least = np.cumsum(counts[::-1])[::-1]
    k = np.arange(n_grid, dtype=np.float64)
    gamma = k / (n_grid - 1) if n_grid > 1 else np.full(1, math.nan)
    return IntensityVolumeHistogram(
        intensities=origin + k * step,
        volume_fractions=at_least / index.size,
        intensity_fractions=gamma,
        step=step,
    )


def _from_levels(
    levels: np.ndarray, n_levels: int, origin: float, step: float
) -> IntensityVolumeHistogram:
    return _histogram(levels.astype(np.int64) - 1, int(n_levels), origin, step)


def intensity_volume_histogram(
    ctx: RoiContext,
    *,
    ivh_discretisation: str = "auto",
    ivh_bin_width: float | None = None,
    ivh_bin_count: int | None = None,
) -> IntensityVolumeHistogram:
    """The intensity-volume histogram of a prepared region.

    Parameters
    ----------
    ctx : the prepared region.
    ivh_discretisation : one of :data:`IVH_DISCRETISATIONS` (see the module docstring).
    ivh_bin_width : bin width for ``fixed_bin_width``; default the region's own bin width.
    ivh_bin_count : bin count for ``fixed_bin_count``; default the region's own grey levels
        (IBSI suggests 1000 for arbitrary units).

    Raises
    ------
    ConfigError
        For an unknown method, or a fixed bin width without a width to use.
    ImageError
        When the intensity mask is empty.
    """
    if ivh_discretisation not in IVH_DISCRETISATIONS:
        raise ConfigError(
            f"Unknown IVH discretisation {ivh_discretisation!r}; use one of: "
            f"{', '.join(IVH_DISCRETISATIONS)}."
        )
    x = Distribution.of(ctx.values).values
    lower = float(x[0]) if ctx.lower_bound is None else min(float(ctx.lower_bound), float(x[0]))
    method = ivh_discretisation
    if method == "auto":
        whole = bool(np.all(x == np.round(x))) and x[-1] - lower < _MAX_GRID
        if ctx.bin_width is None:
            method = "fixed_bin_count"
        else:
            method = "none" if whole else "fixed_bin_width"

    if method == "none":
        if x[-1] - lower >= _MAX_GRID:
            raise ConfigError(
                f"The intensities span {x[-1] - lower:g} units, too many to use one by one for "
                "the IVH (ivh_discretisation='none'). Use 'fixed_bin_width' or 'auto'."
            )
        index = np.floor(x - lower + _EPS).astype(np.int64)
        return _histogram(index, int(index.max()) + 1, lower, 1.0)

    if method == "fixed_bin_width":
        width = ivh_bin_width if ivh_bin_width is not None else ctx.bin_width
        if width is None:
            raise ConfigError(
                "The IVH discretisation 'fixed_bin_width' needs a bin width: the region was "
                "discretised with a fixed bin count. Pass ivh_bin_width (e.g. 0.1 for PET SUV)."
            )
        levels, _ = discretise(x, method="fixed_bin_width", bin_width=width, lower_bound=lower)
        return _from_levels(levels, int(levels.max()), lower + 0.5 * float(width), float(width))

    if ivh_bin_count is None and ctx.bin_width is None:
        return _from_levels(ctx.levels[ctx.int_mask], ctx.n_levels, 1.0, 1.0)
    count = 1000 if ivh_bin_count is None else ivh_bin_count
    levels, n = discretise(x, method="fixed_bin_count", bin_count=count)
    return _from_levels(levels, n, 1.0, 1.0)


_FEATURES: list[tuple[str, Callable[[IntensityVolumeHistogram], float]]] = []


def _ivh(
    tag: str, *, code: str, name: str
) -> Callable[
    [Callable[[IntensityVolumeHistogram], float]], Callable[[IntensityVolumeHistogram], float]
]:
    register = feature(FAMILY, tag, code=code, name=name, pyradiomics=False)

    def wrap(
        function: Callable[[IntensityVolumeHistogram], float],
    ) -> Callable[[IntensityVolumeHistogram], float]:
        _FEATURES.append((tag, register(function)))
        return function

    return wrap


@_ivh("ivh_v10", code="NK6P", name="VolumeAt10PercentIntensity")
def volume_at_10(ivh: IntensityVolumeHistogram) -> float:
    """Volume at 10 % intensity: the fraction of the region brighter than its lowest tenth.

    F = V10, the largest ν with γ ≥ 0.10. NaN when the region holds a single intensity.
    """
    return ivh.volume_at(0.10)


@_ivh("ivh_v90", code="4279", name="VolumeAt90PercentIntensity")
def volume_at_90(ivh: IntensityVolumeHistogram) -> float:
    """Volume at 90 % intensity: the fraction of the region in the top tenth of its intensity range.

    F = V90, the largest ν with γ ≥ 0.90. NaN when the region holds a single intensity.
    """
    return ivh.volume_at(0.90)


@_ivh("ivh_i10", code="PWN1", name="IntensityAt10PercentVolume")
def intensity_at_10(ivh: IntensityVolumeHistogram) -> float:
    """Intensity at 10 % volume: the intensity reached only by the brightest tenth of the region.

    F = I10, the lowest grid intensity i with ν_i ≤ 0.10.
    """
    return ivh.intensity_at(0.10)


@_ivh("ivh_i90", code="BOHI", name="IntensityAt90PercentVolume")
def intensity_at_90(ivh: IntensityVolumeHistogram) -> float:
    """Intensity at 90 % volume: the intensity exceeded by all but the darkest tenth of the region.

    F = I90, the lowest grid intensity i with ν_i ≤ 0.90.
    """
    return ivh.intensity_at(0.90)


@_ivh("ivh_diff_v10_v90", code="WITY", name="VolumeDifference10To90PercentIntensity")
def volume_difference_10_90(ivh: IntensityVolumeHistogram) -> float:
    """Volume difference between 10 % and 90 % intensity: the share of the region at mid intensities.

    F = V10 − V90. NaN when the region holds a single intensity.
    """
    return ivh.volume_at(0.10) - ivh.volume_at(0.90)


@_ivh("ivh_diff_i10_i90", code="JXJA", name="IntensityDifference10To90PercentVolume")
def intensity_difference_10_90(ivh: IntensityVolumeHistogram) -> float:
    """Intensity difference between 10 % and 90 % volume: the spread of the region's intensities.

    F = I10 − I90.
    """
    return ivh.intensity_at(0.10) - ivh.intensity_at(0.90)


@_ivh("ivh_auc", code="9CMM", name="AreaUnderCurve")
def area_under_curve(ivh: IntensityVolumeHistogram) -> float:
    """Area under the IVH curve: high when most of the region sits near its top intensities.

    F = ∫ ν dγ by the trapezoidal rule over the grid; 0 with a single intensity (IBSI). IBSI
    publishes no consensus reference value for the digital phantom.
    """
    if ivh.intensities.size < 2:
        return 0.0
    return float(np.trapezoid(ivh.volume_fractions, ivh.intensity_fractions))


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Every intensity-volume histogram feature of the region.

    Parameters
    ----------
    ctx : the prepared region.
    aggregation : must be None (IBSI computes these features over the 3D volume, DHQ4).
    **options : ``ivh_discretisation``, ``ivh_bin_width``, ``ivh_bin_count`` (see
        :func:`intensity_volume_histogram`); other options are not used.

    Returns
    -------
    dict
        IBSI tag (e.g. ``ivh_v10``) -> value; NaN where a feature is undefined.

    Raises
    ------
    ConfigError
        When an aggregation is given or the IVH options are invalid.
    ImageError
        When the intensity mask is empty.
    """
    stats._check_aggregation(FAMILY, aggregation)
    ivh = intensity_volume_histogram(
        ctx,
        ivh_discretisation=options.get("ivh_discretisation", "auto"),
        ivh_bin_width=options.get("ivh_bin_width"),
        ivh_bin_count=options.get("ivh_bin_count"),
    )
    return {tag: float(function(ivh)) for tag, function in _FEATURES}
