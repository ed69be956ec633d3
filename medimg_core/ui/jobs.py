"""The dashboard's side of jobs: the server's one job manager, this session's training job, the
list of a user's jobs, and where heavy work runs.

Training runs as a job (:mod:`medimg_core.jobs`), not inside the page's script run: the Train
page submits it and follows it in a fragment that reruns about once a second on its own, so the
rest of the page (and every other session) stays responsive. The job's run is saved by the
manager whatever the session does; when the session is still on the Train page as it ends, the
run is opened at once, otherwise the page offers to open it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import pandas as pd
import streamlit as st

from medimg_core.access import Action, Actor, allowed
from medimg_core.errors import MedimgError
from medimg_core.jobs import Job, JobManager, JobState, TrainingSummary
from medimg_core.ui import state, workflow
from medimg_core.ui.auth import client_address, current_actor

__all__ = [
    "TRAIN_JOB",
    "jobs_list",
    "manager",
    "submit_training",
    "training_panel",
    "where_work_runs",
]

TRAIN_JOB = "train_job"
"""Session key: the ID of this session's latest training job (until its outcome is dealt with)."""
_TRAIN_TABLE = "train_job_table"
"""Session key: the working table's content hash when that job was submitted."""
_NOTICE = "train_job_notice"
"""Session key: a message for the next run of the Train page (a run opened by the fragment)."""

_STATE_WORDS = {
    JobState.QUEUED: "Queued",
    JobState.RUNNING: "Running",
    JobState.DONE: "Done",
    JobState.FAILED: "Failed",
    JobState.CANCELLED: "Cancelled",
}


@st.cache_resource(show_spinner=False)
def manager() -> JobManager:
    """This server's job manager (shared by every session; its cluster starts with the first
    job)."""
    return JobManager()


def submit_training(
    data: pd.DataFrame,
    *,
    roles: Any,
    config: Any,
    validation: Any,
    positive: Any,
    cleaning: Any,
    dataset_name: str,
    table_hash: str | None,
    leave_one_site_out: bool = False,
) -> str:
    """Submit the Train page's training as a job of the session's user and remember it.

    With ``leave_one_site_out`` the job also holds out each site in turn after the normal
    training (the saved model is still the normally trained one).

    The permission is checked first (a refusal is audited, nothing is queued); the finished run
    is audited when the manager saves it.

    Raises
    ------
    PermissionDenied
        When the session's user may not train.
    """
    # Deferred for start-up speed: the store loads scikit-learn.
    from medimg_core.store import guarded

    actor, client = current_actor(), client_address()
    guarded.check(actor, Action.TRAIN, client=client)
    images = workflow.current_images()
    job_id = manager().submit_training(
        actor,
        data,
        roles,
        config=config,
        validation=validation,
        positive=positive,
        plan=cleaning.plan,
        cleaning=cleaning,
        dataset_name=dataset_name,
        image_settings=images.settings if images is not None else None,
        client=client,
        leave_one_site_out=leave_one_site_out,
    )
    st.session_state[TRAIN_JOB] = job_id
    st.session_state[_TRAIN_TABLE] = table_hash
    return job_id


def training_active() -> bool:
    """Whether this session's training job is still queued or running."""
    job = _session_job()
    return job is not None and job.active


def training_panel() -> bool:
    """This session's training job on the Train page: its place in the queue, progress and a
    Cancel button while it runs (refreshed every second without rerunning the page); its error,
    or the offer to open its run, once it ended.

    Returns
    -------
    bool
        True when a job (running, or ended and not yet dealt with) is shown.
    """
    notice = st.session_state.pop(_NOTICE, None)
    if notice:
        st.toast(notice, icon=":material/check_circle:")
    job = _session_job()
    if job is None:
        return False
    if job.active:
        _live_training(job.id)
        return True
    return _ended_training(job)


def _session_job() -> Job | None:
    job_id = st.session_state.get(TRAIN_JOB)
    if job_id is None:
        return None
    try:
        return manager().get(job_id, current_actor())
    except MedimgError:  # another user now, or the server restarted
        st.session_state.pop(TRAIN_JOB, None)
        return None


