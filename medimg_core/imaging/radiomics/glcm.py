"""Grey level co-occurrence matrix (GLCM) features, IBSI section 3.6 (family code LFYI).

A GLCM counts how often grey level ``i`` sits next to grey level ``j`` along one direction.
Pairs are counted both ways (the matrix is symmetric) and only when both voxels lie in the
intensity mask. Neighbours are at Chebyshev distance ``distance`` (default 1): 13 directions in
3D, the 4 in-plane directions of each ``z`` slice in 2D.

Aggregations (IBSI 3.6.1, "aggregating features"):

* ``2D_avg`` (BTW3): features of every slice's every direction, averaged;
* ``2D_comb`` (SUJT): directions merged per slice, features averaged over slices;
* ``2_5D_avg`` (JJUI): slices merged per direction, features averaged over directions;
* ``2_5D_comb`` (ZW7Z): one matrix from all slices and directions;
* ``3D_avg`` (ITBB): features of every 3D direction, averaged (PyRadiomics' default);
* ``3D_comb`` (IAZD): one matrix from all 13 directions.

Matrices without any pair (e.g. a slice with one voxel) take no part in an average; a feature
undefined for some matrices (e.g. correlation when a matrix holds one grey level) is averaged
over the matrices where it is defined, and is NaN when it is defined for none.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.roi import RoiContext

__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "compute"]

AGGREGATIONS: tuple[str, ...] = ("2D_avg", "2D_comb", "2_5D_avg", "2_5D_comb", "3D_avg", "3D_comb")
DEFAULT_AGGREGATION: str | None = "3D_avg"

FAMILY = "glcm"

_FEATURES: list[tuple[str, Callable[[_Glcm], np.ndarray]]] = []


def _directions(dimensions: int) -> list[tuple[int, int, int]]:
    """Unit direction vectors ``(z, y, x)``, one of each opposite pair."""
    if dimensions == 2:
        return [(0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 1, -1)]
    out: list[tuple[int, int, int]] = []
    for dz, dy, dx in itertools.product((-1, 0, 1), repeat=3):
        # Keep the vector whose first non-zero component is positive.
        if (dz, dy, dx) != (0, 0, 0) and next(c for c in (dz, dy, dx) if c != 0) > 0:
            out.append((dz, dy, dx))
    return out


@dataclass(frozen=True, eq=False)
class _Glcm:
    """A batch of ``B`` normalised co-occurrence matrices and the sums the features share.

    Attributes
    ----------
    p : ``(B, Ng, Ng)`` joint probabilities :math:`p_{ij}`.
    n_levels : Ng.
    i, j : grey levels broadcasting over rows / columns, ``(1, Ng, 1)`` and ``(1, 1, Ng)``.
    p_row : ``(B, Ng)`` row marginal :math:`p_{i.}` (equal to the column marginal).
    mu : ``(B,)`` mean of the row marginal.
    p_diff : ``(B, Ng)`` diagonal probabilities :math:`p_{i-j,k}`, ``k = 0 .. Ng-1``.
    p_sum : ``(B, 2Ng-1)`` cross-diagonal probabilities :math:`p_{i+j,k}`, ``k = 2 .. 2Ng``.
    """

    p: np.ndarray
    n_levels: int
    i: np.ndarray
    j: np.ndarray
    p_row: np.ndarray
    mu: np.ndarray
    p_diff: np.ndarray
    p_sum: np.ndarray

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> _Glcm:
        """Normalise ``(B, Ng, Ng)`` counts (every matrix holding at least one pair)."""
        b, ng, _ = counts.shape
        p = counts / counts.sum(axis=(1, 2), keepdims=True)
        levels = np.arange(1, ng + 1, dtype=np.float64)
        i = levels[None, :, None]
        j = levels[None, None, :]
        p_row = p.sum(axis=2)
        mu = (p_row * levels).sum(axis=1)
        grid_i, grid_j = np.meshgrid(np.arange(ng), np.arange(ng), indexing="ij")
        batch = np.arange(b)[:, None, None]
        diff_index = (batch * ng + np.abs(grid_i - grid_j)[None]).ravel()
        p_diff = np.bincount(diff_index, weights=p.ravel(), minlength=b * ng).reshape(b, ng)
        n_sum = 2 * ng - 1
        sum_index = (batch * n_sum + (grid_i + grid_j)[None]).ravel()
        p_sum = np.bincount(sum_index, weights=p.ravel(), minlength=b * n_sum).reshape(b, n_sum)
        return cls(p=p, n_levels=ng, i=i, j=j, p_row=p_row, mu=mu, p_diff=p_diff, p_sum=p_sum)

    @property
    def k_diff(self) -> np.ndarray:
        """``k = 0 .. Ng-1`` for :attr:`p_diff`."""
        return np.arange(self.n_levels, dtype=np.float64)[None, :]

    @property
    def k_sum(self) -> np.ndarray:
        """``k = 2 .. 2Ng`` for :attr:`p_sum`."""
        return np.arange(2, 2 * self.n_levels + 1, dtype=np.float64)[None, :]


def _plogp(p: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """:math:`-\\sum p \\log_2 p` over ``axes``, with :math:`0 \\log 0 = 0`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return np.asarray(-terms.sum(axis=axes))


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, NaN where ``den`` is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _glcm_feature(
    tag: str, *, code: str, name: str, pyradiomics: bool
) -> Callable[[Callable[[_Glcm], np.ndarray]], Callable[[_Glcm], np.ndarray]]:
    """Register a GLCM feature in the catalogue and in this module's computation order."""

    def register(function: Callable[[_Glcm], np.ndarray]) -> Callable[[_Glcm], np.ndarray]:
        feature(FAMILY, tag, code=code, name=name, pyradiomics=pyradiomics)(function)
        _FEATURES.append((tag, function))
        return function

    return register


