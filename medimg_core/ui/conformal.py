"""Prediction sets in the dashboard: a case's set on Explain, a column of sets on Predict.

The sets are calibrated on the run's development cases (:mod:`medimg_core.modelling.conformal`);
next to every target the coverage measured on the held-out test cases is shown, because with
the final model refitted on all development data the guarantee is approximate.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from medimg_core.errors import DataError, MedimgError
from medimg_core.modelling.conformal import (
    CONFIDENCES,
    DEFAULT_CONFIDENCE,
    EMPTY_TEXT,
    GUARANTEE_NOTE,
    UNCERTAIN_TEXT,
    ConformalPredictor,
    ConformalSummary,
    confidence_text,
    conformal_summary,
    coverage_frame,
    fit_conformal,
    set_column_name,
    set_size_counts,
)
from medimg_core.store.cases import P_POSITIVE, PARTITION, probability_columns
from medimg_core.ui.session import ActiveModel

if TYPE_CHECKING:
    from medimg_core.reporting.review import ScoredCases

__all__ = [
    "NO_CASES_NOTE",
    "available",
    "case_probabilities",
    "case_set_explanation",
    "confidence_input",
    "predictor",
    "render_case_set",
    "render_coverage",
    "scored_probabilities",
    "set_column_config",
    "summary",
    "with_sets",
]

NO_CASES_NOTE = (
    "No prediction sets: they are calibrated on the cross-validated probabilities of the "
    "run's stored development cases, which this model lacks. Retrain it on the Train page to "
    "get them."
)


def available(active: ActiveModel) -> bool:
    """Whether the model's stored cases hold the development probabilities the sets need."""
    cases = active.cases
    if cases is None or PARTITION not in cases.columns:
        return False
    return all(c in cases.columns for c in probability_columns(active.model))


@st.cache_data(show_spinner=False, max_entries=16)
def predictor(model_key: str, confidence: float, _active: ActiveModel) -> ConformalPredictor:
    """The model's prediction sets at ``confidence``, calibrated on its development cases
    (cached on the model's key and the confidence)."""
    if _active.cases is None:
        raise DataError(NO_CASES_NOTE)
    return fit_conformal(_active.model, _active.cases, confidence=confidence)


@st.cache_data(show_spinner=False, max_entries=16)
def summary(model_key: str, confidence: float, _active: ActiveModel) -> ConformalSummary:
    """Coverage on the held-out test cases against the target (cached like :func:`predictor`)."""
    if _active.cases is None:
        raise DataError(NO_CASES_NOTE)
    return conformal_summary(_active.model, _active.cases, confidence=confidence)


def confidence_input(key: str, container: Any = st) -> float:
    """A select box of confidences (default 90%)."""
    return float(
        container.selectbox(
            "Prediction set confidence",
            list(CONFIDENCES),
            index=list(CONFIDENCES).index(DEFAULT_CONFIDENCE),
            format_func=confidence_text,
            key=key,
            help="The share of cases whose set should hold the true class. Higher confidence "
            "gives larger sets (more cases marked uncertain).",
        )
    )


def case_probabilities(active: ActiveModel, row_key: Any) -> np.ndarray:
    """The stored probabilities of one case, in code order (binary: negative, positive):
    out-of-fold for development cases, the final model's for test cases."""
    model = active.model
    cases = active.cases
    if cases is None:
        raise DataError(NO_CASES_NOTE)
    if model.is_binary:
        p = cases.loc[[row_key], P_POSITIVE].to_numpy(dtype=float)[0]
        return np.array([1.0 - p, p])
    return cases.loc[row_key, list(probability_columns(model))].to_numpy(dtype=float)


def case_set_explanation(
    prediction_set: tuple[str, ...], confidence: float, class_names: tuple[str, ...]
) -> str:
    """One line saying what the set means for this case."""
    target = confidence_text(confidence)
    if len(prediction_set) == 1:
        return (
            f"Only {prediction_set[0]} is consistent with this case at {target} confidence: "
            f"the other class{'es are' if len(class_names) > 2 else ' is'} ruled out."
        )
    if len(prediction_set) == 0:
        return (
            f"No class is consistent with this case at {target} confidence: its probability "
            "is unusual for every class among the development cases. Refer it to a reader."
        )
    return (
        f"{' and '.join(prediction_set)} are all consistent with this case at {target} "
        "confidence: the model cannot tell them apart here. Refer it to a reader."
    )


