"""Streamlit helpers of the Explain and Predict pages: cached explainers, case review, new cases.

Explainers are shared objects (``st.cache_resource``) and the global explanation is a result
(``st.cache_data``); both are keyed on the active model's content key (its run id or model
checksum) and the class explained, so two users' models never share an entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st

from medimg_core.authmode import SignInMode
from medimg_core.errors import DataError
from medimg_core.modelling import models
from medimg_core.modelling.explain import (
    GLOBAL_CASES,
    CaseExplanation,
    Explanation,
    ModelExplainer,
    development_explainer,
    development_explanation,
)
from medimg_core.modelling.prediction import Abstention, stamp_export
from medimg_core.privacy import (
    pseudonym_key,
    pseudonymise,
    pseudonymise_ids_on_display,
    to_safe_csv,
)
from medimg_core.reporting import review, summaries
from medimg_core.tables.loading import LoadedTable, frame_hash
from medimg_core.ui import auth, cache, state
from medimg_core.ui.session import ActiveModel

__all__ = [
    "GLOBAL_SAMPLE",
    "HELD_OUT_DEMO_ROWS",
    "NEW_CASES",
    "PSEUDONYM_NOTE",
    "CaseView",
    "case_view",
    "development_rows",
    "displayed_active",
    "explainer",
    "explainers_for",
    "export_table",
    "flag_columns",
    "global_explanation",
    "handle_prediction_upload",
    "held_out_cases",
    "ids_as_pseudonyms",
    "input_step",
    "markdown_text",
    "model_name",
    "number_or_none",
    "prediction_columns",
    "report_reference",
    "same_value",
    "scored_cases",
    "set_new_cases",
    "shap_values_csv",
    "take_prediction_upload",
    "threshold",
    "threshold_source",
]

GLOBAL_SAMPLE = GLOBAL_CASES
"""Most development cases in the global importance and beeswarm (the model card ranks the same)."""

NEW_CASES = "predict_new_cases"
"""Session key of the new cases (a LoadedTable) on the Predict page."""

HELD_OUT_DEMO_ROWS = 20
"""Held-out cases offered as a one-click demo on the Predict page."""

HELD_OUT_FORMAT = "held-out"
"""``LoadedTable.format`` of the held-out demo: its IDs are already as the model's cases show
them, so scoring never pseudonymises them a second time."""

_SIGNED_IN_MODES = frozenset(
    {SignInMode.LOCAL.value, SignInMode.OIDC.value, SignInMode.REFUSED.value}
)


def ids_as_pseudonyms() -> bool:
    """Whether patient IDs are shown as keyed pseudonyms (case lists, predictions, reports).

    ``MEDIMG_PSEUDONYMISE_IDS`` decides when set; otherwise it is on when this session runs
    with sign-in (local accounts or single sign-on, the mode :func:`medimg_core.ui.auth.gate`
    recorded) and off in single-user mode.

    Raises
    ------
    PrivacyError
        When the setting is neither on nor off.
    """
    return pseudonymise_ids_on_display(sign_in=state.get(auth.MODE) in _SIGNED_IN_MODES)


def displayed_active() -> ActiveModel:
    """The session's active model as the pages show it: when IDs are shown as pseudonyms, its
    cases and evaluations carry the keyed pseudonyms that ``cases.parquet`` stores.

    Raises
    ------
    PrivacyError
        When the setting is neither on nor off, or the pseudonymisation key is unusable.
    """
    active: ActiveModel = state.get(state.ACTIVE)
    if active is None or active.ids_pseudonymous or not ids_as_pseudonyms():
        return active
    cases, (cv, test) = review.pseudonymous_cases(
        active.cases, (active.cv, active.test), id_column=active.model.roles.id, key=pseudonym_key()
    )
    return replace(active, cases=cases, cv=cv, test=test, ids_pseudonymous=True)


def threshold(active: ActiveModel) -> float:
    """The operating threshold: the one chosen on the Evaluate page, else the model's."""
    chosen = state.get(state.THRESHOLD)
    return float(chosen) if chosen is not None else float(active.model.threshold)


def development_rows(active: ActiveModel) -> pd.DataFrame:
    """The development cases of the active model (its SHAP background and typical values).

    Raises
    ------
    DataError
        When the model has no stored cases (the run was saved without its data).
    """
    cases = active.cases
    if cases is None or len(cases) == 0:
        raise DataError(
            "This model has no stored development cases, which explanations need as their "
            "background; retrain it on the Train page or open a run saved with its data."
        )
    if "partition" in cases.columns:
        development = cases[cases["partition"] == "development"]
        if len(development):
            return development
    return cases


