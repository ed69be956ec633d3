"""Figures of the data before modelling: cleaning, the flow of cases, column distributions and
class balance.

Every builder is a pure function of a ``CleaningReport``, a ``SplitSummary`` or plain pandas
objects, and calls no streamlit. The Data page imports this module, so it stays light: no
scikit-learn, scipy.stats, shap or scikit-image at import time (tests/unit/ui/test_imports.py).
The layout and colours it shares with the other figures are in
:mod:`medimg_core.reporting.figures._style`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from medimg_core._messages import format_value
from medimg_core.errors import DataError
from medimg_core.reporting.figures._style import (
    NEUTRAL,
    PALETTE,
    bottom_margin,
    house_figure,
    house_layout,
    short_text,
    top_margin,
)

if TYPE_CHECKING:
    from medimg_core.modelling.validation import SplitSummary
    from medimg_core.tables.cleaning import CleaningReport

__all__ = [
    "class_balance_figure",
    "cleaning_figure",
    "distribution_figure",
    "flow_counts",
    "flow_figure",
]

_FLOW_PAD = 18


def cleaning_figure(report: CleaningReport) -> go.Figure:
    """Rows removed by each cleaning rule, in the order the rules ran.

    Parameters
    ----------
    report : the cleaning report (``counts``, ``n_input`` and ``n_kept`` are used).

    Returns
    -------
    go.Figure
        One horizontal bar trace, one bar per rule (rules that removed nothing included, so the
        reader sees they ran).
    """
    rules = list(report.counts)
    counts = [int(report.counts[r]) for r in rules]
    n_in = max(int(report.n_input), 1)
    fig = house_figure(
        go.Bar(
            x=counts[::-1],
            y=[r[:1].upper() + r[1:] for r in rules][::-1],
            orientation="h",
            marker={"color": PALETTE[1]},
            text=[f"{c:,} ({c / n_in:.1%})" for c in counts[::-1]],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:,} rows removed<extra></extra>",
            name="Rows removed",
        )
    )
    house_layout(
        fig,
        f"Rows removed by rule ({report.n_input:,} in, {report.n_kept:,} kept)",
        max(300, min(420, 120 + 36 * len(rules))),
        x_title="Rows removed",
        legend=None,
    )
    fig.update_yaxes(type="category")
    # Head-room for the "n (share)" labels outside the longest bar.
    # Whole rows only: at least one row per tick, so small counts never show "0, 1, 1".
    most = max(counts, default=0)
    fig.update_xaxes(range=[0, max(most, 1) * 1.3], tickformat=",d")
    if most < 5:
        fig.update_xaxes(tick0=0, dtick=1)
    return fig


def flow_counts(report: CleaningReport, split: SplitSummary | None = None) -> dict[str, int]:
    """The stage counts :func:`flow_figure` draws, from a cleaning report and a split.

    Parameters
    ----------
    report : the cleaning report.
    split : how the kept rows were split; without it the flow ends at the kept rows.

    Returns
    -------
    dict
        ``{"rows in": n, <rule>: removed, ..., "development": n_dev, "test": n_test}``.
    """
    counts: dict[str, int] = {"rows in": int(report.n_input)}
    counts.update({str(rule): int(n) for rule, n in report.counts.items()})
    if split is not None:
        counts["development"] = int(split.n_dev)
        counts["test"] = int(split.n_test)
    return counts


def flow_figure(counts: Mapping[str, int]) -> go.Figure:
    """Flow of cases: rows in → removed by each cleaning rule → development → test (CLAIM 2).

    Parameters
    ----------
    counts : stage name → rows, in order. Three names are understood (case-insensitive):
        "rows in", "development" and "test" (or "held-out test"); every other name is a
        cleaning rule and its count the rows that rule removed. "rows in" defaults to the sum
        of the rest. :func:`flow_counts` builds this mapping from the result objects.

    Returns
    -------
    go.Figure
        One Sankey trace. Rules that removed no rows are listed in the subtitle.

    Raises
    ------
    DataError
        For negative counts, or when rows in − removed ≠ development + test.
    """
    rows_in: int | None = None
    dev: int | None = None
    test: int | None = None
    removed: dict[str, int] = {}
    for name, value in counts.items():
        n = int(value)
        if n < 0:
            raise DataError(f"Flow count for {name!r} is negative ({n}); pass numbers of rows.")
        key = str(name).strip().lower()
        if key in {"rows in", "input"}:
            rows_in = n
        elif key in {"development", "dev"}:
            dev = n
        elif key in {"test", "held-out test"}:
            test = n
        else:
            removed[str(name)] = n
    n_removed = sum(removed.values())
    split_total = (dev or 0) + (test or 0)
    kept_known = dev is not None or test is not None
    if rows_in is None:
        rows_in = n_removed + split_total
    kept = rows_in - n_removed
    if kept < 0 or (kept_known and kept != split_total):
        raise DataError(
            f"Flow counts do not add up: {rows_in:,} rows in − {n_removed:,} removed = {kept:,}, "
            f"but development + test = {split_total:,}. Pass counts from the same cleaning "
            "report and split."
        )

    unused = [rule for rule, n in removed.items() if n == 0]
    # Wrapped, not cut: plotly draws a subtitle on one line, clipped at the figure's edge (a
    # third of a 1,024 px window shows about 60 characters).
    subtitle = (
        "<br>".join(textwrap.wrap(f"No rows removed by: {', '.join(unused)}", 55))
        if unused
        else None
    )
    extra_lines = subtitle.count("<br>") if subtitle else 0
    height = 380 + 16 * extra_lines
    # Explicit node positions keep the removals in the column beside "Kept": left to itself,
    # d3-sankey pushes every sink to the right edge where thin removal nodes crowd the
    # development/test labels. Heights follow d3's rule (the fullest column fills the plot).
    shown_removed = {rule: n for rule, n in removed.items() if n > 0}
    plot_px = height - top_margin(True, subtitle) - 16 * extra_lines - bottom_margin(None)
    pad = _FLOW_PAD / plot_px
    right = [
        (name, part, colour)
        for name, part, colour in (("Development", dev, PALETTE[0]), ("Test", test, PALETTE[3]))
        if part
    ]
    columns = [[rows_in], [*shown_removed.values(), kept], [part for _, part, _ in right]]
    scale = min((1 - (len(col) - 1) * pad) / sum(col) for col in columns if col and sum(col) > 0)
    labels = [f"Rows in<br>{rows_in:,}"]
    colours = [NEUTRAL]
    node_x = [0.001]
    node_y = [0.5]
    sources: list[int] = []
    targets: list[int] = []
    values: list[int] = []
    link_colours: list[str] = []
    cursor = 0.0
    for rule, n in shown_removed.items():
        labels.append(f"Removed: {rule} ({n:,})")
        colours.append(PALETTE[1])
        node_x.append(0.5)
        node_y.append(cursor + n * scale / 2)
        cursor += n * scale + pad
        sources.append(0)
        targets.append(len(labels) - 1)
        values.append(n)
        link_colours.append("rgba(213, 94, 0, 0.25)")
    labels.append(f"Kept<br>{kept:,}")
    colours.append(PALETTE[2])
    node_x.append(0.5)
    node_y.append(1 - kept * scale / 2)
    kept_node = len(labels) - 1
    if kept:
        sources.append(0)
        targets.append(kept_node)
        values.append(kept)
        link_colours.append("rgba(0, 158, 115, 0.25)")
    # Bottom-aligned with "Kept", development above test, links in the same order (no crossing).
    cursor = 1.0 - sum(part * scale for _, part, _ in right) - (len(right) - 1) * pad
    for name, part, colour in right:
        labels.append(f"{name}<br>{part:,}")
        colours.append(colour)
        node_x.append(0.999)
        node_y.append(cursor + part * scale / 2)
        cursor += part * scale + pad
        sources.append(kept_node)
        targets.append(len(labels) - 1)
        values.append(part)
        link_colours.append("rgba(0, 114, 178, 0.2)")
    fig = house_figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": labels,
                "color": colours,
                "x": node_x,
                "y": node_y,
                "pad": _FLOW_PAD,
                "thickness": 16,
                "hovertemplate": "%{label}<extra></extra>",
            },
            link={
                "source": sources,
                "target": targets,
                "value": values,
                "color": link_colours,
                "hovertemplate": "%{value:,} rows<extra></extra>",
            },
            # Dark labels with a white halo: the dashboard theme's grey is unreadable on the
            # coloured nodes and on the flows the right-hand labels sit over.
            textfont={"size": 12, "color": "#1A1A1A", "shadow": "0 0 3px white"},
        )
    )
    house_layout(fig, "Flow of cases", height, subtitle=subtitle, legend=None)
    if extra_lines:
        fig.update_layout(margin_t=top_margin(True, subtitle) + 16 * extra_lines)
    return fig


def distribution_figure(series: pd.Series) -> go.Figure:
    """A compact (120 px) distribution for a profile table row.

    Parameters
    ----------
    series : one column. Numbers with more than 10 distinct values (and dates) give a
        histogram; anything else a bar chart of the 10 most frequent values (the rest summed
        into one grey "other" bar).

    Returns
    -------
    go.Figure
        One bar trace (histograms are binned here, so the figure carries at most a few dozen
        points whatever the column's length); missing values are counted in a corner note.
    """
    s = pd.Series(series)
    n_missing = int(s.isna().sum())
    values = s.dropna()
    fig = house_figure()
    is_bool = pd.api.types.is_bool_dtype(values.dtype)
    is_date = pd.api.types.is_datetime64_any_dtype(values.dtype)
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not is_bool
    if len(values) == 0:
        fig.add_annotation(
            text="all values missing", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
    elif (numeric and values.nunique() > 10) or is_date:
        fig.add_trace(_histogram_trace(values, is_date))
    else:
        fig.add_trace(_top_values_trace(values, numeric))
        # Values such as 1-10 scores are bar names here (with an "other" bar), not positions.
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=fig.data[0].x)
    if n_missing:
        fig.add_annotation(
            text=f"{n_missing:,} missing",
            showarrow=False,
            x=1,
            y=1,
            xref="paper",
            yref="paper",
            xanchor="right",
            yanchor="top",
            font={"size": 12, "color": PALETTE[1]},
        )
    house_layout(fig, None, 120, legend=None)
    fig.update_layout(margin={"l": 4, "r": 4, "t": 4, "b": 4}, bargap=0.05)
    fig.update_yaxes(visible=False)
    fig.update_xaxes(tickfont={"size": 12}, nticks=5)
    return fig


def class_balance_figure(labels: pd.Series) -> go.Figure:
    """Cases per class, with counts and percentages on the bars.

    Parameters
    ----------
    labels : the label column (missing labels are shown as their own grey bar).

    Returns
    -------
    go.Figure
        One bar trace, most frequent class first.
    """
    s = pd.Series(labels)
    counts = s.value_counts(dropna=False)
    total = max(int(counts.sum()), 1)
    names = ["(missing)" if pd.isna(k) else str(k) for k in counts.index]
    values = [int(v) for v in counts.to_numpy()]
    colours = [
        NEUTRAL if n == "(missing)" else PALETTE[i % len(PALETTE)] for i, n in enumerate(names)
    ]
    fig = house_figure(
        go.Bar(
            x=names,
            y=values,
            marker={"color": colours},
            text=[f"{v:,} ({v / total:.1%})" for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:,} cases<extra></extra>",
            name="Cases",
        )
    )
    house_layout(
        fig, f"Class balance ({total:,} cases)", 340, x_title="Class", y_title="Cases", legend=None
    )
    # Class labels such as 0/1 or "2"/"4" are names in this order, never positions on a number line.
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=names)
    fig.update_yaxes(tickformat=",d", range=[0, max(values, default=1) * 1.15])
    return fig


def _histogram_trace(values: pd.Series, is_date: bool) -> go.Bar:
    raw = values.to_numpy()
    numeric = raw.astype("datetime64[ns]").astype(np.int64) if is_date else raw.astype(float)
    n_bins = min(30, max(1, len(np.histogram_bin_edges(numeric, bins="auto")) - 1))
    counts, edges = np.histogram(numeric, bins=n_bins)
    centres = (edges[:-1] + edges[1:]) / 2
    widths = np.diff(edges)
    lo: Any
    hi: Any
    if is_date:
        x: Any = pd.to_datetime(centres.astype(np.int64))
        lo = pd.to_datetime(edges[:-1].astype(np.int64)).strftime("%Y-%m-%d")
        hi = pd.to_datetime(edges[1:].astype(np.int64)).strftime("%Y-%m-%d")
        widths = widths / 1e6  # plotly measures date bar widths in milliseconds
    else:
        x = centres
        lo = [_format_value(v) for v in edges[:-1]]
        hi = [_format_value(v) for v in edges[1:]]
    return go.Bar(
        x=x,
        y=counts,
        width=widths,
        marker={"color": PALETTE[5]},
        customdata=np.column_stack([lo, hi]),
        hovertemplate="%{customdata[0]} – %{customdata[1]}: %{y:,} rows<extra></extra>",
        name="Rows",
    )


def _top_values_trace(values: pd.Series, numeric: bool) -> go.Bar:
    counts = values.value_counts()
    if numeric:
        counts = counts.sort_index()
    top = counts.iloc[:10]
    names = [_format_value(v) if numeric else str(v)[:20] for v in top.index]
    heights = [int(v) for v in top.to_numpy()]
    colours = [PALETTE[5]] * len(names)
    if len(counts) > 10:
        names.append(f"other ({len(counts) - 10})")
        heights.append(int(counts.iloc[10:].sum()))
        colours.append(NEUTRAL)
    return go.Bar(
        x=names,
        y=heights,
        marker={"color": colours},
        hovertemplate="%{x}: %{y:,} rows<extra></extra>",
        name="Rows",
    )


def _format_value(v: Any) -> str:
    """:func:`medimg_core._messages.format_value`, cut at 30 characters to fit an axis or a hover."""
    return short_text(format_value(v))
