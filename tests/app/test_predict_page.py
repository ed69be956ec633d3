"""AppTest of the Predict page: the guard, held-out cases, an upload, schema errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.reporting import review
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
        "ood_flag",
        "reason_1",
        "reason_2",
        "reason_3",
        "ood_range",
        "ood_features",
        "ood_distance",
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


def test_predict_says_where_the_threshold_came_from(
    predict_app: Callable[..., AppTest], active: ActiveModel
) -> None:
    at = predict_app()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert f"Decision threshold {active.model.threshold:.3f} saved with the model: rule “" in (
        captions
    )
    assert "”, chosen on cross-validated development cases." in captions
    assert not at.warning

    at = predict_app(**{state.THRESHOLD: 0.7, state.THRESHOLD_SOURCE: "test"})
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert (
        "threshold 0.700: set by the user on the Evaluate page from the held-out test cases"
        in captions
    )
    assert "the test figures are optimistic" in captions
    assert any("makes its test figures optimistic" in w.value for w in at.warning)


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
    # The model imputes missing values inside its pipeline (the default plan), so the case with
    # a gap is scored, and the page says that a value was filled in.
    assert metrics["Cases in the file"] == "30"
    assert metrics["Scored"] == "30"
    warning = " ".join(w.value for w in at.warning)
    assert "patient\\_name" in warning
    assert "missing" in warning.lower()
    tables = [frame.value for frame in at.dataframe]
    table = next(t for t in tables if len(t) == 30)
    assert "patient_name" not in table.columns
    assert not table.astype(str).apply(lambda c: c.str.contains("Person")).any().any()


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


def test_unusual_cases_are_flagged_and_the_model_can_abstain(
    predict_app: Callable[..., AppTest],
) -> None:
    frame = load_sample().frame.iloc[-12:].drop(columns=["diagnosis"]).copy()
    frame.loc[frame.index[0], "worst area"] = 100_000.0
    at = predict_app()
    at.file_uploader(key="predict_upload").set_value(
        ("new.csv", frame.to_csv(index=False).encode(), "text/csv")
    ).run()
    assert not at.exception
    metrics = metric_map(at)
    table = at.dataframe[-1].value
    assert table["ood_flag"].iloc[0] and table["ood_range"].iloc[0]
    assert "worst area" in table["ood_features"].iloc[0]
    flagged = int(table["ood_flag"].sum())
    assert metrics["Atypical"] == str(flagged)
    assert metrics["No decision"] == "0"
    assert any(f"{flagged} of 12 cases are unlike the training data" in w.value for w in at.warning)
    at.checkbox(key="predict_abstain_ood").check().run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert (table.loc[table["ood_flag"], "decision"] == "abstained").all()
    assert table["abstain_reason"].iloc[0].startswith("no decision — refer to a reader")
    assert metric_map(at)["No decision"] == str(flagged)
    at.checkbox(key="predict_abstain_band_on").check().run()
    assert not at.exception
    low, high = at.slider(key="predict_abstain_band").value
    table = at.dataframe[-1].value
    p = table["P(malignant)"]
    in_band = (p >= low) & (p <= high)
    assert (table.loc[in_band | table["ood_flag"], "decision"] == "abstained").all()
    assert (table.loc[~in_band & ~table["ood_flag"], "decision"] != "abstained").all()
    assert any(b.proto.label == "Download predictions (CSV)" for b in at.get("download_button"))


def test_the_downloaded_csv_is_stamped(active: ActiveModel) -> None:
    scored = review.score_new_cases(
        active.model, load_sample().frame.iloc[-5:].drop(columns=["diagnosis"])
    )
    exported = explaining.export_table(active, scored)
    stamp = ["run_id", "model_sha256", "threshold", "positive_class", "threshold_source"]
    assert list(exported.columns[:5]) == stamp
    sha = active.card.get("model_sha256")
    expected = active.run_id or (f"model-sha256:{sha}" if sha else "unknown")
    assert exported["run_id"].eq(expected).all()
    assert exported["threshold"].eq(active.model.threshold).all()
    assert exported["positive_class"].eq("malignant").all()
    assert exported["threshold_source"].str.contains("saved with the model").all()
    assert {"ood_flag", "ood_distance", "decision"} <= set(exported.columns)


def test_the_safety_columns_sit_next_to_the_decision(predict_app: Callable[..., AppTest]) -> None:
    at = predict_app()
    at.file_uploader(key="predict_upload").set_value(("new.csv", new_cases_csv(), "text/csv")).run()
    assert not at.exception
    table = next(frame.value for frame in at.dataframe if "decision" in frame.value.columns)
    columns = list(table.columns)
    assert columns[columns.index("decision") + 1] == "ood_flag"
