"""The Explain page's downloadable case report: the case's explanation as a small,
self-contained HTML page (:func:`medimg_core.reporting.case_report.case_report_html`), with the
case's image and occlusion map for an image model and its conformal prediction set.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import plotly.graph_objects as go
import streamlit as st

from medimg_core.errors import MedimgError
from medimg_core.modelling.conformal import DEFAULT_CONFIDENCE, GUARANTEE_NOTE
from medimg_core.reporting import review
from medimg_core.reporting.case_report import (
    PredictionSet,
    ReportImage,
    anonymous_case,
    case_report_html,
)
from medimg_core.reporting.figures.evaluation import case_probability_figure
from medimg_core.reporting.figures.explanation import waterfall_figure
from medimg_core.ui import conformal as prediction_sets
from medimg_core.ui import explaining, images
from medimg_core.ui.session import ActiveModel

__all__ = ["SET_CONFIDENCE_KEY", "case_report", "report_builder"]

SET_CONFIDENCE_KEY = "explain_set_confidence"
"""The Explain page's prediction-set confidence (its select box): the report uses the same."""


def report_builder(
    active: ActiveModel, view: explaining.CaseView, note: str, cut: float | None
) -> Callable[[], str]:
    """What the download button calls to make the case's report, only when it is clicked.

    Streamlit runs that call on another thread, without the session, so what lives in the
    session is resolved now: the prediction-set confidence chosen on the page and where the
    case's image is (a reopened run finds it in the session's image set).
    """
    confidence = float(st.session_state.get(SET_CONFIDENCE_KEY, DEFAULT_CONFIDENCE))
    found = images.case_image(active, view.row_key) if images.is_image_model(active) else None
    return partial(case_report, active, view, note, cut, confidence=confidence, found=found)


def case_report(
    active: ActiveModel,
    view: explaining.CaseView,
    note: str,
    cut: float | None,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    found: images.CaseImage | None = None,
) -> str:
    """The downloadable HTML report of a case, under its pseudonymous reference.

    The report uses one threshold throughout, the model's own (the Evaluate page may be trying
    another one; the report does not follow it): the call, the outcome and the figures all use
    it. Figures are embedded as static pictures, with the case's image and occlusion map for an
    image model, and the case's conformal prediction set when the model's cases allow one.

    Parameters
    ----------
    active : the model.
    view : the case.
    note : the explanation method in words.
    cut : the threshold the page uses (binary), or None; the report uses the model's.
    confidence : the prediction sets' confidence.
    found : where the case's image is (default: looked up in the model's own image set).

    Returns
    -------
    str
        A self-contained HTML document (see :func:`medimg_core.reporting.case_report.case_report_html`).
    """
    model = active.model
    reference = explaining.report_reference(view.label, pseudonymous=active.ids_pseudonymous)
    case = anonymous_case(view.case, reference)
    threshold = float(model.threshold) if cut is not None and model.is_binary else None
    figures: list[go.Figure] = [waterfall_figure(case, threshold=threshold)]
    if threshold is not None:
        figures.insert(
            0, case_probability_figure(view.probability, threshold, class_name=case.class_name)
        )
    table = review.feature_table(case, explaining.development_rows(active), k=len(case.values))
    outcome, outcome_note = _report_outcome(active, view, threshold)
    page = case_report_html(
        case,
        probability=view.probability,
        threshold=threshold,
        true_label=view.true_label,
        model_card=active.card,
        figures=figures,
        note=" ".join(part for part in (note, outcome_note) if part),
        outcome=outcome,
        features=table,
        image=_report_image(active, view, found),
        prediction_set=_report_prediction_set(active, view, confidence),
    )
    return page


def _report_outcome(
    active: ActiveModel, view: explaining.CaseView, threshold: float | None
) -> tuple[str | None, str]:
    """The case's outcome at the report's threshold, from the probability the report shows.

    A development case's outcome on the page comes from its cross-validated score (a model that
    had not seen it); the report shows the final model's probability, so its outcome is computed
    from that probability, and the cross-validated outcome is named when it differs.
    """
    model = active.model
    if threshold is None or view.true_label is None or not model.is_binary:
        return view.outcome, ""
    positive = str(model.display_name(model.positive_class))
    truth = str(model.display_name(view.true_label)) == positive or str(view.true_label) == str(
        model.positive_class
    )
    called = view.probability >= threshold
    outcome = ("T" if called == truth else "F") + ("P" if called else "N")
    cases = active.cases
    development = (
        cases is not None
        and "partition" in cases.columns
        and view.row_key in cases.index
        and cases.at[view.row_key, "partition"] == "development"
    )
    if development and view.outcome and view.outcome != outcome:
        return outcome, (
            f"This is a development case: cross-validation, with a model that had not seen it, "
            f"classified it as {view.outcome} at the same threshold; the probability in this "
            "report is the final model's, which was trained on it."
        )
    return outcome, ""


def _report_image(
    active: ActiveModel, view: explaining.CaseView, found: images.CaseImage | None
) -> ReportImage | None:
    """An image model's case image and occlusion map, when this session holds the image."""
    if not images.is_image_model(active):
        return None
    found = found or images.case_image(active, view.row_key)
    if found is None or images.is_volume_study(found.image_set):
        # A 3D case has no 2D image or occlusion map to print; its report names the features.
        return None
    record = found.image_set.records.iloc[found.position]
    pixels = images.display_pixels(found.image_set, found.position)
    try:
        working, occlusion = images.occlusion(active, found, view.row_key)
    except MedimgError:
        working, occlusion = None, None
    return ReportImage(
        pixels=pixels,
        description=f"The case's image ({int(record['height'])}×{int(record['width'])} px).",
        occlusion_pixels=working,
        occlusion=occlusion,
    )


def _report_prediction_set(
    active: ActiveModel, view: explaining.CaseView, confidence: float
) -> PredictionSet | None:
    """The case's conformal prediction set as the Explain page shows it (same confidence, same
    calibration, same probability); None when the stored cases cannot calibrate one."""
    if not prediction_sets.available(active):
        return None
    try:
        fitted = prediction_sets.predictor(active.key, confidence, active)
        measured = prediction_sets.summary(active.key, confidence, active)
        probabilities = prediction_sets.case_probabilities(active, view.row_key)
        [chosen] = fitted.predict_sets(probabilities[None, :])
    except MedimgError:
        return None
    development = (
        active.cases is not None
        and str(active.cases.at[view.row_key, "partition"]) == "development"
    )
    return PredictionSet(
        text=fitted.set_text(chosen),
        confidence=fitted.confidence,
        test_coverage=measured.test_coverage,
        note=(
            "For this development case the set comes from its cross-validated probability. "
            if development
            else ""
        )
        + GUARANTEE_NOTE,
    )
