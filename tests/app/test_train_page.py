"""The Train page: guard, training on the sample, the auto leaderboard, errors as st.error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.access import SINGLE_USER, Actor, Role
from medimg_core.jobs import JobManager, JobState
from medimg_core.store.audit import AuditTrail
from medimg_core.store.cases import CASES_NAME, load_cases
from medimg_core.store.registry import Registry
from medimg_core.ui import jobs, state, widgets
from medimg_core.ui.workflow import SAMPLE_BUTTON

from .conftest import finish_training

PAGE = "pages/train.py"


def sample_ready(open_app: Callable[..., AppTest]) -> AppTest:
    """The Train page with the sample loaded and cleaned through the guard button."""
    at = open_app(PAGE)
    at.button(key="guard_sample_train").click().run()
    assert not at.exception
    return at


def train_fast(at: AppTest, model: str = "logreg", folds: int = 3) -> AppTest:
    """Press Train with quick settings and, once the job is submitted, wait for its outcome."""
    at.selectbox(key="train_model").set_value(model)
    at.number_input(key="train_folds").set_value(folds)
    at.select_slider(key="train_n_boot").set_value(200)
    return finish_training(at.button(key="train_go").click().run())


def test_guard_without_cleaning_offers_the_sample(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    assert not at.exception
    assert "no data yet" in at.info[0].value
    button = at.button(key="guard_sample_train")
    assert button.label == SAMPLE_BUTTON
    assert [b for b in at.button if b.key == "train_go"] == []

    button.click().run()
    assert not at.exception
    assert at.session_state[state.CLEANING] is not None
    assert at.button(key="train_go").label == "Train"
    assert "Grouped by patient: **case_id**" in " ".join(m.value for m in at.markdown)


def test_training_on_the_sample_activates_and_records_the_run(
    open_app: Callable[..., AppTest], app_env: Path
) -> None:
    at = train_fast(sample_ready(open_app))
    assert not at.exception
    assert not at.error
    active = at.session_state[state.ACTIVE]
    assert active.model.kind == "logreg"
    assert active.run_id is not None
    labels = {m.label: m.value for m in at.metric}
    assert labels["Cross-validated ROC AUC"].startswith("0.9")
    assert float(labels["Held-out test ROC AUC"]) == pytest.approx(
        active.test.metrics["roc_auc"].value, abs=1e-3
    )
    assert any(c.value.startswith("95% CI ") for c in at.caption)
    assert float(labels["Decision threshold"]) == pytest.approx(active.model.threshold, abs=1e-3)
    assert any("Model in use: Logistic regression" in s.value for s in at.subheader)
    assert any("Go to Evaluate" in link.label for link in at.get("page_link"))

    runs = Registry().list_runs(SINGLE_USER)
    assert [r.id for r in runs] == [active.run_id]
    model_dir = runs[0].model_dir
    assert (model_dir / CASES_NAME).is_file()
    cases = load_cases(model_dir)
    assert set(cases["partition"]) == {"development", "test"}
    assert "p_positive" in cases.columns
    assert cases["p_positive"].between(0, 1).all()
    assert len(cases) == active.cv.n + active.test.n
    assert runs[0].card["threshold"]["method"] == "0.5"
    assert runs[0].card["validation"]["settings"]["cv"] == 3


def test_training_runs_as_a_job_that_the_page_follows(
    open_app: Callable[..., AppTest], server_jobs: JobManager
) -> None:
    """Train queues a job and returns at once; the page shows its state and a Cancel button,
    the Train button waits for it, and the finished run is offered and opened."""
    at = sample_ready(open_app)
    at.selectbox(key="train_model").set_value("logreg")
    at.select_slider(key="train_n_boot").set_value(200)
    at.button(key="train_go").click().run()
    assert not at.exception
    job_id = at.session_state[jobs.TRAIN_JOB]
    job = server_jobs.get(job_id, SINGLE_USER)
    assert job.owner == SINGLE_USER.username and job.title == "Train Logistic regression on wdbc"
    assert at.button(key="train_go").disabled
    assert at.button(key="train_job_cancel").label == "Cancel"
    shown = " ".join([m.value for m in at.markdown] + [p.proto.text for p in at.get("progress")])
    assert "Queued (position 1)" in shown or "Train Logistic regression on wdbc:" in shown, shown
    assert state.ACTIVE not in at.session_state or at.session_state[state.ACTIVE] is None
    assert not [i for i in at.info if "press **Train**" in i.value]

    assert server_jobs.wait(job_id).state is JobState.DONE
    at.run()
    assert not at.exception
    [finished] = [s.value for s in at.success if "training job finished" in s.value]
    run_id = server_jobs.get(job_id, SINGLE_USER).result.run_id
    assert run_id in finished
    at.button(key="train_job_open").click().run()
    assert not at.exception
    assert at.session_state[state.ACTIVE].run_id == run_id
    assert not at.button(key="train_go").disabled
    assert [b for b in at.button if b.key == "train_job_open"] == []


def test_cancelling_from_the_page_saves_nothing(
    open_app: Callable[..., AppTest], server_jobs: JobManager, app_env: Path
) -> None:
    at = sample_ready(open_app)
    at.selectbox(key="train_model").set_value("auto")
    at.button(key="train_go").click().run()
    job_id = at.session_state[jobs.TRAIN_JOB]
    at.button(key="train_job_cancel").click().run()
    assert not at.exception
    assert server_jobs.wait(job_id).state is JobState.CANCELLED
    if jobs.TRAIN_JOB in at.session_state:  # it was running: it stopped at its next progress
        at.run()
    assert [i.value for i in at.info if "cancelled" in i.value] == [
        "Training was cancelled; nothing was saved."
    ]
    assert Registry().list_runs(SINGLE_USER) == []
    assert not at.button(key="train_go").disabled


def test_settings_reach_the_model(open_app: Callable[..., AppTest]) -> None:
    at = sample_ready(open_app)
    at.selectbox(key="train_model").set_value("knn").run()
    at.slider(key="train_k").set_value(7)
    at.radio(key="train_threshold_rule").set_value("youden")
    at.selectbox(key="train_scaling").set_value("robust")
    at = train_fast(at, model="knn")
    assert not at.exception
    model = at.session_state[state.ACTIVE].model
    assert model.kind == "knn"
    assert model.config.params == {"n_neighbors": 7}
    assert model.config.scaling == "robust"
    assert model.threshold != 0.5
    assert at.session_state[state.ACTIVE].card["threshold"]["method"] == "youden"


def test_a_fold_count_the_data_cannot_fill_is_shown_as_error(
    open_app: Callable[..., AppTest],
) -> None:
    at = sample_ready(open_app)
    report = at.session_state[state.CLEANING]
    # Keep only 12 rows: 20 folds cannot be stratified with so few cases per class.
    small = report.data.groupby("diagnosis").head(6)
    at.session_state[state.CLEANING] = replace(report, data=small)
    at = train_fast(at, folds=20)
    assert not at.exception
    assert len(at.error) == 1
    assert "fold" in at.error[0].value.lower()
    assert state.ACTIVE not in at.session_state or at.session_state[state.ACTIVE] is None
    assert at.button(key="train_go").label == "Train"


@pytest.mark.slow
def test_auto_shows_the_leaderboard(open_app: Callable[..., AppTest]) -> None:
    at = train_fast(sample_ready(open_app), model="auto")
    assert not at.exception
    active = at.session_state[state.ACTIVE]
    assert len(active.leaderboard) >= 5
    assert len(at.get("plotly_chart")) == 1
    board = at.dataframe[0].value
    assert "CV ROC AUC (95% CI)" in board.columns
    assert (board["Chosen"] == "✓").sum() == 1
    # The honest figure for "compare, then keep one" is on the headline, named as such.
    labels = [m.label for m in at.metric]
    assert "Selection-free CV ROC AUC" in labels
    assert any("optimistic" in c.value for c in at.caption)
    assert active.card["selection_free"]["roc_auc"]["value"] is not None


def test_near_identical_rows_without_an_id_are_named_before_training(
    open_app: Callable[..., AppTest],
) -> None:
    """Without a patient ID, rows that look like one patient twice are named above the Train
    button, before any score is read, with the advice to declare the ID."""
    from medimg_core.tables.cleaning import clean
    from medimg_core.tables.loading import load_sample
    from medimg_core.tables.roles import Roles

    sample = load_sample()
    frame = sample.frame.drop(columns=["case_id"]).iloc[:200]
    twice = frame.iloc[:30].copy()
    twice["mean radius"] *= 1.00001
    doubled = pd.concat([frame, twice], ignore_index=True)
    roles = Roles(label="diagnosis")
    at = open_app(PAGE)
    at.session_state[state.TABLE] = replace(sample, frame=doubled)
    at.session_state[state.ROLES] = roles
    at.session_state[state.POSITIVE] = "malignant"
    at.session_state[state.CLEANING] = clean(doubled, roles)
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("30 row(s) are near-identical") for w in warnings), warnings
    assert at.button(key="train_go")


def test_a_viewer_cannot_train_and_the_core_refuses_before_fitting(
    open_app: Callable[..., AppTest], app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = sample_ready(open_app)
    at.session_state[state.ACTOR] = Actor("vera", Role.VIEWER, frozenset({"default"}), "default")
    at.run()
    assert not at.exception
    assert at.button(key="train_go").disabled
    assert (
        "Only analysts and admins can train a model; you are signed in as vera (viewer). Saved "
        "runs can be opened on the Runs page."
    ) in [c.value for c in at.caption]
    # With the page's check switched off, the click reaches the core, which refuses it.
    monkeypatch.setattr(widgets, "refusal_note", lambda *args, **kwargs: None)
    at.run()
    at = train_fast(at)
    assert not at.exception
    assert [e.value for e in at.error] == [
        "vera (viewer) may not train a model: only analysts and admins can; ask an admin if "
        "your role should change."
    ]
    assert state.ACTIVE not in at.session_state or at.session_state[state.ACTIVE] is None
    assert Registry().list_runs(SINGLE_USER) == []
    with Registry() as registry:
        entries = AuditTrail(registry).entries()
    assert entries[["user", "action", "outcome", "client"]].values.tolist() == [
        [SINGLE_USER.username, "clean", "ok", "local"],  # the sample, cleaned by the guard
        ["vera", "train", "refused", "local"],
    ]
