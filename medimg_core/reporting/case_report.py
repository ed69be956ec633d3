"""A self-contained HTML report of one case's explanation, safe to hand on.

The report holds the case's feature values, its SHAP contributions, its probability against the
threshold, the method and a summary of the model. Figures are embedded as static images drawn by
plotly's exporter (:func:`medimg_core.reporting.figures.static.figure_image`), not as
interactive charts, so the page opens offline and weighs tens of kilobytes instead of the
4.8 MB plotly.js costs; where no browser is available to draw them, each figure is replaced by
a table of the numbers it shows, with a note. For image models the case's image and its
occlusion map are embedded too.

One threshold is used throughout: it is stated once, in the summary, and the call, the outcome
and the figures all use it. It carries no identifying data: only the model's feature columns
and a case reference chosen by the caller (the dashboard passes a keyed pseudonym of the case
ID). Every piece of text is HTML-escaped, including feature names and category values from the
data.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image

from medimg_core.errors import ConfigError, DataError
from medimg_core.imaging.occlusion import OcclusionMap
from medimg_core.modelling.explain import (
    CaseExplanation,
    contribution_label,
    standard_error_label,
)
from medimg_core.reporting.figures.images import occlusion_figure, to_uint8
from medimg_core.reporting.figures.static import figure_image
from medimg_core.reporting.summaries import (
    THRESHOLD_RULES,
    card_metric,
    card_model_text,
    card_positive_text,
    human_date,
    interval_text,
    threshold_rule_text,
)

__all__ = [
    "FIGURE_HEIGHT",
    "FIGURE_WIDTH",
    "PredictionSet",
    "ReportImage",
    "anonymous_case",
    "case_report_html",
]

FIGURE_WIDTH = 760
"""Width of an embedded figure, in CSS pixels (the page is 980 wide)."""

FIGURE_HEIGHT = 400
"""Height of an embedded figure, in CSS pixels."""


@dataclass(frozen=True)
class ReportImage:
    """An image model's case as the report shows it.

    Attributes
    ----------
    pixels : the image as stored (or scaled down for display), 2-D grayscale in [0, 1].
    description : e.g. "Image (28×28 px)".
    occlusion_pixels : the image at the model's working size, on which the map was computed.
    occlusion : its occlusion-sensitivity map, or None when it was not computed.
    """

    pixels: np.ndarray
    description: str = "Image"
    occlusion_pixels: np.ndarray | None = None
    occlusion: OcclusionMap | None = None


@dataclass(frozen=True)
class PredictionSet:
    """The case's conformal prediction set (:mod:`medimg_core.modelling.conformal`).

    Attributes
    ----------
    text : the set as written for readers, e.g. "{malignant, benign} — uncertain, refer".
    confidence : the target coverage, e.g. 0.9.
    test_coverage : the coverage measured on the held-out test cases, when known.
    note : what the guarantee is, and is not.
    """

    text: str
    confidence: float
    test_coverage: float | None = None
    note: str = ""


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
    image: ReportImage | None = None,
    prediction_set: PredictionSet | None = None,
    figure_format: Literal["png", "svg"] = "svg",
) -> str:
    """A self-contained HTML page explaining one case.

    Parameters
    ----------
    case : the case's explanation; its ``case_id`` is printed as the case reference, so pass a
        pseudonymous one (see :func:`anonymous_case`). Only the features in ``case.values``
        are reported.
    probability : the model's probability of ``case.class_name`` for this case (None to omit).
    threshold : the decision threshold on that probability (binary models; None to omit): the
        model's, stated once in the summary and used by every call and figure of the report.
    true_label : the case's known diagnosis, or None when unknown.
    model_card : the model card (``card.json``); its model kind, positive class, threshold
        and ROC AUC with 95% intervals are summarised.
    figures : figures to embed (for example the waterfall and the probability gauge), drawn as
        static images; draw them with the same ``threshold``.
    note : the explanation method in words (``Explanation.note``).
    outcome : "TP", "FP", "FN", "TN", "correct" or "wrong", when known.
    features : a feature table to show instead of the default (every feature, its value and
        contribution), for example :func:`medimg_core.reporting.review.feature_table`.
    generated : timestamp printed in the footer (default: now, UTC).
    image : an image model's case image and occlusion map, embedded as pictures.
    prediction_set : the case's conformal prediction set, when the model has one.
    figure_format : "svg" (small, sharp, text stays text) or "png".

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
    when = human_date(generated or datetime.now(UTC))
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
        _summary(case, probability, threshold, true_label, outcome, model_card, prediction_set),
    ]
    drawer = _Drawer(figure_format)
    if image is not None:
        parts += ["<h2>The image</h2>", _image_section(image, drawer)]
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [drawer.block(figure) for figure in figures]
    if drawer.failure:
        parts.append(
            f'<p class="muted">The figures could not be drawn as pictures here '
            f"({_escape(drawer.failure)}); the numbers they show are given as tables "
            "instead.</p>"
        )
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
    card: Mapping[str, Any],
    prediction_set: PredictionSet | None,
) -> str:
    rows: list[tuple[str, str]] = []
    target = _escape(case.class_name)
    if probability is not None:
        rows.append((f"Probability of {target}", _number(probability)))
    if threshold is not None:
        method = str((card.get("threshold") or {}).get("method"))
        origin = (
            f" (the model's; rule: {_escape(threshold_rule_text(card))}, chosen on development "
            "cases)"
            if method in THRESHOLD_RULES
            else " (the model's)"
        )
        rows.append(("Decision threshold", _number(threshold, 2) + origin))
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
    if prediction_set is not None:
        coverage = (
            f"; {prediction_set.test_coverage:.0%} of held-out test cases were covered"
            if prediction_set.test_coverage is not None
            else ""
        )
        rows.append(
            (
                f"Prediction set ({prediction_set.confidence:.0%} confidence)",
                f"{_escape(prediction_set.text)}"
                f'<br><span class="muted">Over many cases like this one, the true class is in '
                f"the set for about {prediction_set.confidence:.0%} of them{coverage}. "
                f"{_escape(prediction_set.note)}</span>",
            )
        )
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
    auc = card_metric(card, partition, "roc_auc")
    return f"{auc.value:.3f} ({interval_text(auc)})" if math.isfinite(auc.value) else "n/a"


