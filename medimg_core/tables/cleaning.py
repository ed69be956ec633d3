"""Cleaning that accounts for every row: ``kept + removed == input`` always holds.

:func:`clean` runs the rules below in this order. A row is removed by the first rule that
matches it and is kept, with that rule as its ``reason``, in :attr:`CleaningReport.removed`.

1. "missing label": no label (missing, or a blank string). Only when ``require_label``.
2. "missing values": a missing value in a feature column, when ``plan.missing == "drop"``.
   Missing IDs, sites, quality flags or excluded columns never count here.
3. "conflicting duplicate": rows with identical feature values but different labels. Nobody
   can tell which label is true, so every row of such a group is removed and listed in
   :attr:`CleaningReport.conflicts`. Always on when there is a label.
4. "duplicate": when ``plan.drop_duplicates``, a row identical to an earlier row on every
   column except the ID, or with the same (non-missing) ID, identical features and the same
   label. The first row is kept.
5. "quality flag": the quality flag is missing or not one of the acceptable values.
6. "out of range": a value outside ``plan.ranges``, when ``plan.range_action == "drop"``.
7. "outlier": a robust z-score above ``plan.outlier_z`` in a numeric feature column, when
   ``plan.outlier_action == "drop"``.

Before the rules run, feature columns that are empty (all missing) or constant (one distinct
value, missing values aside) are dropped, judged on the whole input table. Label, ID, quality,
site and excluded columns are never dropped.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
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
    "REMOVAL_RULES",
    "CleaningPlan",
    "CleaningReport",
    "clean",
    "suggest_plan",
]

MissingAction = Literal["drop", "impute"]
FlagAction = Literal["flag", "drop"]

REMOVAL_RULES: tuple[str, ...] = (
    "missing label",
    "missing values",
    "conflicting duplicate",
    "duplicate",
    "quality flag",
    "out of range",
    "outlier",
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
""":func:`suggest_plan` proposes imputation when dropping would lose more than this share of rows."""

_MAD_SCALE = 1.4826
"""Makes the median absolute deviation a consistent estimate of the standard deviation."""
_MEAN_AD_SCALE = 1.2533
"""Same for the mean absolute deviation, used when more than half of a column is one value."""


@dataclass(frozen=True)
class CleaningPlan:
    """A cleaning plan is a value: saved with the model and re-applied to new data.

    Parameters
    ----------
    missing : "drop" removes rows with any missing feature value (the classic step);
        "impute" keeps them and lets the model pipeline impute (median for numbers, most
        frequent for categories), fitted on training folds only. :func:`clean` never imputes.
    impute_strategy : "median" or "mean" for numeric features when ``missing == "impute"``.
    drop_duplicates : remove duplicate rows, keeping the first: rows identical on every column
        except the ID, and rows with the same ID, identical features and the same label.
    quality_column : column holding a quality flag. When ``None``, :func:`clean` uses
        ``roles.quality``; when both are ``None`` the quality step is skipped.
    acceptable_quality : values of the quality flag that are kept, compared case-insensitively
        after stripping spaces (whole numbers such as ``1.0`` compare as ``"1"``, booleans as
        ``"true"``/``"false"``); empty means ``DEFAULT_ACCEPTABLE_QUALITY`` ("good", "ok",
        "pass", "passed", "acceptable", "1", "true", "yes", "high"). A missing flag is never
        acceptable.
    ranges : plausible ``(low, high)`` per numeric column, either bound may be ``None``;
        bounds are inclusive.
    range_action : out-of-range values are "flag"ged (default) or their rows "drop"ped.
    outlier_action : statistical outliers (robust z-score above ``outlier_z``) in numeric
        feature columns are "flag"ged (default) or their rows "drop"ped.
    outlier_z : threshold on |x - median| / (1.4826 * MAD). When more than half of a column
        is one value (MAD = 0), 1.2533 * mean absolute deviation from the median is used.
    drop_empty_columns, drop_constant_columns : drop all-missing and single-valued feature
        columns.
    """

    missing: MissingAction = "drop"
    impute_strategy: Literal["median", "mean"] = "median"
    drop_duplicates: bool = True
    quality_column: str | None = None
    acceptable_quality: tuple[str, ...] = ()
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    range_action: FlagAction = "flag"
    outlier_action: FlagAction = "flag"
    outlier_z: float = 5.0
    drop_empty_columns: bool = True
    drop_constant_columns: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "impute_strategy": self.impute_strategy,
            "drop_duplicates": self.drop_duplicates,
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
        d = dict(d)
        d["acceptable_quality"] = tuple(d.get("acceptable_quality") or ())
        d["ranges"] = {k: (v[0], v[1]) for k, v in (d.get("ranges") or {}).items()}
        return cls(**d)


@dataclass(frozen=True)
class CleaningReport:
    """The outcome of :func:`clean`.

    Attributes
    ----------
    data : the kept rows (original index preserved), without dropped columns.
    removed : the removed rows, all original columns plus ``reason_column`` (the first rule
        that removed the row, one of ``REMOVAL_RULES``).
    counts : rows removed per rule, in the order the rules ran (rules that removed none included).
    conflicts : rows with identical feature values but different labels, all original columns
        plus a last column ``conflict_group`` (0, 1, ... in order of first appearance; named
        ``conflict_group_id`` if the input has a ``conflict_group`` column); these rows are
        also in ``removed`` with reason "conflicting duplicate".
    flags : one row per flagged cell: ``row`` (original index), ``column``, ``value``,
        ``rule`` ("out of range" or "outlier"), ``detail``. Cells are judged on the rows that
        reach the rule, so flags never point at rows an earlier rule removed.
    dropped_columns : column -> reason ("empty", "constant").
    n_input : rows in.
    plan : the plan that produced this report.
    notes : plain-language remarks on steps that were skipped or adapted.
    reason_column : name of the reason column in ``removed``: "reason", unless the input
        already has a column of that name (then "removal_reason", ...).
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

    @property
    def n_kept(self) -> int:
        return len(self.data)

    @property
    def n_removed(self) -> int:
        return len(self.removed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the model card and the ``--report`` file (no row data)."""
        return {
            "rows_in": self.n_input,
            "rows_kept": self.n_kept,
            "rows_removed": self.n_removed,
            "removed_by_rule": dict(self.counts),
            "conflicts": int(self.conflicts.iloc[:, -1].nunique()) if len(self.conflicts) else 0,
            "flagged_cells": {
                str(rule): int(n) for rule, n in self.flags["rule"].value_counts().items()
            }
            if len(self.flags)
            else {},
            "dropped_columns": {str(k): v for k, v in self.dropped_columns.items()},
            "notes": list(self.notes),
            "plan": self.plan.to_dict(),
        }


_DEFAULT_PLAN = CleaningPlan()

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
    require_label : True when building a model: rows without a label are removed and
        conflicting duplicates are detected. False at prediction time, when the label column
        may be absent; then neither rule runs.

    Returns
    -------
    CleaningReport
        ``len(report.data) + len(report.removed) == len(df)`` and the two indexes together
        are exactly ``df.index``.

    Raises
    ------
    DataError
        ``df`` is not a DataFrame, has repeated column names, or lacks the label or quality
        column.
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

    notes: list[str] = []
    quality = plan.quality_column if plan.quality_column is not None else roles.quality
    if quality is not None and quality not in df.columns:
        if require_label or plan.quality_column is not None:
            raise DataError(
                _missing_column_message(
                    "Quality",
                    quality,
                    df.columns,
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

    n = len(df)
    feature_cols = _feature_columns(df, roles, quality)
    dropped_columns = _columns_to_drop(df, feature_cols, plan)
    kept_features = [c for c in feature_cols if c not in dropped_columns]

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

    conflicts_mask = np.zeros(n, dtype=bool)
    conflict_groups = np.empty(0, dtype=np.int64)
    if feature_cols:
        # Rows can only be duplicates or conflicts if their feature values hash alike, so the
        # exact comparisons below run on those few rows instead of the whole table.
        feature_hash = _row_hash(df, feature_cols)
        candidates = np.flatnonzero(alive)
        candidates = candidates[_repeated(feature_hash[candidates])]
        if label is not None:
            conflicts_mask, conflict_groups = _conflicts(
                df, feature_cols, label, feature_hash, candidates
            )
            remove("conflicting duplicate", conflicts_mask)
        if plan.drop_duplicates:
            candidates = candidates[alive[candidates]]
            remove("duplicate", _duplicates(df, roles, feature_cols, feature_hash, candidates))
    elif label is not None or plan.drop_duplicates:
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
    if numeric_features:
        outlier_mask, outlier_flags = _outlier_flags(df, numeric_features, plan.outlier_z, alive)
        flag_frames.append(outlier_flags)
        if plan.outlier_action == "drop":
            remove("outlier", outlier_mask)

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

    group_column = _free_name("conflict_group", df.columns)
    conflicts = df[conflicts_mask].copy()
    conflicts[group_column] = pd.Series(conflict_groups, index=conflicts.index, dtype="int64")

    flags = _concat_flags(flag_frames, df.index)
    return CleaningReport(
        data=data,
        removed=removed,
        counts=counts,
        conflicts=conflicts,
        flags=flags,
        # Keys stay the real column labels (strings in practice) so callers can index with them.
        dropped_columns=cast("dict[str, str]", dropped_columns),
        n_input=n,
        plan=plan,
        notes=tuple(notes),
        reason_column=reason_column,
    )


def suggest_plan(df: pd.DataFrame, roles: Roles) -> CleaningPlan:
    """The default plan for a table, adapted to what it contains.

    Parameters
    ----------
    df : the table.
    roles : the confirmed roles.

    Returns
    -------
    CleaningPlan
        The defaults, with ``quality_column = roles.quality``, and ``missing = "impute"`` when
        dropping rows with missing feature values would remove more than
        ``IMPUTE_SUGGESTION_FRACTION`` (20 %) of the labelled rows. Empty columns are left out
        of that count because the plan drops them first.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"suggest_plan() needs a pandas DataFrame, got {type(df).__name__}. "
            "Load the table with medimg_core.tables.loading.load_table first."
        )
    quality = roles.quality
    plan = CleaningPlan(quality_column=quality)
    features = _feature_columns(df, roles, quality)
    non_empty = [c for c in features if df[c].notna().any()]
    rows = np.ones(len(df), dtype=bool)
    if roles.label is not None and roles.label in df.columns:
        rows = ~_missing_labels(df[roles.label])
    n_rows = int(rows.sum())
    if n_rows == 0 or not non_empty:
        return plan
    missing_any = np.zeros(len(df), dtype=bool)
    for column in non_empty:
        missing_any |= df[column].isna().to_numpy()
    if (missing_any & rows).sum() > IMPUTE_SUGGESTION_FRACTION * n_rows:
        return CleaningPlan(quality_column=quality, missing="impute")
    return plan


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
        "outlier_action": (plan.outlier_action, ("flag", "drop")),
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


