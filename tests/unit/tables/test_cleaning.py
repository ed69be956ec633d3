from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import ConfigError, DataError
from medimg_core.tables import cleaning
from medimg_core.tables.cleaning import (
    DEFAULT_ACCEPTABLE_QUALITY,
    REMOVAL_RULES,
    CleaningPlan,
    CleaningReport,
    clean,
    suggest_plan,
)
from medimg_core.tables.roles import Roles

ROLES = Roles(label="label", id="pid", quality="qc")
KEEP = CleaningPlan(duplicates="keep")


def _accounted(report: CleaningReport, df: pd.DataFrame) -> None:
    assert len(report.data) + len(report.removed) == len(df) == report.n_input
    assert report.data.index.intersection(report.removed.index).empty
    assert (
        report.data.index.union(report.removed.index).sort_values().equals(df.index.sort_values())
    )
    assert sum(report.counts.values()) == len(report.removed)
    assert set(report.removed[report.reason_column]) <= set(REMOVAL_RULES)


def _reasons(report: CleaningReport) -> dict[object, str]:
    return report.removed[report.reason_column].to_dict()


def _frame(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_public_names_match_all() -> None:
    for name in cleaning.__all__:
        assert hasattr(cleaning, name)
    assert {"clean", "suggest_plan", "CleaningPlan", "CleaningReport"} <= set(cleaning.__all__)


def test_clean_table_keeps_everything_and_lists_every_rule() -> None:
    df = _frame(a=[1.0, 2.0, 3.0], b=[4.0, 5.0, 7.0], label=["x", "y", "x"])
    report = clean(df, Roles(label="label"))
    assert report.data.equals(df)
    assert report.removed.empty
    assert list(report.counts) == list(REMOVAL_RULES)
    assert set(report.counts.values()) == {0}
    assert report.conflicts.empty
    assert report.flags.empty
    assert list(report.flags.columns) == ["row", "column", "value", "rule", "detail"]


def test_missing_label_including_blank_text_is_removed_first() -> None:
    df = _frame(a=[1.0, np.nan, 3.0, 4.0], label=["x", None, "  ", "y"])
    report = clean(df, Roles(label="label"))
    assert _reasons(report) == {1: "missing label", 2: "missing label"}
    assert report.counts["missing label"] == 2
    assert report.counts["missing values"] == 0
    _accounted(report, df)


def test_missing_values_count_only_feature_columns() -> None:
    df = _frame(
        pid=[None, "p2", "p3"],
        site=[None, "A", "A"],
        note=[None, "x", "y"],
        a=[1.0, np.nan, 3.0],
        b=[1, 2, 4],
        label=["x", "y", "x"],
    )
    roles = Roles(label="label", id="pid", site="site", exclude=("note",))
    report = clean(df, roles, CleaningPlan(missing="drop"))
    assert _reasons(report) == {1: "missing values"}
    assert list(report.data.index) == [0, 2]


def test_impute_keeps_rows_with_missing_features_without_imputing() -> None:
    df = _frame(a=[1.0, np.nan, 3.0], b=[1.0, 2.0, 4.0], label=["x", "y", "x"])
    report = clean(df, Roles(label="label"), CleaningPlan(missing="impute"))
    assert report.removed.empty
    assert report.data["a"].isna().sum() == 1


def test_conflicting_rows_are_kept_and_listed_as_hard_cases() -> None:
    df = _frame(
        pid=["p1", "p2", "p3", "p4", "p5"],
        a=[1.0, 1.0, 2.0, 1.0, 2.0],
        b=["u", "u", "v", "u", "w"],
        label=["x", "y", "x", "x", "y"],
    )
    report = clean(df, Roles(label="label", id="pid"))
    assert report.removed.empty
    assert list(report.data.index) == [0, 1, 2, 3, 4]
    assert list(report.conflicts.index) == [0, 1, 3]
    assert report.contradictions.empty
    assert any("hard cases" in note for note in report.notes)
    assert set(report.conflicts["conflict_group"]) == {0}
    assert report.to_dict()["conflicts"] == 1


def test_conflict_groups_are_numbered_in_order_of_appearance() -> None:
    df = _frame(a=[5.0, 1.0, 5.0, 1.0, 9.0], b=[1, 1, 1, 1, 2], label=["x", "x", "y", "y", "x"])
    report = clean(df, Roles(label="label"))
    assert report.conflicts["conflict_group"].tolist() == [0, 1, 0, 1]


def test_rows_without_label_do_not_create_conflicts() -> None:
    df = _frame(a=[1.0, 1.0, 2.0], b=[1, 1, 3], label=["x", None, "y"])
    report = clean(df, Roles(label="label"))
    assert _reasons(report) == {1: "missing label"}
    assert report.conflicts.empty


@pytest.mark.parametrize("duplicates", ["auto", "keep", "drop"])
def test_rows_with_different_ids_are_never_duplicates(duplicates: str) -> None:
    df = _frame(
        pid=["p1", "p2", "p3", "p1"],
        a=[1.5, 1.5, 2.5, 2.5],
        b=[3, 3, 4, 4],
        label=["x", "x", "y", "y"],
    )
    plan = CleaningPlan(duplicates=duplicates)  # type: ignore[arg-type]
    report = clean(df, Roles(label="label", id="pid"), plan)
    # p1 and p2 share every value but are different patients; p1's second row has other values.
    assert report.removed.empty
    assert report.duplicates.empty


def test_same_id_and_features_is_a_duplicate_even_if_other_columns_differ() -> None:
    df = _frame(
        pid=["p1", "p2", "p1"],
        a=[1.0, 1.0, 1.0],
        b=[3, 3, 3],
        note=["first scan", "x", "re-export"],
        label=["x", "x", "x"],
    )
    report = clean(df, Roles(label="label", id="pid", exclude=("note",)))
    # Row 1 differs from row 0 in its ID: a different patient who happens to match.
    assert _reasons(report) == {2: "duplicate record"}
    assert report.duplicates[["row", "copy_of", "kind", "action"]].values.tolist() == [
        [2, 0, "same ID", "removed"]
    ]
    assert clean(df, Roles(label="label", id="pid", exclude=("note",)), KEEP).removed.empty


def test_duplicates_compare_missing_values_as_equal() -> None:
    df = _frame(a=[np.nan, np.nan, 1.0], b=[2.0, 2.0, 2.5], label=["x", "x", "y"])
    report = clean(df, Roles(label="label"), CleaningPlan(duplicates="drop"))
    assert _reasons(report) == {1: "duplicate record"}


def test_duplicates_keep_lists_without_removing() -> None:
    df = _frame(a=[1.5, 1.5, 2.5], b=[1, 1, 3], label=["x", "x", "y"])
    assert _reasons(clean(df, Roles(label="label"))) == {1: "duplicate record"}
    report = clean(df, Roles(label="label"), KEEP)
    assert report.removed.empty
    assert report.duplicates["action"].tolist() == ["kept"]


def test_duplicates_are_judged_after_earlier_removals() -> None:
    df = _frame(a=[1.5, 1.5, 1.5], c=[2.5, 2.5, 2.5], label=[None, "x", "x"])
    # Row 0 has no label and goes first, so row 2 is the copy of row 1, not of row 0.
    plan = CleaningPlan(drop_constant_columns=False, duplicates="drop")
    report = clean(df, Roles(label="label"), plan)
    assert _reasons(report) == {0: "missing label", 2: "duplicate record"}
    assert report.duplicates["copy_of"].tolist() == [1]


def test_quality_flag_defaults_case_and_space_insensitive() -> None:
    flags = ["good", " Good ", "OK", "pass", "Passed", "acceptable", "1", "TRUE", "yes", "high"]
    flags += ["bad", "motion", None, "0"]
    df = pd.DataFrame(
        {"a": np.arange(len(flags), dtype=float), "label": ["x", "y"] * 7, "qc": flags}
    )
    report = clean(df, ROLES)
    assert report.counts["quality flag"] == 4
    assert list(report.removed.index) == [10, 11, 12, 13]
    assert set(_reasons(report).values()) == {"quality flag"}
    assert len(DEFAULT_ACCEPTABLE_QUALITY) == 9


def test_quality_flag_numbers_and_booleans() -> None:
    df = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0, 4.0],
            "label": ["x", "y", "x", "y"],
            "qc": [1.0, 0.0, np.nan, 1.0],
            "ok": [True, False, True, False],
        }
    )
    report = clean(df, Roles(label="label", quality="qc", exclude=("ok",)))
    assert _reasons(report) == {1: "quality flag", 2: "quality flag"}
    report = clean(df, Roles(label="label", quality="ok", exclude=("qc",)))
    assert _reasons(report) == {1: "quality flag", 3: "quality flag"}


