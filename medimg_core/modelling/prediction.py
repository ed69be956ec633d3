"""Applying a trained model to new cases: predictions with their reasons, and external evaluation.

Separate from ``training`` so that scoring new data (which explains each case with SHAP) and
fitting (which never explains) import downward only: ``prediction → explain → models``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.errors import DataError
from medimg_core.modelling.evaluation import Evaluation, evaluate_scores
from medimg_core.modelling.explain import explain
from medimg_core.modelling.models import MedimgModel, class_names_by_code
from medimg_core.modelling.schema import SchemaReport, check_schema

__all__ = ["Predictions", "evaluate_model", "predict"]


@dataclass(frozen=True)
class Predictions:
    """What :func:`predict` produced.

    Attributes
    ----------
    frame : one row per case: the ID column (or ``row``, 1-based), ``p_<positive>`` (binary)
        or ``p_<class>`` per class, ``decision``, ``threshold`` (binary) and, when asked,
        ``reason_1`` .. ``reason_k`` ("worst area = 1,203 (+0.84)"; contributions in the
        explanation's output space). Identifying columns are never included.
    schema : the schema check of the input.
    threshold : the decision threshold on P(positive) (binary).
    positive_class : the positive label (None for multi-class).
    """

    frame: pd.DataFrame
    schema: SchemaReport
    threshold: float
    positive_class: Any


def evaluate_model(
    model: MedimgModel, data: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0
) -> Evaluation:
    """Validate a trained model on new labelled data, without refitting (partition "external").

    Parameters
    ----------
    model : a trained model.
    data : new data with the model's label column and feature columns.
    n_boot : bootstrap replicates for the 95% intervals (patients are resampled when the data
        hold the model's ID column).
    seed : seed of the bootstrap.

    Returns
    -------
    Evaluation
        At the model's threshold.

    Raises
    ------
    DataError
        No label column, missing labels or labels the model has never seen.
    SchemaError
        Missing feature columns or text in numeric columns.
    """
    label_col = model.roles.label
    if not label_col or label_col not in data.columns:
        raise DataError(
            f"The data have no label column {label_col!r}, which external validation needs; "
            "add it (same name as in training) or use prediction instead."
        )
    y = model.encode_labels(data[label_col])
    proba = model.predict_proba(data)
    id_col = model.roles.id if model.roles.id and model.roles.id in data.columns else None
    groups = data[id_col].to_numpy() if id_col else None
    return evaluate_scores(
        y,
        proba[:, 1] if model.is_binary else proba,
        class_names=class_names_by_code(model.classes, model.positive_class),
        positive_class=model.positive_class,
        threshold=model.threshold,
        groups=groups,
        row_ids=groups if groups is not None else data.index.to_numpy(),
        partition="external",
        n_boot=n_boot,
        seed=seed,
    )


def predict(
    model: MedimgModel,
    data: pd.DataFrame,
    *,
    explain_top: int = 0,
    background: pd.DataFrame | None = None,
) -> Predictions:
    """Score new cases.

    Parameters
    ----------
    model : a trained model.
    data : the new cases (features; an ID column is carried through when the model has one).
    explain_top : when > 0, add ``reason_1`` .. ``reason_k``: each case's k largest SHAP
        contributions, e.g. "worst area = 1,203 (+0.84)".
    background : reference cases for the explanation, usually the development data. By default
        the model's typical training case (the imputer's medians / most frequent categories),
        so that a single case gets meaningful reasons: contributions are then relative to that
        typical case.

    Returns
    -------
    Predictions

    Raises
    ------
    SchemaError
        Missing feature columns or text in numeric columns.
    """
    schema = check_schema(model, data)
    schema.raise_for_errors()
    proba = model.predict_proba(data)
    id_col = model.roles.id if model.roles.id and model.roles.id in data.columns else None
    columns: dict[str, Any] = {}
    if id_col:
        columns[id_col] = data[id_col].to_numpy()
    else:
        columns["row"] = np.arange(1, len(data) + 1)
    if model.is_binary:
        negative = next(c for c in model.classes if c != model.positive_class)
        columns[f"p_{model.positive_class}"] = proba[:, 1]
        columns["decision"] = np.where(
            proba[:, 1] >= model.threshold, model.positive_class, negative
        )
        columns["threshold"] = np.full(len(data), model.threshold)
    else:
        for j, cls in enumerate(model.classes):
            columns[f"p_{cls}"] = proba[:, j]
        columns["decision"] = np.asarray(model.classes, dtype=object)[proba.argmax(axis=1)]
    frame = pd.DataFrame(columns, index=data.index)
    if explain_top > 0 and len(data):
        cases = model.prepare_features(data).reset_index(drop=True)
        reference = (
            _typical_case(model)
            if background is None
            else model.prepare_features(background).reset_index(drop=True)
        )
        explanation = explain(model, cases, background=reference, seed=model.config.seed)
        k = min(explain_top, len(model.feature_columns))
        reasons: list[list[str]] = [[] for _ in range(k)]
        for i in range(len(cases)):
            top = explanation.case(i).top_reasons(k)
            for j in range(k):
                reasons[j].append(_format_reason(*top[j]) if j < len(top) else "")
        for j in range(k):
            frame[f"reason_{j + 1}"] = reasons[j]
    return Predictions(
        frame=frame.reset_index(drop=True),
        schema=schema,
        threshold=model.threshold,
        positive_class=model.positive_class,
    )


def _typical_case(model: MedimgModel) -> pd.DataFrame:
    """One row: the training median of each numeric feature and the most frequent category,
    read from the fitted imputers (so it needs no training data)."""
    prep = model.pipeline.named_steps["prep"]
    row: dict[str, Any] = {}
    for name, columns in (("num", model.numeric_columns), ("cat", model.categorical_columns)):
        if columns:
            statistics = prep.named_transformers_[name].named_steps["impute"].statistics_
            row.update(zip(columns, statistics, strict=True))
    return model.prepare_features(pd.DataFrame([row]))


def _format_reason(feature: str, value: Any, contribution: float) -> str:
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        shown = "missing" if not np.isfinite(value) else f"{float(value):,.4g}"
    else:
        shown = "missing" if pd.isna(value) else str(value)
    return f"{feature} = {shown} ({contribution:+.2f})"
