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

from medimg_core.modelling.calibration import calibration_line
from medimg_core.modelling.evaluation import (
    METRIC_KEYS,
    PARTITION_LABELS,
    Evaluation,
    MetricValue,
    format_metric,
    metric_label,
)
from medimg_core.modelling.models import MODEL_KINDS, MODEL_NAMES, SEED_PCA_COMPONENTS, model_name
from medimg_core.modelling.selection import SELECTION_FREE_NOTE, LeaderboardRow
from medimg_core.modelling.subgroups import GroupMetrics
from medimg_core.tables.roles import class_key

__all__ = [
    "MODEL_CHOICES",
    "MODEL_NAMES",
    "SCALING_NAMES",
    "SELECTION_FREE_NOTE",
    "TEST_THRESHOLD_WARNING",
    "THRESHOLD_RULES",
    "FoldSummary",
    "calibration_frame",
    "card_facts",
    "card_metric",
    "card_model_text",
    "card_positive_text",
    "card_summary_frame",
    "choice_or_default",
    "describe_test_set",
    "flow_counts_from_card",
    "fold_figure",
    "fold_summary",
    "group_metrics_from_card",
    "human_date",
    "interval_text",
    "leaderboard_frame",
    "leaderboard_rows",
    "metric_from_card",
    "model_name",
    "reader_comparison_frame",
    "selection_free_metric",
    "split_frame",
    "storage_text",
    "stored_data_text",
    "threshold_origin",
    "threshold_rule_text",
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


TEST_THRESHOLD_WARNING = (
    "You are choosing the threshold while viewing the held-out test cases. A threshold chosen "
    "on the test set makes its test figures optimistic: they no longer describe new patients. "
    "Choose the threshold on the cross-validated development cases, and keep the test set for "
    "scoring the final choice once."
)


def threshold_rule_text(card: Mapping[str, Any]) -> str:
    """The saved threshold's rule in words, e.g. "Reach a target sensitivity (90%)"."""
    method = str((card.get("threshold") or {}).get("method"))
    rule = THRESHOLD_RULES.get(method, "unknown rule")
    if method == "sensitivity":
        settings = (card.get("validation") or {}).get("settings") or {}
        target = settings.get("target_sensitivity")
        if target is not None:
            rule += f" ({float(target):.0%})"
    return rule


def threshold_origin(card: Mapping[str, Any], threshold: float, moved_on: str | None = None) -> str:
    """Where the operating threshold came from, in words for the Predict page and exports.

    Parameters
    ----------
    card : the model card (its ``threshold`` entry holds the saved value and rule).
    threshold : the threshold in use.
    moved_on : the partition ("cv" or "test") the user viewed when setting the threshold on
        the Evaluate page; None when the saved threshold is in use.

    Returns
    -------
    str
        E.g. "threshold 0.500 saved with the model: rule “0.5 (conventional)”, chosen on
        cross-validated development cases".
    """
    saved = (card.get("threshold") or {}).get("value")
    rule = threshold_rule_text(card)
    at_saved = saved is not None and abs(float(threshold) - float(saved)) < 1e-9
    if moved_on is None or at_saved:
        return (
            f"threshold {float(threshold):.3f} saved with the model: rule “{rule}”, chosen on "
            "cross-validated development cases"
        )
    where = PARTITION_LABELS.get(moved_on, moved_on)
    text = (
        f"threshold {float(threshold):.3f}: set by the user on the Evaluate page from the "
        f"{where} cases"
        + (f" (the saved model keeps {float(saved):.3f}, rule “{rule}”)" if saved else "")
    )
    if moved_on == "test":
        text += "; chosen on the test set, so the test figures are optimistic"
    return text


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
        method=str(entry.get("method") or ""),
    )


