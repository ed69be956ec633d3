"""Guards: plain-language warnings about leakage and what a clinical reader must know.

Near-perfect cross-validated scores, a single feature that separates the classes, test rows that
repeat development rows, patients in both splits, class imbalance and ignored class weights.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medimg_core.modelling.evaluation import Evaluation
from medimg_core.modelling.models import CLASS_WEIGHT_IGNORED, MedimgModel, label_key
from medimg_core.modelling.selection import binary_roc_auc
from medimg_core.modelling.validation import SplitSummary

__all__ = ["guards", "identical_rows_across", "single_feature_aucs"]


def identical_rows_across(X: pd.DataFrame, dev: np.ndarray, test: np.ndarray) -> int:
    """Test rows whose feature values all equal those of some development row."""
    if not len(test):
        return 0
    hashes = pd.util.hash_pandas_object(X, index=False).to_numpy()
    return int(np.isin(hashes[test], hashes[dev]).sum())


def single_feature_aucs(
    X: pd.DataFrame, y: np.ndarray, numeric: tuple[str, ...]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for col in numeric:
        values = X[col].to_numpy(dtype=float)
        keep = np.isfinite(values)
        if keep.sum() < 2:
            continue
        auc = binary_roc_auc(y[keep], values[keep])
        if np.isfinite(auc):
            out[col] = auc
    return out


def guards(
    *,
    model: MedimgModel,
    X: pd.DataFrame,
    y: np.ndarray,
    y_raw: pd.Series,
    dev: np.ndarray,
    cv_eval: Evaluation,
    test_eval: Evaluation | None,
    split: SplitSummary,
) -> list[str]:
    """Plain-language warnings about leakage and things a clinical reader must know."""
    out: list[str] = []
    # Cross-validated scores only: a small test set can be classified perfectly by chance,
    # while perfection over every development fold is a sign of leakage.
    auc = cv_eval.metrics["roc_auc"].value
    acc = cv_eval.metrics["accuracy"].value
    if (np.isfinite(auc) and auc >= 0.999) or acc == 1.0:
        out.append(
            f"Near-perfect cross-validated performance (ROC AUC {auc:.3f}, accuracy {acc:.3f}): "
            "check for leakage: a feature derived from the diagnosis, the same patient in "
            "several rows without an ID column, or a measurement taken after the diagnosis."
        )
    elif test_eval is not None and test_eval.metrics["accuracy"].value == 1.0:
        out.append(
            f"Every one of the {test_eval.n} held-out test cases was classified correctly; with "
            "a test set this small that can happen by chance. The cross-validated accuracy "
            f"({acc:.3f}) is the steadier estimate."
        )
    if model.is_binary:
        for col, auc in single_feature_aucs(X.iloc[dev], y[dev], model.numeric_columns).items():
            if auc >= 0.99 or auc <= 0.01:
                out.append(
                    f"The feature {col!r} alone separates the classes (ROC AUC "
                    f"{max(auc, 1 - auc):.3f}): check it is a measurement and not derived from "
                    "the diagnosis; exclude it if it is."
                )
    if split.identical_rows_across:
        out.append(
            f"{split.identical_rows_across} test row(s) have feature values identical to a "
            "development row, so the test set partly repeats training data; remove duplicates "
            "in cleaning or give the rows a patient ID."
        )
    if split.overlap_ids:
        out.append(
            f"{len(split.overlap_ids)} patient ID(s) appear in both the development and the "
            f"test set (e.g. {[str(v) for v in split.overlap_ids[:3]]}): the predefined split is "
            "not patient-disjoint, so test scores are optimistic."
        )
    shares = y_raw.map(label_key).value_counts(normalize=True)
    minority = str(shares.idxmin())
    if shares.min() < 0.2:
        advice = (
            "class weights are applied; check sensitivity, not accuracy alone"
            if model.config.class_weight == "balanced" and model.kind not in CLASS_WEIGHT_IGNORED
            else "consider class_weight='balanced' and a threshold chosen for sensitivity "
            "(threshold rule 'sensitivity'); accuracy alone is misleading"
        )
        out.append(
            f"Class imbalance: {minority!r} is only {shares.min():.0%} of the cases; {advice}."
        )
    if model.config.class_weight is not None and model.kind in CLASS_WEIGHT_IGNORED:
        out.append(
            f"The {model.kind} model has no class weights, so class_weight="
            f"{model.config.class_weight!r} was ignored; adjust the threshold instead."
        )
    return out
