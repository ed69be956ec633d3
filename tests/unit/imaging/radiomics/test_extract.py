"""Extraction: one row of radiomic features, columns in catalogue order, end to end."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest

from medimg_core.errors import ImageError
from medimg_core.imaging.radiomics import catalogue
from medimg_core.imaging.radiomics.extract import (
    extract_radiomics,
    feature_columns,
    feature_descriptions,
)
from medimg_core.imaging.radiomics.settings import RadiomicsSettings
from tests.unit.imaging.radiomics.ibsi_phantom import IMAGE, MASK, SPACING, agrees, reference


def _settings(feature_class: object = None, **setting: object) -> RadiomicsSettings:
    return RadiomicsSettings.from_mapping({"setting": setting, "featureClass": feature_class})


def _lesion(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoidal lesion of 3 mm slices with a textured CT-like interior."""
    z, y, x = np.indices((14, 40, 40), dtype=np.float64)
    mask = ((z - 6.5) / 4.2) ** 2 + ((y - 19.5) / 12) ** 2 + ((x - 19.5) / 9) ** 2 <= 1
    rng = np.random.default_rng(seed)
    texture = 40 + 25 * np.sin(x / 2.0) * np.cos(y / 3.0) + rng.normal(0, 8, mask.shape)
    image = np.where(mask, texture, -80 + rng.normal(0, 5, mask.shape))
    return np.rint(image).astype(np.int16), mask


