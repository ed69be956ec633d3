"""The cases a saved model was developed and tested on, kept beside it as ``cases.parquet``.

A model directory holds the fitted pipeline and its card; with the cases (the cleaned rows used,
each with its partition and the probability the validation gave it) a saved run can be opened
later and evaluated, explained and reviewed case by case exactly as right after training.

Only what the model and its evaluation need is kept: its feature columns, the label, the patient
ID, written as a keyed pseudonym (:func:`medimg_core.privacy.pseudonymise_ids`), so the file
groups a patient's rows without naming the patient, and the site and subgroup columns
(``Roles.site``, ``Roles.subgroups``) for the per-site and per-subgroup metrics. A site, sex or
age column does not identify a patient by itself; age is kept as the number recorded and only
ever shown in bands. Other excluded and identifying columns never reach the file. Development rows carry their out-of-fold probability (the model that scored them never saw
them), test rows the final model's probability.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from medimg_core.encryption import read_decrypted, write_encrypted
from medimg_core.errors import DataError, ModelFileError
from medimg_core.modelling.evaluation import Evaluation, evaluate_scores
from medimg_core.modelling.models import MedimgModel, class_names_by_code
from medimg_core.modelling.training import TrainingResult
from medimg_core.privacy import pseudonym_key, pseudonymise_ids
from medimg_core.store.model_files import check_file_size, model_file_limit

__all__ = [
    "CASES_NAME",
    "DEVELOPMENT",
    "PARTITION",
    "P_POSITIVE",
    "TEST",
    "build_cases",
    "case_evaluations",
    "load_cases",
    "probability_columns",
    "save_cases",
]

CASES_NAME = "cases.parquet"
"""File name of the cases inside a model directory."""

PARTITION = "partition"
"""Column naming each row's split: ``DEVELOPMENT`` or ``TEST``."""

DEVELOPMENT = "development"
TEST = "test"

P_POSITIVE = "p_positive"
"""Binary tasks: column of P(positive class)."""


def probability_columns(model: MedimgModel) -> tuple[str, ...]:
    """Names of the probability columns in the cases of ``model``.

    Parameters
    ----------
    model : the trained model.

    Returns
    -------
    tuple of str
        ``("p_positive",)`` for a binary model, ``("p_<class>", ...)`` in the order of
        ``model.classes`` otherwise.
    """
    if model.is_binary:
        return (P_POSITIVE,)
    return tuple(f"p_{c}" for c in model.classes)


def _kept_columns(model: MedimgModel, data: pd.DataFrame) -> list[str]:
    roles = model.roles
    wanted = [roles.id, roles.label, *model.feature_columns, *roles.analysis_columns()]
    return [c for c in dict.fromkeys(wanted) if c is not None and c in data.columns]


def _positions(data: pd.DataFrame, labels: tuple[Any, ...], what: str) -> np.ndarray:
    positions = data.index.get_indexer(pd.Index(labels, dtype=object))
    if (positions < 0).any():
        raise DataError(
            f"{int((positions < 0).sum())} {what} row(s) of the training result are not in the "
            "table passed as data; pass the same cleaned table the model was trained on."
        )
    return positions


