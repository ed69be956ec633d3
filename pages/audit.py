"""Audit: who did what, when, from where; the chain check and a CSV export (admins only)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from medimg_core.store.audit import ACTIONS, audit_csv, read_entries, verify_trail
from medimg_core.ui import state
from medimg_core.ui.auth import audit_filter, current_actor, record

state.require_router()
st.title("Audit")
actor = current_actor()
# The core refuses anyone without the right to read the trail, before anything is shown.
check = verify_trail(actor)
if check.ok:
    st.success(
        f"The audit trail is intact: {check.n_entries} entries, each chained to the one "
        f"before. Newest entry's hash: `{check.last_hash}`. Note it somewhere else (a ticket, "
        "an e-mail to information governance): it later shows whether newest entries were "
        "removed, which the chain alone cannot.",
        icon=":material/verified:",
    )
else:
    st.error(
        f"The audit trail has been tampered with: {check.message}. Tell your information "
        f"governance office. Newest entry's hash: `{check.last_hash}`.",
        icon=":material/gpp_bad:",
    )

today = datetime.now(UTC).date()
left, middle, right = st.columns(3)
user = left.text_input("User", key="audit_user", placeholder="any user")
action = middle.selectbox(
    "Action", ACTIONS, index=None, key="audit_action", placeholder="any action"
)
dates = right.date_input(
    "Dates (UTC)", value=(today - timedelta(days=30), today), key="audit_dates"
)
chosen = tuple(dates) if isinstance(dates, tuple | list) else (dates,)

entries = read_entries(actor, audit_filter(user, action, chosen))
st.caption(f"{len(entries)} entries match (oldest first; times in UTC).")
st.dataframe(entries, hide_index=True, key="audit_table")
st.download_button(
    "Download these entries as CSV",
    data=audit_csv(entries),
    file_name="medimg-audit.csv",
    mime="text/csv",
    key="audit_download",
    on_click=lambda: record("export", actor),
)
