"""Jobs: heavy work started from the dashboard runs on the job cluster, not in a page's run.

A Streamlit script run that trains a model holds the session's page, the server's memory and
one of its threads for minutes; four of them at once on a small server never finish. Instead,
pages hand the work to one :class:`JobManager` per server process, which

* queues it (first come, first served) and sends at most as many jobs to the cluster as it has
  worker threads, so that jobs never compete for the same cores;
* runs each job as one Dask task on the job cluster (:func:`medimg_core.compute.job_scheduler`:
  a local cluster of two worker processes by default, or the cluster of ``MEDIMG_SCHEDULER``);
  inside the task everything runs inline, so the job itself is the unit of parallelism; a job
  whose worker dies (out of memory, a machine gone) runs again on another worker, its inputs
  sent again when they died with it (:class:`medimg_core.compute.PolledTask`), and fails in
  plain words (:data:`LOST_WORKER`) only when it killed every worker that ran it;
* finishes it in the server process: a training job's result is saved as a run (audited,
  encrypted, recorded in the registry) by the manager, so it appears in Runs even if its user
  went away; workers never need the workspace, the encryption key or the database;
* keeps only a small summary once the result is saved, and restarts its idle local workers,
  so that the memory of the server and of the workers returns near its baseline.

Jobs live in the manager, not in a browser session: they survive navigation and reloads. Their
owner (or an admin) sees and cancels them; a job's error is the :class:`MedimgError` text, or
for anything else a fixed sentence that holds no data (the details go to the server log).

Usable from a script as well::

    manager = JobManager()
    job_id = manager.submit_training(actor, data, roles, config=..., ...)
    print(manager.wait(job_id))
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from medimg_core import compute
from medimg_core.access import Action, Actor, Role, require, same_user
from medimg_core.errors import Cancelled, ConfigError, MedimgError, PermissionDenied

if TYPE_CHECKING:
    import pandas as pd

    from medimg_core.modelling.models import ModelConfig
    from medimg_core.modelling.training import TrainingResult
    from medimg_core.modelling.validation import ValidationConfig
    from medimg_core.tables.cleaning import CleaningPlan, CleaningReport
    from medimg_core.tables.roles import Roles

__all__ = [
    "INTERNAL_ERROR",
    "Job",
    "JobKind",
    "JobManager",
    "JobState",
    "TrainingSummary",
]

log = logging.getLogger(__name__)

INTERNAL_ERROR = (
    "An internal error stopped this job; nothing was saved. The details are in the server log "
    "(tell your administrator the job's ID)."
)
LOST_WORKER = (
    "The job's worker stopped (out of memory, or its machine went away) several times, so the "
    "job was given up; nothing was saved. Try a smaller table or a simpler model, or ask your "
    "administrator for more memory per job worker (MEDIMG_JOB_MEMORY)."
)

# Progress travels from the task to the server as Dask worker events on one topic: pushed by the
# worker without a round trip (log_event is safe from the task's thread) and delivered to the
# manager's handler on the client's own loop, with no files to share and no scheduler state to
# delete afterwards. Cancel requests travel the other way with Client.run, which sets a flag in
# every worker process that the task's progress callback reads locally (no round trip either).
EVENT_TOPIC = "medimg-jobs"
_REPORT_EVERY = 0.25  # seconds between two progress events of one task (the page polls at 1 s)
_IDLE_RESTART = 60.0  # seconds without any job before idle local workers are restarted
_POLL = 0.2  # seconds between two looks of the watcher at futures and the queue
_DESCRIBE_EVERY = 2.0  # seconds between two questions to the scheduler about its workers
_KEEP_ENDED = 500  # ended jobs listed (small summaries); older ones are forgotten


class JobKind(StrEnum):
    """What a job does."""

    TRAIN = "train"
    CLEAN = "clean"
    FEATURES = "features"
    PREDICT = "predict"
    REPORT = "report"


class JobState(StrEnum):
    """Where a job is: queued → running → done / failed / cancelled."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for done, failed and cancelled: nothing will change any more."""
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class TrainingSummary:
    """What the manager keeps of a finished training job once its run is saved.

    Attributes
    ----------
    run_id : the registry ID of the saved run (None when it could not be recorded; see
        ``warnings``).
    model_kind : the model kept ("logreg", "rf", ...).
    cv_roc_auc : its cross-validated ROC AUC (None when undefined).
    seconds : training time on the worker.
    n_models : how many models ``auto`` compared (0 for a single model).
    warnings : the run's warnings, for the user.
    """

    run_id: str | None
    model_kind: str
    cv_roc_auc: float | None
    seconds: float
    n_models: int
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: Any, saved: Any) -> TrainingSummary:
        """The summary of ``result`` (a TrainingResult) once saved as ``saved`` (SavedRun)."""
        auc = result.cv.metrics.get("roc_auc") if result.cv is not None else None
        value = None if auc is None else float(auc.value)
        return cls(
            run_id=saved.run_id,
            model_kind=result.model.kind,
            cv_roc_auc=None if value is None or value != value else value,
            seconds=float(result.seconds),
            n_models=len(result.leaderboard),
            warnings=tuple(saved.warnings),
        )


