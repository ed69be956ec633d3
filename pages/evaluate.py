"""Evaluate: metrics with 95% intervals, the operating threshold, curves, flow and comparison."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import streamlit as st

from medimg_core.access import Action
from medimg_core.errors import MedimgError
from medimg_core.modelling.calibration import predictive_values_at, recalibration_check
from medimg_core.modelling.evaluation import (
    METRIC_HELP,
    METRIC_KEYS,
    METRIC_LABELS,
    Evaluation,
    confusion_at,
    format_metric,
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
from medimg_core.store import guarded
from medimg_core.ui import conformal as prediction_sets
from medimg_core.ui import large, state, workflow
from medimg_core.ui.auth import current_actor
from medimg_core.ui.decision import render_decision_curves
from medimg_core.ui.external import render_external_validation
from medimg_core.ui.session import ActiveModel
from medimg_core.ui.subgroups import render_subgroups

state.require_router()
st.title("Evaluate")
workflow.require("evaluate")

active: ActiveModel = state.get(state.ACTIVE)
workflow.audit_once(Action.EVALUATE, object=active.run_id, key=f"evaluate:{active.run_id}")
model = active.model
card = active.card
evaluations = [ev for ev in (active.cv, active.test) if ev is not None]

st.caption(
    f"{summaries.model_name(model.kind)} · run {active.run_id or 'not recorded'} · "
    + (positive_class_caption(evaluations[0]) if evaluations else "")
)
for warning in active.warnings:
    st.warning(warning, icon=":material/warning:")
sampled_cases = large.stored_cases_note(card)
if sampled_cases:
    st.info(sampled_cases, icon=":material/filter_alt:")


def metric_legend() -> None:
    with st.expander("What the metrics mean"):
        st.markdown(
            "\n".join(f"- **{METRIC_LABELS[k]}** — {METRIC_HELP[k]}" for k in METRIC_KEYS)
            + "\n\nIntervals are 95% bootstrap percentile intervals"
            + (" (patients resampled)." if card.get("validation", {}).get("grouped_by") else ".")
        )


def reader_comparison(card: dict[str, Any]) -> None:
    """The metrics with and without the features marked as a reader's assessment."""
    frame = summaries.reader_comparison_frame(card)
    if frame is None:
        return
    entry = card.get("without_reader") or {}
    label = ", ".join(str(c) for c in entry.get("reader_columns") or ())
    st.markdown(
        f"**With and without {label}** (a reader's assessment)",
        help="The same model kind cross-validated on the same folds, and tested once on the "
        f"same test cases, without {label}; its threshold is chosen the same way on its own "
        "development predictions.",
    )
    st.dataframe(frame, width="stretch", key="eval_reader_comparison")
    st.caption(str(entry.get("note") or ""))


if not evaluations:
    st.info(
        "This run was saved without its cases, so only the metrics recorded in its model card "
        "can be shown (no curves or threshold explorer).",
        icon=":material/info:",
    )
    st.dataframe(summaries.card_summary_frame(card), width="stretch", height=400)
    metric_legend()
    reader_comparison(card)
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
reader_comparison(card)


