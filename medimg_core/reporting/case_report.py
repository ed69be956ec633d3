"""A self-contained HTML report of one case's explanation, safe to hand on.

The report holds the case's feature values, its SHAP contributions, its probability against the
threshold, the method and a summary of the model, with the figures and plotly.js embedded so it
opens offline. It carries no identifying data: only the model's feature columns and a case
reference chosen by the caller (the dashboard passes a keyed pseudonym of the case ID). Every
piece of text is HTML-escaped, including feature names and category values from the data.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from medimg_core.errors import DataError
from medimg_core.modelling.explain import (
    CaseExplanation,
    contribution_label,
    standard_error_label,
)
from medimg_core.reporting.summaries import card_positive_text

__all__ = ["anonymous_case", "case_report_html"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a;
       max-width: 980px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.muted { color: #5f6368; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.called { color: #c2185b; font-weight: 600; }
.not-called { color: #1565c0; font-weight: 600; }
.figure { margin: 1rem 0; }
"""


def anonymous_case(case: CaseExplanation, reference: str) -> CaseExplanation:
    """The same case explanation under a different case reference (e.g. a pseudonym).

    Figures drawn from the returned case (their titles name the case) then carry the
    reference instead of the original case ID.

    Parameters
    ----------
    case : one case's explanation.
    reference : the reference to show instead of the case ID.

    Returns
    -------
    CaseExplanation
        With ``case_id = reference`` and the data reduced to the explained features.
    """
    features = list(case.values.index)
    data = case.data.reindex(features)
    data.name = reference
    return replace(case, case_id=reference, data=data)