def build_cases(result: TrainingResult, data: pd.DataFrame) -> pd.DataFrame:
    """The cases of a training run: the rows used, their partition and their probabilities.

    Parameters
    ----------
    result : the training outcome (its ``dev_index``/``test_index`` and out-of-fold
        probabilities are used).
    data : the cleaned table the model was trained on.

    Returns
    -------
    pandas.DataFrame
        Development rows first (in the order of ``result.cv``), then test rows (in the order of
        ``result.test``), indexed as in ``data``. Columns: the ID column (if any), the label,
        the feature columns, ``partition`` and the probability columns of
        :func:`probability_columns`.

    Raises
    ------
    DataError
        When ``data`` has a duplicated index, lacks rows of the result, or has a column whose
        name clashes with ``partition`` or a probability column.
    """
    model = result.model
    if not data.index.is_unique:
        raise DataError(
            "The table's row index has duplicates, so cases cannot be matched to the training "
            "result; pass the cleaned table as returned by cleaning (its index is unique)."
        )
    added = (PARTITION, *probability_columns(model))
    kept = _kept_columns(model, data)
    clashes = [c for c in added if c in kept]
    if clashes:
        raise DataError(
            f"Column(s) {clashes} of the data clash with the names medimg gives the cases' "
            "partition and probabilities; rename them before training."
        )
    if result.oof_proba is None or len(result.oof_proba) != len(result.dev_index):
        raise DataError(
            "The training result has no out-of-fold probabilities for its development rows; "
            "retrain with medimg_core.modelling.training.train to keep its cases."
        )
    if result.cv.n != len(result.dev_index):
        raise DataError(
            f"The cross-validation covers {result.cv.n} rows but the result lists "
            f"{len(result.dev_index)} development rows; retrain to keep its cases."
        )
    dev_pos = _positions(data, result.dev_index, "development")
    test_pos = _positions(data, result.test_index, "test")
    frame = data.iloc[np.concatenate([dev_pos, test_pos])][kept].copy()
    n_dev, n_test = len(dev_pos), len(test_pos)
    frame[PARTITION] = [DEVELOPMENT] * n_dev + [TEST] * n_test
    dev_scores = np.asarray(result.oof_proba, dtype=float)
    if result.test is not None and n_test:
        test_scores = np.asarray(result.test.y_score, dtype=float)
    else:
        test_scores = np.empty((0, *dev_scores.shape[1:]))
    if model.is_binary:
        dev_p = dev_scores[:, 1] if dev_scores.ndim == 2 else dev_scores
        frame[P_POSITIVE] = np.concatenate([dev_p, test_scores.reshape(-1)])
    else:
        both = np.vstack([dev_scores, test_scores.reshape(n_test, -1)])
        for j, name in enumerate(probability_columns(model)):
            frame[name] = both[:, j]
    return frame


def _arrow_table(frame: pd.DataFrame) -> pa.Table:
    out = frame.copy()
    out.columns = [str(c) for c in out.columns]
    for col in out.columns:
        values = out[col]
        # Arrow refuses object columns that mix Python types (numbers and text in one column).
        if values.dtype == object and values.dropna().map(type).nunique() > 1:
            out[col] = values.map(lambda v: None if pd.isna(v) else str(v))
    return pa.Table.from_pandas(out, preserve_index=True)


def save_cases(
    directory: str | os.PathLike[str],
    frame: pd.DataFrame,
    *,
    id_column: str | None = None,
    key: bytes | None = None,
) -> Path:
    """Write ``frame`` as ``cases.parquet`` into a model directory, encrypted and atomically.

    The Parquet bytes are made in memory and encrypted (:mod:`medimg_core.encryption`); the blob
    goes to a temporary file in the same directory, is flushed to disk and then renamed over the
    target, so a reader sees the old file or the new one, never half of one.

    Parameters
    ----------
    directory : the model directory (it must exist).
    frame : the cases, as built by :func:`build_cases`.
    id_column : the patient ID column (``model.roles.id``); its values are written as keyed
        pseudonyms, which keep a patient's rows together (patient-level bootstrap) without
        naming the patient.
    key : pseudonymisation key; default :func:`medimg_core.privacy.pseudonym_key`.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ModelFileError
        When the directory does not exist or cannot be written.
    EncryptionError
        When the encryption key is malformed or its file unsafe.
    """
    folder = Path(directory).expanduser().absolute()
    if not folder.is_dir():
        raise ModelFileError(
            f"The model directory {folder} does not exist; save the model there first."
        )
    target = folder / CASES_NAME
    if id_column is not None and id_column in frame.columns:
        frame = frame.copy()
        frame[id_column] = pseudonymise_ids(
            frame[id_column], key if key is not None else pseudonym_key()
        )
    buffer = pa.BufferOutputStream()
    pq.write_table(_arrow_table(frame), buffer)
    try:
        write_encrypted(target, buffer.getvalue().to_pybytes())
    except OSError as exc:
        raise ModelFileError(
            f"cannot write {target}: {exc.strerror or exc}; free disk space or check the "
            "directory's permissions."
        ) from exc
    return target


