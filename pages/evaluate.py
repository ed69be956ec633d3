"""Evaluate: metrics with 95% intervals, the operating threshold, curves, flow and comparison."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from medimg_core.errors import MedimgError
from medimg_core.modelling.evaluation import (
    METRIC_HELP,
    METRIC_KEYS,
    METRIC_LABELS,
    Evaluation,
    confusion_at,
    positive_class_caption,
    summary_frame,
)
from medimg_core.reporting import comparison, summaries
from medimg_core.reporting.figures.data import flow_figure
from medimg_core.reporting.figures.evaluation import (
    calibration_figure,
    confusion_figure,
    partition_label,
    pr_figure,
    roc_figure,
    threshold_figure,
)
from medimg_core.store.registry import Registry
from medimg_core.ui import state, workflow
from medimg_core.ui.session import ActiveModel

st.title("Evaluate")
workflow.require("evaluate")

active: ActiveModel = state.get(state.ACTIVE)
model = active.model
card = active.card
evaluations = [ev for ev in (active.cv, active.test) if ev is not None]

st.caption(
    f"{summaries.model_name(model.kind)} · run {active.run_id or 'not recorded'} · "
    + (positive_class_caption(evaluations[0]) if evaluations else "")
)
for warning in active.warnings:
    st.warning(warning, icon=":material/warning:")


def metric_legend() -> None:
    with st.expander("What the metrics mean"):
        st.markdown(
            "\n".join(f"- **{METRIC_LABELS[k]}** — {METRIC_HELP[k]}" for k in METRIC_KEYS)
            + "\n\nIntervals are 95% bootstrap percentile intervals"
            + (" (patients resampled)." if card.get("validation", {}).get("grouped_by") else ".")
        )


if not evaluations:
    st.info(
        "This run was saved without its cases, so only the metrics recorded in its model card "
        "can be shown (no curves or threshold explorer).",
        icon=":material/info:",
    )
    st.dataframe(summaries.card_summary_frame(card), width="stretch", height=400)
    metric_legend()
    workflow.next_step("evaluate")
    st.stop()

table = summary_frame(*evaluations)
sizes = table.attrs["n"]
st.subheader("Metrics")
st.dataframe(
    table,
    width="stretch",
    height=38 + 35 * len(table),
    column_config={
        name: st.column_config.TextColumn(
            f"{name} · n = {n:,}",
            help=(
                "Out-of-fold predictions: each case scored by a model that never saw it."
                if name.startswith("cross")
                else "Cases set aside before training and scored once by the final model."
            ),
        )
        for name, n in sizes.items()
    },
    key="eval_metrics",
)
st.caption(
    table.attrs["caption"]
    + (
        ". Threshold-dependent metrics use the saved threshold "
        f"{model.threshold:.3f}, chosen on development data."
        if model.is_binary
        else "."
    )
)
metric_legend()


@st.fragment
def threshold_explorer(active: ActiveModel) -> None:
    """The threshold slider with the confusion matrix and rates it moves (reruns on its own)."""
    parts: dict[str, Evaluation] = {}
    if active.test is not None:
        parts["test"] = active.test
    if active.cv is not None:
        parts["cv"] = active.cv
    saved = float(active.model.threshold)
    if "eval_threshold" not in st.session_state:
        st.session_state["eval_threshold"] = float(state.get(state.THRESHOLD, saved))

    def reset() -> None:
        st.session_state["eval_threshold"] = saved

    pick_col, slider_col, reset_col = st.columns([2, 4, 1], vertical_alignment="bottom")
    partition = pick_col.radio(
        "Cases",
        list(parts),
        format_func=partition_label,
        horizontal=True,
        key="eval_partition",
        help="The held-out test set by default; the cross-validated development cases are "
        "where a threshold should be chosen.",
    )
    threshold = slider_col.slider(
        "Decision threshold on P(" + str(active.model.positive_class) + ")",
        0.0,
        1.0,
        step=0.01,
        format="%.2f",
        key="eval_threshold",
        help="Cases at or above the threshold are called positive.",
    )
    reset_col.button(
        "Reset", on_click=reset, key="eval_reset", help=f"Back to the saved threshold {saved:.3f}."
    )
    state.put(state.THRESHOLD, float(threshold))
    ev = parts[partition]
    now = confusion_at(ev, threshold)
    base = confusion_at(ev, saved)
    method = summaries.THRESHOLD_RULES.get(
        str((card.get("threshold") or {}).get("method")), "unknown rule"
    )
    st.caption(
        f"The saved threshold {saved:.3f} was chosen by the rule “{method}” on the "
        "cross-validated development predictions. The threshold set here is used on the Explain "
        "and Predict pages in this session; the saved model keeps its own. The small numbers "
        "under each figure are the change from the saved threshold."
    )
    cells = st.columns(5)
    for cell, key, value, before in zip(
        cells,
        ("sensitivity", "specificity", "ppv", "npv"),
        (now.sensitivity, now.specificity, now.ppv, now.npv),
        (base.sensitivity, base.specificity, base.ppv, base.npv),
        strict=False,
    ):
        shown = "n/a" if value != value else f"{value:.3f}"
        delta = None if value != value or before != before else f"{value - before:+.3f}"
        cell.metric(
            METRIC_LABELS[key],
            shown,
            delta=delta if delta not in (None, "+0.000", "-0.000") else None,
            help=METRIC_HELP[key],
        )
    cells[4].metric(
        "Called positive",
        f"{now.n_positive_calls:,} of {ev.n:,}",
        help="Cases at or above the threshold.",
    )
    counts_col, share_col = st.columns(2, gap="medium")
    counts_col.plotly_chart(
        confusion_figure(now.confusion, ev.class_names, title=f"Counts at {threshold:.2f}"),
        width="stretch",
        key="eval_confusion",
    )
    share_col.plotly_chart(
        confusion_figure(
            now.confusion,
            ev.class_names,
            normalize=True,
            title=f"Share of each true class at {threshold:.2f}",
        ),
        width="stretch",
        key="eval_confusion_share",
    )
    st.plotly_chart(threshold_figure(ev, threshold=threshold), width="stretch", key="eval_tradeoff")


@st.cache_resource(show_spinner=False, max_entries=8)
def curve_figures(
    model_key: str, _evaluations: tuple[Evaluation, ...]
) -> tuple[go.Figure, go.Figure, go.Figure]:
    """ROC, precision–recall and calibration figures of the model whose key is ``model_key``.

    They depend on the model alone, not on any widget, so they are built once per model rather
    than on every rerun (plotly spends most of a figure's build validating its template).
    Shared, not copied: nothing mutates a figure after it is built.
    """
    return (
        roc_figure(*_evaluations),
        pr_figure(*_evaluations),
        calibration_figure(*_evaluations),
    )


st.subheader("Operating threshold")
if model.is_binary:
    threshold_explorer(active)
else:
    st.info(
        f"This model has {len(model.classes)} classes and predicts the most probable one, so "
        "there is no threshold to move. The confusion matrices below show every class.",
        icon=":material/info:",
    )
    names = {partition_label(ev.partition): ev for ev in reversed(evaluations)}
    chosen = st.radio("Cases", list(names), horizontal=True, key="eval_partition_multi")
    ev = names[chosen]
    counts_col, share_col = st.columns(2)
    counts_col.plotly_chart(
        confusion_figure(ev.confusion, ev.class_names), width="stretch", key="eval_cm"
    )
    share_col.plotly_chart(
        confusion_figure(ev.confusion, ev.class_names, normalize=True),
        width="stretch",
        key="eval_cm_share",
    )

st.subheader("Curves")
roc_tab, pr_tab, calibration_tab = st.tabs(["ROC", "Precision–recall", "Calibration"])
roc, pr, calibration = curve_figures(active.key, tuple(evaluations))
roc_tab.plotly_chart(roc, width="stretch", key="eval_roc")
pr_tab.plotly_chart(pr, width="stretch", key="eval_pr")
with calibration_tab:
    figure_col, stats_col = st.columns([3, 2], gap="medium")
    figure_col.plotly_chart(calibration, width="stretch", key="eval_calibration")
    with stats_col:
        stats = summaries.calibration_frame(evaluations)
        if stats.empty:
            st.caption("Calibration slope and intercept apply to two-class models.")
        else:
            st.dataframe(stats, width="stretch", key="eval_calibration_stats")
            st.caption(
                "Slope 1 and intercept 0 mean the probabilities can be taken at face value; a "
                "slope below 1 means over-confident predictions, an intercept above 0 that the "
                "disease is under-predicted overall."
            )

st.subheader("Data and robustness")
flow_tab, robust_tab, compare_tab = st.tabs(["Flow of cases", "Robustness", "Compare saved runs"])
with flow_tab:
    flow_col, split_col = st.columns([2, 1], gap="medium")
    try:
        flow_col.plotly_chart(
            flow_figure(summaries.flow_counts_from_card(card)),
            width="stretch",
            key="eval_flow",
        )
    except MedimgError as exc:
        flow_col.info(f"The flow of cases cannot be drawn: {exc}", icon=":material/info:")
    with split_col:
        st.markdown("**Split summary**")
        split = summaries.split_frame(card)
        st.dataframe(split, width="stretch", height=38 + 35 * len(split), key="eval_split")
        st.caption(summaries.card_facts(card)["Validation"] + ".")
with robust_tab:
    folds = summaries.fold_summary(card)
    st.markdown(folds.text())
    if folds.scores:
        st.plotly_chart(summaries.fold_figure(folds), width="stretch", key="eval_folds")
    st.caption(
        "A wide spread between folds means the result depends on which cases were drawn: "
        "trust the interval, not the point estimate."
    )
with compare_tab:
    try:
        runs = Registry().list_runs()
    except MedimgError as exc:
        runs = []
        st.warning(f"The saved runs cannot be listed: {exc}", icon=":material/warning:")
    if len(runs) < 2:
        st.caption("Train another model (or open a saved run) to compare runs here.")
    else:
        by_id = {r.id: r for r in runs}
        same_data = [
            r.id for r in runs if r.dataset_hash == by_id.get(active.run_id, runs[0]).dataset_hash
        ]
        default = [rid for rid in [active.run_id, *same_data] if rid in by_id]
        picked = st.multiselect(
            "Runs to compare",
            list(by_id),
            default=list(dict.fromkeys(default))[:4],
            format_func=lambda rid: comparison.run_label(by_id[rid]),
            key="eval_compare",
        )
        records = [by_id[rid] for rid in picked]
        if records:
            for note in comparison.comparison_notes(records):
                st.warning(note, icon=":material/warning:")
            st.dataframe(
                comparison.runs_frame(records),
                hide_index=True,
                width="stretch",
                key="eval_compare_table",
            )
            st.plotly_chart(
                comparison.comparison_figure(records), width="stretch", key="eval_compare_chart"
            )

workflow.next_step("evaluate")