@_glcm_feature("cm_joint_max", code="GYBY", name="MaximumProbability", pyradiomics=True)
def joint_maximum(m: _Glcm) -> np.ndarray:
    """Joint maximum: how often the single most common pair of neighbouring grey levels occurs.

    IBSI: :math:`\\max_{ij} p_{ij}`.
    """
    return np.asarray(m.p.max(axis=(1, 2)))


@_glcm_feature("cm_joint_avg", code="60VM", name="JointAverage", pyradiomics=True)
def joint_average(m: _Glcm) -> np.ndarray:
    """Joint average: the mean grey level of neighbouring voxel pairs.

    IBSI: :math:`\\sum_{ij} i\\,p_{ij}`.
    """
    return np.asarray((m.i * m.p).sum(axis=(1, 2)))


@_glcm_feature("cm_joint_var", code="UR99", name="SumSquares", pyradiomics=True)
def joint_variance(m: _Glcm) -> np.ndarray:
    """Joint variance: how widely grey levels of neighbouring pairs spread around their mean.

    IBSI: :math:`\\sum_{ij} (i-\\mu)^2 p_{ij}`, :math:`\\mu` the joint average (Haralick's
    "sum of squares").
    """
    mu = joint_average(m)[:, None, None]
    return np.asarray(((m.i - mu) ** 2 * m.p).sum(axis=(1, 2)))


@_glcm_feature("cm_joint_entr", code="TU9B", name="JointEntropy", pyradiomics=True)
def joint_entropy(m: _Glcm) -> np.ndarray:
    """Joint entropy: how unpredictable the pair of grey levels of two neighbours is.

    IBSI: :math:`-\\sum_{ij} p_{ij} \\log_2 p_{ij}`.
    """
    return _plogp(m.p, (1, 2))


@_glcm_feature("cm_diff_avg", code="TF7R", name="DifferenceAverage", pyradiomics=True)
def difference_average(m: _Glcm) -> np.ndarray:
    """Difference average: the mean grey-level difference between neighbours.

    IBSI: :math:`\\sum_k k\\,p_{i-j,k}`; equal to dissimilarity.
    """
    return np.asarray((m.k_diff * m.p_diff).sum(axis=1))