def load_cases(directory: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``cases.parquet`` from a model directory.

    Parameters
    ----------
    directory : the model directory.

    Returns
    -------
    pandas.DataFrame
        As written by :func:`save_cases` (index included).

    Raises
    ------
    ModelFileError
        When the directory has no cases file (e.g. the model was saved without them) or the
        file cannot be read.
    EncryptionError
        When the file is encrypted with a key that is not at hand, or was altered.
    """
    path = Path(directory).expanduser().absolute() / CASES_NAME
    if not path.is_file():
        raise ModelFileError(
            f"The model directory {path.parent} has no {CASES_NAME}: this model was saved "
            "without its cases (for example from the command line), so its cross-validated "
            "and test predictions cannot be shown; retrain it in the dashboard to keep them."
        )
    check_file_size(path, model_file_limit())
    try:
        raw = read_decrypted(path, what="The stored cases")
        frame = pq.read_table(pa.BufferReader(raw)).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise ModelFileError(
            f"cannot read {path}: {exc}; the file is damaged. Retrain the model to rewrite it."
        ) from exc
    if PARTITION not in frame.columns:
        raise ModelFileError(
            f"{path} has no {PARTITION!r} column, so it is not a medimg cases file; retrain the "
            "model to rewrite it."
        )
    return frame


def case_evaluations(
    model: MedimgModel,
    cases: pd.DataFrame,
    *,
    n_boot: int = 1000,
    seed: int | None = None,
) -> tuple[Evaluation, Evaluation | None]:
    """Rebuild the cross-validated and test evaluations from stored cases.

    With the same ``n_boot`` and ``seed`` as training the result equals what training reported:
    the same probabilities, in the same order, with the same bootstrap.

    Parameters
    ----------
    model : the trained model (labels are encoded and the threshold taken from it).
    cases : the cases, as read by :func:`load_cases`.
    n_boot : bootstrap replicates for the 95% intervals.
    seed : bootstrap seed; defaults to the model's seed (as in training).

    Returns
    -------
    (Evaluation, Evaluation or None)
        The out-of-fold development evaluation (partition "cv") and the test evaluation
        (partition "test"; None when there is no test row). Patients are resampled when the
        model has an ID column.

    Raises
    ------
    DataError
        When the cases lack the label or probability columns, or have no development row.
    """
    label = model.roles.label
    columns = list(probability_columns(model))
    missing = [c for c in [label, *columns] if c is None or c not in cases.columns]
    if missing:
        raise DataError(
            f"The stored cases lack the column(s) {missing}; they do not belong to this model. "
            "Retrain the model to rewrite them."
        )
    id_col = model.roles.id if model.roles.id and model.roles.id in cases.columns else None
    # The class names, as training gave them (a code shows its given name: "pneumonia", not 1).
    names = class_names_by_code(model.classes, model.positive_class, model.roles.class_names)
    common: dict[str, Any] = {
        "class_names": names,
        "positive_class": model.positive_class,
        "threshold": model.threshold if model.is_binary else 0.5,
        "n_boot": n_boot,
        "seed": model.config.seed if seed is None else seed,
    }

    def evaluate(part: pd.DataFrame, partition: str) -> Evaluation:
        scores = part[columns].to_numpy(dtype=float)
        groups = part[id_col].to_numpy() if id_col else None
        return evaluate_scores(
            model.encode_labels(part[label]),
            scores[:, 0] if model.is_binary else scores,
            groups=groups,
            row_ids=groups if groups is not None else part.index.to_numpy(),
            partition=partition,
            **common,
        )

    dev = cases[cases[PARTITION] == DEVELOPMENT]
    if dev.empty:
        raise DataError(
            "The stored cases have no development rows, so the cross-validation cannot be "
            "rebuilt; retrain the model to rewrite them."
        )
    test = cases[cases[PARTITION] == TEST]
    return evaluate(dev, "cv"), (evaluate(test, "test") if len(test) else None)
