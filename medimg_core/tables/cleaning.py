"""Cleaning that accounts for every row: ``kept + removed == input`` always holds.

Cleaning never removes a row because of its label, never treats rows of different patients as
copies of each other, and never edits a predefined test split because of what is on the other
side of it. :func:`clean` runs the rules below in this order. A row is removed by the first rule
that matches it and is kept, with that rule as its ``reason``, in :attr:`CleaningReport.removed`.

1. "missing label": no label (missing, or a blank string). Only when ``require_label``.
2. "missing values": a missing value in a feature column, only when ``plan.missing == "drop"``
   (complete-case analysis, an explicit choice). The default, ``"impute"``, keeps the rows and
   lets the model pipeline impute, fitted on training folds only. Missing IDs, sites, quality
   flags or excluded columns never count here.
3. "duplicate record": a later copy of a repeated record; the first copy is kept whatever its
   label. With a patient ID, a repeated record has the same ID and the same value in every
   other column; rows with different IDs are never copies of each other. Without an ID (or
   with the ID missing), rows identical on every column are only *candidates*: with
   ``plan.duplicates == "auto"`` they are removed when at least one numeric feature is
   continuous (identical rows on continuous measurements are one record entered twice) and
   the features are fine enough that fewer than one pair of patients would be identical by
   chance; they are kept when every feature is low-cardinality (scores, codes, coarse
   integers, where different patients share rows) or chance matches are expected (age in
   years with a few codes); ``"drop"`` removes every repeated record, ``"keep"`` only lists
   them in :attr:`CleaningReport.duplicates`. Rows in different parts of a predefined
   split (the ``split`` column of a MedMNIST file) are never copies of each other; rows
   identical across the split are listed in :attr:`CleaningReport.across_split` and kept.
4. "quality flag": the quality flag is missing or not one of the acceptable values.
5. "out of range": a value outside the user's ``plan.ranges``, when
   ``plan.range_action == "drop"``.

Rows with identical features and different labels are hard cases, not errors: they are kept
and listed in :attr:`CleaningReport.conflicts`; the same patient ID with identical features and
contradictory labels is a data error, kept and listed in :attr:`CleaningReport.contradictions`.
Statistical outliers (robust z-score above ``plan.outlier_z``) are flagged, never removed;
integer columns with few levels (a 1-10 score, a density code) are not tested, because the top
of a bounded scale is not an outlier. With a predefined split, the outlier centre and scale and
the duplicate policy are learnt on the development part only.

Before the rules run, feature columns that are empty (all missing) or constant (one distinct
value, missing values aside) are dropped, judged on the whole input table. Label, ID, quality,
site and excluded columns are never dropped. A table whose label column holds no value at all,
or whose remaining numeric features hold a value beyond ``MAX_FEATURE_MAGNITUDE`` (1e30, where
scaling overflows: placeholders such as 1e308, infinities, unit errors), is refused with one
message naming the columns. The report gives the class counts before and after
cleaning, the rows each rule removed per class, and warns when a class's share moves by more
than ``PREVALENCE_SHIFT_WARNING`` (3 percentage points).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from medimg_core._messages import column_hint, quote_list
from medimg_core.errors import ConfigError, DataError
from medimg_core.tables.roles import Roles

__all__ = [
    "DEFAULT_ACCEPTABLE_QUALITY",
    "IMPUTE_SUGGESTION_FRACTION",
    "LOW_CARDINALITY_LEVELS",
    "MAX_FEATURE_MAGNITUDE",
    "PREVALENCE_SHIFT_WARNING",
    "REMOVAL_RULES",
    "CleaningPlan",
    "CleaningReport",
    "check_magnitudes",
    "clean",
    "predefined_split_column",
    "suggest_plan",
]

MissingAction = Literal["drop", "impute"]
FlagAction = Literal["flag", "drop"]
DuplicateAction = Literal["auto", "keep", "drop"]

REMOVAL_RULES: tuple[str, ...] = (
    "missing label",
    "missing values",
    "duplicate record",
    "quality flag",
    "out of range",
)
"""Every reason a row can be removed for, in the order the rules run."""

DEFAULT_ACCEPTABLE_QUALITY: tuple[str, ...] = (
    "good",
    "ok",
    "pass",
    "passed",
    "acceptable",
    "1",
    "true",
    "yes",
    "high",
)
"""Quality-flag values kept when ``CleaningPlan.acceptable_quality`` is empty."""

IMPUTE_SUGGESTION_FRACTION = 0.2
"""When ``missing="drop"`` removes more than this share of the rows, the report says so."""

LOW_CARDINALITY_LEVELS = 20
"""An integer-valued numeric column with at most this many distinct values is a score or a code:
it is not tested for outliers, and identical rows on such columns are expected between patients."""

PREVALENCE_SHIFT_WARNING = 0.03
"""Cleaning that moves any class's share by more than this (3 percentage points) is warned about."""

MAX_FEATURE_MAGNITUDE = 1e30
"""Largest absolute value a numeric feature may hold. Beyond it, arithmetic on the column
overflows: standardising squares the values (1e155² is infinite in float64) and tree models
work in float32 (largest 3.4e38). No measurement medimg handles comes near 1e30; such values are
placeholders (1e308, "infinity") or a unit error, so a column holding one is refused by name."""

_MAD_SCALE = 1.4826
"""Makes the median absolute deviation a consistent estimate of the standard deviation."""
_MEAN_AD_SCALE = 1.2533
"""Same for the mean absolute deviation, used when more than half of a column is one value."""

_TEST_SPLITS = ("test",)
_SPLIT_VALUES = frozenset({"train", "training", "val", "valid", "validation", "dev", "test"})

_OUTLIER_DROP_MESSAGE = (
    "Statistical outliers can no longer be removed by cleaning (outlier_action='drop'): the "
    "outlier limits are learnt from the data, so removing rows with them would let the test "
    "cases shape the data the model is judged on. Outliers are flagged for a look instead. To "
    "remove impossible values, give plausible ranges (ranges={'column': (low, high)}) with "
    "range_action='drop', or correct the values in the file."
)