@_glcm_feature("cm_diff_var", code="D3YU", name="DifferenceVariance", pyradiomics=True)
def difference_variance(m: _Glcm) -> np.ndarray:
    """Difference variance: how much the grey-level differences between neighbours vary.

    IBSI: :math:`\\sum_k (k-\\mu)^2 p_{i-j,k}`, :math:`\\mu` the difference average.
    """
    mu = difference_average(m)[:, None]
    return np.asarray(((m.k_diff - mu) ** 2 * m.p_diff).sum(axis=1))


@_glcm_feature("cm_diff_entr", code="NTRS", name="DifferenceEntropy", pyradiomics=True)
def difference_entropy(m: _Glcm) -> np.ndarray:
    """Difference entropy: how unpredictable the grey-level difference between neighbours is.

    IBSI: :math:`-\\sum_k p_{i-j,k} \\log_2 p_{i-j,k}`.
    """
    return _plogp(m.p_diff, (1,))


@_glcm_feature("cm_sum_avg", code="ZGXS", name="SumAverage", pyradiomics=True)
def sum_average(m: _Glcm) -> np.ndarray:
    """Sum average: the mean of the summed grey levels of neighbouring pairs.

    IBSI: :math:`\\sum_k k\\,p_{i+j,k}`, twice the joint average.
    """
    return np.asarray((m.k_sum * m.p_sum).sum(axis=1))


@_glcm_feature("cm_sum_var", code="OEEB", name="SumVariance", pyradiomics=False)
def sum_variance(m: _Glcm) -> np.ndarray:
    """Sum variance: how much the summed grey levels of neighbouring pairs vary.

    IBSI: :math:`\\sum_k (k-\\mu)^2 p_{i+j,k}`, :math:`\\mu` the sum average. Equal to cluster
    tendency, which is why PyRadiomics dropped it.
    """
    mu = sum_average(m)[:, None]
    return np.asarray(((m.k_sum - mu) ** 2 * m.p_sum).sum(axis=1))


@_glcm_feature("cm_sum_entr", code="P6QZ", name="SumEntropy", pyradiomics=True)
def sum_entropy(m: _Glcm) -> np.ndarray:
    """Sum entropy: how unpredictable the summed grey level of two neighbours is.

    IBSI: :math:`-\\sum_k p_{i+j,k} \\log_2 p_{i+j,k}`.
    """
    return _plogp(m.p_sum, (1,))


@_glcm_feature("cm_energy", code="8ZQL", name="JointEnergy", pyradiomics=True)
def angular_second_moment(m: _Glcm) -> np.ndarray:
    """Joint energy: high when few grey-level pairs dominate, i.e. an orderly, uniform texture.

    IBSI angular second moment: :math:`\\sum_{ij} p_{ij}^2`.
    """
    return np.asarray((m.p**2).sum(axis=(1, 2)))


@_glcm_feature("cm_contrast", code="ACUI", name="Contrast", pyradiomics=True)
def contrast(m: _Glcm) -> np.ndarray:
    """Contrast: how strongly grey levels differ between neighbours; high in heterogeneous lesions.

    IBSI: :math:`\\sum_{ij} (i-j)^2 p_{ij}`.
    """
    return np.asarray(((m.i - m.j) ** 2 * m.p).sum(axis=(1, 2)))


@_glcm_feature("cm_dissimilarity", code="8S9J", name="Dissimilarity", pyradiomics=False)
def dissimilarity(m: _Glcm) -> np.ndarray:
    """Dissimilarity: the mean absolute grey-level difference between neighbours.

    IBSI: :math:`\\sum_{ij} |i-j|\\,p_{ij}`; equal to the difference average, which is why
    PyRadiomics dropped it.
    """
    return np.asarray((np.abs(m.i - m.j) * m.p).sum(axis=(1, 2)))


@_glcm_feature("cm_inv_diff", code="IB1Z", name="Id", pyradiomics=True)
def inverse_difference(m: _Glcm) -> np.ndarray:
    """Inverse difference: high when neighbours have similar grey levels (a homogeneous region).

    IBSI: :math:`\\sum_k p_{i-j,k} / (1+k)`.
    """
    return np.asarray((m.p_diff / (1.0 + m.k_diff)).sum(axis=1))


