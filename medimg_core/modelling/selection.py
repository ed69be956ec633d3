"""Model selection: cross-validating candidate pipelines on the same folds and choosing one.

Every fold's pipeline (imputer, scaler, PCA, model) is fitted on that fold's training rows only.
``auto`` ranks candidates by cross-validated ROC AUC with bootstrap intervals and keeps the
simplest one within one standard error of the best.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from threadpoolctl import threadpool_limits

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import MetricValue
from medimg_core.modelling.models import MODEL_KINDS, ModelConfig, build_pipeline
from medimg_core.modelling.task import FeatureSpec
from medimg_core.modelling.validation import Folds
from medimg_core.tables.cleaning import CleaningPlan

__all__ = [
    "SELECTION_FREE_METHOD",
    "SELECTION_FREE_NOTE",
    "Candidate",
    "Comparison",
    "Development",
    "LeaderboardRow",
    "binary_roc_auc",
    "bootstrap_auc_acc",
    "calibration_splits",
    "candidate_kinds",
    "choose_model",
    "comparison_config",
    "cross_validate",
    "cross_validate_candidates",
    "fit",
    "make_pipeline",
    "one_standard_error_choice",
    "roc_auc",
    "selection_free_auc",
]


_RF_COMPARISON_TREES = 100


_SIMPLICITY = ("logreg", "svm_linear", "knn", "svm", "rf", "hgb", "mlp")
"""``auto``'s preference among candidates that tie within one standard error, simplest first."""


def _simplicity_rank(kind: str) -> int:
    """Position of ``kind`` in ``_SIMPLICITY`` (unknown kinds last)."""
    return _SIMPLICITY.index(kind) if kind in _SIMPLICITY else 99


def _unit_codes(groups: np.ndarray | None, n: int) -> np.ndarray:
    """The bootstrap's resampled unit of each row: its patient when grouped, else the row."""
    if groups is None:
        return np.arange(n)
    codes, _ = pd.factorize(pd.Series(groups, dtype=object), use_na_sentinel=False)
    return codes


