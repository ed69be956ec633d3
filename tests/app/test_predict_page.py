"""AppTest of the Predict page: the guard, held-out cases, an upload, schema errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.tables.loading import load_sample
from medimg_core.ui import explaining, state
from medimg_core.ui.session import ActiveModel
from medimg_core.ui.workflow import SAMPLE_BUTTON
from tests.app.conftest import APP, ROOT, RUN_TIMEOUT
from tests.app.test_explain_page import run_in_error_boundary, sample_active

PAGE = "pages/predict.py"


@pytest.fixture(scope="module")
def active() -> ActiveModel:
    return sample_active()


@pytest.fixture
def predict_app(app_env: Path, active: ActiveModel) -> Callable[..., AppTest]:
    def open_page(**session: object) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
        at.session_state[state.ACTIVE] = active
        for key, value in session.items():
            at.session_state[key] = value
        at.switch_page(PAGE)
        return at.run()

    return open_page


def metric_map(at: AppTest) -> dict[str, str]:
    return {m.label: str(m.value) for m in at.metric}


def test_guard_offers_the_sample(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    assert not at.exception
    assert any("no data yet" in i.value.lower() for i in at.info)
    assert any(b.label == SAMPLE_BUTTON for b in at.button)


def test_waits_for_cases(predict_app: Callable[..., AppTest]) -> None:
    at = predict_app()
    assert not at.exception
    assert any("Upload a file of new cases" in i.value for i in at.info)
    assert not at.get("download_button")


def test_held_out_cases_are_scored(predict_app: Callable[..., AppTest]) -> None:
    at = predict_app()
    at.button(key="predict_try_sample").click().run()
    assert not at.exception
    metrics = metric_map(at)
    assert metrics["Cases in the file"] == "20"
    assert metrics["Scored"] == "20"
    assert metrics["Not scored"] == "0"
    table = at.dataframe[-1].value
    assert list(table.columns) == [
        "case_id",
        "P(malignant)",
        "decision",
        "reason_1",
        "reason_2",
        "reason_3",
    ]
    assert table["P(malignant)"].between(0, 1).all()
    assert table["reason_1"].str.contains(r"\(\+|\(-").all()
    assert any(b.proto.label == "Download predictions (CSV)" for b in at.get("download_button"))
    assert any(str(c.proto.id).endswith("predict_distribution") for c in at.get("plotly_chart"))


def test_threshold_from_the_evaluate_page_decides(predict_app: Callable[..., AppTest]) -> None:
    at = predict_app(**{state.THRESHOLD: 0.999})
    at.button(key="predict_try_sample").click().run()
    assert not at.exception
    table = at.dataframe[-1].value
    called = table["P(malignant)"] >= 0.999
    assert (table.loc[called, "decision"] == "malignant").all()
    assert (table.loc[~called, "decision"] == "benign").all()
    assert metric_map(at)["Called malignant"] == str(int(called.sum()))


def new_cases_csv(n: int = 30) -> bytes:
    frame = load_sample().frame.iloc[-n:].drop(columns=["diagnosis"]).copy()
    frame["patient_name"] = [f"Person {i}" for i in range(n)]
    frame.loc[frame.index[0], "mean texture"] = None
    return frame.to_csv(index=False).encode("utf-8")


def test_uploaded_cases_are_checked_cleaned_and_scored(
    predict_app: Callable[..., AppTest],
) -> None:
    at = predict_app()
    at.file_uploader(key="predict_upload").set_value(("new.csv", new_cases_csv(), "text/csv")).run()
    assert not at.exception
    metrics = metric_map(at)
    assert metrics["Cases in the file"] == "30"
    assert metrics["Scored"] == "29"
    assert metrics["Not scored"] == "1"
    warning = " ".join(w.value for w in at.warning)
    assert "patient\\_name" in warning
    table = at.dataframe[-2].value
    assert "patient_name" not in table.columns
    assert not table.astype(str).apply(lambda c: c.str.contains("Person")).any().any()
    not_scored = at.dataframe[-1].value
    assert list(not_scored.columns) == ["case_id", "reason"]


def test_missing_columns_are_one_clear_error(predict_app: Callable[..., AppTest]) -> None:
    frame = load_sample().frame.iloc[:10].drop(columns=["diagnosis", "mean radius", "worst area"])
    at = predict_app()
    at.file_uploader(key="predict_upload").set_value(
        ("partial.csv", frame.to_csv(index=False).encode(), "text/csv")
    ).run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "cannot be scored" in message
    assert "mean radius" in message and "worst area" in message
    assert not at.get("download_button")


def test_unreadable_upload_is_one_clear_error(app_env: Path, active: ActiveModel) -> None:
    at = AppTest.from_function(
        run_in_error_boundary, args=(str(ROOT / PAGE),), default_timeout=RUN_TIMEOUT
    )
    at.session_state[state.ACTIVE] = active
    at.run()
    at.file_uploader(key="predict_upload").set_value(
        ("scan.csv", bytes(range(256)) * 40, "text/csv")
    ).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "scan.csv" in at.error[0].value or "file" in at.error[0].value.lower()
    assert explaining.NEW_CASES not in at.session_state
