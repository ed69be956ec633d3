"""The model report: a saved run as a document a tumour board or an AI committee can read.

It follows the reporting standards for prediction models and medical-imaging AI (TRIPOD+AI
2024, CLAIM; ``../shared/docs/clinical-evaluation.md``): who trained what on which data, what
the model is for, how cases flowed from the file to the partitions, what the partitions look
like, how the model was validated, its performance with 95% intervals on every partition
(cross-validated, test, every recorded external evaluation), calibration, explanation, typical
errors, warnings, and a checklist saying where each reporting item is answered (or why not).

:func:`build_report` is pure: from a run's model, card, stored cases, stated context, recorded
external evaluations and readers' judgements it returns a :class:`ModelReport` (typed sections
of paragraphs, text tables and plotly figures). :func:`report_html` and :func:`report_pdf`
render it: a self-contained HTML page (figures as inline PNG, no plotly.js) and an A4 PDF
(``fpdf2``; page numbers, the run ID in every header, tables whose header repeats on each
page, figures drawn print-ready so they read in black and white). :func:`run_report` gathers a
run's inputs from the registry.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from medimg_core.access import Actor
from medimg_core.errors import ConfigError, DataError, MedimgError
from medimg_core.modelling.evaluation import (
    METRIC_KEYS,
    Evaluation,
    MetricValue,
    format_metric,
    metric_label,
)
from medimg_core.modelling.models import MedimgModel
from medimg_core.modelling.shift import NOTABLE_SHIFT, SMALL_SHIFT
from medimg_core.reporting.figures.evaluation import (
    calibration_figure,
    partition_label,
    roc_figure,
)
from medimg_core.reporting.summaries import (
    card_facts,
    card_model_text,
    card_positive_text,
    describe_test_set,
    group_metrics_from_card,
    human_date,
    metric_from_card,
    selection_free_metric,
    threshold_rule_text,
)
from medimg_core.store.registry import (
    RUN_CONTEXT_FIELDS,
    EvaluationRecord,
    FeedbackRecord,
    Registry,
    RunContext,
    RunRecord,
)

__all__ = [
    "CHECKLIST",
    "NOT_STATED",
    "REPORT_FORMATS",
    "ChecklistItem",
    "ModelReport",
    "ReportFigure",
    "ReportSection",
    "ReportTable",
    "build_report",
    "report_bytes",
    "report_html",
    "report_pdf",
    "run_report",
    "write_report",
]

NOT_STATED = "not stated"
"""What the report shows for a context field the run's owner left empty."""

REPORT_FORMATS = {".pdf": "pdf", ".html": "html", ".htm": "html"}
"""File extensions :func:`write_report` understands, and the format each means."""

CONTEXT_LABELS = {
    "intended_use": "Intended use",
    "target_population": "Target population",
    "reference_standard": "Reference standard",
    "clinical_setting": "Clinical setting",
    "intended_users": "Intended users",
}
"""Display names of the run-context fields, in report order."""

TOP_FEATURES_SHOWN = 6
"""Features whose distribution per partition the characteristics table shows."""

ERRORS_SHOWN = 3
"""False negatives (and false positives) listed per partition."""


@dataclass(frozen=True)
class ReportTable:
    """A table of text: a header row and rows of cells (all strings, already formatted).

    Attributes
    ----------
    headers : column titles.
    rows : the cells, one tuple per row, as long as ``headers``.
    caption : one sentence saying what the table shows.
    """

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(f"row {row!r} does not match the headers {self.headers!r}")


@dataclass(frozen=True)
class ReportFigure:
    """A figure of the report with what a reader needs without seeing it.

    Attributes
    ----------
    figure : the plotly figure, as the dashboard draws it.
    caption : what it shows, with its key numbers.
    alt : a text alternative (for screen readers and the HTML ``alt``).
    """

    figure: go.Figure
    caption: str
    alt: str


@dataclass(frozen=True)
class ReportSection:
    """One numbered section: paragraphs, then tables, then figures.

    Attributes
    ----------
    key : stable name used by the checklist ("identity", "performance", ...).
    title : the heading.
    paragraphs : text, in order.
    tables, figures : in order.
    """

    key: str
    title: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[ReportTable, ...] = ()
    figures: tuple[ReportFigure, ...] = ()


@dataclass(frozen=True)
class ChecklistItem:
    """One reporting item and where the report answers it.

    Attributes
    ----------
    standard : "TRIPOD+AI" or "CLAIM".
    item : its number in the standard ("3b", "21").
    text : the item in short.
    section : the key of the report section answering it; None when the report does not.
    note : why it is not reported (when ``section`` is None), or a qualification.
    """

    standard: str
    item: str
    text: str
    section: str | None
    note: str = ""


@dataclass(frozen=True)
class ModelReport:
    """A run's model report, ready to render.

    Attributes
    ----------
    title : the document title.
    run_id : the run reported (or the model directory's name for an unregistered model).
    generated : when the report was built (UTC).
    sections : in order; the last is the checklist.
    checklist : every TRIPOD+AI and CLAIM item with the section that answers it.
    """

    title: str
    run_id: str
    generated: datetime
    sections: tuple[ReportSection, ...]
    checklist: tuple[ChecklistItem, ...] = field(default=())

    def section(self, key: str) -> ReportSection:
        """The section with this key.

        Raises
        ------
        KeyError
            When the report has no such section.
        """
        for section in self.sections:
            if section.key == key:
                return section
        raise KeyError(key)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.sections)

    def numbered_title(self, key: str) -> str:
        """ "6. Performance" for the section with this key."""
        index = self.keys.index(key)
        return f"{index + 1}. {self.sections[index].title}"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.{digits}f}" if math.isfinite(number) else "n/a"


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _class_name(model: MedimgModel, value: Any) -> str:
    return str(model.display_name(value))


# --------------------------------------------------------------------------- sections


def _identity(
    model: MedimgModel, card: Mapping[str, Any], run_id: str, record: RunRecord | None
) -> ReportSection:
    dataset = card.get("dataset") or {}
    versions = card.get("versions") or {}
    created = record.created_at if record is not None else card.get("created")
    rows = [
        ("Run", run_id),
        ("Trained", human_date(created)),
        ("Owner", str((record.owner if record else None) or card.get("owner") or "unknown")),
        ("Project", str((record.project if record else None) or card.get("project") or "n/a")),
        ("Model", card_model_text(card)),
        ("Data set", str(dataset.get("name") or "unnamed")),
        ("Data hash (SHA-256 of the cleaned table)", str(dataset.get("hash") or "not recorded")),
        ("Model file SHA-256", str(card.get("model_sha256") or "not recorded")),
        ("Random seed", str(card.get("seed", model.config.seed))),
        ("Label", str(model.roles.label)),
    ]
    positive = card_positive_text(card)
    if positive is not None:
        rows.append(("Positive class", positive))
    version_text = ", ".join(f"{k} {v}" for k, v in versions.items()) or "not recorded"
    rows.append(("Library versions", version_text))
    facts = card_facts(card)
    paragraphs = (
        f"Pipeline: {facts.get('Pipeline', 'not recorded')}.",
        f"Storage: {facts.get('Encryption at rest', facts.get('Stored data', 'not recorded'))}.",
    )
    return ReportSection(
        "identity",
        "Model and run",
        paragraphs=paragraphs,
        tables=(ReportTable(("Item", "Value"), tuple(rows), "What was trained, on what, when."),),
    )


def _context(context: RunContext | None) -> ReportSection:
    rows = []
    for name in RUN_CONTEXT_FIELDS:
        value = str(getattr(context, name, "") or "").strip() if context is not None else ""
        rows.append((CONTEXT_LABELS[name], value or NOT_STATED))
    if context is not None and context.updated_at is not None:
        who = f"Stated by {context.updated_by or 'unknown'} on {human_date(context.updated_at)}."
    else:
        who = (
            "Nothing was stated for this run. Its owner can state the intended use, target "
            "population and reference standard on the Runs page or with `medimg runs context`."
        )
    return ReportSection(
        "context",
        "Intended use, population and reference standard",
        paragraphs=(who,),
        tables=(ReportTable(("Item", "As stated by the run's owner"), tuple(rows)),),
    )


