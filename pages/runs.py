"""Runs: the registry of trained models, their model cards, reopening and deleting them."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medimg_core.access import Action, allowed, roles_allowed
from medimg_core.errors import MedimgError
from medimg_core.modelling.evaluation import format_metric
from medimg_core.reporting import comparison, summaries
from medimg_core.store import guarded
from medimg_core.ui import feedback, state, widgets, workflow
from medimg_core.ui.auth import client_address, current_actor
from medimg_core.ui.external import render_run_evaluations
from medimg_core.ui.paired import render_paired_comparison
from medimg_core.ui.report import render_run_report

PAGES = {step.key: step for step in state.STEPS}

state.require_router()
st.title("Runs")
st.caption(
    "Every model trained here is saved with its model card and the cases it was validated on, "
    "so it can be reopened, compared and used for prediction later."
)

notice = st.session_state.pop("runs_notice", None)
if notice:
    st.success(notice, icon=":material/check_circle:")

actor = current_actor()
try:
    runs = guarded.list_runs(actor)
except MedimgError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
if not runs:
    st.info(
        "No runs are saved yet. Train a model: every training run is recorded here.",
        icon=":material/info:",
    )
    st.page_link(PAGES["train"].path, label="Go to Train", icon=PAGES["train"].icon)
    st.stop()

active = state.get(state.ACTIVE)
active_id = active.run_id if active is not None else None
overview = pd.DataFrame([r.summary() for r in runs])
overview["model"] = [summaries.model_name(r.model_kind) for r in runs]
# The registry's summary writes intervals with a hyphen; the cards use an en dash.
for column, partition in (("CV AUC", "cv"), ("test AUC", "test")):
    overview[column] = [
        format_metric(summaries.card_metric(r.card, partition, "roc_auc")) for r in runs
    ]
overview.insert(0, "in use", ["●" if r.id == active_id else "" for r in runs])
overview = overview[
    ["in use", "id", "created", "owner", "model", "dataset", "CV AUC", "test AUC", "threshold"]
]
# The run ID is what a user copies into a report or the CLI: pinned beside "In use" and wide
# enough to show whole (under 7 px a character), so a narrow window scrolls the other columns.
id_width = 24 + 7 * max(len(str(r.id)) for r in runs)
st.dataframe(
    overview,
    hide_index=True,
    width="stretch",
    height=min(38 + 35 * len(runs), 320),
    column_config={
        "in use": st.column_config.TextColumn(
            "In use",
            width="small",
            pinned=True,
            help="The model the Evaluate, Explain and Predict pages use now.",
        ),
        "id": st.column_config.TextColumn("Run", width=id_width, pinned=True),
        "created": st.column_config.TextColumn("Created"),
        "owner": st.column_config.TextColumn(
            "Owner", help="Who trained it ('unknown' for runs saved before owners were kept)."
        ),
        "model": st.column_config.TextColumn("Model"),
        "dataset": st.column_config.TextColumn("Data"),
        "CV AUC": st.column_config.TextColumn(
            "CV ROC AUC (95% CI)", help="Cross-validated on the development part."
        ),
        "test AUC": st.column_config.TextColumn(
            "Test ROC AUC (95% CI)", help="On the held-out test set, scored once."
        ),
        "threshold": st.column_config.TextColumn(
            "Threshold", width=90, help="Chosen on development data."
        ),
    },
    key="runs_table",
)
selection = comparison.selection_note(runs)
if selection is not None:
    st.info(selection, icon=":material/info:")

by_id = {r.id: r for r in runs}
ids = list(by_id)
run_id = st.selectbox(
    "Run",
    ids,
    index=ids.index(active_id) if active_id in by_id else 0,
    format_func=lambda rid: f"{rid} — {comparison.run_label(by_id[rid])}",
    key="runs_pick",
)
record = by_id[run_id]
card = record.card

with st.container(border=True):
    st.markdown(f"**Model card** · run `{record.id}`")
    facts = summaries.card_facts(card)
    left, right = st.columns(2, gap="large")
    items = list(facts.items())
    half = (len(items) + 1) // 2
    for column, part in ((left, items[:half]), (right, items[half:])):
        column.markdown("\n".join(f"- **{name}:** {value}" for name, value in part))
    for warning in card.get("warnings") or []:
        st.warning(warning, icon=":material/warning:")
    with st.expander("The full model card (JSON)"):
        st.json(card, expanded=1)
        widgets.download_json(
            card,
            f"medimg-card-{record.id}.json",
            "Download the model card",
            key="runs_card_dl",
            on_click=workflow.record_export,
            args=(record.id,),
        )

render_run_evaluations(actor, record)
feedback.render_run_feedback(actor, record.id)
render_run_report(actor, record)

st.markdown("**Use this run**")
buttons = st.columns(3)
for column, (step_key, label) in zip(
    buttons,
    (
        ("evaluate", "Open for Evaluate"),
        ("explain", "Open for Explain"),
        ("predict", "Open for Predict"),
    ),
    strict=True,
):
    if column.button(
        label, key=f"runs_open_{step_key}", icon=PAGES[step_key].icon, width="stretch"
    ):
        try:
            workflow.open_run(record.id)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
        else:
            st.switch_page(PAGES[step_key].path)

with st.expander("Delete this run"):
    st.caption(
        "Deletes the run from the registry and its model files (model, card and cases) when "
        "medimg saved them in its workspace; a model folder elsewhere is left untouched. The "
        "copy of the training data is deleted with the last run that uses it."
    )
    may_delete = allowed(actor, Action.DELETE_OWN_RUN, owner=record.owner, project=record.project)
    if not may_delete:
        who = (
            f"Only {record.owner}, who trained it, or an admin"
            if record.owner
            else "Only an admin (its owner is not recorded)"
        )
        st.caption(
            f"{who} can delete this run; you are signed in as {actor.describe()}.",
            help=", ".join(f"{r.value}s" for r in roles_allowed(Action.DELETE_ANY_RUN))
            + " may delete any run of their projects; analysts only their own.",
        )
    confirmed = st.checkbox(
        f"Yes, delete run {record.id}",
        key=f"runs_confirm_{record.id}",
        value=False,
        disabled=not may_delete,
    )
    if st.button(
        "Delete run",
        key="runs_delete",
        type="primary",
        disabled=not (confirmed and may_delete),
        icon=":material/delete:",
    ):
        try:
            deleted = guarded.delete_run(actor, record.id, client=client_address())
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            st.stop()
        if record.id == active_id:
            state.clear_from(state.TRAINING)
        st.session_state.pop("runs_pick", None)
        st.session_state["runs_notice"] = deleted.note
        st.rerun()

render_paired_comparison(runs)

st.divider()
st.markdown(
    "**Next:** open a run above to evaluate, explain or predict with it, or train a new model."
)
st.page_link(PAGES["train"].path, label="Go to Train", icon=":material/arrow_forward:")
