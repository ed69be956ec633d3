"""Explain: which features drive the model overall, and why it scored one case as it did."""

from __future__ import annotations

import streamlit as st

from medimg_core.access import Action
from medimg_core.modelling.evaluation import PARTITION_LABELS
from medimg_core.modelling.explain import (
    Explanation,
    contribution_label,
    importance_description,
    standard_error_label,
)
from medimg_core.reporting import review
from medimg_core.reporting.figures.evaluation import case_probability_figure
from medimg_core.reporting.figures.explanation import (
    beeswarm_figure,
    importance_figure,
    waterfall_figure,
)
from medimg_core.ui import case_reports, explaining, feedback, images, large, workflow
from medimg_core.ui import conformal as prediction_sets
from medimg_core.ui.session import ActiveModel
from medimg_core.ui.state import require_router

OUTCOME_HELP = {
    "TP": "True positive: called positive, and it is.",
    "FP": "False positive: called positive, but it is not.",
    "FN": "False negative: missed: called negative, but it is positive.",
    "TN": "True negative: called negative, and it is.",
    "correct": "The predicted class is the true class.",
    "wrong": "The predicted class is not the true class.",
}
PICK_BY_ID = "id"
WHAT_IF_FEATURES = 5

require_router()
st.title("Explain")
workflow.require("explain")

# Patient IDs as keyed pseudonyms when that is on (by default with sign-in).
active = explaining.displayed_active()
model = active.model
positive_name = model.display_name(model.positive_class)
binary = model.is_binary
cut = explaining.threshold(active) if binary else None
sampled_cases = large.stored_cases_note(active.card or {})
if sampled_cases:
    st.info(sampled_cases, icon=":material/filter_alt:")

if binary:
    class_index = 1
else:
    class_index = st.selectbox(
        "Class explained",
        list(range(len(model.classes))),
        format_func=lambda i: str(model.classes[i]),
        key="explain_class",
        help="SHAP values explain the model's score for one class at a time.",
    )
overall = explaining.global_explanation(active.key, class_index, active)
target = overall.class_name

with st.container(border=True):
    st.markdown(
        f"**How to read this page.** Each feature's *contribution* (its SHAP value) is how much "
        f"it moves the model's {overall.output_space} of **{target}** away from the average "
        f"case. Positive contributions push toward {target}, negative ones away. For every "
        "case, the average plus all contributions adds up exactly to the model's output."
    )
    st.caption(
        f"Method: SHAP, {overall.method}, on the original features (the columns of your data, "
        f"not the model's internal encoding). Background: {overall.background_size:,} "
        "development cases."
    )
    shap_sampled = large.shap_note(active.card or {}, len(overall.data))
    if shap_sampled:
        st.caption(shap_sampled)
    with st.expander("Method details and limits"):
        st.markdown(overall.note)
        st.markdown(
            "- Contributions describe **the model**, not the disease: they show what the model "
            "relies on, which is not necessarily a cause.\n"
            "- Correlated features (radius, perimeter and area) share credit; one of them "
            "alone may look less important than the group is.\n"
            "- A case unlike the development data (values outside their range) gets an "
            "explanation of an extrapolation; check the feature values against the typical ones."
        )

st.subheader("Which features matter overall")
card_measure = (active.card or {}).get("top_features_measure")
st.caption(
    f"Features ranked by {importance_description(overall)}"
    + (" (a fixed random sample)" if len(overall.data) >= explaining.GLOBAL_SAMPLE else "")
    + (
        ". The model card's top features are the same ranking."
        if card_measure == importance_description(overall)
        else f". The model card ranks its top features by {card_measure}."
        if card_measure
        else "."
    )
)
# One above the other: side by side, at 1,024 px wide, each got ~280 px and clipped its title,
# its values and the beeswarm's feature names.
st.plotly_chart(importance_figure(overall, max_display=12), key="explain_importance")
st.plotly_chart(beeswarm_figure(overall, max_display=12), key="explain_beeswarm")
st.download_button(
    "Download these SHAP values (CSV)",
    data=explaining.shap_values_csv(overall),
    file_name="medimg-shap-values.csv",
    mime="text/csv",
    key="explain_shap_csv",
    icon=":material/download:",
    on_click=workflow.record_export,
    args=(active.run_id,),
    help=f"One row per case and feature; contributions in {overall.unit}"
    + (", with their standard errors." if overall.standard_errors is not None else "."),
)