def test_plan_quality_column_wins_over_roles() -> None:
    df = _frame(a=[1.0, 2.0, 3.0], label=["x", "y", "x"], q1=["bad", "ok", "ok"], q2=["ok"] * 3)
    report = clean(df, Roles(label="label", quality="q2"), CleaningPlan(quality_column="q1"))
    assert _reasons(report) == {0: "quality flag"}
    report = clean(df, Roles(label="label", quality="q1"))
    assert _reasons(report) == {0: "quality flag"}


def test_acceptable_quality_from_plan() -> None:
    df = _frame(a=[1.0, 2.0, 3.0], label=["x", "y", "x"], qc=["A", "b ", "good"])
    plan = CleaningPlan(quality_column="qc", acceptable_quality=("a", "B"))
    report = clean(df, Roles(label="label"), plan)
    assert _reasons(report) == {2: "quality flag"}


def test_quality_column_is_never_a_feature_or_dropped() -> None:
    df = _frame(a=[1.0, 2.0, 3.0], label=["x", "y", "x"], qc=["ok", "ok", "ok"])
    report = clean(df, ROLES)
    assert "qc" not in report.dropped_columns
    assert "qc" in report.data.columns


def test_empty_and_constant_feature_columns_are_dropped_but_roles_are_not() -> None:
    df = _frame(
        pid=["p", "p", "p"],
        site=["A", "A", "A"],
        qc=["ok", "ok", "ok"],
        empty=[np.nan, np.nan, np.nan],
        const=[7.0, 7.0, np.nan],
        text_const=["u", "u", "u"],
        a=[1.0, 2.0, 3.0],
        label=["x", "x", "x"],
    )
    roles = Roles(label="label", id="pid", quality="qc", site="site")
    report = clean(df, roles, CleaningPlan(missing="impute"))
    assert report.dropped_columns == {
        "empty": "empty",
        "const": "constant",
        "text_const": "constant",
    }
    assert list(report.data.columns) == ["pid", "site", "qc", "a", "label"]
    # Removed rows keep every original column.
    assert report.removed.columns.tolist()[:-1] == df.columns.tolist()


