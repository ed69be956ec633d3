"""Data: load a table (or the sample), join a second one if needed, confirm roles, profile."""

from __future__ import annotations

import streamlit as st

from medimg_core import plots
from medimg_core.errors import MedimgError
from medimg_core.integration import join_tables
from medimg_core.io import SAMPLES
from medimg_core.profile import column_role, hidden_columns
from medimg_core.ui import cache, state, widgets, workflow

TABLE_TYPES = ["csv", "tsv", "txt", "xlsx", "xlsm", "parquet", "pq"]
NONE = "(none)"

st.title("Data")
st.caption(
    "One row per case (image, lesion or patient): a label (the diagnosis) and the features "
    "measured on it. medimg proposes the role of each column; you confirm them."
)

with st.container(border=True):
    upload_col, sample_col = st.columns([3, 2], gap="large")
    with upload_col:
        upload = st.file_uploader(
            "Upload a table: CSV, TSV, Excel (.xlsx) or Parquet",
            type=TABLE_TYPES,
            key="upload",
            help="The file is read on this server only. Missing-value tokens (NA, ?, null, -) "
            "become missing; mostly numeric columns become numbers.",
        )
    with sample_col:
        st.markdown("**No file at hand?**")
        st.caption(SAMPLES[workflow.SAMPLE_NAME])
        if st.button("Use the built-in sample", key="use_sample", icon=":material/science:"):
            workflow.use_sample("data")

if upload is not None and st.session_state.get("data_upload_id") != upload.file_id:
    try:
        workflow.handle_upload(upload.getvalue(), upload.name)
        st.session_state["data_upload_id"] = upload.file_id
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")

if not state.has(state.TABLE):
    st.info("Upload a table or use the built-in sample to begin.", icon=":material/upload_file:")
    st.stop()

table = state.get(state.TABLE)
frame = table.frame
proposal = state.get(state.PROPOSAL)
columns = [str(c) for c in frame.columns]

st.markdown(f"**{table.name}** · {len(frame):,} rows × {frame.shape[1]:,} columns")
if table.format != "sample":
    widgets.notes(table.notes)

join = st.session_state.get(workflow.JOIN_RESULT)
with st.expander("Join a second table on a key (optional)", expanded=join is not None):
    st.caption(
        "For example clinical data (one row per patient) joined to image features. Each key "
        "may appear only once in the second table."
    )
    other_upload = st.file_uploader(
        "Second table", type=TABLE_TYPES, key="upload_join", label_visibility="collapsed"
    )
    other = None
    if other_upload is not None:
        try:
            other = cache.uploaded_table(other_upload.getvalue(), other_upload.name)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
    if other is not None:
        other_columns = [str(c) for c in other.frame.columns]
        left_default = proposal.id if proposal.id in columns else columns[0]
        k1, k2, k3 = st.columns(3)
        left_key = k1.selectbox(
            "Key in the current table",
            columns,
            index=columns.index(left_default),
            key="join_left_key",
        )
        right_key = k2.selectbox(
            f"Key in {other.name}",
            other_columns,
            index=other_columns.index(left_key) if left_key in other_columns else 0,
            key="join_right_key",
        )
        how = k3.radio(
            "Keep",
            ["inner", "left"],
            format_func={
                "inner": "matched rows only",
                "left": "every row of the current table",
            }.get,
            key="join_how",
        )
        if st.button("Join the tables", key="join", icon=":material/join:"):
            try:
                result = join_tables(frame, other.frame, on=(left_key, right_key), how=how)
            except MedimgError as exc:
                st.error(str(exc), icon=":material/error:")
            else:
                workflow.set_table(workflow.joined_table(table, result.frame, other.name))
                st.session_state[workflow.JOIN_RESULT] = {
                    "summary": result.to_dict(),
                    "unmatched_left": [str(k) for k in result.unmatched_left[:1000]],
                    "unmatched_right": [str(k) for k in result.unmatched_right[:1000]],
                    "notes": list(result.notes),
                }
                st.rerun()
    if join is not None:
        summary = join["summary"]
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("Rows in the joined table", f"{summary['rows_out']:,}")
        m2.metric(
            "Matched rows",
            f"{summary['rows_matched']:,} of {summary['rows_left']:,}",
            help="Rows of the first table whose key was found in the second table.",
        )
        m3.metric(
            "Unmatched keys, first table",
            f"{summary['unmatched_left']:,}",
            help="Keys of the first table with no row in the second table.",
        )
        m4.metric(
            "Unmatched keys, second table",
            f"{summary['unmatched_right']:,}",
            help="Keys of the second table with no row in the first table.",
        )
        widgets.notes(join["notes"])
        if join["unmatched_left"] or join["unmatched_right"]:
            with st.popover("Show the unmatched keys", icon=":material/key_off:"):
                u1, u2 = st.columns(2)
                u1.markdown("**First table only**")
                u1.dataframe({"key": join["unmatched_left"]}, height=240, hide_index=True)
                u2.markdown("**Second table only**")
                u2.dataframe({"key": join["unmatched_right"]}, height=240, hide_index=True)

confirmed = state.get(state.ROLES)
start = confirmed or proposal.to_roles()


def _index(options: list[str], value: str | None) -> int | None:
    return options.index(value) if value in options else None


