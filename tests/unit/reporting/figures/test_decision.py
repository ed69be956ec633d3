"""The decision curve figure shows exactly the curves' numbers, the threshold and readable axes."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.modelling.decision import decision_curve
from medimg_core.reporting.figures.decision import decision_figure, y_range
from tests.unit.reporting.figures.conftest import assert_house_layout


def curves(chosen: float = 0.42) -> list:
    rng = np.random.default_rng(0)
    out = []
    for partition, n, prevalence in (("cv", 300, 0.35), ("test", 120, 0.45)):
        y = (rng.random(n) < prevalence).astype(int)
        p = np.clip(0.25 + 0.45 * y + rng.normal(0, 0.18, n), 0, 1)
        out.append(decision_curve(y, p, partition=partition, chosen_threshold=chosen))
    return out


def test_traces_show_the_curves_numbers() -> None:
    cv, test = curves()
    fig = decision_figure([cv, test], positive_class="malignant")
    assert_house_layout(fig)
    names = [trace.name for trace in fig.data]
    assert names == [
        f"Model — Cross-validated (development) (n = {cv.n})",
        f"Treat all — Cross-validated (development) (prevalence {cv.prevalence:.2f})",
        f"Model — Held-out test (n = {test.n})",
        f"Treat all — Held-out test (prevalence {test.prevalence:.2f})",
        "Treat none",
    ]
    for i, curve in enumerate((cv, test)):
        model, treat_all = fig.data[2 * i], fig.data[2 * i + 1]
        assert np.array_equal(np.asarray(model.x), curve.thresholds)
        assert np.allclose(np.asarray(model.y), curve.net_benefit)
        assert np.array_equal(np.asarray(treat_all.x), curve.thresholds)
        assert np.allclose(np.asarray(treat_all.y), curve.treat_all)
        # The point drawn at the chosen threshold is the net benefit read there.
        k = int(np.flatnonzero(np.isclose(curve.thresholds, 0.42))[0])
        assert model.y[k] == pytest.approx(curve.at(0.42)[0])
    none = fig.data[-1]
    assert list(none.y) == [0.0, 0.0]
    assert list(none.x) == [0.01, 0.99]


def test_chosen_threshold_marked_and_axes_readable() -> None:
    cv, test = curves(0.42)
    fig = decision_figure([cv, test], positive_class="malignant")
    assert len(fig.layout.shapes) == 1  # one line for the threshold both curves share
    assert fig.layout.shapes[0].x0 == pytest.approx(0.42)
    assert fig.layout.annotations[0].text == "threshold 0.42"
    top = max(cv.prevalence, test.prevalence)
    lo, hi = fig.layout.yaxis.range
    assert (lo, hi) == pytest.approx(y_range([cv, test]))
    assert lo == pytest.approx(-0.1 * top) and lo < 0
    assert hi == pytest.approx(1.05 * top)
    assert fig.layout.xaxis.title.text == "Threshold probability of malignant"
    assert fig.layout.yaxis.title.text == "Net benefit"


def test_one_curve_without_a_threshold() -> None:
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.1, 0.9, 0.3, 0.6, 0.8, 0.55])
    curve = decision_curve(y, p, partition="external")
    fig = decision_figure([curve])
    assert len(fig.data) == 3
    assert fig.data[0].name.startswith("Model — External")
    assert not fig.layout.shapes
    assert fig.layout.xaxis.title.text == "Threshold probability of the positive class"


def test_no_curve_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one decision curve"):
        decision_figure([])
