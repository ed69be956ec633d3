"""The validation scheme: its settings, the patient-level development/test split and the CV folds.

Rows of one patient (the ``id`` role) never straddle two parts: the held-out test set and the
cross-validation folds are both stratified *and* grouped by patient when an ID exists. Nothing
here looks at features or models; the test part is only chosen, never scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import THRESHOLD_METHODS

__all__ = [
    "Folds",
    "SplitSummary",
    "ValidationConfig",
    "check_validation",
    "cv_folds",
    "split_development_test",
]

Folds = list[tuple[np.ndarray, np.ndarray]]
"""(training positions, validation positions) per fold, as positions into the development rows."""


@dataclass(frozen=True)
class ValidationConfig:
    """Validation scheme.

    Parameters
    ----------
    test_size : share of rows (of patients when grouped) held out as the test set; 0 disables it.
    cv : folds of cross-validation on the development part (stratified; grouped by ``id`` when
        the roles name one).
    threshold : "0.5", "youden" or "sensitivity" (reach ``target_sensitivity``); always chosen on
        out-of-fold development predictions, never on the test set.
    target_sensitivity : used when ``threshold == "sensitivity"``.
    n_boot : bootstrap replicates for the 95% intervals.
    predefined_test : optional boolean mask (aligned with the data) marking a given test split,
        e.g. MedMNIST's own; when set, ``test_size`` is ignored.
    """

    test_size: float = 0.2
    cv: int = 5
    threshold: Literal["0.5", "youden", "sensitivity"] = "0.5"
    target_sensitivity: float = 0.9
    n_boot: int = 1000
    predefined_test: tuple[bool, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_size": self.test_size,
            "cv": self.cv,
            "threshold": self.threshold,
            "target_sensitivity": self.target_sensitivity,
            "n_boot": self.n_boot,
            "predefined_test": self.predefined_test is not None,
        }


@dataclass(frozen=True)
class SplitSummary:
    """How cases were assigned: counts of rows and patients per split and per class."""

    grouped_by: str | None
    n_dev: int
    n_test: int
    patients_dev: int | None
    patients_test: int | None
    class_counts_dev: dict[str, int]
    class_counts_test: dict[str, int]
    cv_folds: int
    test_size: float
    overlap_ids: tuple[Any, ...] = ()
    identical_rows_across: int = 0
    identical_rows_opposite_label: int = 0
    predefined_test: bool = False

    @property
    def test_split(self) -> str:
        """How the test set was formed: "predefined" (the file's own), "random" or "none"."""
        if not self.n_test:
            return "none"
        return "predefined" if self.predefined_test else "random"

    def test_text(self, *, source: str | None = None, unit: str = "rows") -> str:
        """The test set in words, e.g. "MedMNIST's own test split, 156 images" or
        "20% of patients held out at random, 114 rows".

        Parameters
        ----------
        source : who made a predefined split (e.g. "MedMNIST"); default "the file".
        unit : what a test case is ("rows", "images").
        """
        if self.test_split == "none":
            return "no test set"
        if self.test_split == "predefined":
            return f"{source or 'the file'}'s own test split, {self.n_test:,} {unit}"
        level = "patients" if self.grouped_by else "rows"
        return f"{self.test_size:.0%} of {level} held out at random, {self.n_test:,} {unit}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "test_split": self.test_split,
            "level": f"patient ({self.grouped_by})" if self.grouped_by else "row",
            "grouped_by": self.grouped_by,
            "n_dev": self.n_dev,
            "n_test": self.n_test,
            "patients_dev": self.patients_dev,
            "patients_test": self.patients_test,
            "class_counts_dev": dict(self.class_counts_dev),
            "class_counts_test": dict(self.class_counts_test),
            "cv_folds": self.cv_folds,
            "test_size": self.test_size,
            "ids_in_both_splits": len(self.overlap_ids),
            "identical_rows_across_splits": self.identical_rows_across,
            "identical_rows_across_splits_opposite_label": self.identical_rows_opposite_label,
        }


def check_validation(validation: ValidationConfig) -> None:
    if validation.cv < 2:
        raise ConfigError(
            f"Cross-validation needs at least 2 folds, got {validation.cv}; use 5 or 10."
        )
    if validation.predefined_test is None and not 0 <= validation.test_size < 1:
        raise ConfigError(
            f"test_size must be a share in [0, 1), got {validation.test_size}; 0.2 holds out "
            "a fifth of the patients, 0 disables the test set."
        )
    if validation.threshold not in THRESHOLD_METHODS:
        raise ConfigError(
            f"Unknown threshold rule {validation.threshold!r}; choose one of "
            f"{list(THRESHOLD_METHODS)}."
        )


def _too_few(unit: str, cls: Any, count: int, cv: int, with_test: bool, where: str) -> DataError:
    need = cv + 1 if with_test else cv
    most = count - 1 if with_test else count
    advice = (
        f"Use at most {most} folds (--cv) or add cases of that class."
        if most >= 2
        else "Add cases of that class (or choose another label)."
    )
    return DataError(
        f"The smallest class {str(cls)!r} has {count} {unit}{where}; {cv}-fold "
        f"cross-validation{' with a held-out test set' if with_test else ''} needs at least "
        f"{need}. {advice}"
    )


def _group_codes(groups: np.ndarray) -> np.ndarray:
    """Integer patient codes (0..patients-1); a missing ID is one patient, as scikit-learn's."""
    codes, _ = pd.factorize(pd.Series(groups, dtype=object), use_na_sentinel=False)
    return np.asarray(codes, dtype=np.int64)


