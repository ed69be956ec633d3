"""The case report: self-contained, escaped, and free of identifying data."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import DataError
from medimg_core.modelling.explain import CaseExplanation
from medimg_core.reporting.case_report import anonymous_case, case_report_html
from medimg_core.reporting.figures.evaluation import case_probability_figure
from medimg_core.reporting.figures.explanation import waterfall_figure

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
    assert "logreg" in text and "0.981 (95% CI 0.970–0.990)" in text
    assert "youden" in text
    assert "add up exactly" in text


def test_text_from_the_data_is_escaped() -> None:
    page = render()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "spiculated &amp; &lt;ill-defined&gt;" in page
    checker = _Checker()
    checker.feed(page)
    assert checker.scripts == 0


def test_figures_are_embedded_with_plotly_once() -> None:
    case = a_case()
    figures = (
        case_probability_figure(0.67, 0.42, class_name="malignant"),
        waterfall_figure(case),
    )
    page = render(figures=figures)
    assert page.count('<div class="figure">') == 2
    # plotly.js is inlined once (the library's licence banner appears once), not linked.
    assert page.count("plotly.js v") == 1
    assert "<script src=" not in page
    checker = _Checker()
    checker.feed(page)
    assert checker.scripts >= 2


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
