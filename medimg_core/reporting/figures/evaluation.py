"""Validation figures: confusion matrix, ROC, precision–recall, calibration, threshold trade-off,
model comparison and one case's probability gauge.

Every builder is a pure function of medimg's result types (``Evaluation``, ``LeaderboardRow``) or
of plain numbers. None of them computes a model or calls streamlit; pages pass the figures to
``st.plotly_chart``. Curves use clinical names (sensitivity, specificity, PPV, NPV,
"1 − specificity") and legends that name the partition with the 95% interval when one exists;
the layout and colours they share are in :mod:`medimg_core.reporting.figures._style`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import make_colorscale, sequential
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import Curve, Evaluation, MetricValue, tradeoff_table
from medimg_core.modelling.models import model_name
from medimg_core.reporting.figures._style import (
    MAX_POINTS,
    PALETTE,
    PARTITION_COLOURS,
    PARTITION_DASH,
    REFERENCE,
    SHAP_BLUE,
    SHAP_RED,
    fast_figure,
    house_figure,
    house_layout,
    house_layout_spec,
    threshold_marks,
)

if TYPE_CHECKING:
    from medimg_core.modelling.selection import LeaderboardRow

__all__ = [
    "PARTITION_LABELS",
    "calibration_figure",
    "case_probability_figure",
    "confusion_figure",
    "leaderboard_figure",
    "partition_label",
    "pr_figure",
    "roc_figure",
    "threshold_figure",
]

PARTITION_LABELS: dict[str, str] = {
    "cv": "Cross-validated (development)",
    "test": "Held-out test",
    "external": "External",
}


def partition_label(partition: str) -> str:
    """Display name of a partition: "cv" → "Cross-validated (development)" etc.

    Parameters
    ----------
    partition : ``Evaluation.partition`` ("cv", "test", "external" or a free name).

    Returns
    -------
    str
        The clinical name; unknown partitions are shown as given, capitalised.
    """
    return PARTITION_LABELS.get(partition, partition[:1].upper() + partition[1:])


def confusion_figure(
    confusion: np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[Any],
    *,
    normalize: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Confusion matrix with class names on the axes and the counts written in every cell.

    Parameters
    ----------
    confusion : (k, k) counts, rows = true class, columns = predicted class, in the order of
        ``class_names`` (binary: ``[[TN, FP], [FN, TP]]``).
    class_names : display names of the k classes.
    normalize : colour by the share of each true class (row percentages are added to the
        cells); counts stay visible either way.
    title : figure title; defaults to "Confusion matrix" (with a "row-normalised" subtitle when
        ``normalize``; a given title is drawn without one, so matrices side by side line up).

    Returns
    -------
    go.Figure
        One heatmap trace whose cell text (``text``, first line) is the count; both axes are
        category axes in the order of ``class_names``, so numeric labels (0/1, "2"/"4", 0.0/1.0)
        are names, never coordinates.

    Raises
    ------
    DataError
        If the matrix is not square, does not match ``class_names``, holds negative counts, or
        two class names are the same text.
    """
    counts = np.asarray(confusion)
    names = _category_names(class_names)
    k = len(names)
    if counts.ndim != 2 or counts.shape != (k, k):
        raise DataError(
            f"The confusion matrix has shape {counts.shape} but there are {k} class names "
            f"({', '.join(names)}); pass a {k}×{k} matrix with rows = true class and columns = "
            "predicted class in the order of class_names."
        )
    if (counts < 0).any():
        raise DataError(
            f"The confusion matrix holds negative counts ({int(counts.min())}); pass counts of cases."
        )
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    z = shares if normalize else counts
    zmax = 1.0 if normalize else max(float(counts.max()), 1.0)

    binary_roles = (("TN", "FP"), ("FN", "TP")) if k == 2 else None
    hover = [
        [
            f"True diagnosis: {names[i]}<br>Predicted: {names[j]}"
            + (f" ({binary_roles[i][j]})" if binary_roles is not None else "")
            + f"<br>Cases: {int(counts[i, j]):,} ({shares[i, j]:.1%} of true {names[i]})"
            for j in range(k)
        ]
        for i in range(k)
    ]
    cell_text = [
        [
            f"{int(counts[i, j]):,}" + (f"<br>{shares[i, j]:.1%}" if normalize else "")
            for j in range(k)
        ]
        for i in range(k)
    ]
    # The counts are the heatmap's own cell text, not layout annotations: plotly reads an
    # annotation's x/y of "1" or 1 on a category axis as a position, so with class labels such
    # as 0/1 or 2/4 annotations land in the wrong cell (or outside the plot); trace text is
    # always drawn in its own cell, with a colour that contrasts with that cell.
    heatmap = {
        "type": "heatmap",
        "z": z.tolist(),
        "x": names,
        "y": names,
        "text": cell_text,
        "texttemplate": "%{text}",
        "textfont": {"size": 15},
        # Spelled out as plotly's validation would: plotly.js has its own, different "Blues".
        "colorscale": make_colorscale(sequential.Blues),
        "zmin": 0,
        "zmax": zmax,
        "customdata": hover,
        "hovertemplate": "%{customdata}<extra></extra>",
        "colorbar": {
            "title": {"text": "Share of true class" if normalize else "Cases"},
            "tickformat": ".0%" if normalize else ",d",
        },
    }
    # A caller's title names the view itself; a subtitle under it would only repeat it and push
    # this matrix below the counts matrix drawn beside it.
    explain = normalize and title is None
    layout = house_layout_spec(
        title or "Confusion matrix",
        max(380, min(600, 120 + 60 * k)),
        x_title="Predicted",
        y_title="True diagnosis",
        subtitle="row-normalised: share of each true class" if explain else None,
        legend=None,
    )
    # Class labels are categories in the given order, never coordinates, whatever they look like.
    category_axis = {"type": "category", "categoryorder": "array", "categoryarray": names}
    layout["yaxis"].update(autorange="reversed", **category_axis)
    layout["xaxis"].update(side="bottom", **category_axis)
    # Built from dicts without plotly's validation (a test validates the result): the Evaluate
    # page redraws this matrix on every move of its threshold slider.
    return fast_figure([heatmap], layout)


