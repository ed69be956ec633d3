"""SHAP figures: importance, beeswarm, waterfall and dependence."""

from __future__ import annotations

import dataclasses

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


@pytest.mark.parametrize("space", ["log-odds", "probability"])
def test_every_explanation_figure_names_its_unit(space: str) -> None:
    exp = make_explanation(n=30, n_features=6, output_space=space)
    unit = f"{space} of malignant"
    importance = importance_figure(exp)
    assert axis_title(importance.layout.xaxis) == f"Mean |SHAP value| ({unit})"
    assert f"({unit})" in importance.data[0].hovertemplate
    swarm = beeswarm_figure(exp)
    assert unit in axis_title(swarm.layout.xaxis)
    assert f"({unit})" in swarm.data[0].hovertemplate
    waterfall = waterfall_figure(exp.case(0))
    assert axis_title(waterfall.layout.xaxis) == unit[:1].upper() + unit[1:]
    assert unit in waterfall.layout.title.text
    assert all(str(h).endswith(space) for h in waterfall.data[0].customdata)
    dependence = dependence_figure(exp, "feature 0")
    assert unit in axis_title(dependence.layout.yaxis)
    assert f"({unit})" in dependence.data[0].hovertemplate


def test_waterfall_shows_the_standard_errors_of_permutation_estimates() -> None:
    exp = make_explanation(n=3, n_features=5, output_space="probability")
    errors = np.full(exp.values.shape, 0.004)
    errors[1, 2] = 0.021
    estimated = dataclasses.replace(
        exp, method="permutation (model-agnostic)", standard_errors=errors
    )
    case = estimated.case(1)
    assert case.standard_errors is not None
    fig = waterfall_figure(case, max_display=5)
    hover = list(fig.data[0].customdata)
    steps = list(fig.data[0].y)
    row = next(i for i, label in enumerate(steps) if label.startswith("feature 2 = "))
    assert "± 0.021 (standard error of the estimate)" in hover[row]
    assert "± 0.004" in hover[steps.index(next(s for s in steps if s.startswith("feature 0 = ")))]
    assert "standard error at most 0.021" in fig.layout.title.subtitle.text
    exact = waterfall_figure(exp.case(1))
    assert "standard error" not in " ".join(map(str, exact.data[0].customdata))
    assert not exact.layout.title.subtitle.text


def test_waterfall_leaves_room_for_the_value_labels() -> None:
    # Labels are drawn outside the bars; the range must leave about 7 px per character on a
    # ~300 px plot beyond the furthest bar end on both sides, so they clear the feature names.
    exp = make_explanation(n=2, n_features=8)
    case = exp.case(0)
    fig = waterfall_figure(case)
    x = np.asarray(fig.data[0].x, dtype=float)
    path = x[0] + np.cumsum(np.r_[0.0, x[1:-1]])
    lo, hi = min(0.0, path.min()), max(0.0, path.max())
    low, high = fig.layout.xaxis.range
    width = high - low
    longest = max(len(t) for t in fig.data[0].text)
    needed = (7 * longest + 10) / 300 * width
    assert lo - low >= needed and high - hi >= needed
    assert fig.layout.yaxis.ticklabelstandoff >= 4


@pytest.mark.parametrize("threshold", [None, 0.4])
@pytest.mark.parametrize("permutation", [False, True])
def test_waterfall_built_without_validation_is_valid_plotly_unchanged(
    threshold: float | None, permutation: bool
) -> None:
    """The waterfall is built from plain dicts (redrawn per case and per what-if edit): a
    validated copy accepts every property and sends the same figure."""
    import json

    import plotly.graph_objects as go
    import plotly.io as pio

    exp = make_explanation(n=3, n_features=15, output_space="probability")
    if permutation:
        exp = dataclasses.replace(exp, standard_errors=np.full(exp.values.shape, 0.01))
    fig = waterfall_figure(exp.case(0), threshold=threshold)
    validated = go.Figure(fig.to_dict())  # raises on any invalid property
    sent = json.loads(pio.to_json(fig, validate=False))
    checked = json.loads(pio.to_json(validated, validate=False))
    # The slimmed white template is _style's, tested there.
    sent["layout"].pop("template"), checked["layout"].pop("template")
    assert sent == checked
    assert (len(fig.layout.shapes) == 1) is (threshold is not None)


def test_importance_leaves_room_for_the_longest_bar_value() -> None:
    # The value is drawn outside the longest bar: at 1,024 px wide it was cut at the figure's
    # edge with only 15% of the range beyond the bar.
    fig = importance_figure(make_explanation(), max_display=12)
    bars = fig.data[0]
    low, high = fig.layout.xaxis.range
    longest = max(len(t) for t in bars.text)
    assert high - max(bars.x) >= (7 * longest + 10) / 300 * (high - low)