@dataclass(frozen=True)
class CleaningPlan:
    """A cleaning plan is a value: saved with the model and re-applied to new data.

    Parameters
    ----------
    missing : "impute" (default) keeps rows with missing feature values and lets the model
        pipeline impute (median for numbers, most frequent for categories), fitted on training
        folds only; "drop" removes them (complete-case analysis, an explicit choice).
        :func:`clean` never imputes.
    impute_strategy : "median" or "mean" for numeric features when ``missing == "impute"``.
    duplicates : what to do with repeated records (see the module docstring). "auto" (default)
        removes later copies of a record with the same patient ID, and, without an ID, rows
        identical on every column when a numeric feature is continuous and chance matches
        between patients are not expected; "drop" removes every
        repeated record; "keep" only lists them. Rows with different IDs, or in different parts
        of a predefined split, are never copies. The first copy is always the one kept.
    quality_column : column holding a quality flag. When ``None``, :func:`clean` uses
        ``roles.quality``; when both are ``None`` the quality step is skipped.
    acceptable_quality : values of the quality flag that are kept, compared case-insensitively
        after stripping spaces (whole numbers such as ``1.0`` compare as ``"1"``, booleans as
        ``"true"``/``"false"``); empty means ``DEFAULT_ACCEPTABLE_QUALITY`` ("good", "ok",
        "pass", "passed", "acceptable", "1", "true", "yes", "high"). A missing flag is never
        acceptable.
    ranges : plausible ``(low, high)`` per numeric column, given by the user (not learnt from
        the data); either bound may be ``None``; bounds are inclusive.
    range_action : out-of-range values are "flag"ged (default) or their rows "drop"ped.
    outlier_action : always "flag": statistical outliers (robust z-score above ``outlier_z``)
        are listed, never removed, because their limits are learnt from the data. "drop" raises
        :class:`ConfigError`; an old saved plan with "drop" is read as "flag" with a note.
    outlier_z : threshold on |x - median| / (1.4826 * MAD). When more than half of a column
        is one value (MAD = 0), 1.2533 * mean absolute deviation from the median is used.
    drop_empty_columns, drop_constant_columns : drop all-missing and single-valued feature
        columns.
    notes : remarks on how an old saved plan was read; shown in the cleaning report, not saved.
    """

    missing: MissingAction = "impute"
    impute_strategy: Literal["median", "mean"] = "median"
    duplicates: DuplicateAction = "auto"
    quality_column: str | None = None
    acceptable_quality: tuple[str, ...] = ()
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    range_action: FlagAction = "flag"
    outlier_action: Literal["flag"] = "flag"
    outlier_z: float = 5.0
    drop_empty_columns: bool = True
    drop_constant_columns: bool = True
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        action: object = self.outlier_action
        if action == "drop":
            raise ConfigError(_OUTLIER_DROP_MESSAGE)

    def to_dict(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "impute_strategy": self.impute_strategy,
            "duplicates": self.duplicates,
            "quality_column": self.quality_column,
            "acceptable_quality": list(self.acceptable_quality),
            "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()},
            "range_action": self.range_action,
            "outlier_action": self.outlier_action,
            "outlier_z": self.outlier_z,
            "drop_empty_columns": self.drop_empty_columns,
            "drop_constant_columns": self.drop_constant_columns,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CleaningPlan:
        """Read a plan saved by :meth:`to_dict`, including plans saved by older versions.

        Old plans had ``drop_duplicates`` (True is read as "auto", False as "keep") and could
        remove outliers (``outlier_action="drop"`` is read as "flag", with a note).
        """
        d = dict(d)
        notes: list[str] = []
        if "drop_duplicates" in d:
            old = d.pop("drop_duplicates")
            d.setdefault("duplicates", "auto" if old else "keep")
        if d.get("outlier_action") == "drop":
            d["outlier_action"] = "flag"
            notes.append(
                "This plan was saved when outliers could be removed; they are now flagged and "
                "kept, because outlier limits learnt from the data must not shape the test cases."
            )
        d["acceptable_quality"] = tuple(d.get("acceptable_quality") or ())
        d["ranges"] = {k: (v[0], v[1]) for k, v in (d.get("ranges") or {}).items()}
        d.pop("notes", None)
        return cls(**d, notes=tuple(notes))


@dataclass(frozen=True)
class CleaningReport:
    """The outcome of :func:`clean`.

    Attributes
    ----------
    data : the kept rows (original index preserved), without dropped columns.
    removed : the removed rows, all original columns plus ``reason_column`` (the first rule
        that removed the row, one of ``REMOVAL_RULES``).
    counts : rows removed per rule, in the order the rules ran (rules that removed none included).
    conflicts : kept rows with identical feature values but different labels (hard cases), all
        original columns plus a last column ``conflict_group`` (0, 1, ... in order of first
        appearance; named ``conflict_group_id`` if the input has a ``conflict_group`` column).
    flags : one row per flagged cell: ``row`` (original index), ``column``, ``value``,
        ``rule`` ("out of range" or "outlier"), ``detail``. Cells are judged on the rows that
        reach the rule, so flags never point at rows an earlier rule removed.
    dropped_columns : column -> reason ("empty", "constant").
    n_input : rows in.
    plan : the plan that produced this report.
    notes : plain-language remarks on steps that were skipped or adapted, and warnings.
    reason_column : name of the reason column in ``removed``: "reason", unless the input
        already has a column of that name (then "removal_reason", ...).
    duplicates : one row per later copy of a repeated record (removed or kept): ``row``
        (original index), ``copy_of`` (index of the first copy, which is kept), ``kind``
        ("same ID" or "no ID"), ``action`` ("removed" or "kept").
    contradictions : rows sharing a patient ID and identical features with different labels
        (a data error to check), all original columns plus ``conflict_group``; kept.
    across_split : pairs of rows with identical features on both sides of a predefined split:
        ``row`` (the test row), ``twin`` (a non-test row), ``opposite_label``; both kept.
    missing_by_column : missing values per feature column of the input table.
    class_counts_before, class_counts_after : rows per class before and after cleaning, keyed
        by the class name the user gave (``Roles.class_names``), else the code as text; empty
        without a label.
    removed_by_class : rule -> class -> rows that rule removed (rules that removed none left out).
    """

    data: pd.DataFrame
    removed: pd.DataFrame
    counts: dict[str, int]
    conflicts: pd.DataFrame
    flags: pd.DataFrame
    dropped_columns: dict[str, str]
    n_input: int
    plan: CleaningPlan
    notes: tuple[str, ...] = ()
    reason_column: str = "reason"
    duplicates: pd.DataFrame = field(default_factory=lambda: _empty_duplicates(pd.RangeIndex(0)))
    contradictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    across_split: pd.DataFrame = field(default_factory=lambda: _empty_across(pd.RangeIndex(0)))
    missing_by_column: dict[str, int] = field(default_factory=dict)
    class_counts_before: dict[str, int] = field(default_factory=dict)
    class_counts_after: dict[str, int] = field(default_factory=dict)
    removed_by_class: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def n_kept(self) -> int:
        return len(self.data)

    @property
    def n_removed(self) -> int:
        return len(self.removed)

    def prevalence(self) -> pd.DataFrame:
        """Per class: rows before, removed by each rule, after, and the share before and after.

        One row per class (label value as text), columns ``class``, ``before``, one column per
        rule that removed rows (``removed: <rule>``), ``after``, ``share before``,
        ``share after`` and ``change (points)``. Empty without a label.
        """
        classes = list(dict.fromkeys([*self.class_counts_before, *self.class_counts_after]))
        if not classes:
            return pd.DataFrame(columns=["class", "before", "after"])
        n_before = max(sum(self.class_counts_before.values()), 1)
        n_after = sum(self.class_counts_after.values())
        rows = []
        for c in classes:
            before = self.class_counts_before.get(c, 0)
            after = self.class_counts_after.get(c, 0)
            row: dict[str, Any] = {"class": c, "before": before}
            for rule, per_class in self.removed_by_class.items():
                row[f"removed: {rule}"] = per_class.get(c, 0)
            share_after = after / n_after if n_after else float("nan")
            row.update(
                {
                    "after": after,
                    "share before": before / n_before,
                    "share after": share_after,
                    "change (points)": 100 * (share_after - before / n_before),
                }
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def prevalence_shift(self) -> float:
        """The largest change in any class's share caused by cleaning (0.03 = 3 points)."""
        table = self.prevalence()
        if not len(table) or "change (points)" not in table:
            return 0.0
        change = table["change (points)"].abs().max() / 100
        return float(change) if math.isfinite(change) else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the model card and the ``--report`` file (no row data)."""
        n_in = max(self.n_input, 1)
        return {
            "rows_in": self.n_input,
            "rows_kept": self.n_kept,
            "rows_removed": self.n_removed,
            "removed_by_rule": dict(self.counts),
            "conflicts": int(self.conflicts.iloc[:, -1].nunique()) if len(self.conflicts) else 0,
            "conflict_rows_kept": len(self.conflicts),
            "contradicting_ids": _n_contradicting_ids(self.contradictions),
            "duplicate_records": {
                "removed": int((self.duplicates["action"] == "removed").sum()),
                "kept": int((self.duplicates["action"] == "kept").sum()),
            },
            "identical_across_split": {
                "pairs": len(self.across_split),
                "opposite_label": int(self.across_split["opposite_label"].sum())
                if len(self.across_split)
                else 0,
            },
            "flagged_cells": {
                str(rule): int(n) for rule, n in self.flags["rule"].value_counts().items()
            }
            if len(self.flags)
            else {},
            "dropped_columns": {str(k): v for k, v in self.dropped_columns.items()},
            "missing_by_column": {
                str(k): {"missing": int(v), "share": round(v / n_in, 4)}
                for k, v in self.missing_by_column.items()
            },
            "class_counts": {
                "before": dict(self.class_counts_before),
                "removed_by_rule": {k: dict(v) for k, v in self.removed_by_class.items()},
                "after": dict(self.class_counts_after),
                "largest_share_change_points": round(100 * self.prevalence_shift(), 2),
            },
            "notes": list(self.notes),
            "plan": self.plan.to_dict(),
        }


_DEFAULT_PLAN = CleaningPlan()
_COLUMNS_SHOWN = 5

BoolArray = npt.NDArray[np.bool_]


def clean(
    df: pd.DataFrame,
    roles: Roles,
    plan: CleaningPlan = _DEFAULT_PLAN,
    *,
    require_label: bool = True,
) -> CleaningReport:
    """Clean a table and account for every row.

    Parameters
    ----------
    df : the table, one row per case (image, lesion or patient).
    roles : the confirmed column roles. Every column that is not the label, ID, quality, site
        or an excluded column is a feature.
    plan : what to do; see :class:`CleaningPlan`. ``plan.quality_column`` wins over
        ``roles.quality``; :func:`suggest_plan` copies ``roles.quality`` into the plan.
    require_label : True when building a model: rows without a label are removed, rows with
        the same features and different labels are listed, and the class counts are reported.
        False at prediction time, when the label column may be absent; then none of that runs.

    Returns
    -------
    CleaningReport
        ``len(report.data) + len(report.removed) == len(df)`` and the two indexes together
        are exactly ``df.index``.

    Raises
    ------
    DataError
        ``df`` is not a DataFrame, has repeated column names, lacks the label or quality
        column, has no label value at all, or a feature holds values too large to compute with
        (see :func:`check_magnitudes`).
    ConfigError
        The plan or roles are invalid: unknown options, a range on a column that does not
        exist or is not numeric, a low bound above the high bound, no label chosen.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"clean() needs a pandas DataFrame, got {type(df).__name__}. "
            "Load the table with medimg_core.tables.loading.load_table first."
        )
    repeated = df.columns[df.columns.duplicated()].unique().tolist()
    if repeated:
        raise DataError(
            f"The table has repeated column names: {quote_list(repeated)}. "
            "Rename them so every column name is unique."
        )
    _validate_plan(df, plan)

    label = roles.label if require_label else None
    if require_label:
        if label is None:
            raise ConfigError(
                "No label column was chosen. Set roles.label to the column holding the "
                "diagnosis, or call clean(..., require_label=False) for data to predict."
            )
        if label not in df.columns:
            raise DataError(_missing_column_message("Label", label, df.columns))
        if len(df) and _missing_labels(df[label]).all():
            raise DataError(
                f"The label column {label!r} is empty: none of the {len(df):,} rows has a "
                "value, so there is nothing to learn from. Choose the column that holds the "
                "diagnosis (Data page, or --label COLUMN), or fill in the labels."
            )

    notes: list[str] = []
    quality = quality_column(plan, roles, df.columns, require_label=require_label, notes=notes)

    n = len(df)
    notes.extend(plan.notes)
    feature_cols = _feature_columns(df, roles, quality)
    dropped_columns = _columns_to_drop(df, feature_cols, plan)
    kept_features = [c for c in feature_cols if c not in dropped_columns]
    check_magnitudes(df, kept_features)
    split_column = predefined_split_column(df, roles)
    in_test = _test_rows(df, split_column)

    reason_code = np.full(n, -1, dtype=np.int8)
    alive = np.ones(n, dtype=bool)

    def remove(rule: str, mask: BoolArray) -> None:
        hit = mask & alive
        reason_code[hit] = REMOVAL_RULES.index(rule)
        alive[hit] = False

    if label is not None:
        remove("missing label", _missing_labels(df[label]))

    if plan.missing == "drop" and kept_features:
        missing_any = np.zeros(n, dtype=bool)
        for column in kept_features:
            missing_any |= df[column].isna().to_numpy()
        remove("missing values", missing_any)
        if missing_any.sum() > IMPUTE_SUGGESTION_FRACTION * max(n, 1):
            notes.append(
                f"Removing rows with a missing value (complete-case analysis) removed "
                f"{int(missing_any.sum()):,} of {n:,} rows. If the values are not missing at "
                "random this biases the data; imputation inside the model keeps these rows."
            )

    duplicates = _empty_duplicates(df.index)
    feature_hash = _row_hash(df, feature_cols) if feature_cols else None
    if feature_hash is not None:
        reference = alive & ~in_test
        continuous = _continuous_columns(df, kept_features, reference)
        # Only needed when rows without an ID repeat, and costly on large tables: computed once.
        chance = functools.cache(lambda: _chance_matches(df, kept_features, reference))
        duplicates, duplicate_mask = _duplicate_records(
            df,
            roles,
            plan.duplicates,
            feature_hash,
            alive,
            unidentified_repeats=lambda: bool(continuous) and chance() < 1,
            split_column=split_column,
        )
        remove("duplicate record", duplicate_mask)
        notes.extend(
            _duplicate_notes(duplicates, plan.duplicates, continuous, chance, df, kept_features)
        )
    else:
        notes.append("The table has no feature columns, so duplicates were not looked for.")

    if quality is not None:
        acceptable = plan.acceptable_quality or DEFAULT_ACCEPTABLE_QUALITY
        remove("quality flag", ~_acceptable_quality(df[quality], acceptable))

    flag_frames: list[pd.DataFrame] = []
    if plan.ranges:
        range_mask, range_flags = _range_flags(df, plan.ranges, alive)
        flag_frames.append(range_flags)
        if plan.range_action == "drop":
            remove("out of range", range_mask)

    numeric_features = [c for c in kept_features if _is_numeric(df[c])]
    scales = [c for c in numeric_features if _is_bounded_scale(df[c], alive)]
    if scales:
        notes.append(
            f"Outliers were not looked for in {_columns_text(scales, df, alive)}: whole numbers "
            f"on a short scale (at most {LOW_CARDINALITY_LEVELS} levels) are scores or codes, "
            "and the top or bottom of a bounded scale is not an outlier."
        )
    tested = [c for c in numeric_features if c not in scales]
    if tested:
        # Flags only: the limits come from the development part when the file has its own split.
        flag_frames.append(_outlier_flags(df, tested, plan.outlier_z, alive, alive & ~in_test))

    counts_array = np.bincount(reason_code[reason_code >= 0], minlength=len(REMOVAL_RULES))
    counts = {rule: int(counts_array[i]) for i, rule in enumerate(REMOVAL_RULES)}

    reason_column = _free_name("reason", df.columns)
    removed_mask = ~alive
    removed = df[removed_mask].copy()
    rule_names = np.array(REMOVAL_RULES, dtype=object)
    removed[reason_column] = pd.Series(
        rule_names[reason_code[removed_mask]], index=removed.index, dtype="str"
    )

    data = df[alive]
    if dropped_columns:
        data = data.drop(columns=list(dropped_columns))

    # Conflicts, contradictions and twins across the split are listed among the kept rows only:
    # none of them is a reason to remove a row.
    group_column = _free_name("conflict_group", df.columns)
    conflicts = _empty_conflicts(df, group_column)
    contradictions = _empty_conflicts(df, group_column)
    across = _empty_across(df.index)
    if label is not None and feature_hash is not None:
        kept_rows = np.flatnonzero(alive)
        conflicts = _label_conflicts(df, feature_cols, label, feature_hash, kept_rows, group_column)
        id_column = roles.id if roles.id is not None and roles.id in df.columns else None
        if id_column is not None and len(conflicts):
            contradictions = _contradictions(df, conflicts, feature_cols, id_column, label)
        if split_column is not None:
            across = _across_split(df, feature_cols, label, feature_hash, kept_rows, in_test)
        notes.extend(_case_notes(conflicts, contradictions, across, group_column, id_column))

    before, after, by_rule = {}, {}, {}
    if label is not None:
        labels = df[label]
        has_label = ~_missing_labels(labels)
        before = _class_counts(labels[has_label], roles)
        after = _class_counts(labels[alive & has_label], roles)
        for i, rule in enumerate(REMOVAL_RULES):
            hit = (reason_code == i) & has_label
            if hit.any():
                by_rule[rule] = _class_counts(labels[hit], roles)

    report = CleaningReport(
        data=data,
        removed=removed,
        counts=counts,
        conflicts=conflicts,
        flags=_concat_flags(flag_frames, df.index),
        # Keys stay the real column labels (strings in practice) so callers can index with them.
        dropped_columns=cast("dict[str, str]", dropped_columns),
        n_input=n,
        plan=plan,
        notes=tuple(notes),
        reason_column=reason_column,
        duplicates=duplicates,
        contradictions=contradictions,
        across_split=across,
        missing_by_column={str(c): int(df[c].isna().sum()) for c in feature_cols},
        class_counts_before=before,
        class_counts_after=after,
        removed_by_class=by_rule,
    )
    warning = _prevalence_warning(report)
    if warning:
        report = replace(report, notes=(warning, *report.notes))
    return report


def quality_column(
    plan: CleaningPlan,
    roles: Roles,
    columns: pd.Index,
    *,
    require_label: bool,
    notes: list[str],
) -> str | None:
    """The quality column the cleaning uses: the plan's, else the roles'; None to skip the step.

    A quality column named by the plan (or needed for training) but absent is an error; one
    only proposed by the roles is skipped with a note.
    """
    quality = plan.quality_column if plan.quality_column is not None else roles.quality
    if quality is not None and quality not in columns:
        if require_label or plan.quality_column is not None:
            raise DataError(
                _missing_column_message(
                    "Quality",
                    quality,
                    columns,
                    "Choose the quality column again, or clear it to skip the quality step.",
                )
            )
        notes.append(
            f"The quality column {quality!r} is not in this table; the quality step was skipped."
        )
        quality = None
    if quality is not None and quality == roles.label:
        raise ConfigError(
            f"Column {quality!r} is both the label and the quality flag. "
            "Choose a different quality column, or none."
        )
    return quality


def suggest_plan(df: pd.DataFrame, roles: Roles) -> CleaningPlan:
    """The default plan for a table, adapted to what it contains.

    Parameters
    ----------
    df : the table.
    roles : the confirmed roles.

    Returns
    -------
    CleaningPlan
        The defaults with ``quality_column = roles.quality``: missing feature values are
        imputed inside the model (fitted on training folds), whatever their share, because
        dropping incomplete rows is only unbiased when values are missing completely at random;
        complete-case dropping stays the user's explicit choice. Repeated records follow
        ``duplicates="auto"`` and outliers are flagged.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"suggest_plan() needs a pandas DataFrame, got {type(df).__name__}. "
            "Load the table with medimg_core.tables.loading.load_table first."
        )
    return CleaningPlan(quality_column=roles.quality)


def _validate_plan(df: pd.DataFrame, plan: CleaningPlan) -> None:
    if not isinstance(plan, CleaningPlan):
        raise ConfigError(
            f"plan must be a CleaningPlan, got {type(plan).__name__}. "
            "Build one with CleaningPlan(...) or CleaningPlan.from_dict(...)."
        )
    choices: dict[str, tuple[Any, tuple[Any, ...]]] = {
        "missing": (plan.missing, ("drop", "impute")),
        "impute_strategy": (plan.impute_strategy, ("median", "mean")),
        "range_action": (plan.range_action, ("flag", "drop")),
        "duplicates": (plan.duplicates, ("auto", "keep", "drop")),
        "outlier_action": (plan.outlier_action, ("flag",)),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(
                f"Cleaning option {name}={value!r} is not valid. Use one of {quote_list(allowed)}."
            )
    z = plan.outlier_z
    if not isinstance(z, numbers.Real) or isinstance(z, bool) or not math.isfinite(z) or z <= 0:
        raise ConfigError(
            f"outlier_z={z!r} is not a positive number. Use a threshold such as 3.5 or 5."
        )
    for column, bounds in plan.ranges.items():
        if column not in df.columns:
            raise ConfigError(
                f"A range is set for column {column!r}, which is not in the table. "
                f"{column_hint(column, df.columns)}Fix the column name or remove the range."
            )
        if not _is_numeric(df[column]):
            raise ConfigError(
                f"A range is set for column {column!r}, but its values are not numbers "
                f"(type {df[column].dtype}). Ranges apply to numeric columns only: remove it."
            )
        try:
            low, high = bounds
        except (TypeError, ValueError):
            raise ConfigError(
                f"The range for column {column!r} is {bounds!r}; give it as (low, high), "
                "with None for an open bound."
            ) from None
        for bound in (low, high):
            if bound is not None and (
                isinstance(bound, bool)
                or not isinstance(bound, numbers.Real)
                or not math.isfinite(bound)
            ):
                raise ConfigError(
                    f"The range for column {column!r} has bound {bound!r}, which is not a "
                    "finite number. Use a number, or None for an open bound."
                )
        if low is not None and high is not None and low > high:
            raise ConfigError(
                f"The range for column {column!r} has low {low!r} above high {high!r}. "
                "Swap the bounds."
            )


def _feature_columns(df: pd.DataFrame, roles: Roles, quality: str | None) -> list[Hashable]:
    excluded = set(roles.non_feature_columns())
    if quality is not None:
        excluded.add(quality)
    return [c for c in df.columns if c not in excluded]


def _columns_to_drop(
    df: pd.DataFrame, feature_cols: Sequence[Hashable], plan: CleaningPlan
) -> dict[Hashable, str]:
    dropped: dict[Hashable, str] = {}
    if len(df) == 0 or not (plan.drop_empty_columns or plan.drop_constant_columns):
        return dropped
    for column in feature_cols:
        series = df[column]
        if plan.drop_empty_columns and not series.notna().any():
            dropped[column] = "empty"
        elif plan.drop_constant_columns and _is_constant(series):
            dropped[column] = "constant"
    return dropped


def check_magnitudes(df: pd.DataFrame, columns: Sequence[Hashable]) -> None:
    """Refuse numeric columns holding values too large to compute with.

    Parameters
    ----------
    df : the table.
    columns : the feature columns to check; columns that are not numeric are skipped.

    Raises
    ------
    DataError
        A column holds an infinite value or one whose magnitude exceeds
        :data:`MAX_FEATURE_MAGNITUDE`; the message names every such column, its largest value
        and how many values are affected.
    """
    found: dict[Hashable, tuple[int, float]] = {}
    for column in columns:
        series = df[column]
        if not _is_numeric(series):
            continue
        values = np.abs(series.to_numpy(dtype="float64", na_value=np.nan))
        with np.errstate(invalid="ignore"):
            beyond = values > MAX_FEATURE_MAGNITUDE
        n_beyond = int(np.count_nonzero(beyond))
        if n_beyond:
            found[column] = (n_beyond, float(values[beyond].max()))
    if not found:
        return
    shown = list(found.items())[:_COLUMNS_SHOWN]
    described = "; ".join(
        f"{column!r}: {n:,} value(s), up to {top:.3g}" for column, (n, top) in shown
    )
    if len(found) > _COLUMNS_SHOWN:
        described += f"; and {len(found) - _COLUMNS_SHOWN} more column(s)"
    first = next(iter(found))
    raise DataError(
        f"Column(s) hold numbers too large to compute with (beyond ±{MAX_FEATURE_MAGNITUDE:.0e}, "
        f"where scaling overflows): {described}. Such values are placeholders or a unit error: "
        "correct or remove them in the file, or exclude the column (Data page: 'Identifying or "
        "excluded columns'; CLI: "
        f"--exclude {first})."
    )


def _is_constant(series: pd.Series) -> bool:
    if _is_numeric(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        if values.size == 0:
            return False
        # fmin/fmax skip NaN without copying the column; an all-missing column gives NaN.
        low, high = np.fmin.reduce(values), np.fmax.reduce(values)
        return bool(low == high)
    return bool(series.nunique(dropna=True) == 1)


def _is_numeric(series: pd.Series) -> bool:
    dtype = series.dtype
    return bool(pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype))


def _missing_labels(labels: pd.Series) -> BoolArray:
    missing = labels.isna().to_numpy().copy()
    if not _is_numeric(labels):
        blanks = [v for v in pd.unique(labels.dropna()) if isinstance(v, str) and not v.strip()]
        if blanks:
            missing |= labels.isin(blanks).to_numpy()
    return missing


def _row_hash(df: pd.DataFrame, columns: Sequence[Hashable]) -> npt.NDArray[np.uint64]:
    """One 64-bit hash per row; equal rows always get equal hashes.

    Rows sharing a hash are compared exactly afterwards (see :func:`_group_ids`), so a hash
    collision costs a little time and can never merge different rows.
    """
    row = np.zeros(len(df), dtype=np.uint64)
    for column in columns:
        with np.errstate(over="ignore"):
            row *= _GOLDEN
        row ^= _column_bits(df[column])
        _mix_inplace(row)
    return row


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _column_bits(series: pd.Series) -> npt.NDArray[np.uint64]:
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        # Adding 0.0 turns -0.0 into 0.0 and a fixed NaN replaces any NaN payload, so values
        # that compare equal also have equal bits.
        values = values + 0.0
        values[np.isnan(values)] = np.nan
        return values.view(np.uint64)
    codes, _ = pd.factorize(series, use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64).view(np.uint64)


def _mix_inplace(x: npt.NDArray[np.uint64]) -> None:
    """The splitmix64 finaliser, in place: spreads every input bit over the whole word."""
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)


def _group_ids(columns: Sequence[pd.Series | npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    """Equal ids for rows equal in every column (missing equals missing), first-seen order."""
    n = len(columns[0])
    ids = np.zeros(n, dtype=np.int64)
    cardinality = 1
    for values in columns:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        size = max(len(uniques), 1)
        if cardinality * size >= 2**62:
            ids, compressed = pd.factorize(ids)
            cardinality = max(len(compressed), 1)
        ids = ids * size + np.asarray(codes, dtype=np.int64)
        cardinality *= size
    codes, _ = pd.factorize(ids)
    return np.asarray(codes, dtype=np.int64)


def _repeated(values: npt.NDArray[Any]) -> BoolArray:
    return np.array(pd.Series(values).duplicated(keep=False).to_numpy(), dtype=bool)


def predefined_split_column(df: pd.DataFrame, roles: Roles) -> str | None:
    """The column holding a file's own split (MedMNIST ``split``), or None.

    A column counts when it is named ``split``, is not a feature (the image roles exclude it),
    and its values are split names ("train", "val", "test", ...) including "test".
    """
    if "split" not in df.columns or "split" not in roles.non_feature_columns():
        return None
    values = {str(v).strip().lower() for v in pd.unique(df["split"].dropna())}
    if values and values <= _SPLIT_VALUES and values & set(_TEST_SPLITS):
        return "split"
    return None


def _test_rows(df: pd.DataFrame, split_column: str | None) -> BoolArray:
    if split_column is None:
        return np.zeros(len(df), dtype=bool)
    names = df[split_column].astype(str).str.strip().str.lower()
    return np.asarray(names.isin(_TEST_SPLITS).to_numpy(), dtype=bool)


def _levels(series: pd.Series, rows: BoolArray) -> tuple[bool, int]:
    """Whether the finite values on ``rows`` are all whole numbers, and how many distinct.

    The count is only taken for whole numbers (-1 otherwise): sorting a continuous column of
    a large table to count its levels would be wasted.
    """
    values = series.to_numpy(dtype="float64", na_value=np.nan)[rows]
    values = values[np.isfinite(values)]
    if not np.all(values == np.round(values)):
        return False, -1
    return True, int(np.unique(values).size)


def _is_bounded_scale(series: pd.Series, rows: BoolArray) -> bool:
    """Whole numbers on a short scale: a score, a grade or a code (1-10, 0-6, 1-4).

    At most ``LOW_CARDINALITY_LEVELS`` levels spanning at most that many units, so a 0/1 flag
    with a stray 100, or a code 99 meaning "unknown", is still tested for outliers.
    """
    whole, levels = _levels(series, rows)
    if not whole or not 0 < levels <= LOW_CARDINALITY_LEVELS:
        return False
    values = series.to_numpy(dtype="float64", na_value=np.nan)[rows]
    values = values[np.isfinite(values)]
    return bool(values.max() - values.min() <= LOW_CARDINALITY_LEVELS)


def _continuous_columns(
    df: pd.DataFrame, features: Sequence[Hashable], rows: BoolArray
) -> list[Hashable]:
    """Numeric features with non-integer values or more than ``LOW_CARDINALITY_LEVELS`` levels."""
    out = []
    for column in features:
        if _is_numeric(df[column]):
            whole, levels = _levels(df[column], rows)
            if not whole or levels > LOW_CARDINALITY_LEVELS:
                out.append(column)
    return out


def _chance_matches(df: pd.DataFrame, features: Sequence[Hashable], rows: BoolArray) -> float:
    """Pairs of different patients expected to be identical on every feature by chance.

    Each feature's chance that two random rows agree is the sum of its squared value shares
    (missing counts as a value); the product over features, taken as independent, times the
    number of pairs of rows. Correlated features make coincidences likelier still, so a
    value of 1 or more means identical rows cannot be taken as repeats. Every factor is at
    most 1, so the product stops as soon as it is below 1 (the value is then an upper bound).
    """
    n = int(rows.sum())
    if n < 2 or not features:
        return 0.0
    positions = np.flatnonzero(rows)
    log_chance = math.log(n * (n - 1) / 2)
    for column in features:
        picked = df[column].iloc[positions]
        shares = picked.value_counts(normalize=True, dropna=False).to_numpy()
        log_chance += math.log(float(np.square(shares).sum()))
        if log_chance < 0:
            break
    return math.exp(log_chance) if log_chance < 700 else math.inf


def _columns_text(columns: Sequence[Hashable], df: pd.DataFrame, rows: BoolArray) -> str:
    """ "3 columns ('a' 1–10, 'b' 1–4, ...)": names with their ranges, for the notes."""
    shown = []
    for column in columns[:3]:
        span = ""
        if _is_numeric(df[column]):
            values = df[column].to_numpy(dtype="float64", na_value=np.nan)[rows]
            values = values[np.isfinite(values)]
            span = f" {values.min():g}–{values.max():g}" if values.size else ""
        shown.append(f"{str(column)!r}{span}")
    more = ", ..." if len(columns) > 3 else ""
    noun = "column" if len(columns) == 1 else "columns"
    return f"{len(columns)} {noun} ({', '.join(shown)}{more})"


def _duplicate_records(
    df: pd.DataFrame,
    roles: Roles,
    action: str,
    feature_hash: npt.NDArray[np.uint64],
    alive: BoolArray,
    *,
    unidentified_repeats: Callable[[], bool],
    split_column: str | None,
) -> tuple[pd.DataFrame, BoolArray]:
    """Later copies of rows identical on every column (ID, label and split included).

    Returns the listing (see :attr:`CleaningReport.duplicates`) and the rows to remove. The
    label is part of the comparison, never a tie-breaker: the first copy is always kept.
    ``unidentified_repeats`` says, in "auto", whether identical rows without an ID are repeats.
    """
    mask = np.zeros(len(df), dtype=bool)
    candidates = np.flatnonzero(alive)
    candidates = candidates[_repeated(feature_hash[candidates])]
    if candidates.size == 0:
        return _empty_duplicates(df.index), mask
    subset = df.iloc[candidates]
    id_column = roles.id if roles.id is not None and roles.id in df.columns else None
    with_id = (
        subset[id_column].notna().to_numpy() if id_column else np.zeros(len(subset), dtype=bool)
    )
    # With an ID the record is the ID with every column that describes the case (features,
    # label, quality, site, split); free-text and other excluded columns may differ between
    # exports of one record. Without an ID nothing but a whole identical row is a candidate.
    described = [c for c in df.columns if c not in roles.exclude or c == split_column]
    keys = np.where(
        with_id,
        _group_ids([feature_hash[candidates], *(subset[c] for c in described)]),
        -1 - _group_ids([feature_hash[candidates], *(subset[c] for c in df.columns)]),
    )
    groups, _ = pd.factorize(keys)
    later = np.asarray(pd.Series(groups).duplicated(keep="first").to_numpy(), dtype=bool)
    if not later.any():
        return _empty_duplicates(df.index), mask
    first_of_group = pd.Series(candidates).groupby(groups).transform("first").to_numpy()
    if action == "drop":
        remove = later
    elif action == "auto":
        unidentified = later & ~with_id
        remove = later & (with_id | (unidentified.any() and unidentified_repeats()))
    else:
        remove = np.zeros(len(subset), dtype=bool)
    mask[candidates[remove]] = True
    rows = candidates[later]
    listing = pd.DataFrame(
        {
            "row": df.index[rows],
            "copy_of": df.index[first_of_group[later]],
            "kind": pd.Series(np.where(with_id[later], "same ID", "no ID"), dtype="str"),
            "action": pd.Series(np.where(remove[later], "removed", "kept"), dtype="str"),
        }
    )
    return listing, mask


def _duplicate_notes(
    listing: pd.DataFrame,
    action: str,
    continuous: Sequence[Hashable],
    chance: Callable[[], float],
    df: pd.DataFrame,
    features: Sequence[Hashable],
) -> list[str]:
    notes = []
    same_id = listing[listing["kind"] == "same ID"]
    no_id = listing[listing["kind"] == "no ID"]
    if len(same_id):
        fate = "kept, as chosen" if action == "keep" else "removed (the first copy is kept)"
        notes.append(
            f"{len(same_id):,} row(s) repeat an earlier row with the same patient ID, the same "
            f"features and the same label: repeated records, {fate}. Rows with different IDs "
            "are never treated as copies of each other."
        )
    if not len(no_id):
        return notes
    head = (
        f"{len(no_id):,} row(s) are identical on every column to an earlier row, and there is "
        "no patient ID to tell whether they are the same person"
    )
    if action == "drop":
        notes.append(f"{head}; they were removed as repeats, as chosen (the first copy is kept).")
    elif action == "keep":
        notes.append(f"{head}; they were kept, as chosen.")
    elif continuous and chance() < 1:
        notes.append(
            f"{head}. With continuous measurements ({_columns_text(continuous, df, _all(df))}) "
            "identical rows are the same record entered twice, so the later copies were "
            "removed; choose 'keep' if they are different patients."
        )
    elif continuous:
        notes.append(
            f"{head}. The values are coarse enough that different patients share rows: about "
            f"{chance():,.0f} pairs of patients would be identical by chance alone, so they were "
            "kept; choose 'drop' if they are repeats."
        )
    else:
        scales = [c for c in features if _is_numeric(df[c])] or list(features)
        listed = f" ({_columns_text(scales, df, _all(df))})" if scales else ""
        notes.append(
            f"{head}. Every feature is a score, a code or a whole number with few levels"
            f"{listed}: identical rows on such values are "
            "expected between different patients, so they were kept; choose 'drop' if they "
            "are repeats."
        )
    return notes


def _all(df: pd.DataFrame) -> BoolArray:
    return np.ones(len(df), dtype=bool)


def _empty_duplicates(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": index[:0],
            "copy_of": index[:0],
            "kind": pd.Series([], dtype="str"),
            "action": pd.Series([], dtype="str"),
        }
    )


def _empty_across(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": index[:0],
            "twin": index[:0],
            "opposite_label": pd.Series([], dtype=bool),
        }
    )


def _empty_conflicts(df: pd.DataFrame, group_column: str) -> pd.DataFrame:
    empty = df.iloc[:0].copy()
    empty[group_column] = pd.Series([], index=empty.index, dtype="int64")
    return empty


def _label_conflicts(
    df: pd.DataFrame,
    feature_cols: Sequence[Hashable],
    label: str,
    feature_hash: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.intp],
    group_column: str,
) -> pd.DataFrame:
    """Kept rows whose features equal another kept row's while their labels differ."""
    candidates = rows[_repeated(feature_hash[rows])]
    if candidates.size == 0:
        return _empty_conflicts(df, group_column)
    subset = df.iloc[candidates]
    groups = _group_ids([feature_hash[candidates], *(subset[c] for c in feature_cols)])
    return _mixed_label_groups(subset, groups, label, group_column)


def _mixed_label_groups(
    rows: pd.DataFrame, groups: npt.NDArray[np.int64], label: str, group_column: str
) -> pd.DataFrame:
    """The rows whose group holds more than one label, with the groups numbered from 0."""
    labels = pd.Series(pd.factorize(rows[label])[0])
    n_labels = labels.groupby(groups).nunique().to_numpy()
    mixed = n_labels[groups] > 1
    out = rows[mixed].copy()
    numbered, _ = pd.factorize(groups[mixed])
    out[group_column] = pd.Series(numbered, index=out.index, dtype="int64")
    return out


def _contradictions(
    df: pd.DataFrame,
    conflicts: pd.DataFrame,
    feature_cols: Sequence[Hashable],
    id_column: str,
    label: str,
) -> pd.DataFrame:
    """Conflicting rows that also share a patient ID: the same patient with two diagnoses."""
    group_column = conflicts.columns[-1]
    with_id = conflicts[conflicts[id_column].notna()]
    if not len(with_id):
        return conflicts.iloc[:0]
    groups = _group_ids([with_id[id_column], *(with_id[c] for c in feature_cols)])
    return _mixed_label_groups(with_id, groups, label, group_column)


def _n_contradicting_ids(contradictions: pd.DataFrame) -> int:
    if not len(contradictions):
        return 0
    return int(contradictions.iloc[:, -1].nunique())


def _across_split(
    df: pd.DataFrame,
    feature_cols: Sequence[Hashable],
    label: str,
    feature_hash: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.intp],
    in_test: BoolArray,
) -> pd.DataFrame:
    """Kept test rows whose features equal a kept row of the other part of the split."""
    candidates = rows[_repeated(feature_hash[rows])]
    if candidates.size == 0:
        return _empty_across(df.index)
    subset = df.iloc[candidates]
    groups = _group_ids([feature_hash[candidates], *(subset[c] for c in feature_cols)])
    test = in_test[candidates]
    labels = np.asarray(pd.factorize(subset[label])[0])
    out = []
    dev_positions = pd.Series(np.flatnonzero(~test)).groupby(groups[~test]).agg(list).to_dict()
    for position in np.flatnonzero(test):
        twins = dev_positions.get(groups[position])
        if not twins:
            continue
        opposite = bool(np.any(labels[twins] != labels[position]))
        twin = next((t for t in twins if labels[t] != labels[position]), twins[0])
        out.append((df.index[candidates[position]], df.index[candidates[twin]], opposite))
    if not out:
        return _empty_across(df.index)
    rows_, twins_, opposite_ = zip(*out, strict=True)
    return pd.DataFrame(
        {"row": list(rows_), "twin": list(twins_), "opposite_label": list(opposite_)}
    )