def _flow(model: MedimgModel, card: Mapping[str, Any]) -> ReportSection:
    dataset = card.get("dataset") or {}
    cleaning = card.get("cleaning") or {}
    validation = card.get("validation") or {}
    rows_in = int(dataset.get("rows_in") or cleaning.get("rows_in") or 0)
    rows_used = int(dataset.get("rows_used") or cleaning.get("rows_kept") or rows_in)
    counts = cleaning.get("class_counts") or {}
    before = {str(k): int(v) for k, v in (counts.get("before") or {}).items()}
    after = {
        str(k): int(v) for k, v in (counts.get("after") or dataset.get("classes") or {}).items()
    }
    per_rule = counts.get("removed_by_rule")
    classes = list(after) or list(before)
    by_class_known = isinstance(per_rule, Mapping) and bool(before)
    names = [_class_name(model, c) for c in classes]
    headers = ("Step", "Rows", *(f"{n}" for n in names)) if by_class_known else ("Step", "Rows")

    def row(step: str, total: int, per_class: Mapping[str, Any] | None) -> tuple[str, ...]:
        if not by_class_known:
            return (step, f"{total:,}")
        cells = [f"{int((per_class or {}).get(c, 0)):,}" for c in classes]
        return (step, f"{total:,}", *cells)

    rows = [row("Rows in the file", rows_in, before)]
    for rule, removed in (
        dataset.get("removed_by_rule") or cleaning.get("removed_by_rule") or {}
    ).items():
        rule_classes = (per_rule or {}).get(rule) if isinstance(per_rule, Mapping) else None
        rows.append(row(f"Removed: {rule}", int(removed or 0), rule_classes or {}))
    rows.append(row("Used for modelling", rows_used, after))
    dev = {str(k): v for k, v in (validation.get("class_counts_dev") or {}).items()}
    test = {str(k): v for k, v in (validation.get("class_counts_test") or {}).items()}
    rows.append(row("Development (cross-validation)", int(validation.get("n_dev") or 0), dev))
    if int(validation.get("n_test") or 0):
        rows.append(row("Held-out test", int(validation.get("n_test") or 0), test))
    paragraphs = [
        f"{rows_in:,} rows were read and {rows_used:,} used; each cleaning rule's removals are "
        "listed below. Cleaning never removes a row because of its label and never treats "
        "different patients as duplicates.",
    ]
    if not by_class_known:
        paragraphs.append(
            "Removals per class: not recorded for this run (its card predates per-class "
            "cleaning counts)."
        )
    plan = cleaning.get("plan") or {}
    if plan:
        missing = plan.get("missing")
        how = (
            "kept and imputed inside the model (fitted on training folds only)"
            if missing == "impute"
            else "removed (complete-case analysis)"
        )
        paragraphs.append(f"Rows with missing predictor values were {how}.")
    if cleaning.get("applied") is False:
        paragraphs.append("Cleaning was switched off for this run: every row was used as read.")
    across = validation.get("ids_in_both_splits")
    if across is not None:
        paragraphs.append(
            f"Patients in both development and test data: {int(across)}; identical rows "
            f"across the split: {int(validation.get('identical_rows_across_splits') or 0)}."
        )
    return ReportSection(
        "flow",
        "Flow of cases",
        paragraphs=tuple(paragraphs),
        tables=(
            ReportTable(
                tuple(headers), tuple(rows), "Rows per step; removed rows are counted per rule."
            ),
        ),
    )


def _median_iqr(values: pd.Series) -> str:
    numbers = pd.to_numeric(values, errors="coerce").dropna()
    if numbers.empty:
        return "n/a"
    q1, med, q3 = np.percentile(numbers.to_numpy(dtype=float), [25, 50, 75])
    return f"{_num(med)} ({_num(q1)}–{_num(q3)})"


