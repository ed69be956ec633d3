"""The Evaluate page's "Subgroups" and "Sites (leave-one-site-out)" sections.

Both read what training stored in the model card (``subgroups`` and ``leave_one_site_out``),
so a reopened run shows exactly what was computed when it was trained; a run whose card has no
subgroup entry but whose stored cases hold the columns is computed from the cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from medimg_core.errors import MedimgError
from medimg_core.modelling.evaluation import MetricValue, format_metric, metric_label
from medimg_core.modelling.subgroups import GroupMetrics, subgroup_card
from medimg_core.reporting.figures.subgroups import forest_figure
from medimg_core.reporting.summaries import group_metrics_from_card, metric_from_card
from medimg_core.ui.session import ActiveModel

__all__ = [
    "render_subgroups",
    "subgroup_table",
    "subgroups_from_card",
]

_PARTITION_TEXT = {"cv": "cross-validated", "test": "held-out test", "held-out site": "held out"}


def subgroups_from_card(active: ActiveModel) -> dict[str, Any] | None:
    """The run's subgroup entry: the card's, else computed from the stored cases."""
    entry = active.card.get("subgroups")
    if entry:
        return dict(entry)
    cases = active.cases
    if cases is None or "partition" not in cases.columns:
        return None  # not stored cases (no partition): nothing to split by CV and test
    columns = [c for c in active.model.roles.analysis_columns() if c in cases.columns]
    if not columns:
        return None
    n_boot = int((active.card.get("validation") or {}).get("n_boot") or 1000)
    return subgroup_card(active.model, cases, columns, n_boot=n_boot)


def subgroup_table(
    rows: Sequence[GroupMetrics], positive: str | None, *, first_class: str = "first class"
) -> pd.DataFrame:
    """One line per group and partition: cases, positives, and the main metrics with 95% CIs.

    Binary models show the cases of the positive class and ROC AUC, sensitivity, specificity,
    PPV and NPV for it; multi-class models the cases not of ``first_class`` and accuracy,
    balanced accuracy and macro ROC AUC.
    """
    keys = (
        ("roc_auc", "sensitivity", "specificity", "ppv", "npv")
        if positive is not None
        else ("accuracy", "balanced_accuracy", "roc_auc")
    )
    records = []
    for r in rows:
        record: dict[str, Any] = {
            "Group": r.group,
            "Data": _PARTITION_TEXT.get(r.partition, r.partition),
            "Cases": r.n,
            (f"{positive} cases" if positive is not None else f"Not {first_class}"): r.n_positive,
        }
        for key in keys:
            record[metric_label(key, positive)] = format_metric(
                r.metrics.get(key, MetricValue(np.nan, (np.nan, np.nan)))
            )
        record["Note"] = r.note
        records.append(record)
    return pd.DataFrame.from_records(records)


def render_subgroups(active: ActiveModel) -> None:
    """Draw the "Subgroups" and "Sites (leave-one-site-out)" sections of the Evaluate page."""
    model = active.model
    positive = str(model.display_name(model.positive_class)) if model.is_binary else None
    first = str(model.display_name(model.classes[0]))
    metric = "roc_auc" if model.is_binary else "accuracy"
    st.subheader(
        "Subgroups",
        help="The metrics with their 95% intervals for each group of a site, sex, age or other "
        "subgroup column, at the saved threshold: on the cross-validated development "
        "predictions and on the held-out test set. Small groups have wide intervals; a group "
        "with one class only has no ROC AUC.",
    )
    try:
        entry = subgroups_from_card(active)
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
        entry = None
    if not entry:
        st.caption(
            "No site or subgroup column was marked for this model. Mark the site and columns "
            "such as sex or age as subgroups on the Data page, then train again."
        )
    else:
        for column, part in entry.items():
            rows = group_metrics_from_card([*(part.get("cv") or ()), *(part.get("test") or ())])
            st.markdown(f"**By {column}** — groups formed {part.get('grouping', '')}")
            st.dataframe(
                subgroup_table(rows, positive, first_class=first),
                hide_index=True,
                key=f"eval_subgroups_{column}",
            )
            with st.expander(f"Forest plot by {column}"):
                st.plotly_chart(
                    forest_figure(
                        rows, metric, positive=positive, title=f"{metric_label(metric)} by {column}"
                    ),
                    width="stretch",
                    key=f"eval_forest_{column}",
                )
    _render_sites(active, metric, positive, first)


def _render_sites(active: ActiveModel, metric: str, positive: str | None, first: str) -> None:
    site = active.model.roles.site
    entry = active.card.get("leave_one_site_out")
    if not site and not entry:
        return
    st.subheader(
        "Sites (leave-one-site-out)",
        help="Each site in turn was held out: a model was developed on the other sites exactly "
        "as in training and scored once on the held-out site. The deployed model is the one "
        "trained with the normal validation; this is extra evidence of how it transfers to a "
        "new site.",
    )
    if not entry:
        st.caption(
            f"Leave-one-site-out validation was not run for this model. Tick it on the Train "
            f"page (shown when a site column is set; here {site}), or use "
            "`medimg train --validation leave-one-site-out`."
        )
        return
    rows = group_metrics_from_card(entry.get("per_site") or ())
    pooled = entry.get("pooled")
    reference = metric_from_card(pooled.get(metric)) if pooled else None
    if rows:
        st.plotly_chart(
            forest_figure(
                rows,
                metric,
                reference=reference,
                reference_label="Pooled",
                positive=positive,
                title=f"{metric_label(metric)} on each held-out site",
            ),
            width="stretch",
            key="eval_sites_forest",
        )
        st.dataframe(
            subgroup_table(rows, positive, first_class=first),
            hide_index=True,
            key="eval_sites_table",
        )
    if reference is not None:
        st.markdown(
            f"**Pooled over the held-out sites:** {metric_label(metric)} {format_metric(reference)}"
        )
    for note in entry.get("notes") or ():
        st.caption(note)