def group_metrics_from_card(entries: Sequence[Mapping[str, Any]]) -> tuple[GroupMetrics, ...]:
    """The card's per-group (or per-site) metric entries as :class:`GroupMetrics`."""
    return tuple(
        GroupMetrics(
            column=str(e.get("column")),
            group=str(e.get("group")),
            partition=str(e.get("partition")),
            n=int(e.get("n") or 0),
            n_positive=int(e.get("n_positive") or 0),
            metrics={k: metric_from_card(v) for k, v in (e.get("metrics") or {}).items()},
            note=str(e.get("note") or ""),
            threshold=e.get("threshold"),
            grouping=str(e.get("grouping") or ""),
        )
        for e in entries
    )


def card_metric(card: Mapping[str, Any], partition: str, metric: str) -> MetricValue:
    """One metric of a card, e.g. ``card_metric(card, "test", "roc_auc")``."""
    part = (card.get("metrics") or {}).get(partition) or {}
    return metric_from_card(part.get(metric))


def selection_free_metric(card: Mapping[str, Any]) -> MetricValue | None:
    """The card's selection-free ROC AUC of ``auto`` (None when a single model was trained)."""
    entry = card.get("selection_free") or None
    if not entry:
        return None
    return metric_from_card(entry.get("roc_auc"))


def _card_class_name(card: Mapping[str, Any], value: Any) -> str:
    """A class of the card as users know it: its name from ``roles.class_names``, else itself."""
    key = class_key(value)
    names = (card.get("roles") or {}).get("class_names") or {}
    return str(names.get(key, key))


def card_positive_text(card: Mapping[str, Any]) -> str | None:
    """The card's positive class, named: "malignant (code 0)", or "malignant" for text labels.

    None for multi-class models.
    """
    positive = card.get("positive_class")
    if positive is None:
        return None
    name = _card_class_name(card, positive)
    return name if name == class_key(positive) else f"{name} (code {class_key(positive)})"


def card_summary_frame(card: Mapping[str, Any]) -> pd.DataFrame:
    """The metrics table of :func:`medimg_core.modelling.evaluation.summary_frame`, from a card alone.

    For runs whose cases were not saved: the card keeps every metric with its interval.

    Parameters
    ----------
    card : the model card.

    Returns
    -------
    pandas.DataFrame
        Index = clinical metric names ("Sensitivity for malignant" for a binary model), one
        "value (95% CI)" column per partition in the card.
    """
    columns: dict[str, list[str]] = {}
    for partition, metrics in (card.get("metrics") or {}).items():
        if not metrics:
            continue
        name = PARTITION_LABELS.get(partition, partition)
        columns[name] = [format_metric(metric_from_card(metrics.get(k))) for k in METRIC_KEYS]
    positive = card.get("positive_class")
    shown = _card_class_name(card, positive) if positive is not None else None
    frame = pd.DataFrame(columns, index=pd.Index([metric_label(k, shown) for k in METRIC_KEYS]))
    frame.index.name = "Metric"
    return frame