def roc_figure(*evaluations: Evaluation) -> go.Figure:
    """ROC curves of one or more partitions, with the chance diagonal.

    Parameters
    ----------
    *evaluations : the partitions to overlay (e.g. ``result.cv, result.test``). Binary
        evaluations give one curve each, labelled with the partition and "AUC 0.99 (0.97–1.00)";
        multi-class ones give one one-vs-rest curve per class.

    Returns
    -------
    go.Figure
        One trace per curve plus the chance diagonal (last trace).
    """
    fig, multi = _overlay(
        evaluations,
        "roc_figure",
        lambda ev: [_curve_trace(c, "1 − specificity", "Sensitivity") for c in _roc_curves(ev)],
    )
    fig.add_trace(_diagonal_trace("Chance (AUC 0.50)"))
    return _unit_layout(
        fig,
        "ROC curve",
        x_title="1 − specificity (false-positive rate)",
        y_title="Sensitivity (true-positive rate)",
        legend="below" if multi else "inside-br",
    )


def pr_figure(*evaluations: Evaluation) -> go.Figure:
    """Precision–recall (PPV–sensitivity) curves with each partition's prevalence line.

    Parameters
    ----------
    *evaluations : the partitions to overlay; multi-class ones give one-vs-rest curves.

    Returns
    -------
    go.Figure
        Per curve two traces: the curve (legend "Held-out test — PR AUC 0.95 (…)") and its
        prevalence line (the PPV of calling every case positive).
    """
    fig, multi = _overlay(
        evaluations,
        "pr_figure",
        lambda ev: [
            trace
            for c in _pr_curves(ev)
            for trace in (_curve_trace(c, "Sensitivity", "PPV"), _prevalence_trace(c))
        ],
    )
    return _unit_layout(
        fig,
        "Precision–recall curve",
        x_title="Sensitivity (recall)",
        y_title="PPV (precision)",
        legend="below" if multi else "inside-bl",
    )