def case_report_html(
    case: CaseExplanation,
    *,
    probability: float | None,
    threshold: float | None,
    true_label: Any,
    model_card: Mapping[str, Any],
    figures: Sequence[go.Figure] = (),
    note: str = "",
    outcome: str | None = None,
    features: pd.DataFrame | None = None,
    generated: datetime | None = None,
) -> str:
    """A self-contained HTML page explaining one case.

    Parameters
    ----------
    case : the case's explanation; its ``case_id`` is printed as the case reference, so pass a
        pseudonymous one (see :func:`anonymous_case`). Only the features in ``case.values``
        are reported.
    probability : the model's probability of ``case.class_name`` for this case (None to omit).
    threshold : the decision threshold on that probability (binary models; None to omit).
    true_label : the case's known diagnosis, or None when unknown.
    model_card : the model card (``card.json``); its model kind, positive class, threshold
        and ROC AUC with 95% intervals are summarised.
    figures : figures to embed (for example the waterfall and the probability gauge); the
        first carries plotly.js inline, so the page opens offline.
    note : the explanation method in words (``Explanation.note``).
    outcome : "TP", "FP", "FN", "TN", "correct" or "wrong", when known.
    features : a feature table to show instead of the default (every feature, its value and
        contribution), for example :func:`medimg_core.reporting.review.feature_table`.
    generated : timestamp printed in the footer (default: now, UTC).

    Returns
    -------
    str
        A complete HTML document.

    Raises
    ------
    DataError
        When ``probability`` or ``threshold`` is given but is not a number between 0 and 1.
    """
    for name, value in (("probability", probability), ("threshold", threshold)):
        if value is not None and not (math.isfinite(float(value)) and 0 <= float(value) <= 1):
            raise DataError(f"The {name} must be a number between 0 and 1, got {value!r}.")
    esc = _escape
    reference = esc(case.case_id)
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>medimg case report: {reference}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        "<h1>Case explanation</h1>",
        f'<p class="muted">Case reference <strong>{reference}</strong> · generated {esc(when)} '
        "by medimg</p>",
        _summary(case, probability, threshold, true_label, outcome),
    ]
    if figures:
        parts.append("<h2>Figures</h2>")
        for i, figure in enumerate(figures):
            embedded = figure.to_html(
                full_html=False,
                include_plotlyjs=i == 0,
                config={"displaylogo": False, "responsive": True},
            )
            parts.append(f'<div class="figure">{embedded}</div>')
    parts += [
        "<h2>Feature values and contributions</h2>",
        _feature_section(case, features),
        "<h2>How this explanation was computed</h2>",
        _method(case, note),
        "<h2>The model</h2>",
        _model_summary(model_card),
        '<p class="muted">This report contains no identifying data: only the model\'s feature '
        "values and a pseudonymous case reference. A model's explanation shows how the model "
        "uses the features, not what causes the disease; it supports, and does not replace, "
        "clinical judgement.</p>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts)


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _summary(
    case: CaseExplanation,
    probability: float | None,
    threshold: float | None,
    true_label: Any,
    outcome: str | None,
) -> str:
    rows: list[tuple[str, str]] = []
    target = _escape(case.class_name)
    if probability is not None:
        rows.append((f"Probability of {target}", _number(probability)))
    if threshold is not None:
        rows.append(("Decision threshold", _number(threshold, 2)))
    if probability is not None and threshold is not None:
        called = float(probability) >= float(threshold)
        verdict = (
            f'<span class="called">called {target}</span> (at or above the threshold)'
            if called
            else f'<span class="not-called">not called {target}</span> (below the threshold)'
        )
        rows.append(("Model's call", verdict))
    known = true_label is not None and not (
        isinstance(true_label, float) and math.isnan(true_label)
    )
    rows.append(("True diagnosis", _escape(true_label) if known else "unknown"))
    if outcome:
        rows.append(("Outcome", _escape(_OUTCOME_WORDS.get(str(outcome), outcome))))
    rows.append(
        (
            f"Model output ({_escape(case.output_space)})",
            f"{_number(case.base_value)} (average case) + {_number(float(case.values.sum()))} "
            f"(this case's features) = {_number(case.output)}",
        )
    )
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


_OUTCOME_WORDS = {
    "TP": "true positive (TP)",
    "FP": "false positive (FP)",
    "FN": "false negative (FN)",
    "TN": "true negative (TN)",
    "correct": "correctly classified",
    "wrong": "misclassified",
}


def _feature_section(case: CaseExplanation, features: pd.DataFrame | None) -> str:
    if features is None:
        order = case.values.abs().sort_values(ascending=False, kind="stable").index
        features = pd.DataFrame(
            {
                "Feature": [str(f) for f in order],
                "Value": [_value(case.data.get(f)) for f in order],
                contribution_label(case.output_space): [float(case.values[f]) for f in order],
            }
        )
        if case.standard_errors is not None:
            features[standard_error_label(case.output_space)] = [
                float(case.standard_errors[f]) for f in order
            ]
    head = "".join(f"<th>{_escape(c)}</th>" for c in features.columns)
    # Standard errors are sizes, written without a sign; contributions keep theirs.
    unsigned = [str(c).startswith("Standard error") for c in features.columns]
    body = []
    for row in features.itertuples(index=False):
        cells = []
        for value, plain in zip(row, unsigned, strict=True):
            if isinstance(value, float):
                text = f"{value:.3f}" if plain else f"{value:+.3f}"
                cells.append(f'<td class="num">{_escape(text)}</td>')
            else:
                cells.append(f"<td>{_escape(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    caption = (
        f'<p class="muted">Contributions are in {_escape(case.output_space)} of '
        f"{_escape(case.class_name)}: positive values push toward {_escape(case.class_name)}, "
        "negative values away from it."
        + (
            " They are permutation estimates; each standard error says how far the estimate "
            "may be from the exact value."
            if case.standard_errors is not None
            else ""
        )
        + "</p>"
    )
    return f"{caption}<table><tr>{head}</tr>{''.join(body)}</table>"


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _method(case: CaseExplanation, note: str) -> str:
    lines = [
        f"<p><strong>Method:</strong> SHAP values, {_escape(case.method)}, computed over the "
        "original feature columns (the names in the data, not the model's internal encoding)."
        "</p>"
    ]
    if note:
        lines.append(f"<p>{_escape(note)}</p>")
    lines.append(
        "<p>The contributions add up exactly to the model output: the base value (the model's "
        "average output over the background cases) plus the sum of all contributions equals "
        "this case's output. Features the model uses together (correlated measurements) share "
        "credit between them, so a single feature's contribution is not its effect in "
        "isolation.</p>"
    )
    return "".join(lines)


def _metric(card: Mapping[str, Any], partition: str) -> str:
    metrics = (card.get("metrics") or {}).get(partition) or {}
    auc = metrics.get("roc_auc") or {}
    value = auc.get("value")
    if value is None:
        return "n/a"
    low, high = [*(auc.get("ci95") or []), None, None][:2]
    if low is None or high is None:
        return f"{float(value):.3f}"
    return f"{float(value):.3f} (95% CI {float(low):.3f}–{float(high):.3f})"


def _model_summary(card: Mapping[str, Any]) -> str:
    pipeline = card.get("pipeline") or {}
    threshold = card.get("threshold") or {}
    validation = card.get("validation") or {}
    features = card.get("features") or {}
    n_features = len(features.get("columns") or features.get("feature_columns") or [])
    rows = [
        ("Model", pipeline.get("kind", "unknown")),
        ("Positive class", card_positive_text(card)),
        (
            "Threshold",
            f"{_number(threshold.get('value'), 2)} (rule: {threshold.get('method', 'unknown')})"
            if threshold
            else "n/a",
        ),
        ("ROC AUC, cross-validated (development)", _metric(card, "cv")),
        ("ROC AUC, held-out test", _metric(card, "test")),
        ("Validation", f"split by {validation.get('level', 'row')}"),
        ("Features", n_features or "n/a"),
        ("Trained", card.get("created", "unknown")),
    ]
    body = "".join(
        f"<tr><th>{_escape(k)}</th><td>{_escape('n/a' if v is None else v)}</td></tr>"
        for k, v in rows
    )
    return f"<table>{body}</table>"