def _model_summary(card: Mapping[str, Any]) -> str:
    validation = card.get("validation") or {}
    features = card.get("features") or {}
    n_features = len(features.get("columns") or features.get("feature_columns") or [])
    # The threshold is stated once, in the case summary above; it is not repeated here.
    rows = [
        ("Model", card_model_text(card)),
        ("Positive class", card_positive_text(card)),
        ("ROC AUC, cross-validated (development)", _metric(card, "cv")),
        ("ROC AUC, held-out test", _metric(card, "test")),
        ("Validation", f"split by {validation.get('level', 'row')}"),
        ("Features", n_features or "n/a"),
        ("Trained", human_date(card.get("created"))),
    ]
    body = "".join(
        f"<tr><th>{_escape(k)}</th><td>{_escape('n/a' if v is None else v)}</td></tr>"
        for k, v in rows
    )
    return f"<table>{body}</table>"


class _Drawer:
    """Draws figures as embedded pictures; after the first failure, tables of their numbers."""

    def __init__(self, fmt: Literal["png", "svg"]) -> None:
        self.fmt: Literal["png", "svg"] = fmt
        self.failure: str | None = None

    def picture(self, figure: go.Figure, *, height: int = FIGURE_HEIGHT) -> str | None:
        """An ``<img>`` of the figure, or None when figures cannot be drawn here."""
        if self.failure is not None:
            return None
        try:
            drawn = figure_image(
                figure, width=FIGURE_WIDTH, height=height, fmt=self.fmt, printable=False
            )
        except ConfigError as exc:
            # Why, in one line, without the installation hints meant for an administrator.
            self.failure = str(exc).split(". Install")[0].rstrip(".")
            return None
        mime = "image/svg+xml" if self.fmt == "svg" else "image/png"
        title = _figure_title(figure) or "figure"
        return (
            f'<img src="data:{mime};base64,{base64.b64encode(drawn).decode("ascii")}" '
            f'alt="{_escape(title)}" width="{FIGURE_WIDTH}" style="max-width:100%;height:auto">'
        )

    def block(self, figure: go.Figure) -> str:
        picture = self.picture(figure, height=int(figure.layout.height or FIGURE_HEIGHT))
        body = picture if picture is not None else _numbers_table(figure)
        return f'<div class="figure">{body}</div>'