@st.cache_resource(show_spinner="Preparing the explainer…", max_entries=8)
def explainer(model_key: str, class_index: int, _active: ActiveModel) -> ModelExplainer:
    """The SHAP explainer of the model whose content key is ``model_key``, for one class.

    Parameters
    ----------
    model_key : ``active.key`` (the cache key).
    class_index : encoded class to explain (binary: 1 = the positive class).
    _active : the model (not hashed: ``model_key`` identifies it).
    """
    return development_explainer(_active.model, development_rows(_active), class_index=class_index)


def explainers_for(active: ActiveModel) -> dict[int, ModelExplainer]:
    """Every explainer a prediction table needs: the positive class, or each class."""
    model = active.model
    indexes = [1] if model.is_binary else list(range(len(model.classes)))
    return {i: explainer(active.key, i, active) for i in indexes}


@st.cache_data(show_spinner="Explaining a sample of development cases…", max_entries=8)
def global_explanation(model_key: str, class_index: int, _active: ActiveModel) -> Explanation:
    """SHAP values of at most ``GLOBAL_SAMPLE`` development cases (a fixed, seeded sample): the
    same computation as the model card's top features
    (:func:`medimg_core.modelling.explain.development_explanation`)."""
    return development_explanation(
        explainer(model_key, class_index, _active), development_rows(_active)
    )


def shap_values_csv(explanation: Explanation) -> Callable[[], bytes]:
    """What the SHAP-values download button calls, only when it is clicked: the spreadsheet-safe
    CSV of :meth:`Explanation.to_frame` (one row per case and feature). Built on demand, so
    opening the page does not turn every case's values into text first."""
    return partial(_csv_of_explanation, explanation)


def _csv_of_explanation(explanation: Explanation) -> bytes:
    return to_safe_csv(explanation.to_frame())


@dataclass(frozen=True)
class CaseView:
    """One case as the Explain page shows it.

    Attributes
    ----------
    row_key : the case's index label in ``ActiveModel.cases``.
    label : its on-screen name (ID, or "row i").
    features : the case's feature values (one row, model feature columns).
    case : its explanation (``case_id`` = ``label``).
    probability : P(explained class).
    true_label : the known diagnosis (None when unknown).
    outcome : "TP"/"FP"/"FN"/"TN" (binary) or "correct"/"wrong", when evaluated.
    """

    row_key: Any
    label: str
    features: pd.DataFrame
    case: CaseExplanation
    probability: float
    true_label: Any
    outcome: str | None


def case_view(
    active: ActiveModel,
    row_key: Any,
    class_index: int,
    *,
    review_table: pd.DataFrame | None = None,
    changes: dict[str, Any] | None = None,
) -> CaseView:
    """Explain one of the model's cases, optionally with some feature values changed.

    Parameters
    ----------
    active : the model.
    row_key : the case's index label in ``active.cases``.
    class_index : encoded class explained.
    review_table : a :func:`medimg_core.reporting.review.review_table` holding the case (for its outcome).
    changes : what-if values, feature -> value.
    """
    cases = active.cases
    if cases is None:
        raise DataError(
            "This model has no stored cases to explain; retrain it or open a run with its data."
        )
    model = active.model
    labels = review.case_labels(cases.loc[[row_key]], _id_column(active))
    label = str(labels.iloc[0])
    features = model.prepare_features(cases.loc[[row_key]])
    if changes:
        features = review.with_changes(features, changes)
    features.index = pd.Index([label])
    explanation = explainer(active.key, class_index, active).explain(features)
    case = explanation.case(0)
    if case.output_space == "probability" and model.recalibration is None:
        # The contributions add up to the model's probability (checked when the explainer is
        # built; TreeSHAP and the permutation route are exact sums): the same number, without
        # a second pass through the model, which for a 300-tree forest costs ~80 times the
        # explanation of one case.
        probability = case.output
    else:
        probabilities = review.case_probabilities(model, features)
        probability = float(probabilities.to_numpy(dtype=float)[0, class_index])
    label_column = model.roles.label
    true_label = (
        cases.at[row_key, label_column] if label_column and label_column in cases.columns else None
    )
    outcome = None
    if review_table is not None and row_key in review_table.index and not changes:
        outcome = str(review_table.at[row_key, "outcome"])
    return CaseView(
        row_key=row_key,
        label=label,
        features=features,
        case=case,
        probability=probability,
        true_label=true_label,
        outcome=outcome,
    )


PSEUDONYM_NOTE = (
    "Patient IDs are shown as keyed pseudonyms (16 characters), the same ones the run's stored "
    "cases hold: a patient keeps one pseudonym everywhere, and nobody without this "
    "installation's key can recover the ID."
)
"""Caption of the case lists and predictions when IDs are shown as pseudonyms."""


