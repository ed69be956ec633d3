"""Named, documented, deterministic image features.

Every feature has a name that reads as radiology in a SHAP plot and a one-line plain-language
description (:data:`FEATURE_DESCRIPTIONS`, :func:`describe_feature`). Families:

* ``intensity_*`` first-order statistics of the pixel values in the region (whole image, or the
  mask): mean, spread, percentiles, skewness, kurtosis, histogram entropy and uniformity.
* ``glcm_*`` grey-level co-occurrence texture on the image quantised to ``grey_levels`` levels,
  symmetric, distances 1 and 2 pixels, averaged over four directions (scikit-image).
* ``lbp_uniform_<k>`` local binary patterns (uniform, 8 neighbours at radius 1): the share of
  pixels whose neighbourhood forms each pattern.
* ``gradient_*`` / ``edge_density`` Sobel gradient magnitude and the share of edge pixels.
* ``edges_<direction>_r<r>_c<c>`` which way the edges run (vertical, rising, horizontal,
  falling) in each quarter of the image: a coarse histogram of gradient orientations.
* ``grid_r<r>_c<c>`` mean brightness in each cell of a coarse grid (where in the image the
  brightness lies: lung fields, mediastinum, diaphragm).
* ``shape_*`` (only with masks) area, perimeter, eccentricity, solidity, extent and axes of the
  region, in pixels at the working size.

Images are resized (plain resize, never cropped) to one working size before extraction; the
size and every parameter are returned in :attr:`FeatureTable.settings` and saved in the model
card, so that prediction re-extracts features identically.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from medimg_core import compute
from medimg_core.encryption import is_encrypted, read_decrypted
from medimg_core.errors import ConfigError, ImageError, LimitError
from medimg_core.imaging import dicom
from medimg_core.imaging.pixels import (
    ImageProblem,
    array_to_image,
    load_image,
    parse_size,
    resize_image,
    resize_mask,
)
from medimg_core.imaging.sets import ImageSet
from medimg_core.tables.roles import Roles

__all__ = [
    "FEATURE_DESCRIPTIONS",
    "FEATURE_VERSION",
    "FeatureSettings",
    "FeatureTable",
    "compute_features",
    "describe_feature",
    "extract_features",
    "feature_names",
    "features_from_pixels",
    "read_feature_settings",
]

FEATURE_VERSION = "medimg-image-features/1"
"""Changes whenever a feature's definition changes; predict refuses a different version."""

Progress = Callable[[float, str], None]

