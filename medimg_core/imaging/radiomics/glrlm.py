"""Grey level run length matrix (GLRLM) features, IBSI section 3.7 (family code TP0I).

A run is a line of consecutive voxels with the same grey level along one direction; it stops at
a change of grey level or at the edge of the intensity mask. Element :math:`r_{ij}` of the GLRLM
counts the runs of grey level ``i`` and length ``j``. Directions are the 13 of 3D
(26-connectivity) or the 4 in-plane directions of each ``z`` slice in 2D.

Aggregations (IBSI 3.7.1), with :math:`N_v` summed whenever matrices are merged, as IBSI asks:

* ``2D_avg`` (BTW3): features of every slice's every direction, averaged;
* ``2D_comb`` (SUJT): directions merged per slice, features averaged over slices;
* ``2_5D_avg`` (JJUI): slices merged per direction, features averaged over directions;
* ``2_5D_comb`` (ZW7Z): one matrix from all slices and directions;
* ``3D_avg`` (ITBB): features of every 3D direction, averaged (PyRadiomics' default);
* ``3D_comb`` (IAZD): one matrix from all 13 directions.

Runs are found without a loop over voxels: each direction's lines are laid out as the rows of a
skewed copy of the grey levels, separated by a zero, and one run-length encoding of the
flattened copy finds every run at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.glcm import _crop, _directions
from medimg_core.imaging.radiomics.roi import RoiContext

__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "compute"]

AGGREGATIONS: tuple[str, ...] = ("2D_avg", "2D_comb", "2_5D_avg", "2_5D_comb", "3D_avg", "3D_comb")
DEFAULT_AGGREGATION: str | None = "3D_avg"

FAMILY = "glrlm"

_FEATURES: list[tuple[str, Callable[[_Glrlm], np.ndarray]]] = []


@dataclass(frozen=True, eq=False)
class _Glrlm:
    """A batch of ``B`` run length matrices and the sums the features share.

    Attributes
    ----------
    r : ``(B, Ng, Nr)`` run counts :math:`r_{ij}`.
    n_voxels : ``(B,)`` :math:`N_v`, voxels behind each matrix (summed over merged matrices).
    n_runs : ``(B,)`` :math:`N_s`, the number of runs.
    i : ``(1, Ng)`` grey levels; j : ``(1, Nr)`` run lengths.
    r_i : ``(B, Ng)`` runs per grey level :math:`r_{i.}`; r_j : ``(B, Nr)`` runs per length.
    p : ``(B, Ng, Nr)`` :math:`p_{ij} = r_{ij} / N_s`.
    """

    r: np.ndarray
    n_voxels: np.ndarray
    n_runs: np.ndarray
    i: np.ndarray
    j: np.ndarray
    r_i: np.ndarray
    r_j: np.ndarray
    p: np.ndarray

    @classmethod
    def from_counts(cls, counts: np.ndarray, n_voxels: np.ndarray) -> _Glrlm:
        """Prepare ``(B, Ng, Nr)`` counts (every matrix holding at least one run)."""
        _, ng, nr = counts.shape
        n_runs = counts.sum(axis=(1, 2))
        return cls(
            r=counts,
            n_voxels=n_voxels.astype(np.float64),
            n_runs=n_runs,
            i=np.arange(1, ng + 1, dtype=np.float64)[None, :],
            j=np.arange(1, nr + 1, dtype=np.float64)[None, :],
            r_i=counts.sum(axis=2),
            r_j=counts.sum(axis=1),
            p=counts / n_runs[:, None, None],
        )

    @property
    def i3(self) -> np.ndarray:
        """Grey levels broadcasting over :attr:`r`."""
        return self.i[:, :, None]

    @property
    def j3(self) -> np.ndarray:
        """Run lengths broadcasting over :attr:`r`."""
        return self.j[:, None, :]


def _glrlm_feature(
    tag: str, *, code: str, name: str, pyradiomics: bool = True
) -> Callable[[Callable[[_Glrlm], np.ndarray]], Callable[[_Glrlm], np.ndarray]]:
    """Register a GLRLM feature in the catalogue and in this module's computation order."""

    def register(function: Callable[[_Glrlm], np.ndarray]) -> Callable[[_Glrlm], np.ndarray]:
        feature(FAMILY, tag, code=code, name=name, pyradiomics=pyradiomics)(function)
        _FEATURES.append((tag, function))
        return function

    return register