def calibration_figure(*evaluations: Evaluation) -> go.Figure:
    """Reliability curves (observed frequency vs predicted probability) with the ideal diagonal.

    Parameters
    ----------
    *evaluations : the partitions to overlay; legends carry the Brier score with its 95%
        interval. Multi-class evaluations give one one-vs-rest curve per class.

    Returns
    -------
    go.Figure
        One trace per curve plus the perfect-calibration diagonal (last trace).
    """
    fig, multi = _overlay(
        evaluations,
        "calibration_figure",
        lambda ev: [
            _curve_trace(c, "Predicted", "Observed", mode="lines+markers")
            for c in _calibration_curves(ev)
        ],
    )
    fig.add_trace(_diagonal_trace("Perfect calibration"))
    target = _target_name(evaluations[0]) if not multi else "the class"
    return _unit_layout(
        fig,
        "Calibration",
        x_title=f"Predicted probability of {target}",
        y_title=f"Observed frequency of {target}",
        # Below, never inside: the curves run corner to corner, and the legends (with their
        # intervals) are half a 1,024 px window wide, so inside they hide part of a curve.
        legend="below",
    )


def threshold_figure(evaluation: Evaluation, *, threshold: float | None = None) -> go.Figure:
    """Sensitivity, specificity, PPV and NPV as the decision threshold moves.

    Parameters
    ----------
    evaluation : a two-class evaluation (out-of-fold development data is where a threshold
        should be chosen).
    threshold : the operating threshold to mark; defaults to ``evaluation.threshold``.

    Returns
    -------
    go.Figure
        Four traces (sensitivity, specificity, PPV, NPV) and a vertical line at the threshold.

    Raises
    ------
    ConfigError
        For a multi-class evaluation, or a threshold outside [0, 1].
    """
    if _is_multiclass(evaluation):
        raise ConfigError(
            f"The threshold trade-off needs a two-class evaluation; this one has "
            f"{len(evaluation.class_names)} classes ({', '.join(map(str, evaluation.class_names))}). "
            "Use the confusion matrix and the one-vs-rest ROC curves instead."
        )
    t = evaluation.threshold if threshold is None else float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"The threshold must lie between 0 and 1, got {t}; pick a probability.")
    table = _tradeoff(evaluation)
    target = _target_name(evaluation)
    series = (
        ("sensitivity", "Sensitivity", PALETTE[0], "solid"),
        ("specificity", "Specificity", PALETTE[1], "solid"),
        ("ppv", "PPV", PALETTE[2], "dash"),
        ("npv", "NPV", PALETTE[3], "dash"),
    )
    x = table["threshold"].to_numpy(dtype=float)
    traces = [
        {
            "type": "scatter",
            "x": x,
            "y": table[column].to_numpy(dtype=float),
            "mode": "lines",
            "name": name,
            "line": {"color": colour, "dash": dash, "width": 2},
            "hovertemplate": f"{name} %{{y:.3f}}<extra></extra>",
        }
        for column, name, colour, dash in series
    ]
    layout = house_layout_spec(
        f"Trade-off by threshold — {partition_label(evaluation.partition).lower()}",
        420,
        x_title=f"Threshold on the probability of {target}",
        y_title="Value (share of cases)",
        legend="below",
    )
    shape, annotation = threshold_marks(t)
    layout.update(hovermode="x unified", shapes=[shape], annotations=[annotation])
    layout["xaxis"].update(range=[0, 1], tickformat=".1f", hoverformat=".2f")
    layout["yaxis"].update(range=[0, 1.04], tickformat=".1f")
    # Built from dicts without plotly's validation (a test validates the result): the Evaluate
    # page redraws this figure, for its threshold line, on every move of the slider.
    return fast_figure(traces, layout)


