"""Clean: the cleaning plan as widgets, and an account of every row kept or removed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from medimg_core.errors import MedimgError
from medimg_core.reporting.figures.data import cleaning_figure
from medimg_core.tables.cleaning import DEFAULT_ACCEPTABLE_QUALITY, CleaningPlan
from medimg_core.tables.profile import hidden_columns
from medimg_core.tables.roles import feature_columns
from medimg_core.ui import large, state, widgets, workflow

NONE = "(none)"
FLAG_OR_DROP = {"flag": "Flag them", "drop": "Remove the row"}
MISSING = {
    "impute": "Keep it; the model imputes",
    "drop": "Remove the row (complete cases only)",
}
DUPLICATES = {
    "auto": "Automatic (recommended)",
    "keep": "Keep them, only list them",
    "drop": "Remove every identical row",
}


def _plural(n: int, one: str, many: str) -> str:
    """ "1 group" / "3 groups": the count with the right form of the noun."""
    return f"{n:,} {one if n == 1 else many}"


def _missing_blank(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` for display with missing cells left blank (Streamlit would print "None").

    Numbers are shown with up to six significant digits, as text, because a numeric column
    cannot hold a blank cell.
    """
    shown = {}
    for column in df.columns:
        series = df[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            shown[column] = [
                "" if pd.isna(v) else (f"{v:.6g}" if isinstance(v, float) else str(v))
                for v in series
            ]
        else:
            shown[column] = ["" if pd.isna(v) else str(v) for v in series]
    return pd.DataFrame(shown, index=df.index)


def _choice(
    label: str, options: dict[str, str], current: str, *, key: str, help: str | None = None
) -> str:
    """A radio over ``options`` (value -> wording), starting at ``current``."""
    return st.radio(
        label,
        list(options),
        index=list(options).index(current),
        format_func=options.get,
        key=key,
        help=help,
    )


state.require_router()
st.title("Clean")
workflow.require("clean")

table = state.get(state.TABLE)
roles = state.get(state.ROLES)
frame = table.frame
current = state.get(state.CLEANING)
start = current.plan if current is not None else workflow.suggested_plan()

st.caption(
    "Every row is accounted for: it is kept, or removed with the first rule that matched it. "
    "Nothing here changes a value; imputation happens inside the model, on training folds only."
)

features = feature_columns(frame, roles)
numeric_features = [c for c in features if workflow.is_numeric(frame[c])]

with st.container(border=True):
    st.markdown("**Cleaning plan**")
    missing_col, quality_col, outlier_col = st.columns(3, gap="large")
    with missing_col:
        missing = _choice(
            "Rows with a missing feature value",
            MISSING,
            start.missing,
            key="clean_missing",
            help="Imputation is fitted on the training folds only, so it cannot leak "
            "information from the test cases. Removing incomplete rows is only unbiased when "
            "values are missing completely at random.",
        )
        impute_strategy = start.impute_strategy
        if missing == "impute":
            impute_strategy = st.selectbox(
                "Impute numbers with the",
                ["median", "mean"],
                index=["median", "mean"].index(start.impute_strategy),
                key="clean_impute_strategy",
                help="Categories are imputed with their most frequent value.",
            )
        duplicates = _choice(
            "Repeated records",
            DUPLICATES,
            start.duplicates,
            key="clean_duplicates",
            help="A repeated record has the same patient ID, features and label as an earlier "
            "row; rows with different IDs are different patients and are never removed. "
            "Without an ID, identical rows are removed automatically only when measurements "
            "are continuous enough that different patients would not match by chance; on "
            "scores, codes and coarse values different patients share rows, so they are kept "
            "and listed. The first copy is kept, whatever its label. Rows with the same "
            "features and different labels are always kept: they are hard cases.",
        )
    with quality_col:
        if roles.quality is not None:
            quality = roles.quality
            st.markdown(
                f"Quality flag: **{quality}**",
                help="Chosen on the Data page; change it there.",
            )
        else:
            candidates = [NONE, *(str(c) for c in frame.columns if c != roles.label)]
            quality = st.selectbox(
                "Quality flag column",
                candidates,
                index=candidates.index(start.quality_column)
                if start.quality_column in candidates
                else 0,
                key="clean_quality",
                help="Rows whose flag is missing or not one of the acceptable values are removed.",
            )
        acceptable: list[str] = []
        if quality != NONE:
            values = workflow.quality_values(frame[quality])
            wanted = {v.lower() for v in (start.acceptable_quality or DEFAULT_ACCEPTABLE_QUALITY)}
            acceptable = st.multiselect(
                "Acceptable values",
                values,
                default=[v for v in values if v.lower() in wanted],
                key="clean_acceptable",
                help="Compared without regard to letter case or surrounding spaces.",
            )
            if not acceptable:
                st.caption(
                    "None chosen: the usual values count as acceptable ("
                    + ", ".join(DEFAULT_ACCEPTABLE_QUALITY)
                    + ")."
                )
        drop_empty = st.checkbox(
            "Drop empty columns",
            value=start.drop_empty_columns,
            key="clean_drop_empty",
            help="Feature columns with no value at all.",
        )
        drop_constant = st.checkbox(
            "Drop constant columns",
            value=start.drop_constant_columns,
            key="clean_drop_constant",
            help="Feature columns with a single value cannot tell cases apart.",
        )
    with outlier_col:
        outlier_z = st.number_input(
            "Outlier threshold (robust z)",
            min_value=1.0,
            max_value=100.0,
            value=float(start.outlier_z),
            step=0.5,
            key="clean_outlier_z",
            help="How many robust standard deviations (1.4826 × median absolute deviation) "
            "from the median a value must be to count as an outlier.",
        )
        st.caption(
            "Outliers are flagged, never removed: their limits are learnt from the data, and "
            "whole-number scores on a short scale (1–10, 1–4) are not tested. To remove "
            "impossible values, give plausible ranges."
        )
    ranges_col, range_action_col = st.columns([2, 1], gap="large")
    with ranges_col:
        st.markdown(
            "Plausible ranges",
            help="Add a row per measurement; leave a bound empty for no limit. Bounds are "
            "included in the range.",
        )
        ranges = widgets.ranges_editor(start.ranges, numeric_features, key="clean_ranges")
    with range_action_col:
        range_action = _choice(
            "Values outside a range", FLAG_OR_DROP, start.range_action, key="clean_range_action"
        )

plan = CleaningPlan(
    missing=missing,
    impute_strategy=impute_strategy,
    duplicates=duplicates,
    quality_column=None if quality == NONE else quality,
    acceptable_quality=tuple(acceptable),
    ranges=ranges,
    range_action=range_action,
    outlier_z=float(outlier_z),
    drop_empty_columns=drop_empty,
    drop_constant_columns=drop_constant,
)
big = large.context()
try:
    # A table on the server is cleaned whole, as a job; never its sample, never in this run.
    report = large.cleaning_panel(plan) if big is not None else workflow.run_cleaning(plan)
except MedimgError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
if report is None:
    st.stop()

n_conflict_groups = report.to_dict()["conflicts"]
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Rows in", f"{report.n_input:,}", help="Rows of the table from the Data page.")
m2.metric("Kept", f"{report.n_kept:,}", help="Rows that go on to training.")
m3.metric(
    "Removed",
    f"{report.n_removed:,}",
    help="Rows removed, each by the first rule that matched it. Kept + removed = rows in.",
)
m4.metric(
    "Flagged values",
    f"{len(report.flags):,}",
    help="Values outside a plausible range or statistical outliers, kept but listed below.",
)
m5.metric(
    "Columns dropped",
    f"{len(report.dropped_columns):,}",
    help="Feature columns that are empty or constant.",
)

if plan.range_action == "flag":
    fate = "Flagged values are kept in the data (not removed)."
else:
    fate = (
        "Outliers are kept in the data (not removed); out-of-range values are removed with "
        "their row."
    )
flag_rule = (
    f"A value is flagged when it lies more than {plan.outlier_z:g} robust standard "
    "deviations from its column's median (an outlier)"
    + (", or outside a plausible range above. " if plan.ranges else ". ")
    + fate
    + " Flags ask for a look; they are not errors."
)
if len(report.flags):
    st.caption(flag_rule)

chart_col, notes_col = st.columns([3, 2], gap="large")
with chart_col:
    if report.n_removed:
        st.plotly_chart(cleaning_figure(report), key="cleaning_chart")
    else:
        st.success(
            f"No rule removed a row: all {report.n_input:,} rows are kept.",
            icon=":material/check_circle:",
        )
with notes_col:
    warnings = [n for n in report.notes if n.startswith("Warning: ")]
    remarks = [n for n in report.notes if not n.startswith("Warning: ")]
    for warning in warnings:
        text = warning.removeprefix("Warning: ")
        st.warning(text[:1].upper() + text[1:], icon=":material/warning:")
    widgets.notes(remarks, title="**Notes**" if remarks else None)
    if n_conflict_groups:
        st.info(
            f"{_plural(n_conflict_groups, 'group', 'groups')} of cases "
            f"{'has' if n_conflict_groups == 1 else 'have'} identical features but different "
            "labels; all their rows are kept, as the hard cases the model must be judged on. "
            "See the Conflicts tab.",
            icon=":material/info:",
        )
    show = st.checkbox(
        "Show identifying columns",
        key="clean_show_identifying",
        help="The patient ID and the excluded columns are hidden in the tables below and left "
        "out of the downloads unless you tick this.",
    )
    hidden = hidden_columns(roles)
    stem = Path(table.name).stem or "data"
    clean_data = widgets.without_columns(report.data, hidden, show=show)
    st.markdown("**Downloads**")
    if big is not None:
        st.caption(
            "The cleaned table is not stored or offered for download: it is this table on the "
            "server with the plan above, re-derived where it is needed. The report below "
            "covers every row."
        )
    else:
        widgets.download_csv(
            clean_data,
            f"{stem}-clean.csv",
            "Clean data (CSV)",
            key="download_clean_csv",
            help="Spreadsheet-safe CSV of the kept rows"
            + ("." if show else ", without identifying columns."),
        )
        widgets.download_parquet(
            clean_data,
            f"{stem}-clean.parquet",
            "Clean data (Parquet)",
            key="download_clean_parquet",
        )
    widgets.download_json(
        report.to_dict(),
        f"{stem}-cleaning-report.json",
        "Cleaning report (JSON)",
        key="download_clean_report",
        help="The plan and the counts per rule; no row data.",
    )

# The class balance has a column per rule that removed rows: it takes the full width; the
# missing values (two columns) sit under it.
balance_col = st.container()
missing_col, _ = st.columns(2, gap="large")
with balance_col:
    st.markdown(
        "**Class balance before and after cleaning**",
        help="Rows per class before cleaning, removed by each rule, and after. Cleaning that "
        "changes the share of a class changes predictive values and calibration.",
    )
    balance = report.prevalence()
    if len(balance):
        shares = ["share before", "share after"]
        shown = balance.assign(**{c: balance[c] * 100 for c in shares})
        st.dataframe(
            shown,
            hide_index=True,
            key="clean_prevalence",
            column_config={
                "share before": st.column_config.NumberColumn(format="%.1f%%"),
                "share after": st.column_config.NumberColumn(format="%.1f%%"),
                "change (points)": st.column_config.NumberColumn(format="%+.1f"),
            },
        )
    else:
        st.caption("No label, so no classes to count.")
with missing_col:
    st.markdown(
        "**Missing values per predictor**",
        help="Counted on the table before cleaning. With imputation the rows are kept and the "
        "model fills the gaps, fitted on training folds only.",
    )
    missing_table = pd.DataFrame(
        {
            "predictor": list(report.missing_by_column),
            "missing": list(report.missing_by_column.values()),
        }
    )
    missing_table = missing_table[missing_table["missing"] > 0]
    if len(missing_table):
        missing_table["% missing"] = 100 * missing_table["missing"] / max(report.n_input, 1)
        st.dataframe(
            missing_table.sort_values("missing", ascending=False),
            hide_index=True,
            key="clean_missingness",
            column_config={"% missing": st.column_config.NumberColumn(format="%.1f%%")},
        )
    else:
        st.caption("No predictor has a missing value.")

tab_names = [
    f"Removed rows ({report.n_removed:,})",
    f"Repeated records ({len(report.duplicates):,})",
    f"Conflicts, kept ({len(report.conflicts):,})",
    f"Flagged values ({len(report.flags):,})",
    f"Dropped columns ({len(report.dropped_columns):,})",
]
if len(report.contradictions):
    tab_names.append(f"Same ID, different labels ({len(report.contradictions):,})")
if len(report.across_split):
    tab_names.append(f"Identical across the split ({len(report.across_split):,})")
removed_tab, repeats_tab, conflicts_tab, flags_tab, dropped_tab, *extra_tabs = st.tabs(tab_names)
with removed_tab:
    if report.n_removed:
        removed = widgets.without_columns(report.removed, hidden, show=show)
        reason = report.reason_column
        removed = removed[[reason, *(c for c in removed.columns if c != reason)]]
        st.caption("Blank cells are missing values.")
        widgets.paged_dataframe(_missing_blank(removed), key="clean_removed")
    else:
        st.caption("No row was removed.")
with repeats_tab:
    if len(report.duplicates):
        st.caption(
            "Each row repeats the row in 'copy_of'; 'action' says whether it was removed or "
            "kept. The first copy is always the one kept."
        )
        widgets.paged_dataframe(report.duplicates, key="clean_repeats", hide_index=True)
    else:
        st.caption("No row repeats an earlier one.")
with conflicts_tab:
    if len(report.conflicts):
        conflicts = widgets.without_columns(report.conflicts, hidden, show=show)
        group = conflicts.columns[-1]
        conflicts = conflicts[[group, *(c for c in conflicts.columns if c != group)]]
        st.caption(
            "Rows with identical features and different labels, numbered by group. They are "
            "kept: they are the hard cases a model must be judged on."
        )
        widgets.paged_dataframe(_missing_blank(conflicts), key="clean_conflicts")
    else:
        st.caption("No two cases share their features with different labels.")
with flags_tab:
    if len(report.flags):
        widgets.paged_dataframe(report.flags, key="clean_flags", hide_index=True)
    else:
        st.caption("No value is outside a plausible range or an outlier.")
with dropped_tab:
    if report.dropped_columns:
        st.dataframe(
            {
                "column": [str(c) for c in report.dropped_columns],
                "reason": list(report.dropped_columns.values()),
            },
            hide_index=True,
            key="clean_dropped",
        )
    else:
        st.caption("No column was dropped.")

extra = iter(extra_tabs)
if len(report.contradictions):
    with next(extra):
        st.caption(
            "The same patient ID with identical features and different labels: a data error "
            "to check in the source. The rows are kept."
        )
        contradictions = widgets.without_columns(report.contradictions, hidden, show=show)
        widgets.paged_dataframe(_missing_blank(contradictions), key="clean_contradictions")
if len(report.across_split):
    with next(extra):
        st.caption(
            "Test rows of the file's own split whose features equal a development row "
            "('twin'). Both are kept so the official test set stays whole; "
            "'opposite_label' marks pairs whose labels disagree."
        )
        widgets.paged_dataframe(report.across_split, key="clean_across", hide_index=True)

workflow.next_step("clean")
