"""Local intensity features (IBSI 3.2): the brightest 1 cm³ spot in and around the region.

Every voxel of the intensity mask gets the mean intensity of a sphere of 1 cm³ centred on it
(radius (3 / 4π)^(1/3) cm ≈ 6.2035 mm, voxels whose centres lie within the radius, in world
units through ``ctx.spacing``). The sphere reads the whole image, voxels outside the region
included, as IBSI defines. Where the sphere reaches past the image edge it covers fewer voxels
and the mean is taken over those that exist (IBSI does not define an edge rule; this is what
the direct, per-voxel reading of the definition gives).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import fftconvolve

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics.catalogue import feature
from medimg_core.imaging.radiomics.roi import RoiContext

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_AGGREGATION",
    "PEAK_RADIUS_MM",
    "Peaks",
    "compute",
    "prepare",
    "sphere_kernel",
]

AGGREGATIONS: tuple[str, ...] = ()
DEFAULT_AGGREGATION: str | None = None

PEAK_RADIUS_MM = 10.0 * (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
"""Radius in mm of a sphere of 1 cm³."""

_FAMILY = "local_intensity"


@dataclass(frozen=True, eq=False)
class Peaks:
    """Per-voxel sphere means of a region.

    Attributes
    ----------
    intensities : intensity of each voxel of the intensity mask (1-D).
    sphere_means : mean intensity of the 1 cm³ sphere centred on each of those voxels.
    """

    intensities: np.ndarray
    sphere_means: np.ndarray


def sphere_kernel(
    spacing: tuple[float, float, float], radius: float = PEAK_RADIUS_MM
) -> np.ndarray:
    """A ``(z, y, x)`` array of 1.0 where a voxel's centre lies within ``radius`` mm of the
    centre voxel's, else 0.0; odd-sized, symmetric."""
    half = [math.floor(radius / s + 1e-9) for s in spacing]
    z, y, x = np.ogrid[-half[0] : half[0] + 1, -half[1] : half[1] + 1, -half[2] : half[2] + 1]
    distance2 = (z * spacing[0]) ** 2 + (y * spacing[1]) ** 2 + (x * spacing[2]) ** 2
    kernel: np.ndarray = (distance2 <= radius**2 * (1 + 1e-12)).astype(np.float64)
    return kernel


def prepare(ctx: RoiContext) -> Peaks:
    """Sphere means at every voxel of the intensity mask.

    The image is cut to the intensity mask's bounding box widened by the sphere's reach, then
    summed over the sphere by FFT convolution, and divided by the number of image voxels
    (finite intensities) the sphere covers there.
    """
    for axis, s in enumerate(ctx.spacing):
        if not (math.isfinite(s) and s > 0):
            raise ConfigError(
                f"Voxel spacing must be positive numbers in mm, got {ctx.spacing} (axis {axis}); "
                "check the image header."
            )
    kernel = sphere_kernel(ctx.spacing)
    reach = np.array(kernel.shape) // 2
    index = np.argwhere(ctx.int_mask)
    low = np.maximum(index.min(axis=0) - reach, 0)
    high = np.minimum(index.max(axis=0) + 1 + reach, ctx.image.shape)
    window = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    image = ctx.image[window]
    present = np.isfinite(image)
    sums = fftconvolve(np.where(present, image, 0.0), kernel, mode="same")
    counts = np.rint(fftconvolve(present.astype(np.float64), kernel, mode="same"))
    inside = ctx.int_mask[window]
    return Peaks(intensities=image[inside], sphere_means=sums[inside] / counts[inside])


_FEATURES: list[tuple[str, Callable[[Peaks], float]]] = []


def _local(
    tag: str, *, code: str, name: str
) -> Callable[[Callable[[Peaks], float]], Callable[[Peaks], float]]:
    """Register a local intensity feature in the catalogue and in this family's list."""
    register = feature(_FAMILY, tag, code=code, name=name, pyradiomics=False)

    def add(function: Callable[[Peaks], float]) -> Callable[[Peaks], float]:
        _FEATURES.append((tag, function))
        return register(function)

    return add


@_local("loc_peak_loc", code="VJGA", name="PeakLocal")
def local_peak(p: Peaks) -> float:
    """Local intensity peak: mean intensity of the 1 cm³ sphere around the brightest voxel.

    The sphere mean centred on the voxel of maximum intensity in the intensity mask; when
    several voxels share the maximum, the highest of their sphere means.
    """
    brightest = p.intensities == p.intensities.max()
    return float(p.sphere_means[brightest].max())


@_local("loc_peak_glob", code="0F91", name="PeakGlobal")
def global_peak(p: Peaks) -> float:
    """Global intensity peak: the highest mean intensity of any 1 cm³ sphere centred in the region.

    The maximum over all voxels of the intensity mask of the sphere mean centred on them.
    """
    return float(p.sphere_means.max())


def compute(ctx: RoiContext, *, aggregation: str | None = None, **options: Any) -> dict[str, float]:
    """Both local intensity features of a region.

    Parameters
    ----------
    ctx : the prepared region; ``ctx.image`` should extend beyond the region by at least the
        sphere's radius for the peaks to see the voxels around it.
    aggregation : must be None: IBSI defines local intensity in 3D only.
    **options : none used by this family; options of other families are ignored.

    Returns
    -------
    dict : IBSI tag -> value.
    """
    if aggregation is not None:
        raise ConfigError(
            f"Local intensity features are computed in 3D only, got aggregation={aggregation!r}; "
            "leave the aggregation unset for this family."
        )
    peaks = prepare(ctx)
    return {tag: function(peaks) for tag, function in _FEATURES}
