"""Guards: plain-language warnings about leakage and what a clinical reader must know.

Near-perfect cross-validated scores, a single feature that separates the classes, test rows that
repeat development rows, near-identical rows without a patient ID, patients in both splits, class
imbalance, ignored class weights, and a test set that departs from development (calibration or
sensitivity/specificity, :func:`medimg_core.modelling.calibration.departure_warnings`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from medimg_core.errors import MedimgError
from medimg_core.modelling.calibration import departure_warnings
from medimg_core.modelling.evaluation import Evaluation
from medimg_core.modelling.models import CLASS_WEIGHT_IGNORED, MedimgModel, label_key
from medimg_core.modelling.selection import binary_roc_auc
from medimg_core.modelling.task import resolve_features
from medimg_core.modelling.validation import SplitSummary
from medimg_core.tables.roles import Roles

__all__ = [
    "guards",
    "identical_rows_across",
    "likely_repeated_rows",
    "repeated_patients_warning",
    "single_feature_aucs",
]


def identical_rows_across(
    X: pd.DataFrame, dev: np.ndarray, test: np.ndarray, y: np.ndarray | None = None
) -> tuple[int, int]:
    """Test rows whose feature values all equal those of some development row.

    Nothing is removed: a predefined test set stays whole, and the count is reported.

    Parameters
    ----------
    X : the features of every case.
    dev, test : positions of the development and test cases in ``X``.
    y : the labels (codes), to count the twins that disagree.

    Returns
    -------
    tuple of int
        ``(identical, opposite)``: test rows identical to a development row, and how many of
        them have a development twin with a different label (hard cases on both sides of the
        split; BreastMNIST has such a pixel-identical pair).
    """
    if not len(test) or not len(dev):
        return 0, 0
    hashes = pd.util.hash_pandas_object(X, index=False).to_numpy()
    repeated = np.isin(hashes[test], hashes[dev])
    if y is None or not repeated.any():
        return int(repeated.sum()), 0
    labels = np.asarray(y)
    dev_labels = pd.Series(labels[dev]).groupby(hashes[dev]).agg(frozenset).to_dict()
    opposite = sum(
        1
        for h, label in zip(hashes[test][repeated], labels[test][repeated], strict=True)
        if dev_labels[h] - {label}
    )
    return int(repeated.sum()), int(opposite)


_LOW_CARDINALITY = 20
"""A numeric column with at most this many distinct values is a score or code (1-10 cytology,
BI-RADS, counts): equal values between different patients are expected there."""

_TOLERANCE = 1e-3
"""Rows agree on a column when they differ by at most this share of its standard deviation."""

_WINDOW = 8
_PROJECTIONS = 3
_PAIR_CHUNK = 65_536
"""Rows compared with their neighbours at a time: bounds the temporaries to a few MB."""


def _near_pairs(Z: np.ndarray) -> np.ndarray:
    """Pairs of rows (i, j) of ``Z`` whose every column differs by at most ``_TOLERANCE``.

    Near-identical rows are close on any projection, so the rows are sorted along a few fixed
    random directions and each is compared with its next ``_WINDOW`` neighbours: n log n, not
    the n^2 of comparing every pair.
    """
    rng = np.random.default_rng(0)
    found: list[np.ndarray] = []
    n = len(Z)
    for _ in range(_PROJECTIONS):
        order = np.argsort(Z @ rng.standard_normal(Z.shape[1]), kind="stable")
        for offset in range(1, min(_WINDOW, n - 1) + 1):
            for start in range(0, n - offset, _PAIR_CHUNK):
                first = order[start : min(start + _PAIR_CHUNK, n - offset)]
                second = order[start + offset : start + offset + len(first)]
                close = np.abs(Z[first] - Z[second]).max(axis=1) <= _TOLERANCE
                if close.any():
                    found.append(np.sort(np.column_stack([first[close], second[close]]), axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def _chance_agreement(z: np.ndarray) -> float:
    """Share of all pairs of rows that agree on this (standardised) column."""
    v = np.sort(z)
    n = len(v)
    within = np.searchsorted(v, v + _TOLERANCE, side="right") - np.arange(1, n + 1)
    return float(within.sum()) / (n * (n - 1) / 2)


def likely_repeated_rows(X: pd.DataFrame, numeric: tuple[str, ...]) -> int:
    """Rows that look like another row of the same patient: a warning count without an ID.

    Only continuous columns are compared (more than ``_LOW_CARDINALITY`` distinct values):
    scores and codes are left out because different patients share them. Two rows are
    near-identical when every continuous value agrees within 0.1% of that column's standard
    deviation (two measurements of one lesion, two images of one patient, a row entered
    twice). Different patients agree like that only when it is likely by chance, so the count
    is returned only when the pairs found far exceed those expected from each column's own
    spread of values (an age-only table stays silent). About n log n in the rows.

    Returns
    -------
    int
        Rows beyond the first of each near-identical set (0 when nothing stands out).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(X)
    continuous = [
        c for c in numeric if c in X.columns and X[c].nunique(dropna=True) > _LOW_CARDINALITY
    ]
    # Filled column by column: one (rows x columns) array, no per-column copies kept beside it.
    Z = np.empty((n, len(continuous)))
    kept = 0
    for c in continuous:
        values = X[c].to_numpy(dtype=float)
        sd = np.nanstd(values)
        if np.isfinite(sd) and sd > 0:
            # A missing value agrees only with another missing value: far from every value.
            filled = np.where(np.isnan(values), np.nanmax(values) + 100 * sd, values)
            np.divide(filled, sd, out=Z[:, kept])
            kept += 1
    if not kept or n < 2:
        return 0
    Z = Z[:, :kept]
    pairs = _near_pairs(Z)
    if not len(pairs):
        return 0
    expected = n * (n - 1) / 2 * float(np.prod([_chance_agreement(z) for z in Z.T]))
    if len(pairs) < 10 * expected + 2:
        return 0
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    involved = np.unique(pairs)
    return int(len(involved) - np.unique(labels[involved]).size)


