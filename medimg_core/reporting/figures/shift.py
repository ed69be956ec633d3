"""Feature shift figure: standardised mean differences of a new file against development.

A pure function of :class:`~medimg_core.modelling.shift.FeatureShift` rows; it computes
nothing and calls no streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from medimg_core.errors import DataError
from medimg_core.modelling.shift import NOTABLE_SHIFT, SMALL_SHIFT, FeatureShift
from medimg_core.reporting.figures._style import NEUTRAL, PALETTE, house_figure, house_layout

__all__ = ["FLAG_COLOURS", "MAX_FEATURES", "shift_figure"]

MAX_FEATURES = 20
"""Features drawn at most (the largest shifts); the table lists them all."""

FLAG_COLOURS = {"notable": PALETTE[1], "small": PALETTE[4], "none": NEUTRAL}
"""Bar colour per flag (Okabe-Ito vermilion and orange; grey for no meaningful shift)."""

_FLAG_TEXT = {
    "notable": f"notable (|SMD| > {NOTABLE_SHIFT:g})",
    "small": f"small (|SMD| > {SMALL_SHIFT:g})",
    "none": "no meaningful shift",
}


def shift_figure(shifts: Sequence[FeatureShift], *, max_features: int = MAX_FEATURES) -> go.Figure:
    """Horizontal bars of each feature's standardised mean difference (new − development).

    Parameters
    ----------
    shifts : from :func:`~medimg_core.modelling.shift.feature_shift` (largest first).
    max_features : draw at most this many of the largest shifts.

    Returns
    -------
    go.Figure
        One bar trace per flag present ("notable", "small", "none"; x = SMD, y = feature,
        the largest shift at the top), and dashed guides at ±0.1 and solid ones at ±0.2.
        Features that cannot be compared (no value on one side) are left out; an infinite
        SMD (constant feature, different values) is drawn at the axis edge and labelled.

    Raises
    ------
    DataError
        When no feature can be drawn.
    """
    drawable = [s for s in shifts if not math.isnan(s.smd)]
    drawable = sorted(drawable, key=lambda s: -abs(s.smd))[:max_features]
    if not drawable:
        raise DataError(
            "No feature shift can be drawn: no feature has values in both the development "
            "cases and the new file."
        )
    finite = [abs(s.smd) for s in drawable if math.isfinite(s.smd)]
    edge = max([NOTABLE_SHIFT * 1.5, *(v * 1.1 for v in finite)])
    order = [s.feature for s in drawable][::-1]  # plotly draws the first category at the bottom
    fig = house_figure()
    for flag in ("notable", "small", "none"):
        rows = [s for s in drawable if s.flag == flag]
        if not rows:
            continue
        fig.add_trace(
            go.Bar(
                x=[s.smd if math.isfinite(s.smd) else math.copysign(edge, s.smd) for s in rows],
                y=[s.feature for s in rows],
                orientation="h",
                name=_FLAG_TEXT[flag],
                marker={"color": FLAG_COLOURS[flag]},
                text=[
                    f"{s.smd:+.2f}".replace("-", "−") if math.isfinite(s.smd) else "∞" for s in rows
                ],
                textposition="outside",
                customdata=[s.sentence for s in rows],
                hovertemplate="<b>%{y}</b><br>%{customdata}<extra></extra>",
            )
        )
    for x, dash in (
        (-NOTABLE_SHIFT, "solid"),
        (-SMALL_SHIFT, "dash"),
        (SMALL_SHIFT, "dash"),
        (NOTABLE_SHIFT, "solid"),
    ):
        fig.add_vline(x=x, line={"color": "#555555", "width": 1, "dash": dash})
    fig.add_vline(x=0, line={"color": "#000000", "width": 1})
    fig.update_yaxes(categoryorder="array", categoryarray=order, automargin=True)
    fig.update_xaxes(range=[-edge * 1.25, edge * 1.25], zeroline=False)
    return house_layout(
        fig,
        "Feature shift: new file vs development",
        max(260, 60 + 24 * len(drawable)),
        x_title="Standardised mean difference (new − development)",
        legend="below",
        subtitle=f"Guides at ±{SMALL_SHIFT:g} (small) and ±{NOTABLE_SHIFT:g} (notable)",
    )
