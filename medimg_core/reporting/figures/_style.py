"""What every medimg figure shares: template, layout, margins, legends, colours and point caps.

Conventions shared by all figures: clinical names (sensitivity, specificity, PPV, NPV,
"1 − specificity"), legends that name the partition ("Cross-validated (development)",
"Held-out test", "External") with the 95% interval when one exists, the ``plotly_white``
template, fonts of at least 12 px, and at most ``MAX_POINTS`` points per trace so a browser stays
responsive on large tables. SHAP colours follow shap: red pushes toward the explained class,
blue away from it.

A private module: the subject modules (``evaluation``, ``explanation``, ``data``) build on it.
It imports only plotly, so the Data page's figures stay light.
"""

from __future__ import annotations

import functools
from typing import Any

import plotly.graph_objects as go

__all__ = [
    "MAX_POINTS",
    "NEUTRAL",
    "PALETTE",
    "PARTITION_COLOURS",
    "PARTITION_DASH",
    "REFERENCE",
    "SHAP_BLUE",
    "SHAP_RED",
    "bottom_margin",
    "fast_figure",
    "house_figure",
    "house_layout",
    "house_layout_spec",
    "short_text",
    "threshold_line",
    "threshold_marks",
    "top_margin",
]

MAX_POINTS = 10_000
"""Most points drawn in one trace (and in one beeswarm); larger inputs are thinned."""

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
SHAP_RED = "#FF0D57"
SHAP_BLUE = "#1E88E5"
NEUTRAL = "#7F7F7F"
REFERENCE = "#9E9E9E"

PARTITION_COLOURS = {"cv": PALETTE[0], "test": PALETTE[1], "external": PALETTE[2]}
"""One colour per partition (cross-validated, test, external), the same in every figure."""
PARTITION_DASH = {"cv": "solid", "test": "dash", "external": "dot"}
"""One line style per partition, so the partitions stay apart in black and white."""


_LEGENDS: dict[str, dict[str, Any]] = {
    "below": {
        "orientation": "h",
        "x": 0,
        "xanchor": "left",
        "yref": "container",
        "y": 0,
        "yanchor": "bottom",
    },
    "inside-br": {"x": 0.99, "xanchor": "right", "y": 0.02, "yanchor": "bottom"},
    "inside-bl": {"x": 0.01, "xanchor": "left", "y": 0.02, "yanchor": "bottom"},
    "inside-tl": {"x": 0.01, "xanchor": "left", "y": 0.99, "yanchor": "top"},
}


def house_figure(data: Any = None) -> go.Figure:
    """A figure on medimg's white template.

    The template is attached the way plotly attaches its own default one: without validating
    it again (it is plotly's built-in, already valid). Validating it was most of a small
    figure's build time, and the Evaluate page's slider redraws three figures on every move.
    Everything else set on the figure is validated as usual.
    """
    fig = go.Figure(data)
    fig.layout._validate = False
    try:
        fig.layout.template = _white_template()
    finally:
        fig.layout._validate = True
    return fig


def _white_template() -> go.layout.Template:
    global _WHITE_TEMPLATE
    if _WHITE_TEMPLATE is None:
        import plotly.io as pio

        _WHITE_TEMPLATE = pio.templates["plotly_white"]
    return _WHITE_TEMPLATE


_WHITE_TEMPLATE: go.layout.Template | None = None


def house_layout(
    fig: go.Figure,
    title: str | None,
    height: int,
    *,
    x_title: str | None = None,
    y_title: str | None = None,
    legend: str | None = "below",
    subtitle: str | None = None,
) -> go.Figure:
    """The layout every medimg figure shares: white template, fixed height, tight margins.

    :func:`house_layout_spec`'s settings, with its axis settings applied to every axis of the
    figure (subplots included).
    """
    layout = house_layout_spec(
        title, height, x_title=x_title, y_title=y_title, legend=legend, subtitle=subtitle
    )
    xaxis, yaxis = layout.pop("xaxis"), layout.pop("yaxis")
    fig.update_layout(layout)
    fig.update_xaxes(xaxis)
    fig.update_yaxes(yaxis)
    return fig