@st.fragment
def what_if(
    active: ActiveModel, view: explaining.CaseView, case_class: int, cut: float | None
) -> None:
    """Edit the case's most influential features and see the edited waterfall; reruns on its
    own, so an edit recomputes one explanation and draws one figure."""
    model = active.model
    row_key, case = view.row_key, view.case
    line = cut if case.output_space == "probability" else None
    with st.container(border=True):
        st.markdown("**What if?** Change the values of the case's most influential features.")
        top = list(case.values.abs().sort_values(ascending=False).index[:WHAT_IF_FEATURES])
        edits = {}
        for column, feature in zip(st.columns(len(top)), top, strict=True):
            current = view.features.at[view.label, feature]
            key = f"whatif_{row_key}_{feature}"
            if feature in model.categorical_columns:
                options = [str(c) for c in model.categories.get(feature, ())]
                if str(current) not in options:
                    options.insert(0, str(current))
                edits[feature] = column.selectbox(
                    feature, options, index=options.index(str(current)), key=key
                )
            else:
                edits[feature] = column.number_input(
                    feature,
                    value=explaining.number_or_none(current),
                    step=explaining.input_step(current),
                    format="%.4g",
                    key=key,
                )
        changes = {
            f: v
            for f, v in edits.items()
            if not explaining.same_value(v, view.features.at[view.label, f])
        }
        if not changes:
            st.caption(
                "Change a value above to see how the probability and the contributions move; "
                "the case itself is not modified."
            )
        else:
            edited = explaining.case_view(active, row_key, case_class, changes=changes)
            before, after = view.probability, edited.probability
            # The metric and the call above the edited waterfall, not beside it: at 1,024 px
            # wide the metric's label and change and the waterfall's title were cut short.
            metric_col, call_col = st.columns(2, gap="medium", vertical_alignment="center")
            metric_col.metric(
                f"Edited P({case.class_name})",
                f"{after:.2f}",
                delta=f"{after - before:+.2f} (was {before:.2f})",
                delta_color="off",
                help="The model's probability for the edited case, against the original case.",
            )
            if cut is not None:
                called_before, called_after = before >= cut, after >= cut
                call_col.caption(
                    f"The call changes at the threshold {cut:.2f}."
                    if called_before != called_after
                    else f"The call stays the same at the threshold {cut:.2f}."
                )
            st.plotly_chart(
                waterfall_figure(edited.case, threshold=line), key="explain_whatif_waterfall"
            )