def report_reference(label: str, *, pseudonymous: bool = False) -> str:
    """How a case's report names it, never by its uploaded ID.

    Parameters
    ----------
    label : the case's name on screen (:func:`medimg_core.reporting.review.case_labels`).
    pseudonymous : the label already holds the keyed pseudonym (IDs shown as pseudonyms, or a
        reopened run): the report then uses it as it is, so the reference matches the case list
        and ``cases.parquet``; otherwise the label is pseudonymised.
    """
    if pseudonymous:
        return "case-" + label.replace(" · row ", "-row-").replace(" ", "-")
    return "case-" + pseudonymise(label, pseudonym_key())


def number_or_none(value: Any) -> float | None:
    """A feature value as a number input's starting value (None when missing)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def input_step(value: Any) -> float:
    """A step for a number input of about a hundredth of the value's magnitude."""
    number = number_or_none(value)
    if number is None or number == 0 or not math.isfinite(number):
        return 0.01
    return float(10 ** (math.floor(math.log10(abs(number))) - 2))


def same_value(new: Any, old: Any) -> bool:
    """Whether a what-if input still holds the case's own value (missing equals missing)."""
    if _is_missing(new) or _is_missing(old):
        return _is_missing(new) and _is_missing(old)
    new_number, old_number = number_or_none(new), number_or_none(old)
    if new_number is None or old_number is None:
        return str(new) == str(old)
    return math.isclose(new_number, old_number, rel_tol=1e-9, abs_tol=1e-12)


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def model_name(active: ActiveModel) -> str:
    """The active model's kind in words, e.g. "logistic regression"."""
    return models.model_name(active.model.kind)


def markdown_text(text: str) -> str:
    """Text from the data (column names, values) kept from being read as Markdown."""
    for char in ("\\", "*", "_", "`", "[", "]", "$", "<", ">", "#", "|", "~"):
        text = text.replace(char, "\\" + char)
    return text


def take_prediction_upload(uploaded: Any) -> None:
    """Read a file from the Predict page's uploader once, when a new file arrives.

    Parameters
    ----------
    uploaded : the uploader's value (a Streamlit ``UploadedFile``), or None.
    """
    if uploaded is None:
        return
    seen = f"{uploaded.name}:{uploaded.size}:{getattr(uploaded, 'file_id', '')}"
    if st.session_state.get(_UPLOAD_SEEN) == seen:
        return
    st.session_state[_UPLOAD_SEEN] = seen
    handle_prediction_upload(uploaded.getvalue(), uploaded.name)


_UPLOAD_SEEN = "predict_upload_seen"


def prediction_view(scored: review.ScoredCases) -> pd.DataFrame:
    """The prediction table with the safety columns (unlike training data, why no decision)
    right after the decision, where a reader looks, instead of after every reason."""
    table = scored.table
    first = ["decision", "ood_flag", "abstain_reason"]
    if "decision" not in table.columns:
        return table
    at = list(table.columns).index("decision")
    lead = [c for c in table.columns[:at] if c not in first]
    safety = [c for c in first if c in table.columns]
    rest = [c for c in table.columns[at:] if c not in first]
    return table.loc[:, [*lead, *safety, *rest]]


def prediction_columns(scored: review.ScoredCases) -> dict[str, Any]:
    """Column settings of the prediction table: probabilities as bars, reasons explained."""
    config: dict[str, Any] = {}
    for column in scored.table.columns:
        if str(column).startswith("P("):
            config[column] = st.column_config.ProgressColumn(
                column,
                min_value=0.0,
                max_value=1.0,
                format="%.2f",
                help="The model's probability for the case.",
            )
        elif str(column).startswith("reason_"):
            rank = str(column).removeprefix("reason_")
            config[column] = st.column_config.TextColumn(
                f"Reason {rank}",
                help="A feature with one of the largest contributions: its value and its "
                "SHAP contribution in the unit written after it (log-odds or probability; "
                "positive = toward the positive class), relative to the development cases.",
            )
    config["decision"] = st.column_config.TextColumn(
        "Decision",
        help=(
            f"Called at the threshold {scored.threshold:.2f}."
            if scored.threshold is not None
            else "The most probable class."
        )
        + ' "abstained": no decision, refer the case to a reader.',
    )
    config.update(flag_columns())
    return config


def _id_column(active: ActiveModel) -> str | None:
    column = active.model.roles.id
    return column if column and active.cases is not None and column in active.cases else None


