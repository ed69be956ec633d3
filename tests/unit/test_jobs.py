"""Jobs on a local Dask cluster of two worker processes: queued, run, saved by the manager as
their owner, cancelled, failed with a readable message, and seen only by whom they belong to."""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medimg_core import compute
from medimg_core.access import SINGLE_USER, Actor, Role
from medimg_core.errors import ConfigError, DataError, PermissionDenied
from medimg_core.jobs import (
    INTERNAL_ERROR,
    LOST_WORKER,
    JobKind,
    JobManager,
    JobState,
    TrainingSummary,
    _save_training,
    _train_task,
)
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store.registry import Registry
from medimg_core.tables.cleaning import CleaningReport, clean
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import Roles

ALICE = Actor("alice", Role.ANALYST, frozenset({"default"}), "default")
BOB = Actor("bob", Role.ANALYST, frozenset({"default"}), "default")
VALIDATION = ValidationConfig(cv=3, n_boot=200)


def steps(n: int, *, progress: Callable[[float, str], None]) -> int:
    """A job that takes about n × 50 ms and reports after every step (a cancel stops it)."""
    for i in range(n):
        progress(i / n, f"step {i + 1} of {n}")
        time.sleep(0.05)
    return n


def broken(*, progress: Callable[[float, str], None]) -> None:
    """A job with a bug whose message holds patient data."""
    raise KeyError("patient 1234 Jane Doe")


def fatal(table: np.ndarray, *, progress: Callable[[float, str], None]) -> None:
    """A job that kills every worker process that runs it (as running out of memory does)."""
    os.kill(os.getpid(), signal.SIGKILL)


def kill_worker_running(manager: JobManager, job_id: str) -> None:
    """Kill the worker process that runs the job (its nanny starts a fresh one)."""
    client = manager._engine.client  # type: ignore[union-attr]
    running = [
        address
        for address, keys in client.processing().items()
        if any(str(key).startswith("medimg-job-") and job_id in str(key) for key in keys)
    ]
    assert len(running) == 1, client.processing()
    pids = client.run(os.getpid, workers=running)
    os.kill(pids[running[0]], signal.SIGKILL)


@pytest.fixture(scope="module")
def manager() -> Iterator[JobManager]:
    jobs = JobManager(compute.Scheduler(local_workers=2))
    yield jobs
    jobs.close()


@pytest.fixture(scope="module")
def sample() -> tuple[CleaningReport, Roles]:
    roles = Roles(label="diagnosis", id="case_id")
    return clean(load_sample().frame, roles), roles


def submit_training(
    manager: JobManager,
    sample: tuple[CleaningReport, Roles],
    owner: Actor = SINGLE_USER,
    **config: Any,
) -> str:
    report, roles = sample
    return manager.submit_training(
        owner,
        report.data,
        roles,
        config=ModelConfig(**({"model": "logreg"} | config)),
        validation=VALIDATION,
        positive="malignant",
        plan=report.plan,
        cleaning=report,
        dataset_name="sample: wdbc",
    )


def block_workers(manager: JobManager) -> list[str]:
    """Two long jobs that occupy both workers until cancelled."""
    blockers = [manager.submit("report", SINGLE_USER, f"blocker {i}", steps, 4000) for i in (1, 2)]
    for job_id in blockers:
        assert manager.wait(job_id, started=True).state is JobState.RUNNING
    return blockers


def test_two_training_jobs_are_saved_as_runs_of_their_owners(
    manager: JobManager, sample: tuple[CleaningReport, Roles], home: Path
) -> None:
    first = submit_training(manager, sample, ALICE)
    second = submit_training(manager, sample, BOB, model="knn")
    done = [manager.wait(first), manager.wait(second)]
    assert [job.state for job in done] == [JobState.DONE, JobState.DONE], [j.error for j in done]
    summaries = [job.result for job in done]
    assert all(isinstance(s, TrainingSummary) for s in summaries)
    assert [s.model_kind for s in summaries] == ["logreg", "knn"]
    runs = {run.id: run for run in Registry().list_runs(ALICE)}
    assert set(runs) == {s.run_id for s in summaries}
    assert runs[summaries[0].run_id].owner == "alice"
    assert runs[summaries[1].run_id].owner == "bob"
    assert runs[summaries[0].run_id].project == "default"
    assert done[0].fraction == 1.0 and done[0].started is not None
    assert done[0].finished is not None and done[0].finished >= done[0].started


def test_a_job_gives_the_same_result_as_training_here(
    manager: JobManager, sample: tuple[CleaningReport, Roles]
) -> None:
    report, roles = sample
    config = ModelConfig(model="rf", params={"n_estimators": 50}, seed=7)
    args = (report.data, roles, config, VALIDATION, "malignant", report.plan)
    job_id = manager.submit(JobKind.TRAIN, SINGLE_USER, "same", _train_task, *args)
    remote = manager.wait(job_id).result
    local = train(
        report.data,
        roles,
        config=config,
        validation=VALIDATION,
        positive="malignant",
        plan=report.plan,
    )
    assert np.array_equal(remote.oof_proba, local.oof_proba)
    for part in ("cv", "test"):
        mine, theirs = getattr(remote, part).metrics, getattr(local, part).metrics
        assert mine.keys() == theirs.keys()
        for name in mine:
            assert np.array_equal(
                [mine[name].value, *mine[name].ci95],
                [theirs[name].value, *theirs[name].ci95],
                equal_nan=True,
            ), name
    assert remote.model.threshold == local.model.threshold