@st.fragment
def threshold_explorer(active: ActiveModel) -> None:
    """The threshold slider with the confusion matrix and rates it moves (reruns on its own)."""
    # Development cases first: a threshold is chosen on out-of-fold predictions, never on the
    # test set, which is scored once.
    parts: dict[str, Evaluation] = {}
    if active.cv is not None:
        parts["cv"] = active.cv
    if active.test is not None:
        parts["test"] = active.test
    saved = float(active.model.threshold)
    if "eval_threshold" not in st.session_state:
        st.session_state["eval_threshold"] = float(state.get(state.THRESHOLD, saved))
        st.session_state["eval_threshold_moved_on"] = state.get(state.THRESHOLD_SOURCE)

    def reset() -> None:
        st.session_state["eval_threshold"] = saved
        st.session_state["eval_threshold_moved_on"] = None

    def moved() -> None:
        st.session_state["eval_threshold_moved_on"] = st.session_state.get("eval_partition")

    pick_col, slider_col, reset_col = st.columns([2, 4, 1], vertical_alignment="bottom")
    partition = pick_col.radio(
        "Cases",
        list(parts),
        format_func=partition_label,
        horizontal=True,
        key="eval_partition",
        help="The cross-validated development cases by default: that is where a threshold "
        "should be chosen. The held-out test cases show how the chosen threshold does on "
        "cases scored once; choosing it there makes the test figures optimistic.",
    )
    threshold = slider_col.slider(
        "Decision threshold on P(" + str(model.display_name(model.positive_class)) + ")",
        0.0,
        1.0,
        step=0.01,
        format="%.2f",
        key="eval_threshold",
        on_change=moved,
        help="Cases at or above the threshold are called positive.",
    )
    reset_col.button(
        "Reset", on_click=reset, key="eval_reset", help=f"Back to the saved threshold {saved:.3f}."
    )
    moved_on = (
        None if abs(threshold - saved) < 1e-9 else st.session_state.get("eval_threshold_moved_on")
    )
    state.put(state.THRESHOLD, float(threshold))
    state.put(state.THRESHOLD_SOURCE, moved_on)
    if moved_on == "test":
        st.warning(summaries.TEST_THRESHOLD_WARNING, icon=":material/warning:")
    ev = parts[partition]
    now = confusion_at(ev, threshold)
    base = confusion_at(ev, saved)
    # The last cell is wider: "Called positive" is cut to "Called posi…" in a fifth of 1,024 px.
    cells = st.columns([1, 1, 1, 1, 1.4])
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
        f"{now.n_positive_calls:,}",
        help=f"Cases at or above the threshold, out of the {ev.n:,} cases shown.",
    )
    cells[4].caption(f"of {ev.n:,} cases")
    # Everything here is sent again on every move, so the fragment draws only what the threshold
    # changes: one matrix carrying both the counts and each true class's share (two matrices
    # side by side repeated the counts), and the trade-off curves for their threshold line.
    st.plotly_chart(
        confusion_figure(
            now.confusion,
            ev.class_names,
            normalize=True,
            title=f"Counts at {threshold:.2f}, with the share of each true class",
        ),
        width="stretch",
        key="eval_confusion",
    )
    st.plotly_chart(threshold_figure(ev, threshold=threshold), width="stretch", key="eval_tradeoff")
    target_prevalence(ev, threshold, parts.get("cv", ev))


def target_prevalence(ev: Evaluation, threshold: float, development: Evaluation) -> None:
    """PPV and NPV at the prevalence of the population where the model will be used.

    The input starts at the development prevalence, which does not change with the partition
    viewed, so a typed prevalence survives switching between development and test cases.
    """
    positive = ev.class_names[1]
    st.markdown(
        "**PPV and NPV at the prevalence where the model will be used**",
        help="PPV and NPV depend on how common the disease is. The figures above hold at the "
        "prevalence of these cases; a screening population has far fewer diseased cases.",
    )
    observed = float(development.y_true.mean()) * 100
    prevalence_col, ppv_col, npv_col = st.columns([2, 2, 2], vertical_alignment="bottom")
    percent = prevalence_col.number_input(
        f"Prevalence of {positive} in the target population (%)",
        min_value=0.01,
        max_value=99.99,
        value=round(min(max(observed, 0.01), 99.99), 2),
        step=0.5,
        format="%.2f",
        key="eval_prevalence",
        help=f"{observed:.1f}% of the development cases are {positive}. Type the share "
        "expected where the model will be used, e.g. 1 for a screening population with 1% "
        "disease.",
    )
    try:
        pv = predictive_values_at(ev, float(percent) / 100, threshold)
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    # The point estimate as the metric, its interval underneath: a long "0.987 (0.967–1.000)"
    # would be cut off with an ellipsis in a metric of a third of the page.
    for column, name, value, meaning in (
        (ppv_col, "PPV", pv.ppv, f"Share of cases called {positive} that truly are"),
        (npv_col, "NPV", pv.npv, f"Share of cases cleared that truly are not {positive}"),
    ):
        column.metric(
            f"{name} at {float(percent):.2f}%",
            "n/a" if value.value != value.value else f"{value.value:.3f}",
            help=f"{meaning}, at this prevalence.",
        )
        column.caption(summaries.interval_text(value))
    cases = partition_label(ev.partition).lower()
    st.caption(
        f"Bayes' rule from the sensitivity for {positive} {format_metric(pv.sensitivity)} and "
        f"the specificity {format_metric(pv.specificity)} on the {cases} cases at threshold "
        f"{threshold:.2f}; the interval bounds use the matching bounds of "
        "sensitivity and specificity. It assumes sensitivity and specificity carry over to the "
        "target population unchanged."
    )


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
    # Outside the fragment: it does not change with the threshold, so a move need not resend it.
    st.caption(
        f"The saved threshold {float(model.threshold):.3f} was chosen by the rule "
        f"“{summaries.threshold_rule_text(card)}” on the cross-validated development "
        "predictions. The threshold set here is used on the Explain and Predict pages in this "
        "session; the saved model keeps its own. The small numbers under each figure are the "
        "change from the saved threshold."
    )
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


