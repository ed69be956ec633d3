"""Permission-checked, audited entry points: what the dashboard and the command line call to act
on data, runs and models on a user's behalf.

Each entry point takes the acting user first (``actor``, as every store call does), then:

1. checks the permission (:func:`medimg_core.access.require`, or the registry's own check);
2. does the work;
3. appends one entry to the audit trail (:class:`~medimg_core.store.audit.AuditTrail`): the
   actor's user, role and project, the action, the object (a run ID or a content hash, never a
   file name or a value), the outcome and the client address given by the caller (pages pass
   ``medimg_core.ui.auth.client_address()``, the command line ``"cli"``).

A refused action is audited with outcome "refused" and raises
:class:`~medimg_core.errors.PermissionDenied`; an action that was allowed but failed is audited
"failed" and its error is raised unchanged. Work that happens in the caller (scoring, explaining,
exporting) goes through :func:`audited`, a context manager with the same three steps.

If the audit trail cannot be written the error is raised: an action that leaves no record is
not reported as done.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medimg_core.access import DEFAULT_PROJECT, Action, Actor, require
from medimg_core.errors import MedimgError, PermissionDenied
from medimg_core.store.audit import AuditTrail
from medimg_core.store.registry import (
    DeletedRun,
    EvaluationRecord,
    FeedbackRecord,
    Registry,
    RunContext,
    RunRecord,
)
from medimg_core.tables.roles import Roles

# Training, scoring and saving (scikit-learn, skops) are imported by the functions that do them,
# so that listing runs, reading the audit trail or `medimg --help` loads none of it.
if TYPE_CHECKING:
    import pandas as pd

    from medimg_core.modelling.evaluation import Evaluation
    from medimg_core.modelling.models import MedimgModel
    from medimg_core.modelling.training import TrainingResult
    from medimg_core.store import runs
    from medimg_core.tables.cleaning import CleaningPlan, CleaningReport

__all__ = [
    "AUDIT_ACTIONS",
    "AuditHandle",
    "audited",
    "check",
    "clean",
    "delete_run",
    "evaluate_external",
    "get_run_context",
    "list_evaluations",
    "list_feedback",
    "list_runs",
    "open_run",
    "record_evaluation",
    "record_feedback",
    "record_upload",
    "save_run",
    "set_run_context",
    "train",
]

AUDIT_ACTIONS: dict[Action, str] = {
    Action.UPLOAD: "upload",
    Action.CLEAN: "clean",
    Action.TRAIN: "train",
    Action.EVALUATE: "evaluate",
    Action.EXTERNAL_VALIDATION: "evaluate",
    Action.EXPLAIN: "explain case",
    Action.PREDICT: "predict",
    Action.OPEN_RUN: "open run",
    Action.DELETE_OWN_RUN: "delete",
    Action.DELETE_ANY_RUN: "delete",
    Action.RECORD_FEEDBACK: "reader feedback",
    Action.REPORT: "report",
}
"""The audit trail's word for each permission checked here."""

_RUN_ID = re.compile(r"^\d{8}-\d{6}-\d{6}-[0-9a-f]{6}$")
_CONTENT_HASH = re.compile(r"^[0-9a-f]{64}$")


def _object(value: str | None) -> str | None:
    """The audit object: a run ID or a 64-hex content hash; anything else (a mistyped ID,
    which could be anything a user pasted) is left out rather than written."""
    if value is None:
        return None
    return value if _RUN_ID.match(value) or _CONTENT_HASH.match(value) else None


def _append(
    actor: Actor,
    audit_action: str,
    outcome: str,
    *,
    client: str,
    object: str | None,
    project: str | None,
    registry: Registry | None,
) -> None:
    trail = AuditTrail(registry)
    try:
        trail.append(
            user=actor.username,
            role=actor.role.value,
            project=project if project is not None else actor.project,
            action=audit_action,
            object=_object(object),
            outcome=outcome,
            client=client,
        )
    finally:
        trail.close()


@dataclass
class AuditHandle:
    """What :func:`audited` yields: set ``object`` inside the block when the object is known
    only once the work is done (the ID of a new run)."""

    object: str | None


