from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import ConfigError, DataError
from medimg_core.tables import integration
from medimg_core.tables.integration import JoinResult, StackResult, join_tables, stack_sources


def _features() -> pd.DataFrame:
    return pd.DataFrame(
        {"patient": ["1", "2", "2", "3", "4"], "area": [1.0, 2.0, 2.5, 3.0, 4.0]},
        index=["a", "b", "c", "d", "e"],
    )


def _clinical() -> pd.DataFrame:
    return pd.DataFrame({"patient": ["1", "2", "3", "5"], "age": [50, 60, 70, 80]})


def test_public_names_match_all() -> None:
    assert sorted(integration.__all__) == [
        "JoinResult",
        "StackResult",
        "join_tables",
        "stack_sources",
    ]
    for name in integration.__all__:
        assert hasattr(integration, name)


def test_inner_join_reports_both_sides() -> None:
    result = join_tables(_features(), _clinical(), on="patient")
    assert isinstance(result, JoinResult)
    assert list(result.frame.index) == ["a", "b", "c", "d"]
    assert result.frame["age"].tolist() == [50, 60, 60, 70]
    assert list(result.frame.columns) == ["patient", "area", "age"]
    assert result.key == ("patient", "patient")
    assert (result.n_left, result.n_right, result.n_matched) == (5, 4, 4)
    assert result.unmatched_left == ("4",)
    assert result.unmatched_right == ("5",)
    assert result.duplicate_keys == ("2",)
    assert result.notes == ()
    assert result.to_dict()["rows_out"] == 4


def test_left_join_keeps_every_left_row() -> None:
    result = join_tables(_features(), _clinical(), on="patient", how="left")
    assert result.frame.index.equals(_features().index)
    assert np.isnan(result.frame.loc["e", "age"])
    assert result.n_matched == 4


def test_keys_with_different_names_keep_the_left_key_only() -> None:
    right = _clinical().rename(columns={"patient": "PatientID"})
    result = join_tables(_features(), right, on=("patient", "PatientID"))
    assert result.key == ("patient", "PatientID")
    assert "PatientID" not in result.frame.columns
    assert result.n_matched == 4


def test_keys_are_compared_as_stripped_text() -> None:
    left = pd.DataFrame({"id": [1, 2, 3], "x": [0.1, 0.2, 0.3]})
    right = pd.DataFrame({"id": [" 1", "2 ", "3.5"], "y": ["a", "b", "c"]})
    result = join_tables(left, right, on="id")
    assert result.frame["y"].tolist() == ["a", "b"]
    assert result.unmatched_left == ("3",)
    assert result.unmatched_right == ("3.5",)


def test_whole_float_keys_match_integer_text() -> None:
    # An integer ID column with a gap is read as floats: 7.0 must still match "7".
    left = pd.DataFrame({"id": [7.0, np.nan, 8.0], "x": [1, 2, 3]})
    right = pd.DataFrame({"id": ["7", "8"], "y": [10, 20]})
    result = join_tables(left, right, on="id", how="left")
    assert result.frame["y"].tolist()[::2] == [10, 20]
    assert result.n_matched == 2
    assert result.notes == (
        "1 row(s) of the left table have no key and cannot match (kept, with missing right values).",
    )


def test_leading_zeros_are_not_matched_but_reported() -> None:
    left = pd.DataFrame({"id": ["007", "AB12", "9"], "x": [1, 2, 3]})
    right = pd.DataFrame({"id": [7, "ab12", 9], "y": [1, 2, 3]})
    result = join_tables(left, right, on="id")
    assert result.n_matched == 1
    assert result.unmatched_left == ("007", "AB12")
    assert result.unmatched_right == ("7", "ab12")
    (note,) = result.notes
    assert note.startswith(
        "2 unmatched key(s) would match if leading zeros or letter case were ignored "
        "(e.g. '007' ~ '7', 'AB12' ~ 'ab12')."
    )


def test_blank_keys_never_match() -> None:
    left = pd.DataFrame({"id": ["", "1"], "x": [1, 2]})
    right = pd.DataFrame({"id": [" ", "1"], "y": [1, 2]})
    result = join_tables(left, right, on="id")
    assert result.n_matched == 1
    assert len(result.notes) == 2


def test_overlapping_columns_are_suffixed() -> None:
    left = pd.DataFrame({"id": ["1"], "age": [50], "age_right": [0]})
    right = pd.DataFrame({"id": ["1"], "age": [51]})
    result = join_tables(left, right, on="id")
    assert list(result.frame.columns) == ["id", "age", "age_right", "age_right2"]
    assert "'age' -> 'age_right2'" in result.notes[0]


