"""Neighbourhood grey tone difference features (IBSI 3.10, family code ``IPET``).

The neighbourhood grey tone difference matrix (NGTDM, Amadasun and King 1989) holds, for every
grey level ``i``, the number ``n_i`` of voxels of that level that have at least one neighbour in
the intensity mask, and ``s_i``, the sum over those voxels of ``|i - mean level of the
neighbours|``. Neighbours are the voxels within Chebyshev distance 1 that lie in the intensity
mask: 26 in 3D, the 8 in-plane ones in 2D. As IBSI does, a voxel needs only one neighbour in the
mask (not a complete neighbourhood) to count.

With ``N_vc = sum n_i`` the number of voxels with a neighbour, ``p_i = n_i / N_vc`` and ``N_gp``
the number of levels with ``p_i > 0``, every feature is a small function of ``(n, s)`` below.

Aggregation (IBSI): ``2D`` computes one matrix per slice (in-plane neighbours) and averages the
features over the slices (``8QNN``); ``2_5D`` sums the slice matrices into one (``62GR``);
``3D`` builds one matrix from the 26-neighbourhood (``KOBO``, PyRadiomics' behaviour).
PyRadiomics' ``ngtdm`` class follows the IBSI definitions; with ``force2D`` it corresponds to
``2_5D`` here.
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

__all__ = ["AGGREGATIONS", "DEFAULT_AGGREGATION", "Ngtdm", "compute", "ngtdm_matrices"]

AGGREGATIONS: tuple[str, ...] = ("2D", "2_5D", "3D")
DEFAULT_AGGREGATION: str | None = "3D"

COARSENESS_MAX = 1e6
"""IBSI's cap on coarseness when ``sum p_i s_i`` is 0 (a region without grey tone differences)."""

F = TypeVar("F", bound=Callable[..., Any])
_FEATURES: dict[str, Callable[[Ngtdm], float]] = {}


@dataclass(frozen=True)
class Ngtdm:
    """One neighbourhood grey tone difference matrix.

    Attributes
    ----------
    n : float64 ``(Ng + 1,)``, ``n[i]`` voxels of level ``i`` with at least one neighbour in the
        mask (index 0 is unused and holds 0).
    s : float64 ``(Ng + 1,)``, ``s[i]`` the summed absolute differences ``|i - neighbour mean|``.
    """

    n: npt.NDArray[np.float64]
    s: npt.NDArray[np.float64]

    @property
    def n_vc(self) -> float:
        """``N_vc``: voxels with at least one neighbour in the mask."""
        return float(self.n.sum())

    @property
    def present(self) -> npt.NDArray[np.bool_]:
        """Levels with ``p_i > 0``."""
        return self.n > 0

    @property
    def levels(self) -> npt.NDArray[np.float64]:
        """The grey levels ``i`` with ``p_i > 0``."""
        return np.flatnonzero(self.present).astype(np.float64)

    @property
    def p(self) -> npt.NDArray[np.float64]:
        """``p_i`` of the levels with ``p_i > 0``."""
        return self.n[self.present] / self.n_vc

    @property
    def s_present(self) -> npt.NDArray[np.float64]:
        """``s_i`` of the levels with ``p_i > 0``."""
        return self.s[self.present]


def _ngtdm_feature(tag: str, *, code: str, name: str) -> Callable[[F], F]:
    register = feature("ngtdm", tag, code=code, name=name, pyradiomics=True)

    def wrap(function: F) -> F:
        _FEATURES[tag] = function
        return register(function)

    return wrap


@_ngtdm_feature("ngt_coarseness", code="QCDE", name="Coarseness")
def coarseness(m: Ngtdm) -> float:
    """Coarseness: how slowly grey levels change between neighbours; high in smooth, even regions.

    ``1 / sum_i p_i s_i``. When the sum is 0 (no grey tone differences at all, e.g. a uniform
    region) IBSI sets coarseness to 10^6, as PyRadiomics does.
    """
    denominator = float(np.sum(m.p * m.s_present))
    return COARSENESS_MAX if denominator == 0 else 1.0 / denominator