def _conflicts(
    df: pd.DataFrame,
    feature_cols: Sequence[Hashable],
    label: str,
    feature_hash: npt.NDArray[np.uint64],
    candidates: npt.NDArray[np.intp],
) -> tuple[BoolArray, npt.NDArray[np.int64]]:
    mask = np.zeros(len(df), dtype=bool)
    if candidates.size == 0:
        return mask, np.empty(0, dtype=np.int64)
    subset = df.iloc[candidates]
    groups = _group_ids([feature_hash[candidates], *(subset[c] for c in feature_cols)])
    labels = pd.Series(pd.factorize(subset[label])[0])
    n_labels = labels.groupby(groups).nunique().to_numpy()
    in_conflict = n_labels[groups] > 1
    mask[candidates[in_conflict]] = True
    numbered, _ = pd.factorize(groups[in_conflict])
    return mask, np.asarray(numbered, dtype=np.int64)


def _duplicates(
    df: pd.DataFrame,
    roles: Roles,
    feature_cols: Sequence[Hashable],
    feature_hash: npt.NDArray[np.uint64],
    candidates: npt.NDArray[np.intp],
) -> BoolArray:
    mask = np.zeros(len(df), dtype=bool)
    if candidates.size == 0:
        return mask
    subset = df.iloc[candidates]
    id_column = roles.id if roles.id is not None and roles.id in df.columns else None
    everything_but_id = [c for c in df.columns if c != id_column]
    later = _later_copies(subset, everything_but_id, feature_hash[candidates])
    if id_column is not None:
        same_case = [id_column, *feature_cols]
        if roles.label is not None and roles.label in df.columns:
            same_case.append(roles.label)
        later |= _later_copies(subset, same_case, feature_hash[candidates]) & (
            subset[id_column].notna().to_numpy()
        )
    mask[candidates[later]] = True
    return mask


def _later_copies(
    subset: pd.DataFrame, key_cols: Sequence[Hashable], feature_hash: npt.NDArray[np.uint64]
) -> BoolArray:
    groups = _group_ids([feature_hash, *(subset[c] for c in key_cols)])
    return np.array(pd.Series(groups).duplicated(keep="first").to_numpy(), dtype=bool)


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
    df: pd.DataFrame, columns: Sequence[Hashable], z: float, alive: BoolArray
) -> tuple[BoolArray, pd.DataFrame]:
    mask = np.zeros(len(df), dtype=bool)
    frames = []
    for column in columns:
        values = df[column].to_numpy(dtype="float64", na_value=np.nan)
        usable = values[alive]
        usable = usable[np.isfinite(usable)]
        if usable.size < 3:
            continue
        centre, scale, scale_name = _robust_centre_scale(usable)
        if scale == 0:
            continue
        outlying = ((values > centre + z * scale) | (values < centre - z * scale)) & alive
        if not outlying.any():
            continue
        mask |= outlying
        detail = f"robust z > {z:g} (median {centre:.4g}, {scale_name} {scale:.4g})"
        frames.append(_flag_frame(df.index, column, values, outlying, "outlier", detail))
    return mask, _concat_flags(frames, df.index)


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
