"""medimg dashboard: the router. Whatever this file draws frames every page."""

from __future__ import annotations

import streamlit as st

from medimg_core.ui import state
from medimg_core.ui.errors import page_errors

st.set_page_config(page_title="medimg", page_icon=":material/radiology:", layout="wide")

pages = [
    st.Page(
        step.path,
        title=step.title,
        icon=":material/check_circle:" if state.step_done(step) else step.icon,
        default=step.key == "data",
    )
    for step in state.STEPS
]
current = st.navigation(pages)

with st.sidebar:
    st.caption(
        "medimg builds honest, explained diagnostic models: every fitted step sees training "
        "folds only, splits are grouped by patient, and every figure carries a 95% interval."
    )

with page_errors():
    current.run()