@dataclass(frozen=True)
class LeaderboardRow:
    """One ``auto`` candidate: its cross-validated ROC AUC with a 95% interval, fit time."""

    kind: str
    roc_auc: MetricValue
    accuracy: MetricValue
    fold_aucs: tuple[float, ...]
    seconds: float
    chosen: bool
    note: str = ""
    """What the reader must know about this row, e.g. that it was ranked as a lighter forest."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model": self.kind,
            "roc_auc": self.roc_auc.to_dict(),
            "accuracy": self.accuracy.to_dict(),
            "fold_aucs": list(self.fold_aucs),
            "seconds": round(self.seconds, 2),
            "chosen": self.chosen,
        }
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Candidate:
    """One kind cross-validated: out-of-fold probabilities (n_dev, k) and per-fold scores."""

    kind: str
    oof: np.ndarray
    fold_scores: tuple[float, ...]
    fold_aucs: tuple[float, ...]
    seconds: float


def candidate_kinds(config: ModelConfig, features: FeatureSpec) -> tuple[str, ...]:
    """The kinds to cross-validate: every kind in ``MODEL_KINDS`` for ``auto``, else the one asked.

    Raises
    ------
    ConfigError
        Hyper-parameters with ``auto``, or more PCA components than one-hot-encoded features.
    """
    if config.model == "auto" and config.params:
        raise ConfigError(
            f"Hyper-parameters {sorted(config.params)} need one model kind, not 'auto'; choose "
            f"a model from {list(MODEL_KINDS)} or clear the parameters."
        )
    if config.pca is not None:
        width = features.width
        if config.pca > width:
            raise ConfigError(
                f"PCA with {config.pca} components needs at least {config.pca} features; the "
                f"data have {width} after one-hot encoding. Choose at most {width} components."
            )
    return MODEL_KINDS if config.model == "auto" else (config.model,)


def comparison_config(config: ModelConfig, kind: str) -> ModelConfig:
    """The configuration ``auto`` cross-validates ``kind`` with.

    The random forest is compared with 100 trees instead of 300 (its ranking barely moves and
    it is the slowest candidate); when it wins, it is cross-validated again and refitted with
    the full 300 trees, so the reported scores are those of the deployed model.
    """
    concrete = replace(config, model=kind)  # type: ignore[arg-type]
    if config.model == "auto" and kind == "rf":
        return replace(concrete, params={"n_estimators": _RF_COMPARISON_TREES})
    return concrete


def one_standard_error_choice(
    scored: list[tuple[Candidate, tuple[MetricValue, MetricValue]]],
) -> Candidate:
    """The simplest candidate whose CV ROC AUC is within one standard error of the best.

    Differences smaller than the fold-to-fold noise do not justify a more complex model (the
    "one-standard-error rule", Hastie, Tibshirani & Friedman, ESL 7.10); the standard error is
    that of the best candidate's per-fold AUCs.
    """
    top = scored[0][0]
    top_auc = scored[0][1][0].value
    fold = np.asarray([a for a in top.fold_aucs if np.isfinite(a)])
    if not np.isfinite(top_auc) or fold.size < 2:
        return top
    tolerance = float(fold.std(ddof=1) / np.sqrt(fold.size))
    tied = [
        c for c, (auc, _) in scored if np.isfinite(auc.value) and auc.value >= top_auc - tolerance
    ]
    return min(tied, key=lambda c: _simplicity_rank(c.kind))


def make_pipeline(
    config: ModelConfig, features: FeatureSpec, plan: CleaningPlan, n_train: int
) -> Any:
    """An unfitted pipeline for ``config`` (kNN's neighbours capped at the training rows)."""
    pipeline = build_pipeline(
        config,
        list(features.numeric),
        list(features.categorical),
        impute_strategy=plan.impute_strategy,
    )
    # kNN cannot ask for more neighbours than there are training rows (tiny data sets).
    if config.model == "knn" and "n_neighbors" not in config.params:
        neighbours = pipeline.named_steps["model"].n_neighbors
        pipeline.set_params(model__n_neighbors=max(1, min(neighbours, n_train)))
    return pipeline


def calibration_splits(
    y: np.ndarray, groups: np.ndarray, n_splits: int
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Folds for the SVMs' internal probability calibration that never split a patient.

    Stratified by class when every class has at least ``n_splits`` patients
    (``StratifiedGroupKFold``), else plain ``GroupKFold``; fewer folds when there are fewer
    patients. None when there are fewer than two patients (nothing to group).
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    codes = _unit_codes(groups, len(groups))
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    k = min(int(n_splits), n_groups)
    if k < 2:
        return None
    patients_per_class = [np.unique(codes[y == c]).size for c in np.unique(y)]
    splitter: Any = (
        StratifiedGroupKFold(n_splits=k) if min(patients_per_class) >= k else GroupKFold(n_splits=k)
    )
    return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y, codes)]