@dataclass(frozen=True)
class Job:
    """A job as pages show it (a snapshot; ask the manager again for news).

    Attributes
    ----------
    id : the job's ID.
    kind : train, features, predict or report.
    owner : the user name of whoever submitted it.
    project : the project it was submitted in (a training job's run belongs to it).
    title : one line saying what it does.
    submitted, started, finished : UTC times (None until it happens).
    state : queued, running, done, failed or cancelled.
    fraction : progress from 0 to 1, as reported by the task.
    message : the task's last progress message ("Fold 3 of 5", "Cancelling…").
    queue_position : 1 for the next job to start, 2 after it...; None unless queued.
    error : for a failed job, what went wrong, written for the user.
    result : for a done job, the small summary its kind keeps (:class:`TrainingSummary`).
    cancel_requested : cancelling was asked for; a running job stops at its next progress.
    """

    id: str
    kind: JobKind
    owner: str
    project: str | None
    title: str
    submitted: datetime
    started: datetime | None
    finished: datetime | None
    state: JobState
    fraction: float
    message: str
    queue_position: int | None
    error: str | None
    result: Any
    cancel_requested: bool

    @property
    def active(self) -> bool:
        """Queued or running."""
        return not self.state.finished

    @property
    def seconds(self) -> float | None:
        """How long it ran (so far), or None before it started."""
        if self.started is None:
            return None
        end = self.finished or datetime.now(UTC)
        return max(0.0, (end - self.started).total_seconds())


@dataclass(eq=False)
class _Record:
    """The manager's mutable record of one job (read and written under its lock)."""

    id: str
    kind: JobKind
    actor: Actor
    title: str
    client: str
    fn: Callable[..., Any] | None
    args: tuple[Any, ...]
    finish: Callable[[Any], Any] | None
    order: int
    submitted: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: datetime | None = None
    finished: datetime | None = None
    state: JobState = JobState.QUEUED
    fraction: float = 0.0
    message: str = "Waiting for a free worker"
    error: str | None = None
    result: Any = None
    cancel_requested: bool = False
    future: Any = None
    task: compute.PolledTask | None = None
    resent: bool = False

    def drop_inputs(self) -> None:
        """Forget the big objects (tables, the task's function and its finishing step)."""
        self.fn = None
        self.args = ()
        self.finish = None
        self.task = None


_CANCEL_REQUESTS: set[str] = set()
"""In each worker process: the IDs of the jobs whose owner asked to stop them."""


def _request_cancel(job_id: str) -> None:
    """Run in every worker process (``Client.run``): ask the job's task to stop."""
    _CANCEL_REQUESTS.add(job_id)


class _Reporter:
    """The ``progress(fraction, message)`` a job's task receives: sends throttled progress
    events to the manager and raises :class:`Cancelled` once a cancel was requested."""

    def __init__(self, job_id: str, send: Callable[[dict[str, Any]], None]) -> None:
        self.job_id = job_id
        self.send = send
        self.last = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.job_id in _CANCEL_REQUESTS:
            raise Cancelled("Stopped at your request; nothing was saved.")
        now = time.monotonic()
        if now - self.last >= _REPORT_EVERY or fraction >= 1.0:
            self.last = now
            self.send({"job": self.job_id, "fraction": float(fraction), "message": str(message)})


