"""The Jobs page: a user's jobs with their state and outcome, Open and Cancel; others' jobs only
for admins; and the Train page's follower opening a run that ends while the user watches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streamlit.testing.v1 import AppTest

from medimg_core.access import SINGLE_USER, Actor, Role
from medimg_core.jobs import JobManager, JobState
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store.audit import AuditTrail
from medimg_core.store.registry import Registry
from medimg_core.tables.cleaning import clean
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import Roles
from medimg_core.ui import jobs, state

from .conftest import RUN_TIMEOUT

PAGE = "pages/jobs.py"
BOB = Actor("bob", Role.ANALYST, frozenset({"default"}), "default")
ALICE = Actor("alice", Role.ANALYST, frozenset({"default"}), "default")


def submit(manager: JobManager, owner: Actor, model: str = "logreg") -> str:
    """A quick training job on the sample (``auto`` with 2,000 bootstrap replicates: a long one)."""
    roles = Roles(label="diagnosis", id="case_id")
    report = clean(load_sample().frame, roles)
    return manager.submit_training(
        owner,
        report.data,
        roles,
        config=ModelConfig(model=model),
        validation=ValidationConfig(cv=3, n_boot=200 if model != "auto" else 2000),
        positive="malignant",
        plan=report.plan,
        cleaning=report,
        dataset_name="sample: wdbc",
    )


def table_rows(at: AppTest) -> list[dict[str, object]]:
    return at.dataframe[0].value.to_dict("records")


def test_the_jobs_page_lists_a_training_job_and_opens_its_run(
    open_app: Callable[..., AppTest], server_jobs: JobManager, app_env: Path
) -> None:
    at = open_app(PAGE)
    assert not at.exception
    assert "No jobs yet" in at.info[0].value

    job_id = submit(server_jobs, SINGLE_USER)
    at.run()
    assert not at.exception
    [row] = [r for r in table_rows(at) if r["id"] == job_id]
    assert row["job"] == "Train Logistic regression on sample: wdbc"
    assert row["owner"] == "local"  # the single user is an admin: owners are shown
    assert str(row["state"]).split(" ")[0] in ("Queued", "Running", "Done")

    done = server_jobs.wait(job_id)
    assert done.state is JobState.DONE
    at.run()
    [row] = [r for r in table_rows(at) if r["id"] == job_id]
    assert row["state"] == "Done"
    assert row["progress"] == 1.0
    assert row["outcome"] == f"run {done.result.run_id}"
    at.selectbox(key="jobs_choice").set_value(job_id)
    at.button(key="jobs_open").click().run()
    assert not at.exception
    assert at.session_state[state.ACTIVE].run_id == done.result.run_id
    assert [t.value for t in at.title][:1] == ["Runs"]


def test_users_see_only_their_own_jobs_and_admins_cancel_any(
    open_app: Callable[..., AppTest], server_jobs: JobManager, app_env: Path
) -> None:
    theirs = submit(server_jobs, BOB, model="auto")
    mine = submit(server_jobs, ALICE)
    at = open_app(PAGE)
    at.session_state[state.ACTOR] = ALICE
    at.run()
    assert not at.exception
    ids = [r["id"] for r in table_rows(at)]
    assert mine in ids and theirs not in ids
    assert "owner" not in at.dataframe[0].value.columns
    assert theirs not in at.selectbox(key="jobs_choice").options

    # A viewer (who cannot train) has no jobs and sees nobody else's, so cancels nothing.
    at.session_state[state.ACTOR] = Actor("vera", Role.VIEWER, frozenset({"default"}), "default")
    at.run()
    assert not at.exception
    assert "No jobs yet" in at.info[0].value
    assert [b for b in at.button if b.key == "jobs_cancel"] == []

    at.session_state[state.ACTOR] = SINGLE_USER  # an admin sees every job and cancels any
    at.run()
    assert {mine, theirs} <= {r["id"] for r in table_rows(at)}
    if server_jobs.get(theirs, SINGLE_USER).active:
        at.selectbox(key="jobs_choice").set_value(theirs)
        at.button(key="jobs_cancel").click().run()
        assert not at.exception
        assert server_jobs.wait(theirs).state is JobState.CANCELLED
    server_jobs.wait(mine)


def follower() -> None:
    """The Train page's follower of this session's job, alone on a page."""
    import streamlit as st

    from medimg_core.ui import jobs, state

    if st.session_state.get(jobs.TRAIN_JOB):
        jobs._live_training(st.session_state[jobs.TRAIN_JOB])
    active = state.get(state.ACTIVE)
    st.write(f"active: {active.run_id if active is not None else None}")


def test_a_run_that_ends_while_the_user_watches_opens_by_itself(
    server_jobs: JobManager, app_env: Path
) -> None:
    job_id = submit(server_jobs, SINGLE_USER)
    done = server_jobs.wait(job_id)
    at = AppTest.from_function(follower, default_timeout=RUN_TIMEOUT)
    at.session_state[jobs.TRAIN_JOB] = job_id
    at.run()
    assert not at.exception
    assert [m.value for m in at.markdown] == [f"active: {done.result.run_id}"]
    assert jobs.TRAIN_JOB not in at.session_state
    # As when a model trained in the page: one "train" entry names the run, no "open run".
    with Registry() as registry:
        trail = AuditTrail(registry).entries()
    assert trail[["action", "object", "outcome"]].values.tolist() == [
        ["train", done.result.run_id, "ok"]
    ]
