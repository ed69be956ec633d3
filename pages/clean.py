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
from medimg_core.ui import state, widgets, workflow

NONE = "(none)"
FLAG_OR_DROP = {"flag": "Flag them", "drop": "Remove the row"}


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
            {"drop": "Remove the row", "impute": "Keep it; the model imputes"},
            start.missing,
            key="clean_missing",
            help="Imputation is fitted on the training folds only, so it cannot leak "
            "information from the test cases.",
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
        drop_duplicates = st.checkbox(
            "Remove duplicate rows",
            value=start.drop_duplicates,
            key="clean_duplicates",
            help="Rows identical on every column but the ID, or with the same ID, features and "
            "label. The first copy is kept. Conflicting duplicates (same features, different "
            "labels) are always removed.",
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
        outlier_action = _choice(
            "Outliers", FLAG_OR_DROP, start.outlier_action, key="clean_outlier_action"
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
    drop_duplicates=drop_duplicates,
    quality_column=None if quality == NONE else quality,
    acceptable_quality=tuple(acceptable),
    ranges=ranges,
    range_action=range_action,
    outlier_action=outlier_action,
    outlier_z=float(outlier_z),
    drop_empty_columns=drop_empty,
    drop_constant_columns=drop_constant,
)
try:
    report = workflow.run_cleaning(plan)
except MedimgError as exc:
    st.error(str(exc), icon=":material/error:")
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

kept_or_removed = {
    "flag": "kept in the data (not removed)",
    "drop": "removed with their row",
}
if plan.outlier_action == plan.range_action:
    fate = f"Flagged values are {kept_or_removed[plan.outlier_action]}."
else:
    fate = (
        f"Outliers are {kept_or_removed[plan.outlier_action]}; out-of-range values are "
        f"{kept_or_removed[plan.range_action]}."
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
    widgets.notes(report.notes, title="**Notes**" if report.notes else None)
    if n_conflict_groups:
        st.warning(
            f"{_plural(n_conflict_groups, 'group', 'groups')} of cases "
            f"{'has' if n_conflict_groups == 1 else 'have'} identical features but different "
            "labels; all their rows were removed. See the Conflicts tab.",
            icon=":material/warning:",
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

removed_tab, conflicts_tab, flags_tab, dropped_tab = st.tabs(
    [
        f"Removed rows ({report.n_removed:,})",
        f"Conflicts ({len(report.conflicts):,})",
        f"Flagged values ({len(report.flags):,})",
        f"Dropped columns ({len(report.dropped_columns):,})",
    ]
)
with removed_tab:
    if report.n_removed:
        removed = widgets.without_columns(report.removed, hidden, show=show)
        reason = report.reason_column
        removed = removed[[reason, *(c for c in removed.columns if c != reason)]]
        st.caption("Blank cells are missing values.")
        widgets.paged_dataframe(_missing_blank(removed), key="clean_removed")
    else:
        st.caption("No row was removed.")
with conflicts_tab:
    if len(report.conflicts):
        conflicts = widgets.without_columns(report.conflicts, hidden, show=show)
        group = conflicts.columns[-1]
        conflicts = conflicts[[group, *(c for c in conflicts.columns if c != group)]]
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

workflow.next_step("clean")
