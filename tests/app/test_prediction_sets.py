"""AppTest of the prediction sets: a case's set on Explain, the set column on Predict and in
its CSV, each with the coverage on held-out test cases next to the target."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.modelling import training
from medimg_core.modelling.conformal import (
    CONFIDENCES,
    conformal_summary,
    coverage_frame,
    fit_conformal,
)
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store import persistence
from medimg_core.store.cases import build_cases
from medimg_core.tables import cleaning, loading
from medimg_core.tables.roles import Roles
from medimg_core.ui import state, widgets
from medimg_core.ui.session import ActiveModel
from tests.app.conftest import APP, RUN_TIMEOUT


@pytest.fixture(scope="module")
def active() -> ActiveModel:
    """A logistic regression on the sample with its cases as saving stores them (with the
    cross-validated and test probabilities)."""
    table = loading.load_sample()
    roles = Roles(label="diagnosis", id="case_id")
    report = cleaning.clean(table.frame, roles)
    result = training.train(
        report.data,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=50),
        positive="malignant",
    )
    cases = build_cases(result, report.data)
    card = persistence.build_card(
        result,
        cleaning=report,
        dataset_name=table.name,
        data=cases[cases["partition"] == "development"],
    )
    return ActiveModel(
        model=result.model, card=card, run_id=None, cv=result.cv, test=result.test, cases=cases
    )


def open_page(page: str, active: ActiveModel) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
    at.session_state[state.ACTIVE] = active
    at.switch_page(page)
    return at.run()


def test_explain_shows_the_case_set_and_the_coverage(app_env: Path, active: ActiveModel) -> None:
    at = open_page("pages/explain.py", active)
    assert not at.exception
    (shown,) = [m for m in at.metric if m.label == "Prediction set (90%)"]
    # The case shown is the first of the list picked by default; its set from its stored
    # probability, as calibrated directly.
    assert active.cases is not None
    fitted = fit_conformal(active.model, active.cases, confidence=0.9)
    possible = set(fitted.set_texts(active.cases["p_positive"].to_numpy()))
    assert shown.value in possible
    assert shown.value.startswith("{")
    texts = " ".join(m.value for m in at.markdown)
    assert "consistent with this case at 90% confidence" in texts
    summary = conformal_summary(active.model, active.cases, confidence=0.9)
    assert any(summary.sentence in c.value for c in at.caption)
    assert f"{summary.test_coverage:.1%}" in summary.sentence

    at.selectbox(key="explain_set_confidence").set_value(0.95).run()
    assert not at.exception
    assert any(m.label == "Prediction set (95%)" for m in at.metric)
    wider = conformal_summary(active.model, active.cases, confidence=0.95)
    assert any(wider.sentence in c.value for c in at.caption)


def test_predict_table_and_csv_carry_the_set_column(
    app_env: Path, active: ActiveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[bytes] = []
    real = widgets.to_safe_csv

    def spy(df: pd.DataFrame, index: bool = False) -> bytes:
        data = real(df, index=index)
        made.append(data)
        return data

    monkeypatch.setattr(widgets, "to_safe_csv", spy)
    at = open_page("pages/predict.py", active)
    at.button(key="predict_try_sample").click().run()
    assert not at.exception
    table = next(f.value for f in at.dataframe if "decision" in f.value.columns)
    assert "Prediction set (90%)" in table.columns
    assert active.cases is not None
    fitted = fit_conformal(active.model, active.cases, confidence=0.9)
    expected = fitted.set_texts(table["P(malignant)"].to_numpy())
    assert table["Prediction set (90%)"].tolist() == expected
    # The held-out cases are test cases: their sets are those of their stored probabilities.
    test = active.cases[active.cases["partition"] == "test"].head(len(table))
    assert expected == fitted.set_texts(test["p_positive"].to_numpy())
    summary = conformal_summary(active.model, active.cases, confidence=0.9)
    assert any(summary.sentence in c.value for c in at.caption)

    exported = pd.read_csv(io.BytesIO(made[-1]))
    assert exported["Prediction set (90%)"].tolist() == expected
    assert {"run_id", "threshold", "positive_class"} <= set(exported.columns)

    at.selectbox(key="predict_sets_confidence").set_value(0.8).run()
    assert not at.exception
    table = next(f.value for f in at.dataframe if "decision" in f.value.columns)
    assert "Prediction set (80%)" in table.columns and "Prediction set (90%)" not in table
    exported = pd.read_csv(io.BytesIO(made[-1]))
    assert exported["Prediction set (80%)"].tolist() == fitted.at(0.8).set_texts(
        table["P(malignant)"].to_numpy()
    )


def test_a_model_without_stored_probabilities_says_why(app_env: Path, active: ActiveModel) -> None:
    assert active.cases is not None
    bare = ActiveModel(
        model=active.model,
        card=active.card,
        run_id=None,
        cv=active.cv,
        test=active.test,
        cases=active.cases.drop(columns="p_positive"),
    )
    at = open_page("pages/predict.py", bare)
    at.button(key="predict_try_sample").click().run()
    assert not at.exception and not at.error
    table = next(f.value for f in at.dataframe if "decision" in f.value.columns)
    assert not any(str(c).startswith("Prediction set") for c in table.columns)
    assert any("No prediction sets" in c.value for c in at.caption)


def test_evaluate_shows_the_coverage_table(app_env: Path, active: ActiveModel) -> None:
    at = open_page("pages/evaluate.py", active)
    assert not at.exception
    assert active.cases is not None
    (table,) = [f.value for f in at.dataframe if "Test coverage (95% CI)" in f.value.columns]
    expected = coverage_frame(
        [conformal_summary(active.model, active.cases, confidence=c) for c in CONFIDENCES]
    )
    pd.testing.assert_frame_equal(table.reset_index(drop=True), expected, check_dtype=False)
    assert any("cross-conformal" in c.value for c in at.caption)
