"""The forest plot shows exactly each group's value and interval, n in the labels, the pooled
reference, and keeps groups without a value on the axis."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.modelling.evaluation import MetricValue
from medimg_core.modelling.subgroups import GroupMetrics
from medimg_core.reporting.figures.subgroups import forest_figure, forest_labels
from tests.unit.reporting.figures.conftest import assert_house_layout

NAN = float("nan")


def row(group: str, n: int, auc: float, lo: float, hi: float, partition: str = "held-out site"):
    metrics = {"roc_auc": MetricValue(auc, (lo, hi)), "sensitivity": MetricValue(0.8, (0.6, 0.9))}
    return GroupMetrics("site", group, partition, n, n // 3, metrics)


SITES = [
    row("Hospital A", 120, 0.91, 0.85, 0.96),
    row("Hospital B", 90, 0.88, 0.80, 0.94),
    row("Hospital C", 60, 0.70, 0.58, 0.81),
]


def test_points_and_intervals_are_the_rows_numbers() -> None:
    pooled = MetricValue(0.84, (0.80, 0.88))
    fig = forest_figure(SITES, "roc_auc", reference=pooled, reference_label="Pooled")
    assert_house_layout(fig)
    sites, ref = fig.data
    assert list(sites.y) == ["Hospital A (n=120)", "Hospital B (n=90)", "Hospital C (n=60)"]
    assert np.allclose(sites.x, [0.91, 0.88, 0.70])
    assert np.allclose(
        np.asarray(sites.x) - np.asarray(sites.error_x.arrayminus), [0.85, 0.80, 0.58]
    )
    assert np.allclose(np.asarray(sites.x) + np.asarray(sites.error_x.array), [0.96, 0.94, 0.81])
    assert sites.name == "Held-out site"
    assert list(ref.y) == ["Pooled (n=270)"] and ref.x[0] == pytest.approx(0.84)
    assert ref.marker.symbol == "diamond"
    assert ref.x[0] - ref.error_x.arrayminus[0] == pytest.approx(0.80)
    assert ref.x[0] + ref.error_x.array[0] == pytest.approx(0.88)
    assert [s.x0 for s in fig.layout.shapes] == [pytest.approx(0.84)]  # reference line
    assert list(fig.layout.yaxis.categoryarray) == [*sites.y, "Pooled (n=270)"]
    assert fig.layout.yaxis.autorange == "reversed"  # first row on top
    assert "ROC AUC" in fig.layout.xaxis.title.text


def test_a_group_without_the_metric_stays_on_the_axis_as_na() -> None:
    rows = [*SITES[:2], row("Clinic D", 8, NAN, NAN, NAN)]
    fig = forest_figure(rows, "roc_auc")
    (trace,) = fig.data
    assert list(trace.y)[-1] == "Clinic D (n=8) n/a"
    assert np.isnan(trace.x[-1])


def test_partitions_get_their_own_traces_and_labels() -> None:
    rows = [
        row("F", 100, 0.9, 0.8, 0.95, "cv"),
        row("M", 80, 0.85, 0.75, 0.92, "cv"),
        row("F", 30, 0.88, 0.7, 0.97, "test"),
    ]
    fig = forest_figure(rows, "sensitivity", positive="malignant")
    assert [t.name for t in fig.data] == ["Cross-validated (development)", "Held-out test"]
    assert list(fig.data[0].y) == ["F (n=100, CV)", "M (n=80, CV)"]
    assert list(fig.data[1].y) == ["F (n=30, test)"]
    assert np.allclose(fig.data[0].x, [0.8, 0.8])
    assert "Sensitivity for malignant" in fig.layout.xaxis.title.text
    assert forest_labels([*rows[:1], GroupMetrics("age", "<40", "cv", 5, 1, {})]) == [
        "site: F (n=100)",
        "age: <40 (n=5)",
    ]


def test_empty_rows_or_unknown_metric_are_refused() -> None:
    with pytest.raises(ConfigError, match="no groups"):
        forest_figure([])
    with pytest.raises(ConfigError, match="Unknown metric"):
        forest_figure(SITES, "kappa")
