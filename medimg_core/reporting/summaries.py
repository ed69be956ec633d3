"""Readable summaries of a trained model and its validation, built from the model card.

Everything here reads the card (``card.json``) or training results and returns plain tables,
mappings or figures, so a model trained a minute ago and one opened from the registry are
described the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from medimg_core.modelling.evaluation import (
    METRIC_KEYS,
    METRIC_LABELS,
    PARTITION_LABELS,
    Evaluation,
    MetricValue,
    format_metric,
)
from medimg_core.modelling.models import MODEL_KINDS, MODEL_NAMES, SEED_PCA_COMPONENTS, model_name
from medimg_core.modelling.selection import LeaderboardRow

__all__ = [
    "MODEL_CHOICES",
    "MODEL_NAMES",
    "SCALING_NAMES",
    "THRESHOLD_RULES",
    "FoldSummary",
    "calibration_frame",
    "card_facts",
    "card_metric",
    "card_model_text",
    "card_summary_frame",
    "choice_or_default",
    "flow_counts_from_card",
    "fold_figure",
    "fold_summary",
    "interval_text",
    "leaderboard_frame",
    "leaderboard_rows",
    "metric_from_card",
    "model_name",
    "split_frame",
]


MODEL_CHOICES: tuple[str, ...] = ("auto", *MODEL_KINDS, "seed")
"""The model kinds offered, in the order shown."""

SCALING_NAMES: dict[str, str] = {
    "standard": "Standardise (mean 0, SD 1)",
    "robust": "Robust (median, IQR)",
    "minmax": "Min–max to [0, 1]",
    "none": "No scaling",
}

THRESHOLD_RULES: dict[str, str] = {
    "0.5": "0.5 (conventional)",
    "youden": "Youden (max sensitivity + specificity)",
    "sensitivity": "Reach a target sensitivity",
}


def choice_or_default(value: Any, options: Sequence[Any], default: Any) -> Any:
    """``value`` when it is one of ``options`` (compared as numbers when both are), else
    ``default``: a widget's starting value taken from a saved setting must be a valid option."""
    for option in options:
        if option == value or str(option) == str(value):
            return option
        try:
            if float(option) == float(value):
                return option
        except (TypeError, ValueError):
            continue
    return default


def interval_text(metric: MetricValue, digits: int = 3) -> str:
    """ "95% CI 0.962–0.990" for a metric's interval, "no interval" when it has none."""
    low, high = metric.ci95
    if math.isfinite(low) and math.isfinite(high):
        return f"95% CI {low:.{digits}f}–{high:.{digits}f}"
    return "no interval"


def metric_from_card(entry: Mapping[str, Any] | None) -> MetricValue:
    """A card's ``{"value", "ci95"}`` entry as a :class:`MetricValue` (NaN where missing)."""
    nan = float("nan")
    if not entry:
        return MetricValue(nan, (nan, nan))
    value = entry.get("value")
    ci = list(entry.get("ci95") or [None, None])[:2]
    while len(ci) < 2:
        ci.append(None)
    return MetricValue(
        nan if value is None else float(value),
        (nan if ci[0] is None else float(ci[0]), nan if ci[1] is None else float(ci[1])),
    )


def card_metric(card: Mapping[str, Any], partition: str, metric: str) -> MetricValue:
    """One metric of a card, e.g. ``card_metric(card, "test", "roc_auc")``."""
    part = (card.get("metrics") or {}).get(partition) or {}
    return metric_from_card(part.get(metric))


def card_summary_frame(card: Mapping[str, Any]) -> pd.DataFrame:
    """The metrics table of :func:`medimg_core.modelling.evaluation.summary_frame`, from a card alone.

    For runs whose cases were not saved: the card keeps every metric with its interval.

    Parameters
    ----------
    card : the model card.

    Returns
    -------
    pandas.DataFrame
        Index = clinical metric names, one "value (95% CI)" column per partition in the card.
    """
    columns: dict[str, list[str]] = {}
    for partition, metrics in (card.get("metrics") or {}).items():
        if not metrics:
            continue
        name = PARTITION_LABELS.get(partition, partition)
        columns[name] = [format_metric(metric_from_card(metrics.get(k))) for k in METRIC_KEYS]
    frame = pd.DataFrame(columns, index=pd.Index([METRIC_LABELS[k] for k in METRIC_KEYS]))
    frame.index.name = "Metric"
    return frame


