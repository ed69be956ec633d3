"""The Runs page's "Report" section: what the run is for, and its model report as PDF or HTML.

The run's owner (or an admin) states the intended use, target population, reference standard,
clinical setting and intended users in a form; they are saved with the run in the registry and
shown in the report ("not stated" where empty). The two download buttons build the report
when clicked (about a second per figure), audited as "report" of the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from medimg_core.access import Action, Actor, allowed
from medimg_core.errors import MedimgError
from medimg_core.reporting.model_report import (
    CONTEXT_LABELS,
    NOT_STATED,
    report_bytes,
    run_report,
)
from medimg_core.reporting.summaries import human_date
from medimg_core.store import guarded
from medimg_core.store.registry import RUN_CONTEXT_LIMIT, RunRecord
from medimg_core.ui.auth import client_address

__all__ = ["CONTEXT_HELP", "MIME", "render_run_report", "report_download"]

MIME = {"pdf": "application/pdf", "html": "text/html"}

CONTEXT_HELP = {
    "intended_use": "The clinical question and the decision the model supports, e.g. "
    "'flag fine-needle aspirates likely to be malignant for urgent review'.",
    "target_population": "The patients it is meant for: inclusion criteria, care setting, "
    "e.g. 'women referred with a palpable breast mass'.",
    "reference_standard": "How the true labels were established, e.g. 'histopathology of "
    "the excised lesion'.",
    "clinical_setting": "Where it would be used: screening, referral clinic, ward ...",
    "intended_users": "Who would read its output: radiologists, pathologists ...",
}


def report_download(actor: Actor, run_id: str, fmt: str, client: str) -> Callable[[], bytes]:
    """The data of a download button: builds the run's report in ``fmt`` when clicked.

    Streamlit runs it on its own thread, where the session is not at hand, so the user and
    their address are taken now. The building is audited as "report" of the run; when it
    fails, the file holds the reason in plain words (a download cannot show an error).
    """

    def build() -> bytes:
        try:
            with guarded.audited(actor, Action.REPORT, client=client, object=run_id):
                return report_bytes(run_report(actor, run_id), fmt)
        except MedimgError as exc:
            return f"The model report could not be made: {exc}\n".encode()

    return build


def _context_form(actor: Actor, record: RunRecord) -> None:
    try:
        context = guarded.get_run_context(actor, record.id)
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    may_edit = allowed(actor, Action.TRAIN, project=record.project) and allowed(
        actor, Action.DELETE_OWN_RUN, owner=record.owner, project=record.project
    )
    with st.form(f"report_context_{record.id}", border=False):
        values: dict[str, Any] = {}
        for name, label in CONTEXT_LABELS.items():
            values[name] = st.text_area(
                label,
                value=getattr(context, name, "") if context is not None else "",
                placeholder=NOT_STATED,
                help=CONTEXT_HELP[name],
                max_chars=RUN_CONTEXT_LIMIT,
                height=68,
                disabled=not may_edit,
                key=f"report_ctx_{name}_{record.id}",
            )
        saved = st.form_submit_button(
            "Save what this run is for", disabled=not may_edit, icon=":material/save:"
        )
    if context is not None and context.updated_at is not None:
        st.caption(f"Last stated by {context.updated_by} on {human_date(context.updated_at)}.")
    if not may_edit:
        st.caption(
            f"Only {record.owner or 'its owner'}, who trained this run, or an admin can state "
            f"what it is for; you are signed in as {actor.describe()}."
        )
    if saved:
        try:
            guarded.set_run_context(actor, record.id, client=client_address(), **values)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
        else:
            st.success("Saved: the report now states it.", icon=":material/check_circle:")


def render_run_report(actor: Actor, record: RunRecord) -> None:
    """Draw the "Report" section of the Runs page for the selected run."""
    with st.container(border=True):
        st.markdown("**Report**")
        st.caption(
            "A model report following TRIPOD+AI and CLAIM: identity, intended use, flow of "
            "cases, characteristics, validation, metrics with 95% intervals, calibration, "
            "explanation, typical errors, external evaluations, reader feedback, warnings and "
            "a checklist saying where each reporting item is answered. Built when you click."
        )
        with st.expander("What this run is for (shown in the report)"):
            _context_form(actor, record)
        may_report = allowed(actor, Action.REPORT, project=record.project)
        client = client_address()
        left, right = st.columns(2)
        for column, fmt, label, icon in (
            (left, "pdf", "Download PDF", ":material/picture_as_pdf:"),
            (right, "html", "Download HTML", ":material/html:"),
        ):
            column.download_button(
                label,
                data=report_download(actor, record.id, fmt, client),
                file_name=f"medimg-report-{record.id}.{fmt}",
                mime=MIME[fmt],
                key=f"report_{fmt}",
                icon=icon,
                disabled=not may_report,
                on_click="ignore",
                width="stretch",
            )