def single_feature_aucs(
    X: pd.DataFrame, y: np.ndarray, numeric: tuple[str, ...], rows: np.ndarray | None = None
) -> dict[str, float]:
    """ROC AUC of each numeric feature alone, on ``rows`` of ``X`` (every row by default;
    ``y`` holds the labels of those rows). One column is copied at a time, never the frame."""
    out: dict[str, float] = {}
    for col in numeric:
        values = X[col].to_numpy(dtype=float)
        if rows is not None:
            values = values[rows]
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
        for col, auc in single_feature_aucs(X, y[dev], model.numeric_columns, dev).items():
            if auc >= 0.99 or auc <= 0.01:
                out.append(
                    f"The feature {col!r} alone separates the classes (ROC AUC "
                    f"{max(auc, 1 - auc):.3f}): check it is a measurement and not derived from "
                    "the diagnosis; exclude it if it is."
                )
    if split.identical_rows_across:
        opposite = split.identical_rows_opposite_label
        against = (
            f" ({opposite} of them with the opposite label: hard cases, or a labelling error "
            "to check)"
            if opposite
            else ""
        )
        coarse = all(X[c].nunique(dropna=True) <= _LOW_CARDINALITY for c in X.columns)
        if split.grouped_by is None and coarse:
            out.append(
                f"{split.identical_rows_across} test row(s) have feature values identical to a "
                f"development row{against}. Every feature is a coarse score or code, so "
                "different patients often share every value and this need not be a leak; kept, "
                "not removed. If some of them are the same patient, give the rows a patient ID "
                "so the split keeps them together."
            )
        elif split.grouped_by is None:
            out.append(
                f"{split.identical_rows_across} test row(s) have feature values identical to a "
                f"development row{against}, so the test set partly repeats training data. They "
                "were kept, not removed; if they are the same patient, give the rows a patient "
                "ID so the split keeps them together."
            )
        else:
            # Grouped by patient: these are different patients who share every value, which
            # coarse scores make common; nothing leaks, but the reader should know.
            out.append(
                f"{split.identical_rows_across} test row(s) have feature values identical to a "
                f"development row of another patient{against}. The split is by patient "
                f"({split.grouped_by}), so no patient is on both sides; on coarse scores or "
                "codes different patients often share every value. Kept, not removed."
            )
    if split.grouped_by is None:
        repeats = likely_repeated_rows(X, model.numeric_columns)
        if repeats:
            out.append(_repeats_message(repeats))
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
    # The test set is scored once; when it behaves unlike development the reader must know.
    out.extend(departure_warnings(cv_eval, test_eval))
    return out


def _repeats_message(repeats: int) -> str:
    return (
        f"{repeats} row(s) are near-identical to another row (every measured value "
        "agrees within 0.1% of its spread), as when one patient is entered twice or has "
        "several images. Without a patient ID such rows can sit on both sides of a "
        "split and make the scores optimistic; declare the patient ID column (Data "
        "page, or --id on the command line) if the data have one."
    )


def repeated_patients_warning(data: pd.DataFrame, roles: Roles) -> str | None:
    """The near-identical-rows warning of :func:`guards`, before training: None with an ID.

    Shown on the Train page above the Train button and printed by ``medimg train`` before the
    models are fitted, so the user can declare the ID instead of reading the warning after.
    Feature problems (no features, free text) are left for training to report.
    """
    if roles.id:
        return None
    try:
        features = resolve_features(data, roles)
    except MedimgError:
        return None
    repeats = likely_repeated_rows(data.loc[:, list(features.columns)], features.numeric)
    return _repeats_message(repeats) if repeats else None