def _num(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _characteristics(
    model: MedimgModel, card: Mapping[str, Any], cases: pd.DataFrame | None
) -> ReportSection:
    validation = card.get("validation") or {}
    partitions = [("Development", "dev", "development")]
    if int(validation.get("n_test") or 0):
        partitions.append(("Test", "test", "test"))
    classes = [str(c) for c in model.classes]
    balance_rows = []
    for cls in classes:
        cells = [_class_name(model, cls)]
        for _, key, _part in partitions:
            counts = {
                str(k): int(v) for k, v in (validation.get(f"class_counts_{key}") or {}).items()
            }
            total = sum(counts.values())
            n = counts.get(cls, 0)
            cells.append(f"{n:,} ({_share(n, total)})")
        balance_rows.append(tuple(cells))
    headers = ("Class", *(name for name, _, _ in partitions))
    tables = [ReportTable(headers, tuple(balance_rows), "Class balance per partition.")]
    paragraphs: list[str] = []
    if cases is None:
        paragraphs.append(
            "Missingness and feature distributions per partition: not reported, because this "
            "run's cases were not saved."
        )
        return ReportSection(
            "characteristics", "Characteristics per partition", tuple(paragraphs), tuple(tables)
        )
    parts = {name: cases[cases["partition"] == part] for name, _, part in partitions}
    predictors = [c for c in model.feature_columns if c in cases.columns]
    missing_rows = []
    for column in predictors:
        missing = [int(frame[column].isna().sum()) for frame in parts.values()]
        if any(missing):
            missing_rows.append(
                (
                    column,
                    *(
                        f"{n:,} ({_share(n, len(frame))})"
                        for n, frame in zip(missing, parts.values(), strict=True)
                    ),
                )
            )
    if missing_rows:
        tables.append(
            ReportTable(
                ("Predictor", *parts),
                tuple(missing_rows),
                "Missing values per predictor and partition (predictors without any omitted).",
            )
        )
    else:
        paragraphs.append(
            f"None of the {len(predictors)} predictors had a missing value in any partition."
        )
    top = [str(t.get("feature")) for t in card.get("top_features") or []]
    numeric = set(model.numeric_columns)
    shown = [f for f in top if f in numeric and f in cases.columns][:TOP_FEATURES_SHOWN]
    if not shown:
        shown = [c for c in model.numeric_columns if c in cases.columns][:TOP_FEATURES_SHOWN]
    if shown:
        tables.append(
            ReportTable(
                ("Feature", *parts),
                tuple((f, *(_median_iqr(frame[f]) for frame in parts.values())) for f in shown),
                "Median (interquartile range) of the most influential features per partition.",
            )
        )
    return ReportSection(
        "characteristics",
        "Characteristics per partition",
        paragraphs=tuple(paragraphs),
        tables=tuple(tables),
    )


def _validation(card: Mapping[str, Any]) -> ReportSection:
    validation = card.get("validation") or {}
    grouped = validation.get("grouped_by")
    level = (
        f"patient level: cases were grouped by {grouped}, so no patient is in two partitions or "
        "two folds"
        if grouped
        else "row level: there is no patient ID, so one patient's rows could fall on both sides"
    )
    folds = validation.get("cv_folds", "?")
    paragraphs = [
        f"Splitting: {level}.",
        f"Test set: {describe_test_set(card)}; it was scored once, after every choice was made "
        "on development data.",
        f"Internal validation: {folds}-fold cross-validation on the development data; the "
        "cross-validated figures are out-of-fold predictions.",
    ]
    leaderboard = card.get("leaderboard") or []
    free = selection_free_metric(card)
    if len(leaderboard) > 1:
        text = (
            f"Model selection: {len(leaderboard)} models were compared by cross-validation "
            "and the best kept"
        )
        if free is not None:
            text += (
                f"; the selection-free ROC AUC (bootstrap bias-corrected cross-validation) is "
                f"{format_metric(free)}"
            )
        paragraphs.append(text + ".")
    else:
        paragraphs.append(
            "Model selection: one model type was trained (no selection among models)."
        )
    threshold = card.get("threshold") or {}
    if threshold.get("value") is not None:
        paragraphs.append(
            f"Operating threshold: {float(threshold['value']):.3f}, rule “{threshold_rule_text(card)}”, "
            f"chosen on {threshold.get('chosen_on') or 'development data'}."
        )
    n_boot = validation.get("n_boot")
    unit = validation.get("bootstrap_unit") or ("patient" if grouped else "row")
    if n_boot:
        paragraphs.append(
            f"95% intervals: percentile bootstrap with {int(n_boot):,} resamples of {unit}s, or an "
            "exact method where the bootstrap collapses (named next to each metric)."
        )
    scores = [s for s in validation.get("fold_scores") or [] if s is not None]
    if scores:
        paragraphs.append(
            f"Robustness across folds: ROC AUC per fold from {min(scores):.3f} to "
            f"{max(scores):.3f} (mean {float(np.mean(scores)):.3f})."
        )
    return ReportSection("validation", "Validation scheme", paragraphs=tuple(paragraphs))


def _metric_rows(
    columns: Sequence[Mapping[str, MetricValue]], positive: str | None
) -> tuple[tuple[str, ...], ...]:
    rows = []
    for key in METRIC_KEYS:
        cells = [format_metric(col[key]) if key in col else "n/a" for col in columns]
        if all(c == "n/a" for c in cells):
            continue
        rows.append((metric_label(key, positive), *cells))
    return tuple(rows)


def _performance(
    model: MedimgModel,
    card: Mapping[str, Any],
    evaluations: Sequence[Evaluation],
    external: Sequence[EvaluationRecord],
) -> ReportSection:
    positive = None if not model.is_binary else _class_name(model, model.positive_class)
    names: list[str] = []
    columns: list[Mapping[str, MetricValue]] = []
    if evaluations:
        for ev in evaluations:
            names.append(partition_label(ev.partition))
            columns.append(ev.metrics)
    else:
        for part, metrics in (card.get("metrics") or {}).items():
            if metrics:
                names.append(partition_label(part))
                columns.append({k: metric_from_card(v) for k, v in metrics.items()})
    for record in external:
        metrics = (record.result or {}).get("metrics") or {}
        names.append(f"External: {record.dataset_name or record.dataset_hash[:12]}")
        columns.append({k: metric_from_card(v) for k, v in metrics.items()})
    rows = _metric_rows(columns, positive)
    paragraphs = []
    if model.is_binary:
        negative = _class_name(model, next(c for c in model.classes if c != model.positive_class))
        paragraphs.append(
            f"Positive class: {positive}. Sensitivity and PPV are for finding {positive}, "
            f"specificity and NPV for clearing {negative}. Each cell: value (95% interval)."
        )
    else:
        paragraphs.append(
            f"{len(model.classes)} classes: macro averages of one-vs-rest figures. Each cell: "
            "value (95% interval)."
        )
    methods = []
    for name, col in zip(names, columns, strict=True):
        roc = col.get("roc_auc")
        if roc is not None and roc.method:
            methods.append(f"{name}: {roc.method}")
    if methods:
        paragraphs.append("ROC AUC interval method — " + "; ".join(methods) + ".")
    figures = []
    binary = [ev for ev in evaluations if ev.is_binary]
    if binary:
        auc = "; ".join(
            f"{partition_label(ev.partition)} ROC AUC {format_metric(ev.metrics['roc_auc'])}"
            for ev in binary
        )
        figures.append(
            ReportFigure(
                _distinct_lines(roc_figure(*binary)),
                f"ROC curves. {auc}.",
                f"ROC curves of the partitions; {auc}.",
            )
        )
    return ReportSection(
        "performance",
        "Performance with 95% intervals",
        paragraphs=tuple(paragraphs),
        tables=(ReportTable(("Metric", *names), rows, "Discrimination and accuracy figures."),),
        figures=tuple(figures),
    )


def _distinct_lines(fig: go.Figure) -> go.Figure:
    """Give each partition's curve its own dash pattern (the reference line, last, keeps its
    own), so printed in black and white the cross-validated and test curves still differ."""
    reference = fig.data[-1].line.dash
    patterns = [
        p for p in ("solid", "dot", "dashdot", "longdash", "dash", "longdashdot") if p != reference
    ]
    for i, trace in enumerate(fig.data[:-1]):
        trace.line.dash = patterns[i % len(patterns)]
    return fig


def _calibration_values(ev: Evaluation) -> tuple[float, float]:
    stats = ev.calibration_stats or {}
    return float(stats.get("intercept", float("nan"))), float(stats.get("slope", float("nan")))


def _calibration(
    card: Mapping[str, Any],
    evaluations: Sequence[Evaluation],
    external: Sequence[EvaluationRecord],
) -> ReportSection:
    rows = []
    for ev in evaluations:
        if not ev.is_binary:
            continue
        intercept, slope = _calibration_values(ev)
        rows.append(
            (
                partition_label(ev.partition),
                _fmt(intercept, 2) if math.isfinite(intercept) else "not estimable",
                _fmt(slope, 2) if math.isfinite(slope) else "not estimable",
                format_metric(ev.metrics["brier"]) if "brier" in ev.metrics else "n/a",
            )
        )
    if not evaluations:
        for part, entry in (card.get("calibration") or {}).items():
            if isinstance(entry, Mapping) and "intercept" in entry:
                rows.append(
                    (
                        partition_label(part),
                        _fmt(entry.get("intercept"), 2),
                        _fmt(entry.get("slope"), 2),
                        format_metric(
                            metric_from_card(
                                ((card.get("metrics") or {}).get(part) or {}).get("brier")
                            )
                        ),
                    )
                )
    for record in external:
        entry = (record.result or {}).get("calibration") or {}
        metrics = (record.result or {}).get("metrics") or {}
        rows.append(
            (
                f"External: {record.dataset_name or record.dataset_hash[:12]}",
                _fmt(entry.get("intercept"), 2),
                _fmt(entry.get("slope"), 2),
                format_metric(metric_from_card(metrics.get("brier"))),
            )
        )
    paragraphs = [
        "A slope of 1 and an intercept of 0 mean the probabilities can be taken at face value: "
        "a slope below 1 means over-confident extremes, an intercept above 0 probabilities that "
        "are too low on average. “Not estimable” means the classes are perfectly separated, so "
        "no logistic recalibration exists."
    ]
    figures = []
    binary = [ev for ev in evaluations if ev.is_binary]
    if binary:
        text = "; ".join(
            f"{partition_label(ev.partition)}: intercept {_fmt(_calibration_values(ev)[0], 2)}, "
            f"slope {_fmt(_calibration_values(ev)[1], 2)}"
            for ev in binary
        )
        figures.append(
            ReportFigure(
                _distinct_lines(calibration_figure(*binary)),
                f"Calibration (observed frequency against predicted probability, equal-count "
                f"bins). {text}.",
                f"Reliability curves with the perfect-calibration diagonal; {text}.",
            )
        )
    elif evaluations:
        paragraphs.append(
            "Multi-class model: one-vs-rest calibration is shown on the Evaluate page."
        )
    return ReportSection(
        "calibration",
        "Calibration",
        paragraphs=tuple(paragraphs),
        tables=(
            ReportTable(
                ("Partition", "Intercept", "Slope", "Brier score (95% CI)"),
                tuple(rows),
                "Logistic recalibration of logit(p): intercept with the slope fixed at 1.",
            ),
        ),
        figures=tuple(figures),
    )


def _explanation_section(card: Mapping[str, Any]) -> ReportSection:
    top = card.get("top_features") or []
    measure = str(card.get("top_features_measure") or "mean |SHAP value| over development cases")
    note = str(card.get("top_features_note") or "")
    paragraphs = [
        f"Method: SHAP values ({measure}). Each case's contributions add up, with the base "
        "value, to the model's output for that case; they are computed on the original feature "
        "columns (one-hot and PCA steps are folded back).",
        "Limits: contributions describe the model, not the disease; correlated features share "
        "credit between them, so a low rank does not mean a feature is irrelevant, and none of "
        "this is a causal effect. Permutation estimates (non-linear, non-tree models) carry a "
        "sampling error.",
    ]
    if note:
        paragraphs.append(note)
    rows = tuple(
        (str(i + 1), str(t.get("feature")), _fmt(t.get("importance"), 3))
        for i, t in enumerate(top[:10])
    )
    tables = (
        (ReportTable(("Rank", "Feature", "Importance"), rows, "Top features."),) if rows else ()
    )
    if not rows:
        paragraphs.append("Top features: not recorded for this run.")
    return ReportSection(
        "explanation", "Explanation method, its limits and top features", tuple(paragraphs), tables
    )


def _case_ref(cases: pd.DataFrame, index: Any, id_col: str | None) -> str:
    if id_col is not None and id_col in cases.columns:
        return f"patient {str(cases.at[index, id_col])[:12]}"
    return f"row {index}"


def _typical_errors(
    model: MedimgModel,
    cases: pd.DataFrame | None,
    *,
    explain: bool,
) -> ReportSection:
    title = "Typical false negatives and false positives"
    if cases is None:
        return ReportSection("errors", title, ("Not reported: this run's cases were not saved.",))
    if not model.is_binary:
        return ReportSection(
            "errors",
            title,
            (
                "Not reported as false negatives and positives: the model has "
                f"{len(model.classes)} classes; the Evaluate page lists misclassified cases.",
            ),
        )
    label = str(model.roles.label)
    id_col = model.roles.id if model.roles.id and model.roles.id in cases.columns else None
    truth = model.encode_labels(cases[label])
    p = cases["p_positive"].to_numpy(dtype=float)
    called = p >= model.threshold
    positive = _class_name(model, model.positive_class)
    picks: list[tuple[str, str, Any, float]] = []
    for part, part_name in (("development", "Cross-validated"), ("test", "Test")):
        in_part = (cases["partition"] == part).to_numpy()
        for kind, mask, order in (
            ("False negative", in_part & (truth == 1) & ~called, 1),
            ("False positive", in_part & (truth == 0) & called, -1),
        ):
            idx = np.flatnonzero(mask)
            # The most confident errors first: what a reader most needs to see.
            idx = idx[np.argsort(order * p[idx], kind="stable")][:ERRORS_SHOWN]
            picks.extend((kind, part_name, cases.index[int(i)], float(p[i])) for i in idx)
    paragraphs = [
        f"The most confident errors at the threshold {model.threshold:.3f} (at most "
        f"{ERRORS_SHOWN} of each kind per partition), by pseudonymous reference: false negatives "
        f"are {positive} cases the model cleared, false positives cases it called {positive}. "
        "Cross-validated probabilities are out-of-fold."
    ]
    reasons: dict[Any, str] = {}
    if picks and explain:
        try:
            reasons, method = _reasons(model, cases, [i for _, _, i, _ in picks])
            paragraphs.append(
                "Reasons are the three largest SHAP contributions of the final model (+ pushes "
                f"towards {positive})"
                + (
                    f"; {method} SHAP against {_REASON_BACKGROUND} development cases, a quick "
                    "estimate (the Explain page uses more)."
                    if method == "permutation"
                    else "."
                )
            )
        except MedimgError as exc:
            paragraphs.append(f"Reasons not shown: {exc}")
    if not picks:
        paragraphs.append("There was no misclassified case in any partition at this threshold.")
        return ReportSection("errors", title, tuple(paragraphs))
    rows = tuple(
        (
            kind,
            part_name,
            _case_ref(cases, index, id_col),
            f"{prob:.3f}",
            reasons.get(index, "not computed"),
        )
        for kind, part_name, index, prob in picks
    )
    table = ReportTable(
        ("Error", "Partition", "Case", f"P({positive})", "Top reasons"),
        rows,
        "No identifying column is shown; case references are keyed pseudonyms or row numbers.",
    )
    return ReportSection("errors", title, tuple(paragraphs), (table,))


_REASON_BACKGROUND = 30
"""Background rows of a permutation explanation of the listed errors: as for the card's top
features. With the Explain page's 100 a calibrated random forest on 66 image features took
over three minutes for twelve cases; the report is built while a user waits."""


def _reasons(
    model: MedimgModel, cases: pd.DataFrame, index: Sequence[Any]
) -> tuple[dict[Any, str], str]:
    """Top three reasons of each listed case, and the SHAP method's short name."""
    from medimg_core.modelling.explain import development_explainer

    development = model.prepare_features(cases[cases["partition"] == "development"])
    explainer = development_explainer(model, development, max_background=_REASON_BACKGROUND)
    explanation = explainer.explain(model.prepare_features(cases.loc[list(index)]))
    out: dict[Any, str] = {}
    for i, key in enumerate(index):
        case = explanation.case(i)
        out[key] = "; ".join(
            f"{feature} = {_value_text(value)} ({contribution:+.2f})"
            for feature, value, contribution in case.top_reasons(3)
        )
    return out, explanation.method.split(" (")[0]


def _value_text(value: Any) -> str:
    if isinstance(value, int | float | np.number) and not isinstance(value, bool):
        number = float(value)
        return "missing" if not math.isfinite(number) else _num(number)
    return "missing" if value is None or value is pd.NA else str(value)


def _external(external: Sequence[EvaluationRecord]) -> ReportSection:
    title = "External validation"
    if not external:
        return ReportSection(
            "external",
            title,
            (
                "No external evaluation is recorded for this run. Evaluate the saved model on "
                "another site's or period's file (Runs page or `medimg evaluate`) to add one.",
            ),
        )
    paragraphs = []
    tables = []
    for record in external:
        result = record.result or {}
        name = record.dataset_name or record.dataset_hash[:12]
        paragraphs.append(
            f"{name}: {record.n:,} cases, evaluated by {record.username} on "
            f"{human_date(record.created_at)} without refitting (data hash "
            f"{record.dataset_hash[:16]}…)."
            + (
                f" A recalibrated version was saved as run {record.recalibrated_run_id}."
                if record.recalibrated_run_id
                else ""
            )
        )
        for warning in result.get("warnings") or []:
            paragraphs.append(f"{name}: {warning}")
        shift = list(result.get("shift") or [])[:8]
        if shift:
            tables.append(
                ReportTable(
                    (
                        "Feature",
                        "Standardised difference",
                        "Mean (development)",
                        "Mean (new)",
                        "Missing (new)",
                    ),
                    tuple(
                        (
                            str(s.get("feature")),
                            _fmt(s.get("smd"), 2),
                            _value_text(s.get("mean_reference")),
                            _value_text(s.get("mean_new")),
                            _share(float(s.get("missing_new") or 0.0), 1.0),
                        )
                        for s in shift
                    ),
                    f"Largest feature shifts, {name} against the development data: "
                    f"standardised mean difference; |SMD| above {SMALL_SHIFT:g} is a small "
                    f"shift, above {NOTABLE_SHIFT:g} a notable one (Austin 2009).",
                )
            )
    return ReportSection(
        "external",
        title,
        paragraphs=(
            *paragraphs,
            "Metrics and calibration of each external evaluation are in the Performance and "
            "Calibration sections.",
        ),
        tables=tuple(tables),
    )


def _feedback_section(feedback: Sequence[FeedbackRecord]) -> ReportSection:
    title = "Reader feedback"
    if not feedback:
        return ReportSection(
            "feedback",
            title,
            ("No reader has judged a prediction of this run yet (Explain and Predict pages).",),
        )
    from medimg_core.reporting.feedback import feedback_summary

    summary = feedback_summary(feedback)
    rate = "n/a" if summary.agreement_rate is None else f"{summary.agreement_rate:.0%}"
    paragraphs = (
        f"{summary.n:,} case(s) judged by {summary.readers} reader(s): agree {summary.agree}, "
        f"disagree {summary.disagree}, unsure {summary.unsure}; agreement rate {rate} "
        "(over decided judgements; “unsure” is neither).",
    )
    rows = tuple(
        (
            str(cls),
            str(v.get("agree", 0)),
            str(v.get("disagree", 0)),
            str(v.get("unsure", 0)),
        )
        for cls, v in summary.by_predicted.items()
    )
    table = ReportTable(
        ("Predicted class", "Agree", "Disagree", "Unsure"), rows, "Judgements by predicted class."
    )
    return ReportSection("feedback", title, paragraphs, (table,))


def _warnings(card: Mapping[str, Any], extra: Sequence[str]) -> ReportSection:
    items = [str(w) for w in card.get("warnings") or []] + [str(w) for w in extra]
    if not items:
        items = ["No warning was raised for this run."]
    return ReportSection("warnings", "Warnings", tuple(items))


# --------------------------------------------------------------------------- checklist

_T = "TRIPOD+AI"
_C = "CLAIM"

CHECKLIST: tuple[tuple[str, str, str, str | None, str], ...] = (
    (_T, "1", "Title: development or evaluation, population, outcome", "identity", ""),
    (_T, "2", "Abstract", None, "a model report has no abstract; the sections stand for it"),
    (_T, "3a", "Healthcare context and rationale", "context", "as stated by the run's owner"),
    (_T, "3b", "Target population, place in the care pathway, intended users", "context", ""),
    (
        _T,
        "3c",
        "Known health inequalities",
        "subgroups",
        "shown as performance per subgroup when subgroup columns exist",
    ),
    (_T, "4", "Objectives: development and/or evaluation", "validation", ""),
    (_T, "5a", "Sources of data", "identity", ""),
    (
        _T,
        "5b",
        "Dates of data collection",
        None,
        "medimg records the data set, not when its cases were collected",
    ),
    (_T, "6a", "Setting and centres", "context", "clinical setting as stated"),
    (
        _T,
        "6b",
        "Eligibility criteria",
        "context",
        "target population as stated; exclusions by rule in Flow of cases",
    ),
    (_T, "6c", "Treatments received", None, "not part of an imaging feature table"),
    (_T, "7", "Data preparation and quality checks", "flow", ""),
    (_T, "8a", "Outcome and how it was assessed", "context", "reference standard as stated"),
    (_T, "8b", "Qualifications of outcome assessors", None, "not recorded by medimg"),
    (_T, "8c", "Blinding of outcome assessment", None, "not recorded by medimg"),
    (_T, "9a", "Choice of initial predictors", "characteristics", ""),
    (
        _T,
        "9b",
        "Definition and measurement of predictors",
        "identity",
        "feature definitions come from the data set or medimg's feature catalogue",
    ),
    (_T, "9c", "Qualifications of predictor assessors", None, "not recorded by medimg"),
    (
        _T,
        "10",
        "Sample size",
        "flow",
        "the cases available are reported; no sample-size calculation is made",
    ),
    (
        _T,
        "11",
        "Missing data and how they were handled",
        "characteristics",
        "handling in Flow of cases",
    ),
    (_T, "12a", "How data were used: development and evaluation", "validation", ""),
    (_T, "12b", "How predictors were handled", "identity", "the pipeline"),
    (_T, "12c", "Model type, building, tuning and internal validation", "validation", ""),
    (_T, "12d", "Heterogeneity across clusters", "subgroups", ""),
    (_T, "12e", "Performance measures and their intervals", "performance", ""),
    (_T, "12e", "Clinical utility: net benefit (decision curve)", "decision", ""),
    (
        _T,
        "12f",
        "Model updating (recalibration)",
        "updating",
        "recalibrated versions saved from external evaluations",
    ),
    (_T, "12g", "Model evaluation on external data", "external", ""),
    (
        _T,
        "13",
        "Class imbalance",
        "characteristics",
        "class balance per partition; the threshold rule in Validation scheme",
    ),
    (_T, "14", "Fairness", "subgroups", ""),
    (_T, "15", "Model output and the decision threshold", "validation", ""),
    (_T, "15", "Model output: per-case prediction sets and their coverage", "conformal", ""),
    (
        _T,
        "16",
        "Differences between development and evaluation data",
        "characteristics",
        "and feature shift in External validation",
    ),
    (_T, "17", "Ethical approval", None, "outside the software: state it in the study protocol"),
    (_T, "18a", "Funding", None, "outside the software"),
    (_T, "18b", "Conflicts of interest", None, "outside the software"),
    (_T, "18c", "Protocol", None, "outside the software"),
    (_T, "18d", "Registration", None, "outside the software"),
    (
        _T,
        "18e",
        "Data availability",
        "identity",
        "the stored copy and its hash; sharing is the owner's decision",
    ),
    (_T, "18f", "Code availability", "identity", "library versions; medimg's source is the code"),
    (_T, "19", "Patient and public involvement", None, "outside the software"),
    (_T, "20a", "Flow of participants", "flow", ""),
    (_T, "20b", "Characteristics of the participants", "characteristics", ""),
    (_T, "20c", "Comparison of development and evaluation data", "characteristics", ""),
    (_T, "21", "Participants and outcome events in each analysis", "flow", ""),
    (_T, "22", "Model specification", "identity", "the saved model file with its SHA-256"),
    (_T, "23a", "Performance with confidence intervals", "performance", ""),
    (_T, "23b", "Performance across subgroups", "subgroups", ""),
    (_T, "24", "Model updating results", "updating", ""),
    (_T, "25", "Interpretation", None, "for the authors; the report gives the evidence"),
    (_T, "26", "Limitations", "warnings", ""),
    (_T, "27a", "Handling of poor-quality or missing input data in use", "flow", ""),
    (_T, "27b", "User interaction and expertise needed", "context", "intended users as stated"),
    (_T, "27c", "Future research", None, "for the authors"),
    (_C, "7", "Data sources", "identity", ""),
    (_C, "8", "Eligibility criteria", "context", ""),
    (_C, "9", "Data pre-processing", "flow", ""),
    (_C, "12", "De-identification", "errors", "only keyed pseudonyms are stored and shown"),
    (_C, "13", "Missing data", "characteristics", ""),
    (_C, "14", "Ground truth (reference standard) definition", "context", ""),
    (_C, "18", "Inter-rater variability", None, "not recorded by medimg"),
    (_C, "20", "Assignment of data to partitions", "validation", ""),
    (_C, "21", "Level of disjunction between partitions", "validation", ""),
    (_C, "22", "Model description", "identity", ""),
    (_C, "23", "Software libraries and versions", "identity", ""),
    (_C, "24", "Initialisation of model parameters (seed)", "identity", ""),
    (_C, "26", "Method of selecting the final model", "validation", ""),
    (_C, "28", "Metrics of model performance", "performance", ""),
    (_C, "29", "Statistical measures of uncertainty", "performance", ""),
    (_C, "30", "Robustness or sensitivity analysis", "validation", "variation across folds"),
    (_C, "31", "Methods for explainability", "explanation", ""),
    (_C, "32", "Validation on external data", "external", ""),
    (_C, "33", "Flow of participants or cases", "flow", ""),
    (_C, "34", "Characteristics of cases per partition", "characteristics", ""),
    (_C, "35", "Performance on all data partitions", "performance", ""),
    (_C, "36", "Estimates of diagnostic accuracy and their precision", "performance", ""),
    (_C, "37", "Failure analysis", "errors", ""),
    (_C, "38", "Study limitations", "warnings", ""),
    (_C, "40", "Registration", None, "outside the software"),
    (_C, "42", "Sources of funding", None, "outside the software"),
)
"""(standard, item, short text, report section key or None, note): TRIPOD+AI 2024 and the
CLAIM items (2020 numbering, as in ``clinical-evaluation.md``) a model report can answer."""


def _checklist(keys: Sequence[str]) -> tuple[ChecklistItem, ...]:
    items = []
    for standard, item, text, section, note in CHECKLIST:
        if section is not None and section not in keys:
            why = OPTIONAL_REASONS.get(section, f"the {section} analysis is not available")
            note = f"not reported for this run: {why}"
            section = None
        elif section == "updating":
            section = "external"
        items.append(ChecklistItem(standard, item, text, section, note))
    return tuple(items)


def _checklist_section(items: Sequence[ChecklistItem], titles: Mapping[str, str]) -> ReportSection:
    rows = tuple(
        (
            f"{it.standard} {it.item}",
            it.text,
            titles[it.section] if it.section is not None else "not reported",
            it.note,
        )
        for it in items
    )
    answered = sum(1 for it in items if it.section is not None)
    return ReportSection(
        "checklist",
        "Reporting checklist (TRIPOD+AI, CLAIM)",
        (
            f"{answered} of {len(items)} items are answered in this report; the others are "
            "listed with the reason they are not.",
        ),
        (ReportTable(("Item", "Topic", "Where answered", "Note"), rows),),
    )


# --------------------------------------------------------------------------- builder


def build_report(
    *,
    model: MedimgModel,
    card: Mapping[str, Any],
    cases: pd.DataFrame | None,
    run_id: str,
    record: RunRecord | None = None,
    context: RunContext | None = None,
    external: Sequence[EvaluationRecord] = (),
    feedback: Sequence[FeedbackRecord] = (),
    evaluations: Sequence[Evaluation] | None = None,
    generated: datetime | None = None,
    explain_errors: bool = True,
    extra_sections: Sequence[Callable[..., ReportSection | None]] = (),
) -> ModelReport:
    """Build the model report of a run.

    Parameters
    ----------
    model, card : the saved model and its card.
    cases : the run's stored cases (``cases.parquet``); None when the model was saved without
        them (the report then says what it cannot show).
    run_id : the run's ID (or the model directory's name for an unregistered model).
    record : the run's registry record (for its date, owner and project).
    context : the intended use etc. stated by the run's owner; None when nothing was stated.
    external : the run's recorded external evaluations.
    feedback : readers' judgements of the run's predictions.
    evaluations : the cross-validated and test evaluations; default: rebuilt from ``cases``
        with the run's bootstrap settings (the numbers the card shows).
    generated : the report's time stamp (default now).
    explain_errors : add each listed error's top SHAP reasons.
    extra_sections : more section builders, each called with ``model=, card=, cases=,
        evaluations=`` and returning a section or None; inserted before Warnings.

    Returns
    -------
    ModelReport
        Every section in order, the checklist last.
    """
    extra_warnings: list[str] = []
    if evaluations is None:
        evaluations = ()
        if cases is not None:
            evaluations = _rebuild(model, card, cases)
    evaluations = tuple(evaluations)
    sections = [
        _identity(model, card, run_id, record),
        _context(context),
        _flow(model, card),
        _characteristics(model, card, cases),
        _validation(card),
        _performance(model, card, evaluations, external),
        _calibration(card, evaluations, external),
    ]
    for builder in (*_optional_sections(), *extra_sections):
        try:
            section = builder(model=model, card=card, cases=cases, evaluations=evaluations)
        except MedimgError as exc:
            extra_warnings.append(f"A section of the report could not be built: {exc}")
            continue
        if section is not None:
            sections.append(section)
    sections += [
        _explanation_section(card),
        _typical_errors(model, cases, explain=explain_errors),
        _external(external),
        _feedback_section(feedback),
        _warnings(card, extra_warnings),
    ]
    titles = {s.key: f"{i + 1}. {s.title}" for i, s in enumerate(sections)}
    # The External validation section is always there, but answers the checklist only when
    # an evaluation (or a recalibrated version made from one) is recorded.
    keys = [s.key for s in sections if s.key != "external" or external]
    if any(e.recalibrated_run_id or e.result.get("recalibration") for e in external):
        keys.append("updating")
    checklist = _checklist(keys)
    sections.append(_checklist_section(checklist, titles))
    label = model.roles.label
    task = (
        f"{_class_name(model, model.positive_class)} vs "
        f"{_class_name(model, next(c for c in model.classes if c != model.positive_class))}"
        if model.is_binary
        else f"{len(model.classes)} classes"
    )
    return ModelReport(
        title=f"Model report: {card_model_text(card)} predicting {label} ({task})",
        run_id=run_id,
        generated=generated or datetime.now(UTC),
        sections=tuple(sections),
        checklist=checklist,
    )


def _optional_sections() -> tuple[Callable[..., ReportSection | None], ...]:
    """Builders of the sections of analyses a run may lack (decision curves for two-class
    models, subgroups when subgroup columns exist, prediction sets), in report order."""
    return (_decision_section, _subgroup_section, _conformal_section)


OPTIONAL_REASONS = {
    "decision": "decision curves are drawn for two-class models with stored cases only",
    "subgroups": "the data have no site, sex, age or marked subgroup column",
    "conformal": "prediction sets need the run's stored cases",
    "external": "no external evaluation is recorded for this run (Runs page or `medimg evaluate`)",
    "updating": "no recalibrated version was saved from an external evaluation",
}
"""Why an optional section is absent, for the checklist."""


def _decision_section(
    *, model: MedimgModel, evaluations: Sequence[Evaluation], **_: Any
) -> ReportSection | None:
    from medimg_core.modelling.decision import evaluation_curve, net_benefit_at
    from medimg_core.reporting.decision import net_benefit_frame
    from medimg_core.reporting.figures.decision import decision_figure

    curves = [c for c in (evaluation_curve(ev) for ev in evaluations) if c is not None]
    if not curves:
        return None
    positive = _class_name(model, model.positive_class)
    paragraphs = [
        "Net benefit weighs the cases of "
        f"{positive} found against the false alarms, at the exchange rate a threshold "
        "probability t implies (a false alarm costs t/(1 − t) of a case found). The model is "
        "worth using where its curve lies above both “treat all” and “treat none” (0)."
    ]
    marked = []
    for curve in curves:
        if curve.chosen_threshold is not None:
            reading = net_benefit_at(curve)
            paragraphs.append(f"{partition_label(curve.partition)}: {reading.sentence(positive)}")
            marked.append(
                f"{partition_label(curve.partition)}: net benefit {reading.net_benefit:.3f} "
                f"vs {reading.treat_all:.3f} treating all at t = {reading.threshold:.2f}"
            )
    frame = net_benefit_frame(curves)
    rows = tuple(
        (
            str(r["Cases"]),
            str(r["Threshold"]),
            _fmt(r["Model"]),
            _fmt(r["Treat everyone"]),
            _fmt(r["Fewer unnecessary interventions per 100"], 1),
            str(r["Best"]),
        )
        for _, r in frame.iterrows()
    )
    table = ReportTable(
        ("Cases", "Threshold", "Model", "Treat all", "Fewer interventions per 100", "Best"),
        rows,
        "Net benefit at the chosen threshold and at common thresholds (treat none = 0).",
    )
    caption = "Decision curves" + (f": {'; '.join(marked)}." if marked else ".")
    figure = ReportFigure(
        decision_figure(curves, positive_class=positive),
        caption,
        "Net benefit against threshold probability for the model, treat all and treat none; "
        + ("; ".join(marked) or "no threshold marked"),
    )
    return ReportSection(
        "decision", "Decision curve (clinical utility)", tuple(paragraphs), (table,), (figure,)
    )


_GROUP_PARTITIONS = {"cv": "Cross-validated", "test": "Test", "held-out site": "Held-out site"}


def _subgroup_section(
    *, model: MedimgModel, card: Mapping[str, Any], cases: pd.DataFrame | None, **_: Any
) -> ReportSection | None:
    from medimg_core.modelling.subgroups import subgroup_card
    from medimg_core.reporting.figures.subgroups import forest_figure

    entry = card.get("subgroups")
    if not entry and cases is not None:
        columns = [c for c in model.roles.analysis_columns() if c in cases.columns]
        if columns:
            n_boot = int((card.get("validation") or {}).get("n_boot") or 1000)
            entry = subgroup_card(model, cases, columns, n_boot=n_boot)
    site = card.get("leave_one_site_out")
    if not entry and not site:
        return None
    positive = _class_name(model, model.positive_class) if model.is_binary else None
    keys = (
        ("roc_auc", "sensitivity", "specificity")
        if positive is not None
        else ("accuracy", "balanced_accuracy", "roc_auc")
    )
    counted = (
        f"Cases ({positive})"
        if positive is not None
        else f"Cases (not {_class_name(model, model.classes[0])})"
    )
    headers = ("Column", "Group", "Data", counted, *(metric_label(k, positive) for k in keys))
    rows = []
    paragraphs = []
    for column, groups in (entry or {}).items():
        paragraphs.append(f"{column}: groups {groups.get('grouping') or 'as recorded'}.")
        for partition in ("cv", "test"):
            for g in group_metrics_from_card(groups.get(partition) or []):
                rows.append(
                    (
                        str(column),
                        g.group,
                        _GROUP_PARTITIONS.get(partition, partition),
                        f"{g.n:,} ({g.n_positive:,})",
                        *(format_metric(g.metrics[k]) if k in g.metrics else "n/a" for k in keys),
                    )
                )
    tables = []
    if rows:
        tables.append(ReportTable(headers, tuple(rows), "Metrics with 95% intervals per subgroup."))
    figures = []
    if site:
        per_site = group_metrics_from_card(site.get("per_site") or [])
        pooled = site.get("pooled") or {}
        reference = metric_from_card(pooled.get("roc_auc")) if pooled else None
        paragraphs.append(
            f"Leave-one-site-out validation by {site.get('site_column')}: each site in turn was "
            "held out, the model retrained on the others and scored once on it."
        )
        paragraphs.extend(str(n) for n in site.get("notes") or [])
        if per_site:
            values = "; ".join(
                f"{g.group} {format_metric(g.metrics['roc_auc'])}"
                for g in per_site
                if "roc_auc" in g.metrics
            )
            figures.append(
                ReportFigure(
                    forest_figure(per_site, "roc_auc", reference=reference, positive=positive),
                    f"ROC AUC per held-out site (95% CI): {values}"
                    + (f"; pooled {format_metric(reference)}." if reference is not None else "."),
                    f"Forest plot of ROC AUC per held-out site: {values}.",
                )
            )
            tables.append(
                ReportTable(
                    headers,
                    tuple(
                        (
                            str(site.get("site_column")),
                            g.group,
                            "Held-out site",
                            f"{g.n:,} ({g.n_positive:,})",
                            *(
                                format_metric(g.metrics[k]) if k in g.metrics else "n/a"
                                for k in keys
                            ),
                        )
                        for g in per_site
                    ),
                    "Leave-one-site-out: each site scored by a model trained without it.",
                )
            )
    notes = sorted(
        {
            f"{g['group']}: {g['note']}"
            for groups in (entry or {}).values()
            for p in ("cv", "test")
            for g in groups.get(p) or []
            if g.get("note")
        }
    )
    paragraphs.extend(notes)
    return ReportSection(
        "subgroups", "Subgroups and sites", tuple(paragraphs), tuple(tables), tuple(figures)
    )


def _conformal_section(
    *, model: MedimgModel, cases: pd.DataFrame | None, **_: Any
) -> ReportSection | None:
    from medimg_core.modelling.conformal import conformal_summary

    if cases is None:
        return None
    rows = []
    paragraphs = [
        "Per-case prediction sets (conformal prediction, calibrated per class on the out-of-fold "
        "development probabilities): a set with more than one class means “uncertain, refer”. "
        "The guarantee is on average over cases like the development data; the coverage on the "
        "held-out test cases is measured once."
    ]
    for confidence in (0.9, 0.95):
        summary = conformal_summary(model, cases, confidence=confidence)
        paragraphs.append(summary.sentence)
        coverage = (
            "n/a"
            if summary.test_coverage is None
            else f"{summary.test_coverage:.1%}"
            + (
                f" ({summary.test_coverage_ci95[0]:.1%}–{summary.test_coverage_ci95[1]:.1%})"
                if summary.test_coverage_ci95 is not None
                else ""
            )
        )
        sizes = summary.set_sizes
        rows.append(
            (
                f"{confidence:.0%}",
                coverage,
                ", ".join(f"{k} {v:.0%}" for k, v in summary.test_coverage_by_class.items())
                or "n/a",
                f"{sizes.get('single', 0):,}",
                f"{sizes.get('both/uncertain', 0):,}",
                f"{sizes.get('empty', 0):,}",
                f"{summary.n_calibration:,}",
            )
        )
        paragraphs.extend(n for n in summary.notes if n not in paragraphs)
    table = ReportTable(
        (
            "Target",
            "Test coverage (95% CI)",
            "Per class",
            "Single-class sets",
            "Uncertain sets",
            "Empty sets",
            "Calibration cases",
        ),
        tuple(rows),
        "Coverage achieved on the held-out test cases next to the target.",
    )
    return ReportSection(
        "conformal", "Prediction sets and their coverage", tuple(paragraphs), (table,)
    )


def _rebuild(
    model: MedimgModel, card: Mapping[str, Any], cases: pd.DataFrame
) -> tuple[Evaluation, ...]:
    from medimg_core.store.cases import case_evaluations

    validation = card.get("validation") or {}
    settings = validation.get("settings") or {}
    n_boot = int(settings.get("n_boot") or validation.get("n_boot") or 1000)
    cv, test = case_evaluations(model, cases, n_boot=n_boot)
    return (cv,) if test is None else (cv, test)


def run_report(
    actor: Actor,
    target: str | os.PathLike[str],
    *,
    registry: Registry | None = None,
    explain_errors: bool = True,
) -> ModelReport:
    """The report of a recorded run (by ID) or of a model directory.

    A model directory recorded in the registry is reported as its run (with its stated
    context, external evaluations and readers' judgements); an unrecorded one from its files.

    Raises
    ------
    RegistryError
        An ID that is not a run of the actor's projects.
    ModelFileError
        A directory that is not a medimg model directory, or damaged files.
    """
    from medimg_core.store.cases import CASES_NAME, load_cases
    from medimg_core.store.persistence import load_model

    own = registry is None
    reg = registry if registry is not None else Registry()
    try:
        path = Path(target).expanduser()
        record: RunRecord | None = None
        if path.is_dir():
            resolved = path.resolve()
            for run in reg.list_runs(actor):
                if Path(run.model_dir).resolve() == resolved:
                    record = run
                    break
        else:
            record = reg.get_run(actor, str(target))
            path = record.model_dir
        loaded = load_model(path)
        # A model saved without its cases is reported from its card; damaged cases are refused
        # (a report quietly missing half its sections would look complete).
        cases: pd.DataFrame | None = None
        if (loaded.directory / CASES_NAME).exists():
            cases = load_cases(loaded.directory)
        context = external = feedback = None
        if record is not None:
            context = reg.get_run_context(actor, record.id)
            external = reg.list_evaluations(actor, record.id)
            feedback = reg.list_feedback(actor, record.id)
        return build_report(
            model=loaded.model,
            card=loaded.card,
            cases=cases,
            run_id=record.id if record is not None else path.name,
            record=record,
            context=context,
            external=external or (),
            feedback=feedback or (),
            explain_errors=explain_errors,
        )
    finally:
        if own:
            reg.close()


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;max-width:60rem;margin:2rem auto;
color:#111;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;border-bottom:1px solid #999;padding-bottom:.2rem;
margin-top:2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem;width:100%}
th,td{border:1px solid #999;padding:.25rem .4rem;text-align:left;vertical-align:top}
th{background:#eee}caption{caption-side:bottom;text-align:left;font-size:.8rem;color:#333}
figure{margin:1rem 0}figure img{max-width:100%;height:auto}figcaption{font-size:.85rem}
.meta{color:#333;font-size:.9rem}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}table,figure{break-inside:avoid}
thead{display:table-header-group}}
@page{size:A4;margin:18mm}
"""


def _figure_png(fig: go.Figure) -> bytes:
    from medimg_core.reporting.figures.static import figure_image

    return figure_image(fig, width=720, height=400, fmt="png", scale=1.5)


def report_html(report: ModelReport, *, image: Callable[[go.Figure], bytes] | None = None) -> str:
    """The report as one self-contained HTML page.

    Figures are inline PNG images (drawn print-ready by plotly's exporter), so the page needs
    no script and no network; print CSS keeps headings with their content.

    Parameters
    ----------
    report : from :func:`build_report`.
    image : draws a figure as PNG bytes (default :func:`figure_image`).
    """
    draw = image or _figure_png
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(report.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(report.title)}</h1>",
        f'<p class="meta">Run {esc(report.run_id)} · report generated '
        f"{esc(human_date(report.generated))} by medimg</p>",
    ]
    for i, section in enumerate(report.sections):
        out.append(f'<section id="{esc(section.key)}"><h2>{i + 1}. {esc(section.title)}</h2>')
        out.extend(f"<p>{esc(p)}</p>" for p in section.paragraphs)
        for table in section.tables:
            out.append("<table>")
            if table.caption:
                out.append(f"<caption>{esc(table.caption)}</caption>")
            out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in table.headers))
            out.append("</tr></thead><tbody>")
            for row in table.rows:
                out.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>")
        for fig in section.figures:
            data = base64.b64encode(draw(fig.figure)).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(fig.alt)}">'
                f"<figcaption>{esc(fig.caption)}</figcaption></figure>"
            )
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


# --------------------------------------------------------------------------- PDF

_FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",
    "/Library/Fonts",
)


def _unicode_font() -> tuple[Path, Path] | None:
    """DejaVu Sans (regular, bold): from ``MEDIMG_REPORT_FONT_DIR``, the system, or
    matplotlib's package data; None when none is found (core fonts are used instead)."""
    dirs = [os.environ.get("MEDIMG_REPORT_FONT_DIR", ""), *_FONT_DIRS]
    try:
        import matplotlib

        dirs.append(str(Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"))
    except ImportError:
        pass
    for d in dirs:
        if not d:
            continue
        regular, bold = Path(d) / "DejaVuSans.ttf", Path(d) / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


_LATIN1 = str.maketrans(
    {
        "–": "-",
        "—": "-",
        "−": "-",
        "…": "...",
        "“": '"',
        "”": '"',
        "‘": "'",
        "’": "'",
        "≥": ">=",
        "≤": "<=",
        "→": "->",
        "×": "x",
        "·": "-",
        "\u00a0": " ",
    }
)


def _latin1(text: str) -> str:
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def report_pdf(
    report: ModelReport,
    *,
    image: Callable[[go.Figure], bytes] | None = None,
    unicode_font: bool = True,
) -> bytes:
    """The report as an A4 PDF.

    Every page carries the run ID in its header and "page n of N" in its footer; tables repeat
    their header row on each page; figures are print-ready PNGs (dash patterns and marker
    symbols, so they read in black and white).

    Parameters
    ----------
    report : from :func:`build_report`.
    image : draws a figure as PNG bytes (default :func:`figure_image`).
    unicode_font : use DejaVu Sans when found (else, or when False, Helvetica with the text
        reduced to Latin-1).
    """
    from fpdf import FPDF
    from fpdf.enums import TableHeadingsDisplay

    draw = image or _figure_png
    font = _unicode_font() if unicode_font else None
    clean: Callable[[str], str] = (lambda s: s) if font is not None else _latin1
    family = "DejaVu" if font is not None else "Helvetica"

    class _Doc(FPDF):  # type: ignore[misc]
        def header(self) -> None:
            self.set_font(family, "", 8)
            self.set_text_color(80)
            self.cell(0, 5, clean(f"medimg model report · run {report.run_id}"), align="L")
            self.cell(
                0, 5, clean(human_date(report.generated)), align="R", new_x="LMARGIN", new_y="NEXT"
            )
            self.ln(2)
            self.set_text_color(0)

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(family, "", 8)
            self.cell(0, 6, f"page {self.page_no()} of {{nb}}", align="C")

    pdf = _Doc(format="A4", unit="mm")
    pdf.set_title(clean(report.title))
    pdf.set_author("medimg")
    pdf.set_creation_date(report.generated)
    if font is not None:
        pdf.add_font("DejaVu", "", str(font[0]))
        pdf.add_font("DejaVu", "B", str(font[1]))
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.set_margins(16, 14, 16)
    pdf.add_page()
    pdf.set_font(family, "B", 15)
    pdf.multi_cell(0, 7, clean(report.title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "", 9)
    pdf.multi_cell(
        0,
        5,
        clean(f"Run {report.run_id} · generated {human_date(report.generated)} by medimg"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    for i, section in enumerate(report.sections):
        if pdf.get_y() > pdf.h - 50:
            pdf.add_page()
        pdf.ln(3)
        pdf.set_font(family, "B", 12)
        pdf.multi_cell(0, 6.5, clean(f"{i + 1}. {section.title}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(family, "", 9)
        for paragraph in section.paragraphs:
            pdf.multi_cell(0, 4.6, clean(paragraph), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        for table in section.tables:
            _pdf_table(pdf, table, family, clean, TableHeadingsDisplay)
        for fig in section.figures:
            png = draw(fig.figure)
            width = pdf.epw * 0.9
            height = width * 400 / 720
            if pdf.get_y() + height + 12 > pdf.h - pdf.b_margin:
                pdf.add_page()
            pdf.image(
                io.BytesIO(png),
                x=pdf.l_margin + pdf.epw * 0.05,
                w=width,
                h=height,
                alt_text=clean(fig.alt),
            )
            pdf.set_font(family, "", 8)
            pdf.multi_cell(0, 4, clean(fig.caption), new_x="LMARGIN", new_y="NEXT")
            pdf.set_font(family, "", 9)
            pdf.ln(2)
    return bytes(pdf.output())


def _pdf_table(
    pdf: Any, table: ReportTable, family: str, clean: Callable[[str], str], headings: Any
) -> None:
    n = len(table.headers)
    pdf.set_font(family, "", 7.5 if n > 4 else 8)
    widths = _column_widths(pdf, table, clean)
    with pdf.table(
        col_widths=widths,
        text_align="LEFT",
        line_height=3.8,
        repeat_headings=headings.ON_TOP_OF_EVERY_PAGE,
        first_row_as_headings=True,
        headings_style=_heading_style(family),
        padding=1,
    ) as out:
        header = out.row()
        for h in table.headers:
            header.cell(clean(h))
        for row in table.rows:
            cells = out.row()
            for c in row:
                cells.cell(clean(c))
    if table.caption:
        pdf.set_font(family, "", 7.5)
        pdf.multi_cell(0, 4, clean(table.caption), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, "", 9)
    pdf.ln(2)


def _heading_style(family: str) -> Any:
    from fpdf.fonts import FontFace

    return FontFace(family=family, emphasis="BOLD", fill_color=(230, 230, 230))


def _column_widths(pdf: Any, table: ReportTable, clean: Callable[[str], str]) -> tuple[float, ...]:
    """Column widths in mm: each column at least as wide as its longest word (so no word is
    broken), the rest of the page shared in proportion to each column's longest text."""
    pad = 3.0
    least, want = [], []
    style, size = pdf.font_style, pdf.font_size_pt
    for j, h in enumerate(table.headers):
        texts = [clean(t) for t in (r[j] for r in table.rows)]
        words = [w for t in texts for w in t.split()] or [""]
        widths = [pdf.get_string_width(w) for w in words]
        pdf.set_font(style="B", size=size)  # the header row is bold
        widths += [pdf.get_string_width(w) for w in clean(h).split()]
        head = pdf.get_string_width(clean(h))
        pdf.set_font(style=style, size=size)
        least.append(max(widths) + pad)
        longest = max([head, *(pdf.get_string_width(t) for t in texts)])
        want.append(min(longest + pad, pdf.epw * 0.6))
    spare = pdf.epw - sum(least)
    if spare <= 0:
        return tuple(w * pdf.epw / sum(least) for w in least)
    extra = [max(w - m, 0.0) for w, m in zip(want, least, strict=True)]
    total = sum(extra) or 1.0
    return tuple(m + spare * e / total for m, e in zip(least, extra, strict=True))


# --------------------------------------------------------------------------- writing


def report_bytes(report: ModelReport, fmt: str) -> bytes:
    """The report rendered as "pdf" or "html" (UTF-8)."""
    if fmt == "pdf":
        return report_pdf(report)
    if fmt == "html":
        return report_html(report).encode("utf-8")
    raise ConfigError(f"A report is written as PDF or HTML; got the format {fmt!r}.")


def report_format(path: str | os.PathLike[str]) -> str:
    """ "pdf" or "html" from a file name's extension.

    Raises
    ------
    ConfigError
        Any other extension.
    """
    suffix = Path(path).suffix.lower()
    fmt = REPORT_FORMATS.get(suffix)
    if fmt is None:
        raise ConfigError(
            f"The report file {str(path)!r} has the extension {suffix or '(none)'!r}; name it "
            "report.pdf for a PDF or report.html for a web page."
        )
    return fmt


def write_report(report: ModelReport, path: str | os.PathLike[str]) -> Path:
    """Render the report in the format its file name says and write it atomically.

    Raises
    ------
    ConfigError
        An extension other than .pdf, .html or .htm.
    DataError
        When the file cannot be written (the message names the folder to check).
    """
    target = Path(path).expanduser()
    data = report_bytes(report, report_format(target))
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"cannot write the report to {target}: {exc.strerror or exc}; choose a folder you "
            "can write to, with free space."
        ) from exc
    return target
