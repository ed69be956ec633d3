"""3D studies through the pages: Data (upload a ZIP of NIfTI volumes with masks, the case
viewer, the feature catalogue, a settings YAML), Explain (the case's slices with its mask) and
Predict (new cases)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.ui import state
from tests.app.conftest import upload
from tests.app.test_images_pages import chart_keys, walk_to_model
from tests.unit.imaging.synthetic_volumes import study_zip

N_PER_CLASS = 6
SMALL_YAML = b"""\
setting:
  binWidth: 25
featureClass:
  shape:
  firstorder:
  glcm: [Contrast, JointEnergy]
"""


@pytest.fixture(scope="module")
def lesions() -> bytes:
    return study_zip(N_PER_CLASS, seed=31)


def volumes_data_page(
    open_app: Callable[..., AppTest], data: bytes, *, params: bytes | None = SMALL_YAML
) -> AppTest:
    at = open_app("pages/data.py")
    at.radio(key="data_kind").set_value("images").run()
    if params is not None:
        at = upload(at, params, "radiomics.yaml", key="radiomics_settings_upload")
    return upload(at, data, "lesions.zip", key="upload_images")


def test_a_zip_of_volumes_with_masks_becomes_a_radiomics_table(
    open_app: Callable[..., AppTest], lesions: bytes
) -> None:
    at = volumes_data_page(open_app, lesions)
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cases"] == str(2 * N_PER_CLASS)
    assert metrics["Classes"] == "2"
    table = at.session_state[state.TABLE]
    assert "original_glcm_Contrast" in table.frame.columns
    assert "original_glcm_ClusterShade" not in table.frame.columns  # the YAML's choice
    assert "volumes_viewer_slices" in chart_keys(at)
    # Case names stay hidden until asked for.
    assert at.selectbox(key="volumes_case").value == 0
    shown = at.selectbox(key="volumes_case").options[0]
    assert shown.startswith("Case #1") and "ben00" not in shown
    meanings = next(d.value for d in at.dataframe if "IBSI code" in d.value.columns)
    assert {"feature", "IBSI code", "PyRadiomics", "meaning"} <= set(meanings.columns)
    assert meanings["IBSI code"].str.len().eq(4).all()


def test_the_window_can_be_set_by_hand(open_app: Callable[..., AppTest], lesions: bytes) -> None:
    at = volumes_data_page(open_app, lesions)
    at.selectbox(key="volumes_viewer_window").set_value("Custom").run()
    assert not at.exception
    level = at.number_input(key="volumes_viewer_level_Custom")
    assert not level.disabled
    level.set_value(10.0).run()
    assert not at.exception


def test_a_bad_settings_file_is_one_clear_error(
    open_app: Callable[..., AppTest], lesions: bytes
) -> None:
    at = open_app("pages/data.py")
    at.radio(key="data_kind").set_value("images").run()
    at = upload(
        at, b"setting:\n  binWidht: 25\n", "radiomics.yaml", key="radiomics_settings_upload"
    )
    assert not at.exception
    assert any("binWidht" in e.value for e in at.error)


def test_train_then_explain_shows_the_slices_and_predict_scores_new_cases(
    open_app: Callable[..., AppTest], lesions: bytes
) -> None:
    # One training serves both pages (training is most of the cost of these tests).
    at = walk_to_model(volumes_data_page(open_app, lesions))
    at.switch_page("pages/explain.py")
    at.run()
    assert not at.exception
    keys = set(chart_keys(at))
    assert {"explain_waterfall", "explain_case_slices"} <= keys
    captions = " ".join(c.value for c in at.caption)
    assert "segmentation's outline" in captions
    assert "occlusion map would need" in captions

    at.switch_page("pages/predict.py")
    at.run()
    new = study_zip(2, seed=77, labelled=False)
    at = upload(at, new, "new-cases.zip", key="predict_upload")
    assert not at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Scored"] == "4"
