"""The run registry: every trained model recorded with its data hash, cleaning plan,
configuration, seed, versions, metrics and card, in any SQLAlchemy database (SQLite by default).

Each run keeps, under the workspace (``MEDIMG_HOME``, default ``./medimg-workspace``), the part
of its training table it needs to be reproduced: the feature columns, the label and a keyed
pseudonym of the patient ID, as Parquet named by content hash (shared by runs that need the same
table). Identifying and excluded columns are never kept. A stored table is deleted with the last
run that uses it; deleting a run removes only files medimg created inside the workspace.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    delete,
    inspect,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medimg_core.access import DEFAULT_PROJECT, Action, Actor, require
from medimg_core.encryption import is_encrypted, read_decrypted, write_encrypted
from medimg_core.errors import ConfigError, RegistryError
from medimg_core.privacy import pseudonym_key, pseudonymise_ids
from medimg_core.store.database import (
    create_tables,
    database_url,
    first_line,
    open_engine,
    safe_url,
    session_scope,
)
from medimg_core.store.model_files import parse_json_bounded
from medimg_core.tables.loading import frame_hash
from medimg_core.workspace import workspace_home

# The model code (scikit-learn, skops) is imported where a run is saved or derived, so that
# reading the registry loads none of it.
if TYPE_CHECKING:
    import pandas as pd

    from medimg_core.modelling.models import MedimgModel
    from medimg_core.modelling.training import TrainingResult

__all__ = [
    "FEEDBACK_NOTE_LIMIT",
    "RUN_CONTEXT_FIELDS",
    "RUN_CONTEXT_LIMIT",
    "STORED_DATASET",
    "VERDICTS",
    "DeletedRun",
    "EvaluationRecord",
    "FeedbackRecord",
    "Registry",
    "RunContext",
    "RunRecord",
    "reproducible_table",
]

T = TypeVar("T")

STORED_DATASET = "stored_dataset"
"""Key of the run card (in the registry) describing the table kept for the run."""

_HASH = re.compile(r"^[0-9a-f]{16,128}$")


class _Base(DeclarativeBase):
    pass


class _Run(_Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # Free text (file names, column names, paths) is unbounded: PostgreSQL, unlike SQLite,
    # refuses a value longer than a VARCHAR's length.
    dataset_name: Mapped[str] = mapped_column(Text)
    dataset_hash: Mapped[str] = mapped_column(String(128), index=True)
    label: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_kind: Mapped[str] = mapped_column(String(32))
    positive_class: Mapped[Any] = mapped_column(JSON, nullable=True)
    n_rows: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    model_dir: Mapped[str] = mapped_column(Text)
    card: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Added by issue 9; databases made before get them from _migrate (old runs: "default",
    # owner unknown).
    project: Mapped[str] = mapped_column(
        String(128), index=True, default=DEFAULT_PROJECT, server_default=DEFAULT_PROJECT
    )
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)


class _Dataset(_Base):
    """Which project stored which table (a content-addressed file may serve several)."""

    __tablename__ = "datasets"

    hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    project: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class _Evaluation(_Base):
    """An evaluation of a saved model on data it was not developed on (issue 11)."""

    __tablename__ = "evaluations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    username: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    dataset_name: Mapped[str] = mapped_column(Text)
    dataset_hash: Mapped[str] = mapped_column(String(128))
    n: Mapped[int] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    recalibrated_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class _Feedback(_Base):
    """A reader's judgement of one prediction (never the case's identifying columns)."""

    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    username: Mapped[str] = mapped_column(String(128))
    case_ref: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text)
    predicted: Mapped[str | None] = mapped_column(Text, nullable=True)
    probability: Mapped[float | None] = mapped_column(Float, nullable=True)


class _RunContext(_Base):
    """What a run is for, as its owner states it (issue 11: the report's intended use)."""

    __tablename__ = "run_context"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    intended_use: Mapped[str] = mapped_column(Text, default="")
    target_population: Mapped[str] = mapped_column(Text, default="")
    reference_standard: Mapped[str] = mapped_column(Text, default="")
    clinical_setting: Mapped[str] = mapped_column(Text, default="")
    intended_users: Mapped[str] = mapped_column(Text, default="")
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


RUN_CONTEXT_FIELDS = (
    "intended_use",
    "target_population",
    "reference_standard",
    "clinical_setting",
    "intended_users",
)
"""What a run's owner may state about its purpose (:meth:`Registry.set_run_context`)."""

RUN_CONTEXT_LIMIT = 2000
"""Longest statement kept per run-context field, in characters."""


@dataclass(frozen=True)
class RunContext:
    """What a run is for, in its owner's words (empty text = not stated).

    Attributes
    ----------
    run_id : the run described.
    intended_use : the clinical question and the decision the model supports.
    target_population : the patients it is meant for (inclusion criteria, care setting).
    reference_standard : how the true labels were established (e.g. histopathology).
    clinical_setting : where it would be used (screening, referral clinic, ...).
    intended_users : who would read its output (radiologists, pathologists, ...).
    updated_by, updated_at : who stated it last, and when (UTC).
    """

    run_id: str
    intended_use: str = ""
    target_population: str = ""
    reference_standard: str = ""
    clinical_setting: str = ""
    intended_users: str = ""
    updated_by: str = ""
    updated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """The stated fields (JSON-ready), with who stated them and when."""
        out: dict[str, Any] = {name: getattr(self, name) for name in RUN_CONTEXT_FIELDS}
        out["updated_by"] = self.updated_by
        out["updated_at"] = None if self.updated_at is None else self.updated_at.isoformat()
        return out


def _run_context(row: _RunContext) -> RunContext:
    return RunContext(
        run_id=row.run_id,
        **{name: getattr(row, name) or "" for name in RUN_CONTEXT_FIELDS},
        updated_by=row.updated_by,
        updated_at=_utc(row.updated_at),
    )


VERDICTS = ("agree", "disagree", "unsure")
"""What a reader may say about a prediction."""

FEEDBACK_NOTE_LIMIT = 500
"""Longest reader note kept, in characters."""


@dataclass(frozen=True)
class EvaluationRecord:
    """One recorded evaluation of a run on new data (e.g. another site's file).

    Attributes
    ----------
    id : sortable id.
    run_id : the evaluated run.
    created_at : when it was recorded (UTC).
    username : who ran it.
    kind : "external".
    dataset_name, dataset_hash : the evaluated file's name and content hash.
    n : cases evaluated.
    result : JSON-ready figures (metrics with intervals, calibration, feature shift, ...).
    recalibrated_run_id : the run saved with a recalibration fitted on these data, if any.
    """

    id: str
    run_id: str
    created_at: datetime
    username: str
    kind: str
    dataset_name: str
    dataset_hash: str
    n: int
    result: dict[str, Any]
    recalibrated_run_id: str | None = None


@dataclass(frozen=True)
class FeedbackRecord:
    """One reader's judgement of one prediction of a run.

    Attributes
    ----------
    id : sortable id.
    run_id : the run whose prediction was judged.
    created_at : when (UTC).
    username : the reader.
    case_ref : a non-identifying reference to the case (a keyed pseudonym or a row number of
        the run's stored cases, or a content hash of a scored row), never its ID.
    source : where the judgement was made ("explain", "predict").
    verdict : one of :data:`VERDICTS`.
    note : the reader's short note (at most :data:`FEEDBACK_NOTE_LIMIT` characters).
    predicted : the predicted class's display name, probability : P(positive) shown.
    """

    id: str
    run_id: str
    created_at: datetime
    username: str
    case_ref: str
    source: str
    verdict: str
    note: str
    predicted: str | None = None
    probability: float | None = None


def _utc(created: datetime) -> datetime:
    # SQLite drops the zone (every stored time is UTC); PostgreSQL answers in the session's
    # time zone, which need not be UTC.
    return created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)


