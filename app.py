"""medimg dashboard: the router. Whatever this file draws frames every page."""

from __future__ import annotations

import functools

import streamlit as st

from medimg_core.errors import MedimgError
from medimg_core.ui import auth, state
from medimg_core.ui.errors import page_errors

# Set while the router reruns to redraw the sidebar ticks, so a page that changes its done
# steps on every run cannot make the router rerun forever.
ICON_RERUN = "_router_icon_rerun"

st.set_page_config(page_title="medimg", page_icon=":material/radiology:", layout="wide")


def done_steps() -> frozenset[str]:
    """The keys of the steps whose marker is set now."""
    return frozenset(step.key for step in state.STEPS if state.step_done(step))


# Before anything is drawn: who is this? Without a signed-in user every address leads to the
# sign-in page (or, on a network-facing server without sign-in, to one error), never to a page.
# st.navigation is called on this path too, so that no address reaches a page file directly.
try:
    actor = auth.gate()
    problem = None
except MedimgError as exc:  # a sign-in setting is wrong or the account database unreachable
    actor, problem = None, str(exc)
if actor is None:
    if problem is not None:
        gatekeeper = functools.partial(st.error, problem, icon=":material/error:")
    elif not auth.server_mode().serves:
        gatekeeper = auth.refusal_page
    else:
        gatekeeper = auth.sign_in_page
    with page_errors():
        st.navigation(
            [st.Page(gatekeeper, title="Sign in", url_path="signin", default=True)],
            position="hidden",
        ).run()
    st.stop()

drawn = done_steps()
usable = {step.key for step in auth.visible_steps(actor)}
default_key = "data" if "data" in usable else "runs"
# Steps the role cannot use stay registered, hidden from the menu, so that links to them from
# other pages resolve; opening one shows why it is closed instead of running it.
pages = [
    st.Page(
        step.path,
        title=step.title,
        icon=":material/check_circle:" if step.key in drawn else step.icon,
        default=step.key == default_key,
        visibility="visible" if step.key in usable else "hidden",
    )
    for step in state.STEPS
]
if auth.shows_audit(actor):
    pages.append(st.Page("pages/audit.py", title="Audit", icon=":material/policy:"))
current = st.navigation(pages)

with st.sidebar:
    auth.sidebar(actor)
    st.caption(
        "medimg builds honest, explained diagnostic models: every fitted step sees training "
        "folds only, splits are grouped by patient, and every figure carries a 95% interval."
    )

closed = {step.title: step for step in state.STEPS if step.key not in usable}
with state.routed(), page_errors():
    if current.title in closed:
        auth.closed_step(actor, closed[current.title])
    else:
        current.run()

# The sidebar was drawn before the page ran; when the page finished a step (or undid one) the
# ticks are one run late, so run once more to draw them. Pages keep their results in session
# state, so the second run shows the same output.
if done_steps() != drawn and not st.session_state.get(ICON_RERUN, False):
    st.session_state[ICON_RERUN] = True
    st.rerun()
st.session_state[ICON_RERUN] = False
