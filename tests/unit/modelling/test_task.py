"""Tests for medimg_core.modelling.task: the label, its classes and positive class, typed features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.task import MAX_CATEGORIES, resolve_features, resolve_task
from medimg_core.tables.roles import Roles
from tests.unit.modelling.conftest import ROLES


def test_binary_task_proposes_the_disease_class(wdbc: pd.DataFrame) -> None:
    task = resolve_task(wdbc, ROLES)
    assert task.label_column == "diagnosis"
    assert task.classes == ("benign", "malignant")
    assert task.positive_class == "malignant"
    assert task.is_binary and task.warnings == ()
    assert task.labels_by_code == ("benign", "malignant")
    assert task.labels is not None and len(task.labels) == len(wdbc)


def test_explicit_positive_matches_by_text_and_orders_the_codes() -> None:
    df = pd.DataFrame({"y": [0, 1, 0, 1], "x": [1.0, 2.0, 3.0, 4.0]})
    task = resolve_task(df, Roles(label="y"), positive="0")
    assert task.positive_class == 0
    assert task.labels_by_code == (1, 0)
    with pytest.raises(
        ConfigError, match=r"positive class 'yes' is not among the labels \['0', '1'\]"
    ):
        resolve_task(df, Roles(label="y"), positive="yes")


def test_multiclass_ignores_a_positive_class_and_says_so() -> None:
    df = pd.DataFrame({"y": ["a", "b", "c"], "x": [1, 2, 3]})
    task = resolve_task(df, Roles(label="y"), positive="a")
    assert task.positive_class is None and not task.is_binary
    assert task.labels_by_code == ("a", "b", "c")
    assert len(task.warnings) == 1 and "'a' was ignored" in task.warnings[0]


@pytest.mark.parametrize(
    ("frame", "roles", "error", "message"),
    [
        (pd.DataFrame({"y": ["a", "b"]}), Roles(), ConfigError, "No label column was chosen"),
        (pd.DataFrame({"y": ["a", "b"]}), Roles(label="dx"), DataError, "'dx' is not in the data"),
        (
            pd.DataFrame({"y": ["a", None, "b"]}),
            Roles(label="y"),
            DataError,
            r"1 row\(s\) have no value in the label column 'y'; run cleaning first",
        ),
        (pd.DataFrame({"y": ["a", "a"]}), Roles(label="y"), DataError, "single class \\('a'\\)"),
    ],
)
def test_label_problems_are_named(
    frame: pd.DataFrame, roles: Roles, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        resolve_task(frame, roles)


def test_features_are_typed_in_data_order() -> None:
    df = pd.DataFrame(
        {
            "case": ["p1", "p2", "p3"],
            "site": ["B", "A", None],
            "size": [1.0, 2.0, np.nan],
            "y": ["a", "b", "a"],
            "grade": [1, 2, 3],
        }
    )
    spec = resolve_features(df, Roles(label="y", id="case"))
    assert spec.columns == ("site", "size", "grade")
    assert spec.numeric == ("size", "grade")
    assert spec.categorical == ("site",)
    assert spec.categories == {"site": ("A", "B")}
    assert spec.width == 4


def test_free_text_and_no_features_are_refused() -> None:
    text = pd.DataFrame({"note": [f"n{i}" for i in range(MAX_CATEGORIES + 1)], "y": "a"})
    with pytest.raises(DataError, match=r"'note' \(31 distinct values\) hold free text"):
        resolve_features(text, Roles(label="y"))
    with pytest.raises(DataError, match="no feature columns left"):
        resolve_features(pd.DataFrame({"y": ["a"]}), Roles(label="y"))
