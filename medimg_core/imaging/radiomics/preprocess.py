"""From an image and its segmentation to the prepared region the features read (IBSI chapter 2).

The steps, in IBSI's order: the region is taken from the mask's ``label``; the image is cropped
around it (with room for the local intensity sphere); image and mask are resampled to the
requested spacing on a grid centred on the original one; intensities of integer images (CT
Hounsfield units) are rounded; the re-segmentation range trims the intensity mask (the
morphological mask keeps its shape); intensities are discretised.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from medimg_core.errors import ImageError
from medimg_core.imaging.radiomics.roi import RoiContext
from medimg_core.imaging.radiomics.settings import RadiomicsSettings

__all__ = ["SPHERE_RADIUS_MM", "grid", "prepare", "resample"]

SPHERE_RADIUS_MM = (3000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
"""Radius of the 1 cm³ sphere local intensity peaks average over (about 6.2 mm)."""

_ORDERS = {"nearest": 0, "linear": 1, "bspline": 3}
# Voxels of the original grid kept beyond what the new grid samples: the cubic spline's support
# and its prefilter, whose influence decays by 0.27 per voxel, so cropping changes nothing that
# survives rounding.
_SOURCE_MARGIN = {0: 1, 1: 1, 3: 14}


def grid(n: int, spacing: float, new_spacing: float) -> tuple[int, float, float]:
    """The IBSI "align grid centres" interpolation grid along one axis.

    Parameters
    ----------
    n : number of voxels along the axis.
    spacing, new_spacing : original and wanted voxel size in mm.

    Returns
    -------
    (n_new, origin, step) : ``n_new = ceil(n * spacing / new_spacing)`` voxels whose centres lie
        at ``origin + i * step`` in the original grid's index coordinates (IBSI 2.4, 026Q and QCY4).
    """
    # Rounded first so that 10 * 0.3 / 0.1 gives 30, not 31.
    n_new = max(1, math.ceil(round(n * spacing / new_spacing, 9)))
    step = new_spacing / spacing
    origin = 0.5 * (n - 1 - step * (n_new - 1))
    return n_new, origin, step


def resample(
    array: np.ndarray,
    spacing: tuple[float, float, float],
    new_spacing: tuple[float, float, float],
    *,
    order: int,
) -> np.ndarray:
    """The whole ``(z, y, x)`` array interpolated onto the IBSI grid of ``new_spacing``.

    ``order`` is 0 (nearest neighbour), 1 (linear) or 3 (cubic B-spline, prefiltered).
    Points beyond the original grid take the nearest boundary value, as IBSI recommends.
    """
    values = np.asarray(array, dtype=np.float64)
    axes = [grid(n, s, t) for n, s, t in zip(values.shape, spacing, new_spacing, strict=True)]
    return _interpolate(
        values,
        starts=[origin for _, origin, _ in axes],
        steps=[step for _, _, step in axes],
        shape=tuple(n for n, _, _ in axes),
        order=order,
    )


def _interpolate(
    values: np.ndarray,
    *,
    starts: list[float],
    steps: list[float],
    shape: tuple[int, ...],
    order: int,
) -> np.ndarray:
    # A diagonal affine transform samples the same points as map_coordinates on the full
    # coordinate grid, without holding three float arrays the size of the output.
    out: np.ndarray = ndimage.affine_transform(
        values,
        np.asarray(steps, dtype=np.float64),
        offset=np.asarray(starts, dtype=np.float64),
        output_shape=shape,
        order=order,
        mode="nearest",
        prefilter=order > 1,
    )
    return out


def _check_inputs(
    image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[float, float, float]:
    if image.ndim != 3 or mask.shape != image.shape:
        raise ImageError(
            f"The image {image.shape} and the mask {mask.shape} must be 3-D arrays (z, y, x) of "
            "the same shape; check that the segmentation belongs to this image."
        )
    if image.dtype.kind not in "biuf":
        raise ImageError(
            f"The image holds {image.dtype} values, not intensities; load a grey-level volume."
        )
    if mask.dtype.kind not in "biuf":
        raise ImageError(f"The mask holds {mask.dtype} values, not labels; load a label volume.")
    try:
        z, y, x = (float(s) for s in spacing)
    except (TypeError, ValueError) as exc:
        raise ImageError(
            f"Voxel spacing {spacing!r} is not three numbers (z, y, x) in mm; check the header."
        ) from exc
    if not all(math.isfinite(s) and s > 0 for s in (z, y, x)):
        raise ImageError(
            f"Voxel spacing {(z, y, x)} must be three positive sizes (z, y, x) in mm; check the "
            "image header."
        )
    return z, y, x


def _target_spacing(
    spacing: tuple[float, float, float], settings: RadiomicsSettings
) -> tuple[float, float, float]:
    wanted = settings.spacing_zyx
    if wanted is None:
        return spacing
    z, y, x = (new if new > 0 else old for new, old in zip(wanted, spacing, strict=True))
    return z, y, x


def _margin(new_spacing: float, settings: RadiomicsSettings) -> int:
    # Local intensity peaks average over a sphere around every region voxel.
    return max(settings.pad_distance, math.ceil(SPHERE_RADIUS_MM / new_spacing) + 1)


def prepare(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: RadiomicsSettings,
) -> RoiContext:
    """The prepared region of one image and its segmentation.

    Parameters
    ----------
    image : ``(z, y, x)`` intensities (CT in Hounsfield units, MR, PET ...).
    mask : ``(z, y, x)`` segmentation; the region is where it equals ``settings.label``.
    spacing : voxel size ``(z, y, x)`` in mm.
    settings : resampling, re-segmentation and discretisation settings.

    Returns
    -------
    RoiContext
        Cropped around the region (plus the local intensity sphere's radius and at least
        ``padDistance`` voxels where the image allows), on the resampled grid.

    Raises
    ------
    ImageError
        Shapes or spacing do not fit, the label is absent, the region is empty after
        resampling or re-segmentation, or it is smaller than ``minimumROIDimensions`` /
        ``minimumROISize``.
    """
    values = np.asarray(image)
    labels = np.asarray(mask)
    old = _check_inputs(values, labels, spacing)
    region = labels == settings.label
    if not region.any():
        present = np.unique(labels)
        shown = ", ".join(f"{v:g}" for v in present[:10]) + (" ..." if present.size > 10 else "")
        raise ImageError(
            f"The mask holds no voxel with label {settings.label} (labels present: {shown}); "
            "set 'label' in the radiomics settings to the region's value."
        )
    new = _target_spacing(old, settings)
    nonzero = np.nonzero(region)
    low = [int(i.min()) for i in nonzero]
    high = [int(i.max()) for i in nonzero]
    order = _ORDERS[settings.interpolator]
    source_margin = _SOURCE_MARGIN[order]

    source: list[slice] = []
    starts: list[float] = []
    steps: list[float] = []
    shape: list[int] = []
    for axis, n in enumerate(values.shape):
        n_new, origin, step = grid(n, old[axis], new[axis])
        margin = _margin(new[axis], settings)
        # New voxels whose centre lies within the region's voxels, plus the margin.
        first = math.floor((low[axis] - 0.5 - origin) / step) - margin
        last = math.ceil((high[axis] + 0.5 - origin) / step) + margin
        first, last = max(first, 0), min(last, n_new - 1)
        lo = max(math.floor(origin + first * step) - source_margin, 0)
        hi = min(math.ceil(origin + last * step) + source_margin, n - 1)
        source.append(slice(lo, hi + 1))
        starts.append(origin + first * step - lo)
        steps.append(step)
        shape.append(last - first + 1)

    if new == old:
        # No interpolation: the crop is the new grid itself.
        source = [
            slice(max(lo - _margin(s, settings), 0), min(hi + _margin(s, settings), n - 1) + 1)
            for lo, hi, s, n in zip(low, high, old, values.shape, strict=True)
        ]
    crop = values[tuple(source)].astype(np.float64)
    bad = int(np.count_nonzero(~np.isfinite(crop)))
    if bad:
        raise ImageError(
            f"The image holds {bad} non-finite intensities (NaN or infinite) in or around the "
            "region; fill them (e.g. with the background value) before computing radiomics."
        )
    integer_valued = values.dtype.kind in "biu" or bool(np.all(crop == np.round(crop)))
    morph_crop = region[tuple(source)]
    if new == old:
        resampled, morph = crop, morph_crop
    else:
        resampled = _interpolate(crop, starts=starts, steps=steps, shape=tuple(shape), order=order)
        if integer_valued:
            resampled = np.rint(resampled)
        # IBSI: the mask is interpolated linearly and kept where the fraction is at least 0.5.
        fraction = _interpolate(
            morph_crop.astype(np.float64), starts=starts, steps=steps, shape=tuple(shape), order=1
        )
        morph = fraction >= 0.5
    if not morph.any():
        raise ImageError(
            f"The region ({int(region.sum())} voxels of {old[::-1]} mm, x y z) vanishes when "
            f"resampled to {new[::-1]} mm: it is smaller than about half a new voxel. Choose a "
            "finer resampledPixelSpacing, or check the segmentation."
        )
    _check_size(morph, settings)
    reseg = settings.resegment_range
    return RoiContext.from_arrays(
        resampled,
        morph,
        new,
        bin_width=None if settings.bin_count is not None else settings.bin_width,
        bin_count=settings.bin_count,
        resegment=None if reseg is None else (reseg[0], reseg[1] if len(reseg) > 1 else None),
    )


def _check_size(morph: np.ndarray, settings: RadiomicsSettings) -> None:
    extent = [int(np.ptp(i)) + 1 for i in np.nonzero(morph)]
    dimensions = sum(e > 1 for e in extent)
    if dimensions < settings.minimum_roi_dimensions:
        raise ImageError(
            f"The region extends over {dimensions} axes (size z, y, x = {tuple(extent)} voxels); "
            f"minimumROIDimensions asks for {settings.minimum_roi_dimensions}. Check the "
            "segmentation, or lower minimumROIDimensions."
        )
    size = int(np.count_nonzero(morph))
    if settings.minimum_roi_size is not None and size < settings.minimum_roi_size:
        raise ImageError(
            f"The region holds {size} voxels; minimumROISize asks for at least "
            f"{settings.minimum_roi_size}. Check the segmentation, or lower minimumROISize."
        )
