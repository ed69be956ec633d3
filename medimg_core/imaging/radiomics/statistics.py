"""Intensity-based statistical features (IBSI 3.3, family code UHIW).

The features describe how the intensities of the voxels in the intensity mask are distributed,
without discretisation. PyRadiomics computes most of them as ``firstorder`` features; where its
definition matches IBSI's the PyRadiomics name is kept.

Percentiles use NumPy's default (linear interpolation between order statistics, type 7 of
Hyndman & Fan), as PyRadiomics does; it reproduces every IBSI phantom value (the "Hazen"
definition would give the P90 of 4.2 that the IBSI manual warns about).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg_core.errors import ConfigError, ImageError
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.roi import RoiContext

__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "Distribution", "compute"]

AGGREGATIONS: tuple[str, ...] = ()
DEFAULT_AGGREGATION: str | None = None

FAMILY = "statistics"


@dataclass(frozen=True, eq=False)
class Distribution:
    """A 1-D sample with the quantities its features share, computed once.

    Attributes
    ----------
    values : the sample, float64, sorted ascending.
    mean, variance : the sample mean and the biased (1/N) variance.
    p10, p25, median, p75, p90 : percentiles (linear interpolation, NumPy's default).
    """

    values: np.ndarray
    mean: float
    variance: float
    p10: float
    p25: float
    median: float
    p75: float
    p90: float

    @classmethod
    def of(cls, values: np.ndarray) -> Distribution:
        """The distribution of ``values`` (any shape; flattened).

        Raises
        ------
        ImageError
            When ``values`` holds no finite number (an empty region).
        """
        x = np.sort(np.asarray(values, dtype=np.float64).ravel())
        if x.size == 0:
            raise ImageError(
                "The intensity mask holds 0 voxels; intensity features need at least one. "
                "Check the mask and the re-segmentation range."
            )
        if not np.all(np.isfinite(x)):
            raise ImageError(
                f"{int(np.sum(~np.isfinite(x)))} of the {x.size} voxels in the intensity mask "
                "are not finite (NaN or infinite); remove them from the mask or fix the image."
            )
        mean = float(x.mean())
        p10, p25, median, p75, p90 = (float(v) for v in np.percentile(x, [10, 25, 50, 75, 90]))
        return cls(
            values=x,
            mean=mean,
            variance=float(np.mean((x - mean) ** 2)),
            p10=p10,
            p25=p25,
            median=median,
            p75=p75,
            p90=p90,
        )

    def central_moment(self, order: int) -> float:
        """The biased central moment ``mean((x - mean) ** order)``."""
        return float(np.mean((self.values - self.mean) ** order))


_FEATURES: list[tuple[str, Callable[[Distribution], float]]] = []


def _stat(
    tag: str, *, code: str, name: str, pyradiomics: bool = False
) -> Callable[[Callable[[Distribution], float]], Callable[[Distribution], float]]:
    register = feature(FAMILY, tag, code=code, name=name, pyradiomics=pyradiomics)

    def wrap(function: Callable[[Distribution], float]) -> Callable[[Distribution], float]:
        _FEATURES.append((tag, register(function)))
        return function

    return wrap


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else math.nan


@_stat("stat_mean", code="Q4LE", name="Mean", pyradiomics=True)
def mean(d: Distribution) -> float:
    """Mean intensity: the average intensity inside the region.

    F = (1/Nv) Σ X_k.
    """
    return d.mean


@_stat("stat_var", code="ECT3", name="Variance", pyradiomics=True)
def variance(d: Distribution) -> float:
    """Intensity variance: how widely intensities spread around their mean.

    F = (1/Nv) Σ (X_k − μ)², without bias correction.
    """
    return d.variance


@_stat("stat_skew", code="KE2A", name="Skewness", pyradiomics=True)
def skewness(d: Distribution) -> float:
    """Skewness: whether the intensities trail off towards high (positive) or low values.

    F = m3 / m2^(3/2) with central moments m_k; 0 when the variance is 0 (IBSI).
    """
    if d.variance == 0:
        return 0.0
    return d.central_moment(3) / d.variance**1.5


@_stat("stat_kurt", code="IPH6", name="ExcessKurtosis")
def excess_kurtosis(d: Distribution) -> float:
    """Excess kurtosis: how heavy the tails of the intensity distribution are (0 for a normal one).

    F = m4 / m2² − 3; 0 when the variance is 0 (IBSI). PyRadiomics' ``Kurtosis`` is m4 / m2²
    without the −3, so this feature carries an IBSI name.
    """
    if d.variance == 0:
        return 0.0
    return d.central_moment(4) / d.variance**2 - 3.0


@_stat("stat_median", code="Y12H", name="Median", pyradiomics=True)
def median(d: Distribution) -> float:
    """Median intensity: the middle intensity; half the voxels are brighter.

    F = the sample median.
    """
    return d.median


@_stat("stat_min", code="1GSF", name="Minimum", pyradiomics=True)
def minimum(d: Distribution) -> float:
    """Minimum intensity: the darkest voxel in the region.

    F = min(X).
    """
    return float(d.values[0])


@_stat("stat_p10", code="QG58", name="10Percentile", pyradiomics=True)
def percentile_10(d: Distribution) -> float:
    """10th percentile: the intensity below which the darkest tenth of the voxels lie.

    F = P10, a more robust alternative to the minimum.
    """
    return d.p10


@_stat("stat_p90", code="8DWT", name="90Percentile", pyradiomics=True)
def percentile_90(d: Distribution) -> float:
    """90th percentile: the intensity above which the brightest tenth of the voxels lie.

    F = P90, a more robust alternative to the maximum.
    """
    return d.p90


@_stat("stat_max", code="84IY", name="Maximum", pyradiomics=True)
def maximum(d: Distribution) -> float:
    """Maximum intensity: the brightest voxel in the region.

    F = max(X).
    """
    return float(d.values[-1])


@_stat("stat_iqr", code="SALO", name="InterquartileRange", pyradiomics=True)
def interquartile_range(d: Distribution) -> float:
    """Interquartile range: the spread of the middle half of the intensities.

    F = P75 − P25.
    """
    return d.p75 - d.p25


@_stat("stat_range", code="2OJQ", name="Range", pyradiomics=True)
def intensity_range(d: Distribution) -> float:
    """Intensity range: the difference between the brightest and the darkest voxel.

    F = max(X) − min(X).
    """
    return float(d.values[-1] - d.values[0])


@_stat("stat_mad", code="4FUA", name="MeanAbsoluteDeviation", pyradiomics=True)
def mean_absolute_deviation(d: Distribution) -> float:
    """Mean absolute deviation: the average distance of intensities from their mean.

    F = (1/Nv) Σ |X_k − μ|.
    """
    return float(np.mean(np.abs(d.values - d.mean)))


@_stat("stat_rmad", code="1128", name="RobustMeanAbsoluteDeviation", pyradiomics=True)
def robust_mean_absolute_deviation(d: Distribution) -> float:
    """Robust mean absolute deviation: the spread of intensities, ignoring the extreme tenths.

    F = mean |X_k − mean(X_10-90)| over the voxels with P10 ≤ X_k ≤ P90; undefined (NaN) when no
    voxel lies there, which happens with few distinct intensities (two voxels 1 and 2: P10 = 1.1).
    """
    inner = d.values[(d.values >= d.p10) & (d.values <= d.p90)]
    if inner.size == 0:
        return math.nan
    return float(np.mean(np.abs(inner - inner.mean())))


@_stat("stat_medad", code="N72L", name="MedianAbsoluteDeviation")
def median_absolute_deviation(d: Distribution) -> float:
    """Median absolute deviation: the average distance of intensities from their median.

    F = (1/Nv) Σ |X_k − M| with M the median (IBSI: a mean of distances, not their median).
    """
    return float(np.mean(np.abs(d.values - d.median)))


@_stat("stat_cov", code="7TET", name="CoefficientOfVariation")
def coefficient_of_variation(d: Distribution) -> float:
    """Coefficient of variation: the spread of intensities relative to their mean.

    F = σ / μ; undefined (NaN) when the mean is 0.
    """
    return _ratio(math.sqrt(d.variance), d.mean)


@_stat("stat_qcod", code="9S40", name="QuartileCoefficientOfDispersion")
def quartile_coefficient_of_dispersion(d: Distribution) -> float:
    """Quartile coefficient of dispersion: a robust spread of intensities relative to their level.

    F = (P75 − P25) / (P75 + P25); undefined (NaN) when P75 + P25 = 0.
    """
    return _ratio(d.p75 - d.p25, d.p75 + d.p25)


@_stat("stat_energy", code="N8CA", name="Energy", pyradiomics=True)
def energy(d: Distribution) -> float:
    """Energy: the sum of squared intensities; grows with both brightness and region size.

    F = Σ X_k². Equals PyRadiomics' ``Energy`` with its default ``voxelArrayShift`` of 0.
    """
    return float(np.sum(d.values**2))


@_stat("stat_rms", code="5ZWQ", name="RootMeanSquared", pyradiomics=True)
def root_mean_square(d: Distribution) -> float:
    """Root mean square: the quadratic mean of the intensities.

    F = sqrt((1/Nv) Σ X_k²). Equals PyRadiomics' ``RootMeanSquared`` with ``voxelArrayShift`` 0.
    """
    return math.sqrt(float(np.mean(d.values**2)))


def _check_aggregation(family: str, aggregation: str | None) -> None:
    if aggregation is not None:
        raise ConfigError(
            f"The {family} features are computed once over the whole volume; aggregation "
            f"{aggregation!r} does not apply. Leave the aggregation for {family} unset."
        )


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Every intensity-based statistical feature of the region.

    Parameters
    ----------
    ctx : the prepared region; the features read ``ctx.values`` (not discretised).
    aggregation : must be None (IBSI computes these features over the 3D volume, DHQ4).
    **options : accepted for the common family interface; none is used.

    Returns
    -------
    dict
        IBSI tag (e.g. ``stat_mean``) -> value; NaN where a feature is undefined.

    Raises
    ------
    ConfigError
        When an aggregation is given.
    ImageError
        When the intensity mask is empty.
    """
    _check_aggregation(FAMILY, aggregation)
    d = Distribution.of(ctx.values)
    return {tag: float(function(d)) for tag, function in _FEATURES}