def leaderboard_figure(leaderboard: Sequence[LeaderboardRow]) -> go.Figure:
    """Cross-validated ROC AUC with its 95% interval for every candidate model.

    Parameters
    ----------
    leaderboard : ``TrainingResult.leaderboard`` (filled when the model kind is "auto").

    Returns
    -------
    go.Figure
        Traces: the other candidates, the chosen model (highlighted), and the single folds'
        AUCs as faint points when available. Best model at the top.

    Raises
    ------
    ConfigError
        If the leaderboard is empty.
    """
    rows = list(leaderboard)
    if not rows:
        raise ConfigError(
            "The leaderboard is empty: it is filled only when models are compared. Train with "
            "model kind 'auto' to compare every model kind."
        )
    rows.sort(key=lambda r: np.nan_to_num(r.roc_auc.value, nan=-1.0))
    names = [model_name(r.kind) for r in rows]
    fig = house_figure()
    for chosen, trace_name, colour, size in (
        (False, "Other candidates", PALETTE[0], 10),
        (True, "Chosen model", PALETTE[1], 14),
    ):
        picked = [i for i, r in enumerate(rows) if r.chosen == chosen]
        if not picked:
            continue
        auc = np.array([rows[i].roc_auc.value for i in picked], dtype=float)
        lo = np.array([rows[i].roc_auc.ci95[0] for i in picked], dtype=float)
        hi = np.array([rows[i].roc_auc.ci95[1] for i in picked], dtype=float)
        custom = [
            [_metric_text(rows[i].roc_auc, 3), _metric_text(rows[i].accuracy, 3), rows[i].seconds]
            for i in picked
        ]
        fig.add_trace(
            go.Scatter(
                x=auc,
                y=[names[i] for i in picked],
                mode="markers",
                name=trace_name,
                marker={"color": colour, "size": size, "symbol": "diamond" if chosen else "circle"},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": np.nan_to_num(hi - auc),
                    "arrayminus": np.nan_to_num(auc - lo),
                    "color": colour,
                    "thickness": 2,
                    "width": 6,
                },
                customdata=custom,
                hovertemplate=(
                    "%{y}<br>ROC AUC %{customdata[0]}<br>accuracy %{customdata[1]}"
                    "<br>fit time %{customdata[2]:.1f} s<extra></extra>"
                ),
            )
        )
    fold_x = [a for r in rows for a in r.fold_aucs]
    if fold_x:
        fig.add_trace(
            go.Scatter(
                x=fold_x,
                y=[name for r, name in zip(rows, names, strict=True) for _ in r.fold_aucs],
                mode="markers",
                name="Single folds",
                marker={"color": "#555555", "size": 7, "opacity": 0.7, "symbol": "circle-open"},
                hovertemplate="%{y}<br>fold ROC AUC %{x:.3f}<extra></extra>",
            )
        )
    house_layout(
        fig,
        "Model comparison",
        max(340, min(490, 160 + 40 * len(rows))),
        # Two short lines: one long line centred under a plot in a narrow column ran past its
        # right edge and was cut.
        x_title="Cross-validated ROC AUC<br>(95% CI)",
        legend="below",
    )
    # Room below the axis title for the legend even when a narrow column wraps it to 2 rows;
    # room on the right for a fold at AUC 1.00.
    fig.update_layout(margin={"b": 56, "r": 18})
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=names)
    fig.update_xaxes(tickformat=".2f", nticks=5)
    return fig


