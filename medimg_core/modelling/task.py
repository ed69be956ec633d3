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
from medimg_core.tables.cleaning import check_magnitudes
from medimg_core.tables.roles import (
    Roles,
    choose_positive_class,
    class_key,
    feature_columns,
    id_like_features,
    is_numeric_codes,
)

__all__ = [
    "MAX_CATEGORIES",
    "MAX_CATEGORY_CHARS",
    "FeatureSpec",
    "Task",
    "resolve_features",
    "resolve_task",
]


MAX_CATEGORIES = 30
"""A text column with more distinct values than this is free text or an identifier, not a
category, and cannot be a feature."""

MAX_CATEGORY_CHARS = 200
"""A text column with a value longer than this (in characters) is free text, not a category, and
cannot be a feature: categories are short codes or words ("CC", "mass", "scanner B"), and every
category is written into the model, its schema and its model card."""


@dataclass(frozen=True)
class Task:
    """What the model predicts.

    Attributes
    ----------
    label_column : the label's column name.
    labels : the label values, aligned with the data's rows.
    classes : the distinct labels, sorted.
    positive_class : the label treated as positive (binary only; None for multi-class).
    warnings : what the user should know about the choice (a positive class that was ignored,
        a positive class read from the column name or the class names).
    positive_rule : how the positive class was chosen, in plain words ("" for multi-class).
    """

    label_column: str
    labels: pd.Series
    classes: tuple[Any, ...]
    positive_class: Any
    warnings: tuple[str, ...] = ()
    positive_rule: str = ""

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
    positive : the positive label for a binary task, as a value of the label or as one of
        ``roles.class_names``' names. None proposes one from words ("malignant"); for numeric
        codes (0/1, 2/4, "0"/"1") only from the class names or, for 0/1, from a column name
        that says which is the disease (see :func:`~medimg_core.tables.roles.choose_positive_class`).

    Returns
    -------
    Task

    Raises
    ------
    ConfigError
        No label column chosen, a positive class that is not among the labels, or numeric codes
        whose positive class no rule decides (the user must name it).
    DataError
        The label column is absent, has missing values, holds no value at all or a single
        class.
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
    if not classes:
        raise DataError(
            f"The label column {label_col!r} has no values (no rows are left, or none has a "
            "label); choose the column that holds the diagnosis (Data page, or --label "
            "COLUMN), or fill in the labels."
        )
    if len(classes) < 2:
        raise DataError(
            f"The label column {label_col!r} has a single class ({classes[0]!r}); a "
            "diagnostic model needs cases of at least two classes."
        )
    if len(classes) == 2:
        chosen, rule, from_codes = _resolve_positive(classes, positive, y_raw, roles)
        said = (f"Positive class {_shown(chosen, roles)}: {rule}.",) if from_codes else ()
        return Task(label_col, y_raw, classes, chosen, said, rule)
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
        No feature column is left, a text column has more than ``MAX_CATEGORIES`` values or
        one longer than ``MAX_CATEGORY_CHARS`` characters (free text or an identifier), a
        numeric column holds values too large to compute with
        (:func:`~medimg_core.tables.cleaning.check_magnitudes`), or a numeric column looks like a patient or record
        number (see :func:`~medimg_core.tables.roles.id_like_features`) and the user did not
        keep it on purpose (``roles.keep_as_feature``).
    """
    id_like = id_like_features(data, roles)
    if id_like:
        described = "; ".join(f"{c!r} ({why})" for c, why in id_like.items())
        first = next(iter(id_like))
        raise DataError(
            f"Column(s) {described} look like patient or record numbers, not measurements: a "
            "model could learn from the order in which patients were recorded. Mark the column "
            "as the patient ID or exclude it on the Data page (CLI: --id "
            f"{first} or --exclude {first}); if it really is a measurement, keep it on purpose "
            f"(Data page: 'Keep as a feature'; CLI: --keep-feature {first})."
        )
    columns = _feature_columns(data, roles)
    numeric, categorical = _type_features(data, columns)
    check_magnitudes(data, numeric)
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


def _shown(value: Any, roles: Roles) -> str:
    """A class as the user knows it: ``'malignant' (code 0)`` when the code has a name."""
    name = roles.class_name(value)
    return f"'{name}' (code {class_key(value)})" if name != class_key(value) else f"'{name}'"


def _resolve_positive(
    classes: tuple[Any, ...], positive: Any, y_raw: pd.Series, roles: Roles
) -> tuple[Any, str, bool]:
    """The positive class, the rule that chose it, and whether it was read off numeric codes."""
    if positive is None:
        choice = choose_positive_class(y_raw, label_name=roles.label, class_names=roles.class_names)
        if choice is None:
            raise ConfigError(_name_the_positive(classes, roles))
        chosen = next((c for c in classes if label_key(c) == label_key(choice.value)), classes[1])
        return chosen, choice.rule, choice.from_codes
    code = roles.class_code(positive)
    for c in classes:
        if c == positive or label_key(c) == label_key(positive) or class_key(c) == code:
            return c, "chosen by the user", False
    names = [str(c) if roles.class_name(c) == class_key(c) else _shown(c, roles) for c in classes]
    raise ConfigError(
        f"The positive class {positive!r} is not among the labels {names}; choose one of them."
    )


def _name_the_positive(classes: tuple[Any, ...], roles: Roles) -> str:
    codes = " and ".join(class_key(c) for c in classes)
    kind = "numeric codes" if is_numeric_codes(pd.Series(classes)) else "values"
    return (
        f"The label {roles.label!r} holds the {kind} {codes}, which do not say which class is "
        "the disease (in BreastMNIST, 0 is malignant). Name the positive class: choose it on "
        f"the Data page, or pass --positive VALUE (e.g. --positive {class_key(classes[0])}) "
        f"and, to give the codes names, --class-names {class_key(classes[0])}=NAME,"
        f"{class_key(classes[1])}=NAME."
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
    free_text: dict[str, str] = {}
    for col in features:
        values = data[col]
        if pd.api.types.is_numeric_dtype(values):
            numeric.append(col)
            continue
        text = values.dropna().map(str)
        distinct = int(text.nunique())
        longest = int(text.str.len().max()) if len(text) else 0
        if distinct > MAX_CATEGORIES:
            free_text[col] = f"{distinct:,} distinct values"
        elif longest > MAX_CATEGORY_CHARS:
            free_text[col] = f"a value of {longest:,} characters"
        else:
            categorical.append(col)
    if free_text:
        described = ", ".join(f"{c!r} ({why})" for c, why in free_text.items())
        first = next(iter(free_text))
        raise DataError(
            f"Column(s) {described} hold free text or identifiers, not numbers or categories "
            f"(at most {MAX_CATEGORIES} values of at most {MAX_CATEGORY_CHARS} characters); "
            "mark them as identifying/excluded on the Data page or with --exclude "
            f"{first}."
        )
    return numeric, categorical


def _categories(values: pd.Series) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in values.dropna()}))