@contextlib.contextmanager
def audited(
    actor: Actor,
    action: Action,
    *,
    client: str,
    object: str | None = None,
    project: str | None = None,
    audit_action: str | None = None,
    registry: Registry | None = None,
    check: bool = True,
) -> Iterator[AuditHandle]:
    """Check ``action`` for ``actor``, run the block, and audit the outcome.

    Parameters
    ----------
    actor : who acts.
    action : the permission needed (project-scoped actions in ``project``, default the actor's
        current project).
    client : the client address ("cli" for the command line).
    object : the run ID or content hash acted on.
    project : the project the object belongs to; defaults to the actor's current project.
    audit_action : the audit trail's word for it; default from :data:`AUDIT_ACTIONS`.
    registry : the registry whose database holds the audit trail; default the configured one.
    check : False when the block checks the permission itself (a registry call); a
        ``PermissionDenied`` from the block is then audited as refused all the same.

    Yields
    ------
    AuditHandle
        Whose ``object`` is written in the entry.

    Raises
    ------
    PermissionDenied
        When the action is not allowed (audited as "refused").
    """
    word = audit_action or AUDIT_ACTIONS[action]
    handle = AuditHandle(object)

    def record(outcome: str) -> None:
        _append(
            actor,
            word,
            outcome,
            client=client,
            object=handle.object,
            project=project,
            registry=registry,
        )

    try:
        if check:
            require(actor, action, project=project)
        yield handle
    except PermissionDenied:
        record("refused")
        raise
    except BaseException:
        with contextlib.suppress(MedimgError):
            record("failed")
        raise
    record("ok")


def check(
    actor: Actor,
    action: Action,
    *,
    client: str,
    object: str | None = None,
    registry: Registry | None = None,
) -> None:
    """Refuse early, before long work whose outcome another entry point records (training in
    the dashboard is checked here, then audited once, with its run ID, by :func:`save_run`).

    Only a refusal is audited.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not do ``action`` in their current project (audited as refused).
    """
    try:
        require(actor, action)
    except PermissionDenied:
        _append(
            actor,
            AUDIT_ACTIONS[action],
            "refused",
            client=client,
            object=object,
            project=None,
            registry=registry,
        )
        raise


def record_upload(
    actor: Actor, content_hash: str, *, client: str, registry: Registry | None = None
) -> None:
    """Check that ``actor`` may upload data into their current project and audit the upload
    (object: the uploaded content's hash).

    Raises
    ------
    PermissionDenied
        When ``actor`` may not upload data (audited as refused).
    """
    with audited(actor, Action.UPLOAD, client=client, object=content_hash, registry=registry):
        pass


def clean(
    actor: Actor,
    df: pd.DataFrame,
    roles: Roles,
    plan: CleaningPlan,
    *,
    client: str,
    content_hash: str | None = None,
    require_label: bool = True,
    registry: Registry | None = None,
) -> CleaningReport:
    """:func:`medimg_core.tables.cleaning.clean`, for a user who may clean data.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not clean data (audited as refused; nothing is cleaned).
    """
    from medimg_core.tables.cleaning import clean as _clean

    with audited(actor, Action.CLEAN, client=client, object=content_hash, registry=registry):
        return _clean(df, roles, plan, require_label=require_label)
    raise AssertionError("unreachable")  # pragma: no cover (mypy: the block always returns)


