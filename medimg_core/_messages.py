"""Wording shared across medimg: quoted lists, close matches, available columns, feature values."""

from __future__ import annotations

import difflib
import math
from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "available_columns_text",
    "close_matches_text",
    "column_hint",
    "format_value",
    "quote_list",
]


def quote_list(values: Iterable[Any], limit: int | None = None) -> str:
    """``'a', 'b', 'c'``; with ``limit``, the first ``limit`` values followed by ", ..."."""
    items = list(values)
    if limit is None or len(items) <= limit:
        return ", ".join(repr(v) for v in items)
    return ", ".join(repr(v) for v in items[:limit]) + ", ..."


def close_matches_text(name: Hashable, columns: Iterable[Hashable]) -> str:
    """``"Close matches: 'Age'. "`` (case-insensitive, as the columns are spelled), or ""."""
    by_lower: dict[str, str] = {}
    for column in map(str, columns):
        by_lower.setdefault(column.lower(), column)
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=5, cutoff=0.6)
    return f"Close matches: {quote_list(by_lower[c] for c in close)}. " if close else ""


def available_columns_text(columns: Iterable[Hashable], shown: int = 10) -> str:
    """``"Available columns: 'a', 'b' (and 3 more). "``"""
    text = [str(c) for c in columns]
    more = f" (and {len(text) - shown} more)" if len(text) > shown else ""
    return f"Available columns: {quote_list(text[:shown])}{more}. "


def column_hint(name: Hashable, columns: Iterable[Hashable]) -> str:
    """The close matches to a mistyped column name, or else the columns there are."""
    columns = list(columns)
    return close_matches_text(name, columns) or available_columns_text(columns)


def format_value(value: Any) -> str:
    """A feature value as a reader expects it: "1,203", "12.35", "0.0781", "missing".

    Parameters
    ----------
    value : a number, a category or a missing value.

    Returns
    -------
    str
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return "missing"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        x = float(value)
        if math.isnan(x):
            return "missing"
        if not math.isfinite(x):
            return str(x)
        if x == int(x) and abs(x) < 1e15:
            return f"{int(x):,}"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 1:
            return f"{x:.4g}"
        return f"{x:.3g}"
    return str(value)
