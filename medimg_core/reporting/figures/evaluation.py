"""Figure builders: results in, ``plotly.graph_objects.Figure`` out, written for a clinical reader.

Every builder is a pure function of medimg's result types (``Evaluation``, ``Explanation``,
``CaseExplanation``, ``CleaningReport``, ``LeaderboardRow``) or of plain pandas objects. None of them
computes a model or calls streamlit; pages pass the figures to ``st.plotly_chart``.

Conventions shared by all figures: clinical names (sensitivity, specificity, PPV, NPV,
"1 − specificity"), legends that name the partition ("Cross-validated (development)",
"Held-out test", "External") with the 95% interval when one exists, the ``plotly_white``
template, fonts of at least 12 px, and at most ``MAX_POINTS`` points per trace so a browser stays
responsive on large tables. SHAP figures colour contributions as shap does: red pushes toward the
explained class, blue away from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from medimg_core.errors import ConfigError, DataError

# sklearn, evaluation, explain, models and review are imported where they are used: the Data
# page draws its charts from this module and must not wait for scikit-learn to load.
if TYPE_CHECKING:
    from medimg_core.modelling.evaluation import Curve, Evaluation, MetricValue
    from medimg_core.modelling.explain import CaseExplanation, Explanation
    from medimg_core.modelling.selection import LeaderboardRow
    from medimg_core.modelling.validation import SplitSummary
    from medimg_core.tables.cleaning import CleaningReport

__all__ = [
    "MAX_POINTS",
    "PARTITION_LABELS",
    "beeswarm_figure",
    "calibration_figure",
    "case_probability_figure",
    "class_balance_figure",
    "cleaning_figure",
    "confusion_figure",
    "dependence_figure",
    "distribution_figure",
    "flow_counts",
    "flow_figure",
    "importance_figure",
    "leaderboard_figure",
    "partition_label",
    "pr_figure",
    "roc_figure",
    "threshold_figure",
    "waterfall_figure",
]

MAX_POINTS = 10_000
"""Most points drawn in one trace (and in one beeswarm); larger inputs are thinned."""

PARTITION_LABELS: dict[str, str] = {
    "cv": "Cross-validated (development)",
    "test": "Held-out test",
    "external": "External",
}

_PARTITION_COLOURS = {"cv": "#0072B2", "test": "#D55E00", "external": "#009E73"}
_PARTITION_DASH = {"cv": "solid", "test": "dash", "external": "dot"}
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
_FLOW_PAD = 18
_SHAP_RED = "#FF0D57"
_SHAP_BLUE = "#1E88E5"
_NEUTRAL = "#7F7F7F"
_REFERENCE = "#9E9E9E"


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
        One heatmap trace; one annotation per cell whose first line is the count.

    Raises
    ------
    DataError
        If the matrix is not square, does not match ``class_names`` or holds negative counts.
    """
    counts = np.asarray(confusion)
    names = [str(c) for c in class_names]
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

    binary_roles = np.array([["TN", "FP"], ["FN", "TP"]]) if k == 2 else None
    hover = np.empty((k, k), dtype=object)
    for i in range(k):
        for j in range(k):
            role = f" ({binary_roles[i, j]})" if binary_roles is not None else ""
            hover[i, j] = (
                f"True diagnosis: {names[i]}<br>Predicted: {names[j]}{role}<br>"
                f"Cases: {int(counts[i, j]):,} ({shares[i, j]:.1%} of true {names[i]})"
            )
    fig = _figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            colorscale="Blues",
            zmin=0,
            zmax=zmax,
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorbar={
                "title": {"text": "Share of true class" if normalize else "Cases"},
                "tickformat": ".0%" if normalize else ",d",
            },
        )
    )
    annotations = []
    for i in range(k):
        for j in range(k):
            text = f"{int(counts[i, j]):,}"
            if normalize:
                text += f"<br>{shares[i, j]:.1%}"
            # Dark cells get white text so counts stay legible on the strongest blues.
            dark = float(z[i, j]) / zmax > 0.55
            annotations.append(
                {
                    "x": names[j],
                    "y": names[i],
                    "text": text,
                    "showarrow": False,
                    "font": {"size": 15, "color": "white" if dark else "#1A1A1A"},
                }
            )
    # One layout update for every cell: each add_annotation call re-validates the whole list.
    fig.update_layout(annotations=annotations)
    # A caller's title names the view itself; a subtitle under it would only repeat it and push
    # this matrix below the counts matrix drawn beside it.
    explain = normalize and title is None
    _layout(
        fig,
        title or "Confusion matrix",
        max(380, min(600, 120 + 60 * k)),
        x_title="Predicted",
        y_title="True diagnosis",
        subtitle="row-normalised: share of each true class" if explain else None,
        legend=None,
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="bottom")
    return fig


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
        legend="below" if multi else "inside-tl",
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
        ("sensitivity", "Sensitivity", _PALETTE[0], "solid"),
        ("specificity", "Specificity", _PALETTE[1], "solid"),
        ("ppv", "PPV", _PALETTE[2], "dash"),
        ("npv", "NPV", _PALETTE[3], "dash"),
    )
    fig = _figure()
    for column, name, colour, dash in series:
        fig.add_trace(
            go.Scatter(
                x=table["threshold"].to_numpy(dtype=float),
                y=table[column].to_numpy(dtype=float),
                mode="lines",
                name=name,
                line={"color": colour, "dash": dash, "width": 2},
                hovertemplate=f"{name} %{{y:.3f}}<extra></extra>",
            )
        )
    _threshold_line(fig, t)
    _layout(
        fig,
        f"Trade-off by threshold — {partition_label(evaluation.partition).lower()}",
        420,
        x_title=f"Threshold on the probability of {target}",
        y_title="Value (share of cases)",
        legend="below",
    )
    fig.update_layout(hovermode="x unified")
    fig.update_xaxes(range=[0, 1], tickformat=".1f", hoverformat=".2f")
    fig.update_yaxes(range=[0, 1.04], tickformat=".1f")
    return fig


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
    fig = _figure(
        go.Bar(
            x=values[::-1],
            y=labels[::-1],
            orientation="h",
            marker={"color": _PALETTE[0]},
            text=[f"{v:.3f}" for v in values[::-1]],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}<br>mean |SHAP| %{x:.3f}<extra></extra>",
            name="Mean |SHAP value|",
        )
    )
    title = "Feature importance"
    if len(rest):
        title += f" (top {len(labels)} of {len(imp)} features)"
    _layout(
        fig,
        title,
        max(380, min(450, 100 + 24 * len(labels))),
        x_title=f"Mean |SHAP value| ({output})",
        legend=None,
    )
    fig.update_yaxes(type="category")
    fig.update_xaxes(range=[0, max(max(values, default=0.0), 1e-9) * 1.15])
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
    hover = "%{customdata[0]} = %{customdata[1]}<br>SHAP %{x:.3f}<extra></extra>"
    fig = _figure(
        go.Scattergl(
            x=x[has_value],
            y=y[has_value],
            mode="markers",
            name="Cases",
            marker={
                "color": c[has_value],
                "colorscale": [[0, _SHAP_BLUE], [1, _SHAP_RED]],
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
                marker={"color": _NEUTRAL, "size": 5, "opacity": 0.6},
                customdata=custom[~has_value],
                hovertemplate=hover,
            )
        )
    fig.add_vline(x=0, line={"color": _REFERENCE, "width": 1})
    _layout(
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
        (total). Red steps push toward ``case.class_name``, blue steps away.
    """
    _check_max_display(max_display)
    order = case.values.abs().sort_values(ascending=False, kind="stable").index
    shown = list(order[:max_display])
    rest = list(order[max_display:])
    labels = [f"{f} = {_format_value(case.data.get(f, np.nan))}" for f in shown]
    contributions = [float(case.values[f]) for f in shown]
    if rest:
        labels.append(f"other {len(rest)} features")
        contributions.append(float(case.values[rest].sum()))
    output = case.base_value + float(np.sum(contributions))
    output_name = _output_name(case.output_space, case.class_name)

    # Bottom to top: base value, then the smallest shown step up to the largest, then the output.
    y = ["Base value (average case)", *labels[::-1], "Model output (this case)"]
    x = [case.base_value, *contributions[::-1], output]
    measure = ["absolute", *(["relative"] * len(contributions)), "total"]
    text = [_plain(case.base_value), *[_signed(v) for v in contributions[::-1]], _plain(output)]
    # Leave room beside the extreme bars so the "outside" value labels are not clipped.
    path = case.base_value + np.cumsum([0.0, *contributions[::-1]])
    lo, hi = min(0.0, float(path.min())), max(0.0, float(path.max()))
    if threshold is not None and case.output_space == "probability":
        lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
    pad = 0.18 * (hi - lo) if hi > lo else 1.0
    fig = _figure(
        go.Waterfall(
            orientation="h",
            measure=measure,
            x=x,
            y=y,
            base=0,
            text=text,
            textposition="outside",
            cliponaxis=False,
            increasing={"marker": {"color": _SHAP_RED}},
            decreasing={"marker": {"color": _SHAP_BLUE}},
            totals={"marker": {"color": _NEUTRAL}},
            connector={"line": {"color": _REFERENCE, "width": 1}},
            hovertemplate="%{y}<br>%{text}<extra></extra>",
            name=f"Contributions to {output_name}",
        )
    )
    if threshold is not None and case.output_space == "probability":
        _threshold_line(fig, float(threshold))
    _layout(
        fig,
        f"Case {case.case_id}: {output_name} {_plain(output)}",
        max(380, min(450, 110 + 26 * len(y))),
        x_title=output_name[:1].upper() + output_name[1:],
        legend=None,
    )
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=y)
    fig.update_xaxes(range=[lo - pad, hi + pad])
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
    fig = _figure(
        go.Scattergl(
            x=x,
            y=explanation.values[keep, j].astype(float),
            mode="markers",
            name="Cases",
            marker={"color": _PALETTE[0], "size": 6, "opacity": 0.6},
            hovertemplate=f"{feature} = %{{x:,.4g}}<br>SHAP %{{y:.3f}}<extra></extra>"
            if is_numeric
            else f"{feature} = %{{x}}<br>SHAP %{{y:.3f}}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line={"color": _REFERENCE, "width": 1})
    _layout(
        fig,
        f"Effect of {feature}",
        400,
        x_title=feature,
        y_title=f"SHAP value ({output})",
        legend=None,
    )
    return fig


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
    fig = _figure(
        go.Bar(
            x=counts[::-1],
            y=[r[:1].upper() + r[1:] for r in rules][::-1],
            orientation="h",
            marker={"color": _PALETTE[1]},
            text=[f"{c:,} ({c / n_in:.1%})" for c in counts[::-1]],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:,} rows removed<extra></extra>",
            name="Rows removed",
        )
    )
    _layout(
        fig,
        f"Rows removed by rule ({report.n_input:,} in, {report.n_kept:,} kept)",
        max(300, min(420, 120 + 36 * len(rules))),
        x_title="Rows removed",
        legend=None,
    )
    fig.update_yaxes(type="category")
    # Head-room for the "n (share)" labels outside the longest bar.
    fig.update_xaxes(range=[0, max(max(counts, default=0), 1) * 1.3], tickformat=",d")
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
    subtitle = f"No rows removed by: {', '.join(unused)}" if unused else None
    height = 380
    # Explicit node positions keep the removals in the column beside "Kept": left to itself,
    # d3-sankey pushes every sink to the right edge where thin removal nodes crowd the
    # development/test labels. Heights follow d3's rule (the fullest column fills the plot).
    shown_removed = {rule: n for rule, n in removed.items() if n > 0}
    plot_px = height - _top_margin(True, subtitle) - _bottom_margin(None)
    pad = _FLOW_PAD / plot_px
    right = [
        (name, part, colour)
        for name, part, colour in (("Development", dev, _PALETTE[0]), ("Test", test, _PALETTE[3]))
        if part
    ]
    columns = [[rows_in], [*shown_removed.values(), kept], [part for _, part, _ in right]]
    scale = min((1 - (len(col) - 1) * pad) / sum(col) for col in columns if col and sum(col) > 0)
    labels = [f"Rows in<br>{rows_in:,}"]
    colours = [_NEUTRAL]
    node_x = [0.001]
    node_y = [0.5]
    sources: list[int] = []
    targets: list[int] = []
    values: list[int] = []
    link_colours: list[str] = []
    cursor = 0.0
    for rule, n in shown_removed.items():
        labels.append(f"Removed: {rule} ({n:,})")
        colours.append(_PALETTE[1])
        node_x.append(0.5)
        node_y.append(cursor + n * scale / 2)
        cursor += n * scale + pad
        sources.append(0)
        targets.append(len(labels) - 1)
        values.append(n)
        link_colours.append("rgba(213, 94, 0, 0.25)")
    labels.append(f"Kept<br>{kept:,}")
    colours.append(_PALETTE[2])
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
    fig = _figure(
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
    _layout(fig, "Flow of cases", height, subtitle=subtitle, legend=None)
    return fig


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
    from medimg_core.modelling.models import model_name

    names = [model_name(r.kind) for r in rows]
    fig = _figure()
    for chosen, trace_name, colour, size in (
        (False, "Other candidates", _PALETTE[0], 10),
        (True, "Chosen model", _PALETTE[1], 14),
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
    _layout(
        fig,
        "Model comparison",
        max(300, min(450, 120 + 40 * len(rows))),
        x_title="Cross-validated ROC AUC (95% CI)",
        legend="below",
    )
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=names)
    fig.update_xaxes(tickformat=".2f")
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
    fig = _figure()
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
            font={"size": 12, "color": _PALETTE[1]},
        )
    _layout(fig, None, 120, legend=None)
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
        _NEUTRAL if n == "(missing)" else _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)
    ]
    fig = _figure(
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
    _layout(
        fig, f"Class balance ({total:,} cases)", 340, x_title="Class", y_title="Cases", legend=None
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(tickformat=",d", range=[0, max(values, default=1) * 1.15])
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
    fig = _figure(
        go.Indicator(
            mode="number+gauge",
            value=p,
            number={"valueformat": ".2f", "font": {"size": 26}},
            domain={"x": [gauge_start, 1], "y": [0.0, 0.62]},
            gauge={
                "shape": "bullet",
                "axis": {"range": [0, 1], "tickformat": ".1f", "tickfont": {"size": 12}},
                "bar": {"color": _SHAP_RED if called else _SHAP_BLUE, "thickness": 0.5},
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
        font={"size": 13, "color": _SHAP_RED if called else _SHAP_BLUE},
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
    _layout(fig, None, 160, legend=None)
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


def _figure(data: Any = None) -> go.Figure:
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


def _layout(
    fig: go.Figure,
    title: str | None,
    height: int,
    *,
    x_title: str | None = None,
    y_title: str | None = None,
    legend: str | None = "below",
    subtitle: str | None = None,
) -> go.Figure:
    """The layout every medimg figure shares: white template, fixed height, tight margins."""
    top = _top_margin(title is not None, subtitle)
    bottom = _bottom_margin(legend)
    title_spec: dict[str, Any] = {
        "text": title or "",
        "x": 0.01,
        "xanchor": "left",
        "font": {"size": 16},
    }
    if subtitle:
        title_spec["subtitle"] = {"text": subtitle, "font": {"size": 12, "color": "#555555"}}
    fig.update_layout(
        height=height,
        title=title_spec,
        font={"size": 13},
        margin={"l": 10, "r": 10, "t": top, "b": bottom},
        hoverlabel={"font": {"size": 13}},
        showlegend=legend is not None,
    )
    if legend is not None:
        fig.update_layout(
            legend={
                **_LEGENDS[legend],
                "font": {"size": 12},
                "bgcolor": "rgba(255, 255, 255, 0.8)",
            }
        )
    fig.update_xaxes(automargin=True, title={"text": x_title} if x_title else None)
    fig.update_yaxes(automargin=True, title={"text": y_title} if y_title else None)
    return fig


def _top_margin(has_title: bool, subtitle: str | None) -> int:
    return 8 if not has_title else (78 if subtitle else 48)


def _bottom_margin(legend: str | None) -> int:
    return 30 if legend == "below" else 10


def _overlay(
    evaluations: tuple[Evaluation, ...],
    caller: str,
    traces_of: Callable[[Evaluation], list[go.Scatter]],
) -> tuple[go.Figure, bool]:
    """A figure with every partition's traces, and whether any partition is multi-class."""
    _require_evaluations(evaluations, caller)
    fig = _figure()
    for ev in evaluations:
        for trace in traces_of(ev):
            fig.add_trace(trace)
    return fig, any(_is_multiclass(ev) for ev in evaluations)


def _diagonal_trace(name: str) -> go.Scatter:
    return go.Scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        name=name,
        line={"color": _REFERENCE, "dash": "dash", "width": 1},
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
    _layout(fig, title, 450, x_title=x_title, y_title=y_title, legend=legend)
    fig.update_xaxes(range=[-0.01, 1.01], tickformat=".1f", constrain="domain")
    fig.update_yaxes(range=[-0.01, 1.02], tickformat=".1f")
    return fig


def _threshold_line(fig: go.Figure, threshold: float) -> None:
    fig.add_vline(
        x=threshold,
        line={"color": "#333333", "dash": "dot", "width": 1.5},
        annotation_text=f"threshold {threshold:.2f}",
        annotation_position="top",
        annotation_font_size=12,
    )


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
    from sklearn.metrics import roc_auc_score, roc_curve

    label = partition_label(ev.partition)
    colour = _PARTITION_COLOURS.get(ev.partition, _PALETTE[4])
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
    from sklearn.metrics import precision_recall_curve

    label = partition_label(ev.partition)
    colour = _PARTITION_COLOURS.get(ev.partition, _PALETTE[4])
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
    from sklearn.calibration import calibration_curve

    label = partition_label(ev.partition)
    colour = _PARTITION_COLOURS.get(ev.partition, _PALETTE[4])
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
        _PALETTE[j % len(_PALETTE)],
        _PARTITION_DASH.get(ev.partition, "dashdot"),
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
    """Threshold table from ``evaluation.tradeoff_table`` when available, else computed here."""
    columns = ["threshold", "sensitivity", "specificity", "ppv", "npv"]
    from medimg_core.modelling import evaluation as _evaluation_module

    table_fn = getattr(_evaluation_module, "tradeoff_table", None)
    if callable(table_fn):
        table = table_fn(evaluation, n_points=n_points)
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
        marker={"color": _PALETTE[5]},
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
    colours = [_PALETTE[5]] * len(names)
    if len(counts) > 10:
        names.append(f"other ({len(counts) - 10})")
        heights.append(int(counts.iloc[10:].sum()))
        colours.append(_NEUTRAL)
    return go.Bar(
        x=names,
        y=heights,
        marker={"color": colours},
        hovertemplate="%{x}: %{y:,} rows<extra></extra>",
        name="Rows",
    )


def _output_name(output_space: str, class_name: str) -> str:
    """The output space in words, e.g. "log-odds of malignant"."""
    return f"{output_space} of {class_name}"


def _target_name(ev: Evaluation) -> str:
    if ev.positive_class is not None:
        return str(ev.positive_class)
    return str(ev.class_names[-1]) if ev.class_names else "the positive class"


def _format_value(v: Any) -> str:
    """:func:`medimg_core.reporting.review.format_value`, cut at 30 characters to fit an axis or a hover."""
    from medimg_core.reporting.review import format_value

    text = format_value(v)
    return text if len(text) <= 30 else text[:29] + "…"


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


def _require_evaluations(evaluations: tuple[Evaluation, ...], name: str) -> None:
    if not evaluations:
        raise ConfigError(f"{name} needs at least one Evaluation, got none; pass e.g. result.cv.")
