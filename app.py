"""medimg dashboard: the router. Whatever this file draws frames every page."""

from __future__ import annotations

import streamlit as st

from medimg_core.ui import state
from medimg_core.ui.errors import page_errors

# Set while the router reruns to redraw the sidebar ticks, so a page that changes its done
# steps on every run cannot make the router rerun forever.
ICON_RERUN = "_router_icon_rerun"

st.set_page_config(page_title="medimg", page_icon=":material/radiology:", layout="wide")


def done_steps() -> frozenset[str]:
    """The keys of the steps whose marker is set now."""
    return frozenset(step.key for step in state.STEPS if state.step_done(step))


drawn = done_steps()
pages = [
    st.Page(
        step.path,
        title=step.title,
        icon=":material/check_circle:" if step.key in drawn else step.icon,
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

# The sidebar was drawn before the page ran; when the page finished a step (or undid one) the
# ticks are one run late, so run once more to draw them. Pages keep their results in session
# state, so the second run shows the same output.
if done_steps() != drawn and not st.session_state.get(ICON_RERUN, False):
    st.session_state[ICON_RERUN] = True
    st.rerun()
st.session_state[ICON_RERUN] = False