@_glrlm_feature("rlm_sre", code="22OV", name="ShortRunEmphasis")
def short_runs_emphasis(m: _Glrlm) -> np.ndarray:
    """Short runs emphasis: high when grey levels change often along lines (fine texture).

    IBSI: :math:`N_s^{-1} \\sum_j r_{.j} / j^2`.
    """
    return np.asarray((m.r_j / m.j**2).sum(axis=1) / m.n_runs)


@_glrlm_feature("rlm_lre", code="W4KF", name="LongRunEmphasis")
def long_runs_emphasis(m: _Glrlm) -> np.ndarray:
    """Long runs emphasis: high when long stretches share one grey level (coarse texture).

    IBSI: :math:`N_s^{-1} \\sum_j j^2 r_{.j}`.
    """
    return np.asarray((m.r_j * m.j**2).sum(axis=1) / m.n_runs)


@_glrlm_feature("rlm_lgre", code="V3SW", name="LowGrayLevelRunEmphasis")
def low_grey_level_run_emphasis(m: _Glrlm) -> np.ndarray:
    """Low grey level run emphasis: weight of runs of dark (low) grey levels.

    IBSI: :math:`N_s^{-1} \\sum_i r_{i.} / i^2`.
    """
    return np.asarray((m.r_i / m.i**2).sum(axis=1) / m.n_runs)


@_glrlm_feature("rlm_hgre", code="G3QZ", name="HighGrayLevelRunEmphasis")
def high_grey_level_run_emphasis(m: _Glrlm) -> np.ndarray:
    """High grey level run emphasis: weight of runs of bright (high) grey levels.

    IBSI: :math:`N_s^{-1} \\sum_i i^2 r_{i.}`.
    """
    return np.asarray((m.r_i * m.i**2).sum(axis=1) / m.n_runs)


@_glrlm_feature("rlm_srlge", code="HTZT", name="ShortRunLowGrayLevelEmphasis")
def short_run_low_grey_level_emphasis(m: _Glrlm) -> np.ndarray:
    """Short run low grey level emphasis: weight of short runs of dark grey levels.

    IBSI: :math:`N_s^{-1} \\sum_{ij} r_{ij} / (i^2 j^2)`.
    """
    return np.asarray((m.r / (m.i3**2 * m.j3**2)).sum(axis=(1, 2)) / m.n_runs)


@_glrlm_feature("rlm_srhge", code="GD3A", name="ShortRunHighGrayLevelEmphasis")
def short_run_high_grey_level_emphasis(m: _Glrlm) -> np.ndarray:
    """Short run high grey level emphasis: weight of short runs of bright grey levels.

    IBSI: :math:`N_s^{-1} \\sum_{ij} i^2 r_{ij} / j^2`.
    """
    return np.asarray((m.r * m.i3**2 / m.j3**2).sum(axis=(1, 2)) / m.n_runs)


@_glrlm_feature("rlm_lrlge", code="IVPO", name="LongRunLowGrayLevelEmphasis")
def long_run_low_grey_level_emphasis(m: _Glrlm) -> np.ndarray:
    """Long run low grey level emphasis: weight of long runs of dark grey levels.

    IBSI: :math:`N_s^{-1} \\sum_{ij} j^2 r_{ij} / i^2`.
    """
    return np.asarray((m.r * m.j3**2 / m.i3**2).sum(axis=(1, 2)) / m.n_runs)


@_glrlm_feature("rlm_lrhge", code="3KUM", name="LongRunHighGrayLevelEmphasis")
def long_run_high_grey_level_emphasis(m: _Glrlm) -> np.ndarray:
    """Long run high grey level emphasis: weight of long runs of bright grey levels.

    IBSI: :math:`N_s^{-1} \\sum_{ij} i^2 j^2 r_{ij}`.
    """
    return np.asarray((m.r * m.i3**2 * m.j3**2).sum(axis=(1, 2)) / m.n_runs)


@_glrlm_feature("rlm_glnu", code="R5YN", name="GrayLevelNonUniformity")
def grey_level_non_uniformity(m: _Glrlm) -> np.ndarray:
    """Grey level non-uniformity: high when runs concentrate on few grey levels; grows with size.

    IBSI: :math:`N_s^{-1} \\sum_i r_{i.}^2`.
    """
    return np.asarray((m.r_i**2).sum(axis=1) / m.n_runs)


@_glrlm_feature("rlm_glnu_norm", code="OVBL", name="GrayLevelNonUniformityNormalized")
def normalised_grey_level_non_uniformity(m: _Glrlm) -> np.ndarray:
    """Normalised grey level non-uniformity: how much runs concentrate on few grey levels (0-1).

    Independent of region size.

    IBSI: :math:`N_s^{-2} \\sum_i r_{i.}^2`.
    """
    return np.asarray((m.r_i**2).sum(axis=1) / m.n_runs**2)