def held_out_cases(active: ActiveModel, n: int = HELD_OUT_DEMO_ROWS) -> LoadedTable:
    """Up to ``n`` of the model's held-out test cases without their labels, as new cases.

    Raises
    ------
    DataError
        When the model has no stored cases.
    """
    cases = active.cases
    if cases is None or len(cases) == 0:
        raise DataError(
            "This model has no stored cases to try; upload a file of new cases instead."
        )
    pool = cases[cases["partition"] == "test"] if "partition" in cases.columns else cases
    if len(pool) == 0:
        pool = cases
    roles = active.model.roles
    # What a new file would hold: the ID and the model's inputs, not the label, the split or
    # the validation probabilities stored with the cases.
    wanted = [roles.id, roles.quality, roles.site, *active.model.feature_columns]
    columns = [c for c in dict.fromkeys(wanted) if c is not None and c in pool.columns]
    frame = pool.loc[:, columns].head(n).reset_index(drop=True)
    return LoadedTable(
        frame=frame,
        name=f"{len(frame)} held-out cases (labels removed)",
        content_hash=frame_hash(frame),
        encoding=None,
        delimiter=None,
        format=HELD_OUT_FORMAT,
        notes=(),
        coercion_failures={},
    )


def set_new_cases(table: LoadedTable) -> None:
    """Make ``table`` the cases the Predict page scores."""
    st.session_state[NEW_CASES] = table


def handle_prediction_upload(data: bytes, name: str) -> LoadedTable:
    """Read an uploaded file of new cases and make it the cases to score.

    Raises
    ------
    DataError
        The file is not a usable table (the message says why and what to do).
    """
    table = cache.uploaded_table(data, name)
    set_new_cases(table)
    return table


@st.cache_data(show_spinner="Scoring the new cases…", max_entries=16)
def _scored(
    model_key: str,
    table_hash: str,
    cut: float | None,
    abstain_ood: bool,
    band: tuple[float, float] | None,
    pseudonymise: bool,
    _active: ActiveModel,
    _frame: pd.DataFrame,
) -> review.ScoredCases:
    return review.score_new_cases(
        _active.model,
        _frame,
        explainers=explainers_for(_active) if _active.cases is not None else None,
        threshold=cut,
        explain_top=3,
        abstain=Abstention(ood=abstain_ood, band=band),
        id_key=pseudonym_key() if pseudonymise else None,
    )


def scored_cases(
    active: ActiveModel,
    table: LoadedTable,
    *,
    abstain_ood: bool = False,
    band: tuple[float, float] | None = None,
) -> review.ScoredCases:
    """New cases checked, cleaned and scored by the active model at the operating threshold
    (cached on the model's key, the table's content hash, the threshold and the abstention).

    Parameters
    ----------
    active : the model.
    table : the new cases.
    abstain_ood : give no decision for cases unlike the training data.
    band : give no decision when P(positive) lies in this (low, high) band (binary only).

    Raises
    ------
    ConfigError
        When ``band`` does not contain the threshold.
    """
    cut = threshold(active) if active.model.is_binary else None
    # Uploaded IDs are shown as pseudonyms when that is on; the held-out demo's already are.
    pseudonymise = ids_as_pseudonyms() and table.format != HELD_OUT_FORMAT
    return _scored(
        active.key, table.content_hash, cut, abstain_ood, band, pseudonymise, active, table.frame
    )


def threshold_source(active: ActiveModel) -> str:
    """Where the operating threshold came from, in words (for exports).

    The saved rule on cross-validated development cases, or the Evaluate page and the partition
    viewed when it was moved there (see :func:`medimg_core.reporting.summaries.threshold_origin`).
    """
    return summaries.threshold_origin(
        active.card, threshold(active), state.get(state.THRESHOLD_SOURCE)
    )


def export_table(active: ActiveModel, scored: review.ScoredCases) -> pd.DataFrame:
    """The predictions as downloaded: stamped with the run ID (else the model's SHA-256), the
    threshold, where it came from, and the positive class."""
    return stamp_export(
        scored.table,
        run_id=active.run_id,
        model_sha256=active.card.get("model_sha256"),
        threshold=scored.threshold,
        positive_class=scored.positive_class,
        threshold_source=threshold_source(active) if scored.threshold is not None else None,
    )


def flag_columns() -> dict[str, Any]:
    """Column settings of the out-of-distribution and abstention columns."""
    return {
        "ood_flag": st.column_config.CheckboxColumn(
            "Unlike training data",
            help="Outside the training range, or far from the training cases (distance above "
            "the 99th percentile of development cases). Treat the prediction with caution.",
        ),
        "ood_range": st.column_config.CheckboxColumn(
            "Outside range", help="A value outside the training range, or an unseen category."
        ),
        "ood_features": st.column_config.TextColumn(
            "Which values", help="The values outside the training range, with that range."
        ),
        "ood_distance": st.column_config.NumberColumn(
            "Distance",
            format="%.1f",
            help="Mahalanobis distance from the training cases (standardised numeric features).",
        ),
        "abstain_reason": st.column_config.TextColumn(
            "Why no decision", help="Why the model gave no decision for this case."
        ),
    }
