"""Bringing tables together: joining a feature table to a clinical table, stacking sites.

Both functions refuse, with a message that names the fix, whenever going on would silently
change the number of cases: a key repeated on the right side of a join (every match would be
copied), or a source column that already means something else.

Join keys are compared as text after stripping spaces, and whole numbers lose a trailing
``.0`` (an integer ID column with a gap is read as floats: ``7.0`` must still match ``"7"``).
Leading zeros are kept: ``"007"`` and ``7`` are different keys, because in many hospital
systems they are different patients. Keys that would match only if leading zeros or letter
case were ignored are reported in ``JoinResult.notes`` rather than matched silently.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from medimg_core._messages import available_columns_text, close_matches_text, quote_list
from medimg_core.errors import ConfigError, DataError

__all__ = ["JoinResult", "StackResult", "join_tables", "stack_sources"]

_SHOWN = 5
"""How many example keys or values an error message or note lists."""


@dataclass(frozen=True)
class JoinResult:
    """The outcome of :func:`join_tables`.

    Attributes
    ----------
    frame : the joined table. Left rows keep their index and order; right columns follow,
        without the right key column. A right column whose name is already on the left gets
        the suffix ``_right``.
    key : (left key column, right key column).
    n_left, n_right : rows in each input.
    n_matched : left rows that found a partner on the right.
    unmatched_left, unmatched_right : distinct keys (as compared: stripped text) present on
        one side only, in order of first appearance.
    duplicate_keys : keys repeated in the left table (allowed: each such row gets the same
        right row). Keys repeated on the right are refused, see :func:`join_tables`.
    notes : plain-language remarks: rows without a key, renamed columns, near-miss keys.
    """

    frame: pd.DataFrame
    key: tuple[str, str]
    n_left: int
    n_right: int
    n_matched: int
    unmatched_left: tuple[Any, ...]
    unmatched_right: tuple[Any, ...]
    duplicate_keys: tuple[Any, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (counts and at most a few example keys, no row data)."""
        return {
            "key": list(self.key),
            "rows_left": self.n_left,
            "rows_right": self.n_right,
            "rows_matched": self.n_matched,
            "rows_out": len(self.frame),
            "unmatched_left": len(self.unmatched_left),
            "unmatched_right": len(self.unmatched_right),
            "duplicate_keys_left": len(self.duplicate_keys),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class StackResult:
    """The outcome of :func:`stack_sources`.

    Attributes
    ----------
    frame : all rows, the source column first, then the union of the columns in order of
        first appearance; a column a source lacks is missing (NaN) for its rows. The index
        is a fresh 0..n-1 range (the sources' own indexes overlap).
    sources : source names, in the order given.
    rows_per_source : source -> number of rows.
    columns_missing_per_source : source -> columns of the union that source lacks (an empty
        tuple when it has them all).
    notes : columns whose type differs between sources, and column names that differ only
        by case or spaces (probably the same measurement under two spellings).
    """

    frame: pd.DataFrame
    sources: tuple[str, ...]
    rows_per_source: dict[str, int]
    columns_missing_per_source: dict[str, tuple[str, ...]]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no row data)."""
        return {
            "sources": list(self.sources),
            "rows_per_source": dict(self.rows_per_source),
            "columns_missing_per_source": {
                k: list(v) for k, v in self.columns_missing_per_source.items()
            },
            "notes": list(self.notes),
        }


def join_tables(
    left: pd.DataFrame,
    right: pd.DataFrame,
    *,
    on: str | tuple[str, str],
    how: Literal["inner", "left"] = "inner",
) -> JoinResult:
    """Join two tables on a key, accounting for every key that did not match.

    Parameters
    ----------
    left : the main table (for example radiomic features, one row per image or lesion).
    right : the table to bring in (for example clinical data, one row per patient). Each key
        must appear at most once here.
    on : the key column, or ``(left column, right column)`` when the names differ.
    how : "inner" keeps matched left rows only; "left" keeps every left row, with missing
        right values where there was no match.

    Returns
    -------
    JoinResult

    Raises
    ------
    DataError
        An input is not a DataFrame, a key column is absent, or a key is repeated in the right
        table (the join would copy left rows).
    ConfigError
        ``on`` or ``how`` is not valid.
    """
    for name, table in (("left", left), ("right", right)):
        if not isinstance(table, pd.DataFrame):
            raise DataError(
                f"join_tables() needs pandas DataFrames; the {name} table is a "
                f"{type(table).__name__}. Load it with medimg_core.tables.loading.load_table first."
            )
    if how not in ("inner", "left"):
        raise ConfigError(f"how={how!r} is not a join medimg offers. Use 'inner' or 'left'.")
    left_key, right_key = _key_names(on)
    _require_column(left, left_key, "left")
    _require_column(right, right_key, "right")

    lk = _normalise_keys(left[left_key])
    rk = _normalise_keys(right[right_key])
    notes: list[str] = []

    repeated_right = _repeated_keys(rk)
    if repeated_right:
        raise DataError(
            f"Key column {right_key!r} of the right table repeats {len(repeated_right)} key(s) "
            f"(e.g. {quote_list(repeated_right, limit=_SHOWN)}); joining would copy the matching "
            "left rows. "
            "Keep one row per key in the right table (remove or aggregate the repeats), or "
            "swap the tables if the left one has one row per key."
        )

    right_values = right.drop(columns=[right_key])
    right_values = right_values[rk.notna().to_numpy()]
    right_values.index = pd.Index(rk.dropna().to_numpy(), dtype=object)
    renamed = {}
    taken: set[Hashable] = set(left.columns) | set(right_values.columns)
    for column in right_values.columns:
        if column in left.columns:
            new = _suffixed(str(column), taken)
            taken.add(new)
            renamed[column] = new
    if renamed:
        right_values = right_values.rename(columns=renamed)
        notes.append(
            "Columns present in both tables were renamed on the right: "
            + ", ".join(f"{old!r} -> {new!r}" for old, new in renamed.items())
            + "."
        )

    matched = lk.notna().to_numpy() & lk.isin(right_values.index).to_numpy()
    aligned = right_values.reindex(pd.Index(lk.to_numpy(), dtype=object))
    aligned.index = left.index
    frame = pd.concat([left, aligned], axis=1)
    if how == "inner":
        frame = frame[matched]

    left_keys = pd.unique(lk.dropna())
    right_keys = pd.unique(rk.dropna())
    right_set = set(right_keys)
    left_set = set(left_keys)
    unmatched_left = tuple(k for k in left_keys if k not in right_set)
    unmatched_right = tuple(k for k in right_keys if k not in left_set)

    for side, keys in (("left", lk), ("right", rk)):
        n_missing = int(keys.isna().sum())
        if n_missing:
            notes.append(
                f"{n_missing} row(s) of the {side} table have no key and cannot match"
                + (
                    " (kept, with missing right values)."
                    if side == "left" and how == "left"
                    else "."
                )
            )
    near = _near_misses(unmatched_left, unmatched_right)
    if near:
        notes.append(
            f"{len(near)} unmatched key(s) would match if leading zeros or letter case were "
            f"ignored (e.g. {', '.join(f'{a!r} ~ {b!r}' for a, b in near[:_SHOWN])}). They were "
            "not matched: make the ID formats the same in both files if they are the same cases."
        )

    return JoinResult(
        frame=frame,
        key=(left_key, right_key),
        n_left=len(left),
        n_right=len(right),
        n_matched=int(matched.sum()),
        unmatched_left=unmatched_left,
        unmatched_right=unmatched_right,
        duplicate_keys=tuple(_repeated_keys(lk)),
        notes=tuple(notes),
    )


def stack_sources(
    tables: Mapping[str, pd.DataFrame], *, source_column: str = "site"
) -> StackResult:
    """Stack tables from several sources (sites, scanners, batches) into one.

    Parameters
    ----------
    tables : source name -> table. The names become the values of ``source_column``.
    source_column : name of the column recording where each row came from.

    Returns
    -------
    StackResult

    Raises
    ------
    DataError
        No tables, a value that is not a DataFrame, a table with repeated column names, or a
        table that already has ``source_column`` with values other than its own source name.
    ConfigError
        ``source_column`` is not a non-empty string.
    """
    if not isinstance(source_column, str) or not source_column.strip():
        raise ConfigError(
            f"source_column={source_column!r} is not a usable column name. Use e.g. 'site'."
        )
    if not isinstance(tables, Mapping) or not tables:
        raise DataError(
            "stack_sources() needs at least one table, given as {source name: DataFrame}."
        )
    frames: list[pd.DataFrame] = []
    union: dict[Hashable, None] = {}
    sources: list[str] = []
    for raw_name, table in tables.items():
        name = str(raw_name)
        if not isinstance(table, pd.DataFrame):
            raise DataError(
                f"Source {name!r} is a {type(table).__name__}, not a table. "
                "Load it with medimg_core.tables.loading.load_table first."
            )
        repeated = table.columns[table.columns.duplicated()].unique().tolist()
        if repeated:
            raise DataError(
                f"Source {name!r} has repeated column names: {quote_list(repeated, limit=_SHOWN)}. "
                "Rename them so every column name is unique."
            )
        if source_column in table.columns:
            _check_own_source(table[source_column], name, source_column)
            table = table.drop(columns=[source_column])
        sources.append(name)
        frames.append(table)
        union.update(dict.fromkeys(table.columns))

    columns = list(union)
    missing = {
        name: tuple(str(c) for c in columns if c not in frame.columns)
        for name, frame in zip(sources, frames, strict=True)
    }
    pieces = [
        frame.reindex(columns=columns).assign(**{source_column: name})
        for name, frame in zip(sources, frames, strict=True)
    ]
    stacked = pd.concat(pieces, ignore_index=True)
    stacked = stacked[[source_column, *columns]]

    notes = _type_notes(sources, frames, columns) + _spelling_notes(columns)
    return StackResult(
        frame=stacked,
        sources=tuple(sources),
        rows_per_source={name: len(frame) for name, frame in zip(sources, frames, strict=True)},
        columns_missing_per_source=missing,
        notes=tuple(notes),
    )


def _key_names(on: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(on, str):
        return on, on
    if isinstance(on, tuple) and len(on) == 2 and all(isinstance(k, str) for k in on):
        return on[0], on[1]
    raise ConfigError(
        f"on={on!r} is not a key. Give one column name, or (left column, right column)."
    )


def _require_column(table: pd.DataFrame, column: str, side: str) -> None:
    if column in table.columns:
        return
    raise DataError(
        f"Key column {column!r} is not in the {side} table. "
        f"{close_matches_text(column, table.columns)}{available_columns_text(table.columns)}"
        "Pass the right name in on=..., or (left column, right column) when they differ."
    )


def _normalise_keys(keys: pd.Series) -> pd.Series:
    """Keys as stripped text; missing or blank keys become missing (NaN)."""
    uniques = pd.unique(keys.dropna())
    mapping = {value: _key_text(value) for value in uniques}
    text = keys.map(mapping).astype(object)
    return text.where(text.notna() & (text != ""), np.nan)


def _key_text(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return np.nan
        if float(value).is_integer():
            return str(int(value))
    return str(value).strip()


def _repeated_keys(keys: pd.Series) -> list[Any]:
    present = keys.dropna()
    return list(pd.unique(present[present.duplicated()]))


def _suffixed(column: str, taken: set[Hashable]) -> str:
    candidate, i = f"{column}_right", 2
    while candidate in taken:
        candidate = f"{column}_right{i}"
        i += 1
    return candidate


def _loose(key: str) -> str:
    return key.lstrip("0").lower() or "0"


def _near_misses(left: Sequence[Any], right: Sequence[Any]) -> list[tuple[Any, Any]]:
    if not left or not right:
        return []
    by_loose: dict[str, Any] = {}
    for key in right:
        by_loose.setdefault(_loose(str(key)), key)
    return [(key, by_loose[_loose(str(key))]) for key in left if _loose(str(key)) in by_loose]


def _check_own_source(values: pd.Series, name: str, source_column: str) -> None:
    present = values.dropna()
    others = [v for v in pd.unique(present) if str(v).strip() != name]
    if others:
        raise DataError(
            f"Source {name!r} already has a column {source_column!r} with other values "
            f"(e.g. {quote_list(others, limit=_SHOWN)}). Pass another name, e.g. "
            f"stack_sources(..., source_column='source'), or rename that column first."
        )


def _type_notes(
    sources: Sequence[str], frames: Sequence[pd.DataFrame], columns: Sequence[Hashable]
) -> list[str]:
    notes = []
    for column in columns:
        kinds = {
            name: _kind(frame[column])
            for name, frame in zip(sources, frames, strict=True)
            if column in frame.columns and frame[column].notna().any()
        }
        if len(set(kinds.values())) > 1:
            detail = ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
            notes.append(
                f"Column {column!r} holds different kinds of values per source ({detail}); "
                "check units and coding before using it as a feature."
            )
    return notes


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series.dtype):
        return "true/false"
    if pd.api.types.is_numeric_dtype(series.dtype):
        return "numbers"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "dates"
    return "text"


def _spelling_notes(columns: Sequence[Hashable]) -> list[str]:
    groups: dict[str, list[str]] = {}
    for column in columns:
        groups.setdefault(" ".join(str(column).split()).lower(), []).append(str(column))
    return [
        f"Columns {quote_list(names, limit=_SHOWN)} differ only by case or spaces; if they are "
        "the same measurement, rename them to one spelling before stacking."
        for names in groups.values()
        if len(names) > 1
    ]