def train(
    actor: Actor,
    data: pd.DataFrame,
    roles: Roles,
    *,
    client: str,
    content_hash: str | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> TrainingResult:
    """:func:`medimg_core.modelling.training.train` (same keyword options), for a user who may
    train in their current project. The permission is checked before any model is fitted.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not train (audited as refused).
    """
    from medimg_core.modelling.training import train as _train

    with audited(actor, Action.TRAIN, client=client, object=content_hash, registry=registry):
        return _train(data, roles, **options)
    raise AssertionError("unreachable")  # pragma: no cover


def save_run(
    actor: Actor,
    result: TrainingResult,
    model_dir: str | os.PathLike[str],
    *,
    client: str,
    registry: Registry | None = None,
    **options: Any,
) -> runs.SavedRun:
    """:func:`medimg_core.store.runs.save_run`, audited as "train" with the new run ID.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not train (audited as refused; nothing is written).
    """
    from medimg_core.store import runs

    with audited(actor, Action.TRAIN, client=client, registry=registry) as entry:
        saved = runs.save_run(actor, result, model_dir, **options)
        entry.object = saved.run_id
    return saved


def evaluate_external(
    actor: Actor,
    model: MedimgModel,
    data: pd.DataFrame,
    *,
    client: str,
    run_id: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    registry: Registry | None = None,
) -> Evaluation:
    """:func:`medimg_core.modelling.prediction.evaluate_model` (external validation), for a user
    who may validate models on external data.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not validate externally (audited as refused).
    """
    from medimg_core.modelling.prediction import evaluate_model

    with audited(
        actor, Action.EXTERNAL_VALIDATION, client=client, object=run_id, registry=registry
    ):
        return evaluate_model(model, data, n_boot=n_boot, seed=seed)
    raise AssertionError("unreachable")  # pragma: no cover


def list_runs(actor: Actor, *, registry: Registry | None = None) -> list[RunRecord]:
    """The runs of ``actor``'s current project, newest first (not audited: a listing opens
    nothing)."""
    with _registry(registry) as reg:
        return reg.list_runs(actor)


def open_run(
    actor: Actor, run_id: str, *, client: str, registry: Registry | None = None
) -> RunRecord:
    """The run's record, for a member of its project; audited as "open run".

    Raises
    ------
    RegistryError
        When no such run is in the actor's projects (a run of another project is audited as
        refused, but reported to the user as missing).
    """
    with _registry(registry) as reg:
        return _run_action(
            actor, run_id, "open run", client, reg, lambda: reg.get_run(actor, run_id)
        )


def delete_run(
    actor: Actor, run_id: str, *, client: str, registry: Registry | None = None
) -> DeletedRun:
    """Delete a run (:meth:`Registry.delete_run`); audited as "delete".

    Raises
    ------
    PermissionDenied
        When ``actor`` may not delete it (an analyst deleting another user's run).
    RegistryError
        When no such run is in the actor's projects.
    """
    with _registry(registry) as reg:
        return _run_action(
            actor, run_id, "delete", client, reg, lambda: reg.delete_run(actor, run_id)
        )


def _run_change(
    actor: Actor,
    run_id: str,
    action: Action,
    client: str,
    registry: Registry | None,
    method: str,
    fields: dict[str, Any],
    audit_action: str | None = None,
) -> Any:
    """Call the registry's ``method`` on a run, audited on the run's project; the registry
    checks ``action`` itself (a refusal is audited as such)."""
    with (
        _registry(registry) as reg,
        audited(
            actor,
            action,
            client=client,
            object=run_id,
            project=_project_of(reg, run_id),
            audit_action=audit_action,
            registry=reg,
            check=False,
        ),
    ):
        return getattr(reg, method)(actor, run_id, **fields)
    raise AssertionError("unreachable")  # pragma: no cover


def record_evaluation(
    actor: Actor,
    run_id: str,
    *,
    client: str,
    registry: Registry | None = None,
    **fields: Any,
) -> EvaluationRecord:
    """:meth:`Registry.record_evaluation`, audited as "evaluate" of the run.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not validate models externally (audited as refused).
    """
    return _run_change(
        actor, run_id, Action.EXTERNAL_VALIDATION, client, registry, "record_evaluation", fields
    )


def list_evaluations(
    actor: Actor, run_id: str, *, registry: Registry | None = None
) -> list[EvaluationRecord]:
    """The run's recorded external evaluations (not audited: opening the run is)."""
    with _registry(registry) as reg:
        return reg.list_evaluations(actor, run_id)


def record_feedback(
    actor: Actor,
    run_id: str,
    *,
    client: str,
    registry: Registry | None = None,
    **fields: Any,
) -> FeedbackRecord:
    """:meth:`Registry.record_feedback`, audited as "reader feedback" on the run.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not record judgements in the run's project (audited as refused).
    """
    return _run_change(
        actor, run_id, Action.RECORD_FEEDBACK, client, registry, "record_feedback", fields
    )


def list_feedback(
    actor: Actor, run_id: str, *, registry: Registry | None = None
) -> list[FeedbackRecord]:
    """Readers' judgements of the run's predictions (not audited: opening the run is)."""
    with _registry(registry) as reg:
        return reg.list_feedback(actor, run_id)


def set_run_context(
    actor: Actor,
    run_id: str,
    *,
    client: str,
    registry: Registry | None = None,
    **fields: str | None,
) -> RunContext:
    """:meth:`Registry.set_run_context`, audited as "run context" of the run.

    Raises
    ------
    PermissionDenied
        When ``actor`` neither owns the run nor is an admin (audited as refused).
    """
    return _run_change(
        actor, run_id, Action.TRAIN, client, registry, "set_run_context", fields, "run context"
    )


def get_run_context(
    actor: Actor, run_id: str, *, registry: Registry | None = None
) -> RunContext | None:
    """What the run's owner stated it is for (not audited: opening the run is)."""
    with _registry(registry) as reg:
        return reg.get_run_context(actor, run_id)


def _run_action(actor: Actor, run_id: str, word: str, client: str, reg: Registry, work: Any) -> Any:
    project = _project_of(reg, run_id)
    outcome = "ok"
    try:
        value = work()
    except PermissionDenied:
        outcome = "refused"
        raise
    except MedimgError:
        # A run of a project the actor is not in is refused, though reported as missing.
        outcome = "refused" if project is not None and project not in actor.projects else "failed"
        raise
    except BaseException:
        outcome = "failed"
        raise
    finally:
        _append(
            actor,
            word,
            outcome,
            client=client,
            object=run_id,
            project=project if project in actor.projects else actor.project,
            registry=reg,
        )
    return value


def _project_of(reg: Registry, run_id: str) -> str | None:
    """The project of a run, whoever asks (for the audit entry only; never shown)."""
    from medimg_core.store.registry import _Run

    with contextlib.suppress(MedimgError), reg._session("read a run") as session:
        row = session.get(_Run, run_id)
        return None if row is None else (row.project or DEFAULT_PROJECT)
    return None


@contextlib.contextmanager
def _registry(registry: Registry | None) -> Iterator[Registry]:
    if registry is not None:
        yield registry
        return
    with Registry() as reg:
        yield reg
