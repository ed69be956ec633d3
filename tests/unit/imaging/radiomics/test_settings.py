"""Radiomics settings: PyRadiomics' parameter layout, strict checking, a versioned round trip."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from medimg_core.errors import ConfigError
from medimg_core.imaging.radiomics import catalogue
from medimg_core.imaging.radiomics.settings import SCHEMA_VERSION, RadiomicsSettings

EXAMPLE = Path(__file__).resolve().parents[4] / "docs" / "radiomics.example.yaml"

PYRADIOMICS_CT = """
imageType:
  Original: {}
featureClass:
  shape:
  firstorder: []
  glcm: [Contrast, JointEnergy]
  gldm:
setting:
  binWidth: 25
  label: 1
  interpolator: 'sitkBSpline'
  resampledPixelSpacing: [1, 1, 0]
  resegmentRange: [-1000, 400]
  geometryTolerance: 0.0001
  additionalInfo: true
  force2D: false
  minimumROIDimensions: 2
"""


def test_defaults_are_pyradiomics_defaults() -> None:
    s = RadiomicsSettings()
    assert (s.bin_width, s.bin_count, s.interpolator, s.label) == (25.0, None, "bspline", 1)
    assert (s.resampled_spacing, s.resegment_range, s.force_2d, s.gldm_a) == (None, None, False, 0)
    assert (s.minimum_roi_dimensions, s.pad_distance, s.normalize) == (2, 5, False)
    assert s.families == tuple(catalogue.FAMILIES)
    assert all(names is None for _, names in s.feature_classes)


def test_the_shipped_example_holds_the_defaults() -> None:
    assert RadiomicsSettings.from_yaml(EXAMPLE) == RadiomicsSettings()
    assert RadiomicsSettings.from_yaml(str(EXAMPLE)) == RadiomicsSettings()


def test_an_empty_file_gives_the_defaults() -> None:
    assert RadiomicsSettings.from_yaml("") == RadiomicsSettings()
    assert RadiomicsSettings.from_mapping({"setting": None}) == RadiomicsSettings()


def test_a_pyradiomics_ct_file_is_read() -> None:
    s = RadiomicsSettings.from_yaml(PYRADIOMICS_CT)
    assert s.resampled_spacing == (1.0, 1.0, 0.0)
    assert s.spacing_zyx == (0.0, 1.0, 1.0)
    assert s.resegment_range == (-1000.0, 400.0)
    assert s.geometry_tolerance == pytest.approx(1e-4)
    # Classes come back in catalogue order, gldm as medimg's ngldm.
    assert s.families == ("morphology", "statistics", "glcm", "ngldm")
    assert dict(s.feature_classes)["glcm"] == ("Contrast", "JointEnergy")
    assert dict(s.feature_classes)["statistics"] is None


def test_bin_count_and_interpolator_names() -> None:
    s = RadiomicsSettings.from_mapping(
        {"setting": {"binCount": 32, "interpolator": "sitkNearestNeighbor"}}
    )
    assert (s.bin_count, s.interpolator) == (32, "nearest")
    assert RadiomicsSettings.from_mapping({"setting": {"interpolator": "linear"}}).interpolator == (
        "linear"
    )


def test_class_aliases() -> None:
    by_alias = RadiomicsSettings.from_mapping({"featureClass": {"ngldm": None}})
    by_pyradiomics = RadiomicsSettings.from_mapping({"featureClass": {"gldm": None}})
    assert by_alias == by_pyradiomics
    assert by_alias.families == ("ngldm",)
    assert RadiomicsSettings.from_mapping({"featureClass": {"localintensity": None}}).families == (
        "local_intensity",
    )


def test_force2d_chooses_the_2_5d_aggregations_and_an_explicit_one_wins() -> None:
    s = RadiomicsSettings.from_mapping(
        {"setting": {"force2D": True, "aggregation": {"glszm": "3D", "glcm": "2D_comb"}}}
    )
    assert s.aggregation == (("glcm", "2D_comb"), ("glszm", "3D"))
    assert s.aggregation_for("glcm") == "2D_comb"
    assert s.aggregation_for("glrlm") == "2_5D_avg"
    assert s.aggregation_for("ngtdm") == "2_5D"
    assert s.aggregation_for("statistics") is None
    assert RadiomicsSettings().aggregation_for("glcm") is None


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"voxelSetting": {"kernelRadius": 1}}, "voxel-based maps are not supported"),
        ({"imageType": {"LoG": {"sigma": [1.0]}}}, "imageType 'LoG' is not supported; only"),
        ({"imageType": {"Wavelet": {}}}, "'Wavelet' is not supported.*Remove it"),
        ({"imageType": {"Original": {"binWidth": 5}}}, "Move them to the 'setting' section"),
        ({"imageType": ["Original"]}, "imageType: \\['Original'\\] is not valid"),
        ({"featureClass": {"shape2D": None}}, "shape2D: 2-D shape features are not supported"),
        (
            {"featureClass": {"glcmm": None}},
            "unknown feature class 'glcmm'; use one of shape, .*glcm, .*ngtdm",
        ),
        ({"featureClass": {"glcm": ["Contrasts"]}}, "unknown feature 'Contrasts'.*JointEnergy"),
        ({"featureClass": {"glcm": "Contrast"}}, "give a list of feature names"),
        ({"featureClass": {"shape": None, "morphology": None}}, "given twice"),
        ({"featureClass": ["glcm"]}, "featureClass: \\['glcm'\\] is not valid"),
        ({"settings": {}}, "Unknown section 'settings'"),
        ({"setting": {"binwidth": 25}}, "Unknown setting 'binwidth'.*binWidth"),
        ({"setting": {"binWidth": 0}}, "binWidth: 0 is not valid; give a number greater than 0"),
        ({"setting": {"binWidth": True}}, "binWidth: True is not valid"),
        ({"setting": {"binWidth": "25"}}, "binWidth: '25' is not valid"),
        ({"setting": {"binWidth": float("nan")}}, "binWidth: nan is not valid"),
        ({"setting": {"binCount": 2.5}}, "binCount: 2.5 is not valid; give a whole number"),
        ({"setting": {"resampledPixelSpacing": [1, 1]}}, "give three spacings \\[x, y, z\\]"),
        ({"setting": {"resampledPixelSpacing": [1, -1, 1]}}, "-1 is not valid; give a number at"),
        ({"setting": {"interpolator": "sitkGaussian"}}, "'sitkGaussian' is not supported; use"),
        ({"setting": {"resegmentRange": [400, -1000]}}, "low end above its high end"),
        ({"setting": {"resegmentRange": [1, 2, 3]}}, "give \\[low\\] or \\[low, high\\]"),
        ({"setting": {"resegmentMode": "sigma"}}, "'sigma' is not supported; only 'absolute'"),
        ({"setting": {"label": 0}}, "label: 0 is not valid; give a whole number of at least 1"),
        ({"setting": {"force2D": "yes"}}, "force2D: 'yes' is not valid; give true or false"),
        ({"setting": {"distances": [1, 2]}}, "distances: \\[1, 2\\] is not supported"),
        ({"setting": {"gldm_a": -1}}, "gldm_a: -1 is not valid"),
        ({"setting": {"minimumROIDimensions": 4}}, "give a whole number from 1 to 3"),
        ({"setting": {"padDistance": -1}}, "padDistance: -1 is not valid"),
        (
            {"setting": {"normalize": True}},
            "normalize: true is not supported.*not part of the IBSI",
        ),
        ({"setting": {"normalizeScale": 100}}, "normalizeScale: intensity normalisation"),
        ({"setting": {"weightingNorm": "euclidean"}}, "weightingNorm: distance-weighted"),
        ({"setting": {"symmetricalGLCM": False}}, "symmetricalGLCM: False is not supported"),
        ({"setting": {"aggregation": {"glcm": "3D"}}}, "'3D' is not an IBSI aggregation of glcm"),
        ({"setting": {"aggregation": {"firstorder": "3D"}}}, "firstorder is not a texture class"),
        ({"setting": {"aggregation": ["glcm"]}}, "give a mapping of texture class"),
        ({"setting": [1, 2]}, "'setting' must be a mapping"),
        ({"version": "medimg-radiomics/0"}, "not a radiomics settings version"),
        ([1, 2], "must be a mapping with the sections"),
    ],
)
def test_bad_settings_are_refused_with_the_key_and_the_fix(data: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RadiomicsSettings.from_mapping(data)


def test_bad_yaml_and_missing_files() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        RadiomicsSettings.from_yaml("setting: [binWidth: 25")
    with pytest.raises(ConfigError, match="Cannot read the radiomics settings file"):
        RadiomicsSettings.from_yaml("/nonexistent/params.yaml")
    with pytest.raises(ConfigError, match="must be YAML text or a file path"):
        RadiomicsSettings.from_yaml(42)  # type: ignore[arg-type]


def test_a_settings_file_is_read_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "params.yml"
    path.write_text("setting:\n  binWidth: 10\n", encoding="utf-8")
    assert RadiomicsSettings.from_yaml(path).bin_width == 10.0


def test_to_dict_is_versioned_json_and_round_trips() -> None:
    s = RadiomicsSettings.from_yaml(PYRADIOMICS_CT)
    data = s.to_dict()
    assert (data["version"], data["kind"]) == (SCHEMA_VERSION, "radiomics")
    assert data["featureClass"][catalogue.FAMILIES["ngldm"]] is None
    assert RadiomicsSettings.from_dict(json.loads(json.dumps(data))) == s
    assert RadiomicsSettings.from_yaml(s.to_yaml()) == s


def test_from_dict_refuses_what_to_dict_did_not_write() -> None:
    with pytest.raises(ConfigError, match="Not saved radiomics settings"):
        RadiomicsSettings.from_dict({"setting": {}})
    with pytest.raises(ConfigError, match="kind: 'model' is not radiomics settings"):
        RadiomicsSettings.from_mapping({"kind": "model"})


_KEYS = st.sampled_from(
    [
        "setting",
        "imageType",
        "featureClass",
        "voxelSetting",
        "binWidth",
        "binCount",
        "resampledPixelSpacing",
        "interpolator",
        "resegmentRange",
        "resegmentMode",
        "label",
        "force2D",
        "distances",
        "gldm_a",
        "aggregation",
        "Original",
        "glcm",
        "shape",
        "gldm",
        "Contrast",
        "version",
        "kind",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["3D", "2_5D_avg", "sitkLinear", "absolute", "Original", SCHEMA_VERSION])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_KEYS | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(_KEYS, _VALUES, max_size=4) | _VALUES)
def test_arbitrary_mappings_give_settings_or_a_config_error(data: object) -> None:
    with contextlib.suppress(ConfigError):
        RadiomicsSettings.from_mapping(data)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=200) | st.builds(lambda d: json.dumps(d), _VALUES))
def test_arbitrary_yaml_gives_settings_or_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        RadiomicsSettings.from_yaml(text)


_FEATURE_NAMES = {f: [s.name for s in catalogue.catalogue(f)] for f in catalogue.FAMILIES}
_CLASSES = {v: k for k, v in catalogue.FAMILIES.items()}


@st.composite
def _valid_layouts(draw: st.DrawFn) -> dict[str, object]:
    setting: dict[str, object] = {}
    if draw(st.booleans()):
        setting["binWidth"] = draw(st.floats(0.01, 1e4))
    if draw(st.booleans()):
        setting["binCount"] = draw(st.integers(1, 256))
    if draw(st.booleans()):
        setting["resampledPixelSpacing"] = draw(st.lists(st.floats(0, 10), min_size=3, max_size=3))
    if draw(st.booleans()):
        low = draw(st.floats(-2000, 2000))
        setting["resegmentRange"] = draw(st.sampled_from([[low], [low, low + 100]]))
    setting["interpolator"] = draw(st.sampled_from(["sitkLinear", "nearest", "sitkBSpline"]))
    setting["force2D"] = draw(st.booleans())
    setting["gldm_a"] = draw(st.integers(0, 3))
    setting["label"] = draw(st.integers(1, 10))
    setting["aggregation"] = {"glcm": draw(st.sampled_from(["2D_avg", "3D_comb"]))}
    classes = draw(st.lists(st.sampled_from(sorted(_CLASSES)), unique=True, max_size=4))
    feature_class: dict[str, object] = {}
    for name in classes:
        names = _FEATURE_NAMES[_CLASSES[name]]
        feature_class[name] = draw(st.none() | st.lists(st.sampled_from(names), max_size=3))
    return {"setting": setting, "imageType": {"Original": {}}, "featureClass": feature_class}


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=_valid_layouts())
def test_valid_settings_round_trip_through_dict_and_yaml(layout: dict[str, object]) -> None:
    s = RadiomicsSettings.from_mapping(layout)
    assert RadiomicsSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert RadiomicsSettings.from_yaml(s.to_yaml()) == s