def _case_notes(
    conflicts: pd.DataFrame,
    contradictions: pd.DataFrame,
    across: pd.DataFrame,
    group_column: str,
    id_column: str | None,
) -> list[str]:
    notes = []
    if len(conflicts):
        groups = int(conflicts[group_column].nunique())
        notes.append(
            f"{len(conflicts):,} rows in {groups:,} group(s) have identical features but "
            "different labels. They are kept: they are the hard cases a model must be judged "
            "on. See the conflicts list."
        )
    n_ids = _n_contradicting_ids(contradictions)
    if n_ids:
        notes.append(
            f"Warning: {n_ids:,} patient ID(s) in {id_column!r} have rows with identical "
            "features and contradictory labels. This is a data error to check in the source; "
            "the rows were kept."
        )
    if len(across):
        opposite = int(across["opposite_label"].sum())
        notes.append(
            f"{len(across):,} test row(s) of the file's own split have features identical to "
            f"a development row ({opposite:,} with the opposite label). Both copies were kept, "
            "so the official test set stays whole; the training summary counts them."
        )
    return notes


def _class_counts(labels: pd.Series, roles: Roles) -> dict[str, int]:
    """Rows per class, keyed by the class's name when the user gave one (else its code)."""
    counts: dict[str, int] = {}
    for value, n in labels.value_counts(sort=False).items():
        key = roles.class_name(value)
        counts[key] = counts.get(key, 0) + int(n)
    return dict(sorted(counts.items()))