@_glcm_feature("cm_inv_diff_norm", code="NDRX", name="Idn", pyradiomics=True)
def normalised_inverse_difference(m: _Glcm) -> np.ndarray:
    """Normalised inverse difference: homogeneity, differences scaled by the number of grey levels.

    IBSI: :math:`\\sum_k p_{i-j,k} / (1+k/N_g)`.
    """
    return np.asarray((m.p_diff / (1.0 + m.k_diff / m.n_levels)).sum(axis=1))


@_glcm_feature("cm_inv_diff_mom", code="WF0Z", name="Idm", pyradiomics=True)
def inverse_difference_moment(m: _Glcm) -> np.ndarray:
    """Inverse difference moment: homogeneity that penalises large grey-level jumps strongly.

    IBSI: :math:`\\sum_k p_{i-j,k} / (1+k^2)`.
    """
    return np.asarray((m.p_diff / (1.0 + m.k_diff**2)).sum(axis=1))


@_glcm_feature("cm_inv_diff_mom_norm", code="1QCO", name="Idmn", pyradiomics=True)
def normalised_inverse_difference_moment(m: _Glcm) -> np.ndarray:
    """Normalised inverse difference moment: homogeneity, squared differences scaled to grey levels.

    IBSI: :math:`\\sum_k p_{i-j,k} / (1+(k/N_g)^2)`.
    """
    return np.asarray((m.p_diff / (1.0 + (m.k_diff / m.n_levels) ** 2)).sum(axis=1))


@_glcm_feature("cm_inv_var", code="E8JP", name="InverseVariance", pyradiomics=True)
def inverse_variance(m: _Glcm) -> np.ndarray:
    """Inverse variance: weight of small but non-zero grey-level differences between neighbours.

    IBSI: :math:`\\sum_{k \\ge 1} p_{i-j,k} / k^2`.
    """
    k = m.k_diff[:, 1:]
    return np.asarray((m.p_diff[:, 1:] / k**2).sum(axis=1))


@_glcm_feature("cm_corr", code="NI2N", name="Correlation", pyradiomics=True)
def correlation(m: _Glcm) -> np.ndarray:
    """Correlation: how linearly a voxel's grey level predicts its neighbour's (from -1 to 1).

    IBSI: :math:`\\sigma_{i.}^{-2} \\sum_{ij} (i-\\mu_{i.})(j-\\mu_{i.}) p_{ij}`; NaN when the
    matrix holds a single grey level (zero variance).
    """
    mu = m.mu[:, None, None]
    covariance = ((m.i - mu) * (m.j - mu) * m.p).sum(axis=(1, 2))
    variance = ((m.i[:, :, 0] - m.mu[:, None]) ** 2 * m.p_row).sum(axis=1)
    # Round-off can leave a tiny positive variance for a single grey level.
    variance = np.where(variance > 1e-12, variance, 0.0)
    return _divide(covariance, variance)


@_glcm_feature("cm_auto_corr", code="QWB0", name="Autocorrelation", pyradiomics=True)
def autocorrelation(m: _Glcm) -> np.ndarray:
    """Autocorrelation: mean product of neighbouring grey levels; high in bright, coarse texture.

    IBSI: :math:`\\sum_{ij} i\\,j\\,p_{ij}`.
    """
    return np.asarray((m.i * m.j * m.p).sum(axis=(1, 2)))


def _cluster(m: _Glcm, power: int) -> np.ndarray:
    mu = m.mu[:, None, None]
    return np.asarray(((m.i + m.j - 2.0 * mu) ** power * m.p).sum(axis=(1, 2)))


@_glcm_feature("cm_clust_tend", code="DG8W", name="ClusterTendency", pyradiomics=True)
def cluster_tendency(m: _Glcm) -> np.ndarray:
    """Cluster tendency: how much neighbouring pairs group into clusters of similar grey levels.

    IBSI: :math:`\\sum_{ij} (i+j-2\\mu_{i.})^2 p_{ij}`; equal to sum variance.
    """
    return _cluster(m, 2)


