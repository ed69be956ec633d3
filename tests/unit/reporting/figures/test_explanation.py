"""SHAP figures: importance, beeswarm, waterfall and dependence."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.reporting.figures._style import MAX_POINTS, SHAP_BLUE, SHAP_RED
from medimg_core.reporting.figures.explanation import (
    beeswarm_figure,
    dependence_figure,
    importance_figure,
    waterfall_figure,
)
from tests.unit.reporting.figures.conftest import (
    assert_house_layout,
    axis_title,
    count_points,
    make_explanation,
)


def test_importance_shows_the_top_features_and_names_the_rest_in_the_title() -> None:
    exp = make_explanation(n_features=20)
    fig = importance_figure(exp, max_display=5)
    assert_house_layout(fig)
    assert len(fig.data) == 1
    bar = fig.data[0]
    assert len(bar.y) == 5
    assert "top 5 of 20 features" in fig.layout.title.text
    assert list(bar.y)[-1] == "feature 0"
    assert bar.x[-1] == pytest.approx(exp.global_importance().iloc[0])
    assert axis_title(fig.layout.xaxis) == "Mean |SHAP value| (log-odds of malignant)"


def test_beeswarm_rows_colours_and_cap() -> None:
    exp = make_explanation(n=2_000, n_features=20)
    fig = beeswarm_figure(exp, max_display=8)
    assert_house_layout(fig)
    assert len(fig.data) == 1
    points = fig.data[0]
    assert count_points(points) <= MAX_POINTS
    assert list(fig.layout.yaxis.ticktext)[-1] == "feature 0"
    assert len(fig.layout.yaxis.ticktext) == 8
    colour = np.asarray(points.marker.color)
    assert colour.min() == 0 and colour.max() == 1
    assert "SHAP value" in axis_title(fig.layout.xaxis)
    again = beeswarm_figure(exp, max_display=8)
    assert np.array_equal(np.asarray(again.data[0].y), np.asarray(points.y))


def test_beeswarm_high_value_is_red_end() -> None:
    exp = make_explanation(n=100, n_features=3)
    fig = beeswarm_figure(exp, max_display=1)
    colour = np.asarray(fig.data[0].marker.color)
    values = exp.data["feature 0"].to_numpy()
    assert colour[np.argmax(values)] == 1 and colour[np.argmin(values)] == 0
    assert fig.data[0].marker.colorscale[-1][1] == SHAP_RED


def test_beeswarm_missing_values_in_grey_trace() -> None:
    exp = make_explanation(n=30, n_features=3)
    exp.data.iloc[0, 0] = np.nan
    fig = beeswarm_figure(exp)
    assert len(fig.data) == 2
    assert count_points(fig.data[1]) == 1
    assert count_points(fig.data[0]) + count_points(fig.data[1]) == 90


def test_beeswarm_downsamples_many_cases() -> None:
    exp = make_explanation(n=25_000, n_features=2)
    fig = beeswarm_figure(exp)
    assert count_points(fig.data[0]) == MAX_POINTS


def test_waterfall_cumulative_end_equals_output() -> None:
    exp = make_explanation(n=5, n_features=20)
    case = exp.case(2)
    fig = waterfall_figure(case, max_display=6)
    assert_house_layout(fig)
    assert len(fig.data) == 1
    trace = fig.data[0]
    measure = list(trace.measure)
    assert measure[0] == "absolute" and measure[-1] == "total"
    x = np.asarray(trace.x, dtype=float)
    relative = x[[m == "relative" for m in measure]]
    assert len(relative) == 7
    assert x[0] + relative.sum() == pytest.approx(case.output)
    assert x[-1] == pytest.approx(case.base_value + case.values.sum())
    assert "other 14 features" in trace.y
    assert axis_title(fig.layout.xaxis) == "Log-odds of malignant"
    top = trace.y[-2]
    biggest = case.values.abs().idxmax()
    assert top.startswith(f"{biggest} = ")
    assert trace.increasing.marker.color == SHAP_RED
    assert trace.decreasing.marker.color == SHAP_BLUE


def test_waterfall_labels_use_readable_values_and_threshold() -> None:
    exp = make_explanation(n=2, n_features=3, output_space="probability")
    exp.data.iloc[0, 0] = 1203.4
    fig = waterfall_figure(exp.case(0), threshold=0.4)
    assert "feature 0 = 1,203" in fig.data[0].y
    assert fig.layout.shapes[0].x0 == 0.4
    assert axis_title(fig.layout.xaxis) == "Probability of malignant"
    no_line = waterfall_figure(make_explanation(n=2, n_features=3).case(0), threshold=0.4)
    assert len(no_line.layout.shapes) == 0


def test_dependence_figure() -> None:
    exp = make_explanation(n=40, n_features=4)
    fig = dependence_figure(exp, "feature 1")
    assert_house_layout(fig)
    assert len(fig.data) == 1
    assert np.allclose(fig.data[0].y, exp.values[:, 1])
    assert axis_title(fig.layout.xaxis) == "feature 1"
    assert "SHAP value" in axis_title(fig.layout.yaxis)
    with pytest.raises(ConfigError, match="Feature 'nope' is not in this explanation"):
        dependence_figure(exp, "nope")


def test_dependence_downsamples() -> None:
    exp = make_explanation(n=12_000, n_features=2)
    assert count_points(dependence_figure(exp, "feature 0").data[0]) == MAX_POINTS