@_glrlm_feature("rlm_rlnu", code="W92Y", name="RunLengthNonUniformity")
def run_length_non_uniformity(m: _Glrlm) -> np.ndarray:
    """Run length non-uniformity: high when most runs have the same length; grows with size.

    IBSI: :math:`N_s^{-1} \\sum_j r_{.j}^2`.
    """
    return np.asarray((m.r_j**2).sum(axis=1) / m.n_runs)


@_glrlm_feature("rlm_rlnu_norm", code="IC23", name="RunLengthNonUniformityNormalized")
def normalised_run_length_non_uniformity(m: _Glrlm) -> np.ndarray:
    """Normalised run length non-uniformity: how much runs share one length (0-1).

    Independent of region size.

    IBSI: :math:`N_s^{-2} \\sum_j r_{.j}^2`.
    """
    return np.asarray((m.r_j**2).sum(axis=1) / m.n_runs**2)


@_glrlm_feature("rlm_r_perc", code="9ZK5", name="RunPercentage")
def run_percentage(m: _Glrlm) -> np.ndarray:
    """Run percentage: runs per voxel; near 1 for fine texture, low for long uniform stretches.

    IBSI: :math:`N_s / N_v`, with :math:`N_v` summed over merged matrices (so a merged matrix
    of 13 directions divides by 13 :math:`N_v`). PyRadiomics' ``RunPercentage`` agrees for a
    per-direction average; for merged matrices medimg follows IBSI.
    """
    return np.asarray(m.n_runs / m.n_voxels)


@_glrlm_feature("rlm_gl_var", code="8CE5", name="GrayLevelVariance")
def grey_level_variance(m: _Glrlm) -> np.ndarray:
    """Grey level variance: how widely the grey levels of runs spread.

    IBSI: :math:`\\sum_{ij} (i-\\mu)^2 p_{ij}`, :math:`\\mu = \\sum_{ij} i\\,p_{ij}`.
    """
    p_i = m.r_i / m.n_runs[:, None]
    mu = (m.i * p_i).sum(axis=1, keepdims=True)
    return np.asarray(((m.i - mu) ** 2 * p_i).sum(axis=1))


@_glrlm_feature("rlm_rl_var", code="SXLW", name="RunVariance")
def run_length_variance(m: _Glrlm) -> np.ndarray:
    """Run length variance: how widely run lengths spread.

    IBSI: :math:`\\sum_{ij} (j-\\mu)^2 p_{ij}`, :math:`\\mu = \\sum_{ij} j\\,p_{ij}`.
    """
    p_j = m.r_j / m.n_runs[:, None]
    mu = (m.j * p_j).sum(axis=1, keepdims=True)
    return np.asarray(((m.j - mu) ** 2 * p_j).sum(axis=1))


