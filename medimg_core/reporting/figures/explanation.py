"""SHAP figures: global importance, beeswarm, one case's waterfall and the dependence plot.

Every builder is a pure function of ``Explanation`` or ``CaseExplanation``; none of them computes
SHAP values or calls streamlit. Contributions are coloured as shap colours them: red pushes toward
the explained class, blue away from it. The layout and colours they share with the other figures
are in :mod:`medimg_core.reporting.figures._style`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from medimg_core._messages import format_value
from medimg_core.errors import ConfigError
from medimg_core.reporting.figures._style import (
    MAX_POINTS,
    NEUTRAL,
    PALETTE,
    REFERENCE,
    SHAP_BLUE,
    SHAP_RED,
    fast_figure,
    house_figure,
    house_layout,
    house_layout_spec,
    short_text,
    threshold_marks,
)

if TYPE_CHECKING:
    from medimg_core.modelling.explain import CaseExplanation, Explanation

__all__ = [
    "beeswarm_figure",
    "dependence_figure",
    "importance_figure",
    "waterfall_figure",
]


def importance_figure(explanation: Explanation, *, max_display: int = 15) -> go.Figure:
    """Global importance: mean |SHAP value| per original feature, largest at the top.

    Parameters
    ----------
    explanation : SHAP values of the cases to summarise.
    max_display : features shown. The rest are named in the title, not drawn as a summed
        bar: with many features (image studies have dozens) their sum would dwarf every bar
        that is shown.

    Returns
    -------
    go.Figure
        One horizontal bar trace.
    """
    _check_max_display(max_display)
    imp = explanation.global_importance()
    shown = imp.iloc[:max_display]
    labels = [str(f) for f in shown.index]
    values = [float(v) for v in shown.to_numpy()]
    rest = imp.iloc[max_display:]
    output = _output_name(explanation.output_space, explanation.class_name)
    fig = house_figure(
        go.Bar(
            x=values[::-1],
            y=labels[::-1],
            orientation="h",
            marker={"color": PALETTE[0]},
            text=[f"{v:.3f}" for v in values[::-1]],
            textposition="outside",
            cliponaxis=False,
            hovertemplate=f"%{{y}}<br>mean |SHAP| %{{x:.3f}} ({output})<extra></extra>",
            name="Mean |SHAP value|",
        )
    )
    title = "Feature importance"
    if len(rest):
        title += f" (top {len(labels)} of {len(imp)} features)"
    house_layout(
        fig,
        title,
        max(380, min(450, 100 + 24 * len(labels))),
        x_title=f"Mean |SHAP value| ({output})",
        legend=None,
    )
    fig.update_yaxes(type="category", ticklabelstandoff=4)
    # Room right of the longest bar for its "outside" value label (about 7 px per character on
    # a plot at least ~300 px wide), so the label is never cut at the figure's edge.
    share = min(0.3, (7 * max((len(f"{v:.3f}") for v in values), default=5) + 10) / 300)
    fig.update_xaxes(range=[0, max(max(values, default=0.0), 1e-9) / (1 - share)])
    return fig


def beeswarm_figure(explanation: Explanation, *, max_display: int = 15) -> go.Figure:
    """SHAP beeswarm: one row per feature, one point per case, coloured by the feature's value.

    Parameters
    ----------
    explanation : SHAP values of the cases to show.
    max_display : rows (the features with the largest mean |SHAP value|).

    Returns
    -------
    go.Figure
        One trace of coloured points (blue = low value within that feature, red = high), plus
        a grey trace for cases whose value is missing or not a number, when there are any. At
        most ``MAX_POINTS`` points in total: cases are sampled deterministically beyond that.
    """
    _check_max_display(max_display)
    features = [str(f) for f in explanation.global_importance().index[:max_display]]
    n_rows = len(features)
    n_cases = explanation.values.shape[0]
    keep = _sample_index(n_cases, max(1, MAX_POINTS // max(n_rows, 1)))
    column_of = {str(f): i for i, f in enumerate(explanation.feature_names)}
    rng = np.random.default_rng(0)

    xs, ys, colours, values_text, names = [], [], [], [], []
    for rank, feature in enumerate(features):
        shap_values = explanation.values[keep, column_of[feature]].astype(float)
        raw = explanation.data[feature].iloc[keep]
        numeric = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
        ranks = pd.Series(numeric).rank(method="average").to_numpy()
        n_valid = int(np.isfinite(numeric).sum())
        colour = (ranks - 1) / max(n_valid - 1, 1) if n_valid > 1 else np.full(len(ranks), 0.5)
        row = n_rows - 1 - rank
        xs.append(shap_values)
        ys.append(row + _swarm_offsets(shap_values, rng))
        colours.append(colour)
        values_text.append(np.array([_format_value(v) for v in raw], dtype=object))
        names.append(np.full(len(keep), feature, dtype=object))

    x = np.concatenate(xs) if xs else np.array([])
    y = np.concatenate(ys) if ys else np.array([])
    c = np.concatenate(colours) if colours else np.array([])
    custom = np.column_stack(
        [np.concatenate(names) if names else [], np.concatenate(values_text) if values_text else []]
    )
    has_value = np.isfinite(c)
    output = _output_name(explanation.output_space, explanation.class_name)
    hover = f"%{{customdata[0]}} = %{{customdata[1]}}<br>SHAP %{{x:.3f}} ({output})<extra></extra>"
    fig = house_figure(
        go.Scattergl(
            x=x[has_value],
            y=y[has_value],
            mode="markers",
            name="Cases",
            marker={
                "color": c[has_value],
                "colorscale": [[0, SHAP_BLUE], [1, SHAP_RED]],
                "cmin": 0,
                "cmax": 1,
                "size": 5,
                "opacity": 0.8,
                "colorbar": {
                    "title": {"text": "Feature value"},
                    "tickvals": [0, 1],
                    "ticktext": ["Low", "High"],
                    "thickness": 12,
                    "len": 0.6,
                },
            },
            customdata=custom[has_value],
            hovertemplate=hover,
            showlegend=False,
        )
    )
    if (~has_value).any():
        fig.add_trace(
            go.Scattergl(
                x=x[~has_value],
                y=y[~has_value],
                mode="markers",
                name="Value missing or not a number",
                marker={"color": NEUTRAL, "size": 5, "opacity": 0.6},
                customdata=custom[~has_value],
                hovertemplate=hover,
            )
        )
    fig.add_vline(x=0, line={"color": REFERENCE, "width": 1})
    house_layout(
        fig,
        "Effect of each feature on each case",
        450,
        x_title=f"SHAP value (contribution to {output})",
        legend="below",
    )
    fig.update_yaxes(
        tickvals=list(range(n_rows)),
        ticktext=features[::-1],
        range=[-0.6, n_rows - 0.4],
        showgrid=False,
        zeroline=False,
    )
    return fig


def waterfall_figure(
    case: CaseExplanation, *, max_display: int = 12, threshold: float | None = None
) -> go.Figure:
    """One case's explanation in the shap waterfall style.

    From the base value (the average model output) at the bottom, each feature's contribution
    is added, largest |contribution| at the top, ending at this case's model output. Features
    beyond ``max_display`` are collapsed into one "other N features" step.

    Parameters
    ----------
    case : the case's contributions (``Explanation.case(i)``).
    max_display : features shown individually.
    threshold : decision threshold; drawn as a vertical line when the output is a probability.

    Returns
    -------
    go.Figure
        One waterfall trace: base value (absolute), contributions (relative), model output
        (total). Red steps push toward ``case.class_name``, blue steps away. The x-axis title,
        the hover and the legend name give the unit ("log-odds of malignant"); for permutation
        estimates the hover gives each contribution's standard error and the subtitle the
        largest one.
    """
    _check_max_display(max_display)
    order = case.values.abs().sort_values(ascending=False, kind="stable").index
    shown = list(order[:max_display])
    rest = list(order[max_display:])
    labels = [f"{f} = {_format_value(case.data.get(f, np.nan))}" for f in shown]
    contributions = [float(case.values[f]) for f in shown]
    errors = case.standard_errors
    step_errors = [float(errors[f]) for f in shown] if errors is not None else []
    if rest:
        labels.append(f"other {len(rest)} features")
        contributions.append(float(case.values[rest].sum()))
        if errors is not None:
            # An upper bound: the estimates of one case's columns are not independent.
            step_errors.append(float(errors[rest].sum()))
    output = case.base_value + float(np.sum(contributions))
    output_name = _output_name(case.output_space, case.class_name)

    # Bottom to top: base value, then the smallest shown step up to the largest, then the output.
    y = ["Base value (average case)", *labels[::-1], "Model output (this case)"]
    x = [case.base_value, *contributions[::-1], output]
    measure = ["absolute", *(["relative"] * len(contributions)), "total"]
    text = [_plain(case.base_value), *[_signed(v) for v in contributions[::-1]], _plain(output)]
    hover_unit = case.output_space
    hover = [f"{t} {hover_unit}" for t in text]
    if errors is not None:
        for k, se in enumerate(step_errors[::-1], start=1):
            hover[k] += f" ± {se:.3f} (standard error of the estimate)"
    # Leave room beside the extreme bars so the "outside" value labels are neither clipped nor
    # drawn against the feature names: a label takes about 7 px per character, and the plot
    # is at least ~300 px wide where the pages draw it.
    path = case.base_value + np.cumsum([0.0, *contributions[::-1]])
    lo, hi = min(0.0, float(path.min())), max(0.0, float(path.max()))
    if threshold is not None and case.output_space == "probability":
        lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
    share = min(0.3, (7 * max(len(t) for t in text) + 14) / 300)
    pad = share / (1 - 2 * share) * (hi - lo) if hi > lo else 1.0
    # Built from plain dicts without plotly's validation (most of its build time): the figure is
    # redrawn for every case opened and every what-if edit; a test validates its output in full.
    layout = house_layout_spec(
        f"Case {case.case_id}: {output_name} {_plain(output)}",
        max(380, min(450, 110 + 26 * len(y))),
        x_title=output_name[:1].upper() + output_name[1:],
        legend=None,
        subtitle=None
        if errors is None
        else "permutation estimates: standard error at most "
        f"{max(step_errors, default=0.0):.3f} per step",
    )
    layout["yaxis"].update(
        type="category", categoryorder="array", categoryarray=y, ticklabelstandoff=6
    )
    layout["xaxis"]["range"] = [lo - pad, hi + pad]
    if threshold is not None and case.output_space == "probability":
        shape, annotation = threshold_marks(float(threshold))
        # Under the bars and their value labels, so a label next to the threshold stays legible.
        layout["shapes"], layout["annotations"] = [{**shape, "layer": "below"}], [annotation]
    trace = {
        "type": "waterfall",
        "orientation": "h",
        "measure": measure,
        "x": [float(v) for v in x],
        "y": y,
        "base": 0,
        "text": text,
        "textposition": "outside",
        "cliponaxis": False,
        "increasing": {"marker": {"color": SHAP_RED}},
        "decreasing": {"marker": {"color": SHAP_BLUE}},
        "totals": {"marker": {"color": NEUTRAL}},
        "connector": {"line": {"color": REFERENCE, "width": 1}},
        "customdata": hover,
        "hovertemplate": "%{y}<br>%{customdata}<extra></extra>",
        "name": f"Contributions to {output_name}",
    }
    fig = fast_figure([trace], layout)
    return fig


def dependence_figure(explanation: Explanation, feature: str) -> go.Figure:
    """How one feature's value relates to its contribution (SHAP dependence plot).

    Parameters
    ----------
    explanation : SHAP values of the cases to show.
    feature : an original feature name.

    Returns
    -------
    go.Figure
        One scatter trace (at most ``MAX_POINTS`` points, sampled deterministically).

    Raises
    ------
    ConfigError
        If ``feature`` is not one of the explanation's features.
    """
    names = [str(f) for f in explanation.feature_names]
    if feature not in names:
        shown = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        raise ConfigError(
            f"Feature {feature!r} is not in this explanation; choose one of its features: {shown}."
        )
    j = names.index(feature)
    keep = _sample_index(explanation.values.shape[0], MAX_POINTS)
    raw = explanation.data[feature].iloc[keep]
    numeric = pd.to_numeric(raw, errors="coerce")
    is_numeric = bool(numeric.notna().sum()) and numeric.notna().sum() == raw.notna().sum()
    x = numeric.to_numpy(dtype=float) if is_numeric else raw.astype(str).to_numpy()
    output = _output_name(explanation.output_space, explanation.class_name)
    fig = house_figure(
        go.Scattergl(
            x=x,
            y=explanation.values[keep, j].astype(float),
            mode="markers",
            name="Cases",
            marker={"color": PALETTE[0], "size": 6, "opacity": 0.6},
            hovertemplate=f"{feature} = %{{x:,.4g}}<br>SHAP %{{y:.3f}} ({output})<extra></extra>"
            if is_numeric
            else f"{feature} = %{{x}}<br>SHAP %{{y:.3f}} ({output})<extra></extra>",
        )
    )
    fig.add_hline(y=0, line={"color": REFERENCE, "width": 1})
    house_layout(
        fig,
        f"Effect of {feature}",
        400,
        x_title=feature,
        y_title=f"SHAP value ({output})",
        legend=None,
    )
    return fig


def _sample_index(n: int, cap: int) -> np.ndarray:
    """All positions when ``n <= cap``, else ``cap`` positions drawn with a fixed seed."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=cap, replace=False))