def _evaluation_record(row: _Evaluation) -> EvaluationRecord:
    return EvaluationRecord(
        id=row.id,
        run_id=row.run_id,
        created_at=_utc(row.created_at),
        username=row.username,
        kind=row.kind,
        dataset_name=row.dataset_name,
        dataset_hash=row.dataset_hash,
        n=row.n,
        result=dict(row.result or {}),
        recalibrated_run_id=row.recalibrated_run_id,
    )


def _feedback_record(row: _Feedback) -> FeedbackRecord:
    return FeedbackRecord(
        id=row.id,
        run_id=row.run_id,
        created_at=_utc(row.created_at),
        username=row.username,
        case_ref=row.case_ref,
        source=row.source,
        verdict=row.verdict,
        note=row.note,
        predicted=row.predicted,
        probability=row.probability,
    )


def _migrate(engine: Engine) -> None:
    """Bring a registry made by an older medimg up to date: add the runs' ``project`` and
    ``owner`` columns (old runs belong to "default", owner unknown) and record the tables those
    runs stored as belonging to "default". Portable between SQLite and PostgreSQL; safe when
    two processes migrate at once."""
    columns = {c["name"] for c in inspect(engine).get_columns("runs")}
    added = False
    for name, ddl in (
        ("project", f"VARCHAR(128) NOT NULL DEFAULT '{DEFAULT_PROJECT}'"),
        ("owner", "VARCHAR(128)"),
    ):
        if name in columns:
            continue
        guard = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN {guard}{name} {ddl}")
        except SQLAlchemyError:
            # Another process added it between the look and the change.
            if name not in {c["name"] for c in inspect(engine).get_columns("runs")}:
                raise
        added = added or name == "project"
    if not added:
        return
    with Session(engine) as session, session.begin():
        known = set(session.scalars(select(_Dataset.hash)))
        for row in session.scalars(select(_Run)):
            stored = _record(row).stored_dataset_hash
            if stored not in known:
                known.add(stored)
                session.add(
                    _Dataset(
                        hash=stored, project=row.project, owner=None, created_at=row.created_at
                    )
                )


