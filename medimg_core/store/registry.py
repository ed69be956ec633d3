"""The run registry: every trained model recorded with its data hash, cleaning plan,
configuration, seed, versions, metrics and card, in any SQLAlchemy database (SQLite by default).

Training tables are kept once each, as Parquet named by content hash, under the workspace
(``MEDIMG_HOME``, default ``./medimg-workspace``), so a run can be reproduced from its record.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import JSON, DateTime, Integer, String, create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medimg_core.errors import RegistryError
from medimg_core.modelling.training import TrainingResult
from medimg_core.store.persistence import CARD_NAME, MODEL_NAME
from medimg_core.tables.loading import frame_hash
from medimg_core.workspace import workspace_home

__all__ = ["Registry", "RunRecord"]

_HASH = re.compile(r"^[0-9a-f]{16,128}$")


class _Base(DeclarativeBase):
    pass


class _Run(_Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    dataset_name: Mapped[str] = mapped_column(String(512))
    dataset_hash: Mapped[str] = mapped_column(String(128), index=True)
    label: Mapped[str | None] = mapped_column(String(512), nullable=True)
    model_kind: Mapped[str] = mapped_column(String(32))
    positive_class: Mapped[Any] = mapped_column(JSON, nullable=True)
    n_rows: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    model_dir: Mapped[str] = mapped_column(String(4096))
    card: Mapped[dict[str, Any]] = mapped_column(JSON)


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

    @property
    def threshold(self) -> float | None:
        value = (self.card.get("threshold") or {}).get("value")
        return None if value is None else float(value)

    def metric(self, partition: str, name: str) -> dict[str, Any] | None:
        """``{"value", "ci95"}`` of one metric on "cv" or "test", or None if absent."""
        return (self.metrics.get(partition) or {}).get(name)

    def summary(self) -> dict[str, Any]:
        """One table row: id, created, dataset, model, CV AUC, test AUC, threshold."""
        return {
            "id": self.id,
            "created": self.created_at.strftime("%Y-%m-%d %H:%M UTC"),
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
    if created.tzinfo is None:
        # SQLite drops the zone; every stored time is UTC.
        created = created.replace(tzinfo=UTC)
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
    )


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
        self.home = Path(home).expanduser().absolute() if home is not None else workspace_home()
        url = url or os.environ.get("MEDIMG_DATABASE_URL") or f"sqlite:///{self.home}/registry.db"
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(
                f"cannot create the medimg workspace {self.home}: {exc.strerror or exc}; set "
                "MEDIMG_HOME to a writable directory."
            ) from exc
        try:
            self._engine: Engine = create_engine(url)
            _Base.metadata.create_all(self._engine)
        except (SQLAlchemyError, ImportError) as exc:
            raise RegistryError(
                f"cannot open the run registry at {_safe_url(url)}: {_first_line(exc)}; check "
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

    @contextlib.contextmanager
    def _session(self, action: str) -> Iterator[Session]:
        try:
            with Session(self._engine) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise RegistryError(
                f"cannot {action} in the run registry at {self.url}: {_first_line(exc)}; check "
                "that the database is reachable and writable."
            ) from exc

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    def store_dataset(self, df: pd.DataFrame) -> Path:
        """Keep a copy of a table as ``<home>/datasets/<content hash>.parquet``.

        The file is written atomically and skipped when a table with the same hash is stored.

        Parameters
        ----------
        df : the table.

        Returns
        -------
        Path
            The Parquet file.
        """
        digest = frame_hash(df)
        target = self.datasets_dir / f"{digest}.parquet"
        if target.exists():
            return target
        try:
            self.datasets_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{digest}.", dir=self.datasets_dir)
        except OSError as exc:
            raise RegistryError(
                f"cannot write to the dataset store {self.datasets_dir}: "
                f"{exc.strerror or exc}; set MEDIMG_HOME to a writable directory."
            ) from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                _parquet_ready(df).to_parquet(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RegistryError(
                f"cannot write {target}: {exc.strerror or exc}; free disk space or set "
                "MEDIMG_HOME to a writable directory."
            ) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def load_dataset(self, dataset_hash: str) -> pd.DataFrame:
        """The stored table with this content hash.

        Raises
        ------
        RegistryError
            When the hash is malformed or no table with it is stored.
        """
        if not _HASH.match(dataset_hash):
            raise RegistryError(
                f"{dataset_hash!r} is not a dataset hash (expected lower-case hex); copy it from "
                "a run record."
            )
        path = self.datasets_dir / f"{dataset_hash}.parquet"
        if not path.is_file():
            raise RegistryError(
                f"no stored dataset with hash {dataset_hash[:12]}… in {self.datasets_dir}; it "
                "was deleted or recorded in another workspace (check MEDIMG_HOME)."
            )
        return pd.read_parquet(path)

    def record_run(
        self,
        result: TrainingResult,
        *,
        data: pd.DataFrame,
        card: dict[str, Any],
        model_dir: str | os.PathLike[str],
    ) -> str:
        """Store the training table and record the run.

        Parameters
        ----------
        result : the training outcome.
        data : the table the model was trained on (after cleaning).
        card : the model card (as written by :func:`~medimg_core.store.persistence.save_model`).
        model_dir : where the model was saved.

        Returns
        -------
        str
            The new run id.
        """
        stored = self.store_dataset(data)
        model = result.model
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
            dataset_hash=stored.stem,
            label=model.roles.label,
            model_kind=model.kind,
            positive_class=card.get("positive_class"),
            n_rows=len(data),
            metrics=metrics,
            config=model.config.to_dict(),
            plan=model.plan.to_dict(),
            versions=dict(card.get("versions") or result.versions),
            seed=model.config.seed,
            model_dir=str(Path(model_dir).expanduser().absolute()),
            card=card,
        )
        with self._session("record the run") as session:
            session.add(row)
        return run_id

    def list_runs(self) -> list[RunRecord]:
        """Every recorded run, newest first."""
        with self._session("list runs") as session:
            rows = session.scalars(select(_Run).order_by(_Run.created_at.desc(), _Run.id.desc()))
            return [_record(r) for r in rows]

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id.

        Raises
        ------
        RegistryError
            When no such run is recorded.
        """
        with self._session("read a run") as session:
            row = session.get(_Run, run_id)
            if row is not None:
                return _record(row)
        raise RegistryError(
            f"no run with id {run_id!r} in the registry at {self.url}; list the recorded runs "
            "with `medimg runs` or on the Runs page."
        )

    def delete_run(self, run_id: str) -> None:
        """Delete a run and its model directory.

        The directory is only removed when it is a medimg model directory (``model.skops`` and
        ``card.json``), so a record pointing at a folder that was reused is never destructive.

        Raises
        ------
        RegistryError
            When no such run is recorded, or the record or directory cannot be removed.
        """
        record = self.get_run(run_id)
        model_dir = record.model_dir
        parked: Path | None = None
        if (model_dir / MODEL_NAME).is_file() and (model_dir / CARD_NAME).is_file():
            parked = model_dir.with_name(f".{model_dir.name}.deleting-{uuid.uuid4().hex[:6]}")
            try:
                os.rename(model_dir, parked)
            except OSError as exc:
                raise RegistryError(
                    f"cannot delete the model directory {model_dir}: {exc.strerror or exc}; "
                    "check its permissions. The run was kept."
                ) from exc
        try:
            with self._session("delete the run") as session:
                row = session.get(_Run, run_id)
                if row is not None:
                    session.delete(row)
        except BaseException:
            if parked is not None:
                os.rename(parked, model_dir)
            raise
        if parked is not None:
            shutil.rmtree(parked, ignore_errors=True)


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


def _safe_url(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
