"""The IBSI digital phantom and its published reference values, for the compliance tests.

The phantom (IBSI reference manual, arXiv:1612.07003, section 5.1; CC-BY 4.0) is 5 × 4 × 4
voxels (x, y, z) of 2 × 2 × 2 mm with grey levels 1, 3, 4 and 6; six voxels lie outside the
region of interest (NaN below). Arrays here are ``(z, y, x)``, as medimg reads volumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medimg_core.imaging.radiomics.roi import RoiContext

_N = np.nan
PHANTOM = np.array(
    [
        [[1, 4, 4, 1, 1], [1, 4, 6, 1, 1], [4, 1, 6, 4, 1], [4, 4, 6, 4, 1]],
        [[1, 4, 4, 1, 1], [1, 1, 6, 1, 1], [_N, 1, 3, 1, 1], [4, 4, 6, 1, 1]],
        [[1, 4, 4, _N, _N], [1, 1, 1, 1, 1], [1, 1, _N, 1, 1], [1, 1, 6, 1, 1]],
        [[1, 4, 4, _N, _N], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 6, 1, 1]],
    ],
    dtype=np.float64,
)
MASK = ~np.isnan(PHANTOM)
# The six voxels outside the region still hold intensities in the IBSI image file, which the
# manual does not print: 1 in five of them and 9 in the internal one at (z, y, x) = (2, 2, 2),
# as the IBSI DICOM phantom (theibsi/data_sets) holds them, transcribed voxel by voxel in Nyxus'
# tests/test_data.h (PolusAI/nyxus). Only the local intensity peaks read them.
IMAGE = np.where(MASK, PHANTOM, 1.0)
IMAGE[2, 2, 2] = 9.0
SPACING = (2.0, 2.0, 2.0)

_CSV = Path(__file__).with_name("ibsi_phantom_reference.csv")


def reference() -> dict[str, tuple[float, float]]:
    """IBSI tag (with aggregation suffix for texture, e.g. ``cm_contrast_3D_avg``) ->
    (reference value, tolerance). Features without a reference value are left out."""
    out: dict[str, tuple[float, float]] = {}
    for line in _CSV.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#") or line.startswith("reference value"):
            continue
        value, tolerance, tag = line.split(";")
        if value:
            out[tag] = (float(value), float(tolerance))
    return out


def agrees(value: float, ref: float, tolerance: float) -> bool:
    """IBSI agreement: within the tolerance, or equal once rounded to the reference's three
    significant figures (the precision the reference values are published with)."""
    if not math.isfinite(value):
        return False
    if ref == 0:
        return abs(value) <= max(tolerance, 1e-9)
    rounding = 0.5 * 10 ** (math.floor(math.log10(abs(ref))) - 2)
    return abs(value - ref) <= tolerance + rounding * (1 + 1e-9)


def phantom_cases(prefix: str, aggregations: Sequence[str]) -> list[tuple[str, str, float, float]]:
    """``(tag, aggregation, value, tolerance)`` of every texture reference value of a family
    (tags starting with ``prefix``, e.g. ``cm_``), for ``pytest.mark.parametrize``."""
    return sorted(
        (tag.removesuffix(f"_{agg}"), agg, value, tol)
        for tag, (value, tol) in reference().items()
        if tag.startswith(prefix)
        for agg in aggregations
        if tag.endswith(f"_{agg}")
    )


def unit_context(image: np.ndarray, mask: np.ndarray | None = None) -> RoiContext:
    """A region of 1 mm voxels whose grey levels are ``image``'s values (bin width 1); the
    whole array when ``mask`` is None."""
    image = np.asarray(image, dtype=np.float64)
    mask = np.ones(image.shape, dtype=bool) if mask is None else mask
    return RoiContext.from_arrays(image, mask, (1.0, 1.0, 1.0), bin_width=1.0)
