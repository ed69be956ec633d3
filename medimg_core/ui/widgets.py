"""Small render helpers shared by the pages: paged tables, downloads, notes."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import streamlit as st

from medimg_core.access import Action, Actor, allowed, roles_allowed
from medimg_core.privacy import to_safe_csv

__all__ = [
    "download_csv",
    "download_json",
    "download_parquet",
    "notes",
    "paged_dataframe",
    "progress_bar",
    "ranges_editor",
    "refusal_note",
    "without_columns",
]


def refusal_note(actor: Actor, action: Action) -> str | None:
    """The caption under a disabled control: who may do ``action`` and who the user is; None
    when ``actor`` may do it (in their current project).

    Only a hint: the core refuses the action whatever the page shows.
    """
    if allowed(actor, action):
        return None
    roles = [f"{r.value}s" for r in roles_allowed(action)]
    who = roles[0] if len(roles) == 1 else ", ".join(roles[:-1]) + " and " + roles[-1]
    if actor.role in roles_allowed(action):
        return (
            f"Choose one of your projects to {action.description}; you are signed in as "
            f"{actor.describe()}."
        )
    return f"Only {who} can {action.description}; you are signed in as {actor.describe()}."


_ROW_HEIGHT = 35
_HEADER_HEIGHT = 38


def without_columns(
    df: pd.DataFrame, columns: Collection[Hashable], *, show: bool = False
) -> pd.DataFrame:
    """``df`` without ``columns`` (those present), unless ``show`` is true.

    Parameters
    ----------
    df : a table.
    columns : the columns to hide (for example identifying ones).
    show : keep them after all (the user asked to see them).

    Returns
    -------
    pandas.DataFrame
    """
    if show:
        return df
    present = [c for c in df.columns if c in set(columns)]
    return df.drop(columns=present) if present else df


def paged_dataframe(
    df: pd.DataFrame,
    key: str,
    *,
    page_size: int = 50,
    height: int | None = None,
    column_config: dict[str, Any] | None = None,
    hide_index: bool = False,
) -> None:
    """Show a table one page at a time, with a page picker when it has more than one page.

    Parameters
    ----------
    df : the table.
    key : a stable widget key prefix (the page picker is ``f"{key}_page"``).
    page_size : rows per page.
    height : table height in pixels; defaults to the height of one full page, at most 420.
    column_config : passed to ``st.dataframe``.
    hide_index : hide the index (keep it when it is the row number the user refers to).
    """
    n = len(df)
    n_pages = max(1, math.ceil(n / page_size))
    page = 1
    if n_pages > 1:
        left, right = st.columns([1, 4], vertical_alignment="center")
        page = int(
            left.number_input(
                "Page",
                min_value=1,
                max_value=n_pages,
                value=1,
                step=1,
                key=f"{key}_page",
                label_visibility="collapsed",
            )
        )
        start = (page - 1) * page_size
        right.caption(
            f"Page {page} of {n_pages} · rows {start + 1:,}–{min(n, start + page_size):,} of {n:,}"
        )
    start = (page - 1) * page_size
    shown = df.iloc[start : start + page_size]
    if height is None:
        height = min(420, _HEADER_HEIGHT + _ROW_HEIGHT * max(len(shown), 1))
    st.dataframe(
        shown,
        height=height,
        width="stretch",
        column_config=column_config,
        hide_index=hide_index,
        key=key,
    )


def download_csv(df: pd.DataFrame, file_name: str, label: str, key: str, **kwargs: Any) -> None:
    """A download button for ``df`` as a spreadsheet-safe UTF-8 CSV.

    Cells that a spreadsheet would run as formulas (starting with ``= + - @``) are defused by
    :func:`medimg_core.privacy.to_safe_csv`.

    Parameters
    ----------
    df : the table.
    file_name : the name the browser saves it under.
    label : the button's text.
    key : a stable widget key.
    **kwargs : passed to ``st.download_button`` (``help``, ``type``, ...).
    """
    st.download_button(
        label,
        data=to_safe_csv(df),
        file_name=file_name,
        mime="text/csv",
        key=key,
        icon=":material/download:",
        **kwargs,
    )


def download_parquet(df: pd.DataFrame, file_name: str, label: str, key: str, **kwargs: Any) -> None:
    """A download button for ``df`` as Parquet (types preserved).

    Parameters
    ----------
    df, file_name, label, key, **kwargs : as for :func:`download_csv`.
    """
    buffer = io.BytesIO()
    # Column names must be text in Parquet; the index is kept so rows can be traced back.
    df.set_axis([str(c) for c in df.columns], axis=1).to_parquet(buffer)
    st.download_button(
        label,
        data=buffer.getvalue(),
        file_name=file_name,
        mime="application/vnd.apache.parquet",
        key=key,
        icon=":material/download:",
        **kwargs,
    )


def download_json(
    value: dict[str, Any], file_name: str, label: str, key: str, **kwargs: Any
) -> None:
    """A download button for a JSON document.

    Parameters
    ----------
    value : a JSON-ready dictionary (values that are not are written as text).
    file_name, label, key, **kwargs : as for :func:`download_csv`.
    """
    st.download_button(
        label,
        data=json.dumps(value, indent=2, default=str).encode("utf-8"),
        file_name=file_name,
        mime="application/json",
        key=key,
        icon=":material/download:",
        **kwargs,
    )


def notes(items: Iterable[str], *, title: str | None = None) -> None:
    """Short remarks as a compact bulleted caption (nothing when there are none).

    Parameters
    ----------
    items : the remarks, one sentence or two each.
    title : an optional lead-in shown before the list.
    """
    lines = [str(item) for item in items if str(item).strip()]
    if not lines:
        return
    text = "\n".join(f"- {_escape(line)}" for line in lines)
    st.caption(f"{title}\n\n{text}" if title else text)


def _escape(text: str) -> str:
    """Keep user-provided text (file and column names) from being read as Markdown."""
    for char in ("\\", "*", "_", "`", "[", "]", "$", "<", ">", "#", "|", "~"):
        text = text.replace(char, "\\" + char)
    return text


def ranges_editor(
    ranges: dict[str, tuple[float | None, float | None]],
    numeric_columns: list[str],
    key: str,
) -> dict[str, tuple[float | None, float | None]]:
    """An editable table of plausible ranges (column, min, max); returns the ranges entered.

    The editor starts from ``ranges`` when it first appears and then keeps the user's edits
    (Streamlit applies edits on top of the table it is given, so that table must not change
    while the editor is on screen).

    Parameters
    ----------
    ranges : the ranges to start from.
    numeric_columns : the columns a range may be set on.
    key : a stable widget key (the starting table is kept under ``f"{key}_base"``).

    Returns
    -------
    dict
        column -> (min, max), either bound None when left empty; rows without a column or
        without any bound are ignored. Bounds are not checked here: the cleaning reports a
        minimum above its maximum.
    """
    base_key = f"{key}_base"
    if key not in st.session_state or base_key not in st.session_state:
        st.session_state[base_key] = pd.DataFrame(
            {
                "column": pd.Series(list(ranges), dtype="object"),
                "min": pd.Series([lo for lo, _ in ranges.values()], dtype="float64"),
                "max": pd.Series([hi for _, hi in ranges.values()], dtype="float64"),
            }
        )
    edited = st.data_editor(
        st.session_state[base_key],
        key=key,
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config={
            "column": st.column_config.SelectboxColumn(
                "Column", options=numeric_columns, required=True
            ),
            "min": st.column_config.NumberColumn("Min", help="Lowest plausible value (inclusive)."),
            "max": st.column_config.NumberColumn(
                "Max", help="Highest plausible value (inclusive)."
            ),
        },
    )
    result: dict[str, tuple[float | None, float | None]] = {}
    for row in edited.itertuples(index=False):
        column, low, high = row[0], row[1], row[2]
        if column is None or pd.isna(column) or str(column) not in numeric_columns:
            continue
        low_value = None if low is None or pd.isna(low) else float(low)
        high_value = None if high is None or pd.isna(high) else float(high)
        if low_value is None and high_value is None:
            continue
        result[str(column)] = (low_value, high_value)
    return result


@contextmanager
def progress_bar(start: str) -> Iterator[Callable[[float, str], None]]:
    """A progress bar fed by the core's ``progress(fraction, message)``; removed at the end."""
    bar = st.progress(0.0, text=start)

    def report(fraction: float, message: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=message)

    try:
        yield report
    finally:
        bar.empty()