def calibration_frame(evaluations: Sequence[Evaluation]) -> pd.DataFrame:
    """Calibration slope and intercept, mean predicted and observed rates, per partition.

    Parameters
    ----------
    evaluations : binary evaluations (multi-class ones have no calibration statistics and are
        left out).

    Returns
    -------
    pandas.DataFrame
        Index ``Slope``, ``Intercept``, ``Mean predicted``, ``Observed rate``; one text column
        per partition ("Cross-validated", "Held-out test", "External"); "n/a" where the
        statistic does not exist (e.g. perfectly separated classes). Empty when no evaluation
        has calibration statistics.
    """
    names = {"cv": "Cross-validated", "test": "Held-out test", "external": "External"}
    rows = (
        ("Slope", "slope", 2),
        ("Intercept", "intercept", 2),
        ("Mean predicted", "mean_predicted", 3),
        ("Observed rate", "observed_rate", 3),
    )
    columns: dict[str, list[str]] = {}
    for ev in evaluations:
        stats = ev.calibration_stats
        if not stats:
            continue
        values = []
        for _, key, digits in rows:
            value = stats.get(key)
            if value is not None and math.isfinite(value):
                values.append(f"{value:.{digits}f}")
            else:
                values.append("n/a")
        columns[names.get(ev.partition, ev.partition)] = values
    if not columns:
        return pd.DataFrame()
    frame = pd.DataFrame(columns, index=pd.Index([label for label, _, _ in rows]))
    frame.index.name = "Calibration"
    return frame


def leaderboard_rows(entries: Sequence[Mapping[str, Any]]) -> tuple[LeaderboardRow, ...]:
    """Leaderboard rows back from their card dictionaries (``LeaderboardRow.to_dict``).

    Parameters
    ----------
    entries : the card's ``leaderboard`` list.

    Returns
    -------
    tuple of LeaderboardRow
        In the given order (best first as training wrote them).
    """
    return tuple(
        LeaderboardRow(
            kind=str(e.get("model", "")),
            roc_auc=metric_from_card(e.get("roc_auc")),
            accuracy=metric_from_card(e.get("accuracy")),
            fold_aucs=tuple(float(v) for v in (e.get("fold_aucs") or []) if v is not None),
            seconds=float(e.get("seconds") or 0.0),
            chosen=bool(e.get("chosen")),
        )
        for e in entries
    )


def leaderboard_frame(rows: Sequence[LeaderboardRow]) -> pd.DataFrame:
    """The ``auto`` comparison as a display table, best first.

    Parameters
    ----------
    rows : the leaderboard.

    Returns
    -------
    pandas.DataFrame
        Columns ``Chosen`` ("✓" for the deployed model), ``Model``, ``CV ROC AUC (95% CI)``,
        ``Fit time (s)``.
    """
    return pd.DataFrame(
        {
            "Chosen": ["✓" if r.chosen else "" for r in rows],
            "Model": [model_name(r.kind) for r in rows],
            "CV ROC AUC (95% CI)": [format_metric(r.roc_auc) for r in rows],
            "Fit time (s)": [round(r.seconds, 1) for r in rows],
        }
    )


def split_frame(card: Mapping[str, Any]) -> pd.DataFrame:
    """Rows, patients and classes per split, from the card's ``validation`` entry.

    Parameters
    ----------
    card : the model card.

    Returns
    -------
    pandas.DataFrame
        One column per split ("Development", and "Test" when there is one); rows ``Rows``,
        ``Patients`` (when grouped by patient) and one row per class (``Class <name>``).
    """
    validation = card.get("validation") or {}
    grouped = validation.get("grouped_by") is not None
    parts = [("Development", "dev")]
    if int(validation.get("n_test") or 0):
        parts.append(("Test", "test"))
    classes: list[str] = []
    for _, key in parts:
        for cls in validation.get(f"class_counts_{key}") or {}:
            if str(cls) not in classes:
                classes.append(str(cls))
    columns: dict[str, dict[str, Any]] = {}
    for name, key in parts:
        column: dict[str, Any] = {"Rows": int(validation.get(f"n_{key}") or 0)}
        if grouped:
            column["Patients"] = validation.get(f"patients_{key}")
        counts = {str(k): v for k, v in (validation.get(f"class_counts_{key}") or {}).items()}
        for cls in classes:
            column[f"Class {cls}"] = int(counts.get(cls, 0))
        columns[name] = column
    frame = pd.DataFrame(columns)
    frame.index.name = "Cases"
    return frame


