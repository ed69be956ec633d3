"""The workflow lives in ``st.session_state``; this module names its keys and the steps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

__all__ = [
    "STEPS",
    "Step",
    "clear_from",
    "get",
    "has",
    "put",
    "require_router",
    "routed",
    "step_done",
]

TABLE = "table"  # medimg_core.tables.loading.LoadedTable (after joins / image feature extraction)
ROLES = "roles"  # medimg_core.tables.roles.Roles, confirmed by the user
PROPOSAL = "proposal"  # medimg_core.tables.roles.RoleProposal for the current table
POSITIVE = "positive"  # the class the model calls positive (binary labels), confirmed with ROLES
CLEANING = "cleaning"  # medimg_core.tables.cleaning.CleaningReport
TRAINING = "training"  # medimg_core.modelling.training.TrainingResult of this session
RUN_ID = "run_id"  # registry id of the active run
ACTIVE = (
    "active_model"  # medimg_core.ui.session.ActiveModel: the model pages evaluate/explain/predict
)
THRESHOLD = "threshold"  # operating threshold chosen on the Evaluate page
THRESHOLD_SOURCE = "threshold_source"  # partition viewed when THRESHOLD was moved, else None
IMAGES = "images"  # image-set context (issue 4): feature settings and image sources
ACTOR = "actor"  # medimg_core.access.Actor: the signed-in user (None: the local single user)


@dataclass(frozen=True)
class Step:
    """One step of the walk-through: its page file, title, and the state key that marks it done."""

    key: str
    title: str
    path: str
    icon: str
    done_key: str | None


STEPS: tuple[Step, ...] = (
    Step("data", "Data", "pages/data.py", ":material/table_view:", ROLES),
    Step("clean", "Clean", "pages/clean.py", ":material/cleaning_services:", CLEANING),
    Step("train", "Train", "pages/train.py", ":material/model_training:", ACTIVE),
    Step("evaluate", "Evaluate", "pages/evaluate.py", ":material/monitoring:", None),
    Step("explain", "Explain", "pages/explain.py", ":material/psychology:", None),
    Step("predict", "Predict", "pages/predict.py", ":material/online_prediction:", None),
    Step("runs", "Runs", "pages/runs.py", ":material/history:", None),
    Step("jobs", "Jobs", "pages/jobs.py", ":material/work_history:", None),
)

_ORDER = [
    TABLE,
    PROPOSAL,
    ROLES,
    POSITIVE,
    CLEANING,
    TRAINING,
    RUN_ID,
    ACTIVE,
    THRESHOLD,
    THRESHOLD_SOURCE,
]


def has(key: str) -> bool:
    """Whether the session holds a value for ``key``."""
    return st.session_state.get(key) is not None


def get(key: str, default: Any = None) -> Any:
    """The session's value for ``key``."""
    return st.session_state.get(key, default)


def put(key: str, value: Any) -> None:
    """Store a value for ``key``, dropping everything downstream of it (a new table invalidates
    its roles, cleaning and model; a new model keeps the data)."""
    if key in _ORDER and key != _ORDER[-1]:
        clear_from(_ORDER[_ORDER.index(key) + 1])
    st.session_state[key] = value


def clear_from(key: str | None) -> None:
    """Forget ``key`` and every key after it in the workflow."""
    if key is None or key not in _ORDER:
        return
    for k in _ORDER[_ORDER.index(key) :]:
        st.session_state.pop(k, None)


def step_done(step: Step) -> bool:
    """A step is done when its marker key is set."""
    return step.done_key is not None and has(step.done_key)


# True while app.py runs the current page in this script run. A context variable, not a session
# key: it belongs to one run (one thread), so no earlier run, reload or interrupted run can leave
# it set for the next one.
_ROUTED: ContextVar[bool] = ContextVar("medimg_routed", default=False)


@contextmanager
def routed() -> Iterator[None]:
    """Mark the page that app.py runs inside this block as run by the router."""
    token = _ROUTED.set(True)
    try:
        yield
    finally:
        _ROUTED.reset(token)


def require_router() -> None:
    """Send a page that runs without ``app.py`` through the router; the first line of a page.

    With a ``pages/`` folder beside ``app.py``, a fresh Streamlit server is in its legacy
    multipage mode until some session calls ``st.navigation``: a first request for a page URL
    (``/train``) then runs that page file on its own, without the router's sign-in gate,
    sidebar and error boundary. Leaving that mode is what ``st.navigation`` itself does (it
    clears the same class flag, for every session); the rerun then runs ``app.py``, which opens
    the requested page (the page's hash is that of its URL path in both modes).

    A page run as the main script (``streamlit run pages/data.py``, or an AppTest of one page
    file) or from another script (an AppTest of a function running the page) has no router to go
    to and runs as it is.
    """
    if _ROUTED.get():
        return
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return
    main_script = Path(ctx.pages_manager.main_script_path)
    if main_script.parent.name == "pages" or not (main_script.parent / "pages").is_dir():
        # A page file run as the main script, or a page run by some other script (a test runs
        # it from a function, say): no router beside it, and a rerun would come straight back
        # here, for ever.
        return
    # Another session may have left the legacy mode already while this run had started in it:
    # rerun all the same, and app.py opens the page.
    PagesManager.uses_pages_directory = False
    st.rerun()