st.subheader("Roles")
roles_col, balance_col = st.columns([3, 2], gap="large")
with roles_col:
    r1, r2 = st.columns(2)
    label = r1.selectbox(
        "Label (diagnosis)",
        columns,
        index=_index(columns, start.label),
        placeholder="Choose the label column",
        key="role_label",
        help="The column the model learns to predict.",
    )
    optional = [NONE, *columns]
    patient = r2.selectbox(
        "Patient ID",
        optional,
        index=_index(optional, start.id) or 0,
        key="role_id",
        help="Rows with the same ID belong to one patient: they are kept together when the "
        "data are split, so no patient is in both training and test.",
    )
    r3, r4 = st.columns(2)
    quality = r3.selectbox(
        "Quality flag",
        optional,
        index=_index(optional, start.quality) or 0,
        key="role_quality",
        help="A column saying whether an image is usable; the Clean page keeps acceptable "
        "values only.",
    )
    site = r4.selectbox(
        "Site",
        optional,
        index=_index(optional, start.site) or 0,
        key="role_site",
        help="Hospital, scanner or batch; never a feature, shown for robustness checks.",
    )
    exclude = st.multiselect(
        "Identifying or excluded columns (never used as features)",
        [c for c in columns if c != label],
        default=[c for c in start.exclude if c in columns and c != label],
        key="role_exclude",
        help="Names, dates of birth, phone numbers, addresses, free text, other identifiers, "
        "and anything else you want to leave out.",
    )
    reasons = [f"{c} ({why})" for c, why in proposal.identifying.items() if c in columns]
    if reasons:
        st.caption("Proposed as identifying: " + ", ".join(reasons) + ".")

    classes = workflow.label_classes(frame, label)
    positive = None
    if label is not None and len(classes) == 2:
        confirmed_positive = state.get(state.POSITIVE)
        default_positive = (
            confirmed_positive if confirmed_positive in classes else proposal.positive_class
        )
        positive = st.selectbox(
            "Positive class",
            classes,
            index=_index(classes, default_positive) if default_positive in classes else 1,
            format_func=str,
            key="role_positive",
            help="The class the model flags (usually the disease). Sensitivity is measured on "
            "it, specificity on the other class.",
        )
    elif label is not None and len(classes) > 2:
        st.caption(f"The label has {len(classes)} classes: a multi-class model will be trained.")
    elif label is not None:
        st.warning(
            f"The label '{label}' has {len(classes)} class(es); a diagnostic model needs at "
            "least two. Choose another label column.",
            icon=":material/warning:",
        )

    pending = None
    try:
        pending = workflow.build_roles(
            label=label,
            id=None if patient == NONE else patient,
            quality=None if quality == NONE else quality,
            site=None if site == NONE else site,
            exclude=exclude,
        )
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
    if st.button(
        "Confirm roles",
        key="confirm_roles",
        type="primary",
        disabled=pending is None or len(classes) < 2,
        icon=":material/check:",
    ):
        workflow.confirm_roles(pending, positive)
        confirmed = pending
    if confirmed is not None and confirmed == pending and state.get(state.POSITIVE) == positive:
        st.success("Roles confirmed.", icon=":material/check_circle:")
    elif confirmed is not None:
        st.warning(
            "You changed the roles: press Confirm roles to apply the change.",
            icon=":material/edit:",
        )
    else:
        st.info("Check the proposed roles, then press Confirm roles.", icon=":material/info:")

with balance_col:
    if label is not None and classes:
        st.plotly_chart(plots.class_balance_figure(frame[label]), key="class_balance")

shown_roles = pending or confirmed or start
hidden = hidden_columns(shown_roles)
profile_tab, preview_tab = st.tabs(["Column profile", "Data preview"])
with profile_tab:
    profile = cache.column_profile(table.content_hash, frame, cache.as_json(shown_roles))
    st.dataframe(
        profile,
        hide_index=True,
        height=min(560, 38 + 35 * len(profile)),
        key="profile",
        column_config={
            "column": st.column_config.TextColumn("Column", pinned=True),
            "role": st.column_config.TextColumn("Role"),
            "type": st.column_config.TextColumn("Type"),
            "missing %": st.column_config.NumberColumn(
                "Missing", format="%.1f%%", help="Share of rows with no value."
            ),
            "unique": st.column_config.NumberColumn(
                "Unique", format="%d", help="Distinct values, missing aside."
            ),
            "distribution": st.column_config.BarChartColumn(
                "Distribution",
                y_min=0,
                width="medium",
                help="Histogram for numbers, most frequent values otherwise.",
            ),
            "summary": st.column_config.TextColumn("Summary", width="large"),
        },
        column_order=["column", "role", "type", "missing %", "unique", "distribution", "summary"],
    )
with preview_tab:
    show = st.checkbox(
        "Show identifying columns",
        key="show_identifying",
        help="The patient ID and the excluded columns are hidden unless you ask.",
    )
    if hidden and not show:
        described = ", ".join(f"{c} ({column_role(c, shown_roles)})" for c in hidden)
        st.caption(f"Hidden: {described}.")
    widgets.paged_dataframe(widgets.without_columns(frame, hidden, show=show), key="preview")

if state.has(state.ROLES):
    workflow.next_step("data")