def save_and_keep(result: Any, **how: Any) -> tuple[TrainingSummary, Any]:
    """A training job's finishing step that also keeps the whole result, to compare it."""
    return _save_training(result, **how), result


def test_a_training_job_survives_the_death_of_its_worker(
    manager: JobManager, sample: tuple[CleaningReport, Roles], home: Path
) -> None:
    report, roles = sample
    config = ModelConfig(model="rf", params={"n_estimators": 300}, seed=3)
    args = (report.data, roles, config, VALIDATION, "malignant", report.plan)
    finish = functools.partial(
        save_and_keep,
        actor=SINGLE_USER,
        client="local",
        data=report.data,
        cleaning=report,
        dataset_name="sample: wdbc",
        validation=VALIDATION,
        image_settings=None,
    )
    job_id = manager.submit(JobKind.TRAIN, SINGLE_USER, "dies", _train_task, *args, finish=finish)
    assert manager.wait(job_id, started=True).state is JobState.RUNNING
    kill_worker_running(manager, job_id)
    job = manager.wait(job_id)
    assert job.state is JobState.DONE, job.error
    summary, remote = job.result
    assert [run.id for run in Registry().list_runs(SINGLE_USER)] == [summary.run_id]
    local = train(
        report.data,
        roles,
        config=config,
        validation=VALIDATION,
        positive="malignant",
        plan=report.plan,
    )
    assert np.array_equal(remote.oof_proba, local.oof_proba)
    for part in ("cv", "test"):
        mine, theirs = getattr(remote, part).metrics, getattr(local, part).metrics
        assert mine.keys() == theirs.keys()
        for name in mine:
            assert np.array_equal(
                [mine[name].value, *mine[name].ci95],
                [theirs[name].value, *theirs[name].ci95],
                equal_nan=True,
            ), name
    assert remote.model.threshold == local.model.threshold
    assert summary.cv_roc_auc == float(local.cv.metrics["roc_auc"].value)


def test_a_job_that_kills_every_worker_fails_in_plain_words(manager: JobManager) -> None:
    job = manager.wait(manager.submit("report", ALICE, "fatal", fatal, np.arange(1000.0)))
    assert job.state is JobState.FAILED
    assert job.error == LOST_WORKER
    after = manager.wait(manager.submit("report", ALICE, "after", steps, 1))
    assert after.state is JobState.DONE and after.result == 1  # the workers came back


def test_cancelled_jobs_save_nothing(
    manager: JobManager, sample: tuple[CleaningReport, Roles], home: Path
) -> None:
    blockers = block_workers(manager)
    queued = submit_training(manager, sample)
    assert manager.get(queued, SINGLE_USER).state is JobState.QUEUED
    assert manager.cancel(queued, SINGLE_USER).state is JobState.CANCELLED  # at once
    for job_id in blockers:
        manager.cancel(job_id, SINGLE_USER)
    running = submit_training(manager, sample, model="auto")
    assert manager.wait(running, started=True).state is JobState.RUNNING
    assert manager.cancel(running, SINGLE_USER).cancel_requested
    ended = [manager.wait(j) for j in (*blockers, queued, running)]
    assert [job.state for job in ended] == [JobState.CANCELLED] * 4
    assert all(job.result is None and job.error is None for job in ended)
    assert ended[0].fraction < 0.5  # stopped long before its 4000 steps
    assert Registry().list_runs(SINGLE_USER) == []


def test_queue_positions_move_up_as_workers_free(manager: JobManager) -> None:
    blockers = block_workers(manager)
    waiting = [manager.submit("report", ALICE, f"waiting {i}", steps, 4000) for i in (1, 2, 3)]
    assert [manager.get(j, ALICE).queue_position for j in waiting] == [1, 2, 3]
    manager.cancel(blockers[0], SINGLE_USER)
    assert manager.wait(waiting[0], started=True).state is JobState.RUNNING
    assert [manager.get(j, ALICE).queue_position for j in waiting] == [None, 1, 2]
    manager.cancel(waiting[1], ALICE)
    assert manager.get(waiting[2], ALICE).queue_position == 1
    for job_id in (blockers[1], waiting[0], waiting[2]):
        manager.cancel(job_id, SINGLE_USER)
    assert {manager.wait(j).state for j in (*blockers, *waiting)} == {JobState.CANCELLED}


