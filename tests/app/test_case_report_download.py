"""The Explain page's case report as downloaded: small, one threshold, image-free for tables,
no identifying data, and the case's prediction set when the stored cases allow one."""

from __future__ import annotations

import re
from typing import Any

import plotly.graph_objects as go
import pytest

from medimg_core.reporting import case_report as case_report_module
from medimg_core.reporting import review
from medimg_core.ui import case_reports, explaining
from medimg_core.ui.session import ActiveModel
from tests.app.test_explain_page import sample_active


@pytest.fixture(scope="module")
def active() -> ActiveModel:
    model = sample_active()
    cases = model.cases
    assert cases is not None and model.cv is not None and model.test is not None
    # As stored with a saved run: out-of-fold P(positive) for development rows, the final
    # model's for test rows (training keeps each split in data order).
    cases = cases.copy()
    for partition, evaluation in (("development", model.cv), ("test", model.test)):
        rows = cases["partition"] == partition
        cases.loc[rows, "p_positive"] = evaluation.y_score
    return ActiveModel(
        model=model.model,
        card=model.card,
        run_id=None,
        cv=model.cv,
        test=model.test,
        cases=cases,
    )


def a_view(active: ActiveModel, partition: str = "test", cut: float | None = None) -> Any:
    evaluation = active.test if partition == "test" else active.cv
    assert evaluation is not None and active.cases is not None
    table = review.review_table(
        evaluation, active.cases, id_column="case_id", threshold=cut or active.model.threshold
    )
    return explaining.case_view(active, table.index[0], 1, review_table=table)


def test_one_threshold_the_models_even_when_the_page_tries_another(
    active: ActiveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[go.Figure] = []

    def capture(fig: go.Figure, **options: Any) -> bytes:
        drawn.append(fig)
        return b"<svg/>"

    monkeypatch.setattr(case_report_module, "figure_image", capture)
    model_cut = float(active.model.threshold)
    page_cut = 0.2 if model_cut > 0.3 else 0.8
    view = a_view(active, cut=page_cut)
    page = case_reports.case_report(active, view, "note", page_cut)
    assert f"<th>Decision threshold</th><td>{model_cut:.2f} (the model's" in page
    # The page's cut appears nowhere as a number of its own (a SHAP value such as -0.208 may
    # contain its digits).
    assert not re.search(rf"(?<![\d.\-]){re.escape(f'{page_cut:.2f}')}(?!\d)", page)
    gauge = next(f for f in drawn if f.data and f.data[0].type == "indicator")
    assert gauge.data[0].gauge.threshold.value == pytest.approx(model_cut)
    # The call and the outcome agree, at the model's threshold.
    called = view.probability >= model_cut
    assert ("called malignant</span>" in page) == called
    positive = str(view.true_label) == "malignant"
    outcome = ("T" if called == positive else "F") + ("P" if called else "N")
    assert f"({outcome})</td>" in page


def test_no_identifying_data_and_human_dates(
    active: ActiveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(case_report_module, "figure_image", lambda fig, **o: b"<svg/>")
    view = a_view(active)
    page = case_reports.case_report(active, view, "note", active.model.threshold)
    assert active.cases is not None
    # The ID column is named only where the validation says it grouped by patient.
    assert page.count("case_id") == page.count("patient (case_id)") == 1
    for value in active.cases["case_id"].astype(str):
        assert f">{value}<" not in page and f" {value} " not in page
    assert view.label not in page
    assert "Logistic regression" in page and "logreg" not in page
    assert " UTC" in page


def test_the_prediction_set_is_included_with_its_test_coverage(
    active: ActiveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimg_core.modelling import conformal

    monkeypatch.setattr(case_report_module, "figure_image", lambda fig, **o: b"<svg/>")
    view = a_view(active)
    page = case_reports.case_report(active, view, "note", active.model.threshold)
    assert active.cases is not None
    predictor = conformal.fit_conformal(active.model, active.cases)
    # The stored probability, as on the page: for a test case, the final model's.
    p = float(active.cases.at[view.row_key, "p_positive"])
    assert p == pytest.approx(view.probability)
    [chosen] = predictor.predict_sets([p])
    summary = conformal.conformal_summary(active.model, active.cases)
    assert f"Prediction set ({predictor.confidence:.0%} confidence)" in page
    assert f"<td>{predictor.set_text(chosen)}<br>" in page
    assert summary.test_coverage is not None
    assert f"{summary.test_coverage:.0%} of held-out test cases were covered" in page


def test_the_report_is_small_and_carries_no_plotly_js(active: ActiveModel) -> None:
    view = a_view(active)
    page = case_reports.case_report(active, view, "note", active.model.threshold)
    if "could not be drawn as pictures" in page:
        pytest.skip("no Chromium for the figure exporter on this machine")
    assert page.count("data:image/svg+xml;base64,") == 2
    assert "plotly.js" not in page and "<script" not in page
    # 4.8 MB with plotly.js embedded; about 40 kB with the figures as pictures.
    assert len(page.encode()) < 300_000


def test_the_report_uses_the_pages_prediction_set_confidence(
    active: ActiveModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(case_report_module, "figure_image", lambda fig, **o: b"<svg/>")
    view = a_view(active)
    page = case_reports.case_report(active, view, "note", active.model.threshold, confidence=0.8)
    assert "Prediction set (80% confidence)" in page
    assert "Prediction set (90% confidence)" not in page
