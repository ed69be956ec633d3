"""What a model is asked to predict, and from what: the label, its classes and positive class, and
the feature columns typed as numbers or categories.

The positive class is never guessed from numeric codes alone: it is the user's choice, or
:func:`~medimg_core.tables.roles.propose_positive_class`'s proposal that the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.models import label_key, labels_by_code
from medimg_core.tables.roles import Roles, feature_columns, propose_positive_class

__all__ = ["MAX_CATEGORIES", "FeatureSpec", "Task", "resolve_features", "resolve_task"]


MAX_CATEGORIES = 30
"""A text column with more distinct values than this is free text or an identifier, not a
category, and cannot be a feature."""


@dataclass(frozen=True)
class Task:
    """What the model predicts.

    Attributes
    ----------
    label_column : the label's column name.
    labels : the label values, aligned with the data's rows.
    classes : the distinct labels, sorted.
    positive_class : the label treated as positive (binary only; None for multi-class).
    warnings : what the user should know about the choice (a positive class that was ignored).
    """

    label_column: str
    labels: pd.Series
    classes: tuple[Any, ...]
    positive_class: Any
    warnings: tuple[str, ...] = ()

    @property
    def is_binary(self) -> bool:
        """Two classes: scored as P(positive)."""
        return len(self.classes) == 2

    @property
    def labels_by_code(self) -> tuple[Any, ...]:
        """The label of each encoded class (negative, positive) for binary, else ``classes``."""
        return labels_by_code(self.classes, self.positive_class)


@dataclass(frozen=True)
class FeatureSpec:
    """The feature columns, typed: numbers, or categories with the values seen.

    Attributes
    ----------
    columns : every feature column, in the data's order.
    numeric, categorical : the partition of ``columns``.
    categories : categorical column -> the values seen, as text, sorted.
    """

    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    categories: dict[str, tuple[str, ...]]

    @property
    def width(self) -> int:
        """Columns after one-hot encoding (what PCA sees)."""
        return len(self.numeric) + sum(len(v) for v in self.categories.values())


def resolve_task(data: pd.DataFrame, roles: Roles, positive: Any = None) -> Task:
    """Read the label column and settle the classes and the positive class.

    Parameters
    ----------
    data : cleaned data holding ``roles.label``.
    roles : the confirmed roles.
    positive : the positive label for a binary task; None proposes one (e.g. "malignant").

    Returns
    -------
    Task

    Raises
    ------
    ConfigError
        No label column chosen, or a positive class that is not among the labels.
    DataError
        The label column is absent, has missing values or holds a single class.
    """
    label_col = _label_column(data, roles)
    y_raw = data[label_col]
    n_missing_label = int(y_raw.isna().sum())
    if n_missing_label:
        raise DataError(
            f"{n_missing_label} row(s) have no value in the label column {label_col!r}; run "
            "cleaning first (it removes rows without a label) or fill them in."
        )
    classes = _sorted_labels(y_raw)
    if len(classes) < 2:
        raise DataError(
            f"The label column {label_col!r} has a single class ({classes[0]!r}); a "
            "diagnostic model needs cases of at least two classes."
        )
    if len(classes) == 2:
        return Task(label_col, y_raw, classes, _resolve_positive(classes, positive, y_raw))
    warnings: tuple[str, ...] = ()
    if positive is not None:
        warnings = (
            f"The positive class {positive!r} was ignored: the label has {len(classes)} "
            "classes, so every class is scored one-vs-rest.",
        )
    return Task(label_col, y_raw, classes, None, warnings)


def resolve_features(data: pd.DataFrame, roles: Roles) -> FeatureSpec:
    """Every column without a role, typed as numeric or categorical.

    Raises
    ------
    DataError
        No feature column is left, or a text column has more than ``MAX_CATEGORIES`` values
        (free text or an identifier).
    """
    columns = _feature_columns(data, roles)
    numeric, categorical = _type_features(data, columns)
    categories = {c: _categories(data[c]) for c in categorical}
    return FeatureSpec(tuple(columns), tuple(numeric), tuple(categorical), categories)


def _label_column(data: pd.DataFrame, roles: Roles) -> str:
    if not roles.label:
        raise ConfigError(
            "No label column was chosen; pick the diagnosis column on the Data page or pass "
            "--label."
        )
    if roles.label not in data.columns:
        raise DataError(
            f"The label column {roles.label!r} is not in the data (columns: "
            f"{[str(c) for c in data.columns][:20]}); choose an existing column."
        )
    return roles.label


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _sorted_labels(values: pd.Series) -> tuple[Any, ...]:
    unique = [_plain(v) for v in pd.unique(values.dropna())]
    try:
        return tuple(sorted(unique))
    except TypeError:
        return tuple(sorted(unique, key=label_key))


def _resolve_positive(classes: tuple[Any, ...], positive: Any, y_raw: pd.Series) -> Any:
    if positive is None:
        proposed = propose_positive_class(y_raw)
        return next((c for c in classes if label_key(c) == label_key(proposed)), classes[1])
    for c in classes:
        if c == positive or label_key(c) == label_key(positive):
            return c
    raise ConfigError(
        f"The positive class {positive!r} is not among the labels "
        f"{[str(c) for c in classes]}; choose one of them."
    )


def _feature_columns(data: pd.DataFrame, roles: Roles) -> list[str]:
    return [str(c) for c in feature_columns(data, roles)]


def _type_features(data: pd.DataFrame, features: list[str]) -> tuple[list[str], list[str]]:
    if not features:
        raise DataError(
            "There are no feature columns left to train on (every column is the label, an ID "
            "or excluded); un-exclude at least one measurement column."
        )
    numeric: list[str] = []
    categorical: list[str] = []
    free_text: dict[str, int] = {}
    for col in features:
        values = data[col]
        if pd.api.types.is_numeric_dtype(values):
            numeric.append(col)
            continue
        distinct = int(values.dropna().map(str).nunique())
        if distinct <= MAX_CATEGORIES:
            categorical.append(col)
        else:
            free_text[col] = distinct
    if free_text:
        described = ", ".join(f"{c!r} ({n} distinct values)" for c, n in free_text.items())
        raise DataError(
            f"Column(s) {described} hold free text or identifiers, not numbers or categories "
            f"(at most {MAX_CATEGORIES} values); mark them as identifying/excluded on the Data "
            "page or with --exclude."
        )
    return numeric, categorical


def _categories(values: pd.Series) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in values.dropna()}))
