"""Data figures: cleaning, flow of cases, column distributions, class balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from medimg_core.errors import DataError
from medimg_core.modelling.validation import SplitSummary
from medimg_core.reporting.figures.data import (
    class_balance_figure,
    cleaning_figure,
    distribution_figure,
    flow_counts,
    flow_figure,
)
from medimg_core.tables.cleaning import CleaningPlan, CleaningReport, clean
from medimg_core.tables.roles import Roles
from tests.unit.reporting.figures.conftest import assert_house_layout


def cleaning_report() -> CleaningReport:
    data = pd.DataFrame({"a": range(540)})
    removed = pd.DataFrame({"a": range(29), "reason": ["missing values"] * 20 + ["duplicate"] * 9})
    return CleaningReport(
        data=data,
        removed=removed,
        counts={"missing label": 0, "missing values": 20, "duplicate": 9},
        conflicts=pd.DataFrame(),
        flags=pd.DataFrame(),
        dropped_columns={},
        n_input=569,
        plan=CleaningPlan(),
    )


def test_cleaning_figure() -> None:
    fig = cleaning_figure(cleaning_report())
    assert_house_layout(fig)
    assert len(fig.data) == 1
    assert list(fig.data[0].x) == [9, 20, 0]
    assert "569 in, 540 kept" in fig.layout.title.text
    assert fig.data[0].text[1] == "20 (3.5%)"


def test_flow_figure_from_result_objects() -> None:
    split = SplitSummary(
        grouped_by=None,
        n_dev=432,
        n_test=108,
        patients_dev=None,
        patients_test=None,
        class_counts_dev={},
        class_counts_test={},
        cv_folds=5,
        test_size=0.2,
    )
    counts = flow_counts(cleaning_report(), split)
    assert counts == {
        "rows in": 569,
        "missing label": 0,
        "missing values": 20,
        "duplicate": 9,
        "development": 432,
        "test": 108,
    }
    fig = flow_figure(counts)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Sankey)
    labels = list(fig.data[0].node.label)
    assert labels[0] == "Rows in<br>569"
    assert "Development<br>432" in labels and "Test<br>108" in labels
    assert sum(fig.data[0].link.value) == 20 + 9 + 540 + 432 + 108
    assert "missing label" in fig.layout.title.subtitle.text


def test_flow_figure_rejects_counts_that_do_not_add_up() -> None:
    with pytest.raises(DataError, match="569 rows in − 29 removed = 540, but development"):
        flow_figure({"rows in": 569, "missing values": 29, "development": 400, "test": 100})
    with pytest.raises(DataError, match="negative"):
        flow_figure({"rows in": -1})
    fig = flow_figure({"duplicate": 5, "development": 80, "test": 20})
    assert fig.data[0].node.label[0] == "Rows in<br>105"


def test_distribution_numeric_is_binned_and_compact() -> None:
    s = pd.Series(np.random.default_rng(0).normal(size=50_000))
    s.iloc[:7] = np.nan
    fig = distribution_figure(s)
    assert fig.layout.height == 120
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Bar)
    assert len(fig.data[0].x) <= 30
    assert sum(fig.data[0].y) == 50_000 - 7
    assert fig.layout.annotations[0].text == "7 missing"


def test_distribution_text_top_ten() -> None:
    s = pd.Series([f"site {i}" for i in range(15) for _ in range(i + 1)])
    fig = distribution_figure(s)
    assert len(fig.data[0].x) == 11
    assert fig.data[0].x[0] == "site 14"
    assert fig.data[0].x[-1] == "other (5)"


def test_distribution_dates_and_empty() -> None:
    dates = pd.Series(pd.date_range("2020-01-01", periods=400, freq="D"))
    assert len(distribution_figure(dates).data) == 1
    empty = distribution_figure(pd.Series([np.nan, np.nan]))
    assert len(empty.data) == 0
    assert empty.layout.annotations[0].text == "all values missing"


def test_class_balance_percentages() -> None:
    labels = pd.Series(["benign"] * 357 + ["malignant"] * 212)
    fig = class_balance_figure(labels)
    assert_house_layout(fig)
    assert list(fig.data[0].x) == ["benign", "malignant"]
    assert list(fig.data[0].text) == ["357 (62.7%)", "212 (37.3%)"]
    assert "569 cases" in fig.layout.title.text


@pytest.mark.parametrize(
    "labels",
    [[4, 4, 4, 2], ["2", "4", "4", "4"], [1.0, 0.0, 0.0, 0.0], [0, 1, 1, 1]],
    ids=["ints-2-4", "strings-2-4", "floats-0-1", "ints-0-1"],
)
def test_class_balance_numeric_labels_are_categories(labels: list[object]) -> None:
    fig = class_balance_figure(pd.Series(labels))
    names = [str(v) for v in fig.data[0].x]
    assert fig.layout.xaxis.type == "category"
    assert fig.layout.xaxis.categoryorder == "array"
    assert list(fig.layout.xaxis.categoryarray) == names
    counted = pd.Series([str(v) for v in labels]).value_counts()
    assert dict(zip(names, fig.data[0].y, strict=True)) == counted.to_dict()


def test_distribution_of_scores_names_each_bar() -> None:
    scores = pd.Series([1, 1, 2, 3, 10, 10, 10, 5, 7, 8])
    fig = distribution_figure(scores)
    assert fig.layout.xaxis.type == "category"
    assert list(fig.layout.xaxis.categoryarray) == list(fig.data[0].x)


def test_small_removal_counts_get_one_tick_per_row() -> None:
    """One removed row used to show the ticks "0, 1, 1" (half-row ticks rounded to integers)."""
    frame = pd.DataFrame(
        {"id": ["a", "a", "b", "c"], "x": [1.5, 1.5, 2.5, 3.5], "y": ["p", "p", "q", "p"]}
    )
    fig = cleaning_figure(clean(frame, Roles(label="y", id="id")))
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tick0 == 0


def test_flow_figure_wraps_a_long_subtitle_instead_of_clipping_it() -> None:
    rules = ["missing label", "missing values", "duplicate record", "quarantined file", "bad id"]
    counts = {"rows in": 100, **dict.fromkeys(rules, 0), "development": 80, "test": 20}
    fig = flow_figure(counts)
    lines = fig.layout.title.subtitle.text.split("<br>")
    assert len(lines) > 1 and all(len(line) <= 55 for line in lines)
    assert all(rule in fig.layout.title.subtitle.text for rule in rules)
    short = flow_figure({"rows in": 100, "missing label": 0, "development": 80, "test": 20})
    extra = 16 * (len(lines) - 1)
    assert fig.layout.margin.t == short.layout.margin.t + extra
    assert fig.layout.height == short.layout.height + extra