def flow_counts_from_card(card: Mapping[str, Any]) -> dict[str, int]:
    """The stage counts of :func:`medimg_core.reporting.figures.data.flow_figure`, from a model card.

    Parameters
    ----------
    card : the model card (``dataset.rows_in``, ``dataset.removed_by_rule`` and the split).

    Returns
    -------
    dict
        ``{"rows in": n, <rule>: removed, ..., "development": n_dev, "test": n_test}``.
    """
    dataset = card.get("dataset") or {}
    validation = card.get("validation") or {}
    n_dev = int(validation.get("n_dev") or 0)
    n_test = int(validation.get("n_test") or 0)
    counts: dict[str, int] = {"rows in": int(dataset.get("rows_in") or n_dev + n_test)}
    for rule, n in (dataset.get("removed_by_rule") or {}).items():
        counts[str(rule)] = int(n or 0)
    counts["development"] = n_dev
    counts["test"] = n_test
    return counts


@dataclass(frozen=True)
class FoldSummary:
    """Per-fold scores of the cross-validation, with their spread.

    Attributes
    ----------
    metric : "ROC AUC" (binary) or "Accuracy" (multi-class).
    scores : one score per fold.
    mean, sd, low, high : mean, sample standard deviation, minimum and maximum (NaN when there
        are no scores; ``sd`` also with a single fold).
    """

    metric: str
    scores: tuple[float, ...]
    mean: float
    sd: float
    low: float
    high: float

    @classmethod
    def from_scores(cls, metric: str, scores: Sequence[float | None]) -> FoldSummary:
        """Summarise ``scores`` (missing and non-finite scores are left out)."""
        kept = tuple(float(s) for s in scores if s is not None and math.isfinite(s))
        n = len(kept)
        nan = float("nan")
        mean = sum(kept) / n if n else nan
        sd = math.sqrt(sum((s - mean) ** 2 for s in kept) / (n - 1)) if n > 1 else nan
        return cls(metric, kept, mean, sd, min(kept) if n else nan, max(kept) if n else nan)

    def text(self) -> str:
        """One sentence, e.g. "ROC AUC per fold: mean 0.991 (SD 0.006), range 0.982–0.998."."""
        if not self.scores:
            return "No per-fold scores were recorded."
        spread = "" if not math.isfinite(self.sd) else f" (SD {self.sd:.3f})"
        return (
            f"{self.metric} over {len(self.scores)} folds: mean {self.mean:.3f}{spread}, "
            f"range {self.low:.3f}–{self.high:.3f}."
        )


def fold_summary(card: Mapping[str, Any]) -> FoldSummary:
    """The card's per-fold scores (ROC AUC for two classes, accuracy otherwise)."""
    validation = card.get("validation") or {}
    classes = (card.get("features") or {}).get("classes") or []
    metric = "ROC AUC" if len(classes) <= 2 else "Accuracy"
    return FoldSummary.from_scores(metric, validation.get("fold_scores") or [])


