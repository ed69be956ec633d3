"""Batch prediction over a table too large for one process, written as a folder of parts.

The table (a CSV file, a folder or glob of CSV files, a Parquet file or folder of parts) is read
partition by partition with :func:`~medimg_core.tables.partitioned.open_partitioned`, which reads
every value as the in-memory loader would and numbers the rows as in the whole table. Each
partition is one task on the engine in force (:func:`medimg_core.compute.current`): the task
reads its rows where it runs and returns exactly what :func:`~medimg_core.modelling.prediction.
predict` gives for them (probabilities, decision, out-of-distribution flags, abstention, top-K
SHAP reasons). This process writes each part as it arrives (``part-00000.parquet`` ... or
``.csv``, stamped with the model like every prediction export, CSV made safe against formula
injection) into a hidden folder beside the output, renamed into place only when every part is
written: a run that fails or is cancelled leaves nothing behind. At most a few partitions are
in flight, so memory here is bounded by partition size, not table size.

Predictions do not depend on how the table is cut: :func:`predict` scores every case in blocks
of fixed shape, and the explanation's reference is the model's typical training case, so the
parts read in name order equal ``predict(model, whole_table)`` to the last digit, here or on a
cluster of any size.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from medimg_core import compute
from medimg_core.errors import ConfigError, SchemaError
from medimg_core.modelling.conformal import (
    SET_SIZE_KEYS,
    ConformalPredictor,
    set_column_name,
    set_size_counts,
    sets_sentence,
    with_prediction_sets,
)
from medimg_core.modelling.models import MedimgModel
from medimg_core.modelling.prediction import (
    ABSTAINED,
    NO_DISTANCE_CHECK,
    Abstention,
    abstention_sentence,
    decision_threshold,
    ood_sentence,
    predict,
    stamp_export,
)
from medimg_core.modelling.schema import SchemaReport, check_schema
from medimg_core.privacy import to_safe_csv
from medimg_core.tables.partitioned import PartitionedTable, open_partitioned

__all__ = [
    "FORMATS",
    "MANIFEST",
    "PARTITION_ROWS",
    "BatchPrediction",
    "is_prediction_folder",
    "predict_partitioned",
]

PARTITION_ROWS = 100_000
"""Parquet row groups are read together up to about this many rows per task (a CSV file is
one task)."""

MANIFEST = "_medimg_predictions.json"
"""Written last into every prediction folder: what it holds and which model made it."""

FORMATS = ("parquet", "csv")

_MAX_IN_FLIGHT = 3


@dataclass(frozen=True)
class BatchPrediction:
    """What :func:`predict_partitioned` wrote.

    Attributes
    ----------
    output : the folder of parts.
    format : ``"parquet"`` or ``"csv"``.
    parts : the part files, in row order.
    rows : cases predicted (the table's rows; empty rows are skipped as when loading).
    partitions : partitions of the input (one task each; empty ones write no part).
    ood_flagged, ood_range : cases unlike the training data (either check), and by range.
    abstained : cases given no decision (0 when abstention is off).
    positives : cases called positive (binary models; None otherwise).
    threshold : the decision threshold (binary; None otherwise).
    positive_class : the positive class as shown (None for multi-class).
    abstention : the rule applied (None when the model always decides).
    distance_checked : whether the distance check was available.
    schema : the schema check of every partition, combined.
    source : the input's name; ``reading_notes``: what reading it changed (dropped rows ...).
    where : where the tasks ran (:meth:`medimg_core.compute.Engine.describe`).
    set_confidence : the confidence of the prediction-set column (None when not added).
    set_sizes : cases whose prediction set holds one class, two or more, none
        (:data:`medimg_core.modelling.conformal.SET_SIZE_KEYS`; empty when not added).
    """

    output: Path
    format: str
    parts: tuple[str, ...]
    rows: int
    partitions: int
    ood_flagged: int
    ood_range: int
    abstained: int
    positives: int | None
    threshold: float | None
    positive_class: Any
    abstention: Abstention | None
    distance_checked: bool
    schema: SchemaReport
    source: str
    reading_notes: tuple[str, ...]
    where: str
    set_confidence: float | None = None
    set_sizes: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def notes(self) -> tuple[str, ...]:
        """What the reader of these predictions should know, in plain words."""
        out = [ood_sentence(self.rows, self.ood_flagged, self.ood_range)]
        if not self.distance_checked:
            out.append(NO_DISTANCE_CHECK)
        if self.abstention is not None and self.abstention.active:
            out.append(abstention_sentence(self.rows, self.abstained))
        if self.set_confidence is not None:
            out.append(sets_sentence(self.set_confidence, self.set_sizes))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the folder's manifest, job results)."""
        return {
            "output": str(self.output),
            "format": self.format,
            "parts": list(self.parts),
            "rows": self.rows,
            "partitions": self.partitions,
            "ood_flagged": self.ood_flagged,
            "ood_range": self.ood_range,
            "abstained": self.abstained,
            "positives": self.positives,
            "threshold": self.threshold,
            "positive_class": None if self.positive_class is None else str(self.positive_class),
            "abstention": None
            if self.abstention is None
            else {"ood": self.abstention.ood, "band": self.abstention.band},
            "distance_checked": self.distance_checked,
            "schema": self.schema.to_dict(),
            "source": self.source,
            "reading_notes": list(self.reading_notes),
            "notes": list(self.notes),
            "computed_on": self.where,
            "prediction_sets": None
            if self.set_confidence is None
            else {"confidence": self.set_confidence, "set_sizes": dict(self.set_sizes)},
        }


@dataclass(frozen=True)
class _Settings:
    explain_top: int
    threshold: float
    abstain: Abstention | None
    conformal: ConformalPredictor | None = None


@dataclass(frozen=True)
class _Part:
    frame: pd.DataFrame
    schema: SchemaReport


def is_prediction_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by :func:`predict_partitioned` (it may be
    replaced by a new run)."""
    return (Path(path) / MANIFEST).is_file()


def predict_partitioned(
    model: MedimgModel,
    source: str | os.PathLike[str] | PartitionedTable,
    output: str | os.PathLike[str],
    *,
    explain_k: int = 0,
    abstain_ood: bool = False,
    abstain_band: tuple[float, float] | None = None,
    threshold: float | None = None,
    output_format: str = "parquet",
    rows_per_partition: int = PARTITION_ROWS,
    run_id: str | None = None,
    model_sha256: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    conformal: ConformalPredictor | None = None,
) -> BatchPrediction:
    """Score a large table partition by partition and write the predictions as a folder of parts.

    Parameters
    ----------
    model : a trained model.
    source : a CSV file, a folder or glob of CSV files, a Parquet file or folder of parts, or a
        table already opened with :func:`~medimg_core.tables.partitioned.open_partitioned`.
    output : the folder to create. An existing folder is replaced only when it is empty or
        holds an earlier medimg prediction output (:data:`MANIFEST`).
    explain_k : when > 0, ``reason_1`` .. ``reason_k`` (top SHAP contributions per case).
    abstain_ood, abstain_band : when to give no decision (see
        :class:`~medimg_core.modelling.prediction.Abstention`).
    threshold : the decision threshold on P(positive) (binary); default the model's.
    output_format : ``"parquet"`` (default) or ``"csv"`` (formula-safe, for spreadsheets).
    rows_per_partition : Parquet row groups are grouped up to about this many rows per task.
    run_id, model_sha256 : stamped on every row (see
        :func:`~medimg_core.modelling.prediction.stamp_export`).
    progress : ``progress(done, total)`` after each partition is written.
    cancelled : polled between partitions; True stops the run, removes what was written and
        raises :class:`~medimg_core.errors.Cancelled`.
    conformal : when given, each row gets its prediction set at this predictor's confidence
        (column ``Prediction set (90%)``; see :mod:`medimg_core.modelling.conformal`). A set
        depends on its case only, so the parts equal the whole table's sets.

    Returns
    -------
    BatchPrediction

    Raises
    ------
    SchemaError
        The table lacks feature columns (before anything is written), or holds text in a
        numeric feature column.
    ConfigError
        An unknown format, a bad threshold or band, or an output that is a file or a folder
        holding other files.
    DataError
        The input cannot be read as a table.
    Cancelled
        ``cancelled()`` returned True.
    """
    if output_format not in FORMATS:
        raise ConfigError(
            f"Unknown prediction format {output_format!r}; choose one of {', '.join(FORMATS)}."
        )
    abstain = Abstention(ood=abstain_ood, band=abstain_band)
    cut = decision_threshold(model, threshold, abstain)
    target = _check_target(Path(output))
    table = (
        source
        if isinstance(source, PartitionedTable)
        else open_partitioned(source, rows_per_partition=rows_per_partition)
    )
    schema = check_schema(model, table.meta)
    if schema.missing_columns:
        missing = ", ".join(repr(c) for c in schema.missing_columns)
        raise SchemaError(
            f"'{table.name}' lacks the feature column(s) {missing} that the model was trained "
            "on; add them with the same names. Nothing was written."
        )
    settings = _Settings(
        explain_top=max(0, int(explain_k)),
        threshold=cut,
        abstain=abstain if abstain.active else None,
        conformal=conformal,
    )
    positive = model.display_name(model.positive_class) if model.is_binary else None
    engine = compute.current()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{os.urandom(4).hex()}"
    staging.mkdir()
    parts: list[str] = []
    reports: list[SchemaReport] = []
    counts = dict.fromkeys(("rows", "flagged", "range", "abstained", "positives"), 0)
    set_sizes = dict.fromkeys(SET_SIZE_KEYS, 0) if conformal is not None else {}
    total = table.n_partitions
    try:
        results = engine.imap(
            _predict_part,
            range(total),
            shared={"table": table, "model": model, "settings": settings},
            max_in_flight=_MAX_IN_FLIGHT,
            cancelled=cancelled,
            name="medimg-predict",
            ordered=True,
        )
        for done, (_, part) in enumerate(results, start=1):
            if part is not None:
                frame = part.frame
                reports.append(part.schema)
                counts["rows"] += len(frame)
                counts["flagged"] += int(frame["ood_flag"].sum())
                counts["range"] += int(frame["ood_range"].sum())
                decision = frame["decision"].astype(str)
                counts["abstained"] += int((decision == ABSTAINED).sum())
                if positive is not None:
                    counts["positives"] += int((decision == str(positive)).sum())
                if conformal is not None:
                    for size, n in set_size_counts(
                        frame[set_column_name(conformal.confidence)]
                    ).items():
                        set_sizes[size] += n
                exported = stamp_export(
                    frame,
                    run_id=run_id,
                    model_sha256=model_sha256,
                    threshold=cut if model.is_binary else None,
                    positive_class=positive,
                )
                name = f"part-{len(parts):05d}.{output_format}"
                _write_part(staging / name, exported, output_format)
                parts.append(name)
            if progress is not None:
                progress(done, total)
        result = BatchPrediction(
            output=target,
            format=output_format,
            parts=tuple(parts),
            rows=counts["rows"],
            partitions=total,
            ood_flagged=counts["flagged"],
            ood_range=counts["range"],
            abstained=counts["abstained"],
            positives=counts["positives"] if model.is_binary else None,
            threshold=cut if model.is_binary else None,
            positive_class=positive,
            abstention=settings.abstain,
            distance_checked=model.ood is not None,
            schema=_combine(reports, schema),
            source=table.name,
            reading_notes=table.notes,
            where=engine.describe(),
            set_confidence=None if conformal is None else conformal.confidence,
            set_sizes=set_sizes,
        )
        manifest = {
            **result.to_dict(),
            "run_id": run_id,
            "model_sha256": model_sha256,
            "content_hash": table.content_hash,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / MANIFEST).write_text(
            json.dumps(manifest, indent=2, allow_nan=False, default=str), encoding="utf-8"
        )
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _predict_part(
    index: int, *, table: PartitionedTable, model: MedimgModel, settings: _Settings
) -> _Part | None:
    """One partition's predictions (runs where the engine runs)."""
    rows = table.frame.partitions[index].compute(scheduler="sync")
    if not len(rows):
        return None
    predictions = predict(
        model,
        rows,
        explain_top=settings.explain_top,
        threshold=settings.threshold,
        abstain=settings.abstain,
        first_row=table.offsets[index] + 1,
    )
    frame = predictions.frame
    if settings.conformal is not None:
        frame = with_prediction_sets(frame, model, settings.conformal)
    return _Part(frame=frame, schema=predictions.schema)


def _check_target(output: Path) -> Path:
    target = output.expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise ConfigError(
            f"{target} is a file; predictions in parts are written to a folder. Choose a "
            "folder name (ending in /) or remove the file."
        )
    if target.is_dir() and any(target.iterdir()) and not is_prediction_folder(target):
        raise ConfigError(
            f"The folder {target} already holds other files; choose a new or empty folder "
            "(medimg replaces only a folder of its own earlier predictions)."
        )
    return target


def _write_part(path: Path, frame: pd.DataFrame, output_format: str) -> None:
    if output_format == "csv":
        path.write_bytes(to_safe_csv(frame))
    else:
        frame.to_parquet(path, index=False)


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished folder to ``target``; an earlier output there is removed only once
    the new one is in place."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.parent / f".{target.name}.old-{os.urandom(4).hex()}"
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _combine(reports: list[SchemaReport], first: SchemaReport) -> SchemaReport:
    """The schema checks of all partitions as one (counts summed, values united)."""
    if not reports:
        return first
    unseen: dict[str, dict[str, None]] = {}
    out_of_range: dict[str, int] = {}
    for report in reports:
        for column, values in report.unseen_categories.items():
            unseen.setdefault(column, {}).update(dict.fromkeys(values))
        for column, count in report.out_of_range.items():
            out_of_range[column] = out_of_range.get(column, 0) + count
    return SchemaReport(
        missing_columns=first.missing_columns,
        unexpected_columns=reports[0].unexpected_columns,
        non_numeric={},
        unseen_categories={c: tuple(v)[:10] for c, v in unseen.items()},
        out_of_range=out_of_range,
        rows_with_missing=sum(r.rows_with_missing for r in reports),
        n_rows=sum(r.n_rows for r in reports),
    )
