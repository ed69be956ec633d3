"""Tests for medimg_core.modelling.task: the label, its classes and positive class, typed features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.task import (
    MAX_CATEGORIES,
    MAX_CATEGORY_CHARS,
    resolve_features,
    resolve_task,
)
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


def _breastmnist_like(label: str = "label") -> pd.DataFrame:
    # BreastMNIST codes malignant as 0 and normal/benign as 1.
    return pd.DataFrame({label: [0] * 4 + [1] * 8, "x": np.arange(12.0) % 5})


def test_numeric_codes_without_a_positive_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"numeric codes 0 and 1.*--positive.*--class-names"):
        resolve_task(_breastmnist_like(), Roles(label="label"))
    two_four = pd.DataFrame({"class": [2, 4, 2, 2], "x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(ConfigError, match=r"numeric codes 2 and 4"):
        resolve_task(two_four, Roles(label="class"))
    digits = pd.DataFrame({"y": ["0", "1", "1"], "x": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError, match="Name the positive class"):
        resolve_task(digits, Roles(label="y"))


def test_breastmnist_names_make_malignant_positive_and_say_why() -> None:
    roles = Roles(label="label", class_names=(("0", "malignant"), ("1", "benign")))
    task = resolve_task(_breastmnist_like(), roles)
    assert task.positive_class == 0
    assert task.labels_by_code == (1, 0)
    assert "class names" in task.positive_rule
    assert task.warnings == ("Positive class 'malignant' (code 0): " + task.positive_rule + ".",)
    # The positive class may be named by its class name.
    by_name = resolve_task(_breastmnist_like(), roles, positive="Malignant")
    assert by_name.positive_class == 0 and by_name.positive_rule == "chosen by the user"
    with pytest.raises(ConfigError, match=r"'malignant' \(code 0\)"):
        resolve_task(_breastmnist_like(), roles, positive="cyst")


@pytest.mark.parametrize(("name", "positive"), [("is_malignant", 1), ("benign", 0)])
def test_zero_one_codes_follow_the_column_name(name: str, positive: int) -> None:
    task = resolve_task(_breastmnist_like(name), Roles(label=name))
    assert task.positive_class == positive
    assert repr(name) in task.positive_rule
    assert task.warnings and repr(name) in task.warnings[0]


def test_a_patient_number_column_is_refused_as_a_feature() -> None:
    frame = pd.DataFrame(
        {
            "patient_number": np.arange(5001, 5041),
            "radius": np.linspace(1.0, 3.0, 40),
            "diagnosis": ["benign", "malignant"] * 20,
        }
    )
    with pytest.raises(DataError, match=r"'patient_number'.*patient ID.*--keep-feature"):
        resolve_features(frame, Roles(label="diagnosis"))
    assert resolve_features(frame, Roles(label="diagnosis", id="patient_number")).columns == (
        "radius",
    )
    kept = resolve_features(frame, Roles(label="diagnosis", keep_as_feature=("patient_number",)))
    assert kept.columns == ("patient_number", "radius")


def test_a_label_without_any_value_is_one_clear_error() -> None:
    empty = pd.DataFrame({"y": pd.Series([], dtype=object), "x": pd.Series([], dtype=float)})
    with pytest.raises(DataError, match=r"label column 'y' has no values"):
        resolve_task(empty, Roles(label="y"))


def test_a_long_text_value_is_free_text_not_a_category() -> None:
    note = ["short", "x" * (MAX_CATEGORY_CHARS + 1), "short", "other"]
    df = pd.DataFrame({"note": note, "y": ["a", "b", "a", "b"], "x": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(DataError, match=r"'note' \(a value of 201 characters\) hold free text"):
        resolve_features(df, Roles(label="y"))
    df["note"] = ["short", "x" * MAX_CATEGORY_CHARS, "short", "other"]
    assert resolve_features(df, Roles(label="y")).categorical == ("note",)


def test_features_too_large_to_compute_with_are_refused_before_training() -> None:
    df = pd.DataFrame({"y": ["a", "b"] * 3, "x": [1.8e308, -1.8e308, 1e308] * 2, "z": 1.0})
    with pytest.raises(DataError, match=r"too large to compute with.*'x': 6 value\(s\)"):
        resolve_features(df, Roles(label="y"))