def _prevalence_warning(report: CleaningReport) -> str | None:
    shift = report.prevalence_shift()
    if shift <= PREVALENCE_SHIFT_WARNING:
        return None
    table = report.prevalence()
    worst = table.iloc[int(np.argmax(table["change (points)"].abs().to_numpy()))]
    return (
        f"Warning: cleaning changed the class balance: {str(worst['class'])!r} went from "
        f"{worst['share before']:.1%} to {worst['share after']:.1%} of the rows "
        f"({worst['change (points)']:+.1f} points). Predictive values and calibration would "
        "then describe a different population; check which rules removed the rows."
    )


def _quality_token(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if (
        isinstance(value, float | np.floating)
        and math.isfinite(value)
        and float(value).is_integer()
    ):
        return str(int(value))
    return str(value).strip().lower()


def _acceptable_quality(flags: pd.Series, acceptable: Sequence[str]) -> BoolArray:
    allowed = {_quality_token(v) for v in acceptable}
    # Normalising each distinct value once keeps this linear in the rows, not in Python calls.
    accepted = [v for v in pd.unique(flags.dropna()) if _quality_token(v) in allowed]
    ok = flags.isin(accepted).to_numpy() if accepted else np.zeros(len(flags), dtype=bool)
    return np.asarray(ok & flags.notna().to_numpy(), dtype=bool)


def _range_flags(
    df: pd.DataFrame,
    ranges: dict[str, tuple[float | None, float | None]],
    alive: BoolArray,
) -> tuple[BoolArray, pd.DataFrame]:
    mask = np.zeros(len(df), dtype=bool)
    frames = []
    for column, (low, high) in ranges.items():
        values = df[column].to_numpy(dtype="float64", na_value=np.nan)
        outside = np.zeros(len(df), dtype=bool)
        if low is not None:
            outside |= values < low
        if high is not None:
            outside |= values > high
        outside &= alive
        mask |= outside
        detail = f"outside [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        frames.append(_flag_frame(df.index, column, values, outside, "out of range", detail))
    return mask, _concat_flags(frames, df.index)


def _outlier_flags(
    df: pd.DataFrame, columns: Sequence[Hashable], z: float, alive: BoolArray, fit: BoolArray
) -> pd.DataFrame:
    """Flags for values of ``alive`` rows beyond ``z`` robust SDs, the limits learnt on ``fit``."""
    frames = []
    for column in columns:
        values = df[column].to_numpy(dtype="float64", na_value=np.nan)
        usable = values[fit]
        usable = usable[np.isfinite(usable)]
        if usable.size < 3:
            continue
        centre, scale, scale_name = _robust_centre_scale(usable)
        if scale == 0:
            continue
        outlying = ((values > centre + z * scale) | (values < centre - z * scale)) & alive
        if not outlying.any():
            continue
        detail = f"robust z > {z:g} (median {centre:.4g}, {scale_name} {scale:.4g})"
        frames.append(_flag_frame(df.index, column, values, outlying, "outlier", detail))
    return _concat_flags(frames, df.index)


def _robust_centre_scale(values: npt.NDArray[np.float64]) -> tuple[float, float, str]:
    # `values` is a private copy: partitioning in place avoids two more copies per column.
    centre = _median_inplace(values)
    np.subtract(values, centre, out=values)
    np.abs(values, out=values)
    mad = _median_inplace(values)
    if mad > 0:
        return centre, _MAD_SCALE * mad, "scaled MAD"
    return centre, _MEAN_AD_SCALE * float(values.mean()), "scaled mean absolute deviation"


def _median_inplace(values: npt.NDArray[np.float64]) -> float:
    n = values.size
    k = n // 2
    values.partition(k)
    upper = float(values[k])
    if n % 2:
        return upper
    return (float(values[:k].max()) + upper) / 2


def _flag_frame(
    index: pd.Index,
    column: Hashable,
    values: npt.NDArray[np.float64],
    mask: BoolArray,
    rule: str,
    detail: str,
) -> pd.DataFrame:
    positions = np.flatnonzero(mask)
    return pd.DataFrame(
        {
            "row": index[positions],
            "column": pd.Series([column] * positions.size, dtype=object),
            "value": values[positions],
            "rule": pd.Series([rule] * positions.size, dtype="str"),
            "detail": pd.Series([detail] * positions.size, dtype="str"),
        }
    )


def _concat_flags(frames: list[pd.DataFrame], index: pd.Index) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else _empty_flags(index)


def _empty_flags(index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": index[:0],
            "column": pd.Series([], dtype=object),
            "value": pd.Series([], dtype="float64"),
            "rule": pd.Series([], dtype="str"),
            "detail": pd.Series([], dtype="str"),
        }
    )


def _free_name(base: str, taken: pd.Index) -> str:
    name, i = base, 1
    names = set(taken)
    if name in names:
        name = f"removal_{base}" if base == "reason" else f"{base}_id"
    while name in names:
        i += 1
        name = f"{base}_{i}"
    return name


def _missing_column_message(
    role: str, name: Hashable, columns: pd.Index, fix: str | None = None
) -> str:
    fix = fix or f"Choose the {role.lower()} column again, or rename the column in the file."
    return f"{role} column {name!r} is not in the table. {column_hint(name, columns)}{fix}"
