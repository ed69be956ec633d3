"""Jobs: the training jobs of this user (an admin's: everybody's), queued, running and done."""

from __future__ import annotations

import streamlit as st

from medimg_core.ui import jobs, state

state.require_router()
st.title("Jobs")
st.caption(
    "Training started on the Train page runs as a job on the server's job workers, not in your "
    "browser tab: it goes on when you switch pages or close the tab, and its run is saved under "
    "Runs when it ends. Jobs wait their turn when every worker is busy."
)
jobs.jobs_list()
jobs.where_work_runs("jobs")