@_glcm_feature("cm_clust_shade", code="7NFM", name="ClusterShade", pyradiomics=True)
def cluster_shade(m: _Glcm) -> np.ndarray:
    """Cluster shade: lopsidedness of neighbouring grey levels towards dark or bright patches.

    IBSI: :math:`\\sum_{ij} (i+j-2\\mu_{i.})^3 p_{ij}`.
    """
    return _cluster(m, 3)


@_glcm_feature("cm_clust_prom", code="AE86", name="ClusterProminence", pyradiomics=True)
def cluster_prominence(m: _Glcm) -> np.ndarray:
    """Cluster prominence: weight of pairs far from the mean grey level; high with outlying patches.

    IBSI: :math:`\\sum_{ij} (i+j-2\\mu_{i.})^4 p_{ij}`.
    """
    return _cluster(m, 4)


def _marginal_entropies(m: _Glcm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HX, HXY1 and HXY2 of the information correlations (row and column marginals are equal)."""
    hx = _plogp(m.p_row, (1,))
    outer = m.p_row[:, :, None] * m.p_row[:, None, :]
    with np.errstate(divide="ignore"):
        log_outer = np.log2(np.where(outer > 0, outer, 1.0))
    hxy1 = -(m.p * log_outer).sum(axis=(1, 2))
    hxy2 = -(outer * log_outer).sum(axis=(1, 2))
    return hx, hxy1, hxy2


@_glcm_feature("cm_info_corr1", code="R8DG", name="Imc1", pyradiomics=True)
def information_correlation_1(m: _Glcm) -> np.ndarray:
    """Information correlation 1: how much one voxel's grey level tells about its neighbour's.

    0 means nothing, more negative means more.

    IBSI: :math:`(HXY - HXY1) / HX`; NaN when the matrix holds one grey level (:math:`HX=0`).
    """
    hx, hxy1, _ = _marginal_entropies(m)
    hxy = joint_entropy(m)
    hx = np.where(hx > 1e-12, hx, 0.0)
    return _divide(hxy - hxy1, hx)


@_glcm_feature("cm_info_corr2", code="JN9H", name="Imc2", pyradiomics=True)
def information_correlation_2(m: _Glcm) -> np.ndarray:
    """Information correlation 2: dependence between neighbouring grey levels on a 0 to 1 scale.

    IBSI: :math:`\\sqrt{1 - \\exp(-2(HXY2 - HXY))}`.
    """
    _, _, hxy2 = _marginal_entropies(m)
    gap = np.maximum(hxy2 - joint_entropy(m), 0.0)
    return np.asarray(np.sqrt(1.0 - np.exp(-2.0 * gap)))


def _crop(levels: np.ndarray) -> np.ndarray:
    """The bounding box of the grey levels (voxels outside the intensity mask are 0)."""
    inside = np.nonzero(levels)
    if inside[0].size == 0:
        return levels[:0, :0, :0]
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in inside)
    return levels[box]


def _pairs(levels: np.ndarray, offset: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    """Grey levels of voxel pairs ``(k, k + offset)`` both in the mask, and the slice of ``k``."""
    src, dst = [], []
    for d, n in zip(offset, levels.shape, strict=True):
        src.append(slice(max(0, -d), n - max(0, d)))
        dst.append(slice(max(0, d), n - max(0, -d)))
    a = levels[tuple(src)]
    b = levels[tuple(dst)]
    valid = (a > 0) & (b > 0)
    z = np.broadcast_to(np.arange(src[0].start, src[0].stop)[:, None, None], a.shape)
    return a[valid], b[valid], z[valid]


def _counts(
    levels: np.ndarray, offset: tuple[int, int, int], n_levels: int, *, by_slice: bool
) -> np.ndarray:
    """Symmetric co-occurrence counts along ``offset``: ``(Ng, Ng)``, or ``(Nz, Ng, Ng)``."""
    a, b, z = _pairs(levels, offset)
    index = (a - 1) * n_levels + (b - 1)
    size = n_levels * n_levels
    if by_slice:
        n_z = levels.shape[0]
        index = index + z * size
        per_slice = np.bincount(index, minlength=n_z * size).reshape(n_z, n_levels, n_levels)
        return per_slice + per_slice.transpose(0, 2, 1)
    counts = np.bincount(index, minlength=size).reshape(n_levels, n_levels)
    return counts + counts.T


def matrices(ctx: RoiContext, aggregation: str, *, distance: int = 1) -> np.ndarray:
    """The co-occurrence count matrices an aggregation computes features on.

    Returns
    -------
    ``(B, Ng, Ng)`` counts, one per feature evaluation before averaging (``B = 1`` for the
    fully merged aggregations); empty matrices are left out, so ``B`` may be 0.
    """
    levels = _crop(ctx.levels)
    ng = int(ctx.n_levels)
    if levels.size == 0:
        return np.zeros((0, ng, ng), dtype=np.int64)
    if aggregation.startswith("3D"):
        stack = np.stack(
            [_counts(levels, _scale(d, distance), ng, by_slice=False) for d in _directions(3)]
        )
        if aggregation == "3D_comb":
            stack = stack.sum(axis=0, keepdims=True)
    else:
        # (directions, slices, Ng, Ng)
        per = np.stack(
            [_counts(levels, _scale(d, distance), ng, by_slice=True) for d in _directions(2)]
        )
        if aggregation == "2D_avg":
            stack = per.reshape(-1, ng, ng)
        elif aggregation == "2D_comb":
            stack = per.sum(axis=0)
        elif aggregation == "2_5D_avg":
            stack = per.sum(axis=1)
        else:
            stack = per.sum(axis=(0, 1))[None]
    return stack[stack.sum(axis=(1, 2)) > 0]


def _scale(direction: tuple[int, int, int], distance: int) -> tuple[int, int, int]:
    return (direction[0] * distance, direction[1] * distance, direction[2] * distance)


def _check(aggregation: str | None, options: dict[str, Any]) -> tuple[str, int]:
    aggregation = DEFAULT_AGGREGATION if aggregation is None else aggregation
    if aggregation not in AGGREGATIONS:
        raise ConfigError(
            f"Unknown GLCM aggregation {aggregation!r}; use one of: {', '.join(AGGREGATIONS)}."
        )
    unknown = set(options) - {"distance"}
    if unknown:
        raise ConfigError(
            f"Unknown GLCM option(s) {', '.join(sorted(unknown))}; the only option is 'distance'."
        )
    distance = options.get("distance", 1)
    if isinstance(distance, bool) or not isinstance(distance, int | np.integer) or distance < 1:
        raise ConfigError(
            f"GLCM distance must be a whole number of voxels of at least 1, got {distance!r}."
        )
    return str(aggregation), int(distance)


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Every GLCM feature of a region.

    Parameters
    ----------
    ctx : the prepared region (grey levels in ``ctx.levels``).
    aggregation : one of :data:`AGGREGATIONS`; None for :data:`DEFAULT_AGGREGATION`.
    **options : ``distance`` (int, default 1), the Chebyshev distance between neighbours.

    Returns
    -------
    IBSI tag (without aggregation suffix) -> value; NaN where the feature is undefined (e.g. no
    two neighbouring voxels in the region).
    """
    aggregation, distance = _check(aggregation, options)
    counts = matrices(ctx, aggregation, distance=distance)
    if counts.shape[0] == 0:
        return {tag: float("nan") for tag, _ in _FEATURES}
    prepared = _Glcm.from_counts(counts.astype(np.float64))
    out: dict[str, float] = {}
    for tag, function in _FEATURES:
        values = np.asarray(function(prepared), dtype=np.float64)
        out[tag] = _mean(values)
    return out


def _mean(values: np.ndarray) -> float:
    """Mean over the matrices where the feature is defined; NaN when it is defined nowhere."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(finite.mean())
