"""Neighbouring grey level dependence features (IBSI 3.11, family code ``REK0``).

The neighbouring grey level dependence matrix (NGLDM, Sun and Wee 1983) counts, for every voxel
of the intensity mask, its dependence ``j = 1 + the number of neighbours at Chebyshev distance 1
in the mask whose grey level differs from its own by at most alpha`` (IBSI default alpha = 0).
Element ``s_ij`` is the number of voxels of grey level ``i`` with dependence ``j``. Neighbours are
the 26 surrounding voxels in 3D, the 8 in-plane ones in 2D. As IBSI does, every voxel of the mask
counts, however many of its neighbours lie outside, so ``N_s = N_v``.

PyRadiomics calls this matrix GLDM (``gldm``, setting ``gldm_a`` for alpha). Its dependence count
matches IBSI's: it stores the number of dependent neighbours ``d`` in column ``d`` and weights
that column with ``j = d + 1``, so the centre voxel is counted in both. PyRadiomics computes the
matrix in 3D (``3D`` here; with ``force2D`` it merges slices as ``2_5D`` here) and has no
dependence count percentage or energy; its normalised grey level non-uniformity was removed
because it equals first-order uniformity.

Aggregation (IBSI): ``2D`` one matrix per slice, features averaged over slices (``8QNN``);
``2_5D`` slice matrices summed into one (``62GR``); ``3D`` one matrix of the volume (``KOBO``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.roi import RoiContext

__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "Ngldm", "compute", "ngldm_matrices"]

AGGREGATIONS: tuple[str, ...] = ("2D", "2_5D", "3D")
DEFAULT_AGGREGATION: str | None = "3D"

F = TypeVar("F", bound=Callable[..., Any])
_FEATURES: dict[str, Callable[[Ngldm], float]] = {}


@dataclass(frozen=True)
class Ngldm:
    """One neighbouring grey level dependence matrix.

    Attributes
    ----------
    s : float64 ``(Ng, Nn)``; ``s[i - 1, j - 1]`` voxels of grey level ``i`` with dependence ``j``
        (rows and columns beyond those present hold 0 and change no feature).
    n_voxels : ``N_v``, voxels of the intensity mask the matrix was built from.
    """

    s: npt.NDArray[np.float64]
    n_voxels: int

    @property
    def n_s(self) -> float:
        """``N_s``: the number of neighbourhoods (voxels) counted in the matrix."""
        return float(self.s.sum())

    @property
    def p(self) -> npt.NDArray[np.float64]:
        """Joint probabilities ``p_ij = s_ij / N_s``."""
        return self.s / self.n_s

    @property
    def i(self) -> npt.NDArray[np.float64]:
        """Grey levels ``1..Ng`` as a column."""
        return np.arange(1, self.s.shape[0] + 1, dtype=np.float64)[:, None]

    @property
    def j(self) -> npt.NDArray[np.float64]:
        """Dependence counts ``1..Nn`` as a row."""
        return np.arange(1, self.s.shape[1] + 1, dtype=np.float64)[None, :]

    @property
    def s_i(self) -> npt.NDArray[np.float64]:
        """Marginal ``s_i.``: voxels per grey level."""
        marginal: npt.NDArray[np.float64] = self.s.sum(axis=1)
        return marginal

    @property
    def s_j(self) -> npt.NDArray[np.float64]:
        """Marginal ``s_.j``: voxels per dependence count."""
        marginal: npt.NDArray[np.float64] = self.s.sum(axis=0)
        return marginal


def _ngldm_feature(tag: str, *, code: str, name: str, pyradiomics: bool = True) -> Callable[[F], F]:
    register = feature("ngldm", tag, code=code, name=name, pyradiomics=pyradiomics)

    def wrap(function: F) -> F:
        _FEATURES[tag] = function
        return register(function)

    return wrap


def _weighted(m: Ngldm, weight: npt.NDArray[np.float64]) -> float:
    return float(np.sum(m.s * weight)) / m.n_s


@_ngldm_feature("ngl_lde", code="SODN", name="SmallDependenceEmphasis")
def low_dependence_emphasis(m: Ngldm) -> float:
    """Low dependence emphasis: share of voxels unlike their neighbours; high in fine textures.

    ``1/N_s sum_j s_.j / j^2`` (Sun and Wee's small number emphasis).
    """
    return _weighted(m, 1.0 / m.j**2)


@_ngldm_feature("ngl_hde", code="IMOQ", name="LargeDependenceEmphasis")
def high_dependence_emphasis(m: Ngldm) -> float:
    """High dependence emphasis: share of voxels alike to many neighbours; high in smooth regions.

    ``1/N_s sum_j j^2 s_.j`` (Sun and Wee's large number emphasis).
    """
    return _weighted(m, m.j**2)


@_ngldm_feature("ngl_lgce", code="TL9H", name="LowGrayLevelEmphasis")
def low_grey_level_count_emphasis(m: Ngldm) -> float:
    """Low grey level count emphasis: how much of the region has low grey levels.

    ``1/N_s sum_i s_i. / i^2``.
    """
    return _weighted(m, 1.0 / m.i**2)


@_ngldm_feature("ngl_hgce", code="OAE7", name="HighGrayLevelEmphasis")
def high_grey_level_count_emphasis(m: Ngldm) -> float:
    """High grey level count emphasis: how much of the region has high grey levels.

    ``1/N_s sum_i i^2 s_i.``.
    """
    return _weighted(m, m.i**2)


@_ngldm_feature("ngl_ldlge", code="EQ3F", name="SmallDependenceLowGrayLevelEmphasis")
def low_dependence_low_grey_level_emphasis(m: Ngldm) -> float:
    """Low dependence low grey level emphasis: dark voxels that differ from their neighbours.

    ``1/N_s sum_i sum_j s_ij / (i^2 j^2)``.
    """
    return _weighted(m, 1.0 / (m.i**2 * m.j**2))


@_ngldm_feature("ngl_ldhge", code="JA6D", name="SmallDependenceHighGrayLevelEmphasis")
def low_dependence_high_grey_level_emphasis(m: Ngldm) -> float:
    """Low dependence high grey level emphasis: bright voxels that differ from their neighbours.

    ``1/N_s sum_i sum_j i^2 s_ij / j^2``.
    """
    return _weighted(m, m.i**2 / m.j**2)


@_ngldm_feature("ngl_hdlge", code="NBZI", name="LargeDependenceLowGrayLevelEmphasis")
def high_dependence_low_grey_level_emphasis(m: Ngldm) -> float:
    """High dependence low grey level emphasis: dark voxels inside uniform dark areas.

    ``1/N_s sum_i sum_j j^2 s_ij / i^2``.
    """
    return _weighted(m, m.j**2 / m.i**2)


@_ngldm_feature("ngl_hdhge", code="9QMG", name="LargeDependenceHighGrayLevelEmphasis")
def high_dependence_high_grey_level_emphasis(m: Ngldm) -> float:
    """High dependence high grey level emphasis: bright voxels inside uniform bright areas.

    ``1/N_s sum_i sum_j i^2 j^2 s_ij``.
    """
    return _weighted(m, m.i**2 * m.j**2)


@_ngldm_feature("ngl_glnu", code="FP8K", name="GrayLevelNonUniformity")
def grey_level_non_uniformity(m: Ngldm) -> float:
    """Grey level non-uniformity: how unevenly voxels spread over grey levels (grows with size).

    ``1/N_s sum_i s_i.^2``.
    """
    return float(np.sum(m.s_i**2)) / m.n_s


@_ngldm_feature(
    "ngl_glnu_norm", code="5SPA", name="GrayLevelNonUniformityNormalized", pyradiomics=False
)
def grey_level_non_uniformity_normalised(m: Ngldm) -> float:
    """Normalised grey level non-uniformity: how concentrated the region is on few grey levels.

    ``1/N_s^2 sum_i s_i.^2``; from one 3D matrix it equals the intensity histogram uniformity
    (PyRadiomics dropped it from its GLDM for that reason).
    """
    return float(np.sum(m.s_i**2)) / m.n_s**2


@_ngldm_feature("ngl_dcnu", code="Z87G", name="DependenceNonUniformity")
def dependence_count_non_uniformity(m: Ngldm) -> float:
    """Dependence count non-uniformity: how unevenly voxels spread over dependence counts.

    ``1/N_s sum_j s_.j^2`` (Sun and Wee's number non-uniformity); grows with region size.
    """
    return float(np.sum(m.s_j**2)) / m.n_s


@_ngldm_feature("ngl_dcnu_norm", code="OKJI", name="DependenceNonUniformityNormalized")
def dependence_count_non_uniformity_normalised(m: Ngldm) -> float:
    """Normalised dependence count non-uniformity: how concentrated voxels are on few dependences.

    ``1/N_s^2 sum_j s_.j^2``.
    """
    return float(np.sum(m.s_j**2)) / m.n_s**2


@_ngldm_feature("ngl_dc_perc", code="6XV8", name="DependenceCountPercentage", pyradiomics=False)
def dependence_count_percentage(m: Ngldm) -> float:
    """Dependence count percentage: share of voxels with a counted neighbourhood (always 1 here).

    ``N_s / N_v``; IBSI counts every voxel of the mask, so it is 1 by construction.
    """
    return m.n_s / m.n_voxels


@_ngldm_feature("ngl_gl_var", code="1PFV", name="GrayLevelVariance")
def grey_level_variance(m: Ngldm) -> float:
    """Grey level variance: how widely grey levels vary across the region.

    ``sum_i sum_j (i - mu)^2 p_ij`` with ``mu = sum_i sum_j i p_ij``.
    """
    p = m.p
    mu = float(np.sum(m.i * p))
    return float(np.sum((m.i - mu) ** 2 * p))


@_ngldm_feature("ngl_dc_var", code="DNX2", name="DependenceVariance")
def dependence_count_variance(m: Ngldm) -> float:
    """Dependence count variance: how much the size of uniform neighbourhoods varies.

    ``sum_i sum_j (j - mu)^2 p_ij`` with ``mu = sum_i sum_j j p_ij``.
    """
    p = m.p
    mu = float(np.sum(m.j * p))
    return float(np.sum((m.j - mu) ** 2 * p))


@_ngldm_feature("ngl_dc_entr", code="FCBV", name="DependenceEntropy")
def dependence_count_entropy(m: Ngldm) -> float:
    """Dependence count entropy: unpredictability of grey level and dependence together.

    ``-sum_i sum_j p_ij log2 p_ij`` over ``p_ij > 0``; PyRadiomics adds machine epsilon inside
    the logarithm, a negligible difference.
    """
    p = m.p[m.s > 0]
    return float(-np.sum(p * np.log2(p)))


@_ngldm_feature("ngl_dc_energy", code="CAS9", name="DependenceCountEnergy", pyradiomics=False)
def dependence_count_energy(m: Ngldm) -> float:
    """Dependence count energy: how concentrated voxels are on few (grey level, dependence) pairs.

    ``sum_i sum_j p_ij^2`` (Sun and Wee's second moment, normalised by ``N_s^2`` as IBSI does).
    """
    return float(np.sum(m.p**2))


def _offsets(in_plane: bool) -> list[tuple[int, int, int]]:
    z_range = (0,) if in_plane else (-1, 0, 1)
    return [
        (dz, dy, dx)
        for dz in z_range
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dz, dy, dx) != (0, 0, 0)
    ]


def _dependence(
    levels: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_], alpha: float, in_plane: bool
) -> npt.NDArray[np.int64]:
    """``j`` of every voxel: 1 + dependent neighbours in the mask."""
    padded_levels = np.pad(levels, 1)
    padded_mask = np.pad(mask, 1)
    nz, ny, nx = levels.shape
    count = np.ones(levels.shape, dtype=np.int64)
    for dz, dy, dx in _offsets(in_plane):
        window = (
            slice(1 + dz, 1 + dz + nz),
            slice(1 + dy, 1 + dy + ny),
            slice(1 + dx, 1 + dx + nx),
        )
        neighbour_in = padded_mask[window]
        close = np.abs(padded_levels[window] - levels) <= alpha
        count += neighbour_in & close
    return count


def ngldm_matrices(ctx: RoiContext, *, in_plane: bool, alpha: float = 0) -> tuple[Ngldm, ...]:
    """The NGLDM of the region: one per slice (in-plane neighbours), or one for the volume.

    Parameters
    ----------
    ctx : the prepared region; its ``levels`` inside ``int_mask`` are used.
    in_plane : True for per-slice matrices (8 neighbours, for ``2D`` and ``2_5D``), False for
        one 3D matrix (26 neighbours).
    alpha : coarseness parameter; neighbours whose level differs by at most alpha are dependent.

    Returns
    -------
    One :class:`Ngldm` per slice holding part of the mask (in-plane), else a single one.
    """
    box = ndimage.find_objects(ctx.int_mask.astype(np.int8))[0]
    mask = ctx.int_mask[box]
    levels = np.where(mask, ctx.levels[box], 0).astype(np.int64)
    dependence = _dependence(levels, mask, alpha, in_plane)
    n_g = int(ctx.n_levels)
    n_n = 9 if in_plane else 27
    z, _, _ = np.nonzero(mask)
    cell = (levels[mask] - 1) * n_n + (dependence[mask] - 1)
    if not in_plane:
        s = np.bincount(cell, minlength=n_g * n_n).reshape(n_g, n_n).astype(np.float64)
        return (Ngldm(s=s, n_voxels=int(mask.sum())),)
    n_slices = mask.shape[0]
    size = n_g * n_n
    counts = np.bincount(z * size + cell, minlength=n_slices * size).astype(np.float64)
    per_slice = counts.reshape(n_slices, n_g, n_n)
    voxels = mask.reshape(n_slices, -1).sum(axis=1)
    return tuple(
        Ngldm(s=per_slice[k], n_voxels=int(voxels[k])) for k in range(n_slices) if voxels[k] > 0
    )


def _alpha(options: dict[str, Any]) -> float:
    alpha = options.get("alpha", options.get("gldm_a", 0))
    if "alpha" in options and "gldm_a" in options and options["alpha"] != options["gldm_a"]:
        raise ConfigError(
            f"NGLDM alpha is set twice with different values (alpha={options['alpha']!r}, "
            f"gldm_a={options['gldm_a']!r}); keep one of them."
        )
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = -1.0
    if not value >= 0:
        raise ConfigError(
            f"NGLDM alpha (gldm_a) must be a number of at least 0, got {alpha!r}; "
            "IBSI and PyRadiomics use 0."
        )
    return value


def _check_distances(options: dict[str, Any]) -> None:
    distances = options.get("distances")
    if distances is not None and [int(d) for d in distances] != [1]:
        raise ConfigError(
            f"NGLDM features use neighbours at Chebyshev distance 1 only (IBSI default); got "
            f"distances={list(distances)!r}. Set distances to [1] or remove the setting."
        )


def _features(m: Ngldm) -> dict[str, float]:
    return {tag: float(function(m)) for tag, function in _FEATURES.items()}


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Every NGLDM feature of the region.

    Parameters
    ----------
    ctx : the prepared region.
    aggregation : ``2D``, ``2_5D`` or ``3D`` (IBSI aggregation); None means ``3D``.
    **options : ``alpha`` (or PyRadiomics' ``gldm_a``), the coarseness parameter, default 0;
        ``distances`` may only be ``[1]``. Other options belong to other families and are
        ignored.

    Returns
    -------
    IBSI tag (without aggregation suffix) -> value. Every voxel forms a neighbourhood, so the
    features are defined for any non-empty region (a single voxel gives ``s_11 = 1``).
    """
    chosen = DEFAULT_AGGREGATION if aggregation is None else aggregation
    if chosen not in AGGREGATIONS:
        raise ConfigError(
            f"Unknown NGLDM aggregation {aggregation!r}; use one of: {', '.join(AGGREGATIONS)}."
        )
    alpha = _alpha(options)
    _check_distances(options)
    if chosen == "3D":
        return _features(ngldm_matrices(ctx, in_plane=False, alpha=alpha)[0])
    slices = ngldm_matrices(ctx, in_plane=True, alpha=alpha)
    if chosen == "2_5D":
        merged = Ngldm(
            s=np.sum([m.s for m in slices], axis=0), n_voxels=sum(m.n_voxels for m in slices)
        )
        return _features(merged)
    per_slice = [_features(m) for m in slices]
    return {tag: float(np.mean([f[tag] for f in per_slice], dtype=np.float64)) for tag in _FEATURES}
