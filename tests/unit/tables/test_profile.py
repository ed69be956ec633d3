"""Column profile: types, roles, summaries, histograms, and nothing identifying summarised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg_core.tables.loading import load_sample
from medimg_core.tables.profile import (
    HIDDEN_SUMMARY,
    PROFILE_COLUMNS,
    column_role,
    column_type,
    hidden_columns,
    profile_columns,
)
from medimg_core.tables.roles import Roles

ROLES = Roles(label="diagnosis", id="case_id", quality="qc", site="site", exclude=("name",))


@pytest.fixture
def table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 200
    return pd.DataFrame(
        {
            "case_id": [f"P{i:03d}" for i in range(n)],
            "name": [f"Person {i}" for i in range(n)],
            "size_mm": np.r_[rng.normal(20, 5, n - 10), [np.nan] * 10],
            "grade": rng.choice([1, 2, 3], n),
            "diagnosis": rng.choice(["benign", "malignant"], n, p=[0.7, 0.3]),
            "qc": rng.choice(["good", "poor"], n),
            "site": rng.choice(["A", "B"], n),
            "note": [f"free text number {i} about the lesion" for i in range(n)],
            "scan_date": pd.date_range("2020-01-01", periods=n, freq="D"),
            "empty": np.nan,
        }
    )


def test_one_row_per_column_in_order(table: pd.DataFrame) -> None:
    profile = profile_columns(table, ROLES)
    assert list(profile.columns) == list(PROFILE_COLUMNS)
    assert list(profile["column"]) == list(table.columns)


def test_roles_and_types(table: pd.DataFrame) -> None:
    profile = profile_columns(table, ROLES).set_index("column")
    assert profile["role"].to_dict() == {
        "case_id": "patient ID",
        "name": "excluded",
        "size_mm": "feature",
        "grade": "feature",
        "diagnosis": "label",
        "qc": "quality flag",
        "site": "site",
        "note": "feature",
        "scan_date": "feature",
        "empty": "feature",
    }
    assert profile["type"].to_dict() == {
        "case_id": "identifying",
        "name": "identifying",
        "size_mm": "numeric",
        "grade": "numeric",
        "diagnosis": "categorical",
        "qc": "categorical",
        "site": "categorical",
        "note": "text",
        "scan_date": "date",
        "empty": "numeric",
    }


def test_identifying_values_are_never_summarised(table: pd.DataFrame) -> None:
    profile = profile_columns(table, ROLES).set_index("column")
    for column in ("case_id", "name"):
        assert profile.loc[column, "summary"] == HIDDEN_SUMMARY
        assert profile.loc[column, "distribution"] == []
        assert profile.loc[column, "unique"] == 200
    text = profile.to_string()
    assert "P001" not in text and "Person" not in text


def test_explicit_hidden_overrides_roles(table: pd.DataFrame) -> None:
    profile = profile_columns(table, ROLES, hidden=["note"]).set_index("column")
    assert profile.loc["note", "summary"] == HIDDEN_SUMMARY
    assert profile.loc["case_id", "type"] == "text"


def test_numeric_summary_and_histogram(table: pd.DataFrame) -> None:
    row = profile_columns(table, ROLES).set_index("column").loc["size_mm"]
    values = table["size_mm"].dropna()
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    assert row["summary"].startswith(f"median {median:.3g} (IQR {q1:.3g}–{q3:.3g}); range ")
    assert row["missing %"] == 5.0
    assert len(row["distribution"]) == 20 and sum(row["distribution"]) == 190


def test_values_near_the_float_maximum_get_a_histogram() -> None:
    # max - min overflows: numpy's histogram raised "Too many bins" and the Data page crashed.
    values = np.concatenate([np.linspace(-1.7e308, 0, 30), np.linspace(1e307, 1.7e308, 30)])
    frame = pd.DataFrame({"x": values})
    row = profile_columns(frame, Roles()).set_index("column").loc["x"]
    expected, _ = np.histogram(values / 4, bins=len(row["distribution"]))
    assert row["distribution"] == expected.tolist()
    assert sum(row["distribution"]) == 60 and len(row["distribution"]) == 20


def test_few_numbers_read_as_counts(table: pd.DataFrame) -> None:
    row = profile_columns(table, ROLES).set_index("column").loc["grade"]
    counts = table["grade"].value_counts().sort_index()
    assert row["distribution"] == counts.tolist()
    assert row["summary"].startswith(f"1 {counts[1] / 200:.0%}, 2 {counts[2] / 200:.0%}")


def test_categorical_text_date_and_empty(table: pd.DataFrame) -> None:
    profile = profile_columns(table, ROLES).set_index("column")
    share = (table["diagnosis"] == "benign").mean()
    assert profile.loc["diagnosis", "summary"].startswith(f"benign {share:.0%}, malignant")
    assert sum(profile.loc["diagnosis", "distribution"]) == 200
    assert profile.loc["note", "summary"].startswith("free text, median length ")
    assert "… (+197 more)" in profile.loc["note", "summary"]
    assert profile.loc["scan_date", "summary"] == "from 2020-01-01 to 2020-07-18"
    assert profile.loc["empty", "summary"] == "all values missing"
    assert profile.loc["empty", "missing %"] == 100.0


def test_without_roles_everything_is_a_feature(table: pd.DataFrame) -> None:
    profile = profile_columns(table)
    assert set(profile["role"]) == {"feature"}
    assert HIDDEN_SUMMARY not in set(profile["summary"])


def test_sample_profile() -> None:
    frame = load_sample().frame
    profile = profile_columns(frame, Roles(label="diagnosis", id="case_id")).set_index("column")
    assert profile.loc["mean radius", "summary"] == ("median 13.4 (IQR 11.7–15.8); range 6.98–28.1")
    assert profile.loc["mean area", "summary"] == "median 551 (IQR 420–783); range 144–2,501"
    assert profile.loc["diagnosis", "summary"] == "benign 63%, malignant 37%"


def test_empty_table() -> None:
    profile = profile_columns(pd.DataFrame({"a": pd.Series([], dtype="float64")}))
    assert profile.loc[0, "missing %"] == 0.0
    assert profile.loc[0, "summary"] == "all values missing"


def test_hidden_columns_and_roles() -> None:
    assert hidden_columns(ROLES) == ("case_id", "name")
    assert hidden_columns(None) == ()
    assert hidden_columns(Roles(label="y", exclude=("a", "a"))) == ("a",)
    assert column_role("x", None) == "feature"
    assert column_type(pd.Series([True, False, None])) == "categorical"
    assert column_type(pd.Series(["a", "b"] * 50)) == "categorical"
    assert column_type(pd.Series([str(i) for i in range(100)])) == "text"
