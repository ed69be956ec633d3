"""How unlike the development data a new case is: a Mahalanobis distance on standardised numbers.

A model's probabilities are only as good as the cases it learnt from. :func:`fit_distance_reference`
summarises the development rows' numeric features (means, standard deviations and a Ledoit–Wolf
shrunk precision matrix, which stays well-defined with many correlated or few rows) and the
99th percentile of development distances. That percentile comes from cases the statistics were
not fitted on (5-fold, out-of-fold), so about 1 in 100 new cases like the development data is
flagged, not more.

Kept free of ``models`` so that :class:`~medimg_core.modelling.models.MedimgModel` can hold a
:class:`DistanceReference` without a circular import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DISTANCE_QUANTILE",
    "MIN_ROWS",
    "DistanceReference",
    "fit_distance_reference",
]

DISTANCE_QUANTILE = 0.99
"""Development distances beyond this quantile flag a new case as unlike the training data."""

MIN_ROWS = 20
"""Fewer development rows than this give no stable covariance: no distance check."""

_FOLDS = 5


@dataclass(frozen=True, eq=False)
class DistanceReference:
    """What the distance check needs from the development rows.

    Attributes
    ----------
    columns : the numeric feature columns used, in order.
    center, scale : each column's development mean and standard deviation (1 when constant).
    precision : the Ledoit–Wolf precision matrix of the standardised columns.
    cutoff : the ``quantile`` of out-of-fold development distances; larger is flagged.
    quantile : 0.99 by default.
    n_development : development rows the statistics were computed on.
    """

    columns: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    precision: np.ndarray
    cutoff: float
    quantile: float = DISTANCE_QUANTILE
    n_development: int = 0

    def distances(self, X: pd.DataFrame) -> np.ndarray:
        """Mahalanobis distance of each row of ``X`` (numeric columns as floats) from the
        development mean; a missing value counts as the development mean, as imputed."""
        values = X.loc[:, list(self.columns)].to_numpy(dtype=float)
        return _distances(values, self.center, self.scale, self.precision)

    def arrays(self) -> dict[str, Any]:
        """The numeric statistics, for :mod:`skops.io` (numpy arrays only)."""
        return {"center": self.center, "scale": self.scale, "precision": self.precision}

    def summary(self) -> dict[str, Any]:
        """The JSON-ready part kept in the model card."""
        return {
            "method": "Mahalanobis distance on standardised numeric features, Ledoit–Wolf "
            "shrunk covariance; cutoff = out-of-fold development quantile",
            "columns": list(self.columns),
            "cutoff": float(self.cutoff),
            "quantile": float(self.quantile),
            "n_development": int(self.n_development),
        }

    @classmethod
    def from_parts(cls, summary: Mapping[str, Any], arrays: Mapping[str, Any]) -> DistanceReference:
        """Rebuild from :meth:`summary` and :meth:`arrays` (as saved)."""
        columns = tuple(str(c) for c in summary["columns"])
        center = np.asarray(arrays["center"], dtype=float)
        scale = np.asarray(arrays["scale"], dtype=float)
        precision = np.asarray(arrays["precision"], dtype=float)
        p = len(columns)
        if center.shape != (p,) or scale.shape != (p,) or precision.shape != (p, p):
            raise ValueError("the distance statistics do not match the listed columns")
        return cls(
            columns=columns,
            center=center,
            scale=scale,
            precision=precision,
            cutoff=float(summary["cutoff"]),
            quantile=float(summary.get("quantile", DISTANCE_QUANTILE)),
            n_development=int(summary.get("n_development", 0)),
        )


def _standardised(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (values - center) / scale
    return np.where(np.isfinite(z), z, 0.0)


def _distances(
    values: np.ndarray, center: np.ndarray, scale: np.ndarray, precision: np.ndarray
) -> np.ndarray:
    z = _standardised(values, center, scale)
    squared = np.einsum("ij,jk,ik->i", z, precision, z)
    return np.sqrt(np.clip(squared, 0.0, None))


def _statistics(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.covariance import LedoitWolf  # deferred: scikit-learn is slow to import

    with np.errstate(all="ignore"):
        center = np.nanmean(values, axis=0)
        scale = np.nanstd(values, axis=0)
    center = np.where(np.isfinite(center), center, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    z = _standardised(values, center, scale)
    precision = LedoitWolf(assume_centered=True).fit(z).get_precision()
    return center, scale, np.asarray(precision, dtype=float)


def fit_distance_reference(
    X_dev: pd.DataFrame,
    numeric_columns: tuple[str, ...] | list[str],
    *,
    seed: int = 0,
    quantile: float = DISTANCE_QUANTILE,
) -> DistanceReference | None:
    """The distance statistics of the development rows, or None when they cannot be trusted.

    Parameters
    ----------
    X_dev : prepared features of the development rows (numeric columns as floats).
    numeric_columns : the numeric feature columns (categorical ones are left out).
    seed : shuffles the rows into the folds that give out-of-fold distances.
    quantile : development distances beyond it are flagged.

    Returns
    -------
    DistanceReference or None
        None without numeric features or with fewer than :data:`MIN_ROWS` rows.
    """
    columns = [c for c in numeric_columns if c in X_dev.columns]
    if not columns or len(X_dev) < MIN_ROWS:
        return None
    values = X_dev.loc[:, columns].to_numpy(dtype=float)
    n = len(values)
    order = np.random.default_rng(seed).permutation(n)
    held_out = np.empty(n)
    for fold in np.array_split(order, _FOLDS):
        train = np.setdiff1d(order, fold, assume_unique=True)
        center, scale, precision = _statistics(values[train])
        held_out[fold] = _distances(values[fold], center, scale, precision)
    center, scale, precision = _statistics(values)
    return DistanceReference(
        columns=tuple(columns),
        center=center,
        scale=scale,
        precision=precision,
        cutoff=float(np.quantile(held_out, quantile)),
        quantile=float(quantile),
        n_development=n,
    )