def _figure_title(figure: go.Figure) -> str:
    title = figure.layout.title.text if figure.layout.title is not None else None
    return " ".join(str(title or "").replace("<br>", " ").split())


def _numbers_table(figure: go.Figure) -> str:
    """The numbers a figure shows, as a table (when it cannot be drawn as a picture)."""
    title = _figure_title(figure)
    rows: list[tuple[str, str, str]] = []
    for trace in figure.data:
        name = str(getattr(trace, "name", None) or "")
        if trace.type == "indicator":
            rows.append((name or str(trace.title.text or ""), "value", _number(trace.value)))
        elif trace.type in ("bar", "waterfall", "scatter"):
            horizontal = getattr(trace, "orientation", None) == "h"
            labels, values = (trace.y, trace.x) if horizontal else (trace.x, trace.y)
            if labels is None or values is None:
                continue
            for label, value in zip(labels, values, strict=False):
                shown = _number(value) if isinstance(value, int | float) else str(value)
                rows.append((name, _plain(label), shown))
    if not rows:
        return f'<p class="muted">{_escape(title or "Figure")}: no numbers to list.</p>'
    body = "".join(
        f'<tr><td>{_escape(a)}</td><td>{_escape(b)}</td><td class="num">{_escape(c)}</td></tr>'
        for a, b, c in rows
    )
    caption = f"<p><strong>{_escape(title)}</strong></p>" if title else ""
    return f"{caption}<table><tr><th>Series</th><th>Item</th><th>Value</th></tr>{body}</table>"


def _plain(label: Any) -> str:
    """A figure's axis label without its HTML markup."""
    text = str(label)
    for tag in ("<b>", "</b>", "<i>", "</i>"):
        text = text.replace(tag, "")
    return text.replace("<br>", " ")


def _png_uri(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(pixels), mode="L").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_section(image: ReportImage, drawer: _Drawer) -> str:
    """The case's image as it is (a PNG, no browser needed) and its occlusion map."""
    cols = int(np.asarray(image.pixels).shape[1])
    # Small images (28×28) are scaled up for the eye, without smoothing, so pixels stay pixels.
    shown = max(cols, min(360, cols * max(1, 360 // max(cols, 1))))
    parts = [
        f'<figure class="figure"><img src="{_png_uri(image.pixels)}" alt="the case\'s image" '
        f'width="{shown}" style="image-rendering:pixelated;max-width:100%;height:auto">'
        f'<figcaption class="muted">{_escape(image.description)}</figcaption></figure>'
    ]
    occlusion = image.occlusion
    if occlusion is not None and image.occlusion_pixels is not None:
        figure = occlusion_figure(image.occlusion_pixels, occlusion, title="Occlusion map")
        picture = drawer.picture(figure, height=FIGURE_HEIGHT + 60)
        if picture is None:
            picture = _strongest_areas(occlusion)
        at = image.occlusion_pixels.shape
        parts.append(
            f'<div class="figure">{picture}</div><p class="muted">Computed at {at[0]}×{at[1]} '
            f"px, the size the model's features use; P({_escape(occlusion.target)}) of the "
            f"unmasked image is {occlusion.base_probability:.2f}. {_escape(occlusion.caption)}"
            "</p>"
        )
    return "".join(parts)


def _strongest_areas(occlusion: OcclusionMap) -> str:
    """The occlusion map in numbers: the areas whose masking changes the probability most."""
    heat = np.asarray(occlusion.heatmap, dtype=float)
    finite = np.where(np.isfinite(heat), heat, 0.0)
    top = np.argsort(-np.abs(finite), axis=None)[:5]
    body = "".join(
        f'<tr><td class="num">{r}</td><td class="num">{c}</td>'
        f'<td class="num">{-finite[r, c]:+.3f}</td></tr>'
        for r, c in (np.unravel_index(i, heat.shape) for i in top)
    )
    return (
        f"<p><strong>Occlusion map</strong>: the pixels where masking changes "
        f"P({_escape(occlusion.target)}) most</p><table><tr><th>Row</th><th>Column</th>"
        f"<th>Change of P({_escape(occlusion.target)})</th></tr>{body}</table>"
    )