def test_empty_column_does_not_remove_every_row() -> None:
    df = _frame(a=[1.0, 2.0], empty=[np.nan, np.nan], label=["x", "y"])
    assert clean(df, Roles(label="label")).n_kept == 2
    plan = CleaningPlan(missing="drop", drop_empty_columns=False)
    kept = clean(df, Roles(label="label"), plan)
    assert kept.n_kept == 0
    assert kept.counts["missing values"] == 2


def test_column_dropping_can_be_switched_off() -> None:
    df = _frame(a=[1.0, 2.0], const=[3, 3], label=["x", "y"])
    report = clean(df, Roles(label="label"), CleaningPlan(drop_constant_columns=False))
    assert report.dropped_columns == {}
    assert "const" in report.data.columns


def test_out_of_range_is_flagged_by_default_and_dropped_on_request() -> None:
    df = _frame(age=[30.0, -2.0, 150.0, np.nan, 60.0], b=[1, 2, 3, 4, 5], label=list("xyxyx"))
    plan = CleaningPlan(missing="impute", ranges={"age": (0, 120)})
    report = clean(df, Roles(label="label"), plan)
    assert report.removed.empty
    flags = report.flags[report.flags["rule"] == "out of range"]
    assert flags["row"].tolist() == [1, 2]
    assert flags["column"].tolist() == ["age", "age"]
    assert flags["value"].tolist() == [-2.0, 150.0]
    assert flags["detail"].iloc[0] == "outside [0, 120]"

    dropped = clean(
        df, Roles(label="label"), CleaningPlan(**{**plan.__dict__, "range_action": "drop"})
    )
    assert _reasons(dropped) == {1: "out of range", 2: "out of range"}


def test_open_ranges_and_inclusive_bounds() -> None:
    df = _frame(a=[0.0, 1.0, 2.0, 3.0], b=[1, 2, 3, 4], label=list("xyxy"))
    plan = CleaningPlan(ranges={"a": (None, 2.0), "b": (2, None)}, range_action="drop")
    report = clean(df, Roles(label="label"), plan)
    assert _reasons(report) == {0: "out of range", 3: "out of range"}


def test_outliers_use_robust_z_on_numeric_features_only() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    a[7] = 50.0
    df = pd.DataFrame(
        {
            "a": a,
            "pid": np.arange(200) * 1000.0,
            "text": ["u", "v"] * 100,
            "label": ["x", "y"] * 100,
        }
    )
    report = clean(df, Roles(label="label", id="pid"))
    outliers = report.flags[report.flags["rule"] == "outlier"]
    assert outliers["row"].tolist() == [7]
    assert outliers["column"].tolist() == ["a"]
    assert outliers["detail"].iloc[0].startswith("robust z > 5")
    assert report.removed.empty

    with pytest.raises(ConfigError, match=r"can no longer be removed.*give plausible ranges"):
        CleaningPlan(outlier_action="drop")  # type: ignore[arg-type]


def test_outlier_threshold_is_the_plan_value() -> None:
    a = np.concatenate([np.linspace(-1, 1, 99), [4.0]])
    df = pd.DataFrame({"a": a, "label": ["x", "y"] * 50})
    # MAD of the linspace is 0.5, so the robust z of 4.0 is about 4 / 0.74 = 5.4.
    assert len(clean(df, Roles(label="label"), CleaningPlan(outlier_z=5.0)).flags) == 1
    assert len(clean(df, Roles(label="label"), CleaningPlan(outlier_z=6.0)).flags) == 0


def test_outliers_when_most_values_are_equal() -> None:
    a = np.zeros(100)
    a[:10] = 1.0
    a[50] = 100.0
    df = pd.DataFrame({"a": a, "case": np.arange(100.0), "label": ["x", "y"] * 50})
    report = clean(df, Roles(label="label"))
    assert report.flags["row"].tolist() == [50]
    assert "mean absolute deviation" in report.flags["detail"].iloc[0]


def test_flags_skip_rows_removed_earlier() -> None:
    df = _frame(a=[1.0, 2.0, 500.0], b=[1, 2, 3], label=["x", "y", None])
    report = clean(df, Roles(label="label"), CleaningPlan(ranges={"a": (0, 10)}))
    assert report.flags.empty


def test_range_drop_happens_before_outlier_drop() -> None:
    a = np.concatenate([np.linspace(0, 1, 50), [100.0]])
    df = pd.DataFrame({"a": a, "label": ["x"] * 51})
    plan = CleaningPlan(ranges={"a": (0, 10)}, range_action="drop")
    report = clean(df, Roles(label="label"), plan)
    assert _reasons(report) == {50: "out of range"}
    assert report.flags["rule"].tolist() == ["out of range"]