def _swarm_offsets(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Vertical offsets in (-0.4, 0.4) that spread points where they are dense, like shap's."""
    n = len(x)
    if n == 0:
        return np.zeros(0)
    finite = np.where(np.isfinite(x), x, 0.0)
    span = float(finite.max() - finite.min())
    bins = (
        np.zeros(n, dtype=int)
        if span == 0
        else np.minimum((finite - finite.min()) / span * 50, 49).astype(int)
    )
    # A random order inside each bin keeps colours from lining up by position.
    order = np.lexsort((rng.random(n), bins))
    sorted_bins = bins[order]
    starts = np.searchsorted(sorted_bins, sorted_bins, side="left")
    position = np.arange(n) - starts
    per_bin = np.bincount(bins, minlength=50)
    widest = max(int(per_bin.max()), 1)
    count = per_bin[sorted_bins]
    offsets_sorted = (position - (count - 1) / 2) / widest * 0.8
    offsets = np.empty(n)
    offsets[order] = offsets_sorted
    return np.clip(offsets, -0.4, 0.4)


def _output_name(output_space: str, class_name: str) -> str:
    """The output space in words, e.g. "log-odds of malignant"."""
    return f"{output_space} of {class_name}"


def _format_value(v: Any) -> str:
    """:func:`medimg_core._messages.format_value`, cut at 30 characters to fit an axis or a hover."""
    return short_text(format_value(v))


def _signed(v: float) -> str:
    return f"+{v:.3f}" if v >= 0 else f"−{abs(v):.3f}"


def _plain(v: float) -> str:
    """Three decimals with a typographic minus, matching the signed step labels."""
    return f"{v:.3f}" if v >= 0 else f"−{abs(v):.3f}"


def _check_max_display(max_display: int) -> None:
    if int(max_display) < 1:
        raise ConfigError(
            f"max_display must be at least 1, got {max_display}; show 1 or more features."
        )
