"""Property-based tests: whatever the table and the plan, every row is accounted for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medimg_core.errors import DataError, MedimgError
from medimg_core.tables.cleaning import (
    MAX_FEATURE_MAGNITUDE,
    REMOVAL_RULES,
    CleaningPlan,
    clean,
    suggest_plan,
)
from medimg_core.tables.roles import Roles

FEATURES = ("f_num", "f_int", "f_text", "f_mixed", "f_empty")
CELLS: dict[str, st.SearchStrategy[Any]] = {
    "f_num": st.one_of(
        st.sampled_from([None, 0.0, -0.0, 1.0, 1.0, 1.5, 1e6, -3.0, 2.0, 2.0]),
        st.floats(allow_nan=True, allow_infinity=True, width=32),
    ),
    "f_int": st.integers(-3, 3),
    "f_text": st.sampled_from([None, "a", "a", "b", "b", " a", "", "Ä"]),
    "f_mixed": st.sampled_from([None, 0, 1, 2, "1", "x", 1.0, True]),
    "f_empty": st.none(),
}
LABELS = st.sampled_from([None, "benign", "benign", "malignant", "malignant", " ", "", "other"])
QUALITY = st.sampled_from([None, "good", " OK ", "good", "bad", "motion", 1, 0, 1.0, True, "1"])
IDS = st.one_of(st.none(), st.sampled_from(["p1", "p2", "p3", "007", "7"]))


@st.composite
def tables(draw: st.DrawFn) -> tuple[pd.DataFrame, Roles]:
    features = draw(st.lists(st.sampled_from(FEATURES), unique=True, max_size=len(FEATURES)))
    n_distinct = draw(st.integers(1, 6))
    pool = [
        {
            **{f: draw(CELLS[f]) for f in features},
            "label": draw(LABELS),
            "qc": draw(QUALITY),
            "pid": draw(IDS),
            "site": draw(st.sampled_from(["A", "B", None])),
        }
        for _ in range(n_distinct)
    ]
    # Rows drawn from a small pool repeat, giving exact duplicates and conflicts.
    n_rows = draw(st.integers(0, 25))
    rows = [dict(draw(st.sampled_from(pool))) for _ in range(n_rows)]
    for row in rows:
        if draw(st.sampled_from([False, False, False, True])):
            row["label"] = draw(LABELS)
    columns = [*features, "label", "qc", "pid", "site"]
    df = pd.DataFrame(rows, columns=columns)
    if "f_num" in df:
        df["f_num"] = pd.to_numeric(df["f_num"])
    if "f_int" in df and df["f_int"].notna().all():
        df["f_int"] = df["f_int"].astype("int64")
    if draw(st.booleans()):
        df.index = pd.Index([f"r{i}" for i in draw(st.permutations(range(len(df))))])
    mostly = st.sampled_from([True, True, True, False])
    df = df[[c for c in columns if c in features or draw(mostly)]]
    roles = Roles(
        label=draw(st.sampled_from(["label"] * 6 + ["missing_label_column", None])),
        id=draw(st.sampled_from(["pid", None])),
        quality=draw(st.sampled_from(["qc", "qc", None, None, "QC"])),
        site=draw(st.sampled_from(["site", None])),
        exclude=tuple(draw(st.lists(st.sampled_from(["f_text", "nope"]), unique=True))),
    )
    return df, roles


@st.composite
def plans(draw: st.DrawFn) -> CleaningPlan:
    bounds = st.sampled_from([None, None, -1.0, 0, 1, 1, 2.5, 100, float("nan")])
    ranges = draw(
        st.dictionaries(
            st.sampled_from(["f_num", "f_num", "f_int", "f_int", "f_text", "unknown"]),
            st.tuples(bounds, bounds),
            max_size=2,
        )
    )
    return CleaningPlan(
        missing=draw(st.sampled_from(["drop"] * 5 + ["impute"] * 4 + ["bogus"])),
        duplicates=draw(st.sampled_from(["auto", "auto", "keep", "drop"])),
        quality_column=draw(st.sampled_from([None] * 6 + ["qc", "unknown"])),
        acceptable_quality=tuple(draw(st.lists(st.sampled_from(["good", "BAD", "1", "x"])))),
        ranges=ranges,
        range_action=draw(st.sampled_from(["flag", "drop"])),
        outlier_z=draw(st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.5, 5.0] * 3 + [0.0, -1.0])),
        drop_empty_columns=draw(st.booleans()),
        drop_constant_columns=draw(st.booleans()),
    )


def _check_accounting(df: pd.DataFrame, plan: CleaningPlan, roles: Roles, **kw: Any) -> None:
    try:
        report = clean(df, roles, plan, **kw)
    except MedimgError:
        return
    kept, removed = report.data, report.removed
    assert len(kept) + len(removed) == len(df) == report.n_input
    assert kept.index.intersection(removed.index).empty
    assert kept.index.union(removed.index).sort_values().equals(df.index.sort_values())
    assert list(report.counts) == list(REMOVAL_RULES)
    assert sum(report.counts.values()) == len(removed)
    reasons = removed[report.reason_column]
    assert set(reasons) <= set(REMOVAL_RULES)
    assert reasons.value_counts().to_dict() == {k: v for k, v in report.counts.items() if v}
    # Removed rows are unchanged copies of the input rows.
    original = df.loc[removed.index]
    pd.testing.assert_frame_equal(removed[list(df.columns)], original)
    assert list(kept.columns) == [c for c in df.columns if c not in report.dropped_columns]
    # Conflicts, contradictions and twins across a split are listed among the kept rows only.
    assert set(report.conflicts.index) <= set(kept.index)
    assert set(report.contradictions.index) <= set(report.conflicts.index)
    assert set(report.duplicates["row"]) >= set(removed.index[reasons == "duplicate record"])
    if report.class_counts_before:
        assert sum(report.class_counts_after.values()) <= sum(report.class_counts_before.values())
    assert set(report.flags["rule"]) <= {"out of range", "outlier"}
    assert set(report.flags["row"]) <= set(df.index)
    for column in report.dropped_columns:
        assert column not in roles.non_feature_columns()
    report.to_dict()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables(), plan=plans(), require_label=st.booleans())
def test_clean_accounts_for_every_row(
    data: tuple[pd.DataFrame, Roles], plan: CleaningPlan, require_label: bool
) -> None:
    df, roles = data
    _check_accounting(df, plan, roles, require_label=require_label)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=tables())
def test_suggested_plan_accounts_for_every_row(data: tuple[pd.DataFrame, Roles]) -> None:
    df, roles = data
    try:
        plan = suggest_plan(df, roles)
    except MedimgError:
        return
    _check_accounting(df, plan, roles)


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.none()), max_size=40
    ),
    labels=st.lists(st.sampled_from(["x", "y", None]), min_size=40, max_size=40),
    z=st.floats(0.1, 10),
)
def test_outliers_are_flagged_never_removed(
    values: list[float | None], labels: list[str | None], z: float
) -> None:
    df = pd.DataFrame({"a": pd.to_numeric(pd.Series(values, dtype=object)).astype(float)})
    df["b"] = np.arange(len(df), dtype=float)
    df["label"] = labels[: len(df)]
    roles = Roles(label="label")
    plan = CleaningPlan(missing="impute", outlier_z=z, duplicates="keep")
    # A constant column is dropped before the check (the default plan).
    too_large = bool((df["a"].abs() > MAX_FEATURE_MAGNITUDE).any()) and df["a"].nunique() > 1
    no_label = len(df) > 0 and df["label"].isna().all()
    if too_large or no_label:
        # Refused with one message naming the problem: no label at all, or values that overflow.
        with pytest.raises(DataError, match=r"label column 'label' is empty|too large to compute"):
            clean(df, roles, plan)
        return
    flagged = clean(df, roles, plan)
    assert set(flagged.removed[flagged.reason_column]) <= {"missing label"}
    outliers = set(flagged.flags.loc[flagged.flags["rule"] == "outlier", "row"])
    assert outliers <= set(flagged.data.index)