@_ngtdm_feature("ngt_contrast", code="65HE", name="Contrast")
def contrast(m: Ngtdm) -> float:
    """Contrast: spread of grey levels combined with how sharply they change between neighbours.

    ``[1/(N_gp (N_gp - 1)) sum_i1 sum_i2 p_i1 p_i2 (i1 - i2)^2] * [sum_i s_i / N_vc]``;
    0 when only one grey level is present (``N_gp = 1``).
    """
    n_gp = m.levels.size
    if n_gp <= 1:
        return 0.0
    i, p = m.levels, m.p
    spread = float(np.sum(np.outer(p, p) * (i[:, None] - i[None, :]) ** 2))
    return spread / (n_gp * (n_gp - 1)) * float(m.s.sum()) / m.n_vc


@_ngtdm_feature("ngt_busyness", code="NQ30", name="Busyness")
def busyness(m: Ngtdm) -> float:
    """Busyness: rapid grey level changes from voxel to neighbours; high in busy, mottled regions.

    ``sum_i p_i s_i / sum_i1 sum_i2 |i1 p_i1 - i2 p_i2|`` over levels with ``p > 0`` (Hatt 2016's
    correction of the original definition); 0 when ``N_gp = 1``. When the denominator is 0 with
    more than one level present the feature is undefined here (nan); PyRadiomics returns 0.
    """
    if m.levels.size <= 1:
        return 0.0
    ip = m.levels * m.p
    denominator = float(np.sum(np.abs(ip[:, None] - ip[None, :])))
    if denominator == 0:
        return float("nan")
    return float(np.sum(m.p * m.s_present)) / denominator


@_ngtdm_feature("ngt_complexity", code="HDEZ", name="Complexity")
def complexity(m: Ngtdm) -> float:
    """Complexity: many abrupt, large grey level changes; high in non-uniform, detailed regions.

    ``1/N_vc sum_i1 sum_i2 |i1 - i2| (p_i1 s_i1 + p_i2 s_i2) / (p_i1 + p_i2)`` over levels with
    ``p > 0``.
    """
    i, p, s = m.levels, m.p, m.s_present
    ps = p * s
    terms = (
        np.abs(i[:, None] - i[None, :]) * (ps[:, None] + ps[None, :]) / (p[:, None] + p[None, :])
    )
    return float(terms.sum()) / m.n_vc


@_ngtdm_feature("ngt_strength", code="1X9X", name="Strength")
def strength(m: Ngtdm) -> float:
    """Strength: large, clearly visible patterns of distinct grey levels; high in bold textures.

    ``sum_i1 sum_i2 (p_i1 + p_i2)(i1 - i2)^2 / sum_i s_i`` over levels with ``p > 0``; 0 when
    ``sum_i s_i = 0``.
    """
    total = float(m.s.sum())
    if total == 0:
        return 0.0
    i, p = m.levels, m.p
    return float(np.sum((p[:, None] + p[None, :]) * (i[:, None] - i[None, :]) ** 2)) / total