def case_probability_figure(p: float, threshold: float, *, class_name: str) -> go.Figure:
    """A horizontal gauge: one case's probability of ``class_name`` against the threshold.

    Parameters
    ----------
    p : the case's predicted probability of ``class_name``.
    threshold : the decision threshold (cases at or above it are called ``class_name``).
    class_name : the positive class, e.g. "malignant".

    Returns
    -------
    go.Figure
        One bullet-gauge indicator; the bar is red when the case is called ``class_name``,
        blue otherwise, and the threshold is the black mark.

    Raises
    ------
    DataError
        If ``p`` or ``threshold`` is not a probability.
    """
    for name, value in (("probability", p), ("threshold", threshold)):
        if not (np.isfinite(value) and 0.0 <= float(value) <= 1.0):
            raise DataError(f"The {name} must be a number between 0 and 1, got {value!r}.")
    p, threshold = float(p), float(threshold)
    called = p >= threshold
    verdict = (
        f"Called {class_name}: at or above the threshold {threshold:.2f}"
        if called
        else f"Not called {class_name}: below the threshold {threshold:.2f}"
    )
    label = f"P({class_name})"
    # The label is an annotation at the left edge rather than the indicator's own title, which
    # plotly right-aligns against the gauge and clips once it is wider than the space left of it.
    gauge_start = min(0.45, max(0.2, 0.04 + 0.014 * len(label)))
    fig = house_figure(
        go.Indicator(
            mode="number+gauge",
            value=p,
            number={"valueformat": ".2f", "font": {"size": 26}},
            domain={"x": [gauge_start, 1], "y": [0.0, 0.62]},
            gauge={
                "shape": "bullet",
                "axis": {"range": [0, 1], "tickformat": ".1f", "tickfont": {"size": 12}},
                "bar": {"color": SHAP_RED if called else SHAP_BLUE, "thickness": 0.5},
                "steps": [
                    {"range": [0, threshold], "color": "rgba(30, 136, 229, 0.12)"},
                    {"range": [threshold, 1], "color": "rgba(255, 13, 87, 0.12)"},
                ],
                "threshold": {
                    "line": {"color": "#1A1A1A", "width": 3},
                    "thickness": 0.9,
                    "value": threshold,
                },
            },
        )
    )
    fig.add_annotation(
        text=verdict,
        x=0,
        y=1,
        xref="paper",
        yref="paper",
        xanchor="left",
        yanchor="top",
        showarrow=False,
        font={"size": 13, "color": SHAP_RED if called else SHAP_BLUE},
    )
    fig.add_annotation(
        text=label,
        x=0,
        y=0.31,
        xref="paper",
        yref="paper",
        xanchor="left",
        yanchor="middle",
        showarrow=False,
        font={"size": 14, "color": "#1A1A1A"},
    )
    house_layout(fig, None, 160, legend=None)
    fig.update_layout(margin={"l": 10, "r": 20, "t": 10, "b": 20})
    return fig


@dataclass(frozen=True)
class _CurveData:
    """One drawable curve: points, hover thresholds and its legend text."""

    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray | None
    name: str
    short_name: str
    colour: str
    dash: str
    prevalence: float = float("nan")
    counts: np.ndarray | None = None


def _overlay(
    evaluations: tuple[Evaluation, ...],
    caller: str,
    traces_of: Callable[[Evaluation], list[go.Scatter]],
) -> tuple[go.Figure, bool]:
    """A figure with every partition's traces, and whether any partition is multi-class."""
    _require_evaluations(evaluations, caller)
    fig = house_figure()
    for ev in evaluations:
        for trace in traces_of(ev):
            fig.add_trace(trace)
    return fig, any(_is_multiclass(ev) for ev in evaluations)


def _category_names(class_names: Sequence[Any]) -> list[str]:
    """Class labels as axis categories: text, distinct, ``1.0`` shown as "1.0" (never 1)."""
    names = [str(c) for c in class_names]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise DataError(
            f"Two classes have the same name ({', '.join(repeated)}) once written as text; "
            "give the classes distinct names so each row and column of the matrix is one class."
        )
    return names