def recalibration(active: ActiveModel) -> None:
    """Logistic recalibration fitted on development data, checked once on the test cases."""
    if not st.toggle(
        "Recalibrate on development data",
        key="eval_recalibrate",
        help="Fits an intercept and a slope on the logit of the out-of-fold development "
        "probabilities (Platt scaling) and shows the test calibration before and after. The "
        "test cases play no part in the fit.",
    ):
        return
    settings = (card.get("validation") or {}).get("settings") or {}
    if active.cv is None:
        return
    try:
        check = recalibration_check(
            active.cv,
            active.test,
            method=str((card.get("threshold") or {}).get("method")),
            target_sensitivity=float(settings.get("target_sensitivity") or 0.9),
            threshold=float(active.model.threshold),
        )
    except MedimgError as exc:
        st.info(f"No recalibration can be fitted: {exc}", icon=":material/info:")
        return
    recal = check.recalibration
    rows = check.table()
    if rows and check.test_before is not None and check.test_after is not None:
        table_col, figure_col = st.columns([2, 3], gap="medium")
        table_col.dataframe(
            {
                "On the test cases": [r["figure"] for r in rows],
                "As trained": [r["before"] for r in rows],
                "Recalibrated": [r["after"] for r in rows],
            },
            hide_index=True,
            width="stretch",
            key="eval_recalibration",
        )
        figure_col.plotly_chart(
            calibration_figure(check.test_before, check.test_after),
            width="stretch",
            key="eval_recalibration_chart",
        )
    else:
        st.caption("This run has no test set, so the recalibration cannot be checked.")
    if check.still_departs:
        st.warning(
            "Recalibration on development data does not remove the test cases' departure: "
            "the probabilities stay off on average there. The test cases differ from the "
            "development cases (prevalence or case mix); only cases from the target population "
            "can recalibrate the model for it.",
            icon=":material/warning:",
        )
    st.caption(
        f"Recalibration fitted on the {recal.n_development:,} out-of-fold development "
        f"predictions only: P′ = expit({recal.intercept:.2f} + {recal.slope:.2f} × logit P). "
        f"The threshold rule “{summaries.threshold_rule_text(card)}” is re-applied to the "
        f"recalibrated development probabilities ({check.threshold_before:.3f} → "
        f"{check.threshold_after:.3f}). The test cases are scored once with it. This is an "
        "analysis: the saved model, its threshold and the Predict page are not changed; "
        "retrain or recalibrate with data from the target population before using recalibrated "
        "probabilities."
    )


st.subheader("Curves")
roc_tab, pr_tab, calibration_tab = st.tabs(["ROC", "Precision–recall", "Calibration"])
roc, pr, calibration = curve_figures(active.key, tuple(evaluations))
roc_tab.plotly_chart(roc, width="stretch", key="eval_roc")
pr_tab.plotly_chart(pr, width="stretch", key="eval_pr")
with calibration_tab:
    # One above the other: side by side, a 1,024 px window squeezed the curves, cut the
    # legend's intervals and hid the table's test column.
    st.plotly_chart(calibration, width="stretch", key="eval_calibration")
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
    if model.is_binary and active.cv is not None:
        recalibration(active)

render_decision_curves(active)
prediction_sets.render_coverage(active, key="eval_prediction_sets")
render_subgroups(active)
render_external_validation(active)

st.subheader("Data and robustness")
flow_tab, robust_tab, compare_tab = st.tabs(["Flow of cases", "Robustness", "Compare saved runs"])
with flow_tab:
    # One above the other: side by side, a 1,024 px window cut the split table's columns off.
    try:
        st.plotly_chart(
            flow_figure(summaries.flow_counts_from_card(card)),
            width="stretch",
            key="eval_flow",
        )
    except MedimgError as exc:
        st.info(f"The flow of cases cannot be drawn: {exc}", icon=":material/info:")
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
        runs = guarded.list_runs(current_actor())
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
