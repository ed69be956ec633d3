"""The workflow lives in ``st.session_state``; this module names its keys and the steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

__all__ = [
    "STEPS",
    "Step",
    "clear_from",
    "get",
    "has",
    "put",
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