def _diagonal_trace(name: str) -> go.Scatter:
    return go.Scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        name=name,
        line={"color": REFERENCE, "dash": "dash", "width": 1},
        hoverinfo="skip",
    )


def _prevalence_trace(curve: _CurveData) -> go.Scatter:
    """The PPV of calling every case positive, beside a precision–recall curve."""
    return go.Scatter(
        x=[0, 1],
        y=[curve.prevalence, curve.prevalence],
        mode="lines",
        name=f"Prevalence {curve.prevalence:.2f}, {curve.short_name}",
        legendgroup=curve.name,
        line={"color": curve.colour, "dash": "dot", "width": 1},
        hovertemplate=f"Prevalence {curve.prevalence:.3f}<extra>{curve.short_name}</extra>",
    )


def _unit_layout(
    fig: go.Figure, title: str, *, x_title: str, y_title: str, legend: str
) -> go.Figure:
    """The shared layout of the ROC, precision–recall and calibration figures: both axes 0–1."""
    house_layout(fig, title, 450, x_title=x_title, y_title=y_title, legend=legend)
    fig.update_xaxes(range=[-0.01, 1.01], tickformat=".1f", constrain="domain")
    fig.update_yaxes(range=[-0.01, 1.02], tickformat=".1f")
    return fig


def _curve_trace(curve: _CurveData, x_name: str, y_name: str, *, mode: str = "lines") -> go.Scatter:
    columns: list[np.ndarray] = []
    hover = f"{x_name} %{{x:.3f}}<br>{y_name} %{{y:.3f}}"
    if curve.thresholds is not None and len(curve.thresholds) == len(curve.x):
        columns.append(
            np.array(
                [f"{t:.3f}" if np.isfinite(t) else "—" for t in curve.thresholds], dtype=object
            )
        )
        hover += f"<br>threshold %{{customdata[{len(columns) - 1}]}}"
    if curve.counts is not None and len(curve.counts) == len(curve.x):
        columns.append(np.array([f"{int(c):,}" for c in curve.counts], dtype=object))
        hover += f"<br>cases in bin %{{customdata[{len(columns) - 1}]}}"
    return go.Scatter(
        x=curve.x,
        y=curve.y,
        mode=mode,
        name=curve.name,
        legendgroup=curve.name,
        line={"color": curve.colour, "dash": curve.dash, "width": 2},
        marker={"size": 6},
        customdata=np.column_stack(columns) if columns else None,
        hovertemplate=hover + f"<extra>{curve.short_name}</extra>",
    )


def _roc_curves(ev: Evaluation) -> list[_CurveData]:
    label = partition_label(ev.partition)
    colour = PARTITION_COLOURS.get(ev.partition, PALETTE[4])
    scores = _binary_scores(ev)
    if scores is not None:
        if ev.roc is not None:
            x, y, t = _curve_points(ev.roc)
        else:
            fpr, tpr, thr = roc_curve(ev.y_true, scores)
            x, y, t = _thin_curve(fpr, tpr, thr)
        name = f"{label} — {_metric_text(ev.metrics.get('roc_auc'), 2, 'AUC')}"
        return [_CurveData(x, y, t, name, label, colour, "solid")]
    curves = []
    for j, cls, y_bin, s in _one_vs_rest(ev):
        fpr, tpr, thr = roc_curve(y_bin, s)
        x, y, t = _thin_curve(fpr, tpr, thr)
        auc = _per_class_value(ev, cls, "roc_auc", lambda yb=y_bin, sc=s: roc_auc_score(yb, sc))
        curves.append(_ovr_curve(ev, j, cls, x, y, t, name_suffix=f" — AUC {auc:.2f}"))
    return curves