def house_layout_spec(
    title: str | None,
    height: int,
    *,
    x_title: str | None = None,
    y_title: str | None = None,
    legend: str | None = "below",
    subtitle: str | None = None,
) -> dict[str, Any]:
    """:func:`house_layout` as a plain layout dict (template aside), for :func:`fast_figure`.

    The same title, fonts, margins, legend and axis settings as :func:`house_layout` gives a
    one-axis figure; a test holds the two equal.
    """
    title_spec: dict[str, Any] = {
        "text": title or "",
        "x": 0.01,
        "xanchor": "left",
        "font": {"size": 16},
    }
    if subtitle:
        title_spec["subtitle"] = {"text": subtitle, "font": {"size": 12, "color": "#555555"}}
    layout: dict[str, Any] = {
        "height": height,
        "title": title_spec,
        "font": {"size": 13},
        "margin": {
            "l": 10,
            "r": 10,
            "t": top_margin(title is not None, subtitle),
            "b": bottom_margin(legend),
        },
        "hoverlabel": {"font": {"size": 13}},
        "showlegend": legend is not None,
        "xaxis": {"automargin": True, **({"title": {"text": x_title}} if x_title else {})},
        "yaxis": {"automargin": True, **({"title": {"text": y_title}} if y_title else {})},
    }
    if legend is not None:
        layout["legend"] = {
            **_LEGENDS[legend],
            "font": {"size": 12},
            "bgcolor": "rgba(255, 255, 255, 0.8)",
        }
    return layout


def fast_figure(data: list[dict[str, Any]], layout: dict[str, Any]) -> go.Figure:
    """A figure on medimg's white template from plain trace and layout dicts, not validated.

    For figures redrawn on every move of a widget (the Evaluate page's threshold slider):
    plotly's property-by-property validation was most of their build time. The dicts come from
    fixed builders whose output tests validate in full (``go.Figure(fig.to_dict())``), so
    nothing unchecked reaches the browser. The template carries the white layout and the
    defaults of the trace types drawn only, which look the same and ship in half the bytes.
    """
    template = _slim_template(frozenset(str(trace["type"]) for trace in data))
    return go.Figure(data=data, layout={**layout, "template": template}, _validate=False)


_OFF_AXES = frozenset({"geo", "map", "mapbox", "polar", "scene", "ternary"})


@functools.lru_cache(maxsize=16)
def _slim_template(trace_types: frozenset[str]) -> dict[str, Any]:
    # Shared between figures: plotly copies a layout it is given, so none can change this one.
    full = _white_template().to_plotly_json()
    return {
        # Map, polar, 3-D and ternary defaults do nothing on the x/y axes these figures use.
        "layout": {k: v for k, v in full["layout"].items() if k not in _OFF_AXES},
        "data": {kind: full["data"][kind] for kind in sorted(trace_types) if kind in full["data"]},
    }


def threshold_marks(threshold: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shape and annotation :func:`threshold_line` adds, as plain dicts (for layouts)."""
    shape = {
        "type": "line",
        "x0": threshold,
        "x1": threshold,
        "xref": "x",
        "y0": 0,
        "y1": 1,
        "yref": "y domain",
        "line": {"color": "#333333", "dash": "dot", "width": 1.5},
    }
    annotation = {
        "text": f"threshold {threshold:.2f}",
        "x": threshold,
        "xref": "x",
        "xanchor": "center",
        "y": 1,
        "yref": "y domain",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 12},
    }
    return shape, annotation


def top_margin(has_title: bool, subtitle: str | None) -> int:
    """Pixels above the plot: room for the title and its subtitle, if any."""
    return 8 if not has_title else (78 if subtitle else 48)


def bottom_margin(legend: str | None) -> int:
    """Pixels below the plot: room for a legend placed below it."""
    return 30 if legend == "below" else 10


def threshold_line(fig: go.Figure, threshold: float) -> None:
    """Mark the decision threshold with a labelled dotted vertical line."""
    fig.add_vline(
        x=threshold,
        line={"color": "#333333", "dash": "dot", "width": 1.5},
        annotation_text=f"threshold {threshold:.2f}",
        annotation_position="top",
        annotation_font_size=12,
    )


def short_text(text: str) -> str:
    """``text`` cut at 30 characters (ending in "…") to fit an axis or a hover."""
    return text if len(text) <= 30 else text[:29] + "…"