def fit(pipeline: Any, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> None:
    """Fit with native thread pools limited to one thread; calibration folds by patient.

    When the final step calibrates its probabilities by internal cross-validation (the SVMs'
    ``CalibratedClassifierCV``) and ``groups`` names each row's patient, its folds are
    computed by :func:`calibration_splits` so one patient's rows are never on both sides,
    and the integer fold count is restored afterwards (the saved model keeps no row indices).
    """
    model = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else None
    splits = None
    folds: Any = None
    if groups is not None and isinstance(model, CalibratedClassifierCV):
        folds = model.cv
        if isinstance(folds, int):
            splits = calibration_splits(np.asarray(y), np.asarray(groups), folds)
    # One thread per native pool (OpenMP, BLAS): histogram gradient boosting and the MLP
    # otherwise start a thread per core, and on a busy machine the oversubscription makes
    # them many times slower than serial. The folds are small; serial is fast enough.
    with threadpool_limits(limits=1):
        if splits is None or model is None:
            pipeline.fit(X, y)
            return
        model.set_params(cv=splits)
        try:
            pipeline.fit(X, y)
        finally:
            model.set_params(cv=folds)


@dataclass(frozen=True)
class Development:
    """What every candidate is cross-validated on: the same rows, folds and preprocessing.

    Attributes
    ----------
    X, y : prepared features and encoded labels of every row (test rows included, never used).
    dev : positions of the development rows in ``X`` and ``y``.
    folds : (training, validation) positions into the development rows.
    features : the typed feature columns the pipelines preprocess.
    plan : the cleaning plan (its imputation strategy).
    groups : patient IDs of every row (aligned with ``X``), or None without an ID column;
        the SVMs' internal calibration folds are then grouped by patient.
    """

    X: pd.DataFrame
    y: np.ndarray
    dev: np.ndarray
    folds: Folds
    features: FeatureSpec
    plan: CleaningPlan
    groups: np.ndarray | None = None


def cross_validate(
    config: ModelConfig,
    development: Development,
    fold_done: Callable[[int], None] | None = None,
) -> Candidate:
    """Out-of-fold probabilities: every fold's pipeline (imputer, scaler, PCA, model) is fitted
    on that fold's training rows only."""
    started = time.perf_counter()
    X, y, dev, folds = development.X, development.y, development.dev, development.folds
    X_dev = X.iloc[dev]
    y_dev = y[dev]
    groups_dev = development.groups[dev] if development.groups is not None else None
    k = int(y.max()) + 1
    oof = np.zeros((len(dev), k))
    fold_scores: list[float] = []
    fold_aucs: list[float] = []
    for f, (tr, va) in enumerate(folds, start=1):
        pipeline = make_pipeline(config, development.features, development.plan, len(tr))
        fit(pipeline, X_dev.iloc[tr], y_dev[tr], None if groups_dev is None else groups_dev[tr])
        proba = np.asarray(pipeline.predict_proba(X_dev.iloc[va]), dtype=float)
        oof[va] = proba
        auc = roc_auc(y_dev[va], proba)
        fold_aucs.append(auc)
        fold_scores.append(auc if k == 2 else float(np.mean(proba.argmax(axis=1) == y_dev[va])))
        if fold_done is not None:
            fold_done(f)
    return Candidate(
        kind=str(config.model),
        oof=oof,
        fold_scores=tuple(fold_scores),
        fold_aucs=tuple(fold_aucs),
        seconds=time.perf_counter() - started,
    )


def _weighted_binary_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney, ties count one half) for each row of ``weights`` (r, n).

    A bootstrap replicate is the data with each row weighted by how often it was drawn, so all
    replicates are computed at once from one sort of the scores.
    """
    order = np.argsort(score, kind="mergesort")
    sorted_score = score[order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    w = weights[:, order]
    positive = y[order] == 1
    pos = np.add.reduceat(w * positive, starts, axis=1)
    neg = np.add.reduceat(w * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _weighted_auc(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC per weight row; macro one-vs-rest over classes for multi-class (as sklearn)."""
    if proba.shape[1] == 2:
        return _weighted_binary_auc(y, proba[:, 1], weights)
    per_class = np.stack(
        [
            _weighted_binary_auc((y == j).astype(int), proba[:, j], weights)
            for j in range(proba.shape[1])
        ]
    )
    finite = np.isfinite(per_class)
    total = np.where(finite, per_class, 0.0).sum(axis=0)
    count = finite.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def binary_roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(_weighted_binary_auc(y, score, np.ones((1, len(y))))[0])


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC; macro one-vs-rest over the classes for multi-class."""
    return float(_weighted_auc(y, proba, np.ones((1, len(y))))[0])


def bootstrap_auc_acc(
    y: np.ndarray, proba: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int
) -> tuple[MetricValue, MetricValue]:
    """Leaderboard metrics with percentile 95% intervals (patients resampled when grouped).

    Replicates are row weights (how often each row, or each patient's rows, was drawn), which
    keeps ``auto`` fast: seven candidates times ``n_boot`` replicates. Replicates with a
    single class are skipped, as in :func:`medimg_core.modelling.evaluation.evaluate_scores`.
    """
    correct = (proba.argmax(axis=1) == y).astype(float)
    point_auc = roc_auc(y, proba)
    point_acc = float(correct.mean())
    if n_boot <= 0:
        nan = (float("nan"), float("nan"))
        return MetricValue(point_auc, nan), MetricValue(point_acc, nan)
    rng = np.random.default_rng(seed)
    codes = _unit_codes(groups, len(y))
    n_units = int(codes.max()) + 1
    drawn = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot)
    weights = drawn[:, codes].astype(float)
    has_both = np.stack([(weights[:, y == j] > 0).any(axis=1) for j in np.unique(y)]).sum(axis=0)
    weights = weights[has_both >= 2]
    aucs = _weighted_auc(y, proba, weights)
    accs = (weights * correct).sum(axis=1) / weights.sum(axis=1)

    def interval(values: np.ndarray) -> tuple[float, float]:
        finite = values[np.isfinite(values)]
        if not finite.size:
            return (float("nan"), float("nan"))
        lo, hi = np.percentile(finite, [2.5, 97.5])
        return (float(lo), float(hi))

    return MetricValue(point_auc, interval(aucs)), MetricValue(point_acc, interval(accs))


@dataclass(frozen=True)
class Comparison:
    """Every candidate that could be cross-validated on the shared folds, and why others could not."""

    candidates: tuple[Candidate, ...]
    failures: tuple[str, ...] = ()


def cross_validate_candidates(
    kinds: tuple[str, ...],
    config: ModelConfig,
    development: Development,
    progress: Callable[[int, str], None] | None = None,
) -> Comparison:
    """Cross-validate each kind on the same folds of the development rows.

    Parameters
    ----------
    kinds : from :func:`candidate_kinds`.
    config : the user's configuration; each kind runs with :func:`comparison_config`.
    development : the rows, folds and preprocessing every kind shares.
    progress : ``progress(folds_done, message)``, ``folds_done`` counted over all kinds.

    Returns
    -------
    Comparison

    Raises
    ------
    ValueError
        When the only kind asked for cannot be fitted (scikit-learn's message).
    DataError
        When no candidate could be fitted; the message lists why for each.
    """
    report = progress or (lambda done, message: None)
    candidates: list[Candidate] = []
    failures: list[str] = []
    n_folds = len(development.folds)
    for i, kind in enumerate(kinds):

        def fold_done(f: int, kind: str = kind, i: int = i) -> None:
            report(
                i * n_folds + f,
                f"{kind}: fold {f} of {n_folds} done"
                + (f" (model {i + 1} of {len(kinds)})" if len(kinds) > 1 else ""),
            )

        try:
            candidates.append(
                cross_validate(comparison_config(config, kind), development, fold_done)
            )
        except ValueError as exc:
            if len(kinds) == 1:
                raise
            failures.append(f"Model {kind!r} was left out of the comparison: {exc}")
    if not candidates:
        raise DataError(" ".join(failures))
    return Comparison(tuple(candidates), tuple(failures))


def choose_model(
    comparison: Comparison,
    y_dev: np.ndarray,
    groups_dev: np.ndarray | None,
    *,
    config: ModelConfig,
    n_boot: int,
) -> tuple[Candidate, tuple[LeaderboardRow, ...]]:
    """Rank the candidates by cross-validated ROC AUC and pick one (one-standard-error rule).

    Returns
    -------
    (Candidate, tuple of LeaderboardRow)
        The chosen candidate, and the leaderboard (best first) when ``config.model`` is
        ``auto`` (empty otherwise).
    """
    scored = [
        (c, bootstrap_auc_acc(y_dev, c.oof, groups_dev, n_boot, config.seed))
        for c in comparison.candidates
    ]
    scored.sort(key=lambda cs: -np.nan_to_num(cs[1][0].value, nan=-1.0))
    best = one_standard_error_choice(scored)
    if config.model != "auto":
        return best, ()
    leaderboard = tuple(
        LeaderboardRow(
            kind=c.kind,
            roc_auc=auc,
            accuracy=acc,
            fold_aucs=c.fold_aucs,
            seconds=c.seconds,
            chosen=c is best,
        )
        for c, (auc, acc) in scored
    )
    return best, leaderboard


SELECTION_FREE_METHOD = "bootstrap bias-corrected cross-validation (BBC-CV)"
"""How :func:`selection_free_auc` estimates the AUC of ``auto``'s whole selection procedure."""

SELECTION_FREE_NOTE = (
    "The selection-free ROC AUC is the honest estimate for 'compare the models and keep one': "
    "the choice was repeated on resampled development cases and scored on the cases left out "
    "(bootstrap bias-corrected cross-validation, no model refitted). The chosen model's own "
    "cross-validated ROC AUC is optimistic, because that model was chosen for scoring best on "
    "those same folds."
)
"""Plain-language note shown wherever the selection-free figure is (page, CLI, model card)."""

# Bounds the (replicates x rows) weight matrices of one BBC-CV chunk to about 16 MB of float64.
_BBC_CHUNK_CELLS = 2_000_000


def selection_free_auc(
    comparison: Comparison,
    y_dev: np.ndarray,
    groups_dev: np.ndarray | None,
    folds: Folds,
    *,
    n_boot: int,
    seed: int,
) -> MetricValue:
    """The cross-validated ROC AUC of "compare the candidates, keep one", free of selection bias.

    The chosen candidate's own CV AUC is optimistic: it was picked because it scored best on
    those very folds (on data with no signal at all, the best of seven averages about 0.55).
    Bootstrap Bias Corrected CV (BBC-CV; Tsamardinos, Greasidou & Borboudakis, Machine
    Learning 107, 2018) removes that bias without fitting any model again: the development
    units (patients when ``groups_dev`` is given, else rows) are resampled; on the in-bag
    units a candidate is chosen from the out-of-fold predictions with the same rule as
    :func:`choose_model` (highest in-bag AUC, then the simplest candidate within one standard
    error of it, the standard error taken over the in-bag AUCs of the top candidate per fold);
    the chosen candidate is scored on the out-of-bag units, which played no part in the choice.

    Parameters
    ----------
    comparison : the candidates with their out-of-fold probabilities on the development rows.
    y_dev : encoded labels of the development rows.
    groups_dev : patient IDs of the development rows, or None.
    folds : the (training, validation) positions the candidates were cross-validated on.
    n_boot : bootstrap replicates (0 gives NaN).
    seed : seed of the bootstrap.

    Returns
    -------
    MetricValue
        The mean out-of-bag AUC of the selected candidates, with the 2.5th and 97.5th
        percentiles over the replicates as its 95% interval (somewhat wide: each out-of-bag
        sample holds about 37% of the units). Replicates whose out-of-bag units lack a class
        are skipped.
    """
    nan = float("nan")
    candidates = comparison.candidates
    y = np.asarray(y_dev)
    n = len(y)
    if n_boot <= 0 or not candidates or n == 0:
        return MetricValue(nan, (nan, nan), method=SELECTION_FREE_METHOD)
    codes = _unit_codes(groups_dev, n)
    n_units = int(codes.max()) + 1
    validation = [np.asarray(va) for _, va in folds]
    simplicity = np.asarray([_simplicity_rank(c.kind) for c in candidates])
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BBC_CHUNK_CELLS // max(n, n_units))
    out: list[np.ndarray] = []
    for start in range(0, n_boot, chunk):
        r = min(chunk, n_boot - start)
        drawn = rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=r)
        in_bag = drawn[:, codes].astype(float)
        out_bag = (drawn[:, codes] == 0).astype(float)
        # In-bag AUC of every candidate; per fold only for each replicate's top candidate
        # (the rule needs no other), and out-of-bag only for the chosen one.
        pooled = np.column_stack([_weighted_auc(y, c.oof, in_bag) for c in candidates])
        ranked = np.nan_to_num(pooled, nan=-1.0)
        top = ranked.argmax(axis=1)
        top_auc = ranked[np.arange(r), top]
        top_folds = np.full((len(validation), r), np.nan)
        for j, c in enumerate(candidates):
            rows = np.flatnonzero(top == j)
            if rows.size:
                for f, va in enumerate(validation):
                    top_folds[f, rows] = _weighted_auc(y[va], c.oof[va], in_bag[rows][:, va])
        finite = np.isfinite(top_folds)
        count = finite.sum(axis=0)
        mean = np.where(finite, top_folds, 0.0).sum(axis=0) / np.maximum(count, 1)
        var = (np.where(finite, top_folds - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count - 1, 1)
        tolerance = np.sqrt(var / np.maximum(count, 1))
        tied = ranked >= (top_auc - tolerance)[:, None]
        tied &= np.isfinite(pooled) & (count >= 2)[:, None]
        tied[np.arange(r), top] = True
        # The simplest tied candidate (as one_standard_error_choice; the top one on no tie).
        chosen = np.where(tied, simplicity[None, :], 10_000).argmin(axis=1)
        value = np.full(r, np.nan)
        for j, c in enumerate(candidates):
            rows = np.flatnonzero(chosen == j)
            if rows.size:
                value[rows] = _weighted_auc(y, c.oof, out_bag[rows])
        both = np.stack([(out_bag[:, y == j] > 0).any(axis=1) for j in classes]).all(axis=0)
        out.append(value[both & np.isfinite(value)])
    values = np.concatenate(out) if out else np.empty(0)
    if not values.size:
        return MetricValue(nan, (nan, nan), method=SELECTION_FREE_METHOD)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return MetricValue(float(values.mean()), (float(lo), float(hi)), method=SELECTION_FREE_METHOD)
