"""Wording shared by medimg's error messages: quoted lists, close matches, available columns."""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Iterable
from typing import Any

__all__ = ["available_columns_text", "close_matches_text", "column_hint", "quote_list"]


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