def reader_comparison_frame(card: Mapping[str, Any]) -> pd.DataFrame | None:
    """Performance with and without the reader-assessment features, from a card.

    Parameters
    ----------
    card : the model card (its ``without_reader`` entry, written when features were marked as
        a reader's assessment, e.g. BI-RADS).

    Returns
    -------
    pandas.DataFrame or None
        Index = clinical metric names ("Sensitivity for malignant"); columns "With <reader>"
        and "Without <reader>" per partition ("cross-validated", "held-out test"), each
        "value (95% CI)". None when no feature was marked as a reader's assessment.
    """
    entry = card.get("without_reader")
    if not entry:
        return None
    label = ", ".join(str(c) for c in entry.get("reader_columns") or ())
    metrics = card.get("metrics") or {}
    positive = card.get("positive_class")
    shown = _card_class_name(card, positive) if positive is not None else None
    names = {k: metric_label(k, shown) for k in METRIC_KEYS}
    columns: dict[str, list[str]] = {}
    for partition, title in (("cv", "cross-validated"), ("test", "held-out test")):
        with_part, without_part = metrics.get(partition), entry.get(partition)
        if not with_part:
            continue
        columns[f"With {label} ({title})"] = [
            format_metric(metric_from_card(with_part.get(k))) for k in METRIC_KEYS
        ]
        columns[f"Without {label} ({title})"] = [
            format_metric(metric_from_card((without_part or {}).get(k))) for k in METRIC_KEYS
        ]
    frame = pd.DataFrame(columns, index=pd.Index([names[k] for k in METRIC_KEYS]))
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
            note=str(e.get("note") or ""),
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
        ``Fit time (s)``, and ``Note`` when a row has one (e.g. the chosen forest was ranked
        with fewer trees; its row shows the deployed model's figures, as the headline does).
    """
    frame = pd.DataFrame(
        {
            "Chosen": ["✓" if r.chosen else "" for r in rows],
            "Model": [model_name(r.kind) for r in rows],
            "CV ROC AUC (95% CI)": [format_metric(r.roc_auc) for r in rows],
            "Fit time (s)": [round(r.seconds, 1) for r in rows],
        }
    )
    if any(r.note for r in rows):
        frame["Note"] = [r.note for r in rows]
    return frame


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


def storage_text(card: Mapping[str, Any]) -> str:
    """How the model's files are kept on disk, from the card's ``encryption`` section."""
    entry = card.get("encryption")
    if not isinstance(entry, Mapping):
        return (
            "saved in clear, before medimg encrypted its files; `medimg keys rotate` encrypts them"
        )
    files = ", ".join(str(f) for f in entry.get("encrypted") or [])
    plain = ", ".join(str(f) for f in entry.get("not_encrypted") or [])
    return (
        f"{files} encrypted at rest ({entry.get('cipher', 'encrypted')}), like the run's cases "
        f"and stored training table; not encrypted: {plain or 'nothing'} and the run registry"
    )


def _calibration_fact(card: Mapping[str, Any]) -> dict[str, str]:
    """``{"Calibration": "calibration (cv): intercept 0.11, slope 1.06; ..."}``, or nothing."""
    entries = card.get("calibration") or {}
    parts = [
        f"{name}: " + calibration_line(name, entries[key]).split(": ", 1)[1]
        for key, name in (("cv", "cross-validated"), ("test", "test"))
        if entries.get(key)
    ]
    return {"Calibration": "; ".join(parts)} if parts else {}


def human_date(value: Any) -> str:
    """A date as a clinician reads it: "2 January 2026, 14:05 UTC" ("unknown" when missing).

    ``value`` is a datetime or an ISO text; a naive time is taken as UTC, an aware one is
    converted to UTC. Text that is not a date is shown as given.
    """
    if value is None or value == "":
        return "unknown"
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if pd.isna(stamp):
        return "unknown"
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return f"{stamp.day} {stamp:%B %Y, %H:%M} UTC"


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


def describe_test_set(card: Mapping[str, Any]) -> str:
    """The card's test set in words: "MedMNIST's own test split, 156 images", "20% of patients
    held out at random, 114 rows" or "no test set" (older cards: from their settings).

    Parameters
    ----------
    card : the model card.
    """
    validation = card.get("validation") or {}
    if validation.get("test_split_text"):
        return str(validation["test_split_text"])
    n_test = int(validation.get("n_test") or 0)
    if not n_test:
        return "no test set"
    settings = validation.get("settings") or {}
    if validation.get("test_split") == "predefined" or settings.get("predefined_test"):
        return f"the file's own test split, {n_test:,} rows"
    share = float(validation.get("test_size") or 0.0)
    level = "patients" if validation.get("grouped_by") else "rows"
    return f"{share:.0%} of {level} held out at random, {n_test:,} rows"


def stored_data_text(card: Mapping[str, Any]) -> str:
    """What medimg keeps of a run's training data, in one sentence for the reader.

    Parameters
    ----------
    card : the model card (from the model directory, or the registry's copy with its
        ``stored_dataset`` section).

    Returns
    -------
    str
        Which columns the stored copy and ``cases.parquet`` hold: the label, the feature
        columns, the site and subgroup columns (for the per-group metrics) and the patient ID
        as a keyed pseudonym; identifying and other excluded columns are never kept.
    """
    stored = card.get("stored_dataset") or {}
    roles = card.get("roles") or {}
    features = stored.get("features")
    if features is None:
        features = (card.get("features") or {}).get("feature_columns") or []
    id_column = stored.get("id", roles.get("id"))
    text = f"the label ({roles.get('label')}), {len(features)} feature column(s)"
    analysis = stored.get("analysis")
    if analysis is None:
        named = [roles.get("site"), *(roles.get("subgroups") or [])]
        taken = {roles.get("label"), id_column, *features}
        analysis = [c for c in dict.fromkeys(named) if c and c not in taken]
    if analysis:
        text += f", the site and subgroup column(s) {', '.join(map(str, analysis))}"
    if id_column:
        text += f" and the patient ID ({id_column}) as a keyed pseudonym, never as uploaded"
    return (
        f"Kept for reproducing this run: {text}. Identifying and excluded columns are not "
        "stored, and the copy is deleted with the last run that uses it."
    )


def card_facts(card: Mapping[str, Any]) -> dict[str, str]:
    """The key facts of a model card, as short readable strings.

    Parameters
    ----------
    card : the model card.

    Returns
    -------
    dict
        Ordered: Model, Pipeline, Data, Stored data, Label, Validation, Threshold, CV ROC AUC,
        Selection-free CV ROC AUC (only when ``auto`` compared several models), Test ROC AUC,
        Calibration (binary models whose card has it), Top features, Encryption at
        rest, Created, Trained with.
    """
    pipeline = card.get("pipeline") or {}
    dataset = card.get("dataset") or {}
    validation = card.get("validation") or {}
    roles = card.get("roles") or {}
    features = card.get("features") or {}
    versions = card.get("versions") or {}
    n_features = len(features.get("feature_columns") or [])
    classes = dataset.get("classes") or {}
    class_text = ", ".join(
        f"{k}: {v}"
        if _card_class_name(card, k) == str(k)
        else f"{k} {_card_class_name(card, k)}: {v}"
        for k, v in classes.items()
    )
    if validation.get("grouped_by"):
        level = f"grouped by patient ({validation['grouped_by']})"
    else:
        level = "by row (no patient ID)"
    test_text = describe_test_set(card)
    steps = _pipeline_steps(pipeline)
    positive = card_positive_text(card)
    top = [str(t.get("feature")) for t in (card.get("top_features") or [])[:5]]
    free = selection_free_metric(card)
    facts = {
        "Model": card_model_text(card),
        "Pipeline": " → ".join(steps),
        "Data": (
            f"{dataset.get('name') or 'unnamed'}: {dataset.get('rows_in', '?')} rows in, "
            f"{dataset.get('rows_used', '?')} used, {n_features} features"
        ),
        "Stored data": stored_data_text(card),
        "Label": (
            f"{roles.get('label')} ({class_text})"
            + (f"; positive class {positive}" if positive is not None else "")
        ),
        "Validation": (
            f"{validation.get('cv_folds', '?')}-fold cross-validation; test set: {test_text}; "
            f"split {level}"
        ),
        "Threshold": _threshold_text(card),
        "CV ROC AUC": format_metric(card_metric(card, "cv", "roc_auc"))
        + (" (chosen model; optimistic, see the selection-free figure)" if free else ""),
        **(
            {"Selection-free CV ROC AUC": format_metric(free) + " (BBC-CV)"}
            if free is not None
            else {}
        ),
        "Test ROC AUC": format_metric(card_metric(card, "test", "roc_auc")),
        **_calibration_fact(card),
        "Top features": (
            ", ".join(top)
            + (f" (by {card['top_features_measure']})" if card.get("top_features_measure") else "")
            if top
            else "not computed"
        ),
        "Encryption at rest": storage_text(card),
        "Created": _created_text(card.get("created")),
        "Trained with": ", ".join(
            f"{k} {versions[k]}" for k in ("medimg", "sklearn", "python") if k in versions
        ),
    }
    return facts