def _pr_curves(ev: Evaluation) -> list[_CurveData]:
    label = partition_label(ev.partition)
    colour = PARTITION_COLOURS.get(ev.partition, PALETTE[4])
    scores = _binary_scores(ev)
    if scores is not None:
        prevalence = float(np.mean(np.asarray(ev.y_true) == 1))
        if ev.pr is not None:
            x, y, t = _curve_points(ev.pr)
            if any(k in ev.pr.x_name.lower() for k in ("precision", "ppv")):
                x, y = y, x
        else:
            precision, recall, thr = precision_recall_curve(ev.y_true, scores)
            x, y, t = _thin_curve(recall, precision, np.append(thr, np.nan))
        name = f"{label} — {_metric_text(ev.metrics.get('pr_auc'), 2, 'PR AUC')}"
        return [_CurveData(x, y, t, name, label, colour, "solid", prevalence)]
    curves = []
    for j, cls, y_bin, s in _one_vs_rest(ev):
        precision, recall, thr = precision_recall_curve(y_bin, s)
        x, y, t = _thin_curve(recall, precision, np.append(thr, np.nan))
        curves.append(_ovr_curve(ev, j, cls, x, y, t, prevalence=float(np.mean(y_bin))))
    return curves


def _calibration_curves(ev: Evaluation) -> list[_CurveData]:
    label = partition_label(ev.partition)
    colour = PARTITION_COLOURS.get(ev.partition, PALETTE[4])
    scores = _binary_scores(ev)
    if scores is not None:
        counts = None
        if ev.calibration is not None:
            x, y, _ = _curve_points(ev.calibration)
            counts = getattr(ev.calibration, "counts", None)
        else:
            y, x = calibration_curve(ev.y_true, scores, n_bins=10, strategy="quantile")
        name = f"{label} — {_metric_text(ev.metrics.get('brier'), 3, 'Brier')}"
        stats = getattr(ev, "calibration_stats", None) or {}
        slope = stats.get("slope", float("nan"))
        if np.isfinite(slope):
            name += f", slope {slope:.2f}"
        return [_CurveData(x, y, None, name, label, colour, "solid", counts=counts)]
    curves = []
    for j, cls, y_bin, s in _one_vs_rest(ev):
        y, x = calibration_curve(y_bin, s, n_bins=10, strategy="quantile")
        curves.append(_ovr_curve(ev, j, cls, x, y, None))
    return curves


def _ovr_curve(
    ev: Evaluation,
    j: int,
    cls: str,
    x: np.ndarray,
    y: np.ndarray,
    thresholds: np.ndarray | None,
    *,
    name_suffix: str = "",
    prevalence: float = float("nan"),
) -> _CurveData:
    """Class ``cls`` (column ``j``) against the rest: class colour, partition dash."""
    short = f"{partition_label(ev.partition)} · {cls}"
    return _CurveData(
        x,
        y,
        thresholds,
        f"{short} vs rest{name_suffix}",
        short,
        PALETTE[j % len(PALETTE)],
        PARTITION_DASH.get(ev.partition, "dashdot"),
        prevalence,
    )


def _curve_points(curve: Curve) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    thresholds = None if curve.thresholds is None else np.asarray(curve.thresholds, dtype=float)
    if thresholds is not None and len(thresholds) != len(curve.x):
        thresholds = None
    return _thin_curve(np.asarray(curve.x, float), np.asarray(curve.y, float), thresholds)