def _kernel(in_plane: bool) -> npt.NDArray[np.float64]:
    kernel = np.ones((1, 3, 3) if in_plane else (3, 3, 3), dtype=np.float64)
    kernel[kernel.shape[0] // 2, 1, 1] = 0.0
    return kernel


def ngtdm_matrices(ctx: RoiContext, *, in_plane: bool) -> tuple[Ngtdm, ...]:
    """The NGTDM of the region: one per slice (in-plane neighbours), or one for the volume.

    Parameters
    ----------
    ctx : the prepared region; its ``levels`` inside ``int_mask`` are used.
    in_plane : True for per-slice matrices (8 neighbours, for ``2D`` and ``2_5D``), False for
        one 3D matrix (26 neighbours).

    Returns
    -------
    One :class:`Ngtdm` per slice holding part of the mask (in-plane), else a single one.
    """
    mask = ctx.int_mask
    box = ndimage.find_objects(mask.astype(np.int8))[0]
    mask = mask[box]
    levels = np.where(mask, ctx.levels[box], 0)
    kernel = _kernel(in_plane)
    # Neighbour sums and counts by convolution; outside the mask both are 0 (constant padding).
    neighbour_sum = ndimage.convolve(levels.astype(np.float64), kernel, mode="constant", cval=0.0)
    neighbour_count = ndimage.convolve(mask.astype(np.float64), kernel, mode="constant", cval=0.0)
    valid = mask & (neighbour_count > 0)
    level = levels[valid]
    difference = np.abs(level - neighbour_sum[valid] / neighbour_count[valid])
    width = int(ctx.n_levels) + 1
    if not in_plane:
        return (
            Ngtdm(
                n=np.bincount(level, minlength=width).astype(np.float64),
                s=np.bincount(level, weights=difference, minlength=width).astype(np.float64),
            ),
        )
    n_slices = mask.shape[0]
    key = np.nonzero(valid)[0] * width + level
    n = np.bincount(key, minlength=n_slices * width).reshape(n_slices, width).astype(np.float64)
    s = np.bincount(key, weights=difference, minlength=n_slices * width).astype(np.float64)
    s = s.reshape(n_slices, width)
    occupied = mask.reshape(n_slices, -1).any(axis=1)
    return tuple(Ngtdm(n=n[z], s=s[z]) for z in range(n_slices) if occupied[z])


def _features(m: Ngtdm) -> dict[str, float]:
    if m.n_vc == 0:
        # No voxel has a neighbour in the mask (e.g. a one-voxel region): p_i is undefined.
        return {tag: float("nan") for tag in _FEATURES}
    return {tag: float(function(m)) for tag, function in _FEATURES.items()}


def _check_options(options: dict[str, Any]) -> None:
    distances = options.get("distances")
    if distances is not None and [int(d) for d in distances] != [1]:
        raise ConfigError(
            f"NGTDM features use neighbours at Chebyshev distance 1 only (IBSI default); got "
            f"distances={list(distances)!r}. Set distances to [1] or remove the setting."
        )


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Every NGTDM feature of the region.

    Parameters
    ----------
    ctx : the prepared region.
    aggregation : ``2D``, ``2_5D`` or ``3D`` (IBSI aggregation); None means ``3D``.
    **options : ``distances`` (PyRadiomics' setting) may only be ``[1]``; other options belong
        to other families and are ignored.

    Returns
    -------
    IBSI tag (without aggregation suffix) -> value; nan where a feature is undefined. In ``2D``
    slices whose voxels have no in-plane neighbour in the mask are left out of the average.
    """
    chosen = DEFAULT_AGGREGATION if aggregation is None else aggregation
    if chosen not in AGGREGATIONS:
        raise ConfigError(
            f"Unknown NGTDM aggregation {aggregation!r}; use one of: {', '.join(AGGREGATIONS)}."
        )
    _check_options(options)
    if chosen == "3D":
        return _features(ngtdm_matrices(ctx, in_plane=False)[0])
    slices = ngtdm_matrices(ctx, in_plane=True)
    if chosen == "2_5D":
        merged = Ngtdm(
            n=np.sum([m.n for m in slices], axis=0), s=np.sum([m.s for m in slices], axis=0)
        )
        return _features(merged)
    per_slice = [_features(m) for m in slices if m.n_vc > 0]
    out: dict[str, float] = {}
    for tag in _FEATURES:
        values = np.array([f[tag] for f in per_slice], dtype=np.float64)
        values = values[np.isfinite(values)]
        out[tag] = float(values.mean()) if values.size else float("nan")
    return out
