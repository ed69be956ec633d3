"""The feature catalogue: generated from the feature functions, complete and unambiguous."""

from __future__ import annotations

import importlib
import re

import pytest

from medimg_core.imaging.radiomics import catalogue as catalogue_module
from medimg_core.imaging.radiomics.catalogue import (
    FAMILIES,
    catalogue,
    column_name,
    feature,
    spec_for_tag,
)
from tests.unit.imaging.radiomics.ibsi_phantom import reference

SPECS = catalogue()
_SUFFIX = re.compile(r"_(2D|2_5D|3D)(_avg|_comb)?$")


def test_every_family_module_offers_the_family_api() -> None:
    for family in FAMILIES:
        module = importlib.import_module(f"medimg_core.imaging.radiomics.{family}")
        assert callable(module.compute), family
        assert isinstance(module.AGGREGATIONS, tuple), family
        default = module.DEFAULT_AGGREGATION
        assert (default is None) == (module.AGGREGATIONS == ()), family
        assert default is None or default in module.AGGREGATIONS, family


def test_every_family_has_features() -> None:
    assert {s.family for s in SPECS} == set(FAMILIES)


def test_codes_meanings_and_columns_are_well_formed_and_unique() -> None:
    assert len({s.tag for s in SPECS}) == len(SPECS)
    assert len({s.column for s in SPECS}) == len(SPECS)
    for spec in SPECS:
        assert re.fullmatch(r"[0-9A-Z]{4}", spec.code), spec.tag
        assert re.fullmatch(r"[A-Za-z0-9]+", spec.name), spec.tag
        assert spec.column == column_name(spec.family, spec.name)
        assert spec.column.startswith("original_")
        assert 10 < len(spec.meaning) < 260, spec.tag
        assert spec_for_tag(spec.tag) is spec


def test_pyradiomics_style_columns_for_pyradiomics_features() -> None:
    columns = {s.column for s in SPECS if s.pyradiomics}
    for expected in (
        "original_glcm_Contrast",
        "original_glrlm_ShortRunEmphasis",
        "original_glszm_SmallAreaEmphasis",
        "original_gldm_DependenceNonUniformity",
        "original_ngtdm_Coarseness",
        "original_shape_Sphericity",
        "original_firstorder_Mean",
    ):
        assert expected in columns


def test_every_feature_with_a_phantom_reference_is_implemented() -> None:
    implemented = {s.tag for s in SPECS}
    wanted = {_SUFFIX.sub("", tag) for tag in reference()}
    assert sorted(wanted - implemented) == []


def test_a_feature_needs_a_docstring_and_a_known_family() -> None:
    with pytest.raises(ValueError, match="unknown feature family"):
        feature("wavelets", "wv_x", code="XXXX", name="X")

    def undocumented() -> float:
        return 0.0

    with pytest.raises(ValueError, match="needs a docstring"):
        feature("glcm", "cm_undocumented", code="XXXX", name="X")(undocumented)
    assert "cm_undocumented" not in catalogue_module._REGISTRY