def _thin_curve(
    x: np.ndarray, y: np.ndarray, thresholds: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Evenly spaced points along the curve (first and last kept) when it is too long."""
    if len(x) <= MAX_POINTS:
        return x, y, thresholds
    idx = np.unique(np.linspace(0, len(x) - 1, MAX_POINTS).round().astype(int))
    return x[idx], y[idx], None if thresholds is None else thresholds[idx]


def _is_multiclass(ev: Evaluation) -> bool:
    return len(ev.class_names) > 2


def _binary_scores(ev: Evaluation) -> np.ndarray | None:
    if _is_multiclass(ev):
        return None
    scores = np.asarray(ev.y_score, dtype=float)
    return scores[:, -1] if scores.ndim == 2 else scores


def _one_vs_rest(ev: Evaluation) -> list[tuple[int, str, np.ndarray, np.ndarray]]:
    scores = np.asarray(ev.y_score, dtype=float)
    y_true = np.asarray(ev.y_true)
    if scores.ndim != 2 or scores.shape[1] != len(ev.class_names):
        raise DataError(
            f"A {len(ev.class_names)}-class evaluation needs scores of shape (n, "
            f"{len(ev.class_names)}), got {scores.shape}; pass one probability column per class."
        )
    out = []
    for j, cls in enumerate(ev.class_names):
        y_bin = (y_true == j).astype(int)
        # A class absent from this partition has no curve; skipping it beats an undefined AUC.
        if 0 < y_bin.sum() < len(y_bin):
            out.append((j, str(cls), y_bin, scores[:, j]))
    return out


def _per_class_value(ev: Evaluation, cls: str, key: str, compute: Any) -> float:
    if ev.per_class and cls in ev.per_class and key in ev.per_class[cls]:
        return float(ev.per_class[cls][key])
    return float(compute())


def _metric_text(metric: MetricValue | None, digits: int, prefix: str = "") -> str:
    """Legend text such as "AUC 0.99 (0.97–1.00)"; no interval when it could not be computed."""
    lead = f"{prefix} " if prefix else ""
    if metric is None or not np.isfinite(metric.value):
        return f"{lead}n/a".strip() if prefix else "n/a"
    text = f"{lead}{metric.value:.{digits}f}"
    lo, hi = metric.ci95
    if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
        text += f" ({lo:.{digits}f}–{hi:.{digits}f})"
    return text


def _tradeoff(evaluation: Evaluation, n_points: int = 101) -> pd.DataFrame:
    """Threshold table from :func:`~medimg_core.modelling.evaluation.tradeoff_table`, else computed here."""
    columns = ["threshold", "sensitivity", "specificity", "ppv", "npv"]
    table = tradeoff_table(evaluation, n_points=n_points)
    if isinstance(table, pd.DataFrame) and set(columns) <= set(table.columns):
        return table[columns]
    scores = _binary_scores(evaluation)
    assert scores is not None  # threshold_figure rejects multi-class evaluations first
    return _tradeoff_fallback(np.asarray(evaluation.y_true), scores, n_points)


def _tradeoff_fallback(y_true: np.ndarray, y_score: np.ndarray, n_points: int) -> pd.DataFrame:
    """Sensitivity, specificity, PPV, NPV on a threshold grid; a case is positive when p >= t."""
    thresholds = np.linspace(0.0, 1.0, n_points)
    pos = np.sort(y_score[y_true == 1])
    neg = np.sort(y_score[y_true != 1])
    tp = len(pos) - np.searchsorted(pos, thresholds, side="left")
    fp = len(neg) - np.searchsorted(neg, thresholds, side="left")
    fn = len(pos) - tp
    tn = len(neg) - fp

    def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.divide(a, b, out=np.full(len(a), np.nan), where=b > 0)

    return pd.DataFrame(
        {
            "threshold": thresholds,
            "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp),
            "ppv": ratio(tp, tp + fp),
            "npv": ratio(tn, tn + fn),
        }
    )


def _target_name(ev: Evaluation) -> str:
    # class_names holds the names users gave the codes ("malignant" for 0), if any.
    if ev.positive_class is not None:
        return str(ev.class_names[1]) if ev.is_binary else str(ev.positive_class)
    return str(ev.class_names[-1]) if ev.class_names else "the positive class"


def _require_evaluations(evaluations: tuple[Evaluation, ...], name: str) -> None:
    if not evaluations:
        raise ConfigError(f"{name} needs at least one Evaluation, got none; pass e.g. result.cv.")
