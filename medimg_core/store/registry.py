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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from sqlalchemy import (
    JSON,
    DateTime,
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
from medimg_core.errors import RegistryError
from medimg_core.modelling.models import MedimgModel
from medimg_core.modelling.training import TrainingResult
from medimg_core.privacy import pseudonym_key, pseudonymise_ids
from medimg_core.store.database import (
    create_tables,
    database_url,
    first_line,
    open_engine,
    safe_url,
    session_scope,
)
from medimg_core.store.persistence import CARD_NAME, MODEL_NAME, _jsonable
from medimg_core.tables.loading import frame_hash
from medimg_core.workspace import workspace_home

__all__ = ["STORED_DATASET", "DeletedRun", "Registry", "RunRecord", "reproducible_table"]

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
    created = row.created_at
    # SQLite drops the zone (every stored time is UTC); PostgreSQL answers in the session's
    # time zone, which need not be UTC.
    created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    return RunRecord(
        id=row.id,
        created_at=created,
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
        The patient ID column (as keyed pseudonyms), the label and the feature columns, in that
        order, with ``data``'s rows and index; and ``{"id", "id_pseudonymised", "label",
        "features", "left_out"}``: the columns kept and the names of the columns left out.
        Identifying, excluded, quality and site columns are never kept.
    """
    roles = model.roles
    id_column = roles.id if roles.id is not None and roles.id in data.columns else None
    label = roles.label if roles.label is not None and roles.label in data.columns else None
    features = [
        c for c in model.feature_columns if c in data.columns and c not in {id_column, label}
    ]
    kept = [c for c in dict.fromkeys([id_column, label, *features]) if c is not None]
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
            self._engine: Engine = open_engine(url, json_serializer=_json_text)
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

    def _owned_model_dir(self, model_dir: Path) -> Path | None:
        """The resolved model directory when medimg made it inside the workspace, else None."""
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
    return json.dumps(_jsonable(value), allow_nan=False)