def test_a_failing_job_shows_what_went_wrong_and_nothing_else(
    manager: JobManager, sample: tuple[CleaningReport, Roles], home: Path
) -> None:
    report, roles = sample
    # 12 rows cannot fill 20 stratified folds: a DataError the user can act on.
    small = replace(report, data=report.data.groupby("diagnosis").head(6))
    job_id = manager.submit_training(
        ALICE,
        small.data,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=20, n_boot=200),
        positive="malignant",
        plan=small.plan,
        cleaning=small,
        dataset_name="small",
    )
    failed = manager.wait(job_id)
    assert failed.state is JobState.FAILED
    with pytest.raises(DataError) as expected:
        train(
            small.data,
            roles,
            validation=ValidationConfig(cv=20, n_boot=200),
            positive="malignant",
            plan=small.plan,
        )
    assert failed.error == str(expected.value)
    assert "fold" in failed.error.lower()
    assert Registry().list_runs(ALICE) == []

    bug = manager.wait(manager.submit("report", ALICE, "bug", broken))
    assert bug.state is JobState.FAILED
    assert bug.error == INTERNAL_ERROR
    assert "Jane" not in bug.error and "1234" not in bug.error


def test_owners_see_and_cancel_their_own_jobs_and_admins_all(manager: JobManager) -> None:
    mine = manager.submit("report", ALICE, "alice's", steps, 1)
    theirs = manager.submit("report", BOB, "bob's", steps, 1)
    alice_sees = {job.id for job in manager.jobs_for(ALICE)}
    assert mine in alice_sees and theirs not in alice_sees
    assert {mine, theirs} <= {job.id for job in manager.jobs_for(SINGLE_USER)}  # an admin
    with pytest.raises(ConfigError, match="no job"):
        manager.get(theirs, ALICE)
    with pytest.raises(PermissionDenied, match="alice \\(analyst\\) may not cancel bob's job"):
        manager.cancel(theirs, ALICE)
    viewer = Actor("vera", Role.VIEWER, frozenset({"default"}), "default")
    with pytest.raises(PermissionDenied, match="only its owner or an admin"):
        manager.cancel(mine, viewer)
    assert [manager.wait(j).state for j in (mine, theirs)] == [JobState.DONE, JobState.DONE]
    assert manager.get(mine, ALICE).result == 1
    newest_first = [job.id for job in manager.jobs_for(SINGLE_USER)]
    assert newest_first.index(theirs) < newest_first.index(mine)


def test_a_viewer_cannot_submit_training(
    manager: JobManager, sample: tuple[CleaningReport, Roles]
) -> None:
    viewer = Actor("vera", Role.VIEWER, frozenset({"default"}), "default")
    before = len(manager.jobs_for(SINGLE_USER))
    with pytest.raises(PermissionDenied, match="may not train a model"):
        submit_training(manager, sample, viewer)
    assert len(manager.jobs_for(SINGLE_USER)) == before


def test_only_admins_move_jobs_and_bad_addresses_change_nothing(
    manager: JobManager, home: Path
) -> None:
    before = manager.describe()
    with pytest.raises(PermissionDenied, match="change settings"):
        manager.use("tcp://127.0.0.1:1", ALICE)
    with pytest.raises(ConfigError, match="is not a scheduler address"):
        manager.use("http://nowhere", SINGLE_USER)
    with pytest.raises(ConfigError, match="Could not reach the Dask scheduler"):
        manager.use("tcp://127.0.0.1:9", SINGLE_USER)
    assert manager.describe() == before
    assert "2 workers now" in before


def test_the_job_cluster_is_bounded_and_its_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(compute.SCHEDULER_ENV, raising=False)
    monkeypatch.delenv(compute.JOB_WORKERS_ENV, raising=False)
    default = compute.job_scheduler()
    assert default.local_workers == min(2, compute.default_workers())
    assert JobManager().describe() == f"{default.describe()} (started with the first job)"
    monkeypatch.setenv(compute.JOB_WORKERS_ENV, "3")
    assert compute.job_scheduler() == compute.Scheduler(local_workers=3)
    monkeypatch.setenv(compute.JOB_WORKERS_ENV, "two")
    with pytest.raises(ConfigError, match=r"MEDIMG_JOB_WORKERS='two'.*whole number"):
        compute.job_scheduler()
    monkeypatch.setenv(compute.SCHEDULER_ENV, "tcp://cluster.example:8786")
    assert compute.job_scheduler().address == "tcp://cluster.example:8786"
    monkeypatch.delenv(compute.SCHEDULER_ENV)
    monkeypatch.setenv(compute.JOB_MEMORY_ENV, "lots")
    with pytest.raises(ConfigError, match="MEDIMG_JOB_MEMORY='lots' is not an amount of memory"):
        compute.start_job_cluster(compute.Scheduler(local_workers=1))


def test_a_job_cluster_that_cannot_start_fails_its_jobs_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(compute.JOB_MEMORY_ENV, "lots")
    jobs = JobManager(compute.Scheduler(local_workers=1))
    try:
        failed = jobs.wait(jobs.submit("report", ALICE, "never starts", steps, 1))
    finally:
        jobs.close()
    assert failed.state is JobState.FAILED
    assert failed.error is not None and failed.error.startswith("MEDIMG_JOB_MEMORY='lots'")