def _run_job(job_id: str, fn: Callable[..., Any], *args: Any) -> Any:
    """The Dask task of every job: report the start, then ``fn(*args, progress=...)``."""
    from distributed import get_worker

    worker = get_worker()

    def send(message: dict[str, Any]) -> None:
        worker.log_event(EVENT_TOPIC, message)

    if job_id in _CANCEL_REQUESTS:
        raise Cancelled("Stopped at your request; nothing was saved.")
    send({"job": job_id, "started": True})
    return fn(*args, progress=_Reporter(job_id, send))


def _train_task(
    data: pd.DataFrame,
    roles: Roles,
    config: ModelConfig,
    validation: ValidationConfig,
    positive: Any,
    plan: CleaningPlan,
    *,
    progress: Callable[[float, str], None],
) -> TrainingResult:
    """A training job's task: :func:`medimg_core.modelling.training.train` on the worker."""
    from medimg_core.modelling.training import train

    return train(
        data,
        roles,
        config=config,
        validation=validation,
        positive=positive,
        plan=plan,
        progress=progress,
    )


def _train_by_site_task(
    data: pd.DataFrame,
    roles: Roles,
    config: ModelConfig,
    validation: ValidationConfig,
    positive: Any,
    plan: CleaningPlan,
    *,
    progress: Callable[[float, str], None],
) -> tuple[TrainingResult, Any]:
    """A training job with leave-one-site-out validation: the normal training (the model that
    is saved and deployed), then each site held out in turn as extra evidence."""
    from medimg_core.modelling.subgroups import check_sites, leave_one_site_out

    check_sites(data, roles)
    result = _train_task(
        data,
        roles,
        config,
        validation,
        positive,
        plan,
        progress=lambda f, m: progress(0.5 * f, m),
    )
    by_site = leave_one_site_out(
        data,
        roles,
        config,
        validation,
        positive=result.model.positive_class,
        plan=plan,
        progress=lambda f, m: progress(0.5 + 0.5 * f, f"leave-one-site-out: {m}"),
    )
    return result, by_site


def _save_training_by_site(outcome: tuple[TrainingResult, Any], **options: Any) -> TrainingSummary:
    """:func:`_save_training` of a leave-one-site-out job: the card also keeps the per-site
    validation."""
    result, by_site = outcome
    return _save_training(result, site_validation=by_site, **options)


def _save_training(
    result: TrainingResult,
    *,
    actor: Actor,
    client: str,
    data: pd.DataFrame,
    cleaning: CleaningReport | None,
    dataset_name: str,
    validation: ValidationConfig,
    image_settings: Mapping[str, Any] | None,
    site_validation: Any = None,
) -> TrainingSummary:
    """A training job's finishing step, in the server: save the run as its owner, keep a summary."""
    from medimg_core.store import guarded
    from medimg_core.workspace import workspace_home

    saved = guarded.save_run(
        actor,
        result,
        workspace_home() / "models" / uuid.uuid4().hex,
        data=data,
        cleaning=cleaning,
        dataset_name=dataset_name,
        validation=validation,
        strict_registry=False,
        image_settings=image_settings,
        client=client,
        site_validation=site_validation,
    )
    return TrainingSummary.of(result, saved)


def _submit_job(
    client: Any,
    job_id: str,
    kind: JobKind,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    inputs: dict[str, Any],
    attempt: int,
) -> Any:
    """Submit a job's task (:class:`medimg_core.compute.PolledTask`'s ``submit``): its tables
    and arrays replaced by their copies on the cluster, under a key unique to the attempt."""
    key = f"medimg-job-{kind}-{job_id}" + (f"-again{attempt}" if attempt else "")
    sent = [inputs.get(str(i), a) for i, a in enumerate(args)]
    return client.submit(_run_job, job_id, fn, *sent, key=key, pure=False)


def _big(value: Any) -> bool:
    """Tables and arrays are sent to the cluster once, beside the task, not inside it."""
    import numpy as np
    import pandas as pd

    return isinstance(value, pd.DataFrame | pd.Series | np.ndarray)