@_glrlm_feature("rlm_rl_entr", code="HJ9O", name="RunEntropy")
def run_entropy(m: _Glrlm) -> np.ndarray:
    """Run entropy: how unpredictable the grey level and length of a run are.

    IBSI: :math:`-\\sum_{ij} p_{ij} \\log_2 p_{ij}` (PyRadiomics adds a tiny epsilon inside
    the logarithm; medimg uses :math:`0 \\log 0 = 0`).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(m.p > 0, m.p * np.log2(np.where(m.p > 0, m.p, 1.0)), 0.0)
    return np.asarray(-terms.sum(axis=(1, 2)))


def _runs(levels: np.ndarray, direction: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    """Every run along ``direction``: (grey level, length, slice of the run) per run.

    The slice is meaningful for in-plane directions only (``direction[0] == 0``).
    """
    d = list(direction)
    for axis in range(3):
        if d[axis] < 0:
            levels = np.flip(levels, axis=axis)
            d[axis] = 1
    moving = [axis for axis in range(3) if d[axis] != 0]
    lead, others = moving[0], moving[1:]
    shape = list(levels.shape)
    n_lead = shape[lead]
    if others:
        # Skew: voxel k goes to column k[a] - k[lead] (+ offset) so each line of the direction
        # becomes a straight line along the lead axis.
        coords: list[np.ndarray] = list(np.indices(levels.shape, sparse=True))
        new_shape = list(shape)
        for axis in others:
            coords[axis] = coords[axis] - coords[lead] + (n_lead - 1)
            new_shape[axis] = shape[axis] + n_lead - 1
        skewed = np.zeros(new_shape, dtype=levels.dtype)
        skewed[tuple(np.broadcast_arrays(*coords))] = levels
    else:
        skewed = levels
    order = [axis for axis in range(3) if axis != lead] + [lead]
    lines = np.transpose(skewed, order)
    lines = np.concatenate([lines, np.zeros((*lines.shape[:2], 1), lines.dtype)], axis=2)
    flat = lines.ravel()
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size))
    values = flat[starts]
    keep = values > 0
    block = lines.shape[1] * lines.shape[2]
    return values[keep].astype(np.int64), lengths[keep], starts[keep] // block


def matrices(ctx: RoiContext, aggregation: str) -> tuple[np.ndarray, np.ndarray]:
    """The run length count matrices an aggregation computes features on, and their :math:`N_v`.

    Returns
    -------
    ``(B, Ng, Nr)`` counts and ``(B,)`` voxel counts, one per feature evaluation before
    averaging; matrices without runs are left out, so ``B`` may be 0.
    """
    levels = _crop(ctx.levels)
    ng = int(ctx.n_levels)
    if levels.size == 0:
        return np.zeros((0, ng, 1), dtype=np.int64), np.zeros(0)
    # The skewed copies are the bulk of the work: keep them small.
    levels = levels.astype(np.int16 if ng < np.iinfo(np.int16).max else np.int32)
    nr = max(levels.shape)
    size = ng * nr
    if aggregation.startswith("3D"):
        n_voxels = np.count_nonzero(levels)
        mats = []
        for d in _directions(3):
            values, lengths, _ = _runs(levels, d)
            index = (values - 1) * nr + (lengths - 1)
            mats.append(np.bincount(index, minlength=size).reshape(ng, nr))
        stack = np.stack(mats)
        voxels = np.full(stack.shape[0], n_voxels)
        if aggregation == "3D_comb":
            stack, voxels = stack.sum(axis=0, keepdims=True), voxels.sum(keepdims=True)
    else:
        n_z = levels.shape[0]
        per_slice = np.count_nonzero(levels, axis=(1, 2))
        per = []
        for d in _directions(2):
            values, lengths, z = _runs(levels, d)
            index = z * size + (values - 1) * nr + (lengths - 1)
            per.append(np.bincount(index, minlength=n_z * size).reshape(n_z, ng, nr))
        counts = np.stack(per)  # (directions, slices, Ng, Nr)
        voxel_grid = np.broadcast_to(per_slice[None, :], counts.shape[:2])
        if aggregation == "2D_avg":
            stack, voxels = counts.reshape(-1, ng, nr), voxel_grid.reshape(-1)
        elif aggregation == "2D_comb":
            stack, voxels = counts.sum(axis=0), voxel_grid.sum(axis=0)
        elif aggregation == "2_5D_avg":
            stack, voxels = counts.sum(axis=1), voxel_grid.sum(axis=1)
        else:
            stack, voxels = counts.sum(axis=(0, 1))[None], voxel_grid.sum(keepdims=True)
    keep = stack.sum(axis=(1, 2)) > 0
    return stack[keep], np.asarray(voxels)[keep]


def _check(aggregation: str | None, options: dict[str, Any]) -> str:
    aggregation = DEFAULT_AGGREGATION if aggregation is None else aggregation
    if aggregation not in AGGREGATIONS:
        raise ConfigError(
            f"Unknown GLRLM aggregation {aggregation!r}; use one of: {', '.join(AGGREGATIONS)}."
        )
    if options:
        raise ConfigError(
            f"Unknown GLRLM option(s) {', '.join(sorted(options))}; GLRLM takes no options."
        )
    return str(aggregation)


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Every GLRLM feature of a region.

    Parameters
    ----------
    ctx : the prepared region (grey levels in ``ctx.levels``).
    aggregation : one of :data:`AGGREGATIONS`; None for :data:`DEFAULT_AGGREGATION`.
    **options : none are accepted.

    Returns
    -------
    IBSI tag (without aggregation suffix) -> value; NaN where the feature is undefined.
    """
    aggregation = _check(aggregation, options)
    counts, voxels = matrices(ctx, aggregation)
    if counts.shape[0] == 0:
        return {tag: float("nan") for tag, _ in _FEATURES}
    prepared = _Glrlm.from_counts(counts.astype(np.float64), voxels)
    out: dict[str, float] = {}
    for tag, function in _FEATURES:
        values = np.asarray(function(prepared), dtype=np.float64)
        finite = values[np.isfinite(values)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[tag] = float(finite.mean()) if finite.size else float("nan")
    return out
