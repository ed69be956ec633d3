"""Cleaning that accounts for every row: ``kept + removed == input`` always holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

__all__ = ["CleaningPlan", "CleaningReport"]

MissingAction = Literal["drop", "impute"]
FlagAction = Literal["flag", "drop"]


@dataclass(frozen=True)
class CleaningPlan:
    """A cleaning plan is a value: saved with the model and re-applied to new data.

    Parameters
    ----------
    missing : "drop" removes rows with any missing feature value (the classic step);
        "impute" keeps them and lets the model pipeline impute (median for numbers, most
        frequent for categories), fitted on training folds only.
    impute_strategy : "median" or "mean" for numeric features when ``missing == "impute"``.
    drop_duplicates : remove exact duplicate rows (all columns but the ID), keeping the first.
    quality_column : column holding a quality flag; ``None`` disables the quality step.
    acceptable_quality : values of the quality flag that are kept (compared as lower-case
        strings); empty means the defaults ("good", "ok", "pass", "acceptable", "1", "true", "yes").
    ranges : plausible ``(low, high)`` per column, either bound may be ``None``.
    range_action : out-of-range values are "flag"ged (default) or their rows "drop"ped.
    outlier_action : statistical outliers (robust z-score above ``outlier_z``) are "flag"ged
        (default) or their rows "drop"ped.
    outlier_z : threshold on |x - median| / (1.4826 * MAD).
    drop_empty_columns, drop_constant_columns : drop all-missing and single-valued columns.
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
    removed : the removed rows, all original columns plus ``reason`` (the first rule that
        removed the row: "missing label", "missing values", "duplicate", "quality flag",
        "out of range", "outlier").
    counts : rows removed per rule, in the order the rules ran (rules that removed none included).
    conflicts : rows that are duplicates on features (or share an ID) but disagree on the
        label, with a ``conflict_group`` column; reported, not silently resolved.
    flags : one row per flagged cell: ``row`` (original index), ``column``, ``value``,
        ``rule`` ("out of range" or "outlier"), ``detail``.
    dropped_columns : column -> reason ("empty", "constant").
    n_input : rows in.
    plan : the plan that produced this report.
    """

    data: pd.DataFrame
    removed: pd.DataFrame
    counts: dict[str, int]
    conflicts: pd.DataFrame
    flags: pd.DataFrame
    dropped_columns: dict[str, str]
    n_input: int
    plan: CleaningPlan

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
            "conflicts": int(self.conflicts["conflict_group"].nunique())
            if len(self.conflicts)
            else 0,
            "flagged_cells": {
                str(rule): int(n) for rule, n in self.flags["rule"].value_counts().items()
            }
            if len(self.flags)
            else {},
            "dropped_columns": dict(self.dropped_columns),
            "plan": self.plan.to_dict(),
        }
