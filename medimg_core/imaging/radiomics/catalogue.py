"""The catalogue of radiomic features, generated from the feature functions themselves.

Every family module decorates each feature function with :func:`feature`. The decorator records
the feature's IBSI tag and code, its PyRadiomics-style column name and the first line of its
docstring as its meaning; :func:`catalogue` returns them all for the app, the model card and the
IBSI status document.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["FAMILIES", "FeatureSpec", "catalogue", "column_name", "feature", "spec_for_tag"]

F = TypeVar("F", bound=Callable[..., Any])

FAMILIES: dict[str, str] = {
    "morphology": "shape",
    "local_intensity": "localintensity",
    "statistics": "firstorder",
    "histogram": "histogram",
    "ivh": "ivh",
    "glcm": "glcm",
    "glrlm": "glrlm",
    "glszm": "glszm",
    "gldzm": "gldzm",
    "ngtdm": "ngtdm",
    "ngldm": "gldm",
}
"""medimg family name -> the family part of its PyRadiomics-style column names."""


@dataclass(frozen=True)
class FeatureSpec:
    """One feature as the catalogue lists it.

    Attributes
    ----------
    family : medimg family (a key of :data:`FAMILIES`).
    tag : IBSI reference tag without the aggregation suffix, e.g. ``cm_contrast``.
    code : IBSI four-character identifier, e.g. ``ACUI``.
    name : CamelCase feature name, PyRadiomics' own where PyRadiomics has the feature.
    pyradiomics : True when PyRadiomics computes a feature of this name.
    meaning : one line for the app, from the function's docstring.
    function : the feature function.
    """

    family: str
    tag: str
    code: str
    name: str
    pyradiomics: bool
    meaning: str
    function: Callable[..., Any]

    @property
    def column(self) -> str:
        """The column name in a feature table: ``original_<family>_<Name>``."""
        return column_name(self.family, self.name)


_REGISTRY: dict[str, FeatureSpec] = {}


def column_name(family: str, name: str) -> str:
    """PyRadiomics-style column name, e.g. ``original_glcm_Contrast``."""
    return f"original_{FAMILIES[family]}_{name}"


def feature(
    family: str, tag: str, *, code: str, name: str, pyradiomics: bool = False
) -> Callable[[F], F]:
    """Register a feature function under its IBSI tag.

    The function's docstring must start with a one-line meaning written for a clinician.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown feature family {family!r}")

    def register(function: F) -> F:
        doc = (function.__doc__ or "").strip()
        if not doc:
            raise ValueError(f"feature {tag} needs a docstring giving its meaning")
        if tag in _REGISTRY and _REGISTRY[tag].function.__qualname__ != function.__qualname__:
            raise ValueError(f"feature tag {tag} registered twice")
        _REGISTRY[tag] = FeatureSpec(
            family=family,
            tag=tag,
            code=code,
            name=name,
            pyradiomics=pyradiomics,
            meaning=doc.splitlines()[0].strip(),
            function=function,
        )
        return function

    return register


def _load_families() -> None:
    # Importing a family module registers its features. By name, as the registry knows the
    # families only from FAMILIES (the family modules import this one).
    for family in FAMILIES:
        importlib.import_module(f"medimg_core.imaging.radiomics.{family}")


def catalogue(family: str | None = None) -> tuple[FeatureSpec, ...]:
    """Every registered feature (of one family), in registration order."""
    _load_families()
    return tuple(s for s in _REGISTRY.values() if family is None or s.family == family)


def spec_for_tag(tag: str) -> FeatureSpec:
    """The feature registered under an IBSI tag (``KeyError`` when none is)."""
    _load_families()
    return _REGISTRY[tag]