def test_first_rule_wins() -> None:
    df = _frame(a=[np.nan, 1.0, 1.0], b=[1, 2, 2], label=[None, "x", "x"], qc=["bad", "bad", "ok"])
    report = clean(df, ROLES)
    # Rows 1 and 2 differ in their quality flag, so neither is a duplicate of the other.
    assert _reasons(report) == {0: "missing label", 1: "quality flag"}


def test_index_is_preserved_and_accounted() -> None:
    df = _frame(a=[1.0, 1.0, np.nan, 4.0], b=[1, 1, 2, 3], label=["x", "x", "y", "y"])
    df.index = pd.Index(["d", "c", "b", "a"])
    report = clean(df, Roles(label="label"), CleaningPlan(missing="drop", duplicates="drop"))
    assert _reasons(report) == {"c": "duplicate record", "b": "missing values"}
    assert list(report.data.index) == ["d", "a"]
    _accounted(report, df)


def test_input_frame_is_not_modified() -> None:
    df = _frame(a=[1.0, 1.0, np.nan], const=[1, 1, 1], label=["x", "x", None])
    before = df.copy()
    clean(df, Roles(label="label"))
    pd.testing.assert_frame_equal(df, before)


def test_reason_column_never_overwrites_user_data() -> None:
    df = _frame(a=[1.0, 1.0], reason=["referral", "screening"], label=["x", "x"])
    report = clean(df, Roles(label="label"), CleaningPlan(drop_constant_columns=False))
    assert report.removed.empty
    df = _frame(
        a=[1.0, 1.0, 2.0],
        reason=["s", "s", "s"],
        conflict_group=[1, 1, 1],
        label=["x", "y", None],
    )
    report = clean(df, Roles(label="label", exclude=("reason", "conflict_group")))
    assert report.reason_column == "removal_reason"
    assert report.removed["reason"].tolist() == ["s"]
    assert report.removed["removal_reason"].tolist() == ["missing label"]
    assert list(report.conflicts.index) == [0, 1]
    assert report.conflicts.columns[-1] == "conflict_group_id"
    assert report.to_dict()["conflicts"] == 1


def test_predict_time_without_label_column() -> None:
    df = _frame(a=[1.0, 1.0, np.nan, 3.0], b=[1, 1, 2, 3])
    plan = CleaningPlan(missing="drop", duplicates="drop")
    report = clean(df, Roles(label="label"), plan, require_label=False)
    assert _reasons(report) == {1: "duplicate record", 2: "missing values"}
    assert report.counts["missing label"] == 0
    assert report.conflicts.empty
    assert report.class_counts_before == {}


def test_predict_time_keeps_rows_with_missing_label() -> None:
    df = _frame(a=[1.0, 2.0], label=[None, "x"])
    assert clean(df, Roles(label="label"), require_label=False).n_kept == 2


def test_predict_time_missing_quality_column_is_skipped_with_a_note() -> None:
    df = _frame(a=[1.0, 2.0])
    report = clean(df, ROLES, require_label=False)
    assert report.n_kept == 2
    assert report.notes[0] == (
        "The quality column 'qc' is not in this table; the quality step was skipped."
    )


def test_no_feature_columns_is_reported_not_deduplicated() -> None:
    df = _frame(pid=["p1", "p2"], label=["x", "x"])
    report = clean(df, Roles(label="label", id="pid"))
    assert report.n_kept == 2
    assert "no feature columns" in report.notes[0]


def test_empty_table() -> None:
    df = pd.DataFrame({"a": pd.Series([], dtype=float), "label": pd.Series([], dtype=str)})
    report = clean(df, Roles(label="label"))
    assert report.n_input == 0
    assert report.dropped_columns == {}
    assert list(report.counts.values()) == [0] * len(REMOVAL_RULES)


def test_to_dict_summary() -> None:
    df = _frame(a=[1.0, 1.0, 100.0, 2.0], b=[1, 1, 2, 3], label=["x", "x", "y", None])
    plan = CleaningPlan(ranges={"a": (0, 10)}, duplicates="drop")
    report = clean(df, Roles(label="label"), plan)
    summary = report.to_dict()
    assert summary["rows_in"] == 4
    assert summary["rows_kept"] == 2
    assert summary["removed_by_rule"]["duplicate record"] == 1
    assert summary["duplicate_records"] == {"removed": 1, "kept": 0}
    assert summary["class_counts"]["before"] == {"x": 2, "y": 1}
    assert summary["class_counts"]["removed_by_rule"] == {"duplicate record": {"x": 1}}
    assert summary["class_counts"]["after"] == {"x": 1, "y": 1}
    assert summary["missing_by_column"] == {
        "a": {"missing": 0, "share": 0.0},
        "b": {"missing": 0, "share": 0.0},
    }
    assert summary["flagged_cells"] == {"out of range": 1}
    assert CleaningPlan.from_dict(summary["plan"]) == report.plan


def test_label_absent_names_close_matches() -> None:
    df = _frame(a=[1.0], Diagnosis=["x"], diagnostic=["y"])
    with pytest.raises(
        DataError,
        match=r"Label column 'diagnosis' is not in the table\. "
        r"Close matches: 'Diagnosis', 'diagnostic'",
    ):
        clean(df, Roles(label="diagnosis"))