@st.fragment(run_every=1.0)
def _live_training(job_id: str) -> None:
    actor = current_actor()
    try:
        job = manager().get(job_id, actor)
    except MedimgError:
        st.session_state.pop(TRAIN_JOB, None)
        st.rerun(scope="app")
    if not job.active:
        # The user is still here: open the new run at once (Evaluate, Explain and Predict use it).
        if job.state is JobState.DONE:
            _open(job, announce=True)
        st.rerun(scope="app")
    with st.container(border=True):
        _progress(job)
        st.caption(
            "Training runs as a job on "
            + manager().describe()
            + ". You may leave this page: the run is saved and listed under Runs and Jobs when "
            "it ends."
        )
        if st.button(
            "Cancel" if not job.cancel_requested else "Cancelling…",
            key="train_job_cancel",
            icon=":material/stop_circle:",
            disabled=job.cancel_requested,
        ):
            try:
                stopped = manager().cancel(job_id, actor)
            except MedimgError as exc:
                st.error(str(exc), icon=":material/error:")
                return
            if not stopped.active:
                st.rerun(scope="app")


def _progress(job: Job) -> None:
    if job.state is JobState.QUEUED:
        ahead = (job.queue_position or 1) - 1
        st.markdown(
            f":material/hourglass_top: **Queued (position {job.queue_position})** · {job.title}"
        )
        st.caption(
            "It starts when a job worker is free"
            + (
                f"; {ahead} job{'s' if ahead != 1 else ''} submitted earlier wait before it."
                if ahead
                else "."
            )
        )
        return
    elapsed = f" · {_duration(job.seconds)}" if job.seconds is not None else ""
    st.progress(job.fraction, text=f"{job.title}: {job.message or 'running'}{elapsed}")


def _ended_training(job: Job) -> bool:
    if job.state is JobState.DONE:
        summary = job.result
        if not isinstance(summary, TrainingSummary) or summary.run_id is None:
            for warning in getattr(summary, "warnings", ()):
                st.warning(warning, icon=":material/warning:")
            st.session_state.pop(TRAIN_JOB, None)
            return False
        with st.container(border=True):
            st.success(f"Your training job finished: {_summary_text(summary)}.")
            opened = st.button("Open this run", key="train_job_open", icon=":material/open_in_new:")
            if opened and _open(job, announce=False):
                st.rerun()
        return True
    # Failed or cancelled: said once, as a click on Train used to; the Jobs page keeps it.
    st.session_state.pop(TRAIN_JOB, None)
    if job.state is JobState.FAILED:
        st.error(job.error or "The training job failed.", icon=":material/error:")
    else:
        st.info("Training was cancelled; nothing was saved.", icon=":material/cancel:")
    return False


def _open(job: Job, *, announce: bool) -> bool:
    """Open a finished training job's run as the session's model; False (with the error
    shown) when it cannot be opened."""
    summary = job.result
    assert isinstance(summary, TrainingSummary) and summary.run_id is not None
    try:
        active = workflow.open_run(summary.run_id, just_trained=announce)
    except MedimgError as exc:
        st.error(str(exc), icon=":material/error:")
        return False
    # Trained on this session's images: keep them, so that Explain can show a case's image.
    images = workflow.current_images()
    if images is not None and images.table_hash == st.session_state.get(_TRAIN_TABLE):
        state.put(state.ACTIVE, replace(active, images=images))
    st.session_state.pop(TRAIN_JOB, None)
    if announce:
        st.session_state[_NOTICE] = f"Training finished: {_summary_text(summary)}; it is open now."
    return True


def _summary_text(summary: TrainingSummary) -> str:
    # Deferred for start-up speed: the modelling layer loads scikit-learn.
    from medimg_core.modelling.models import model_name

    text = f"{model_name(summary.model_kind)}"
    if summary.cv_roc_auc is not None:
        text += f", cross-validated ROC AUC {summary.cv_roc_auc:.3f}"
    if summary.n_models:
        text += f", best of {summary.n_models} models"
    return text + f" (run {summary.run_id}, {summary.seconds:.1f} s)"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def jobs_frame(jobs: list[Job], *, owners: bool) -> pd.DataFrame:
    """The Jobs page's table: one row per job, newest first."""
    rows = []
    for job in jobs:
        if job.state is JobState.DONE and isinstance(job.result, TrainingSummary):
            outcome = f"run {job.result.run_id}" if job.result.run_id else "not recorded"
        elif job.state is JobState.FAILED:
            outcome = job.error or ""
        else:
            outcome = job.message
        row = {
            "job": job.title,
            "state": _STATE_WORDS[job.state]
            + (f" (position {job.queue_position})" if job.queue_position else ""),
            "progress": job.fraction,
            "submitted": _when(job.submitted),
            "started": _when(job.started),
            "duration": _duration(job.seconds),
            "outcome": outcome,
            "id": job.id,
        }
        if owners:
            row = {"owner": job.owner, "project": job.project or "", **row}
        rows.append(row)
    return pd.DataFrame(rows)