def render_case_set(active: ActiveModel, row_key: Any, *, partition: str, key: str) -> None:
    """Explain: the case's prediction set at a chosen confidence, what it means, and the
    coverage measured on the held-out test cases next to the target."""
    if not available(active):
        st.caption(NO_CASES_NOTE)
        return
    with st.container(border=True):
        choose_col, set_col = st.columns([1, 3], gap="medium", vertical_alignment="center")
        confidence = confidence_input(f"{key}_confidence", choose_col)
        try:
            fitted = predictor(active.key, confidence, active)
            measured = summary(active.key, confidence, active)
            chosen = fitted.predict_sets(case_probabilities(active, row_key)[None, :])[0]
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        set_col.metric(
            f"Prediction set ({confidence_text(confidence)})",
            fitted.set_text(chosen),
            help="The classes that cannot be ruled out for this case at this confidence "
            "(conformal prediction, calibrated per class on the development cases).",
        )
        set_col.markdown(case_set_explanation(chosen, confidence, fitted.class_names))
        st.caption(
            measured.sentence
            + (
                " This development case is itself one of the calibration cases."
                if partition == "cv"
                else ""
            )
        )
        with st.expander("What the prediction set guarantees"):
            st.markdown(
                f"- {GUARANTEE_NOTE}\n"
                "- Calibrated separately for each class, so the coverage holds for each true "
                "class, not only on average.\n" + "".join(f"- {note}\n" for note in fitted.notes())
            )


def render_coverage(active: ActiveModel, *, key: str) -> None:
    """Evaluate: the prediction sets' coverage on the held-out test cases at each confidence,
    next to the target, overall and per class, with the set sizes."""
    with st.expander("Prediction sets: coverage on the held-out test cases"):
        if not available(active):
            st.caption(NO_CASES_NOTE)
            return
        try:
            measured = [summary(active.key, c, active) for c in CONFIDENCES]
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        st.markdown(
            "Each case can be given the **set of classes that cannot be ruled out** at a chosen "
            "confidence (shown on Explain and Predict). The sets are calibrated per class on the "
            "development cases; the table compares the share of held-out test cases whose set "
            "held the true class with the target."
        )
        st.dataframe(coverage_frame(measured), hide_index=True, width="stretch", key=key)
        st.caption(GUARANTEE_NOTE)
        for note in dict.fromkeys(n for m in measured for n in m.notes if n != GUARANTEE_NOTE):
            st.caption(note)


def scored_probabilities(scored: ScoredCases, active: ActiveModel) -> np.ndarray:
    """The probabilities of a prediction table, in code order."""
    model = active.model
    table = scored.table
    if model.is_binary:
        return table[scored.probability_column].to_numpy(dtype=float)
    columns = [f"P({model.display_name(c)})" for c in model.classes]
    return table[columns].to_numpy(dtype=float)


def with_sets(active: ActiveModel, scored: ScoredCases, *, key: str) -> ScoredCases:
    """Predict: a confidence input, the coverage on test cases against the target, and
    ``scored`` with the column ``Prediction set (90%)`` after the decision (so the table and
    its CSV both carry it). Unchanged, with a note, when the model has no stored cases."""
    if not available(active) or not len(scored.table):
        if not available(active):
            st.caption(NO_CASES_NOTE)
        return scored
    choose_col, text_col = st.columns([1, 3], gap="medium", vertical_alignment="center")
    confidence = confidence_input(f"{key}_confidence", choose_col)
    try:
        fitted = predictor(active.key, confidence, active)
        measured = summary(active.key, confidence, active)
        texts = fitted.set_texts(scored_probabilities(scored, active))
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
        return scored
    name = set_column_name(confidence)
    table = scored.table.drop(columns=[name], errors="ignore")
    at = list(table.columns).index("decision") + 1 if "decision" in table.columns else 0
    table.insert(at, name, texts)
    sizes = set_size_counts(pd.Series(texts))
    text_col.caption(
        f"**{name}**: the classes that cannot be ruled out for each case. "
        f"{sizes['single']:,} case(s) with one class, {sizes['both/uncertain']:,} "
        f"{UNCERTAIN_TEXT.split(',')[0]} (refer), {sizes['empty']:,} with no class ({EMPTY_TEXT}). "
        + measured.sentence
        + " Holds for new cases from the same population as the development cases."
    )
    return dataclasses.replace(scored, table=table)


def set_column_config(table: pd.DataFrame) -> dict[str, Any]:
    """Column settings of the prediction-set column(s) of a prediction table."""
    return {
        column: st.column_config.TextColumn(
            column,
            help="Conformal prediction set: the classes that cannot be ruled out at this "
            "confidence. More than one class: uncertain, refer; none: no class reaches the "
            "confidence (typically a borderline probability), refer. " + GUARANTEE_NOTE,
        )
        for column in table.columns
        if str(column).startswith("Prediction set (")
    }