def test_label_absent_lists_available_columns_without_close_match() -> None:
    df = _frame(a=[1.0], b=[2.0])
    with pytest.raises(DataError, match=r"Available columns: 'a', 'b'\. Choose the label column"):
        clean(df, Roles(label="outcome"))


def test_no_label_chosen() -> None:
    with pytest.raises(ConfigError, match=r"No label column was chosen.*require_label=False"):
        clean(_frame(a=[1.0]), Roles())


def test_quality_column_absent() -> None:
    df = _frame(a=[1.0], label=["x"], QC=["ok"])
    with pytest.raises(
        DataError,
        match=r"Quality column 'qc' is not in the table\. "
        r"Close matches: 'QC'\. Choose the quality column again, or clear it",
    ):
        clean(df, ROLES)


def test_quality_column_equal_to_label() -> None:
    with pytest.raises(ConfigError, match=r"'label' is both the label and the quality flag"):
        clean(_frame(a=[1.0], label=["x"]), Roles(label="label", quality="label"))


def test_not_a_dataframe() -> None:
    with pytest.raises(DataError, match=r"needs a pandas DataFrame, got list"):
        clean([[1, 2]], Roles(label="a"))  # type: ignore[arg-type]


def test_repeated_column_names() -> None:
    df = pd.DataFrame([[1.0, 2.0, "x"]], columns=["a", "a", "label"])
    with pytest.raises(DataError, match=r"repeated column names: 'a'"):
        clean(df, Roles(label="label"))


def test_range_on_unknown_column() -> None:
    df = _frame(age=[1.0], label=["x"])
    with pytest.raises(ConfigError, match=r"range is set for column 'Age'.*Close matches: 'age'"):
        clean(df, Roles(label="label"), CleaningPlan(ranges={"Age": (0, 1)}))


def test_range_low_above_high() -> None:
    df = _frame(age=[1.0], label=["x"])
    with pytest.raises(ConfigError, match=r"'age' has low 120 above high 0\. Swap the bounds"):
        clean(df, Roles(label="label"), CleaningPlan(ranges={"age": (120, 0)}))


def test_range_on_text_column() -> None:
    df = _frame(sex=["f"], label=["x"])
    with pytest.raises(ConfigError, match=r"'sex', but its values are not numbers"):
        clean(df, Roles(label="label"), CleaningPlan(ranges={"sex": (0, 1)}))


@pytest.mark.parametrize("bound", [float("nan"), "5", True])
def test_range_bound_not_a_number(bound: object) -> None:
    df = _frame(age=[1.0], label=["x"])
    with pytest.raises(ConfigError, match=r"which is not a finite number"):
        clean(df, Roles(label="label"), CleaningPlan(ranges={"age": (bound, None)}))  # type: ignore[dict-item]


