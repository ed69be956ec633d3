"""Schema checks: how new data compare with what a model was trained on.

``check_schema`` reads the training schema through the small :class:`TrainedSchema` protocol, so
``models`` (whose ``predict_proba`` checks its input) can use it without a circular import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from medimg_core.errors import SchemaError
from medimg_core.tables.roles import Roles

__all__ = ["SchemaReport", "TrainedSchema", "check_schema"]


class TrainedSchema(Protocol):
    """What a trained model records about its features (``MedimgModel`` satisfies it)."""

    @property
    def feature_columns(self) -> tuple[str, ...]: ...

    @property
    def numeric_columns(self) -> tuple[str, ...]: ...

    @property
    def feature_ranges(self) -> dict[str, tuple[float, float]]: ...

    @property
    def categories(self) -> dict[str, tuple[Any, ...]]: ...

    @property
    def roles(self) -> Roles: ...


@dataclass(frozen=True)
class SchemaReport:
    """How new data compare with what the model was trained on.

    Attributes
    ----------
    missing_columns : feature columns the data lack (blocks prediction).
    unexpected_columns : columns that are neither features nor a role of the model (ignored).
    non_numeric : numeric feature column -> up to five values that are not numbers (blocks).
    unseen_categories : categorical feature column -> values not seen in training (they are
        encoded as "none of the known categories").
    out_of_range : numeric feature column -> number of values outside the training min/max.
    rows_with_missing : rows with at least one missing feature value (imputed as in training).
    n_rows : rows checked.
    """

    missing_columns: tuple[str, ...]
    unexpected_columns: tuple[str, ...]
    non_numeric: dict[str, tuple[str, ...]]
    unseen_categories: dict[str, tuple[str, ...]]
    out_of_range: dict[str, int]
    rows_with_missing: int
    n_rows: int = 0

    @property
    def errors(self) -> tuple[str, ...]:
        """Problems that block prediction, one sentence each."""
        out: list[str] = []
        if self.missing_columns:
            out.append(
                f"The data lack {len(self.missing_columns)} feature column(s) the model was "
                f"trained on: {list(self.missing_columns)}; add them with the same names."
            )
        for col, examples in self.non_numeric.items():
            out.append(
                f"Column {col!r} should hold numbers but contains {list(examples)}; fix those "
                "cells (or leave them empty to have them imputed)."
            )
        return tuple(out)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Problems that do not block prediction but deserve a look."""
        out: list[str] = []
        if self.unexpected_columns:
            out.append(
                f"{len(self.unexpected_columns)} column(s) the model does not use are ignored: "
                f"{list(self.unexpected_columns)[:10]}."
            )
        for col, values in self.unseen_categories.items():
            out.append(
                f"Column {col!r} has value(s) not seen in training {list(values)[:10]}; the "
                "model treats them as none of the known categories."
            )
        for col, count in self.out_of_range.items():
            out.append(
                f"{count} value(s) of {col!r} lie outside the training range; predictions "
                "for those cases are extrapolations."
            )
        if self.rows_with_missing:
            out.append(
                f"{self.rows_with_missing} row(s) have missing feature values; they are "
                "imputed as in training (median / most frequent)."
            )
        return tuple(out)

    @property
    def ok(self) -> bool:
        """True when nothing blocks prediction."""
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`~medimg_core.errors.SchemaError` with every blocking problem."""
        if self.errors:
            raise SchemaError(" ".join(self.errors))

    def to_dict(self) -> dict[str, Any]:
        return {
            "missing_columns": list(self.missing_columns),
            "unexpected_columns": list(self.unexpected_columns),
            "non_numeric": {k: list(v) for k, v in self.non_numeric.items()},
            "unseen_categories": {k: list(v) for k, v in self.unseen_categories.items()},
            "out_of_range": dict(self.out_of_range),
            "rows_with_missing": self.rows_with_missing,
            "n_rows": self.n_rows,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


def check_schema(model: TrainedSchema, data: pd.DataFrame) -> SchemaReport:
    """Compare new data with the model's training schema.

    Parameters
    ----------
    model : a trained model.
    data : the new cases.

    Returns
    -------
    SchemaReport
        ``.errors`` block prediction (missing columns, text in numeric columns);
        ``.warnings`` do not (ignored columns, unseen categories, out-of-range values,
        missing values that will be imputed).
    """
    present = [c for c in model.feature_columns if c in data.columns]
    missing = tuple(c for c in model.feature_columns if c not in data.columns)
    known = set(model.feature_columns) | set(model.roles.non_feature_columns())
    unexpected = tuple(str(c) for c in data.columns if c not in known)
    non_numeric: dict[str, tuple[str, ...]] = {}
    out_of_range: dict[str, int] = {}
    unseen: dict[str, tuple[str, ...]] = {}
    for col in present:
        values = data[col]
        if col in model.numeric_columns:
            numbers = pd.to_numeric(values, errors="coerce")
            bad = values[numbers.isna() & values.notna()]
            if len(bad):
                non_numeric[col] = tuple(str(v) for v in pd.unique(bad)[:5])
            low, high = model.feature_ranges.get(col, (-np.inf, np.inf))
            outside = int(((numbers < low) | (numbers > high)).sum())
            if outside:
                out_of_range[col] = outside
        else:
            seen = set(model.categories.get(col, ()))
            new = [str(v) for v in pd.unique(values.dropna()) if str(v) not in seen]
            if new:
                unseen[col] = tuple(sorted(new))
    rows_with_missing = int(data[present].isna().any(axis=1).sum()) if present else 0
    return SchemaReport(
        missing_columns=missing,
        unexpected_columns=unexpected,
        non_numeric=non_numeric,
        unseen_categories=unseen,
        out_of_range=out_of_range,
        rows_with_missing=rows_with_missing,
        n_rows=len(data),
    )
