"""Intensity histogram features (IBSI 3.4, family code ZVCW).

The features read the discretised grey levels ``ctx.levels`` (1..Ng) of the voxels in the
intensity mask, and their histogram n_1..n_Ng (bins without voxels included, as IBSI asks for the
gradient features). The distribution features share their formulas with
:mod:`~medimg_core.imaging.radiomics.statistics`. PyRadiomics computes ``Entropy`` and
``Uniformity`` (firstorder) on this histogram; its other firstorder features read raw intensities
and are in the statistics family.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg_core.imaging.radiomics import statistics as stats
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.roi import RoiContext
from medimg_core.imaging.radiomics.statistics import Distribution

__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "Histogram", "compute"]

AGGREGATIONS: tuple[str, ...] = ()
DEFAULT_AGGREGATION: str | None = None

FAMILY = "histogram"


@dataclass(frozen=True, eq=False)
class Histogram:
    """The discretised intensities of a region and their histogram.

    Attributes
    ----------
    dist : the distribution of the grey levels of the voxels.
    counts : int64, ``counts[i - 1]`` = n_i, the number of voxels of grey level i, i = 1..Ng.
    """

    dist: Distribution
    counts: np.ndarray

    @classmethod
    def of(cls, levels: np.ndarray, n_levels: int) -> Histogram:
        """The histogram of grey levels ``levels`` (1-D, values 1..``n_levels``)."""
        x = np.asarray(levels, dtype=np.int64).ravel()
        dist = Distribution.of(x)
        n_bins = max(int(n_levels), int(x.max()))
        counts = np.bincount(x - 1, minlength=n_bins)
        return cls(dist=dist, counts=counts)

    @property
    def probabilities(self) -> np.ndarray:
        """p_i = n_i / Nv."""
        return self.counts / self.counts.sum()

    @property
    def gradient(self) -> np.ndarray:
        """H'_i: one-sided differences at both ends, central differences inside (IBSI).

        Needs at least two bins; ``np.gradient`` computes exactly IBSI's definition.
        """
        return np.gradient(self.counts.astype(np.float64))


_FEATURES: list[tuple[str, Callable[[Histogram], float]]] = []


def _ih(
    tag: str, *, code: str, name: str, pyradiomics: bool = False
) -> Callable[[Callable[[Histogram], float]], Callable[[Histogram], float]]:
    register = feature(FAMILY, tag, code=code, name=name, pyradiomics=pyradiomics)

    def wrap(function: Callable[[Histogram], float]) -> Callable[[Histogram], float]:
        _FEATURES.append((tag, register(function)))
        return function

    return wrap


@_ih("ih_mean", code="X6K6", name="Mean")
def mean(h: Histogram) -> float:
    """Mean grey level: the average discretised intensity in the region.

    F = Σ i p_i.
    """
    return stats.mean(h.dist)


@_ih("ih_var", code="CH89", name="Variance")
def variance(h: Histogram) -> float:
    """Grey-level variance: how widely discretised intensities spread around their mean.

    F = Σ (i − μ)² p_i, without bias correction.
    """
    return stats.variance(h.dist)


@_ih("ih_skew", code="88K1", name="Skewness")
def skewness(h: Histogram) -> float:
    """Grey-level skewness: whether discretised intensities trail off towards high or low levels.

    F = m3 / m2^(3/2); 0 when the variance is 0 (IBSI).
    """
    return stats.skewness(h.dist)


@_ih("ih_kurt", code="C3I7", name="ExcessKurtosis")
def excess_kurtosis(h: Histogram) -> float:
    """Grey-level excess kurtosis: how heavy the tails of the grey-level histogram are.

    F = m4 / m2² − 3; 0 when the variance is 0 (IBSI).
    """
    return stats.excess_kurtosis(h.dist)


@_ih("ih_median", code="WIFQ", name="Median")
def median(h: Histogram) -> float:
    """Median grey level: the middle discretised intensity.

    F = the sample median of the grey levels.
    """
    return stats.median(h.dist)


@_ih("ih_min", code="1PR8", name="Minimum")
def minimum(h: Histogram) -> float:
    """Minimum grey level: the lowest discretised intensity present.

    F = min(X_d); 1 for a fixed bin count, possibly more for a fixed bin width.
    """
    return stats.minimum(h.dist)


@_ih("ih_p10", code="GPMT", name="10Percentile")
def percentile_10(h: Histogram) -> float:
    """10th grey-level percentile: the level below which the lowest tenth of voxels lie.

    F = P10 of the grey levels (linear interpolation, as for the statistics family).
    """
    return stats.percentile_10(h.dist)


@_ih("ih_p90", code="OZ0C", name="90Percentile")
def percentile_90(h: Histogram) -> float:
    """90th grey-level percentile: the level above which the highest tenth of voxels lie.

    F = P90 of the grey levels (linear interpolation, as for the statistics family).
    """
    return stats.percentile_90(h.dist)


@_ih("ih_max", code="3NCY", name="Maximum")
def maximum(h: Histogram) -> float:
    """Maximum grey level: the highest discretised intensity present.

    F = max(X_d).
    """
    return stats.maximum(h.dist)


@_ih("ih_mode", code="AMMC", name="Mode")
def mode(h: Histogram) -> float:
    """Mode: the most common grey level in the region.

    F = the i with the highest n_i; among ties, the one closest to the mean grey level, and the
    lower one when two are equally close (IBSI).
    """
    levels = np.flatnonzero(h.counts == h.counts.max()) + 1
    distance = np.abs(levels - h.dist.mean)
    # argmin returns the first (lowest) level among equally close ones.
    return float(levels[int(np.argmin(distance))])


@_ih("ih_iqr", code="WR0O", name="InterquartileRange")
def interquartile_range(h: Histogram) -> float:
    """Grey-level interquartile range: the spread of the middle half of the grey levels.

    F = P75 − P25.
    """
    return stats.interquartile_range(h.dist)


@_ih("ih_range", code="5Z3W", name="Range")
def grey_level_range(h: Histogram) -> float:
    """Grey-level range: the difference between the highest and the lowest grey level present.

    F = max(X_d) − min(X_d).
    """
    return stats.intensity_range(h.dist)


@_ih("ih_mad", code="D2ZX", name="MeanAbsoluteDeviation")
def mean_absolute_deviation(h: Histogram) -> float:
    """Grey-level mean absolute deviation: the average distance of grey levels from their mean.

    F = (1/Nv) Σ |X_d,k − μ|.
    """
    return stats.mean_absolute_deviation(h.dist)


@_ih("ih_rmad", code="WRZB", name="RobustMeanAbsoluteDeviation")
def robust_mean_absolute_deviation(h: Histogram) -> float:
    """Grey-level robust mean absolute deviation: the spread of grey levels without the tails.

    F = mean |X_d,k − mean(X_d,10-90)| over the voxels with P10 ≤ X_d,k ≤ P90.
    """
    return stats.robust_mean_absolute_deviation(h.dist)


@_ih("ih_medad", code="4RNL", name="MedianAbsoluteDeviation")
def median_absolute_deviation(h: Histogram) -> float:
    """Grey-level median absolute deviation: the average distance of grey levels from their median.

    F = (1/Nv) Σ |X_d,k − M|.
    """
    return stats.median_absolute_deviation(h.dist)


@_ih("ih_cov", code="CWYJ", name="CoefficientOfVariation")
def coefficient_of_variation(h: Histogram) -> float:
    """Grey-level coefficient of variation: the spread of grey levels relative to their mean.

    F = σ / μ (μ ≥ 1 for grey levels, so always defined).
    """
    return stats.coefficient_of_variation(h.dist)


@_ih("ih_qcod", code="SLWD", name="QuartileCoefficientOfDispersion")
def quartile_coefficient_of_dispersion(h: Histogram) -> float:
    """Grey-level quartile coefficient of dispersion: a robust relative spread of grey levels.

    F = (P75 − P25) / (P75 + P25).
    """
    return stats.quartile_coefficient_of_dispersion(h.dist)


@_ih("ih_entropy", code="TLU2", name="Entropy", pyradiomics=True)
def entropy(h: Histogram) -> float:
    """Entropy: how unpredictable a voxel's grey level is; high in heterogeneous regions.

    F = −Σ p_i log2 p_i (Shannon entropy, bits). PyRadiomics' firstorder ``Entropy`` (which adds
    a negligible ε inside the logarithm).
    """
    p = h.probabilities
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


@_ih("ih_uniformity", code="BJ5W", name="Uniformity", pyradiomics=True)
def uniformity(h: Histogram) -> float:
    """Uniformity: how concentrated voxels are on few grey levels; 1 when all share one level.

    F = Σ p_i², between 1/Ng and 1. PyRadiomics' firstorder ``Uniformity``.
    """
    return float(np.sum(h.probabilities**2))


@_ih("ih_max_grad", code="12CE", name="MaximumGradient")
def maximum_gradient(h: Histogram) -> float:
    """Maximum histogram gradient: the steepest rise in voxel counts from one grey level to the next.

    F = max(H'), with H'_1 = n_2 − n_1, H'_i = (n_(i+1) − n_(i−1)) / 2, H'_Ng = n_Ng − n_(Ng−1).
    Undefined (NaN) with a single grey level bin.
    """
    if h.counts.size < 2:
        return math.nan
    return float(h.gradient.max())


@_ih("ih_max_grad_g", code="8E6O", name="MaximumGradientGreyLevel")
def maximum_gradient_grey_level(h: Histogram) -> float:
    """Grey level of the maximum histogram gradient: where voxel counts rise most steeply.

    F = the i at which H' is largest (the lowest such i on ties). NaN with a single bin.
    """
    if h.counts.size < 2:
        return math.nan
    return float(np.argmax(h.gradient) + 1)


@_ih("ih_min_grad", code="VQB3", name="MinimumGradient")
def minimum_gradient(h: Histogram) -> float:
    """Minimum histogram gradient: the steepest fall in voxel counts from one grey level to the next.

    F = min(H'). Undefined (NaN) with a single grey level bin.
    """
    if h.counts.size < 2:
        return math.nan
    return float(h.gradient.min())


@_ih("ih_min_grad_g", code="RHQZ", name="MinimumGradientGreyLevel")
def minimum_gradient_grey_level(h: Histogram) -> float:
    """Grey level of the minimum histogram gradient: where voxel counts fall most steeply.

    F = the i at which H' is smallest (the lowest such i on ties). NaN with a single bin.
    """
    if h.counts.size < 2:
        return math.nan
    return float(np.argmin(h.gradient) + 1)


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Every intensity histogram feature of the region.

    Parameters
    ----------
    ctx : the prepared region; the features read ``ctx.levels`` inside ``ctx.int_mask``.
    aggregation : must be None (IBSI computes these features over the 3D volume, DHQ4).
    **options : accepted for the common family interface; none is used.

    Returns
    -------
    dict
        IBSI tag (e.g. ``ih_entropy``) -> value; NaN where a feature is undefined.

    Raises
    ------
    ConfigError
        When an aggregation is given.
    ImageError
        When the intensity mask is empty.
    """
    stats._check_aggregation(FAMILY, aggregation)
    h = Histogram.of(ctx.levels[ctx.int_mask], ctx.n_levels)
    return {tag: float(function(h)) for tag, function in _FEATURES}
