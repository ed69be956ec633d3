"""The prepared region every feature family reads: intensities, masks and grey levels.

Arrays are indexed ``(z, y, x)``: slices first, as NumPy reads a volume. Spacing follows the
same order, in millimetres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medimg_core.errors import ConfigError, ImageError

__all__ = ["RoiContext", "discretise"]

DISCRETISATIONS = ("fixed_bin_width", "fixed_bin_count")


def discretise(
    values: np.ndarray,
    *,
    method: str,
    bin_width: float | None = None,
    bin_count: int | None = None,
    lower_bound: float | None = None,
) -> tuple[np.ndarray, int]:
    """Grey levels 1..Ng of ``values`` (IBSI 3.4).

    Parameters
    ----------
    values : intensities inside the intensity mask.
    method : ``fixed_bin_width`` (IBSI "fixed bin size", PyRadiomics ``binWidth``) or
        ``fixed_bin_count`` (IBSI "fixed bin number", PyRadiomics ``binCount``).
    bin_width, bin_count : the width in intensity units, or the number of bins.
    lower_bound : the first bin's lower edge for a fixed bin width: the re-segmentation range's
        lower bound when there is one (IBSI), else the lowest intensity in the region.

    Returns
    -------
    (levels, n_levels) : integer levels of the same shape, and the highest level Ng.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ImageError("The region holds no voxel to discretise; check the mask and range.")
    lo, hi = float(x.min()), float(x.max())
    if method == "fixed_bin_width":
        if bin_width is None or not bin_width > 0:
            raise ConfigError(f"binWidth must be a positive number, got {bin_width!r}.")
        start = lo if lower_bound is None else float(lower_bound)
        levels = np.floor((x - start) / bin_width).astype(np.int64) + 1
        levels = np.maximum(levels, 1)
    elif method == "fixed_bin_count":
        if bin_count is None or int(bin_count) < 1:
            raise ConfigError(f"binCount must be a whole number of at least 1, got {bin_count!r}.")
        n = int(bin_count)
        if hi == lo:
            levels = np.ones(x.shape, dtype=np.int64)
        else:
            levels = np.floor(n * (x - lo) / (hi - lo)).astype(np.int64) + 1
            levels = np.minimum(levels, n)
        return levels, n
    else:
        raise ConfigError(
            f"Unknown discretisation {method!r}; use one of: {', '.join(DISCRETISATIONS)}."
        )
    return levels, int(levels.max())


@dataclass(frozen=True, eq=False)
class RoiContext:
    """A region prepared for feature computation (after resampling and re-segmentation).

    Attributes
    ----------
    image : float64 ``(z, y, x)`` intensities, not discretised. It extends beyond the region
        (local intensity peaks look at voxels around it).
    morph_mask : bool, the morphological mask (the segmentation, before re-segmentation).
    int_mask : bool, the intensity mask (after the re-segmentation range).
    levels : int64, grey levels 1..``n_levels`` inside ``int_mask``, 0 outside.
    n_levels : Ng, the highest grey level the discretisation can give.
    spacing : voxel size ``(z, y, x)`` in mm.
    bin_width : the fixed bin width used, or None for a fixed bin count.
    lower_bound : the first bin's lower edge for a fixed bin width.
    """

    image: np.ndarray
    morph_mask: np.ndarray
    int_mask: np.ndarray
    levels: np.ndarray
    n_levels: int
    spacing: tuple[float, float, float]
    bin_width: float | None = None
    lower_bound: float | None = None

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm³."""
        return float(math.prod(self.spacing))

    @property
    def values(self) -> np.ndarray:
        """Intensities inside the intensity mask (1-D)."""
        return self.image[self.int_mask]

    @classmethod
    def from_arrays(
        cls,
        image: np.ndarray,
        mask: np.ndarray,
        spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
        *,
        bin_width: float | None = 1.0,
        bin_count: int | None = None,
        resegment: tuple[float | None, float | None] | None = None,
    ) -> RoiContext:
        """A context from arrays already on the wanted grid (tests, the IBSI phantom).

        ``resegment`` is an intensity range ``(low, high)`` (either end None for open);
        voxels of the mask outside it leave the intensity mask but stay in the
        morphological mask. A fixed ``bin_width`` wins over ``bin_count``.
        """
        image = np.asarray(image, dtype=np.float64)
        morph = np.asarray(mask, dtype=bool)
        if image.ndim != 3 or image.shape != morph.shape:
            raise ImageError(
                f"Image {image.shape} and mask {morph.shape} must be 3-D arrays of one shape."
            )
        intensity = morph & np.isfinite(image)
        lower = None
        if resegment is not None:
            low, high = resegment
            if low is not None:
                intensity &= image >= low
                lower = float(low)
            if high is not None:
                intensity &= image <= high
        if not intensity.any():
            raise ImageError("The region holds no voxel inside the re-segmentation range.")
        levels = np.zeros(image.shape, dtype=np.int64)
        if bin_width is not None:
            inside, n = discretise(
                image[intensity], method="fixed_bin_width", bin_width=bin_width, lower_bound=lower
            )
        else:
            inside, n = discretise(image[intensity], method="fixed_bin_count", bin_count=bin_count)
        levels[intensity] = inside
        return cls(
            image=image,
            morph_mask=morph,
            int_mask=intensity,
            levels=levels,
            n_levels=n,
            spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
            bin_width=bin_width,
            lower_bound=lower if lower is not None else float(image[intensity].min()),
        )