def test_range_not_a_pair() -> None:
    df = _frame(age=[1.0], label=["x"])
    with pytest.raises(ConfigError, match=r"give it as \(low, high\)"):
        clean(df, Roles(label="label"), CleaningPlan(ranges={"age": 5}))  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("missing", "mean", r"missing='mean' is not valid\. Use one of 'drop', 'impute'"),
        ("range_action", "remove", r"range_action='remove' is not valid"),
        ("outlier_action", "Drop", r"outlier_action='Drop' is not valid"),
        ("duplicates", "remove", r"duplicates='remove' is not valid\. Use one of 'auto'"),
        ("impute_strategy", "mode", r"impute_strategy='mode' is not valid"),
        ("outlier_z", 0, r"outlier_z=0 is not a positive number"),
        ("outlier_z", float("inf"), r"outlier_z=inf is not a positive number"),
    ],
)
def test_invalid_plan_options(option: str, value: object, message: str) -> None:
    plan = CleaningPlan(**{option: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        clean(_frame(a=[1.0], label=["x"]), Roles(label="label"), plan)


def test_suggest_plan_copies_quality_and_imputes() -> None:
    df = _frame(a=[1.0, 2.0, 3.0, 4.0, 5.0], label=list("xyxyx"), qc=["ok"] * 5)
    plan = suggest_plan(df, ROLES)
    assert plan == CleaningPlan(quality_column="qc")
    assert plan.missing == "impute" and plan.duplicates == "auto"


def test_default_plan_imputes_whatever_the_share_missing() -> None:
    a = [1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    df = pd.DataFrame({"a": a, "b": np.arange(10.0), "label": ["x", "y"] * 5})
    assert CleaningPlan().missing == "impute"
    assert suggest_plan(df, Roles(label="label")).missing == "impute"  # 10 %
    report = clean(df, Roles(label="label"))
    assert report.n_kept == 10
    assert report.missing_by_column == {"a": 1, "b": 0}
    assert report.to_dict()["missing_by_column"]["a"] == {"missing": 1, "share": 0.1}


def test_complete_case_dropping_is_explicit_and_its_cost_is_reported() -> None:
    a = [np.nan, np.nan, np.nan, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    df = pd.DataFrame({"a": a, "b": np.arange(10.0), "label": ["x", "y"] * 5})
    report = clean(df, Roles(label="label"), CleaningPlan(missing="drop"))
    assert report.counts["missing values"] == 3
    assert any("complete-case" in note and "3 of 10" in note for note in report.notes)


def test_suggest_plan_result_cleans_without_losing_many_rows() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=100)
    a[rng.random(100) < 0.4] = np.nan
    df = pd.DataFrame({"a": a, "b": rng.normal(size=100), "label": ["x", "y"] * 50})
    report = clean(df, Roles(label="label"), suggest_plan(df, Roles(label="label")))
    assert report.n_kept == 100


def test_suggest_plan_rejects_non_frames() -> None:
    with pytest.raises(DataError, match=r"suggest_plan\(\) needs a pandas DataFrame, got dict"):
        suggest_plan({"a": [1]}, Roles())  # type: ignore[arg-type]


def test_moderately_large_table_is_accounted() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    values = rng.normal(size=(n, 5))
    values[rng.random((n, 5)) < 0.01] = np.nan
    df = pd.DataFrame(values, columns=list("abcde"))
    df["label"] = rng.choice(["x", "y"], n)
    df["qc"] = rng.choice(["good", "bad"], n, p=[0.95, 0.05])
    df = pd.concat([df, df.iloc[:300]], ignore_index=True)
    report = clean(df, Roles(label="label", quality="qc"), CleaningPlan(missing="drop"))
    _accounted(report, df)
    expected = df.dropna().drop_duplicates()
    expected = expected[expected["qc"] == "good"]
    assert report.data.index.equals(expected.index)


def _wisconsin_original(with_id: bool = True) -> pd.DataFrame:
    """699 biopsies like the UCI Wisconsin original table: an ID, nine 1-10 cytology scores.

    Many benign biopsies of different patients share every score (mostly 1s); 8 rows are true
    repeats of an earlier record (same ID, same scores, same class).
    """
    rng = np.random.default_rng(8)
    n_benign, n_malignant = 454, 237
    benign = np.where(rng.random((n_benign, 9)) < 0.8, 1, rng.integers(1, 4, (n_benign, 9)))
    malignant = rng.integers(1, 11, (n_malignant, 9))
    scores = np.vstack([benign, malignant])
    df = pd.DataFrame(scores, columns=[f"score_{i}" for i in range(1, 10)])
    df["class"] = [2] * n_benign + [4] * n_malignant
    df.insert(0, "id", rng.permutation(np.arange(1_000_000, 1_000_000 + len(df))))
    repeats = df.iloc[[3, 50, 100, 200, 460, 500, 600, 650]]
    df = pd.concat([df, repeats], ignore_index=True)
    return df if with_id else df.drop(columns="id")


def test_wisconsin_like_table_keeps_every_patient_and_removes_only_true_repeats() -> None:
    df = _wisconsin_original()
    assert len(df) == 699
    # Far more than 8 rows share all nine scores with an earlier row under another ID.
    scores = [c for c in df.columns if c.startswith("score")]
    assert df.duplicated(subset=[*scores, "class"]).sum() > 100
    report = clean(df, Roles(label="class", id="id"))
    assert sorted(_reasons(report)) == list(range(691, 699))
    assert report.counts["duplicate record"] == 8
    assert report.data["id"].nunique() == report.n_kept == 691
    assert report.class_counts_before == {"2": 458, "4": 241}
    assert report.removed_by_class == {"duplicate record": {"2": 4, "4": 4}}
    assert report.class_counts_after == {"2": 454, "4": 237}
    assert report.prevalence_shift() < 0.005
    assert not any("class balance" in note for note in report.notes)
    # A score of 10 is the top of the scale, not an outlier.
    assert not (report.flags["rule"] == "outlier").any()


def test_identical_rows_on_scores_without_id_are_kept_in_auto_and_removed_on_request() -> None:
    df = _wisconsin_original(with_id=False)
    auto = clean(df, Roles(label="class"))
    assert auto.removed.empty
    n_candidates = int(df.duplicated().sum())
    assert len(auto.duplicates) == n_candidates > 100
    assert set(auto.duplicates["action"]) == {"kept"}
    note = next(n for n in auto.notes if "identical on every column" in n)
    assert "expected between different patients, so they were kept" in note
    assert "choose 'drop'" in note and "1–10" in note
    dropped = clean(df, Roles(label="class"), CleaningPlan(duplicates="drop"))
    assert dropped.counts["duplicate record"] == n_candidates
    assert dropped.data.index.equals(df.drop_duplicates().index)


def test_identical_rows_on_continuous_measurements_are_removed_in_auto() -> None:
    rng = np.random.default_rng(2)
    df = pd.DataFrame(rng.normal(size=(50, 4)).round(3), columns=list("abcd"))
    df["score"] = rng.integers(1, 5, 50)
    df["label"] = ["x", "y"] * 25
    df = pd.concat([df, df.iloc[[4, 9]]], ignore_index=True)
    report = clean(df, Roles(label="label"))
    assert _reasons(report) == {50: "duplicate record", 51: "duplicate record"}
    assert report.duplicates["copy_of"].tolist() == [4, 9]
    assert any("entered twice" in note for note in report.notes)


def test_which_copy_is_removed_never_depends_on_the_label() -> None:
    df = _frame(a=[0.5, 0.5, 0.5, 0.5], label=["y", "x", "y", "x"])
    report = clean(df, Roles(label="label"), CleaningPlan(duplicates="drop"))
    # 0 and 2 are one record, 1 and 3 another; rows 0 and 1 are the hard cases, kept.
    assert _reasons(report) == {2: "duplicate record", 3: "duplicate record"}
    assert list(report.conflicts.index) == [0, 1]


def test_mammographic_like_conflicts_are_kept_and_listed() -> None:
    rng = np.random.default_rng(5)
    n = 400
    df = pd.DataFrame(
        {
            "birads": rng.integers(2, 6, n),
            "age": rng.integers(30, 80, n),
            "shape": rng.integers(1, 5, n),
            "margin": rng.integers(1, 6, n),
            "density": rng.integers(1, 5, n),
        }
    )
    df["severity"] = (rng.random(n) < (df["birads"] - 1) / 5).astype(int)
    pairs = df.iloc[:30].copy()
    pairs["severity"] = 1 - pairs["severity"]
    df = pd.concat([df, pairs], ignore_index=True)
    report = clean(df, Roles(label="severity"))
    # Age in years and four codes: different women share rows, so without an ID nothing goes.
    assert report.removed.empty
    assert len(report.duplicates) == int(df.duplicated().sum()) > 0
    assert set(report.duplicates["action"]) == {"kept"}
    assert any("would be identical by chance alone" in note for note in report.notes)
    assert set(range(30)) | set(range(400, 430)) <= set(report.conflicts.index)
    assert report.conflicts.index.isin(report.data.index).all()
    assert report.to_dict()["conflict_rows_kept"] == len(report.conflicts)
    assert report.to_dict()["conflicts"] >= 30


def test_same_id_with_contradictory_labels_is_listed_as_a_data_error() -> None:
    df = _frame(
        pid=["p1", "p1", "p2", "p3", "p4", "p4"],
        a=[1.5, 1.5, 1.5, 2.5, 3.5, 3.5],
        label=["x", "y", "y", "x", "x", "y"],
    )
    report = clean(df, Roles(label="label", id="pid"))
    assert report.removed.empty
    assert list(report.contradictions.index) == [0, 1, 4, 5]
    assert report.to_dict()["contradicting_ids"] == 2
    warning = next(n for n in report.notes if "contradictory labels" in n)
    assert warning.startswith("Warning: 2 patient ID(s)")
    assert "p1" not in warning and "p4" not in warning


def _npz_like() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    n = 60
    df = pd.DataFrame(
        {
            "file": [f"train_{i:05d}" for i in range(40)] + [f"test_{i:05d}" for i in range(20)],
            "label": rng.integers(0, 2, n),
            "split": ["train"] * 40 + ["test"] * 20,
            "mean": rng.normal(100, 10, n),
            "sd": rng.normal(20, 2, n),
        }
    )
    # A test image pixel-identical to a training image, with the opposite label.
    df.loc[45, ["mean", "sd"]] = df.loc[7, ["mean", "sd"]]
    df.loc[45, "label"] = 1 - df.loc[7, "label"]
    return df


@pytest.mark.parametrize("duplicates", ["auto", "drop"])
def test_identical_pair_across_a_predefined_split_is_reported_and_kept(duplicates: str) -> None:
    df = _npz_like()
    roles = Roles(label="label", exclude=("file", "split"))
    assert cleaning.predefined_split_column(df, roles) == "split"
    plan = CleaningPlan(duplicates=duplicates)  # type: ignore[arg-type]
    report = clean(df, roles, plan)
    assert report.removed.empty
    assert (report.data["split"] == "test").sum() == 20
    assert report.across_split.values.tolist() == [[45, 7, True]]
    assert report.to_dict()["identical_across_split"] == {"pairs": 1, "opposite_label": 1}
    assert any("official test set stays whole" in note for note in report.notes)


def test_same_record_on_both_sides_of_the_split_is_never_removed() -> None:
    df = _npz_like()
    df.loc[45, "label"] = df.loc[7, "label"]
    df.loc[45, "file"] = df.loc[7, "file"]
    report = clean(df, Roles(label="label", exclude=("file", "split")), CleaningPlan("impute"))
    assert report.removed.empty
    assert report.across_split.values.tolist() == [[45, 7, False]]


def test_outlier_limits_are_learnt_on_the_development_part_only() -> None:
    rng = np.random.default_rng(6)
    df = pd.DataFrame(
        {
            "a": np.concatenate([rng.normal(size=100), 8.0 + np.arange(100) / 100]),
            "label": ["x", "y"] * 100,
            "split": ["train"] * 100 + ["test"] * 100,
        }
    )
    report = clean(df, Roles(label="label", exclude=("split",)))
    assert sorted(report.flags["row"]) == list(range(100, 200))
    assert (
        "median 0." in report.flags["detail"].iloc[0]
        or "median -0." in report.flags["detail"].iloc[0]
    )


def test_top_of_a_score_scale_is_not_an_outlier() -> None:
    scores = [1] * 90 + [2] * 5 + [10] * 5
    df = pd.DataFrame({"clump": scores, "density": [1] * 97 + [4] * 3, "label": ["x", "y"] * 50})
    report = clean(df, Roles(label="label"))
    assert report.flags.empty
    note = next(n for n in report.notes if "bounded scale" in n)
    assert "'clump' 1–10" in note and "'density' 1–4" in note
    # The same values as measurements on a wider scale are still tested.
    df["clump"] = [1] * 90 + [2] * 5 + [100] * 5
    flagged = clean(df, Roles(label="label")).flags
    assert flagged["row"].tolist() == [95, 96, 97, 98, 99]


def test_prevalence_before_and_after_and_a_warning_when_it_moves() -> None:
    df = pd.DataFrame(
        {
            "a": np.linspace(0, 1, 100),
            "label": ["benign"] * 60 + ["malignant"] * 40,
            "qc": ["bad"] * 20 + ["good"] * 80,
        }
    )
    report = clean(df, Roles(label="label", quality="qc"))
    assert report.class_counts_before == {"benign": 60, "malignant": 40}
    assert report.removed_by_class == {"quality flag": {"benign": 20}}
    assert report.class_counts_after == {"benign": 40, "malignant": 40}
    table = report.prevalence()
    assert table["class"].tolist() == ["benign", "malignant"]
    assert table["removed: quality flag"].tolist() == [20, 0]
    assert table["change (points)"].round(1).tolist() == [-10.0, 10.0]
    assert report.notes[0].startswith("Warning: cleaning changed the class balance")
    assert "60.0% to 50.0%" in report.notes[0]
    assert report.to_dict()["class_counts"]["largest_share_change_points"] == 10.0
    # Three points or fewer is no warning.
    df.loc[:2, "qc"] = "good"
    df.loc[3:, "qc"] = "good"
    df.loc[[0, 1], "qc"] = "bad"
    quiet = clean(df, Roles(label="label", quality="qc"))
    assert quiet.prevalence_shift() < 0.03
    assert not any("class balance" in note for note in quiet.notes)


def test_class_counts_use_whole_number_codes() -> None:
    df = _frame(a=[0.5, 1.5, 2.5], label=[2.0, 4.0, 4.0])
    assert clean(df, Roles(label="label")).class_counts_after == {"2": 1, "4": 2}


def test_old_saved_plans_are_read_with_the_new_rules() -> None:
    old = CleaningPlan().to_dict()
    del old["duplicates"]
    assert CleaningPlan.from_dict({**old, "drop_duplicates": True}).duplicates == "auto"
    assert CleaningPlan.from_dict({**old, "drop_duplicates": False}).duplicates == "keep"
    plan = CleaningPlan.from_dict({**old, "drop_duplicates": True, "outlier_action": "drop"})
    assert plan.outlier_action == "flag"
    assert plan == CleaningPlan()
    report = clean(_frame(a=[0.5, 1.5], label=["x", "y"]), Roles(label="label"), plan)
    assert any("now flagged and kept" in note for note in report.notes)
    assert CleaningPlan.from_dict(plan.to_dict()) == plan


def test_class_counts_use_the_class_names_given() -> None:
    df = _frame(a=[0.5, 1.5, 2.5], label=[0, 1, 1])
    roles = Roles(label="label", class_names=(("0", "malignant"), ("1", "benign")))
    assert clean(df, roles).class_counts_before == {"benign": 2, "malignant": 1}


def test_an_entirely_missing_label_is_one_clear_error() -> None:
    df = _frame(pid=["a", "b", "c"], label=[None, np.nan, "  "], x=[1.0, 2.0, 3.0])
    with pytest.raises(DataError, match=r"label column 'label' is empty: none of the 3 rows"):
        clean(df, Roles(label="label", id="pid"))


@pytest.mark.parametrize("huge", [1.7e308, -1.79e308, np.inf, 1e31])
def test_values_too_large_to_compute_with_are_refused_by_column(huge: float) -> None:
    df = pd.DataFrame(
        {
            "label": ["a", "b"] * 5,
            "size": [1.0] * 9 + [huge],
            "area": [huge, -huge] * 5,
            "age": list(range(10)),
        }
    )
    with pytest.raises(DataError) as caught:
        clean(df, Roles(label="label"))
    message = str(caught.value)
    assert "too large to compute with" in message
    assert "'size': 1 value(s)" in message and "'area': 10 value(s)" in message
    assert "'age'" not in message and "--exclude size" in message
    # Excluded, the column is no longer checked.
    clean(df, Roles(label="label", exclude=("size", "area")))


def test_large_but_usable_values_are_kept() -> None:
    dose = [cleaning.MAX_FEATURE_MAGNITUDE] * 5 + [1e12] * 5
    df = pd.DataFrame({"label": ["a", "b"] * 5, "dose": dose})
    assert len(clean(df, Roles(label="label")).data) == 10


def test_many_columns_of_huge_values_are_summarised() -> None:
    df = pd.DataFrame({"label": ["a", "b"], **{f"f{i}": [1e300, 2.0] for i in range(9)}})
    with pytest.raises(DataError, match=r"'f4': 1 value\(s\), up to 1e\+300; and 4 more column"):
        clean(df, Roles(label="label"))
