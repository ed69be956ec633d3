"""Readers' feedback in the dashboard: mark a prediction agree / disagree / unsure, and the
per-run summary on the Runs page.

A judgement is stored in the registry with the run, the reader and the time
(:func:`medimg_core.store.guarded.record_feedback`), under a case reference that never holds
the case's ID: on Explain, the stored case's keyed pseudonym (or its row number when the data
have no ID column); on Predict, a keyed hash of the scored row's feature values
(:func:`medimg_core.reporting.feedback.scored_case_ref`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from medimg_core.access import Action, Actor
from medimg_core.errors import MedimgError
from medimg_core.privacy import pseudonym_key
from medimg_core.reporting.feedback import (
    feedback_summary,
    feedback_text,
    latest_feedback,
    scored_case_ref,
)
from medimg_core.reporting.summaries import human_date
from medimg_core.store.registry import FEEDBACK_NOTE_LIMIT, VERDICTS, FeedbackRecord
from medimg_core.ui import widgets
from medimg_core.ui.auth import client_address, current_actor
from medimg_core.ui.explaining import markdown_text
from medimg_core.ui.session import ActiveModel

if TYPE_CHECKING:
    from medimg_core.reporting.review import ScoredCases
    from medimg_core.ui.explaining import CaseView

__all__ = [
    "NOTE_CAPTION",
    "explain_case_ref",
    "marked_text",
    "render_feedback",
    "render_predict_feedback",
    "render_run_feedback",
]

NOTE_CAPTION = "Do not type names or other identifying details."
"""Shown under the note box: the note is stored as typed."""

VERDICT_WORDS = {
    "agree": "Agree",
    "disagree": "Disagree",
    "unsure": "Unsure",
}
_NOTICE = "feedback_notice"


def explain_case_ref(active: ActiveModel, view: CaseView) -> str:
    """The reference of an Explain case's judgement: never the uploaded ID.

    The stored case's keyed pseudonym (the same as in ``cases.parquet`` and the case report),
    or its row number in the run's stored cases when the data have no ID column.
    """
    # Deferred: explaining pulls in the explainers (shap), which Runs does not need.
    from medimg_core.ui.explaining import report_reference

    id_column = active.model.roles.id
    if not id_column or active.cases is None or id_column not in active.cases.columns:
        return f"row {view.row_key}"
    return report_reference(view.label, pseudonymous=active.ids_pseudonymous)


def marked_text(record: FeedbackRecord) -> str:
    """ "You marked this case: disagree ("note") on 3 March 2026, 14:05 UTC"."""
    # The reader's note shown as typed, on one line, never read as Markdown.
    note = f' ("{" ".join(markdown_text(record.note).split())}")' if record.note else ""
    return f"You marked this case: **{record.verdict}**{note} on {human_date(record.created_at)}."


def _own_latest(actor: Actor, run_id: str, case_ref: str, source: str) -> FeedbackRecord | None:
    from medimg_core.store import guarded

    mine = [
        r
        for r in latest_feedback(guarded.list_feedback(actor, run_id))
        if r.username == actor.username and r.case_ref == case_ref and r.source == source
    ]
    return mine[-1] if mine else None


def render_feedback(
    active: ActiveModel,
    *,
    case_ref: str,
    source: str,
    predicted: str | None,
    probability: float | None,
    key: str,
) -> None:
    """The "agree / disagree / unsure" control for one case, with the reader's earlier mark.

    Parameters
    ----------
    active : the model in use (its ``run_id`` is the run judged).
    case_ref : the case's non-identifying reference (:func:`explain_case_ref` or
        :func:`medimg_core.reporting.feedback.scored_case_ref`).
    source : "explain" or "predict".
    predicted : the model's call as shown (class display name), or None.
    probability : the probability shown next to it, or None.
    key : widget key prefix (unique on the page).
    """
    from medimg_core.store import guarded

    with st.container(border=True):
        st.markdown("**Your judgement of this prediction**")
        if active.run_id is None:
            st.caption(
                "This model is not recorded in the registry, so judgements cannot be kept; "
                "open a saved run on the Runs page."
            )
            return
        actor = current_actor()
        notice = st.session_state.pop(_NOTICE, None)
        if notice:
            st.success(notice, icon=":material/check_circle:")
        try:
            earlier = _own_latest(actor, active.run_id, case_ref, source)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        if earlier is not None:
            st.caption(marked_text(earlier) + " A new mark replaces it in the run's summary.")
        refusal = widgets.refusal_note(actor, Action.RECORD_FEEDBACK)
        verdict_col, note_col = st.columns([1, 3], gap="medium")
        verdict = verdict_col.radio(
            "Do you agree with the model's call?",
            list(VERDICTS),
            index=None,
            format_func=lambda v: VERDICT_WORDS.get(v, v),
            key=f"{key}_verdict_{case_ref}",
            disabled=refusal is not None,
        )
        note = note_col.text_area(
            "Note (optional)",
            key=f"{key}_note_{case_ref}",
            height=80,
            placeholder="e.g. margin looks benign on the image; would biopsy anyway",
            help=f"At most {FEEDBACK_NOTE_LIMIT} characters. Stored with the run, your user "
            "name and the time; the case is stored only under its pseudonymous reference.",
            disabled=refusal is not None,
        )
        note_col.caption(NOTE_CAPTION)
        if refusal is not None:
            st.caption(refusal)
        clicked = st.button(
            "Record my judgement",
            key=f"{key}_record_{case_ref}",
            icon=":material/rate_review:",
            disabled=verdict is None,
        )
        if not clicked:
            return
        try:
            guarded.record_feedback(
                actor,
                active.run_id,
                client=client_address(),
                case_ref=case_ref,
                verdict=str(verdict),
                note=str(note or ""),
                source=source,
                predicted=predicted,
                probability=probability,
            )
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        st.session_state[_NOTICE] = (
            f"Recorded: {verdict}. It counts in the run's readers' feedback on the Runs page."
        )
        st.rerun()


def render_predict_feedback(active: ActiveModel, scored: ScoredCases, *, key: str) -> None:
    """Pick one newly scored case and record a judgement of its prediction.

    The case is stored under a keyed hash of its feature values, never under its ID (an
    uploaded file's ID column may identify a patient and is not kept by the run).
    """
    cleaning = scored.cleaning
    if cleaning is None or not len(scored.table):
        return
    kept = cleaning.data.reset_index(drop=True)
    table = scored.table
    key_column = table.columns[0]
    probability_column = scored.probability_column
    labels = [
        f"{key_column} {value} · {decision} · {probability_column} = {p:.2f}"
        for value, decision, p in zip(
            table[key_column].astype(str),
            table["decision"].astype(str),
            table[probability_column].astype(float),
            strict=True,
        )
    ]
    with st.expander("Judge a prediction (agree / disagree / unsure)", icon=":material/reviews:"):
        position = st.selectbox(
            "Case",
            list(range(len(table))),
            format_func=lambda i: labels[i],
            key=f"{key}_case",
        )
        row = kept.iloc[int(position)]
        values = {c: row[c] for c in active.model.feature_columns if c in row.index}
        decision = str(table["decision"].iloc[int(position)])
        render_feedback(
            active,
            case_ref=scored_case_ref(values, pseudonym_key()),
            source="predict",
            predicted=decision,
            probability=float(table[probability_column].iloc[int(position)]),
            key=key,
        )


def feedback_frame(records: list[FeedbackRecord]) -> pd.DataFrame:
    """The latest judgement per reader and case, newest first, for display (no case ID)."""
    rows: list[dict[str, Any]] = [
        {
            "when": human_date(r.created_at),
            "reader": r.username,
            "where": r.source,
            "predicted": r.predicted or "not recorded",
            "verdict": r.verdict,
            "note": r.note,
        }
        for r in reversed(latest_feedback(records))
    ]
    return pd.DataFrame(rows, columns=["when", "reader", "where", "predicted", "verdict", "note"])


def render_run_feedback(actor: Actor, run_id: str) -> None:
    """The Runs page's "Readers' feedback" summary of one run."""
    from medimg_core.store import guarded

    with st.container(border=True):
        st.markdown("**Readers' feedback**")
        try:
            records = guarded.list_feedback(actor, run_id)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        summary = feedback_summary(records)
        if summary.n:
            cols = st.columns(4)
            cols[0].metric("Cases judged", f"{summary.n:,}")
            cols[1].metric("Agree", f"{summary.agree:,}")
            cols[2].metric("Disagree", f"{summary.disagree:,}")
            cols[3].metric(
                "Agreement",
                "n/a" if summary.agreement_rate is None else f"{summary.agreement_rate:.0%}",
                help="Agree ÷ (agree + disagree): unsure judgements are not counted.",
            )
        st.caption(feedback_text(summary))
        if summary.n:
            with st.expander("Each judgement (latest per reader and case)"):
                st.dataframe(
                    feedback_frame(records),
                    hide_index=True,
                    width="stretch",
                    key="runs_feedback_table",
                )
