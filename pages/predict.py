"""Predict: score new cases with the active model, with each case's top reasons."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from medimg_core.access import Action
from medimg_core.errors import MedimgError
from medimg_core.reporting import review, summaries
from medimg_core.reporting.figures.data import distribution_figure
from medimg_core.ui import conformal as prediction_sets
from medimg_core.ui import explaining, feedback, images, state, widgets, workflow

MAX_WARNINGS = 8
TABLE_TYPES = ["csv", "tsv", "txt", "xlsx", "xls", "parquet"]

state.require_router()
st.title("Predict")
workflow.require("predict")

# Patient IDs as keyed pseudonyms when that is on (by default with sign-in).
active = explaining.displayed_active()
model = active.model
positive_name = model.display_name(model.positive_class)
cut = explaining.threshold(active) if model.is_binary else None
image_model = images.is_image_model(active)

st.caption(
    f"Model: {explaining.model_name(active)} on {len(model.feature_columns):,} features"
    + (
        f"; cases with P({positive_name}) ≥ {cut:.2f} are called {positive_name}."
        if cut is not None
        else "; each case is called its most probable class."
    )
    + " New cases are checked against the training data and cleaned with the model's own plan "
    "before scoring."
)
if cut is not None:
    # Where the threshold came from: the saved rule on development cases, or the Evaluate page.
    origin = summaries.threshold_origin(active.card, cut, state.get(state.THRESHOLD_SOURCE))
    st.caption(f"Decision {origin}.")
    if state.get(state.THRESHOLD_SOURCE) == "test" and abs(cut - model.threshold) >= 1e-9:
        st.warning(summaries.TEST_THRESHOLD_WARNING, icon=":material/warning:")

with st.container(border=True):
    upload_col, demo_col = st.columns([3, 2], gap="large")
    if image_model:
        uploaded = upload_col.file_uploader(
            "New images: a ZIP, a .npz, or one PNG / JPEG / TIFF / DICOM file",
            type=[*images.PREDICT_TYPES, *TABLE_TYPES],
            key="predict_upload",
            help="Features are extracted with the model's own settings (size, grey levels, "
            "patterns), exactly as in training. Class sub-folders or labels.csv are allowed but "
            "not used; a table of already extracted features also works.",
        )
        if uploaded is not None and images.is_table_file(uploaded.name):
            explaining.take_prediction_upload(uploaded)
        else:
            images.take_prediction_images(uploaded, active)
    else:
        uploaded = upload_col.file_uploader(
            "New cases (the feature columns used in training)",
            type=TABLE_TYPES,
            key="predict_upload",
            help="CSV, TSV, Excel or Parquet. Extra columns are ignored; a label column, if "
            "present, is not used.",
        )
        explaining.take_prediction_upload(uploaded)
    with demo_col:
        st.markdown("No file at hand?")
        if st.button(
            "Try with held-out cases",
            key="predict_try_sample",
            icon=":material/science:",
            disabled=active.cases is None,
            help=f"Scores up to {explaining.HELD_OUT_DEMO_ROWS} of the model's held-out test "
            "cases with their labels removed, as if they were new.",
        ):
            explaining.set_new_cases(explaining.held_out_cases(active))
    with st.expander("Columns the model expects"):
        st.dataframe(
            review.expected_columns(model),
            hide_index=True,
            width="stretch",
            height=240,
            key="predict_expected",
        )

table = state.get(explaining.NEW_CASES)
if table is None:
    st.info(
        "Upload a file of new cases, or try the held-out cases, to get predictions.",
        icon=":material/upload_file:",
    )
    workflow.next_step("predict")
    st.stop()

with st.expander("No decision for some cases (abstention)", icon=":material/front_hand:"):
    abstain_ood = st.checkbox(
        "No decision for cases unlike the training data",
        key="predict_abstain_ood",
        help="Cases with a value outside the training range, or far from the training cases, "
        "get no decision and are referred to a reader.",
    )
    band: tuple[float, float] | None = None
    if cut is not None and st.checkbox(
        "No decision when the probability is close to the threshold",
        key="predict_abstain_band_on",
    ):
        low, high = st.slider(
            f"Uncertainty band around the threshold {cut:.2f}",
            min_value=0.0,
            max_value=1.0,
            value=(max(0.0, round(cut - 0.1, 2)), min(1.0, round(cut + 0.1, 2))),
            step=0.01,
            key="predict_abstain_band",
            help=f"Cases with P({positive_name}) inside the band get no decision. The "
            "band must contain the threshold.",
        )
        band = (float(low), float(high))

try:
    workflow.audit_once(
        Action.PREDICT, object=active.run_id, key=f"predict:{active.run_id}:{table.content_hash}"
    )
    scored = explaining.scored_cases(active, table, abstain_ood=abstain_ood, band=band)
except MedimgError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
st.markdown(f"**{table.name}** · {scored.n_input:,} rows")

if not scored.ok:
    st.error(
        "These cases cannot be scored: "
        + " ".join(scored.schema.errors)
        + " Correct the file and upload it again.",
        icon=":material/error:",
    )
    workflow.next_step("predict")
    st.stop()

if scored.warnings:
    shown = list(scored.warnings[:MAX_WARNINGS])
    more = len(scored.warnings) - len(shown)
    st.warning(
        "**Check before relying on these predictions**\n\n"
        + "\n".join(f"- {explaining.markdown_text(w)}" for w in shown)
        + (f"\n- … and {more} more." if more > 0 else ""),
        icon=":material/warning:",
    )

metrics = st.columns(6)
metrics[0].metric("Cases in the file", f"{scored.n_input:,}")
metrics[1].metric(
    "Scored", f"{scored.n_scored:,}", help="Cases that passed the model's cleaning plan."
)
metrics[2].metric(
    "Not scored",
    f"{len(scored.not_scored):,}",
    help="Cases removed by the cleaning plan (listed below with the reason).",
)
if cut is not None:
    metrics[3].metric(
        f"Called {positive_name}",
        f"{scored.n_called:,}",
        help=f"Cases with P({positive_name}) at or above the "
        + summaries.threshold_origin(active.card, cut, state.get(state.THRESHOLD_SOURCE))
        + ".",
    )
metrics[4].metric(
    "Atypical",
    f"{scored.n_flagged:,}",
    help="Cases outside the training range or far from the training cases (distance above "
    "the 99th percentile of development cases).",
)
metrics[5].metric(
    "No decision",
    f"{scored.n_abstained:,}",
    help="Cases the model declined to call (abstention options above): refer to a reader.",
)
if scored.n_scored:
    ood_notes = scored.ood_notes
    (st.warning if scored.n_flagged or scored.n_abstained else st.info)(
        "\n\n".join(ood_notes), icon=":material/travel_explore:"
    )

image_ctx = images.prediction_context(table)
if scored.n_scored and image_ctx is not None:
    st.markdown("**Each image with its prediction and top reasons**")
    images.prediction_cards(scored, image_ctx, key="predict_cards")
    widgets.notes(image_ctx.table.notes)

if scored.n_scored:
    st.markdown("**Predictions**")
    scored = prediction_sets.with_sets(active, scored, key="predict_sets")
    if model.roles.id and model.roles.id in scored.table.columns and explaining.ids_as_pseudonyms():
        st.caption(explaining.PSEUDONYM_NOTE)
    widgets.paged_dataframe(
        explaining.prediction_view(scored),
        key="predict_table",
        page_size=25,
        hide_index=True,
        column_config={
            **explaining.prediction_columns(scored),
            **prediction_sets.set_column_config(scored.table),
        },
    )
    chart_col, download_col = st.columns([2, 1], gap="large", vertical_alignment="center")
    with chart_col:
        st.caption(f"Distribution of {scored.probability_column} over the scored cases")
        st.plotly_chart(
            distribution_figure(
                pd.Series(scored.table[scored.probability_column], name=scored.probability_column)
            ),
            key="predict_distribution",
        )
    with download_col:
        widgets.download_csv(
            explaining.export_table(active, scored),
            "medimg-predictions.csv",
            "Download predictions (CSV)",
            key="predict_download",
            on_click=workflow.record_export,
            args=(active.run_id,),
            help="Safe to open in a spreadsheet (no cell runs as a formula). Every row carries "
            "the run ID, the threshold and the positive class. Identifying columns are never "
            "included.",
        )

if scored.n_scored:
    feedback.render_predict_feedback(active, scored, key="predict_feedback")

if len(scored.not_scored):
    with st.expander(f"{len(scored.not_scored):,} case(s) not scored, with the reason"):
        st.dataframe(scored.not_scored, hide_index=True, width="stretch", key="predict_not_scored")

workflow.next_step("predict")
