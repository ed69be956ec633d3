"""AppTest of the Data page: sample, upload, malformed upload, roles, join, privacy of previews."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.access import Actor, Role
from medimg_core.tables.profile import HIDDEN_SUMMARY
from medimg_core.tables.roles import Roles
from medimg_core.ui import state
from tests.app.conftest import linked_pages, messy_frame, metric_values, upload

PAGE = "pages/data.py"


def _profile(at: AppTest) -> pd.DataFrame:
    frames = [d.value for d in at.dataframe if "summary" in d.value.columns]
    assert len(frames) == 1
    return frames[0]


def _preview(at: AppTest) -> pd.DataFrame:
    frames = [d.value for d in at.dataframe if "diagnosis" in d.value.columns]
    assert len(frames) == 1
    return frames[0]


def test_empty_page_offers_upload_and_sample(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    assert not at.exception
    assert at.file_uploader(key="upload")
    assert at.button(key="use_sample")
    assert "use the built-in sample" in at.info[0].value


def test_sample_button_confirms_roles_and_profiles(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    at.button(key="use_sample").click().run()
    assert not at.exception
    assert not at.error
    roles = at.session_state[state.ROLES]
    assert (roles.label, roles.id) == ("diagnosis", "case_id")
    assert at.session_state[state.POSITIVE] == "malignant"
    assert at.success[0].value == "Roles confirmed."
    profile = _profile(at)
    assert len(profile) == 32
    case_id = profile.set_index("column").loc["case_id"]
    assert case_id["summary"] == HIDDEN_SUMMARY and case_id["role"] == "patient ID"
    assert (
        profile.set_index("column")
        .loc["mean radius", "summary"]
        .startswith("median 13.4 (IQR 11.7–15.8)")
    )
    assert "clean" in linked_pages(at)


def test_upload_proposes_roles_and_confirm_stores_them(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    at = upload(open_app(PAGE), messy_csv, "messy.csv")
    assert not at.exception
    assert not at.session_state[state.ROLES] if state.ROLES in at.session_state else True
    assert "Check the proposed roles" in at.info[0].value
    assert at.selectbox(key="role_label").value == "diagnosis"
    assert at.selectbox(key="role_quality").value == "qc"
    assert "patient_name" in at.multiselect(key="role_exclude").value
    at.button(key="confirm_roles").click().run()
    roles = at.session_state[state.ROLES]
    assert roles == Roles(
        label="diagnosis", id="case_id", quality="qc", site=None, exclude=("patient_name",)
    )
    assert at.session_state[state.POSITIVE] == "malignant"
    assert at.success[0].value == "Roles confirmed."


def test_malformed_upload_shows_one_error(open_app: Callable[..., AppTest]) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    at = upload(open_app(PAGE), png, "scan.csv")
    assert not at.exception
    assert len(at.error) == 1
    assert "'scan.csv' is a PNG image" in at.error[0].value
    assert state.TABLE not in at.session_state


def test_changed_roles_must_be_confirmed_again(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    at.button(key="use_sample").click().run()
    at.multiselect(key="role_exclude").select("mean radius").run()
    assert "press Confirm roles" in at.warning[0].value
    at.button(key="confirm_roles").click().run()
    assert at.session_state[state.ROLES].exclude == ("mean radius",)
    assert at.success[0].value == "Roles confirmed."


def test_one_column_with_two_roles_is_refused(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    at.button(key="use_sample").click().run()
    at.selectbox(key="role_site").select("diagnosis").run()
    assert not at.exception
    assert len(at.error) == 1
    assert "'diagnosis' is chosen as both the label and the site" in at.error[0].value
    assert at.button(key="confirm_roles").disabled


def test_preview_hides_identifying_columns_unless_asked(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    at = upload(open_app(PAGE), messy_csv, "messy.csv")
    at.button(key="confirm_roles").click().run()
    preview = _preview(at)
    assert "patient_name" not in preview.columns and "case_id" not in preview.columns
    assert len(preview) == 50
    profile = _profile(at).set_index("column")
    assert profile.loc["patient_name", "summary"] == HIDDEN_SUMMARY
    assert len(profile.loc["patient_name", "distribution"]) == 0
    at.checkbox(key="show_identifying").check().run()
    assert {"patient_name", "case_id"} <= set(_preview(at).columns)


def test_join_brings_in_columns_and_counts_unmatched_keys(
    open_app: Callable[..., AppTest], messy_csv: bytes
) -> None:
    at = upload(open_app(PAGE), messy_csv, "features.csv")
    ids = messy_frame()["case_id"].drop_duplicates()
    clinical = pd.DataFrame({"case_id": [*ids.iloc[:150], "WDBC-9999"], "age": 50})
    at = upload(at, clinical.to_csv(index=False).encode(), "clinical.csv", key="upload_join")
    assert at.selectbox(key="join_left_key").value == "case_id"
    assert at.selectbox(key="join_right_key").value == "case_id"
    at.button(key="join").click().run()
    assert not at.exception
    table = at.session_state[state.TABLE]
    assert "age" in table.frame.columns
    assert len(table.frame) == 151  # 150 IDs matched, one of them (row 3) twice
    metrics = metric_values(at)
    assert metrics["Matched rows"] == "151 of 202"
    assert metrics["Unmatched keys, first table"] == "51"
    assert metrics["Unmatched keys, second table"] == "1"


def _coded_csv() -> bytes:
    # The UCI Wisconsin original: class 2 = benign, 4 = malignant, and a sample code number.
    n = 40
    frame = pd.DataFrame(
        {
            "sample_code_number": range(1_000_001, 1_000_001 + n),
            "clump_thickness": [1 + (i * 7) % 10 for i in range(n)],
            "class": [2 if i % 3 else 4 for i in range(n)],
        }
    )
    return frame.to_csv(index=False).encode()


def test_numeric_codes_need_an_explicit_positive_class(open_app: Callable[..., AppTest]) -> None:
    at = upload(open_app(PAGE), _coded_csv(), "wisconsin.csv")
    at.selectbox(key="role_label").select("class").run()
    assert not at.exception
    assert at.selectbox(key="role_positive").value is None
    assert at.button(key="confirm_roles").disabled
    assert any("codes 2 and 4, which do not say" in w.value for w in at.warning)
    at.text_input(key="class_name_class_2").input("benign")
    at.text_input(key="class_name_class_4").input("malignant").run()
    at.selectbox(key="role_positive").set_value(4).run()
    # The sample code number is not silently a feature: the page says so and offers a choice.
    assert any("look like patient or record numbers" in w.value for w in at.warning)
    at.button(key="confirm_roles").click().run()
    roles = at.session_state[state.ROLES]
    assert at.session_state[state.POSITIVE] == 4
    assert roles.class_names == (("2", "benign"), ("4", "malignant"))
    assert roles.keep_as_feature == ()


def test_a_feature_can_be_marked_as_a_reader_assessment(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    at.button(key="use_sample").click().run()
    reader = at.multiselect(key="role_reader")
    assert "diagnosis" not in reader.options
    reader.select("mean radius").run()
    at.button(key="confirm_roles").click().run()
    assert not at.exception
    roles = at.session_state[state.ROLES]
    assert roles.reader == ("mean radius",)
    assert "mean radius" not in roles.non_feature_columns()


def test_a_viewer_sees_the_uploaders_disabled_with_who_may(
    open_app: Callable[..., AppTest],
) -> None:
    at = open_app(PAGE)
    at.session_state[state.ACTOR] = Actor("vera", Role.VIEWER, frozenset({"default"}), "default")
    at.run()
    assert not at.exception
    note = "Only analysts and admins can upload data; you are signed in as vera (viewer)."
    assert note in [c.value for c in at.caption]
    at.radio(key="data_kind").set_value("images").run()
    assert not at.exception
    assert note in [c.value for c in at.caption]


def test_an_excel_bomb_is_refused_with_the_setting_named(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import zipfile

    monkeypatch.setenv("MEDIMG_MAX_EXCEL_UNPACKED_MB", "1")
    plain = io.BytesIO()
    pd.DataFrame({"x": [1.0], "diagnosis": ["a"]}).to_excel(plain, index=False)
    row = b'<row><c t="n"><v>1</v></c></row>'
    sheet = b"<worksheet><sheetData>" + row * (2**21 // len(row)) + b"</sheetData></worksheet>"
    source, bomb = zipfile.ZipFile(plain), io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            is_sheet = info.filename == "xl/worksheets/sheet1.xml"
            out.writestr(info.filename, sheet if is_sheet else source.read(info.filename))
    at = upload(open_app(PAGE), bomb.getvalue(), "bomb.xlsx")
    assert not at.exception
    assert len(at.error) == 1
    assert "MEDIMG_MAX_EXCEL_UNPACKED_MB" in at.error[0].value
    assert state.TABLE not in at.session_state


def test_formula_cells_without_a_result_are_noted(open_app: Callable[..., AppTest]) -> None:
    import io

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["size", "twice", "diagnosis"])
    for i in range(12):
        sheet.append([i + 0.5, f"=A{i + 2}*2", "benign" if i % 2 else "malignant"])
    buffer = io.BytesIO()
    book.save(buffer)
    at = upload(open_app(PAGE), buffer.getvalue(), "formulas.xlsx")
    assert not at.exception
    assert any("12 formula cell(s) have no saved result" in c.value for c in at.caption)
