"""Radiomic features of one image and its segmentation, as one row of a feature table.

Columns are PyRadiomics-style names (``original_glcm_Contrast``) in a fixed order: catalogue
family order (:data:`catalogue.FAMILIES`), then each family's features in the order its module
registers them. Only the families and features the settings enable appear.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from medimg_core.imaging.radiomics import catalogue
from medimg_core.imaging.radiomics.catalogue import FeatureSpec
from medimg_core.imaging.radiomics.preprocess import prepare
from medimg_core.imaging.radiomics.settings import RadiomicsSettings

__all__ = ["extract_radiomics", "feature_columns", "feature_descriptions"]


def _enabled(settings: RadiomicsSettings) -> list[tuple[str, tuple[FeatureSpec, ...]]]:
    out = []
    for family, names in settings.feature_classes:
        specs = catalogue.catalogue(family)
        if names is not None:
            specs = tuple(spec for spec in specs if spec.name in names)
        out.append((family, specs))
    return out


def feature_columns(settings: RadiomicsSettings) -> tuple[str, ...]:
    """The column names :func:`extract_radiomics` returns for these settings, in order."""
    return tuple(spec.column for _, specs in _enabled(settings) for spec in specs)


def feature_descriptions(settings: RadiomicsSettings) -> dict[str, str]:
    """Column -> "meaning (IBSI code XXXX; PyRadiomics name)" or "(...; IBSI-only)"."""
    return {
        spec.column: (
            f"{spec.meaning} (IBSI code {spec.code}; "
            f"{'PyRadiomics name' if spec.pyradiomics else 'IBSI-only'})"
        )
        for _, specs in _enabled(settings)
        for spec in specs
    }


def _options(family: str, settings: RadiomicsSettings) -> dict[str, Any]:
    # Only the NGLDM has a setting of its own; other families refuse options they do not know.
    return {"alpha": settings.gldm_a} if family == "ngldm" else {}


def extract_radiomics(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: tuple[float, float, float],
    settings: RadiomicsSettings,
) -> dict[str, float]:
    """Every enabled radiomic feature of the region ``mask == settings.label``.

    Parameters
    ----------
    image : ``(z, y, x)`` intensities.
    mask : ``(z, y, x)`` segmentation of the same shape.
    spacing : voxel size ``(z, y, x)`` in mm.
    settings : what to compute and how (:class:`RadiomicsSettings`).

    Returns
    -------
    dict
        Column (:func:`feature_columns` order) -> value; NaN where a feature is undefined for
        this region (e.g. a texture feature of a single grey level).

    Raises
    ------
    ImageError
        The image or mask cannot be used (see :func:`preprocess.prepare`).
    ConfigError
        A setting the family modules refuse.
    """
    ctx = prepare(image, mask, spacing, settings)
    out: dict[str, float] = {}
    for family, specs in _enabled(settings):
        if not specs:
            continue
        module = importlib.import_module(f"medimg_core.imaging.radiomics.{family}")
        values = module.compute(
            ctx, aggregation=settings.aggregation_for(family), **_options(family, settings)
        )
        for spec in specs:
            out[spec.column] = float(values[spec.tag])
    return out
