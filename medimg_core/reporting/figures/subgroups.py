"""Forest plot of a metric per subgroup or per held-out site, with 95% intervals.

A pure function of :class:`~medimg_core.modelling.subgroups.GroupMetrics` rows: one point with
its interval per row (top to bottom in the order given), the number of cases in every row's
label, and the overall or pooled figure as a diamond with a dashed reference line. Groups whose
metric does not exist (e.g. ROC AUC of a group with one class) keep their row, marked "n/a".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from medimg_core.errors import ConfigError
from medimg_core.modelling.evaluation import METRIC_LABELS, MetricValue, metric_label
from medimg_core.modelling.subgroups import GroupMetrics
from medimg_core.reporting.figures._style import PALETTE, REFERENCE, house_figure, house_layout
from medimg_core.reporting.figures.evaluation import partition_label

__all__ = ["forest_figure", "forest_labels"]

_PARTITION_SHORT = {"cv": "CV", "test": "test", "held-out site": "held out"}
_SYMBOLS = ("circle", "square", "triangle-up")


def forest_labels(rows: Sequence[GroupMetrics], *, with_column: bool | None = None) -> list[str]:
    """The row labels of :func:`forest_figure`: group and number of cases ("F (n=125)").

    The column is named when the rows cover several columns ("sex: F (n=125)"), and the
    partition when they cover several partitions ("F (n=125, CV)").
    """
    columns = {r.column for r in rows}
    partitions = {r.partition for r in rows}
    named = len(columns) > 1 if with_column is None else with_column
    labels = []
    for r in rows:
        head = f"{r.column}: {r.group}" if named else r.group
        part = f", {_PARTITION_SHORT.get(r.partition, r.partition)}" if len(partitions) > 1 else ""
        labels.append(f"{head} (n={r.n}{part})")
    return labels


def forest_figure(
    rows: Sequence[GroupMetrics],
    metric: str = "roc_auc",
    *,
    reference: MetricValue | None = None,
    reference_label: str = "Pooled",
    positive: str | None = None,
    title: str | None = None,
) -> go.Figure:
    """A forest plot: ``metric`` with its 95% interval for every group or site.

    Parameters
    ----------
    rows : group metrics (from ``subgroup_metrics`` or ``SiteValidation.per_site``).
    metric : a metric key ("roc_auc", "sensitivity", ...).
    reference : the overall (or pooled) value, drawn as a diamond row at the bottom and a dashed
        vertical line.
    reference_label : that row's label ("Pooled", "All cases").
    positive : the positive class's display name, so sensitivity and PPV name their class.
    title : the figure title; default "<metric> by group".

    Returns
    -------
    go.Figure
        One marker trace per partition (x = values, y = row labels, error bars to the interval
        bounds), plus a "reference" trace when ``reference`` is given. Rows without a value
        stay on the axis, labelled "n/a".

    Raises
    ------
    ConfigError
        No rows, or an unknown metric.
    """
    rows = list(rows)
    if not rows:
        raise ConfigError(
            "There are no groups to plot; mark a site or subgroup column before training."
        )
    if metric not in METRIC_LABELS:
        raise ConfigError(f"Unknown metric {metric!r}; choose one of {', '.join(METRIC_LABELS)}.")
    name = metric_label(metric, positive)
    labels = forest_labels(rows)
    labels = [
        label
        if np.isfinite(r.metrics.get(metric, MetricValue(np.nan, (np.nan, np.nan))).value)
        else f"{label} n/a"
        for r, label in zip(rows, labels, strict=True)
    ]
    fig = house_figure()
    partitions = list(dict.fromkeys(r.partition for r in rows))
    for k, partition in enumerate(partitions):
        picked = [i for i, r in enumerate(rows) if r.partition == partition]
        values = [rows[i].metrics.get(metric) for i in picked]
        x = np.array([np.nan if v is None else v.value for v in values], dtype=float)
        lo = np.array([np.nan if v is None else v.ci95[0] for v in values], dtype=float)
        hi = np.array([np.nan if v is None else v.ci95[1] for v in values], dtype=float)
        colour = PALETTE[k % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[labels[i] for i in picked],
                mode="markers",
                name=partition_label(partition),
                marker={"color": colour, "size": 10, "symbol": _SYMBOLS[k % len(_SYMBOLS)]},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": np.nan_to_num(hi - x),
                    "arrayminus": np.nan_to_num(x - lo),
                    "color": colour,
                    "thickness": 2,
                    "width": 6,
                },
                customdata=np.column_stack([lo, hi, [rows[i].n_positive for i in picked]]),
                hovertemplate=(
                    f"%{{y}}<br>{name} %{{x:.3f}} (95% CI %{{customdata[0]:.3f}}–"
                    "%{customdata[1]:.3f})<br>%{customdata[2]} positive cases<extra></extra>"
                ),
            )
        )
    order = list(labels)
    if reference is not None and np.isfinite(reference.value):
        ref_label = (
            f"{reference_label} (n={_total(rows)})" if len(partitions) == 1 else reference_label
        )
        order.append(ref_label)
        fig.add_trace(
            go.Scatter(
                x=[reference.value],
                y=[ref_label],
                mode="markers",
                name=reference_label,
                marker={"color": "#000000", "size": 16, "symbol": "diamond"},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": [np.nan_to_num(reference.ci95[1] - reference.value)],
                    "arrayminus": [np.nan_to_num(reference.value - reference.ci95[0])],
                    "color": "#000000",
                    "thickness": 2,
                    "width": 8,
                },
                hovertemplate=f"%{{y}}<br>{name} %{{x:.3f}}<extra></extra>",
            )
        )
        fig.add_vline(x=reference.value, line={"color": REFERENCE, "dash": "dash", "width": 1})
    house_layout(
        fig,
        title if title is not None else f"{name} by group",
        max(300, min(900, 140 + 32 * len(order))),
        x_title=f"{name} (95% CI)",
        legend="below",
    )
    fig.update_yaxes(categoryorder="array", categoryarray=order, autorange="reversed")
    return fig


def _total(rows: Sequence[GroupMetrics]) -> int:
    return int(sum(r.n for r in rows))
