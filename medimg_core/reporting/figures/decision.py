"""The decision curve: net benefit of the model against treating everyone and treating no one.

One model curve per partition (cross-validated development, held-out test, external), each with
its own "treat all" line (it depends on the partition's prevalence), the "treat none" line at 0
and the chosen threshold marked. The y axis runs from slightly below 0 to just above the highest
prevalence, the most any strategy can reach: below 0 every strategy is worse than treating no
one, so the steep fall of "treat all" is cut off to keep the useful part readable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from medimg_core.errors import ConfigError
from medimg_core.modelling.decision import DecisionCurve
from medimg_core.reporting.figures._style import (
    PALETTE,
    PARTITION_COLOURS,
    PARTITION_DASH,
    REFERENCE,
    house_figure,
    house_layout,
    threshold_line,
)
from medimg_core.reporting.figures.evaluation import partition_label

__all__ = ["decision_figure", "y_range"]


def y_range(curves: Sequence[DecisionCurve]) -> tuple[float, float]:
    """The y axis of :func:`decision_figure`: slightly below 0 to just above the top prevalence."""
    top = max((c.prevalence for c in curves), default=0.0)
    top = max(top, float(np.nanmax([np.nanmax(c.net_benefit) for c in curves])), 0.05)
    return (-0.1 * top, 1.05 * top)


def decision_figure(
    curves: Sequence[DecisionCurve], *, positive_class: str | None = None
) -> go.Figure:
    """Net benefit over threshold probabilities, per partition, with treat all / treat none.

    Parameters
    ----------
    curves : one :class:`DecisionCurve` per partition (e.g. cross-validated and test).
    positive_class : the positive class's display name, used in the axis title.

    Returns
    -------
    go.Figure
        Per curve, in order: the model trace (named by the partition) and its "Treat all"
        trace; then one "Treat none" trace at 0. Each distinct chosen threshold is marked by
        a labelled vertical line.

    Raises
    ------
    ConfigError
        When no curve is given.
    """
    if not curves:
        raise ConfigError("decision_figure needs at least one decision curve; none was given.")
    fig = house_figure()
    for curve in curves:
        label = partition_label(curve.partition)
        colour = PARTITION_COLOURS.get(curve.partition, PALETTE[4])
        x = np.asarray(curve.thresholds, dtype=float)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=np.asarray(curve.net_benefit, dtype=float),
                mode="lines",
                name=f"Model — {label} (n = {curve.n:,})",
                legendgroup=curve.partition,
                line={
                    "color": colour,
                    "dash": PARTITION_DASH.get(curve.partition, "solid"),
                    "width": 2.5,
                },
                hovertemplate="threshold %{x:.2f}<br>net benefit %{y:.3f}"
                f"<extra>Model, {label}</extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=np.asarray(curve.treat_all, dtype=float),
                mode="lines",
                name=f"Treat all — {label} (prevalence {curve.prevalence:.2f})",
                legendgroup=curve.partition,
                line={"color": colour, "dash": "dashdot", "width": 1.2},
                opacity=0.7,
                hovertemplate="threshold %{x:.2f}<br>net benefit %{y:.3f}"
                f"<extra>Treat all, {label}</extra>",
            )
        )
    lo_x = float(min(c.thresholds[0] for c in curves))
    hi_x = float(max(c.thresholds[-1] for c in curves))
    fig.add_trace(
        go.Scatter(
            x=[lo_x, hi_x],
            y=[0.0, 0.0],
            mode="lines",
            name="Treat none",
            line={"color": REFERENCE, "dash": "dot", "width": 1.5},
            hovertemplate="net benefit 0<extra>Treat none</extra>",
        )
    )
    for t in sorted({c.chosen_threshold for c in curves if c.chosen_threshold is not None}):
        threshold_line(fig, t)
    target = positive_class or "the positive class"
    house_layout(
        fig,
        "Decision curve",
        440,
        x_title=f"Threshold probability of {target}",
        y_title="Net benefit",
        legend="below",
    )
    fig.update_layout(hovermode="x unified")
    fig.update_xaxes(range=[0, 1], tickformat=".1f", hoverformat=".2f")
    fig.update_yaxes(range=list(y_range(curves)), tickformat=".2f")
    return fig
