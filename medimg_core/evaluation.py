"""Clinical metrics with 95% bootstrap intervals, curves, thresholds and confusion matrices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["METRIC_KEYS", "Curve", "Evaluation", "MetricValue"]

METRIC_KEYS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "pr_auc",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "brier",
)


@dataclass(frozen=True)
class MetricValue:
    """A point estimate with its 95% bootstrap interval (NaN bounds when not computable)."""

    value: float
    ci95: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        def clean(x: float) -> float | None:
            return None if x is None or not np.isfinite(x) else float(x)

        return {"value": clean(self.value), "ci95": [clean(self.ci95[0]), clean(self.ci95[1])]}


@dataclass(frozen=True)
class Curve:
    """Points of one curve; ``x``/``y`` named by ``x_name``/``y_name`` (e.g. "1 - specificity")."""

    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray | None
    x_name: str
    y_name: str


@dataclass(frozen=True)
class Evaluation:
    """Everything one partition's evaluation produced.

    Attributes
    ----------
    partition : "cv" (out-of-fold, development data), "test" or "external".
    metrics : METRIC_KEYS -> MetricValue (macro averages for multi-class).
    y_true : encoded true labels (0/1 for binary: 1 = positive; class index otherwise).
    y_score : probabilities, shape (n,) of P(positive) for binary, (n, k) for multi-class.
    threshold : decision threshold used for threshold-dependent metrics (binary).
    confusion : confusion matrix at ``threshold``, rows = true, columns = predicted, in the
        order of ``class_names`` (binary: [negative, positive]).
    class_names : display names, binary: (negative label, positive label).
    positive_class : the positive label (None for multi-class).
    roc, pr, calibration : curves (binary; for multi-class, one-vs-rest of ``class_names``
        is available through ``per_class``).
    per_class : multi-class only: class name -> {metric: value} (one-vs-rest).
    row_ids : case identifiers aligned with y_true (the ID column when there is one, else the
        row index), so false negatives etc. can be opened one by one.
    groups_resampled : True when bootstrap intervals resampled patients (groups), not rows.
    n_boot : bootstrap replicates used.
    """

    partition: str
    metrics: dict[str, MetricValue]
    y_true: np.ndarray
    y_score: np.ndarray
    threshold: float
    confusion: np.ndarray
    class_names: tuple[str, ...]
    positive_class: Any
    roc: Curve | None
    pr: Curve | None
    calibration: Curve | None
    per_class: dict[str, dict[str, float]] | None
    row_ids: np.ndarray
    groups_resampled: bool
    n_boot: int

    @property
    def n(self) -> int:
        return len(self.y_true)

    def to_dict(self) -> dict[str, Any]:
        """``{metric: {"value": v, "ci95": [lo, hi]}}`` as written in the model card."""
        return {k: m.to_dict() for k, m in self.metrics.items()}