_PERCENTILES = (10, 25, 50, 75, 90)
_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that determines the feature values; saved in the model card.

    Parameters
    ----------
    size : working size (height, width) every image is resized to; None = decided at
        extraction (the set's most common size, or the ``size`` argument).
    grey_levels : quantisation levels for the co-occurrence matrix.
    glcm_distances : pixel distances of the co-occurrence pairs.
    glcm_angles : number of directions, evenly spaced over 180 degrees, averaged.
    lbp_points, lbp_radius : local-binary-pattern neighbours and radius (uniform patterns).
    grid : the brightness grid has ``grid`` × ``grid`` cells (0 turns it off).
    edge_cells : edge directions are summarised in ``edge_cells`` × ``edge_cells`` cells
        (0 turns them off).
    edge_threshold : Sobel magnitude above which a pixel counts as an edge.
    version : :data:`FEATURE_VERSION` at extraction time.
    """

    size: tuple[int, int] | None = None
    grey_levels: int = 32
    glcm_distances: tuple[int, ...] = (1, 2)
    glcm_angles: int = 4
    lbp_points: int = 8
    lbp_radius: float = 1.0
    grid: int = 4
    edge_cells: int = 2
    edge_threshold: float = 0.1
    version: str = FEATURE_VERSION

    def __post_init__(self) -> None:
        if not 2 <= self.grey_levels <= 256:
            raise ConfigError(
                f"grey_levels must be between 2 and 256, got {self.grey_levels}; the default is 32."
            )
        if self.lbp_points < 4 or self.lbp_radius <= 0:
            raise ConfigError(
                f"LBP needs at least 4 points and a positive radius, got P={self.lbp_points}, "
                f"R={self.lbp_radius}; the default is P=8, R=1."
            )
        if self.grid < 0 or self.grid > 16:
            raise ConfigError(f"grid must be between 0 and 16, got {self.grid}; default 4.")
        if self.edge_cells < 0 or self.edge_cells > 8:
            raise ConfigError(
                f"edge_cells must be between 0 and 8, got {self.edge_cells}; default 2."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "size": list(self.size) if self.size else None,
            "grey_levels": self.grey_levels,
            "glcm_distances": list(self.glcm_distances),
            "glcm_angles": self.glcm_angles,
            "lbp": {"points": self.lbp_points, "radius": self.lbp_radius, "method": "uniform"},
            "grid": self.grid,
            "edge_cells": self.edge_cells,
            "edge_threshold": self.edge_threshold,
            "grayscale": "luminance 0.299 R + 0.587 G + 0.114 B",
            "resize": "plain bilinear resize to size, no cropping",
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSettings:
        """Settings from :meth:`to_dict` output (for example a model card's).

        Raises
        ------
        ConfigError
            When the settings come from a different feature version.
        """
        version = str(d.get("version", ""))
        if version != FEATURE_VERSION:
            raise ConfigError(
                f"These image features were extracted with '{version}', this medimg computes "
                f"'{FEATURE_VERSION}'; retrain the model with this version of medimg."
            )
        lbp = d.get("lbp") or {}
        size = d.get("size")
        return cls(
            size=(int(size[0]), int(size[1])) if size else None,
            grey_levels=int(d.get("grey_levels", 32)),
            glcm_distances=tuple(int(x) for x in d.get("glcm_distances", (1, 2))),
            glcm_angles=int(d.get("glcm_angles", 4)),
            lbp_points=int(lbp.get("points", 8)),
            lbp_radius=float(lbp.get("radius", 1.0)),
            grid=int(d.get("grid", 4)),
            edge_cells=int(d.get("edge_cells", 2)),
            edge_threshold=float(d.get("edge_threshold", 0.1)),
            version=version,
        )


def _lbp_description(k: int, points: int) -> str:
    if k == 0:
        return (
            f"share of pixels brighter than all {points} neighbours (local bright spots), "
            "local binary pattern"
        )
    if k == points:
        return (
            f"share of pixels no brighter than any of their {points} neighbours (flat areas and "
            "local dark spots), local binary pattern"
        )
    if k == points + 1:
        return (
            "share of pixels with an irregular neighbourhood (noise, fine complex texture), "
            "local binary pattern"
        )
    return (
        f"share of pixels on a uniform pattern with {k} of {points} neighbours at least as "
        "bright (edges and corners; middle values = straight edges), local binary pattern"
    )


_STATIC_DESCRIPTIONS: dict[str, str] = {
    "intensity_mean": "average brightness in the region (0 = black, 1 = white)",
    "intensity_std": "spread of brightness in the region (standard deviation)",
    "intensity_min": "darkest value in the region",
    "intensity_max": "brightest value in the region",
    "intensity_p10": "brightness below which the darkest 10% of the region lies",
    "intensity_p25": "brightness below which the darkest quarter of the region lies",
    "intensity_median": "middle brightness of the region (half darker, half brighter)",
    "intensity_p75": "brightness above which the brightest quarter of the region lies",
    "intensity_p90": "brightness above which the brightest 10% of the region lies",
    "intensity_iqr": "spread of the middle half of the brightness values (p75 − p25)",
    "intensity_skewness": "asymmetry of the brightness histogram (positive = a tail of bright pixels)",
    "intensity_kurtosis": "peakedness of the brightness histogram (excess kurtosis; high = outliers)",
    "intensity_entropy": "disorder of the brightness histogram in bits (high = many grey levels used)",
    "intensity_uniformity": "how concentrated the brightness histogram is (high = few grey levels)",
    "glcm_contrast": "texture contrast: how different neighbouring pixels are (squared grey-level difference)",
    "glcm_dissimilarity": "texture dissimilarity: average grey-level difference between neighbours",
    "glcm_homogeneity": "texture homogeneity: how often neighbours have similar grey levels",
    "glcm_energy": "texture energy: orderliness of the texture (high = repetitive, uniform)",
    "glcm_correlation": "texture correlation: how linearly neighbouring grey levels depend on each other",
    "glcm_ASM": "texture angular second moment (energy squared): uniformity of the texture",
    "gradient_mean": "average edge strength (Sobel gradient magnitude)",
    "gradient_std": "variation of edge strength across the region",
    "gradient_p90": "edge strength reached by the sharpest 10% of the region",
    "edge_density": "share of the region on a sharp edge (gradient above a fixed threshold)",
    "shape_area": "area of the region in pixels (at the working size)",
    "shape_perimeter": "length of the region's outline in pixels",
    "shape_eccentricity": "elongation of the region (0 = circle, towards 1 = line)",
    "shape_solidity": "how convex the region is (area / convex-hull area; low = lobulated)",
    "shape_extent": "share of the region's bounding box that the region fills",
    "shape_major_axis": "length of the region's long axis in pixels (fitted ellipse)",
    "shape_minor_axis": "length of the region's short axis in pixels (fitted ellipse)",
}


def _grid_description(r: int, c: int, n: int) -> str:
    return (
        f"average brightness in grid cell row {r} of {n} (1 = top), column {c} of {n} "
        "(1 = image left)"
    )


_EDGE_DIRECTIONS = {
    "vertical": "vertical edges (|)",
    "rising": "diagonal edges rising to the right (/)",
    "horizontal": "horizontal edges (—)",
    "falling": "diagonal edges falling to the right (\\)",
}
"""Edge direction -> description, in the order of the gradient angle bins 0°, 45°, 90°, 135°."""


def _part_name(r: int, c: int, n: int) -> str:
    if n == 2:
        return ("top" if r == 1 else "bottom") + "-" + ("left" if c == 1 else "right") + " quarter"
    return f"cell row {r} of {n} (1 = top), column {c} of {n} (1 = image left)"


def _edge_description(direction: str, r: int, c: int, n: int) -> str:
    return (
        f"share of edge strength in the {_part_name(r, c, n)} that comes from "
        f"{_EDGE_DIRECTIONS[direction]}"
    )


def describe_feature(name: str) -> str:
    """The plain-language description of a feature name (any settings).

    Raises
    ------
    ConfigError
        When ``name`` is not a medimg image feature.
    """
    if name in _STATIC_DESCRIPTIONS:
        return _STATIC_DESCRIPTIONS[name]
    if name.startswith("lbp_uniform_") and name[12:].isdigit():
        return _lbp_description(int(name[12:]), FeatureSettings().lbp_points)
    parts = name.split("_")
    cell = len(parts) >= 3 and parts[-2][1:].isdigit() and parts[-1][1:].isdigit()
    if cell and len(parts) == 3 and parts[0] == "grid":
        return _grid_description(int(parts[1][1:]), int(parts[2][1:]), FeatureSettings().grid)
    if cell and len(parts) == 4 and parts[0] == "edges" and parts[1] in _EDGE_DIRECTIONS:
        r, c = int(parts[2][1:]), int(parts[3][1:])
        return _edge_description(parts[1], r, c, FeatureSettings().edge_cells)
    raise ConfigError(f"'{name}' is not a medimg image feature; see FEATURE_DESCRIPTIONS.")


def feature_names(settings: FeatureSettings, *, with_mask: bool = False) -> tuple[str, ...]:
    """Feature names in column order for ``settings`` (shape features only ``with_mask``)."""
    names = [
        "intensity_mean",
        "intensity_std",
        "intensity_min",
        "intensity_max",
        "intensity_p10",
        "intensity_p25",
        "intensity_median",
        "intensity_p75",
        "intensity_p90",
        "intensity_iqr",
        "intensity_skewness",
        "intensity_kurtosis",
        "intensity_entropy",
        "intensity_uniformity",
    ]
    names += [f"glcm_{p}" for p in _GLCM_PROPS]
    names += [f"lbp_uniform_{k}" for k in range(settings.lbp_points + 2)]
    names += ["gradient_mean", "gradient_std", "gradient_p90", "edge_density"]
    cells = range(1, settings.edge_cells + 1)
    names += [f"edges_{d}_r{r}_c{c}" for r in cells for c in cells for d in _EDGE_DIRECTIONS]
    names += [
        f"grid_r{r}_c{c}" for r in range(1, settings.grid + 1) for c in range(1, settings.grid + 1)
    ]
    if with_mask:
        names += [n for n in _STATIC_DESCRIPTIONS if n.startswith("shape_")]
    return tuple(names)


def _descriptions(settings: FeatureSettings, with_mask: bool) -> dict[str, str]:
    out = {}
    for name in feature_names(settings, with_mask=with_mask):
        if name.startswith("lbp_uniform_"):
            out[name] = _lbp_description(int(name[12:]), settings.lbp_points)
        elif name.startswith("grid_"):
            r, c = (int(p[1:]) for p in name.split("_")[1:])
            out[name] = _grid_description(r, c, settings.grid)
        elif name.startswith("edges_"):
            _, direction, row, col = name.split("_")
            out[name] = _edge_description(
                direction, int(row[1:]), int(col[1:]), settings.edge_cells
            )
        else:
            out[name] = _STATIC_DESCRIPTIONS[name]
    return out


FEATURE_DESCRIPTIONS: dict[str, str] = _descriptions(FeatureSettings(), True)
"""Every default feature name (with a mask) -> its one-line plain-language description."""


def _percentiles(ordered: np.ndarray, qs: Sequence[float]) -> list[float]:
    """``np.percentile(..., method="linear")`` on already sorted values, without its overhead."""
    last = ordered.size - 1
    out = []
    for q in qs:
        pos = q / 100.0 * last
        lo = int(pos)
        hi = min(lo + 1, last)
        out.append(float(ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])))
    return out


def _first_order(values: np.ndarray, levels: int) -> dict[str, float]:
    ordered = np.sort(values)
    mean = float(ordered.mean())
    centred = ordered - mean
    # Plain sums, not np.dot: BLAS threads cost more than they save on one image's pixels.
    sq = centred * centred
    var = float(sq.sum() / ordered.size)
    std = math.sqrt(var)
    p10, p25, p50, p75, p90 = _percentiles(ordered, _PERCENTILES)
    if std > 0:
        skew = float((sq * centred).sum() / ordered.size / std**3)
        kurt = float((sq * sq).sum() / ordered.size / var**2 - 3.0)
    else:
        skew = kurt = 0.0
    hist = np.bincount(np.minimum((values * levels).astype(np.int64), levels - 1), minlength=levels)
    p = hist[hist > 0] / values.size
    return {
        "intensity_mean": mean,
        "intensity_std": std,
        "intensity_min": float(ordered[0]),
        "intensity_max": float(ordered[-1]),
        "intensity_p10": p10,
        "intensity_p25": p25,
        "intensity_median": p50,
        "intensity_p75": p75,
        "intensity_p90": p90,
        "intensity_iqr": p75 - p25,
        "intensity_skewness": skew,
        "intensity_kurtosis": kurt,
        "intensity_entropy": float(-(p * np.log2(p)).sum()) + 0.0,
        "intensity_uniformity": float((p**2).sum()),
    }


def _glcm(pixels: np.ndarray, region: np.ndarray | None, s: FeatureSettings) -> dict[str, float]:
    # Deferred for start-up speed: scikit-image loads only when features are computed.
    from skimage.feature import graycomatrix

    levels = s.grey_levels
    q = np.minimum((pixels * levels).astype(np.int64), levels - 1)
    if region is not None:
        # Outside the mask gets an extra level whose pairs are dropped before normalising.
        q = np.where(region, q, levels)
    angles = [math.pi * i / s.glcm_angles for i in range(s.glcm_angles)]
    total_levels = levels + (region is not None)
    matrix = graycomatrix(
        q.astype(np.uint8), list(s.glcm_distances), angles, levels=total_levels, symmetric=True
    )[:levels, :levels]
    # One (levels², distances × angles) matrix; the properties are those of skimage's
    # graycoprops, computed per distance and angle in one pass, then averaged.
    counts = matrix.reshape(levels * levels, -1).astype(np.float64)
    sums = counts.sum(axis=0)
    counts = counts[:, sums > 0]
    if counts.shape[1] == 0:
        return {f"glcm_{p}": float("nan") for p in _GLCM_PROPS}
    prob = counts / counts.sum(axis=0)
    # The matrix is symmetric, so the row and column marginals share mean and spread.
    contrast, dissimilarity, homogeneity, mu, second, cross = _level_weights(levels) @ prob
    var = np.maximum(second - mu**2, 0.0)
    cov = cross - mu**2
    flat = var < 1e-15
    # A flat texture has no variation to correlate; skimage defines its correlation as 1.
    corr = np.where(flat, 1.0, cov / np.where(flat, 1.0, var))
    asm = (prob**2).sum(axis=0)
    return {
        "glcm_contrast": float(contrast.mean()),
        "glcm_dissimilarity": float(dissimilarity.mean()),
        "glcm_homogeneity": float(homogeneity.mean()),
        "glcm_energy": float(np.sqrt(asm).mean()),
        "glcm_correlation": float(corr.mean()),
        "glcm_ASM": float(asm.mean()),
    }


_WEIGHTS: dict[int, np.ndarray] = {}


def _level_weights(levels: int) -> np.ndarray:
    """Rows: (i-j)², |i-j|, 1/(1+(i-j)²), i, i², i·j over the flattened levels × levels grid."""
    if levels not in _WEIGHTS:
        rows, cols = np.meshgrid(np.arange(levels), np.arange(levels), indexing="ij")
        i, j = rows.ravel().astype(np.float64), cols.ravel().astype(np.float64)
        d = i - j
        _WEIGHTS[levels] = np.stack([d**2, np.abs(d), 1.0 / (1.0 + d**2), i, i**2, i * j])
    return _WEIGHTS[levels]


def _lbp_codes(image: np.ndarray, points: int, radius: float) -> np.ndarray:
    """Uniform LBP codes of the interior pixels (a border of ``ceil(radius)`` is left out).

    Bit-for-bit the codes of ``skimage.feature.local_binary_pattern(image, points, radius,
    method="uniform")`` on those pixels (same neighbour offsets rounded to 5 decimals, same
    bilinear arithmetic, per-row and per-column fractions, ties counted as "at least as
    bright", transitions counted without wrapping around), vectorised: several times faster.
    Computed in bands of :data:`_LBP_BAND` rows, so that the temporaries stay in the core's
    own cache (a quarter faster at 256×256, and two workers do not compete for the shared one);
    every code depends on its own pixel's neighbourhood only, so bands change no value.
    """
    img = np.asarray(image, dtype=np.float64)
    edge = math.ceil(radius)
    h, w = img.shape
    rows = np.arange(edge, h - edge, dtype=np.float64)
    cols = np.arange(edge, w - edge, dtype=np.float64)
    angles = 2 * np.pi * np.arange(points) / points
    row_offsets = np.round(-radius * np.sin(angles), 5)
    col_offsets = np.round(radius * np.cos(angles), 5)
    # Per neighbour: the window offsets and, off the pixel grid, the interpolation weights
    # (1 - fraction and fraction, per row and per column).
    neighbours: list[tuple[int, int, int, int, tuple[np.ndarray, ...] | None]] = []
    for i in range(points):
        rr, cc = rows + row_offsets[i], cols + col_offsets[i]
        low_r, low_c = np.floor(rr), np.floor(cc)
        fr, fc = rr - low_r, cc - low_c
        r0, c0 = int(low_r[0] - rows[0]), int(low_c[0] - cols[0])
        if not fr.any() and not fc.any():
            neighbours.append((r0, c0, r0, c0, None))
        else:
            r1 = r0 + int(np.ceil(rr[0]) - low_r[0])
            c1 = c0 + int(np.ceil(cc[0]) - low_c[0])
            neighbours.append((r0, c0, r1, c1, ((1 - fr)[:, None], fr[:, None], 1 - fc, fc)))

    def band_codes(first: int, last: int) -> np.ndarray:
        """Codes of interior rows ``first`` to ``last`` (exclusive)."""

        def window(dr: int, dc: int) -> np.ndarray:
            return img[edge + first + dr : edge + last + dr, edge + dc : w - edge + dc]

        centre = window(0, 0)
        bits = np.empty((points, *centre.shape), dtype=np.int8)
        for i, (r0, c0, r1, c1, weights) in enumerate(neighbours):
            if weights is None:
                value = window(r0, c0)  # on the pixel grid: the interpolation returns it exactly
            else:
                above, below, left, right = weights
                upper = left * window(r0, c0) + right * window(r0, c1)
                lower = left * window(r1, c0) + right * window(r1, c1)
                value = above[first:last] * upper + below[first:last] * lower
            bits[i] = value - centre >= 0
        changes = (bits[:-1] != bits[1:]).sum(axis=0)
        return np.where(changes <= 2, bits.sum(axis=0, dtype=np.int64), points + 1)

    if rows.size <= _LBP_BAND:
        return band_codes(0, rows.size)
    codes = np.empty((rows.size, cols.size), dtype=np.int64)
    for first in range(0, rows.size, _LBP_BAND):
        last = min(rows.size, first + _LBP_BAND)
        codes[first:last] = band_codes(first, last)
    return codes


_LBP_BAND = 64
"""Rows of LBP codes computed at once (64 × 256 float64 temporaries: 128 KiB each)."""


def _lbp(pixels: np.ndarray, region: np.ndarray | None, s: FeatureSettings) -> dict[str, float]:
    # Border pixels would compare with neighbours outside the image, so they are left out.
    codes = _lbp_codes(np.round(pixels * 255), s.lbp_points, s.lbp_radius)
    if region is not None:
        edge = math.ceil(s.lbp_radius)
        codes = codes[region[edge : region.shape[0] - edge, edge : region.shape[1] - edge]]
    n_codes = s.lbp_points + 2
    if codes.size == 0:
        return {f"lbp_uniform_{k}": float("nan") for k in range(n_codes)}
    share = np.bincount(codes.ravel(), minlength=n_codes)[:n_codes] / codes.size
    return {f"lbp_uniform_{k}": float(v) for k, v in enumerate(share)}


def _sobel(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel derivatives along columns (x) and rows (y, downwards).

    Same values as skimage.filters.sobel_v / sobel_h (scipy "reflect" = numpy "symmetric"
    padding, kernels [1, 2, 1]/4 × [1, 0, -1]) without their per-call overhead, which dominates
    at 28×28.
    """
    p = np.pad(pixels, 1, mode="symmetric")
    rows = p[:-2] + 2.0 * p[1:-1] + p[2:]
    cols = p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]
    return (rows[:, 2:] - rows[:, :-2]) / 4.0, (cols[2:] - cols[:-2]) / 4.0


def _gradient(
    pixels: np.ndarray, region: np.ndarray | None, s: FeatureSettings
) -> dict[str, float]:
    gx, gy = _sobel(pixels)
    # skimage.filters.sobel's magnitude: the root mean square of the two derivatives.
    magnitude = np.sqrt((gx**2 + gy**2) / 2.0)
    inside = magnitude if region is None else magnitude[region]
    out = {
        "gradient_mean": float(inside.mean()),
        "gradient_std": float(inside.std()),
        "gradient_p90": _percentiles(np.sort(inside.ravel()), (90,))[0],
        "edge_density": float((inside > s.edge_threshold).mean()),
    }
    if s.edge_cells:
        out.update(_edge_directions(gx, gy, magnitude, region, s.edge_cells))
    return out


_TAN_22_5 = math.tan(math.pi / 8)


def _cells(length: int, n: int) -> np.ndarray:
    """Index 0..n-1 of the grid band each row (or column) falls in (np.array_split bands)."""
    return np.concatenate(
        [np.full(len(part), k) for k, part in enumerate(np.array_split(np.arange(length), n))]
    )


def _edge_directions(
    gx: np.ndarray, gy: np.ndarray, magnitude: np.ndarray, region: np.ndarray | None, n: int
) -> dict[str, float]:
    # The gradient points across an edge: a gradient at 0° (left-right change) is a vertical
    # edge. Four 45°-wide bins of the gradient angle modulo 180°, centred on 0°, 45°, 90° and
    # 135° (rows grow downwards), found by comparing |gx| and |gy| against tan(22.5°) instead of
    # computing angles.
    ax, ay = np.abs(gx), np.abs(gy)
    bins = np.where(
        ay < _TAN_22_5 * ax, 0, np.where(ax < _TAN_22_5 * ay, 2, np.where(gx * gy > 0, 1, 3))
    )
    weight = magnitude if region is None else np.where(region, magnitude, 0.0)
    cell = _cells(gx.shape[0], n)[:, None] * n + _cells(gx.shape[1], n)[None, :]
    per_bin = np.bincount((cell * 4 + bins).ravel(), weights=weight.ravel(), minlength=n * n * 4)
    per_bin = per_bin.reshape(n, n, 4)
    total = per_bin.sum(axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, per_bin / total, np.nan)
    names = list(_EDGE_DIRECTIONS)
    return {
        f"edges_{names[b]}_r{r + 1}_c{c + 1}": float(share[r, c, b])
        for r in range(n)
        for c in range(n)
        for b in range(4)
    }


def _grid(pixels: np.ndarray, region: np.ndarray | None, s: FeatureSettings) -> dict[str, float]:
    rows = [int(r[0]) for r in np.array_split(np.arange(pixels.shape[0]), s.grid)]
    cols = [int(c[0]) for c in np.array_split(np.arange(pixels.shape[1]), s.grid)]
    weight = np.ones_like(pixels) if region is None else region.astype(np.float64)
    sums = np.add.reduceat(np.add.reduceat(pixels * weight, rows, axis=0), cols, axis=1)
    counts = np.add.reduceat(np.add.reduceat(weight, rows, axis=0), cols, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, np.nan)
    return {
        f"grid_r{r + 1}_c{c + 1}": float(means[r, c]) for r in range(s.grid) for c in range(s.grid)
    }


def _shape(region: np.ndarray) -> dict[str, float]:
    # Deferred for start-up speed: scikit-image loads only when features are computed.
    from skimage.measure import regionprops

    props = regionprops(region.astype(np.uint8))[0]
    return {
        "shape_area": float(props.area),
        "shape_perimeter": float(props.perimeter),
        "shape_eccentricity": float(props.eccentricity),
        "shape_solidity": float(props.solidity),
        "shape_extent": float(props.extent),
        "shape_major_axis": float(props.axis_major_length),
        "shape_minor_axis": float(props.axis_minor_length),
    }


def compute_features(
    pixels: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    settings: FeatureSettings = FeatureSettings(),
    with_mask: bool | None = None,
) -> dict[str, float]:
    """Features of one grayscale image in [0, 1] (already at the working size).

    Parameters
    ----------
    pixels : 2-D float array in [0, 1].
    mask : boolean region of interest of the same shape, or None for the whole image.
    settings : feature parameters.
    with_mask : include the shape features (default: when ``mask`` is given); when True and
        ``mask`` is None they are NaN (an image without a mask in a set with masks).

    Returns
    -------
    dict
        Feature name -> value, in :func:`feature_names` order.

    Raises
    ------
    ImageError
        When the mask is empty or does not match the image.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim == 2 and max(settings.grid, settings.edge_cells) > min(pixels.shape):
        raise ConfigError(
            f"A {settings.grid}×{settings.grid} brightness grid or {settings.edge_cells}×"
            f"{settings.edge_cells} edge cells do not fit a {pixels.shape[0]}×{pixels.shape[1]} "
            "image; use a larger size or fewer cells."
        )
    if pixels.ndim != 2 or min(pixels.shape) < 3:
        raise ImageError(
            f"Features need a 2-D grayscale image of at least 3×3 pixels, got shape {pixels.shape}."
        )
    region = None
    if mask is not None:
        region = np.asarray(mask, dtype=bool)
        if region.shape != pixels.shape:
            raise ImageError(
                f"The mask has shape {region.shape} but the image {pixels.shape}; masks must "
                "have the image's size."
            )
        if not region.any():
            raise ImageError(
                "The mask marks no pixel at the working size; draw a larger region or use a "
                "larger --size."
            )
    values = pixels if region is None else pixels[region]
    out = _first_order(values.ravel(), settings.grey_levels)
    out.update(_glcm(pixels, region, settings))
    out.update(_lbp(pixels, region, settings))
    out.update(_gradient(pixels, region, settings))
    if settings.grid:
        out.update(_grid(pixels, region, settings))
    include_shape = region is not None if with_mask is None else with_mask
    if include_shape:
        if region is not None:
            out.update(_shape(region))
        else:
            out.update({n: float("nan") for n in _STATIC_DESCRIPTIONS if n.startswith("shape_")})
    return out


def features_from_pixels(
    images: np.ndarray | Sequence[np.ndarray],
    *,
    settings: FeatureSettings,
    masks: Sequence[np.ndarray | None] | None = None,
) -> pd.DataFrame:
    """Feature rows for in-memory images (already in [0, 1]), resized to ``settings.size``.

    Used to compose a ``predict_fn`` for :func:`medimg_core.imaging.occlusion.occlusion_map`.
    """
    if settings.size is None:
        raise ConfigError(
            "features_from_pixels needs settings with a size; use the settings of the "
            "FeatureTable (or model card) the model was trained on."
        )
    with_mask = masks is not None and any(m is not None for m in masks)
    rows = []
    for i, img in enumerate(images):
        mask = None if masks is None else masks[i]
        pixels = resize_image(np.asarray(img, dtype=np.float32), settings.size)
        if mask is not None:
            mask = resize_mask(mask, settings.size)
        rows.append(compute_features(pixels, mask=mask, settings=settings, with_mask=with_mask))
    return pd.DataFrame(rows, columns=list(feature_names(settings, with_mask=with_mask)))


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """The features of an image set, ready for cleaning, training and explanation.

    Attributes
    ----------
    frame : ``file``, ``patient_id`` (when known), ``label`` (when known), ``split`` (npz),
        the labels table's clinical columns, then the features.
    feature_names : the image-feature columns, in order.
    settings : :meth:`FeatureSettings.to_dict` (with the working size); save it in the model
        card so that prediction extracts identically.
    notes : what was done (size, conversions, masks, images left out).
    problems : images left out (the set's own problems plus decoding failures).
    """

    frame: pd.DataFrame
    feature_names: tuple[str, ...]
    settings: dict[str, Any]
    notes: tuple[str, ...]
    problems: tuple[ImageProblem, ...] = field(default_factory=tuple)

    @property
    def descriptions(self) -> dict[str, str]:
        """Feature name -> one-line description, for the app and the model card."""
        if self.settings.get("kind") == "radiomics":
            from medimg_core.imaging.radiomics.extract import feature_descriptions
            from medimg_core.imaging.radiomics.settings import RadiomicsSettings

            return feature_descriptions(RadiomicsSettings.from_dict(self.settings))
        s = FeatureSettings.from_dict(self.settings)
        return _descriptions(s, "shape_area" in self.feature_names)

    def roles(self) -> Roles:
        """The roles this table implies: label, patient grouping, never-features."""
        cols = self.frame.columns
        return Roles(
            label="label" if "label" in cols else None,
            id="patient_id" if "patient_id" in cols else None,
            exclude=tuple(c for c in ("file", "case", "split") if c in cols),
        )

    def predefined_test(self) -> tuple[bool, ...] | None:
        """``split == "test"`` per row (MedMNIST), for ``ValidationConfig.predefined_test``."""
        if "split" not in self.frame.columns:
            return None
        return tuple(bool(v) for v in (self.frame["split"] == "test"))

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Write the frame as Parquet with the settings in the file's metadata.

        :func:`read_feature_settings` reads them back, so a model trained from the file can
        still re-extract features from new images exactly.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.frame, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[_PARQUET_KEY] = json.dumps(self.settings).encode("utf-8")
        pq.write_table(table.replace_schema_metadata(meta), path)


_PARQUET_KEY = b"medimg:image_feature_settings"


def read_feature_settings(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The image-feature settings stored by :meth:`FeatureTable.to_parquet` (None if absent)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(_PARQUET_KEY)
    return None if raw is None else dict(json.loads(raw.decode("utf-8")))


def _resolve_settings(
    image_set: ImageSet,
    size: int | tuple[int, int] | None,
    settings: FeatureSettings | Mapping[str, Any] | None,
) -> tuple[FeatureSettings, str | None]:
    if settings is None:
        s = FeatureSettings()
    elif isinstance(settings, FeatureSettings):
        s = settings
    else:
        s = FeatureSettings.from_dict(settings)
    wanted = parse_size(size) if size is not None else None
    if s.size is not None:
        if wanted is not None and wanted != s.size:
            raise ConfigError(
                f"size {wanted} differs from the saved feature settings' size {s.size}; drop "
                "--size to extract as the model was trained."
            )
        return s, f"Images resized to {s.size[0]}×{s.size[1]} (the model's feature settings)."
    if wanted is not None:
        return replace(s, size=wanted), f"Images resized to {wanted[0]}×{wanted[1]} (as requested)."
    common = image_set.common_size
    note = None
    if len(image_set.sizes) > 1:
        note = (
            f"Images resized to {common[0]}×{common[1]}, the most common size (plain resize, "
            "nothing cropped; the aspect ratio of other sizes may change)."
        )
    return replace(s, size=common), note


@dataclass(frozen=True, slots=True)
class _File:
    """An image or mask the worker reads from ``path``, where this process saw it.

    ``size`` and ``mtime_ns`` are what this process saw: a worker that finds no file there, or
    one of another size or date, reports it as not visible instead of reading another file
    (None when this process could not see the file either: decoding then reports why).
    """

    path: str
    size: int | None
    mtime_ns: int | None
    dicom: bool


@dataclass(frozen=True, slots=True)
class _Bytes:
    """The (decrypted) contents of an image or mask file, read by this process."""

    data: bytes
    dicom: bool


_Source = np.ndarray | _File | _Bytes
_Entry = tuple[int, _Source, _File | _Bytes | None, str, int | None]


@dataclass(frozen=True, slots=True)
class _Chunk:
    """One task's images: ``(position, image, mask, name, frame)`` each. One object, so that
    Dask passes it through without walking every entry in search of futures."""

    entries: tuple[_Entry, ...]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one task did: the feature rows of the images it decoded, as one array (one
    transfer back per task, not a dictionary per image), the reason for each image it could
    not decode, and the images whose file it could not see (the caller sends their contents).

    ``values[k]`` holds the features of image ``extracted[k]``, in :func:`feature_names` order.
    """

    extracted: tuple[int, ...]
    values: np.ndarray
    failed: tuple[tuple[int, str], ...]
    unseen: tuple[int, ...]


_DICOM_SUFFIXES = (".dcm", ".dicom")
_THROWAWAY_KEY = bytes(32)
"""DICOM headers are de-identified as they are read; features need the pixels only, so workers
pseudonymise with this throwaway key instead of reading (or creating) a workspace's key."""
_WINDOW_BYTES = 256 * 2**20
"""File contents and arrays held by tasks not yet finished, at most (plus one chunk)."""


def _visible_here(file: _File) -> bool:
    if file.size is None:
        return True
    try:
        stat = os.stat(file.path)
    except OSError:
        return False
    return stat.st_size == file.size and stat.st_mtime_ns == file.mtime_ns


def _pixels(source: _Source, name: str, frame: int | None) -> np.ndarray:
    """Decode as :func:`~medimg_core.imaging.pixels.load_task_image` would, from any source."""
    if isinstance(source, np.ndarray):
        return array_to_image(source, name=name).pixels
    data: str | bytes = source.path if isinstance(source, _File) else source.data
    if source.dicom or dicom.is_dicom(data):
        return dicom.read_dicom(data, frame=frame, key=_THROWAWAY_KEY, name=name).pixels
    return load_image(data, frame=frame, name=name).pixels


def _mask(source: _File | _Bytes, name: str) -> np.ndarray:
    label = f"mask of {name}"
    region = _pixels(source, label, None) > 0
    if not region.any():
        raise ImageError(
            f"The mask '{label}' marks no pixel; draw the region (non-zero pixels) or remove "
            "the mask to use the whole image."
        )
    return region


def _extract_chunk(chunk: _Chunk, *, settings: dict[str, Any], with_mask: bool) -> _Outcome:
    """Features of one task's images (see :class:`_Outcome`)."""
    _one_thread_per_worker()
    s = FeatureSettings.from_dict(settings)
    assert s.size is not None
    names = feature_names(s, with_mask=with_mask)
    extracted: list[int] = []
    rows: list[list[float]] = []
    failed: list[tuple[int, str]] = []
    unseen: list[int] = []
    for position, source, mask, name, frame in chunk.entries:
        files = [f for f in (source, mask) if isinstance(f, _File)]
        if not all(_visible_here(f) for f in files):
            unseen.append(position)
            continue
        try:
            pixels = resize_image(_pixels(source, name, frame), s.size)
            region = None if mask is None else resize_mask(_mask(mask, name), s.size)
            row = compute_features(pixels, mask=region, settings=s, with_mask=with_mask)
        except (ImageError, LimitError) as exc:
            failed.append((position, str(exc)))
        else:
            extracted.append(position)
            rows.append([row[n] for n in names])
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    return _Outcome(tuple(extracted), values, tuple(failed), tuple(unseen))


_limited_in: int | None = None
"""The process (id) whose BLAS / OpenMP pools :func:`_one_thread_per_worker` limited."""


def _one_thread_per_worker() -> None:
    """In a worker process (a local pool's or a Dask worker), BLAS and OpenMP get one thread,
    once per process: N workers on N cores, each with a thread per core, would oversubscribe
    them. The caller's own process (``workers=1``) keeps its settings."""
    global _limited_in
    if _limited_in == os.getpid() or multiprocessing.parent_process() is None:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    _limited_in = os.getpid()


def _import_task_modules(*, with_mask: bool) -> None:
    """Import here what tasks import on first use (scikit-image), before a local pool forks:
    its workers then start with it instead of each importing it again on every extraction
    (0.2-0.4 s of CPU per worker, more than a tenth of a 28×28 set's share)."""
    import threadpoolctl  # noqa: F401
    from skimage.feature import graycomatrix  # noqa: F401
    from skimage.transform import resize  # noqa: F401

    if with_mask:
        from skimage.measure import regionprops  # noqa: F401


def _file(path: str, *, contents: bool) -> _File | _Bytes:
    """How a task gets one file: by path when it is in clear, else (or when ``contents``) by
    its decrypted bytes, read here (the key never leaves this process)."""
    is_dicom = path.lower().endswith(_DICOM_SUFFIXES)
    try:
        stat = os.stat(path)
        if contents or is_encrypted(path):
            return _Bytes(read_decrypted(path, what="The uploaded file"), is_dicom)
    except OSError:
        # Gone since the set was opened: decoding the path reports it as any unreadable file.
        return _File(path, None, None, is_dicom)
    return _File(path, stat.st_size, stat.st_mtime_ns, is_dicom)


def _chunk(image_set: ImageSet, positions: Sequence[int], *, contents: bool) -> tuple[_Chunk, int]:
    """One task's images, and the bytes the task carries (file contents and arrays)."""
    entries: list[_Entry] = []
    carried = 0
    for position, (source, mask_path, name, frame) in zip(
        positions, image_set.tasks(positions), strict=True
    ):
        image = source if isinstance(source, np.ndarray) else _file(str(source), contents=contents)
        mask = None if mask_path is None else _file(mask_path, contents=contents)
        for part in (image, mask):
            if isinstance(part, np.ndarray):
                carried += part.nbytes
            elif isinstance(part, _Bytes):
                carried += len(part.data)
        entries.append((position, image, mask, name, frame))
    return _Chunk(tuple(entries)), carried


def extract_features(
    image_set: ImageSet,
    *,
    size: int | tuple[int, int] | None = None,
    settings: FeatureSettings | Mapping[str, Any] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> FeatureTable:
    """Extract the named features of every image, streaming and in parallel.

    The images are cut into tasks of a fixed number of images (from the set's size only, never
    from the number of workers) run by :func:`medimg_core.compute.current`: in this process, a
    local pool of ``workers`` processes, or the Dask cluster in force. Each image's features
    are computed from that image alone, so the table is identical wherever the tasks ran.

    What a task carries, per kind of image:

    * ``.npz`` images: their pixel arrays (the set holds them in memory here).
    * files in clear (a folder given on the command line or opened from an image root): their
      path. A worker reads the file where this process saw it; when it finds no file there,
      or one of another size or modification time (a cluster that does not mount the folder
      at the same path), it says so and the file's contents are sent to it instead (a note
      counts them).
    * encrypted files (images and masks of an uploaded ZIP, kept encrypted in the workspace):
      decrypted here and sent as bytes. Workers never need, read or receive the encryption
      key; on a cluster beyond this machine use a ``tls://`` scheduler address so that the
      decrypted images are encrypted in transit.

    Tasks that carry bytes are sent in windows of at most about 256 MiB, so memory stays
    bounded on large uploads. An image that cannot be decoded (``ImageError`` / ``LimitError``
    where the task ran) is left out and reported, as without a cluster.

    Parameters
    ----------
    image_set : from :func:`medimg_core.imaging.sets.open_image_set`.
    size : working size (N or (height, width)); default the set's most common size.
    settings : saved settings (a model card's ``features.image_settings``) to re-extract exactly
        as at training time; their size wins (a different ``size`` is an error).
    workers : processes in this process's local pool; default all cores available; 1 runs in
        this process. A single-threaded caller forks its workers; a threaded host (Streamlit)
        starts them from a fork server instead, and then a calling script needs the usual
        ``if __name__ == "__main__":`` guard. Ignored on a Dask cluster, which has its own.
    progress : ``progress(fraction, message)`` callback, called as each task finishes.
    cancelled : polled as tasks finish; True stops the extraction
        (:class:`~medimg_core.errors.Cancelled`).

    Returns
    -------
    FeatureTable

    Raises
    ------
    ImageError
        When no image could be decoded.
    ConfigError
        When ``size`` conflicts with ``settings`` or is out of range, or ``workers`` < 1.
    EncryptionError
        When an uploaded file cannot be decrypted (missing key, altered file).
    Cancelled
        When ``cancelled`` returned True.
    """
    s, size_note = _resolve_settings(image_set, size, settings)
    n_workers = compute.default_workers() if workers is None else int(workers)
    if n_workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}; use 1 to run inline.")
    engine = compute.current()
    with_mask = image_set.has_masks
    payload = s.to_dict()
    n = len(image_set.records)
    extracted: list[tuple[int, ...]] = []
    blocks: list[np.ndarray] = []
    failures: dict[int, str] = {}
    unseen: list[int] = []
    decoded = 0
    if not engine.distributed:
        _import_task_modules(with_mask=with_mask)

    def collect(_: int, part: _Outcome) -> None:
        nonlocal decoded
        extracted.append(part.extracted)
        blocks.append(part.values)
        failures.update(part.failed)
        unseen.extend(part.unseen)
        decoded += len(part.extracted)
        if progress is not None:
            done = decoded + len(failures)
            progress(done / max(n, 1), f"Extracted features from {done} of {n} images")

    def run(positions: Sequence[int], *, contents: bool) -> None:
        window: list[_Chunk] = []
        carried = 0
        for part in compute.chunks(len(positions), compute.chunk_size(len(positions))):
            chunk, size_ = _chunk(image_set, [positions[i] for i in part], contents=contents)
            window.append(chunk)
            carried += size_
            if carried >= _WINDOW_BYTES or part.stop == len(positions):
                engine.map(
                    _extract_chunk,
                    window,
                    shared={"settings": payload, "with_mask": with_mask},
                    workers=n_workers,
                    cancelled=cancelled,
                    name="image-features",
                    on_result=collect,
                )
                window, carried = [], 0

    run(range(n), contents=False)
    resent = sorted(unseen)
    if resent:
        unseen.clear()
        run(resent, contents=True)

    positions = np.fromiter((i for part in extracted for i in part), dtype=np.int64)
    if positions.size == 0:
        shown = "; ".join(failures[i] for i in sorted(failures)[:3])
        raise ImageError(f"No image in '{image_set.name}' could be decoded ({shown}).")
    names = feature_names(s, with_mask=with_mask)
    # Tasks finish in any order (and resent images last): rows go back to the set's order.
    by_position = np.argsort(positions, kind="stable")
    ordered = positions[by_position].tolist()
    features = pd.DataFrame(np.concatenate(blocks)[by_position], columns=list(names))
    base_cols = [c for c in ("file", "patient_id", "label", "split") if c in image_set.records]
    base = image_set.records.iloc[ordered][base_cols + list(image_set.extra_columns)]
    frame = pd.concat([base.reset_index(drop=True), features], axis=1)
    decode_problems = tuple(
        ImageProblem(str(image_set.records["file"].iloc[i]), failures[i]) for i in sorted(failures)
    )
    notes = [note for note in (size_note,) if note]
    notes.append(
        f"{len(names)} features per image ({len(ordered)} images): intensity statistics, "
        f"co-occurrence texture on {s.grey_levels} grey levels, local binary patterns "
        f"(P={s.lbp_points}, R={s.lbp_radius:g}), gradients"
        + (f", a {s.grid}×{s.grid} brightness grid" if s.grid else "")
        + (", region shape (masks)" if with_mask else "")
        + "."
    )
    if engine.distributed:
        notes.append(f"Image features were computed on {engine.describe()}.")
    if resent:
        notes.append(
            f"{len(resent)} image file(s) were not visible to the workers at the path this "
            "computer reads them from; medimg sent their contents instead. Put the images on "
            "a folder every worker mounts at the same path to avoid this transfer."
        )
    if decode_problems:
        notes.append(
            f"{len(decode_problems)} image(s) could not be decoded and were left out: "
            + ", ".join(p.file for p in decode_problems[:10])
            + (", …" if len(decode_problems) > 10 else "")
        )
    return FeatureTable(
        frame=frame,
        feature_names=names,
        settings=payload,
        notes=(*image_set.notes, *notes),
        problems=(*image_set.problems, *decode_problems),
    )