@dataclass(frozen=True)
class RunRecord:
    """One recorded training run.

    Attributes
    ----------
    id : sortable run id (UTC timestamp plus a random suffix).
    created_at : when the run was recorded (UTC).
    dataset_name, dataset_hash : the training table's name and content hash (its Parquet copy
        is ``<home>/datasets/<dataset_hash>.parquet``).
    label, model_kind, positive_class, n_rows, seed : what was trained on what.
    metrics : ``{"cv": {...}, "test": {...}}`` as in the model card.
    config, plan, versions : model configuration, cleaning plan and library versions.
    model_dir : the saved model directory.
    card : the full model card.
    project : the project the run belongs to ("default" for runs recorded before projects).
    owner : the user who trained it (None for runs recorded before owners were kept).
    """

    id: str
    created_at: datetime
    dataset_name: str
    dataset_hash: str
    label: str | None
    model_kind: str
    positive_class: Any
    n_rows: int
    metrics: dict[str, Any]
    config: dict[str, Any]
    plan: dict[str, Any]
    versions: dict[str, Any]
    seed: int
    model_dir: Path
    card: dict[str, Any]
    project: str = DEFAULT_PROJECT
    owner: str | None = None

    @property
    def stored_dataset_hash(self) -> str:
        """Content hash of the table kept for this run (``<home>/datasets/<hash>.parquet``).

        Runs recorded before only a run's own columns were kept point at the whole table.
        """
        stored = self.card.get(STORED_DATASET) or {}
        return str(stored.get("hash") or self.dataset_hash)

    @property
    def threshold(self) -> float | None:
        value = (self.card.get("threshold") or {}).get("value")
        return None if value is None else float(value)

    def metric(self, partition: str, name: str) -> dict[str, Any] | None:
        """``{"value", "ci95"}`` of one metric on "cv" or "test", or None if absent."""
        return (self.metrics.get(partition) or {}).get(name)

    def summary(self) -> dict[str, Any]:
        """One table row: id, created, owner, dataset, model, CV AUC, test AUC, threshold."""
        return {
            "id": self.id,
            "created": self.created_at.strftime("%Y-%m-%d %H:%M UTC"),
            "owner": self.owner or "unknown",
            "dataset": self.dataset_name or self.dataset_hash[:12],
            "model": self.model_kind,
            "CV AUC": _format_metric(self.metric("cv", "roc_auc")),
            "test AUC": _format_metric(self.metric("test", "roc_auc")),
            "threshold": "" if self.threshold is None else f"{self.threshold:.3f}",
        }


