"""A one-row-per-column profile of a table, for the Data page and reports.

The profile says what each column is (its role and type), how complete it is and what its values
look like, without ever summarising the values of identifying columns: a patient ID column or an
excluded column (names, dates of birth, free text) shows its counts only.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Literal

import numpy as np
import pandas as pd

from medimg_core.tables.roles import Roles

__all__ = [
    "COLUMN_TYPES",
    "HIDDEN_SUMMARY",
    "PROFILE_COLUMNS",
    "column_role",
    "column_type",
    "hidden_columns",
    "profile_columns",
]

ColumnType = Literal["numeric", "categorical", "text", "date", "identifying"]

COLUMN_TYPES: tuple[str, ...] = ("numeric", "categorical", "text", "date", "identifying")
"""Types a profiled column can have."""

PROFILE_COLUMNS: tuple[str, ...] = (
    "column",
    "role",
    "type",
    "missing %",
    "unique",
    "summary",
    "distribution",
)
"""Columns of the frame :func:`profile_columns` returns, in order."""

HIDDEN_SUMMARY = "hidden (identifying)"
"""Summary shown for identifying columns instead of their values."""

_HISTOGRAM_BINS = 20
_TOP_VALUES = 10
_SUMMARY_VALUES = 3
_CATEGORICAL_MAX_UNIQUE = 20
_CATEGORICAL_MAX_SHARE = 0.05


def hidden_columns(roles: Roles | None) -> tuple[str, ...]:
    """Columns whose values are hidden unless the user asks: the patient ID and excluded columns.

    Parameters
    ----------
    roles : the confirmed (or proposed) roles; None hides nothing.

    Returns
    -------
    tuple of str
        The ID column first (when set), then the excluded columns, without repeats.
    """
    if roles is None:
        return ()
    named = [roles.id] if roles.id else []
    return tuple(dict.fromkeys([*named, *roles.exclude]))


def column_role(column: Hashable, roles: Roles | None) -> str:
    """The role of a column in plain words.

    Parameters
    ----------
    column : a column name.
    roles : the roles; None makes every column a feature.

    Returns
    -------
    str
        "label", "patient ID", "quality flag", "site", "excluded" or "feature".
    """
    if roles is None:
        return "feature"
    if column == roles.label:
        return "label"
    if column == roles.id:
        return "patient ID"
    if column == roles.quality:
        return "quality flag"
    if column == roles.site:
        return "site"
    if column in roles.exclude:
        return "excluded"
    return "feature"


def column_type(series: pd.Series) -> ColumnType:
    """Classify a column as numeric, categorical, text or date (identifying is decided by roles).

    Parameters
    ----------
    series : one column.

    Returns
    -------
    str
        "numeric" for numbers (booleans are categorical), "date" for datetimes, "categorical"
        when the distinct values are few (at most 20, or at most 5% of the non-missing values),
        "text" otherwise.
    """
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return "numeric"
    present = series.dropna()
    n_unique = int(present.nunique())
    if n_unique <= _CATEGORICAL_MAX_UNIQUE or n_unique <= _CATEGORICAL_MAX_SHARE * len(present):
        return "categorical"
    return "text"


def profile_columns(
    df: pd.DataFrame,
    roles: Roles | None = None,
    *,
    hidden: Collection[Hashable] | None = None,
) -> pd.DataFrame:
    """Profile every column of a table.

    Parameters
    ----------
    df : the table.
    roles : the roles, used for the ``role`` column and to decide what is identifying.
    hidden : columns whose values must not be summarised; defaults to
        :func:`hidden_columns` of ``roles`` (the patient ID and the excluded columns).

    Returns
    -------
    pandas.DataFrame
        One row per column of ``df``, in order, with the columns of :data:`PROFILE_COLUMNS`:
        ``column`` (name as text), ``role`` (see :func:`column_role`), ``type`` (see
        :func:`column_type`; "identifying" for hidden columns), ``missing %`` (0-100),
        ``unique`` (distinct non-missing values), ``summary`` (for numbers "median 13.4 (IQR
        11.7–15.8)"; for categories and text the most frequent values with their shares;
        :data:`HIDDEN_SUMMARY` for identifying columns) and ``distribution`` (a list of counts:
        a 20-bin histogram for numbers, the 10 most frequent values' counts otherwise, empty
        for identifying or all-missing columns) for a small bar chart.
    """
    hidden_set = set(hidden_columns(roles) if hidden is None else hidden)
    n = len(df)
    rows = []
    for column in df.columns:
        series = df[column]
        present = series.dropna()
        missing = 100.0 * (n - len(present)) / n if n else 0.0
        n_unique = int(present.nunique())
        distribution: list[int] = []
        if column in hidden_set:
            kind: ColumnType = "identifying"
            summary = HIDDEN_SUMMARY
        else:
            kind = column_type(series)
            summary, distribution = _describe(present, kind)
        rows.append(
            {
                "column": str(column),
                "role": column_role(column, roles),
                "type": kind,
                "missing %": round(missing, 1),
                "unique": n_unique,
                "summary": summary,
                "distribution": distribution,
            }
        )
    return pd.DataFrame(rows, columns=list(PROFILE_COLUMNS))


def _describe(present: pd.Series, kind: ColumnType) -> tuple[str, list[int]]:
    if len(present) == 0:
        return "all values missing", []
    if kind == "numeric" and present.nunique() > _TOP_VALUES:
        return _numeric_summary(present), _histogram(present)
    if kind == "date":
        low, high = present.min(), present.max()
        return f"from {low:%Y-%m-%d} to {high:%Y-%m-%d}", _histogram(present.astype("int64"))
    counts = present.astype(str).value_counts()
    if kind == "numeric":
        # A few distinct numbers (a 0/1 flag, a grade) read best as counts in value order.
        counts = present.value_counts().sort_index()
        counts.index = [_fmt(v) for v in counts.index]
    total = len(present)
    top = [f"{value} {count / total:.0%}" for value, count in counts.head(_SUMMARY_VALUES).items()]
    rest = len(counts) - _SUMMARY_VALUES
    summary = ", ".join(top) + (f", … (+{rest} more)" if rest > 0 else "")
    if kind == "text":
        lengths = present.astype(str).str.len()
        summary = f"free text, median length {int(lengths.median())}; {summary}"
    return summary, [int(c) for c in counts.head(_TOP_VALUES).to_numpy()]


def _numeric_summary(present: pd.Series) -> str:
    values = present.to_numpy(dtype="float64")
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "no finite values"
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return (
        f"median {_fmt(median)} (IQR {_fmt(q1)}–{_fmt(q3)}); "
        f"range {_fmt(values.min())}–{_fmt(values.max())}"
    )


def _histogram(present: pd.Series) -> list[int]:
    values = present.to_numpy(dtype="float64")
    values = values[np.isfinite(values)]
    if values.size == 0:
        return []
    if values.min() == values.max():
        return [int(values.size)]
    if not np.isfinite(values.max() - values.min()):
        # The range overflows (values near ±1.8e308): the bins of a rescaled copy hold the
        # same values, and numpy can compute them.
        values = values / 4.0
    counts, _ = np.histogram(values, bins=_HISTOGRAM_BINS)
    return [int(c) for c in counts]


def _fmt(value: float) -> str:
    """Three significant figures, without scientific notation for everyday magnitudes."""
    value = float(value)
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
