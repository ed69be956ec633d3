"""The case report: self-contained, escaped, and free of identifying data."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from PIL import Image as PILImage

from medimg_core.errors import ConfigError, DataError
from medimg_core.imaging.occlusion import occlusion_map
from medimg_core.modelling.explain import CaseExplanation
from medimg_core.reporting import case_report
from medimg_core.reporting.case_report import (
    FIGURE_HEIGHT,
    PredictionSet,
    ReportImage,
    anonymous_case,
    case_report_html,
)
from medimg_core.reporting.figures.evaluation import case_probability_figure
from medimg_core.reporting.figures.explanation import waterfall_figure
from medimg_core.reporting.figures.images import to_uint8

CARD = {
    "pipeline": {"kind": "logreg"},
    "positive_class": "malignant",
    "threshold": {"value": 0.42, "method": "youden"},
    "metrics": {
        "cv": {"roc_auc": {"value": 0.981, "ci95": [0.97, 0.99]}},
        "test": {"roc_auc": {"value": 0.975, "ci95": [None, None]}},
    },
    "validation": {"level": "patient (case_id)"},
    "features": {"feature_columns": ["worst area", "<script>alert(1)</script>", "margin"]},
    "created": "2026-01-01T00:00:00+00:00",
}


def a_case(case_id: str = "WDBC-0042") -> CaseExplanation:
    features = ["worst area", "<script>alert(1)</script>", "margin"]
    return CaseExplanation(
        case_id=case_id,
        values=pd.Series([1.2, -0.4, 0.1], index=features),
        base_value=-0.5,
        data=pd.Series([1203.0, 0.07, "spiculated & <ill-defined>"], index=features, dtype=object),
        output_space="log-odds",
        class_name="malignant",
        method="linear (exact, folded through the pipeline)",
    )


class _Checker(HTMLParser):
    """Counts open/close tags, so unbalanced markup is caught."""

    VOID: ClassVar[frozenset[str]] = frozenset({"meta", "br", "img", "input", "link", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def render(**overrides: object) -> str:
    kwargs: dict[str, object] = {
        "probability": 0.67,
        "threshold": 0.42,
        "true_label": "malignant",
        "model_card": CARD,
        "figures": (),
        "note": "Exact SHAP values of a linear model.",
        "outcome": "TP",
        "generated": datetime(2026, 1, 2, tzinfo=UTC),
    }
    kwargs.update(overrides)
    case = kwargs.pop("case", a_case())
    return case_report_html(case, **kwargs)  # type: ignore[arg-type]


def test_report_is_valid_html_with_the_features_and_model() -> None:
    page = render()
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert page.startswith("<!DOCTYPE html>")
    assert checker.stack == []
    text = " ".join(checker.text)
    for expected in ("worst area", "margin", "1203", "0.670", "0.42", "true positive (TP)"):
        assert expected in text
    # Display names and human dates, not codes and ISO stamps.
    assert "Logistic regression" in text and "logreg" not in text
    assert "0.981 (95% CI 0.970–0.990)" in text
    assert "Youden" in text
    assert "1 January 2026, 00:00 UTC" in text and "2 January 2026, 00:00 UTC" in text
    assert "2026-01-01T" not in page
    assert "add up exactly" in text


def test_text_from_the_data_is_escaped() -> None:
    page = render()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "spiculated &amp; &lt;ill-defined&gt;" in page
    checker = _Checker()
    checker.feed(page)
    assert checker.scripts == 0


def test_figures_are_static_pictures_without_plotly_js(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[str, int]] = []

    def fake_image(fig: go.Figure, **options: object) -> bytes:
        drawn.append((str(options["fmt"]), int(options["height"])))  # type: ignore[call-overload]
        return b"<svg xmlns='http://www.w3.org/2000/svg'/>"

    monkeypatch.setattr(case_report, "figure_image", fake_image)
    case = a_case()
    figures = (
        case_probability_figure(0.67, 0.42, class_name="malignant"),
        waterfall_figure(case),
    )
    page = render(figures=figures)
    assert page.count('<div class="figure">') == 2
    assert page.count('src="data:image/svg+xml;base64,') == 2
    # Each figure at its own height (the gauge is short).
    assert [h for _, h in drawn] == [int(f.layout.height or FIGURE_HEIGHT) for f in figures]
    assert "plotly.js" not in page and "Plotly.newPlot" not in page
    checker = _Checker()
    checker.feed(page)
    assert checker.scripts == 0


def test_without_a_browser_figures_become_tables_of_their_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def no_browser(fig: go.Figure, **options: object) -> bytes:
        calls.append(1)
        raise ConfigError(
            "The figures of a report are drawn by a headless Chromium, which failed: no "
            "browser. Install Chromium (Debian: apt install chromium) or set BROWSER_PATH."
        )

    monkeypatch.setattr(case_report, "figure_image", no_browser)
    case = a_case()
    gauge = case_probability_figure(0.67, 0.42, class_name="malignant")
    page = render(figures=(gauge, waterfall_figure(case)))
    assert len(calls) == 1  # tried once, not once per figure
    assert "data:image" not in page
    assert "could not be drawn as pictures here" in page and "no browser" in page
    assert "apt install" not in page
    # The numbers the figures show: the gauge's probability and every waterfall bar.
    assert '<td class="num">0.670</td>' in page
    assert float(gauge.data[0].value) == pytest.approx(0.67)
    bars = waterfall_figure(case).data[0]
    for value in bars.x:
        assert f'<td class="num">{value:.3f}</td>' in page
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []


def test_one_threshold_throughout() -> None:
    case = a_case()
    page = render(
        threshold=0.42,
        figures=(),
        model_card={**CARD, "threshold": {"value": 0.42, "method": "youden"}},
    )
    checker = _Checker()
    checker.feed(page)
    text = " ".join(checker.text)
    # Stated once, with its origin; the model section does not repeat (or contradict) it.
    assert text.count("0.42") == 1
    assert "0.42 (the model's; rule: Youden" in text
    assert "called malignant</span> (at or above the threshold)" in page
    assert case.class_name == "malignant"
    # Not repeated in the model section either, even when the card has a value.
    model_section = page.split("<h2>The model</h2>")[1]
    assert "0.42" not in model_section and "Threshold" not in model_section


def test_a_real_figure_is_drawn_small() -> None:
    case = a_case()
    figures = (
        case_probability_figure(0.67, 0.42, class_name="malignant"),
        waterfall_figure(case),
    )
    page = render(figures=figures)
    if "could not be drawn as pictures" in page:
        pytest.skip("no Chromium for the figure exporter on this machine")
    assert page.count('src="data:image/svg+xml;base64,') == 2
    assert len(page.encode()) < 300_000
    assert "plotly.js" not in page


def test_an_image_models_case_embeds_its_image_and_occlusion_map(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(case_report, "figure_image", lambda fig, **o: b"<svg/>")
    rng = np.random.default_rng(0)
    pixels = rng.random((16, 16))
    result = occlusion_map(pixels, lambda b: b[:, :8, :8].mean(axis=(1, 2)), patch=4)
    image = ReportImage(
        pixels=pixels, description="Image (16×16 px)", occlusion_pixels=pixels, occlusion=result
    )
    page = render(image=image)
    [uri] = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    shown = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(uri))))
    assert np.array_equal(shown, to_uint8(pixels))
    assert page.count("data:image/svg+xml") == 1  # the occlusion map, drawn as a figure
    assert "Occlusion" not in page or "not a lesion segmentation" in page
    assert f"unmasked image is {result.base_probability:.2f}" in page


def test_without_a_browser_the_occlusion_map_lists_its_strongest_areas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_browser(fig: go.Figure, **options: object) -> bytes:
        raise ConfigError("no browser. Install Chromium.")

    monkeypatch.setattr(case_report, "figure_image", no_browser)
    image = np.full((16, 16), 0.8)
    result = occlusion_map(image, lambda b: b[:, :8, :8].mean(axis=(1, 2)), patch=4)
    page = render(image=ReportImage(pixels=image, occlusion_pixels=image, occlusion=result))
    assert page.count("data:image/png") == 1  # the image itself needs no browser
    strongest = -float(np.max(result.heatmap))
    assert f'<td class="num">{strongest:+.3f}</td>' in page


def test_the_prediction_set_is_shown_with_its_coverage() -> None:
    page = render(
        prediction_set=PredictionSet(
            text="{malignant, benign} — uncertain, refer",
            confidence=0.9,
            test_coverage=0.912,
            note="Coverage close to the target, not exactly guaranteed.",
        )
    )
    assert "Prediction set (90% confidence)" in page
    assert "{malignant, benign} — uncertain, refer" in page
    assert "91% of held-out test cases were covered" in page


def test_no_identifying_data_with_an_anonymous_case() -> None:
    case = a_case("MRN-0012345")
    data = pd.concat([case.data, pd.Series({"patient_name": "Jane Doe"})])
    leaky = CaseExplanation(**{**case.__dict__, "data": data})
    safe = anonymous_case(leaky, "case-1a2b3c4d5e6f7a8b")
    page = render(case=safe, figures=(waterfall_figure(safe),))
    assert "MRN-0012345" not in page
    assert "Jane Doe" not in page and "patient_name" not in page
    assert "case-1a2b3c4d5e6f7a8b" in page
    assert list(safe.data.index) == list(case.values.index)


def test_unknown_truth_and_no_threshold() -> None:
    page = render(true_label=None, threshold=None, outcome=None, probability=None)
    assert "unknown" in page
    assert "Decision threshold" not in page
    page = render(true_label=np.nan)
    assert "True diagnosis</th><td>unknown" in page


@pytest.mark.parametrize("name,value", [("probability", 1.5), ("threshold", -0.1)])
def test_probabilities_are_checked(name: str, value: float) -> None:
    with pytest.raises(DataError, match=f"The {name} must be a number between 0 and 1"):
        render(**{name: value})


def test_a_custom_feature_table_is_used() -> None:
    table = pd.DataFrame(
        {
            "Feature": ["worst area"],
            "Value": ["1,203"],
            "Typical value": ["686"],
            "Contribution": [1.2],
        }
    )
    page = render(features=table)
    assert "Typical value" in page and "+1.200" in page
    assert "margin</td>" not in page


def test_contributions_name_their_unit_and_estimates_their_standard_error() -> None:
    case = a_case()
    page = render(case=case)
    assert f"<th>Contribution ({case.output_space})</th>" in page
    assert "Standard error" not in page
    errors = pd.Series(0.0123, index=case.values.index)
    estimated = CaseExplanation(
        **{
            **case.__dict__,
            "output_space": "probability",
            "method": "permutation (model-agnostic)",
            "standard_errors": errors,
        }
    )
    page = render(case=estimated)
    assert "<th>Contribution (probability)</th>" in page
    assert "<th>Standard error (probability)</th>" in page
    assert '<td class="num">0.012</td>' in page and "+0.012" not in page
    assert "each standard error says how far the estimate" in page