def _format_metric(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    text = f"{metric['value']:.3f}"
    low, high = (metric.get("ci95") or [None, None])[:2]
    if low is not None and high is not None:
        text += f" ({low:.3f}–{high:.3f})"
    return text


def _record(row: _Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        created_at=_utc(row.created_at),
        dataset_name=row.dataset_name,
        dataset_hash=row.dataset_hash,
        label=row.label,
        model_kind=row.model_kind,
        positive_class=row.positive_class,
        n_rows=row.n_rows,
        metrics=dict(row.metrics or {}),
        config=dict(row.config or {}),
        plan=dict(row.plan or {}),
        versions=dict(row.versions or {}),
        seed=row.seed,
        model_dir=Path(row.model_dir),
        card=dict(row.card or {}),
        project=row.project or DEFAULT_PROJECT,
        owner=row.owner,
    )


@dataclass(frozen=True)
class DeletedRun:
    """What deleting a run did.

    Attributes
    ----------
    run_id : the deleted record.
    model_dir : the model directory the record pointed at.
    model_deleted : True when that directory was deleted (a medimg model directory inside the
        workspace); False when it was left where it is (outside the workspace, not medimg's,
        or already gone).
    dataset_deleted : True when the stored table went with it (no other run used it).
    note : one sentence for the user saying what was and was not deleted.
    """

    run_id: str
    model_dir: Path
    model_deleted: bool
    dataset_deleted: bool
    note: str


def reproducible_table(
    model: MedimgModel, data: pd.DataFrame, *, key: bytes | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The part of a training table a run needs to be reproduced, and its column mapping.

    Parameters
    ----------
    model : the trained model (its roles and feature columns say what is needed).
    data : the cleaned table the model was trained on.
    key : pseudonymisation key; default :func:`medimg_core.privacy.pseudonym_key`.

    Returns
    -------
    (pandas.DataFrame, dict)
        The patient ID column (as keyed pseudonyms), the label, the feature columns and the
        site and subgroup columns (``roles.site``, ``roles.subgroups``: needed to reproduce the
        per-site and per-subgroup analysis; a site, sex or age does not identify a patient by
        itself), in that order, with ``data``'s rows and index; and ``{"id",
        "id_pseudonymised", "label", "features", "analysis", "left_out"}``: the columns kept
        and the names of the columns left out. Identifying, other excluded and quality columns
        are never kept.
    """
    roles = model.roles
    id_column = roles.id if roles.id is not None and roles.id in data.columns else None
    label = roles.label if roles.label is not None and roles.label in data.columns else None
    features = [
        c for c in model.feature_columns if c in data.columns and c not in {id_column, label}
    ]
    analysis = [
        c
        for c in roles.analysis_columns()
        if c in data.columns and c not in {id_column, label, *features}
    ]
    kept = [c for c in dict.fromkeys([id_column, label, *features, *analysis]) if c is not None]
    table = data[kept].copy()
    if id_column is not None:
        table[id_column] = pseudonymise_ids(
            table[id_column], key if key is not None else pseudonym_key()
        )
    mapping: dict[str, Any] = {
        "id": id_column,
        "id_pseudonymised": id_column is not None,
        "label": label,
        "features": [str(c) for c in features],
        "analysis": [str(c) for c in analysis],
        "left_out": [str(c) for c in data.columns if c not in kept],
    }
    return table, mapping


def _new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%d-%H%M%S-%f}-{uuid.uuid4().hex[:6]}"


class Registry:
    """The run registry.

    Parameters
    ----------
    url : SQLAlchemy database URL; defaults to ``MEDIMG_DATABASE_URL``, else
        ``sqlite:///<home>/registry.db``.
    home : workspace directory for the dataset store; defaults to :func:`workspace_home`.

    Raises
    ------
    RegistryError
        When the database cannot be opened or its table created.
    """

    def __init__(self, url: str | None = None, home: str | os.PathLike[str] | None = None) -> None:
        self.home = workspace_home(home)
        url = database_url(url, self.home)
        try:
            self._engine: Engine = open_engine(
                url, json_serializer=_json_text, json_deserializer=_json_value
            )
            create_tables(self._engine, _Base.metadata)
            _migrate(self._engine)
        except (SQLAlchemyError, ImportError) as exc:
            raise RegistryError(
                f"cannot open the run registry at {safe_url(url)}: {first_line(exc)}; check "
                "MEDIMG_DATABASE_URL (or unset it to use the SQLite file in the workspace)."
            ) from exc
        self.url = self._engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self, action: str) -> contextlib.AbstractContextManager[Session]:
        return session_scope(self._engine, f"{action} in the run registry at {self.url}")

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    def store_dataset(self, actor: Actor, df: pd.DataFrame) -> Path:
        """Keep a copy of a table as ``<home>/datasets/<content hash>.parquet``, recorded as a
        table of ``actor``'s current project.

        The Parquet bytes are made in memory, encrypted (:mod:`medimg_core.encryption`) and
        written atomically; the plaintext never touches the disk. Skipped when a table with the
        same hash is stored encrypted; a copy left in clear by an older medimg is rewritten.

        Parameters
        ----------
        actor : who stores it; needs the right to upload data in their current project.
        df : the table.

        Returns
        -------
        Path
            The encrypted Parquet file.

        Raises
        ------
        PermissionDenied
            When ``actor`` may not upload data in their current project.
        RegistryError
            When the dataset store cannot be written.
        EncryptionError
            When the encryption key is malformed or its file unsafe.
        """
        require(actor, Action.UPLOAD)
        digest = frame_hash(df)
        target = self.datasets_dir / f"{digest}.parquet"
        self._record_dataset(actor, digest)
        if is_encrypted(target):
            return target
        buffer = io.BytesIO()
        _parquet_ready(df).to_parquet(buffer)
        try:
            self.datasets_dir.mkdir(parents=True, exist_ok=True)
            write_encrypted(target, buffer.getvalue())
        except OSError as exc:
            raise RegistryError(
                f"cannot write {target}: {exc.strerror or exc}; free disk space or set "
                "MEDIMG_HOME to a writable directory."
            ) from exc
        return target

    def _record_dataset(self, actor: Actor, digest: str) -> None:
        project = actor.project or DEFAULT_PROJECT
        with self._session("record the data set") as session:
            if session.get(_Dataset, (digest, project)) is None:
                session.add(
                    _Dataset(
                        hash=digest,
                        project=project,
                        owner=actor.username,
                        created_at=datetime.now(UTC),
                    )
                )

    def load_dataset(self, actor: Actor, dataset_hash: str) -> pd.DataFrame:
        """The stored table with this content hash, when it belongs to one of ``actor``'s
        projects.

        Raises
        ------
        RegistryError
            When the hash is malformed, no table with it is stored in the actor's projects (a
            table of another project is reported the same way, never revealed), or the file is
            damaged.
        EncryptionError
            When the file is encrypted with a key that is not at hand.
        """
        import pandas as pd

        if not _HASH.match(dataset_hash):
            raise RegistryError(
                f"{dataset_hash!r} is not a dataset hash (expected lower-case hex); copy it from "
                "a run record."
            )
        path = self.datasets_dir / f"{dataset_hash}.parquet"
        with self._session("read a data set") as session:
            projects = set(
                session.scalars(select(_Dataset.project).where(_Dataset.hash == dataset_hash))
            )
        # A table stored before projects existed (no record at all) belongs to "default", as
        # the runs of that time do.
        readable = [p for p in projects or {DEFAULT_PROJECT} if p in actor.projects]
        if readable:
            require(actor, Action.OPEN_RUN, project=readable[0])
        if not readable or not path.is_file():
            raise RegistryError(
                f"no stored dataset with hash {dataset_hash[:12]}… in your projects in "
                f"{self.datasets_dir}; it was deleted, belongs to a project you are not a member "
                "of, or was recorded in another workspace (check MEDIMG_HOME)."
            )
        try:
            return pd.read_parquet(io.BytesIO(read_decrypted(path, what="The stored data set")))
        except (OSError, pa.ArrowException) as exc:
            raise RegistryError(
                f"cannot read the stored data set {path}: {exc}; the file is damaged. Restore it "
                "from a backup or train again from the original table."
            ) from exc

    def record_run(
        self,
        actor: Actor,
        result: TrainingResult,
        *,
        data: pd.DataFrame,
        card: dict[str, Any],
        model_dir: str | os.PathLike[str],
        dataset_hash: str | None = None,
        n_rows: int | None = None,
    ) -> str:
        """Store the training table and record the run.

        Parameters
        ----------
        actor : who trained it: the run belongs to their current project, with them as owner.
        result : the training outcome.
        data : the table the model was trained on (after cleaning).
        card : the model card (as written by :func:`~medimg_core.store.persistence.save_model`).
        model_dir : where the model was saved.
        dataset_hash, n_rows : the hash and row count of the whole training table, when
            ``data`` is only a sample of it (a table on the server, re-derived from its source
            and cleaning plan); default: those of ``data``.

        Returns
        -------
        str
            The new run id.

        Raises
        ------
        PermissionDenied
            When ``actor`` may not train in their current project.

        Notes
        -----
        Only :func:`reproducible_table` of ``data`` is stored (features, label, pseudonymised
        ID); the record's ``dataset_hash`` stays the hash of the whole cleaned table, so runs on
        the same data are recognised as such, and the card gains a ``stored_dataset`` section
        with the stored table's hash and column mapping.
        """
        require(actor, Action.TRAIN)
        project = actor.project or DEFAULT_PROJECT
        model = result.model
        table, mapping = reproducible_table(model, data)
        stored = self.store_dataset(actor, table)
        card = {
            **card,
            STORED_DATASET: {"hash": stored.stem, **mapping},
            "project": project,
            "owner": actor.username,
        }
        now = datetime.now(UTC)
        metrics = card.get("metrics") or {
            "cv": result.cv.to_dict(),
            "test": result.test.to_dict() if result.test is not None else None,
        }
        run_id = _new_run_id(now)
        row = _Run(
            id=run_id,
            created_at=now,
            dataset_name=str((card.get("dataset") or {}).get("name") or ""),
            dataset_hash=dataset_hash if dataset_hash is not None else frame_hash(data),
            label=model.roles.label,
            model_kind=model.kind,
            positive_class=card.get("positive_class"),
            n_rows=n_rows if n_rows is not None else len(data),
            metrics=metrics,
            config=model.config.to_dict(),
            plan=model.plan.to_dict(),
            versions=dict(card.get("versions") or result.versions),
            seed=model.config.seed,
            model_dir=str(Path(model_dir).expanduser().absolute()),
            card=card,
            project=project,
            owner=actor.username,
        )
        with self._session("record the run") as session:
            session.add(row)
        return run_id

    def record_derived_run(
        self,
        actor: Actor,
        parent_run_id: str,
        *,
        card: dict[str, Any],
        model_dir: str | os.PathLike[str],
    ) -> str:
        """Record a run derived from a recorded one without retraining (e.g. recalibrated).

        The new run shares the parent's data (name, hash, stored table), label, configuration,
        plan, versions and seed; its metrics are those of ``card``. It belongs to the parent's
        project, with ``actor`` as owner.

        Raises
        ------
        PermissionDenied
            When ``actor`` may not train in the parent run's project.
        RegistryError
            When the parent run is not recorded in the actor's projects.
        """
        from medimg_core.store.persistence import _jsonable

        parent = self.get_run(actor, parent_run_id)
        require(actor, Action.TRAIN, project=parent.project)
        with self._session("read the parent run") as session:
            row = session.get(_Run, parent_run_id)
            if row is None:  # deleted meanwhile
                raise RegistryError(
                    f"the run {parent_run_id!r} was deleted meanwhile; open another run."
                )
            source = {
                "dataset_name": row.dataset_name,
                "dataset_hash": row.dataset_hash,
                "label": row.label,
                "model_kind": row.model_kind,
                "positive_class": row.positive_class,
                "n_rows": row.n_rows,
                "config": dict(row.config or {}),
                "plan": dict(row.plan or {}),
                "versions": dict(row.versions or {}),
                "seed": row.seed,
                "stored": (row.card or {}).get(STORED_DATASET),
            }
        stored = source.pop("stored")
        full_card = {
            **card,
            **({STORED_DATASET: stored} if stored is not None else {}),
            "project": parent.project,
            "owner": actor.username,
        }
        now = datetime.now(UTC)
        run_id = _new_run_id(now)
        new = _Run(
            id=run_id,
            created_at=now,
            metrics=_jsonable(card.get("metrics") or {}),
            model_dir=str(Path(model_dir).expanduser().absolute()),
            card=_jsonable(full_card),
            project=parent.project,
            owner=actor.username,
            **source,
        )
        with self._session("record the run") as session:
            session.add(new)
        return run_id

    def list_runs(self, actor: Actor) -> list[RunRecord]:
        """The runs of ``actor``'s current project, newest first.

        Raises
        ------
        PermissionDenied
            When ``actor`` has no current project or is not a member of it.
        """
        require(actor, Action.OPEN_RUN)
        query = (
            select(_Run)
            .where(_Run.project == actor.project)
            .order_by(_Run.created_at.desc(), _Run.id.desc())
        )
        with self._session("list runs") as session:
            return [_record(r) for r in session.scalars(query)]

    def model_dirs(self) -> list[Path]:
        """Every recorded run's model directory, in every project.

        For workspace maintenance only (key rotation must re-encrypt every model file); it
        gives no run's data or metrics, so it takes no acting user: the command that calls it
        checks the permission.
        """
        with self._session("list model folders") as session:
            return [Path(d) for d in session.scalars(select(_Run.model_dir))]

    def get_run(self, actor: Actor, run_id: str) -> RunRecord:
        """The run with this id, when it belongs to one of ``actor``'s projects.

        Raises
        ------
        RegistryError
            When no such run is recorded in the actor's projects. A run of another project is
            reported exactly as a missing one, so its existence is not revealed.
        """
        with self._session("read a run") as session:
            row = session.get(_Run, run_id)
            record = _record(row) if row is not None else None
        if record is not None and record.project in actor.projects:
            require(actor, Action.OPEN_RUN, project=record.project)
            return record
        raise RegistryError(
            f"no such run in your projects: {run_id!r} is not recorded in a project you are a "
            "member of; list your runs with `medimg runs` or on the Runs page."
        )

    def delete_run(self, actor: Actor, run_id: str) -> DeletedRun:
        """Delete a run's record, its model directory when medimg made it here, and its stored
        table when no other run uses it.

        Only files medimg created inside the workspace are deleted: the model directory goes
        when it lies inside the workspace (after resolving links) and holds medimg's model and
        card. A directory elsewhere (``medimg train -o /elsewhere``) or one that is not a medimg
        model directory is left untouched: the run is only unregistered, and the returned note
        says so.

        Analysts delete only the runs they own; admins any run of their projects.

        Returns
        -------
        DeletedRun
            What was deleted, with a note for the user.

        Raises
        ------
        PermissionDenied
            When ``actor`` may not delete this run.
        RegistryError
            When no such run is recorded in the actor's projects, or the record or directory
            cannot be removed.
        """
        record = self.get_run(actor, run_id)
        require(actor, Action.DELETE_OWN_RUN, owner=record.owner, project=record.project)
        model_dir = record.model_dir
        owned = self._owned_model_dir(model_dir)
        parked: Path | None = None
        if owned is not None:
            parked = owned.with_name(f".{owned.name}.deleting-{uuid.uuid4().hex[:6]}")
            try:
                os.rename(owned, parked)
            except OSError as exc:
                raise RegistryError(
                    f"cannot delete the model directory {model_dir}: {exc.strerror or exc}; "
                    "check its permissions. The run was kept."
                ) from exc
        stored_hash = record.stored_dataset_hash
        try:
            with self._session("delete the run") as session:
                row = session.get(_Run, run_id)
                if row is not None:
                    session.delete(row)
                # Its evaluations and readers' judgements go with it.
                session.execute(delete(_Evaluation).where(_Evaluation.run_id == run_id))
                session.execute(delete(_Feedback).where(_Feedback.run_id == run_id))
                session.execute(delete(_RunContext).where(_RunContext.run_id == run_id))
                session.flush()
                # Runs recorded earlier point at their whole table by its hash, newer ones at
                # their own columns: the file is in use while any remaining run points at it.
                remaining = session.scalars(select(_Run).where(_Run.id != run_id))
                others = [_record(r) for r in remaining]
                in_use = any(r.stored_dataset_hash == stored_hash for r in others)
        except BaseException:
            if parked is not None and owned is not None:
                os.rename(parked, owned)
            raise
        if parked is not None:
            shutil.rmtree(parked, ignore_errors=True)
        dataset_deleted = False if in_use else self._delete_dataset(stored_hash)
        return DeletedRun(
            run_id=run_id,
            model_dir=model_dir,
            model_deleted=owned is not None,
            dataset_deleted=dataset_deleted,
            note=self._deletion_note(run_id, model_dir, owned is not None, dataset_deleted),
        )

    def record_evaluation(
        self,
        actor: Actor,
        run_id: str,
        *,
        dataset_name: str,
        dataset_hash: str,
        n: int,
        result: dict[str, Any],
        kind: str = "external",
        recalibrated_run_id: str | None = None,
    ) -> EvaluationRecord:
        """Record an evaluation of a run on new data as part of the run's history.

        Parameters
        ----------
        actor : who evaluated (needs external validation in the run's project).
        run_id : the evaluated run.
        dataset_name, dataset_hash : the evaluated file.
        n : cases evaluated.
        result : JSON-ready figures; stored as given.
        kind : "external".
        recalibrated_run_id : the run saved with a recalibration fitted on these data.

        Raises
        ------
        PermissionDenied
            When ``actor`` may not validate models externally in the run's project.
        RegistryError
            When no such run is recorded in the actor's projects, or the record cannot be written.
        """
        from medimg_core.store.persistence import _jsonable

        record = self.get_run(actor, run_id)
        require(actor, Action.EXTERNAL_VALIDATION, project=record.project)
        now = datetime.now(UTC)
        row = _Evaluation(
            id=_new_run_id(now),
            run_id=run_id,
            created_at=now,
            username=actor.username,
            kind=kind,
            dataset_name=dataset_name,
            dataset_hash=dataset_hash,
            n=int(n),
            result=_jsonable(result),
            recalibrated_run_id=recalibrated_run_id,
        )
        return self._add(row, _evaluation_record, "record the evaluation")

    def link_recalibrated(
        self, actor: Actor, evaluation_id: str, recalibrated_run_id: str
    ) -> EvaluationRecord:
        """Note on a recorded evaluation the run saved with a recalibration fitted on its data.

        Raises
        ------
        RegistryError
            When the evaluation or either run is not recorded in the actor's projects.
        """
        with self._session("read the evaluation") as session:
            row = session.get(_Evaluation, evaluation_id)
            run_id = row.run_id if row is not None else None
        if run_id is None:
            raise RegistryError(
                f"no such evaluation: {evaluation_id!r} is not recorded; list a run's "
                "evaluations on the Runs page or with `medimg runs show RUN_ID`."
            )
        record = self.get_run(actor, run_id)
        self.get_run(actor, recalibrated_run_id)
        require(actor, Action.EXTERNAL_VALIDATION, project=record.project)
        with self._session("link the recalibrated run") as session:
            row = session.get(_Evaluation, evaluation_id)
            assert row is not None
            row.recalibrated_run_id = recalibrated_run_id
            session.flush()
            return _evaluation_record(row)

    def list_evaluations(self, actor: Actor, run_id: str) -> list[EvaluationRecord]:
        """The recorded evaluations of a run, oldest first.

        Raises
        ------
        RegistryError
            When no such run is recorded in the actor's projects.
        """
        self.get_run(actor, run_id)
        return self._history(_Evaluation, run_id, _evaluation_record, "list the run's evaluations")

    def record_feedback(
        self,
        actor: Actor,
        run_id: str,
        *,
        case_ref: str,
        verdict: str,
        note: str = "",
        source: str,
        predicted: str | None = None,
        probability: float | None = None,
    ) -> FeedbackRecord:
        """Record a reader's judgement of one prediction of a run.

        Parameters
        ----------
        actor : the reader (any member of the run's project who may open runs).
        run_id : the run whose prediction is judged.
        case_ref : a non-identifying reference to the case (never its ID column's value).
        verdict : "agree", "disagree" or "unsure".
        note : a short note, at most :data:`FEEDBACK_NOTE_LIMIT` characters.
        source : the page or command the judgement came from ("explain", "predict").
        predicted, probability : what the model said, as shown to the reader.

        Raises
        ------
        ConfigError
            An unknown verdict, an empty case reference or a note that is too long.
        PermissionDenied
            When ``actor`` may not record judgements in the run's project.
        RegistryError
            When no such run is recorded in the actor's projects.
        """
        verdict = str(verdict).strip().lower()
        if verdict not in VERDICTS:
            raise ConfigError(
                f"A reader's judgement is one of {', '.join(VERDICTS)}; got {verdict!r}."
            )
        note = str(note or "").strip()
        if len(note) > FEEDBACK_NOTE_LIMIT:
            raise ConfigError(
                f"The note has {len(note)} characters; keep it to {FEEDBACK_NOTE_LIMIT} "
                "(a short reason, without names or other identifying details)."
            )
        if not str(case_ref).strip():
            raise ConfigError("The judgement names no case; choose a case first.")
        record = self.get_run(actor, run_id)
        require(actor, Action.RECORD_FEEDBACK, project=record.project)
        now = datetime.now(UTC)
        row = _Feedback(
            id=_new_run_id(now),
            run_id=run_id,
            created_at=now,
            username=actor.username,
            case_ref=str(case_ref),
            source=str(source),
            verdict=verdict,
            note=note,
            predicted=None if predicted is None else str(predicted),
            probability=None if probability is None else float(probability),
        )
        return self._add(row, _feedback_record, "record the judgement")

    def list_feedback(self, actor: Actor, run_id: str) -> list[FeedbackRecord]:
        """Readers' judgements of a run's predictions, oldest first.

        Raises
        ------
        RegistryError
            When no such run is recorded in the actor's projects.
        """
        self.get_run(actor, run_id)
        return self._history(_Feedback, run_id, _feedback_record, "list the readers' judgements")

    def set_run_context(self, actor: Actor, run_id: str, **fields: str | None) -> RunContext:
        """State what a run is for: intended use, target population, reference standard,
        clinical setting and intended users (any of :data:`RUN_CONTEXT_FIELDS`).

        Fields not given keep their stored text; an empty text clears one. The run's owner
        may state it (an analyst's permission to train in the run's project), an admin for any
        run.

        Raises
        ------
        ConfigError
            An unknown field or a statement longer than :data:`RUN_CONTEXT_LIMIT` characters.
        PermissionDenied
            When ``actor`` may not train in the run's project, or does not own the run and is
            not an admin.
        RegistryError
            When no such run is recorded in the actor's projects.
        """
        unknown = sorted(set(fields) - set(RUN_CONTEXT_FIELDS))
        if unknown:
            raise ConfigError(
                f"A run's context has no field {', '.join(map(repr, unknown))}; state one of "
                f"{', '.join(RUN_CONTEXT_FIELDS)}."
            )
        given = {k: " ".join(str(v).split()) for k, v in fields.items() if v is not None}
        for name, text in given.items():
            if len(text) > RUN_CONTEXT_LIMIT:
                raise ConfigError(
                    f"The {name.replace('_', ' ')} has {len(text)} characters; keep it to "
                    f"{RUN_CONTEXT_LIMIT} (a short statement; details belong in a protocol)."
                )
        record = self.get_run(actor, run_id)
        require(actor, Action.TRAIN, project=record.project)
        # Only the owner (or an admin, who may delete any run) speaks for a run.
        require(actor, Action.DELETE_OWN_RUN, owner=record.owner, project=record.project)
        now = datetime.now(UTC)
        with self._session("state the run's context") as session:
            row = session.get(_RunContext, run_id)
            if row is None:
                row = _RunContext(run_id=run_id, **dict.fromkeys(RUN_CONTEXT_FIELDS, ""))
                session.add(row)
            for name, text in given.items():
                setattr(row, name, text)
            row.updated_by = actor.username
            row.updated_at = now
            session.flush()
            return _run_context(row)

    def get_run_context(self, actor: Actor, run_id: str) -> RunContext | None:
        """What the run's owner stated it is for, or None when nothing was stated.

        Raises
        ------
        RegistryError
            When no such run is recorded in the actor's projects.
        """
        self.get_run(actor, run_id)
        with self._session("read the run's context") as session:
            row = session.get(_RunContext, run_id)
            return None if row is None else _run_context(row)

    def _history(
        self, table: Any, run_id: str, to_record: Callable[[Any], T], what: str
    ) -> list[T]:
        """A run's rows of ``table`` (evaluations, judgements), oldest first, as records."""
        query = select(table).where(table.run_id == run_id).order_by(table.created_at, table.id)
        with self._session(what) as session:
            return [to_record(r) for r in session.scalars(query)]

    def _add(self, row: Any, to_record: Callable[[Any], T], what: str) -> T:
        """Insert ``row`` and return it as a record."""
        with self._session(what) as session:
            session.add(row)
            session.flush()
            return to_record(row)

    def _owned_model_dir(self, model_dir: Path) -> Path | None:
        """The resolved model directory when medimg made it inside the workspace, else None."""
        from medimg_core.store.persistence import CARD_NAME, MODEL_NAME

        if model_dir.is_symlink() or not model_dir.is_dir():
            return None
        try:
            resolved = model_dir.resolve(strict=True)
            home = self.home.resolve(strict=True)
        except OSError:
            return None
        if resolved == home or not resolved.is_relative_to(home):
            return None
        if not ((resolved / MODEL_NAME).is_file() and (resolved / CARD_NAME).is_file()):
            return None
        return resolved

    def _delete_dataset(self, stored_hash: str) -> bool:
        if not _HASH.match(stored_hash):
            return False
        with self._session("forget the data set") as session:
            session.execute(delete(_Dataset).where(_Dataset.hash == stored_hash))
        deleted = False
        # The stored table may carry a further suffix (an encrypted copy): every file named
        # "<hash>.<suffix>" in the dataset store is that table.
        for path in self.datasets_dir.glob(f"{stored_hash}.*"):
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                deleted = True
        return deleted

    @staticmethod
    def _deletion_note(run_id: str, model_dir: Path, model_deleted: bool, dataset: bool) -> str:
        if model_deleted:
            note = f"Run {run_id} and its model files were deleted."
        elif model_dir.exists():
            note = (
                f"Run {run_id} was removed from the list of runs. Its model folder {model_dir} "
                "is outside medimg's workspace (or was not written by medimg), so it was left "
                "untouched: delete it yourself if it is no longer needed."
            )
        else:
            note = f"Run {run_id} was removed from the list of runs (its model folder was gone)."
        if dataset:
            note += " The copy of its training data was deleted too: no other run used it."
        return note


def _parquet_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Columns Arrow cannot store (mixed Python objects) are stored as text."""
    mixed = [
        c for c in df.columns if df[c].dtype == object and df[c].dropna().map(type).nunique() > 1
    ]
    if not mixed and all(isinstance(c, str) for c in df.columns):
        return df
    out = df.copy()
    for c in mixed:
        out[c] = out[c].map(_text_or_missing)
    out.columns = [str(c) for c in out.columns]
    return out


def _text_or_missing(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _json_text(value: Any) -> str:
    """JSON text every database accepts: NaN and infinities become null, as in the model card.

    PostgreSQL's JSON type rejects ``NaN``, which Python writes for a metric that could not be
    computed; SQLite would keep it. Storing null on both shows "n/a" the same everywhere.
    """
    from medimg_core.store.persistence import _jsonable

    return json.dumps(_jsonable(value), allow_nan=False)


def _json_value(text: Any) -> Any:
    """A JSON column's value, refused when nested deeper than any card medimg writes (Python's
    parser would recurse until a ``RecursionError``)."""
    if isinstance(text, bytes | bytearray | memoryview):
        data = bytes(text)
    elif isinstance(text, str):
        data = text.encode("utf-8")
    else:
        return text  # SQLite keeps a JSON number ("0") as a number
    return parse_json_bounded(
        data,
        "An entry of the run registry",
        error=RegistryError,
        fix="Restore the registry database from a backup.",
    )