def fold_figure(summary: FoldSummary) -> go.Figure:
    """One dot per cross-validation fold with the mean as a dashed line.

    Parameters
    ----------
    summary : the per-fold scores.

    Returns
    -------
    go.Figure
        A bar-free dot plot (folds on the x axis), height 260 px.
    """
    folds = [f"Fold {i + 1}" for i in range(len(summary.scores))]
    fig = go.Figure(
        go.Scatter(
            x=folds,
            y=list(summary.scores),
            mode="markers+text",
            text=[f"{s:.3f}" for s in summary.scores],
            textposition="top center",
            marker={"size": 12, "color": "#0072B2"},
            name=summary.metric,
            hovertemplate="%{x}: %{y:.3f}<extra></extra>",
        )
    )
    if summary.scores:
        fig.add_hline(
            y=summary.mean,
            line={"color": "#555555", "dash": "dash", "width": 1},
            annotation_text=f"mean {summary.mean:.3f}",
            annotation_position="bottom right",
        )
        pad = max(0.01, (summary.high - summary.low) * 0.6)
        fig.update_yaxes(range=[max(0.0, summary.low - pad), min(1.0, summary.high + pad) + 0.01])
    fig.update_layout(
        template="plotly_white",
        height=260,
        title={
            "text": f"{summary.metric} per cross-validation fold",
            "x": 0.01,
            "font": {"size": 15},
        },
        margin={"l": 10, "r": 10, "t": 44, "b": 10},
        font={"size": 13},
        showlegend=False,
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(tickformat=".2f", title={"text": summary.metric})
    return fig


def _threshold_text(card: Mapping[str, Any]) -> str:
    threshold = card.get("threshold") or {}
    value = threshold.get("value")
    if value is None:
        return "most probable class (no threshold)"
    method = str(threshold.get("method") or "unknown")
    rule = THRESHOLD_RULES.get(method, method)
    return f"{float(value):.3f} — rule: {rule}, chosen on development data"


def _created_text(created: Any) -> str:
    if not created:
        return "unknown"
    try:
        stamp = pd.Timestamp(str(created))
    except ValueError:
        return str(created)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%d %H:%M UTC")


def card_model_text(card: Mapping[str, Any]) -> str:
    """The card's model by name, saying when ``auto`` chose it.

    Parameters
    ----------
    card : the model card.

    Returns
    -------
    str
        "Logistic regression", or "Logistic regression (chosen by auto from 7 models)" when
        the card's leaderboard compared more than one model.
    """
    pipeline = card.get("pipeline") or {}
    name = model_name(pipeline.get("kind"))
    compared = len(card.get("leaderboard") or [])
    if compared > 1:
        return f"{name} (chosen by auto from {compared} models)"
    return name


def _pipeline_steps(pipeline: Mapping[str, Any]) -> list[str]:
    """The card's pipeline in words: imputation, scaling, optional PCA, the model."""
    kind = str(pipeline.get("kind") or pipeline.get("model") or "")
    scaling = "standard" if kind == "seed" else str(pipeline.get("scaling") or "standard")
    steps = ["impute missing values"]
    if scaling != "none":
        steps.append(SCALING_NAMES.get(scaling, scaling).split(" (")[0].lower())
    pca = pipeline.get("pca") or (SEED_PCA_COMPONENTS if kind == "seed" else None)
    if pca:
        steps.append(f"PCA ({pca} components)")
    steps.append("random forest (100 trees)" if kind == "seed" else model_name(kind).lower())
    return steps


def card_facts(card: Mapping[str, Any]) -> dict[str, str]:
    """The key facts of a model card, as short readable strings.

    Parameters
    ----------
    card : the model card.

    Returns
    -------
    dict
        Ordered: Model, Pipeline, Data, Label, Validation, Threshold, CV ROC AUC, Test ROC AUC,
        Top features, Created, Trained with.
    """
    pipeline = card.get("pipeline") or {}
    dataset = card.get("dataset") or {}
    validation = card.get("validation") or {}
    roles = card.get("roles") or {}
    features = card.get("features") or {}
    versions = card.get("versions") or {}
    n_features = len(features.get("feature_columns") or [])
    classes = dataset.get("classes") or {}
    class_text = ", ".join(f"{k}: {v}" for k, v in classes.items())
    if validation.get("grouped_by"):
        level = f"grouped by patient ({validation['grouped_by']})"
    else:
        level = "by row (no patient ID)"
    test_share = validation.get("test_size")
    test_text = f"{float(test_share):.0%} held-out test" if test_share else "no test set"
    steps = _pipeline_steps(pipeline)
    positive = card.get("positive_class")
    top = [str(t.get("feature")) for t in (card.get("top_features") or [])[:5]]
    facts = {
        "Model": card_model_text(card),
        "Pipeline": " → ".join(steps),
        "Data": (
            f"{dataset.get('name') or 'unnamed'}: {dataset.get('rows_in', '?')} rows in, "
            f"{dataset.get('rows_used', '?')} used, {n_features} features"
        ),
        "Label": (
            f"{roles.get('label')} ({class_text})"
            + (f"; positive class {positive}" if positive is not None else "")
        ),
        "Validation": (
            f"{validation.get('cv_folds', '?')}-fold cross-validation, {test_text}, split {level}"
        ),
        "Threshold": _threshold_text(card),
        "CV ROC AUC": format_metric(card_metric(card, "cv", "roc_auc")),
        "Test ROC AUC": format_metric(card_metric(card, "test", "roc_auc")),
        "Top features": ", ".join(top) if top else "not computed",
        "Created": _created_text(card.get("created")),
        "Trained with": ", ".join(
            f"{k} {versions[k]}" for k in ("medimg", "sklearn", "python") if k in versions
        ),
    }
    return facts