def test_repeated_right_keys_are_refused() -> None:
    right = pd.DataFrame({"patient": ["1", "2", "2", "3", "3", "4", "4", "5", "5", "6", "6"]})
    with pytest.raises(
        DataError,
        match=r"Key column 'patient' of the right table repeats 5 key\(s\) "
        r"\(e\.g\. '2', '3', '4', '5', '6'\); joining would copy.*Keep one row per key",
    ):
        join_tables(_features(), right, on="patient")


def test_missing_key_column_names_available_columns() -> None:
    with pytest.raises(
        DataError,
        match=r"Key column 'Patient ID' is not in the right table\. Close matches: 'PatientID'\. "
        r"Available columns: 'PatientID', 'age'\.",
    ):
        join_tables(
            _features(),
            _clinical().rename(columns={"patient": "PatientID"}),
            on=("patient", "Patient ID"),
        )


def test_invalid_join_options() -> None:
    with pytest.raises(ConfigError, match=r"how='outer' is not a join medimg offers"):
        join_tables(_features(), _clinical(), on="patient", how="outer")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"on=\['patient'\] is not a key"):
        join_tables(_features(), _clinical(), on=["patient"])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"the right table is a dict"):
        join_tables(_features(), {"patient": []}, on="patient")  # type: ignore[arg-type]


def test_join_does_not_modify_inputs() -> None:
    left, right = _features(), _clinical()
    join_tables(left, right, on="patient", how="left")
    pd.testing.assert_frame_equal(left, _features())
    pd.testing.assert_frame_equal(right, _clinical())


def test_stack_sources_unions_columns_and_reports_gaps() -> None:
    a = pd.DataFrame({"x": [1.0, 2.0], "y": [3.0, 4.0]}, index=[10, 11])
    b = pd.DataFrame({"x": [5.0], "z": ["u"]}, index=[10])
    result = stack_sources({"Leeds": a, "Lyon": b})
    assert isinstance(result, StackResult)
    assert list(result.frame.columns) == ["site", "x", "y", "z"]
    assert result.frame["site"].tolist() == ["Leeds", "Leeds", "Lyon"]
    assert result.frame.index.tolist() == [0, 1, 2]
    assert np.isnan(result.frame.loc[2, "y"])
    assert result.sources == ("Leeds", "Lyon")
    assert result.rows_per_source == {"Leeds": 2, "Lyon": 1}
    assert result.columns_missing_per_source == {"Leeds": ("z",), "Lyon": ("y",)}
    assert result.notes == ()
    assert result.to_dict()["columns_missing_per_source"] == {"Leeds": ["z"], "Lyon": ["y"]}


def test_stack_sources_custom_column_name() -> None:
    result = stack_sources({"s1": pd.DataFrame({"site": ["ward 3"]})}, source_column="scanner")
    assert result.frame.columns.tolist() == ["scanner", "site"]


def test_stack_sources_accepts_a_source_column_that_agrees() -> None:
    a = pd.DataFrame({"site": ["A", "A", None], "x": [1, 2, 3]})
    result = stack_sources({"A": a, "B": pd.DataFrame({"x": [4]})})
    assert result.frame["site"].tolist() == ["A", "A", "A", "B"]


def test_stack_sources_refuses_a_source_column_with_another_meaning() -> None:
    a = pd.DataFrame({"site": ["ward 1", "ward 2"], "x": [1, 2]})
    with pytest.raises(
        DataError,
        match=r"Source 'A' already has a column 'site' with other values \(e\.g\. 'ward 1', "
        r"'ward 2'\)\. Pass another name, e\.g\. stack_sources\(\.\.\., source_column='source'\)",
    ):
        stack_sources({"A": a})


def test_stack_sources_notes_types_and_spellings() -> None:
    a = pd.DataFrame({"age": [50, 60], "Grade": ["1", "2"]})
    b = pd.DataFrame({"age": ["fifty"], "grade ": ["1"]})
    result = stack_sources({"A": a, "B": b})
    assert result.notes == (
        "Column 'age' holds different kinds of values per source (A: numbers, B: text); "
        "check units and coding before using it as a feature.",
        "Columns 'Grade', 'grade ' differ only by case or spaces; if they are the same "
        "measurement, rename them to one spelling before stacking.",
    )


def test_stack_sources_errors() -> None:
    with pytest.raises(DataError, match=r"needs at least one table"):
        stack_sources({})
    with pytest.raises(DataError, match=r"Source 'A' is a list, not a table"):
        stack_sources({"A": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"source_column='' is not a usable column name"):
        stack_sources({"A": pd.DataFrame({"x": [1]})}, source_column="")
    repeated = pd.DataFrame([[1, 2]], columns=["x", "x"])
    with pytest.raises(DataError, match=r"Source 'A' has repeated column names: 'x'"):
        stack_sources({"A": repeated})
