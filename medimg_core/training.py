"""Honest training: every fitted step lives inside the pipeline and sees training folds only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from medimg_core.evaluation import Evaluation, MetricValue
from medimg_core.models import MedimgModel

__all__ = ["LeaderboardRow", "Progress", "SplitSummary", "TrainingResult", "ValidationConfig"]

Progress = Callable[[float, str], None]
"""``progress(fraction_done, message)``; fraction in [0, 1]."""


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

    def to_dict(self) -> dict[str, Any]:
        return {
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
        }


@dataclass(frozen=True)
class LeaderboardRow:
    """One ``auto`` candidate: its cross-validated ROC AUC with a 95% interval, fit time."""

    kind: str
    roc_auc: MetricValue
    accuracy: MetricValue
    fold_aucs: tuple[float, ...]
    seconds: float
    chosen: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.kind,
            "roc_auc": self.roc_auc.to_dict(),
            "accuracy": self.accuracy.to_dict(),
            "fold_aucs": list(self.fold_aucs),
            "seconds": round(self.seconds, 2),
            "chosen": self.chosen,
        }


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` produced.

    Attributes
    ----------
    model : the deployable model, refitted on all development rows.
    cv : out-of-fold evaluation on the development part.
    test : evaluation on the held-out test set (None when ``test_size == 0``).
    split : how cases were assigned.
    leaderboard : ``auto`` candidates, best first (empty otherwise).
    warnings : leakage / plausibility guards, written for the user.
    fold_scores : ROC AUC (binary) or accuracy per CV fold, for robustness.
    dataset_hash : content hash of the training table.
    seconds : wall time of training.
    versions : library versions.
    """

    model: MedimgModel
    cv: Evaluation
    test: Evaluation | None
    split: SplitSummary
    leaderboard: tuple[LeaderboardRow, ...]
    warnings: tuple[str, ...]
    fold_scores: tuple[float, ...]
    dataset_hash: str
    seconds: float
    versions: dict[str, str] = field(default_factory=dict)
    oof_proba: np.ndarray | None = None