SPACING_LESION = (3.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def full_row() -> tuple[RadiomicsSettings, dict[str, float]]:
    settings = _settings(binWidth=10, resampledPixelSpacing=[1, 1, 1], interpolator="sitkLinear")
    image, mask = _lesion()
    return settings, extract_radiomics(image, mask, SPACING_LESION, settings)


def test_every_family_runs_and_columns_follow_feature_columns(
    full_row: tuple[RadiomicsSettings, dict[str, float]],
) -> None:
    settings, row = full_row
    assert tuple(row) == feature_columns(settings)
    assert len(row) == len(catalogue.catalogue())
    families = [c.split("_")[1] for c in row]
    # Families appear as contiguous blocks in catalogue order.
    assert list(dict.fromkeys(families)) == list(catalogue.FAMILIES.values())
    assert all(isinstance(v, float) for v in row.values())
    finite = sum(math.isfinite(v) for v in row.values())
    assert finite >= 0.9 * len(row)


def test_resampling_thick_slices_keeps_the_volume(
    full_row: tuple[RadiomicsSettings, dict[str, float]],
) -> None:
    _, row = full_row
    _, mask = _lesion()
    volume = float(mask.sum()) * math.prod(SPACING_LESION)
    assert row["original_shape_VoxelVolume"] == pytest.approx(volume, rel=0.03)
    assert row["original_shape_MeshVolume"] == pytest.approx(volume, rel=0.06)


def test_selected_features_come_in_catalogue_order() -> None:
    settings = _settings({"glcm": ["JointEnergy", "Contrast"], "firstorder": ["Mean"]}, binWidth=10)
    glcm_order = [s.name for s in catalogue.catalogue("glcm")]
    wanted = sorted(["JointEnergy", "Contrast"], key=glcm_order.index)
    assert feature_columns(settings) == (
        "original_firstorder_Mean",
        *(f"original_glcm_{name}" for name in wanted),
    )
    image, mask = _lesion()
    row = extract_radiomics(image, mask, SPACING_LESION, settings)
    assert tuple(row) == feature_columns(settings)
    assert row["original_firstorder_Mean"] == pytest.approx(float(image[mask].mean()))


def test_descriptions_give_meaning_code_and_origin() -> None:
    settings = _settings({"glcm": ["Contrast"], "gldzm": ["SmallDistanceEmphasis"]})
    descriptions = feature_descriptions(settings)
    assert list(descriptions) == list(feature_columns(settings))
    contrast = catalogue.spec_for_tag("cm_contrast")
    assert descriptions["original_glcm_Contrast"] == (
        f"{contrast.meaning} (IBSI code {contrast.code}; PyRadiomics name)"
    )
    assert descriptions["original_gldzm_SmallDistanceEmphasis"].endswith("; IBSI-only)")


def test_resegmentation_excludes_voxels() -> None:
    image, mask = _lesion()
    features = {"firstorder": ["Minimum", "Maximum"], "shape": ["VoxelVolume"]}
    plain = extract_radiomics(image, mask, SPACING_LESION, _settings(features))
    trimmed = extract_radiomics(
        image, mask, SPACING_LESION, _settings(features, resegmentRange=[30, 60])
    )
    assert plain["original_firstorder_Minimum"] < 30 and plain["original_firstorder_Maximum"] > 60
    assert trimmed["original_firstorder_Minimum"] >= 30
    assert trimmed["original_firstorder_Maximum"] <= 60
    # The morphological mask is not re-segmented.
    assert trimmed["original_shape_VoxelVolume"] == plain["original_shape_VoxelVolume"]


def test_identical_inputs_give_identical_results() -> None:
    settings = _settings(
        {"glcm": None, "glszm": None, "firstorder": None},
        binWidth=10,
        resampledPixelSpacing=[1, 1, 1],
    )
    image, mask = _lesion()
    first = extract_radiomics(image, mask, SPACING_LESION, settings)
    second = extract_radiomics(image.copy(), mask.copy(), SPACING_LESION, settings)
    assert list(first) == list(second)
    np.testing.assert_array_equal(list(first.values()), list(second.values()))


def test_force2d_and_aggregation_reach_the_families() -> None:
    image, mask = _lesion()
    features = {"glcm": ["Contrast"]}
    glcm = importlib.import_module("medimg_core.imaging.radiomics.glcm")
    rows = {
        aggregation: extract_radiomics(
            image, mask, SPACING_LESION, _settings(features, aggregation={"glcm": aggregation})
        )["original_glcm_Contrast"]
        for aggregation in ("2_5D_avg", "3D_avg")
    }
    forced = extract_radiomics(image, mask, SPACING_LESION, _settings(features, force2D=True))
    assert forced["original_glcm_Contrast"] == rows["2_5D_avg"] != rows["3D_avg"]
    assert glcm.DEFAULT_AGGREGATION == "3D_avg"


def test_a_single_grey_level_gives_nan_texture_not_an_error() -> None:
    mask = np.zeros((6, 6, 6), dtype=bool)
    mask[1:5, 1:5, 1:5] = True
    row = extract_radiomics(
        np.full(mask.shape, 7.0), mask, (1.0, 1.0, 1.0), _settings({"glcm": ["Correlation"]})
    )
    assert math.isnan(row["original_glcm_Correlation"])


def test_an_empty_mask_after_resampling_is_an_image_error() -> None:
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[3, 3, 3] = True
    with pytest.raises(ImageError, match="vanishes when resampled"):
        extract_radiomics(
            np.ones(mask.shape),
            mask,
            (1.0, 1.0, 1.0),
            _settings(
                {"firstorder": None}, resampledPixelSpacing=[4, 4, 4], minimumROIDimensions=1
            ),
        )


def _phantom_expectations() -> list[tuple[str, str, float, float]]:
    refs = reference()
    out = []
    for spec in catalogue.catalogue():
        module = importlib.import_module(f"medimg_core.imaging.radiomics.{spec.family}")
        default = module.DEFAULT_AGGREGATION
        key = spec.tag if default is None else f"{spec.tag}_{default}"
        if key in refs:
            out.append((key, spec.column, *refs[key]))
    return out


@pytest.fixture(scope="module")
def phantom_row() -> dict[str, float]:
    # The IBSI phantom's image file holds 9 in one voxel outside the region, at (z, y, x) =
    # (2, 2, 2); only the local intensity peaks read it (see test_local_intensity.py).
    image = IMAGE.copy()
    image[2, 2, 2] = 9.0
    settings = _settings(binWidth=1)
    return extract_radiomics(image, MASK, SPACING, settings)


PHANTOM = _phantom_expectations()


def test_the_phantom_covers_every_family() -> None:
    assert len(PHANTOM) > 150
    covered = {catalogue.spec_for_tag(c.split("_3D")[0]).family for c, *_ in PHANTOM}
    assert covered == set(catalogue.FAMILIES)


@pytest.mark.parametrize(
    ("key", "column", "value", "tolerance"), PHANTOM, ids=[key for key, *_ in PHANTOM]
)
def test_the_ibsi_phantom_end_to_end_at_the_default_aggregations(
    phantom_row: dict[str, float], key: str, column: str, value: float, tolerance: float
) -> None:
    ours = phantom_row[column]
    assert agrees(ours, value, tolerance), f"{key}: ours {ours!r}, IBSI {value} ± {tolerance}"