class JobManager:
    """Queues, runs, finishes and cancels the dashboard's jobs; one per server process.

    Parameters
    ----------
    scheduler : where jobs run; None for :func:`medimg_core.compute.job_scheduler` (the
        cluster of ``MEDIMG_SCHEDULER``, else a local cluster of two worker processes). The
        cluster is started (or connected) with the first job, not here.
    idle_restart : seconds without any job after which the manager restarts the local
        cluster it started, so that the workers' memory returns to its baseline.

    Notes
    -----
    Nothing heavy runs in the caller's thread: :meth:`submit` queues and returns at once; a
    watcher thread starts the cluster, sends queued jobs as workers free up, follows them and
    finishes them (saving a training job's run).
    """

    def __init__(
        self,
        scheduler: compute.Scheduler | str | None = None,
        *,
        idle_restart: float = _IDLE_RESTART,
    ) -> None:
        self._spec = compute.parse_scheduler(scheduler) if isinstance(scheduler, str) else scheduler
        self.idle_restart = idle_restart
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._jobs: dict[str, _Record] = {}
        self._order = itertools.count()
        self._engine: compute.Engine | None = None
        self._close_engine: Callable[[], None] = lambda: None
        self._owned = False
        self._cancels: list[str] = []
        self._described = ""
        self._described_at = 0.0
        # Held while a cluster is being started or switched, so that only one ever starts.
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_busy = time.monotonic()
        self._dirty = False

    @property
    def scheduler(self) -> compute.Scheduler:
        """Where jobs run (or will, once the first job starts the cluster)."""
        return self._spec if self._spec is not None else compute.job_scheduler()

    def describe(self) -> str:
        """One line for pages: where jobs run, and how many workers it had a moment ago (as
        the watcher last asked: a page never waits on the scheduler)."""
        with self._lock:
            if self._engine is not None and self._described:
                return self._described
        return f"{self.scheduler.describe()} (started with the first job)"

    def _refresh_description(self, engine: compute.Engine) -> None:
        try:
            text = engine.describe()
        except Exception:  # a remote scheduler that went away
            text = f"{self.scheduler.describe()} (not answering)"
        with self._lock:
            self._described = text
            self._described_at = time.monotonic()

    def submit(
        self,
        kind: JobKind | str,
        owner: Actor,
        title: str,
        fn: Callable[..., Any],
        *args: Any,
        finish: Callable[[Any], Any] | None = None,
        client: str = "local",
    ) -> str:
        """Queue a job and return its ID at once.

        Parameters
        ----------
        kind : train, features, predict or report.
        owner : who submits it (and may see and cancel it); its project is the job's.
        title : one line for the Jobs page (no patient data).
        fn : a module-level function (sent by reference), called on a worker as
            ``fn(*args, progress=progress)``; ``progress(fraction, message)`` reports and
            raises :class:`~medimg_core.errors.Cancelled` when the job is cancelled.
        args : its inputs; tables and arrays are sent to the cluster once.
        finish : run in the server with ``fn``'s return value when the job succeeds (e.g. save
            the run); its return value is what the job keeps as ``result``. Default: keep the
            return value itself (keep it small).
        client : the client address for the audit trail.

        Returns
        -------
        str
            The job's ID.
        """
        job_kind = JobKind(kind)
        with self._lock:
            if self._closed:
                raise ConfigError("The job manager was shut down; restart the server.")
            job_id = uuid.uuid4().hex[:12]
            self._jobs[job_id] = _Record(
                id=job_id,
                kind=job_kind,
                actor=owner,
                title=title,
                client=client,
                fn=fn,
                args=tuple(args),
                finish=finish,
                order=next(self._order),
            )
            self._ensure_thread()
        self._wake.set()
        return job_id

    def submit_training(
        self,
        owner: Actor,
        data: pd.DataFrame,
        roles: Roles,
        *,
        config: ModelConfig,
        validation: ValidationConfig,
        positive: Any,
        plan: CleaningPlan,
        cleaning: CleaningReport | None,
        dataset_name: str,
        image_settings: Mapping[str, Any] | None = None,
        client: str = "local",
        leave_one_site_out: bool = False,
    ) -> str:
        """Queue the training the Train page asks for; the manager saves the run as ``owner``.

        The arguments are those of :func:`medimg_core.modelling.training.train` and of
        :func:`medimg_core.store.runs.save_run`; ``leave_one_site_out`` also holds out each site
        in turn (:func:`medimg_core.modelling.subgroups.leave_one_site_out`) and keeps the result
        in the card (the saved model is still the normally trained one). The permission to train is checked here, before
        anything is queued, and again when the run is saved.

        Raises
        ------
        PermissionDenied
            When ``owner`` may not train in their current project.
        """
        from medimg_core.modelling.models import model_name

        require(owner, Action.TRAIN)
        finish = functools.partial(
            _save_training_by_site if leave_one_site_out else _save_training,
            actor=owner,
            client=client,
            data=data,
            cleaning=cleaning,
            dataset_name=dataset_name,
            validation=validation,
            image_settings=dict(image_settings) if image_settings is not None else None,
        )
        title = f"Train {model_name(config.model)} on {dataset_name}"
        return self.submit(
            JobKind.TRAIN,
            owner,
            title,
            _train_by_site_task if leave_one_site_out else _train_task,
            data,
            roles,
            config,
            validation,
            positive,
            plan,
            finish=finish,
            client=client,
        )

    def jobs_for(self, actor: Actor) -> list[Job]:
        """The jobs ``actor`` may see, newest first: their own; an admin's, everybody's."""
        with self._lock:
            return [
                self._snapshot(r)
                for r in sorted(self._jobs.values(), key=lambda r: -r.order)
                if self._may_see(actor, r)
            ]

    def get(self, job_id: str, actor: Actor) -> Job:
        """One job, for its owner or an admin.

        Raises
        ------
        ConfigError
            When there is no such job among those ``actor`` may see.
        """
        with self._lock:
            return self._snapshot(self._visible(job_id, actor))

    def cancel(self, job_id: str, actor: Actor) -> Job:
        """Cancel a job: a queued one at once; a running one stops at its next progress report,
        and nothing of it is saved.

        Raises
        ------
        PermissionDenied
            When ``actor`` is neither the job's owner nor an admin.
        ConfigError
            When there is no such job.
        """
        with self._lock:
            record = self._jobs.get(job_id)
            if record is None:
                raise ConfigError(_missing(job_id))
            if not self._may_see(actor, record):
                raise PermissionDenied(
                    f"{actor.describe()} may not cancel {record.actor.username}'s job: only its "
                    "owner or an admin can."
                )
            if record.state.finished:
                return self._snapshot(record)
            record.cancel_requested = True
            if record.state is JobState.QUEUED:
                # Not started: nothing ran, so it ends now (a task already sent is cancelled).
                self._end(record, JobState.CANCELLED, "Cancelled before it started")
            else:
                record.message = "Cancelling…"
            self._cancels.append(job_id)
        self._wake.set()
        with self._lock:
            return self._snapshot(record)

    def wait(self, job_id: str, timeout: float | None = None, *, started: bool = False) -> Job:
        """Block until the job has finished (or, with ``started``, until it runs), or until
        ``timeout`` seconds passed; for scripts and tests, not pages (pages poll :meth:`get`).
        No permission check.

        Raises
        ------
        ConfigError
            When there is no such job.
        """
        with self._changed:
            record = self._jobs.get(job_id)
            if record is None:
                raise ConfigError(_missing(job_id))
            self._changed.wait_for(
                lambda: record.state.finished or (started and record.state is JobState.RUNNING),
                timeout,
            )
            return self._snapshot(record)

    def use(
        self, scheduler: compute.Scheduler | str | None, actor: Actor, *, client: str = "local"
    ) -> str:
        """Send the next jobs elsewhere (an admin's setting): an address such as
        ``tcp://host:8786``, ``local:N``, or empty for this server's default job cluster.

        The new cluster is reached before the old one is let go, so a wrong address leaves
        everything as it was. Audited as a settings change.

        Returns
        -------
        str
            :meth:`describe` of the new place.

        Raises
        ------
        PermissionDenied
            When ``actor`` may not change settings (admins may).
        ConfigError
            When the address cannot be read or reached, or jobs are queued or running.
        """
        from medimg_core.store import guarded

        with guarded.audited(
            actor, Action.CHANGE_SETTINGS, client=client, audit_action="settings change"
        ):
            spec = (
                compute.parse_scheduler(scheduler)
                if not isinstance(scheduler, compute.Scheduler)
                else scheduler
            )
            default = not spec.distributed
            if default:
                spec = compute.job_scheduler()
            with self._lock:
                busy = sum(1 for r in self._jobs.values() if not r.state.finished)
                if busy:
                    raise ConfigError(
                        f"{busy} job{'s are' if busy != 1 else ' is'} queued or running on "
                        f"{self.scheduler.describe()}; wait for them to finish or cancel them "
                        "on the Jobs page before moving jobs elsewhere."
                    )
                same = spec == self.scheduler and self._engine is not None
                if same:
                    self._spec = None if default else spec
            if same:
                return self.describe()  # outside the lock: it asks the scheduler
            with self._starting:
                engine, close = compute.start_job_cluster(spec)
                with self._lock:
                    old_close = self._close_engine if self._engine is not None else None
                self._attach(engine, close, spec)
                with self._lock:
                    self._spec = None if default else spec
            if old_close is not None:
                old_close()
        return self.describe()

    def close(self) -> None:
        """Stop following jobs and close the cluster this manager started."""
        with self._lock:
            self._closed = True
            for record in self._jobs.values():
                if not record.state.finished:
                    self._end(record, JobState.CANCELLED, "The server stopped")
            futures = [r.future for r in self._jobs.values() if r.future is not None]
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        engine = self._engine
        if engine is not None and futures:
            with _quiet():
                engine.client.cancel(futures)
        self._close_engine()
        with self._lock:
            self._engine = None

    def _may_see(self, actor: Actor, record: _Record) -> bool:
        return actor.role is Role.ADMIN or same_user(actor.username, record.actor.username)

    def _visible(self, job_id: str, actor: Actor) -> _Record:
        record = self._jobs.get(job_id)
        if record is None or not self._may_see(actor, record):
            raise ConfigError(_missing(job_id))
        return record

    def _snapshot(self, record: _Record) -> Job:
        position = None
        if record.state is JobState.QUEUED:
            position = 1 + sum(
                1
                for r in self._jobs.values()
                if r.state is JobState.QUEUED and r.order < record.order
            )
        return Job(
            id=record.id,
            kind=record.kind,
            owner=record.actor.username,
            project=record.actor.project,
            title=record.title,
            submitted=record.submitted,
            started=record.started,
            finished=record.finished,
            state=record.state,
            fraction=record.fraction,
            message=record.message,
            queue_position=position,
            error=record.error,
            result=record.result,
            cancel_requested=record.cancel_requested,
        )

    def _end(
        self,
        record: _Record,
        state: JobState,
        message: str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> None:
        """Move a job to a final state (under the lock) and drop its inputs."""
        record.state = state
        record.message = message
        record.error = error
        record.result = result
        record.finished = datetime.now(UTC)
        if state is JobState.DONE:
            record.fraction = 1.0
        record.drop_inputs()
        ended = [r for r in self._jobs.values() if r.state.finished and r.future is None]
        for old in sorted(ended, key=lambda r: r.order)[: max(0, len(ended) - _KEEP_ENDED)]:
            if old is not record:
                del self._jobs[old.id]
        self._changed.notify_all()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._watch, name="medimg-jobs", daemon=True)
            self._thread.start()

    def _attach(
        self, engine: compute.Engine, close: Callable[[], None], spec: compute.Scheduler
    ) -> None:
        # Subscribed before it is used, and outside the lock: the event handler runs on the
        # client's loop and takes the lock, so no client call may wait on the loop under it.
        engine.client.subscribe_topic(EVENT_TOPIC, self._on_event)
        self._refresh_description(engine)
        with self._lock:
            self._engine = engine
            self._close_engine = close
            # Restart only workers this manager started: a shared cluster may run others' work.
            self._owned = spec.local_workers is not None and spec != compute.parse_scheduler(
                os.environ.get(compute.SCHEDULER_ENV)
            )

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A progress event from a task (on the client's loop: quick, no I/O)."""
        _, message = event
        if not isinstance(message, dict):
            return
        with self._lock:
            record = self._jobs.get(str(message.get("job")))
            if record is None or record.state.finished:
                return
            if message.get("started"):
                record.state = JobState.RUNNING
                record.resent = False
                record.started = record.started or datetime.now(UTC)
                if not record.cancel_requested:
                    record.message = "Started"
                self._changed.notify_all()
                return
            record.fraction = min(max(float(message.get("fraction", 0.0)), 0.0), 1.0)
            if not record.cancel_requested:
                record.message = str(message.get("message", ""))

    def _watch(self) -> None:
        while True:
            self._wake.wait(_POLL)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return
            try:
                self._tick()
            except Exception:  # the watcher must outlive any one problem
                log.exception("The job watcher hit an unexpected error; it keeps watching.")

    def _tick(self) -> None:
        with self._lock:
            waiting = [r for r in self._jobs.values() if r.state is JobState.QUEUED]
            need_engine = self._engine is None and any(r.future is None for r in waiting)
        if need_engine:
            self._start_engine()
        with self._lock:
            engine = self._engine
            cancels, self._cancels = self._cancels, []
        if engine is None:
            return
        client = engine.client
        if time.monotonic() - self._described_at >= _DESCRIBE_EVERY:
            self._refresh_description(engine)
        if cancels:
            self._send_cancels(client, cancels)
        for record in self._collectable():
            self._collect(record)
        self._dispatch(client)
        self._restart_when_idle(client)

    def _start_engine(self) -> None:
        spec = self.scheduler
        try:
            with self._starting:
                if self._engine is not None:  # an admin's switch got there first
                    return
                engine, close = compute.start_job_cluster(spec)
                self._attach(engine, close, spec)
        except Exception as exc:
            message = str(exc) if isinstance(exc, MedimgError) else None
            if message is None:
                log.exception("Could not start the job cluster (%s).", spec.describe())
            with self._lock:
                for record in self._jobs.values():
                    if record.state is JobState.QUEUED and record.future is None:
                        self._end(
                            record,
                            JobState.FAILED,
                            "Could not start",
                            error=message or INTERNAL_ERROR,
                        )

    def _send_cancels(self, client: Any, job_ids: list[str]) -> None:
        with self._lock:
            futures = [
                self._jobs[j].future
                for j in job_ids
                if self._jobs[j].future is not None
                and (self._jobs[j].started is None or self._jobs[j].resent)
            ]
        if futures:
            with _quiet():
                client.cancel(futures)
        for job_id in job_ids:
            with _quiet():
                client.run(_request_cancel, job_id)

    def _collectable(self) -> list[_Record]:
        with self._lock:
            return [r for r in self._jobs.values() if r.future is not None and r.future.done()]

    def _collect(self, record: _Record) -> None:
        """Finish a job whose task ended: its result saved, its error written for the user."""
        future = record.future
        status = future.status
        value: Any = None
        error: BaseException | None = None
        if status == "finished":
            try:
                value = future.result()
            except BaseException as exc:  # a result that cannot be read back
                error = exc
        elif status == "error":
            error = future.exception()
        elif self._resubmitted(record):
            return
        with self._lock:
            lost = status == "cancelled" and not record.cancel_requested
            if lost and not record.state.finished:
                error = _LostWorker()  # lost again and again: every worker that ran it died
            record.future = None
            record.task = None
            self._last_busy = time.monotonic()
            if record.state.finished:  # cancelled while queued on the cluster
                return
            if record.started is None:
                record.started = datetime.now(UTC)
            finish = record.finish
            cancelled = record.cancel_requested or status == "cancelled"
        future.release()
        if cancelled and (error is None or isinstance(error, Cancelled)):
            with self._lock:
                self._end(record, JobState.CANCELLED, "Cancelled; nothing was saved")
            return
        if error is None:
            try:
                value = finish(value) if finish is not None else value
            except BaseException as exc:
                error = exc
        with self._lock:
            if error is None:
                self._end(record, JobState.DONE, "Done", result=value)
            else:
                self._end(record, JobState.FAILED, "Failed", error=self._user_error(record, error))
        del value, error, finish
        _give_back_memory()

    def _resubmitted(self, record: _Record) -> bool:
        """Send a job again when the cluster cancelled it without anyone asking (the worker
        running it died, taking the only copy of its inputs); False when it may not or cannot
        be sent again (then it fails with :data:`LOST_WORKER`)."""
        with self._lock:
            task = record.task
            if (
                task is None
                or record.cancel_requested
                or record.state.finished
                or self._closed
                or not task.lost()
            ):
                return False
        old = task.future
        try:
            again = task.resubmit()
        except Exception:  # the cluster is going away as well
            log.exception("Job %s (%s) could not be submitted again.", record.id, record.kind)
            return False
        if not again:
            return False
        log.warning(
            "Job %s (%s) lost its worker; submitted again (attempt %d).",
            record.id,
            record.kind,
            task.attempt + 1,
        )
        with self._lock:
            record.future = task.future
            record.resent = True
            late = record.cancel_requested
            if not late:
                record.fraction = 0.0
                record.message = "Its worker stopped; starting again on another worker"
            self._changed.notify_all()
        old.release()
        if late:  # cancelled meanwhile: collected as cancelled at the next look
            with _quiet():
                task.future.cancel()
        return True

    @staticmethod
    def _user_error(record: _Record, error: BaseException) -> str:
        if isinstance(error, MedimgError):
            return str(error)
        if isinstance(error, _LostWorker) or type(error).__name__ == "KilledWorker":
            log.warning("Job %s (%s) lost its worker: %s", record.id, record.kind, type(error))
            return LOST_WORKER
        log.error(
            "Job %s (%s) of %s failed unexpectedly.",
            record.id,
            record.kind,
            record.actor.username,
            exc_info=(type(error), error, error.__traceback__),
        )
        return INTERNAL_ERROR

    def _dispatch(self, client: Any) -> None:
        with self._lock:
            running = sum(1 for r in self._jobs.values() if r.future is not None)
            ready = sorted(
                (
                    r
                    for r in self._jobs.values()
                    if r.state is JobState.QUEUED and r.future is None and r.fn is not None
                ),
                key=lambda r: r.order,
            )
        if not ready:
            return
        free = max(1, _threads(client)) - running
        for record in ready[: max(0, free)]:
            with self._lock:
                if record.state.finished or record.fn is None:
                    continue
                fn, args = record.fn, record.args
            task = compute.PolledTask(
                client,
                functools.partial(_submit_job, client, record.id, record.kind, fn, args),
                {str(i): a for i, a in enumerate(args) if _big(a)},
            )
            future = task.future
            with self._lock:
                late = record.state.finished  # cancelled meanwhile
                if not late:
                    record.future = future
                    record.task = task
                    if record.state is JobState.QUEUED:  # its start may already be reported
                        record.message = "Starting on a worker"
                    self._dirty = True
            if late:
                with _quiet():
                    client.cancel([future])

    def _restart_when_idle(self, client: Any) -> None:
        with self._lock:
            busy = any(not r.state.finished or r.future is not None for r in self._jobs.values())
            if busy:
                self._last_busy = time.monotonic()
                return
            due = (
                self._owned
                and self._dirty
                and time.monotonic() - self._last_busy >= self.idle_restart
            )
        if due:
            # Fresh worker processes give back what training left in the old ones' heaps.
            with _quiet():
                client.restart()
            with self._lock:
                self._dirty = False


class _LostWorker(Exception):
    """A job the cluster lost with its worker more times than it is submitted again."""


def _give_back_memory() -> None:
    """Return what a finished job's result used to the system: the server keeps only its
    summary, but glibc keeps freed heap pages unless asked (best effort, Linux only)."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _threads(client: Any) -> int:
    """How many tasks the cluster runs at once (worker threads)."""
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    except Exception:
        return 1
    return sum(int(w.get("nthreads", 1)) for w in workers.values())


def _missing(job_id: str) -> str:
    return (
        f"There is no job {job_id!r} among your jobs (it may belong to another user, or the "
        "server was restarted since); the Jobs page lists yours."
    )


class _quiet:
    """Log and swallow an error of a best-effort cluster call (cancel, restart)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is not None and isinstance(exc, Exception):
            log.warning("A job cluster call failed: %s", type(exc).__name__)
            return True
        return False