def _units_per_class(
    y: np.ndarray, groups: np.ndarray | None, rows: np.ndarray, k: int
) -> np.ndarray:
    if groups is None:
        return np.bincount(y[rows], minlength=k)
    pairs = np.unique(_group_codes(groups[rows]) * k + y[rows])
    return np.bincount(pairs % k, minlength=k)


def _grouped_folds(
    y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds that never split a patient: (training, validation) positions into ``y``.

    Patients whose rows share one label (the usual case: a patient has one diagnosis) are
    stratified themselves, one label each, by ``StratifiedKFold``, and the folds mapped back to
    rows: vectorised, where ``StratifiedGroupKFold`` loops in Python once per patient. Patients
    with mixed labels go to ``StratifiedGroupKFold``, which balances their rows (or, fewer than
    ``n_splits`` of them, to folds in a seeded random order). When some class has fewer than
    ``n_splits`` single-label patients, every patient goes to ``StratifiedGroupKFold``.
    Deterministic given ``seed``.
    """
    codes = _group_codes(groups)
    n_groups = int(codes.max()) + 1 if codes.size else 0
    k = int(y.max()) + 1 if y.size else 1
    pairs = np.unique(codes * k + y)
    mixed = np.bincount(pairs // k, minlength=n_groups) > 1
    label = np.zeros(n_groups, dtype=np.int64)
    label[codes] = y  # a single-label patient's label (mixed ones: any of theirs, unused)
    pure = np.flatnonzero(~mixed)
    per_class = np.bincount(label[pure], minlength=k)
    if not pure.size or per_class[per_class > 0].min() < n_splits:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return [(np.asarray(tr), np.asarray(va)) for tr, va in splitter.split(y, y, codes)]
    fold_of_group = np.empty(n_groups, dtype=np.int64)
    stratified = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for f, (_, va) in enumerate(stratified.split(pure, label[pure])):
        fold_of_group[pure[va]] = f
    mixed_groups = np.flatnonzero(mixed)
    if mixed_groups.size >= n_splits:
        rows = np.flatnonzero(mixed[codes])
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        for f, (_, va) in enumerate(splitter.split(rows, y[rows], codes[rows])):
            fold_of_group[codes[rows[va]]] = f
    elif mixed_groups.size:
        order = np.random.default_rng(seed).permutation(mixed_groups)
        fold_of_group[order] = np.arange(order.size) % n_splits
    fold = fold_of_group[codes]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_splits)]


def split_development_test(
    y: np.ndarray,
    groups: np.ndarray | None,
    labels: tuple[Any, ...],
    validation: ValidationConfig,
    seed: int,
    label_col: str,
) -> tuple[np.ndarray, np.ndarray]:
    n = len(y)
    k = len(labels)
    unit = "patients" if groups is not None else "rows"
    everything = np.arange(n)
    if validation.predefined_test is not None:
        mask = np.asarray(validation.predefined_test, dtype=bool)
        if mask.shape != (n,):
            raise ConfigError(
                f"The predefined test mask has {mask.size} entries but the data have {n} rows; "
                "pass one True/False per row, in the data's order."
            )
        if mask.all() or not mask.any():
            raise ConfigError(
                "The predefined test mask marks "
                + ("every" if mask.any() else "no")
                + " row as test; mark some rows, not all."
            )
        return everything[~mask], everything[mask]
    with_test = validation.test_size > 0
    counts = _units_per_class(y, groups, everything, k)
    smallest = int(counts.argmin())
    if counts[smallest] < validation.cv + (1 if with_test else 0):
        raise _too_few(
            unit,
            labels[smallest],
            int(counts[smallest]),
            validation.cv,
            with_test,
            f" in {label_col!r}",
        )
    if not with_test:
        return everything, np.array([], dtype=int)
    if groups is None:
        dev, test = train_test_split(
            everything, test_size=validation.test_size, stratify=y, random_state=seed
        )
        return np.sort(dev), np.sort(test)
    n_splits = max(2, round(1 / validation.test_size))
    n_groups = int(_group_codes(groups).max()) + 1
    if n_groups < n_splits:
        raise DataError(
            f"Only {n_groups} patients (distinct {unit[:-1]} IDs) for a {validation.test_size:.0%} "
            "test set; use test_size 0 or add patients."
        )
    dev, test = _grouped_folds(y, groups, n_splits, seed)[0]
    return dev, test


def cv_folds(
    y: np.ndarray,
    groups: np.ndarray | None,
    dev: np.ndarray,
    labels: tuple[Any, ...],
    cv: int,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    k = len(labels)
    counts = _units_per_class(y, groups, dev, k)
    smallest = int(counts.argmin())
    if counts[smallest] < cv:
        raise _too_few(
            "patients" if groups is not None else "rows",
            labels[smallest],
            int(counts[smallest]),
            cv,
            False,
            " in the development part",
        )
    y_dev = y[dev]
    if groups is None:
        splitter = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
        folds = [(np.asarray(tr), np.asarray(va)) for tr, va in splitter.split(dev, y_dev)]
    else:
        folds = _grouped_folds(y_dev, groups[dev], cv, seed)
    for tr, _ in folds:
        if np.unique(y_dev[tr]).size < k:
            raise DataError(
                f"A cross-validation fold has no training case of some class with {cv} folds; "
                "use fewer folds (--cv) or add cases."
            )
    return folds