def jobs_list() -> None:
    """The Jobs page's body: the user's jobs (an admin's: everybody's), refreshed while any
    runs, with Cancel and Open for the chosen one."""
    actor = current_actor()
    jobs = manager().jobs_for(actor)
    if not jobs:
        st.info(
            "No jobs yet. Training started on the Train page runs as a job and is listed here "
            "(jobs are kept until the server restarts; their runs stay in Runs).",
            icon=":material/info:",
        )
        return
    if any(job.active for job in jobs):
        _live_jobs()
    else:
        _jobs_view(actor, jobs)


@st.fragment(run_every=2.0)
def _live_jobs() -> None:
    actor = current_actor()
    jobs = manager().jobs_for(actor)
    _jobs_view(actor, jobs)
    if not any(job.active for job in jobs):
        st.rerun(scope="app")


def _jobs_view(actor: Actor, jobs: list[Job]) -> None:
    owners = allowed(actor, Action.CHANGE_SETTINGS)
    running = sum(1 for j in jobs if j.state is JobState.RUNNING)
    queued = sum(1 for j in jobs if j.state is JobState.QUEUED)
    st.caption(
        f"{running} running · {queued} queued · jobs run on {manager().describe()}"
        + (" · you see every user's jobs (admin)" if owners else "")
    )
    st.dataframe(
        jobs_frame(jobs, owners=owners),
        hide_index=True,
        width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0.0, max_value=1.0, format="percent"
            ),
        },
    )
    actionable = [
        j
        for j in jobs
        if j.active or (isinstance(j.result, TrainingSummary) and j.result.run_id is not None)
    ]
    if not actionable:
        return
    by_id = {j.id: j for j in actionable}
    left, middle, right = st.columns([4, 1, 1], vertical_alignment="bottom")
    chosen = left.selectbox(
        "Job",
        list(by_id),
        # No state in the label: the browser keeps a choice's first label while the table
        # above refreshes, so "running" stayed next to a job the table showed as done.
        format_func=lambda i: (
            f"{by_id[i].title} · submitted {by_id[i].submitted:%Y-%m-%d %H:%M} UTC · {i}"
        ),
        key="jobs_choice",
    )
    job = by_id[chosen]
    if middle.button(
        "Cancel",
        key="jobs_cancel",
        icon=":material/stop_circle:",
        disabled=not job.active or job.cancel_requested,
    ):
        try:
            manager().cancel(job.id, actor)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        st.rerun(scope="app")
    summary = job.result if isinstance(job.result, TrainingSummary) else None
    if right.button(
        "Open run",
        key="jobs_open",
        icon=":material/open_in_new:",
        disabled=summary is None or job.project != actor.project,
        help="Opens the job's run as the model for Evaluate, Explain and Predict (runs of "
        "your current project).",
    ):
        assert summary is not None and summary.run_id is not None
        try:
            workflow.open_run(summary.run_id)
        except MedimgError as exc:
            st.error(str(exc), icon=":material/error:")
            return
        st.session_state["runs_notice"] = f"Run {summary.run_id} is open."
        st.switch_page(next(s.path for s in state.STEPS if s.key == "runs"))


def where_work_runs(key: str) -> None:
    """The "Where heavy work runs" expander (Train and Data pages): where jobs run; an admin
    may send them to another Dask cluster or back to this machine's job cluster."""
    actor = current_actor()
    with st.expander("Where heavy work runs", icon=":material/dns:"):
        try:
            st.markdown(f"Training jobs run on **{manager().describe()}**.")
        except MedimgError as exc:  # MEDIMG_SCHEDULER or MEDIMG_JOB_WORKERS cannot be read
            st.error(str(exc), icon=":material/error:")
        if not allowed(actor, Action.CHANGE_SETTINGS):
            st.caption("An admin can send jobs to another Dask cluster.")
            return
        with st.form(f"{key}_where_form", border=False):
            address = st.text_input(
                "Dask scheduler for jobs",
                placeholder="tcp://host:8786",
                key=f"{key}_where_address",
                help="A Dask scheduler whose workers have medimg installed. Leave it empty to "
                "run jobs on this machine's job cluster again. Applies to the next jobs of "
                "every user; refused while jobs are queued or running.",
            )
            use = st.form_submit_button("Use for jobs", key=f"{key}_where_use")
        if use:
            try:
                with st.spinner("Connecting…"):
                    described = manager().use(address, actor, client=client_address())
            except MedimgError as exc:
                st.error(str(exc), icon=":material/error:")
                return
            st.success(f"Jobs now run on {described}.", icon=":material/check_circle:")