@st.fragment
def one_case(
    active: ActiveModel, overall: Explanation, class_index: int, cut: float | None
) -> None:
    """Pick a case and explain it, with its what-if and report; reruns on its own, so opening
    another case leaves the global figures and their download alone."""
    model = active.model
    binary = model.is_binary
    positive_name = model.display_name(model.positive_class)
    st.subheader("One case")
    evaluations = {ev.partition: ev for ev in (active.test, active.cv) if ev is not None}
    if not evaluations or active.cases is None:
        st.info(
            "This model has no evaluated cases to review; retrain it on the Train page.",
            icon=":material/info:",
        )
        return

    id_column = model.roles.id if model.roles.id and model.roles.id in active.cases else None
    if id_column is not None and active.ids_pseudonymous:
        st.caption(explaining.PSEUDONYM_NOTE)
    pick_options = ["FN", "FP", "uncertain", PICK_BY_ID] if binary else ["wrong", "uncertain", "id"]
    pick_names = {**review.PICK_KINDS, PICK_BY_ID: "any case by ID"}

    SOURCE_NAMES = {"test": "held-out test", "cv": "development (CV)"}
    source_col, pick_col, case_col = st.columns([1.6, 1.1, 1.9], gap="medium")
    partition = source_col.selectbox(
        "Cases from",
        list(evaluations),
        format_func=lambda p: f"{SOURCE_NAMES.get(p, p)} ({evaluations[p].n:,})",
        key="explain_partition",
        help="Held-out test cases were never seen in training. Development cases are scored by "
        "cross-validation (CV): each by a model that did not see it.",
    )
    table = review.review_table(
        evaluations[partition], active.cases, id_column=id_column, threshold=cut
    )
    counts = {**review.case_counts(table), PICK_BY_ID: len(table)}
    pick = pick_col.radio(
        "Pick from",
        pick_options,
        index=next((i for i, k in enumerate(pick_options) if counts[k]), 0),
        format_func=lambda k: f"{pick_names[k]} ({counts[k]:,})",
        key="explain_pick",
        help=f"False negatives: {positive_name} cases the model missed. False positives: "
        f"cases it called {positive_name} wrongly. Counts are at the threshold {cut:.2f}."
        if cut is not None
        else "Misclassified: the most probable class is not the true class.",
    )
    listed = table if pick == PICK_BY_ID else review.select_cases(table, pick, limit=100)
    score_column = "p_positive" if binary else "p_predicted"

    if len(listed) == 0:
        at = f" at the threshold {cut:.2f}" if cut is not None else ""
        case_col.info(
            f"No {pick_names[pick]} among the {len(table):,} "
            f"{PARTITION_LABELS.get(partition, partition)} cases{at}. Pick another list, or "
            "look at the other set of cases.",
            icon=":material/check_circle:",
        )
        return

    labels = listed["label"].to_dict()
    scores = listed[score_column].to_dict()
    row_key = case_col.selectbox(
        "Case"
        if pick == PICK_BY_ID
        else f"Case ({len(listed):,} {pick_names[pick]}, most telling first)",
        list(listed.index),
        format_func=lambda k: f"{labels[k]} · P = {scores[k]:.2f}",
        key=f"explain_case_{partition}_{pick}",
        help="P is the probability the model gave the case "
        + (f"of {positive_name}." if binary else "of its predicted class."),
    )
    workflow.audit_once(
        Action.EXPLAIN, object=active.run_id, key=f"explain:{active.run_id}:{row_key}"
    )

    case_class = class_index
    if not binary:
        predicted = str(table.at[row_key, "predicted"])
        names = [str(c) for c in model.classes]
        case_class = st.selectbox(
            "Explain the case's score for",
            list(range(len(names))),
            index=names.index(predicted) if predicted in names else 0,
            format_func=lambda i: names[i] + (" (predicted)" if names[i] == predicted else ""),
            key=f"explain_case_class_{row_key}",
        )
    view = explaining.case_view(active, row_key, case_class, review_table=table)
    case = view.case
    if partition == "cv" and binary and abs(view.probability - scores[row_key]) >= 0.005:
        st.info(
            f"Cross-validation scored this development case at P = {scores[row_key]:.2f} with a "
            f"model that had not seen it; that score sets its outcome ({view.outcome}). The "
            f"probability and contributions below are the final model's ({view.probability:.2f}), "
            "which was trained on this case. Held-out test cases have no such difference.",
            icon=":material/info:",
        )
    line = cut if case.output_space == "probability" else None

    # The gauge takes the full width: beside the two metrics, at 1,024 px wide, its title and
    # the true diagnosis were cut short.
    if binary and cut is not None:
        st.plotly_chart(
            case_probability_figure(view.probability, cut, class_name=case.class_name),
            key="explain_gauge",
        )
        truth_col, outcome_col = st.columns(2, gap="medium")
    else:
        gauge_col, truth_col, outcome_col = st.columns(
            [2.2, 1.4, 1], gap="medium", vertical_alignment="center"
        )
        gauge_col.metric(
            f"P({case.class_name})",
            f"{view.probability:.2f}",
            help="The model's probability of this class for this case.",
        )
    truth_col.metric(
        "True diagnosis",
        str(view.true_label) if view.true_label is not None else "unknown",
        help="The label recorded in the data.",
    )
    outcome_col.metric(
        "Outcome",
        view.outcome or "n/a",
        help=OUTCOME_HELP.get(view.outcome or "", "How the model's call compares with the truth.")
        + (f" At the threshold {cut:.2f}." if cut is not None else ""),
    )
    prediction_sets.render_case_set(active, row_key, partition=partition, key="explain_set")

    if images.is_volume_model(active):
        # A 3D case: the waterfall, then its three slices across the page (beside the waterfall
        # they were too small to read), then the values.
        chart_col, volume_col, table_col = st.container(), st.container(), st.container()
        with volume_col:
            st.markdown("**The case's volume and segmentation**")
            if not images.show_case_image(active, row_key, key="explain_case"):
                st.info(
                    "This model was trained on 3D volumes, but this session does not hold this "
                    "case's volume. Read the same study on the Data page (Images) to see its "
                    "slices and mask here.",
                    icon=":material/image_not_supported:",
                )
    elif images.is_image_model(active):
        # The case's image and its occlusion map sit beside the waterfall; the values go below.
        chart_col, image_col = st.columns([2.6, 2.4], gap="small")
        with image_col:
            if not images.show_case_image(active, row_key, key="explain_case"):
                st.info(
                    "This model was trained on images, but this session does not hold this case's "
                    "image. Read the same image set on the Data page (Images) to see the image and "
                    "its occlusion map here.",
                    icon=":material/image_not_supported:",
                )
        table_col = st.container()
    else:
        # One above the other: side by side, at 1,024 px wide, the waterfall's title and axis
        # and the table's last columns were cut off.
        chart_col, table_col = st.container(), st.container()
    chart_col.plotly_chart(waterfall_figure(case, threshold=line), key="explain_waterfall")
    table_col.dataframe(
        review.feature_table(case, explaining.development_rows(active), k=10),
        hide_index=True,
        width="stretch",
        height=398,
        key="explain_features",
        column_config={
            "Feature": st.column_config.TextColumn("Feature", width=150),
            "Value": st.column_config.TextColumn("Value", help="This case's value.", width=64),
            "Typical value": st.column_config.TextColumn(
                "Typical",
                help="Median (or most frequent value) among development cases.",
                width=64,
            ),
            contribution_label(case.output_space): st.column_config.NumberColumn(
                f"SHAP ({case.output_space})",
                format="%+.3f",
                help=f"Contribution, in {case.unit}.",
                width=90,
            ),
            standard_error_label(case.output_space): st.column_config.NumberColumn(
                "± SE",
                format="%.3f",
                help="Standard error of the permutation estimate, in "
                f"{case.output_space}: the exact contribution is usually within two of these.",
                width=60,
            ),
        },
    )

    what_if(active, view, case_class, cut)

    reference = explaining.report_reference(view.label, pseudonymous=active.ids_pseudonymous)
    # The button above its note: beside it, at 1,024 px wide, its label was cut short.
    download_col, note_col = st.container(), st.container()
    download_col.download_button(
        "Download this case's report (HTML)",
        data=case_reports.report_builder(active, view, overall.note, cut),
        file_name=f"medimg-{reference}.html",
        mime="text/html",
        key="explain_report",
        icon=":material/download:",
        on_click="ignore",
        help="A self-contained page with the figures, values and method; no identifying data.",
    )
    note_col.caption(
        (
            f"The report names the case **{reference}**, after its pseudonymous ID shown above (a "
            "keyed pseudonym of the uploaded ID, the same as in the run's stored cases)"
            if active.ids_pseudonymous
            else f"The report names the case **{reference}**, a keyed pseudonym of {view.label}"
        )
        + ": the same case always gets the same reference on this installation, and the report "
        "holds only the model's feature values."
    )

    feedback.render_feedback(
        active,
        case_ref=feedback.explain_case_ref(active, view),
        source="explain",
        predicted=str(table.at[row_key, "predicted"]),
        probability=float(scores[row_key]),
        key="explain_feedback",
    )


one_case(active, overall, class_index, cut)
workflow.next_step("explain")
