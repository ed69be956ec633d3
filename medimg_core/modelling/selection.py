"""Model selection: cross-validating candidate pipelines on the same folds and choosing one.

Every fold's pipeline (imputer, scaler, PCA, model) is fitted on that fold's training rows only.
``auto`` ranks candidates by cross-validated ROC AUC with bootstrap intervals and keeps the
simplest one within one standard error of the best.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from threadpoolctl import threadpool_limits

from medimg_core import compute
from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import (
    MetricValue,
    _block_rng,
    _boot_blocks,
    _boot_weights,
    _Ranking,
    _ranking,
    _roc_auc,
    _sub_chunks,
    _unit_draws,
)
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
    "FoldFit",
    "FoldTask",
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
    "fit_fold",
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

    Stratified by class when every class has at least ``n_splits`` patients, else plain
    ``GroupKFold``; fewer folds when there are fewer patients. None when there are fewer than
    two patients (nothing to group).

    When every patient's rows share one label (the usual case), the patients themselves are
    stratified, one row each, by ``StratifiedKFold`` (unshuffled, as the calibration's own
    ``cv=5``) and the folds mapped back to rows: vectorised, where ``StratifiedGroupKFold``
    loops in Python once per patient (seconds for a few hundred patients). With one row per
    patient these are exactly the folds the SVMs calibrate on without an ID column. Patients
    with mixed labels keep ``StratifiedGroupKFold``'s row-level balancing.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

    codes = _unit_codes(groups, len(groups))
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    k = min(int(n_splits), n_groups)
    if k < 2:
        return None
    y = np.asarray(y)
    classes, y_codes = np.unique(y, return_inverse=True)
    pairs = np.unique(codes * len(classes) + y_codes)
    patients_per_class = np.bincount(pairs % len(classes), minlength=len(classes))
    if patients_per_class.min() < k:
        splitter: Any = GroupKFold(n_splits=k)
    elif pairs.size == n_groups:
        # One label per patient: stratify the patients (in order of first appearance).
        label = np.empty(n_groups, dtype=y_codes.dtype)
        label[codes] = y_codes
        fold_of_patient = np.empty(n_groups, dtype=np.int64)
        for f, (_, va) in enumerate(StratifiedKFold(n_splits=k).split(label, label)):
            fold_of_patient[va] = f
        fold = fold_of_patient[codes]
        return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]
    else:
        splitter = StratifiedGroupKFold(n_splits=k)
    return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y, codes)]


def fit(pipeline: Any, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None = None) -> None:
    """Fit with native thread pools limited to one thread; calibration folds by patient.

    When the final step calibrates its probabilities by internal cross-validation (the SVMs'
    ``CalibratedClassifierCV``) and ``groups`` names each row's patient, its folds are
    computed by :func:`calibration_splits` so one patient's rows are never on both sides,
    and the integer fold count is restored afterwards (the saved model keeps no row indices).
    """
    # One thread per native pool (OpenMP, BLAS): histogram gradient boosting and the MLP
    # otherwise start a thread per core, and on a busy machine the oversubscription makes
    # them many times slower than serial. The folds are small; serial is fast enough. It also
    # makes a fit here compute exactly what it computes on a one-thread Dask worker.
    with threadpool_limits(limits=1):
        _fit(pipeline, X, y, groups)


def _fit(pipeline: Any, X: pd.DataFrame, y: np.ndarray, groups: np.ndarray | None) -> None:
    """:func:`fit` without the thread limit, which the caller holds."""
    model = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else None
    splits = None
    folds: Any = None
    if groups is not None and isinstance(model, CalibratedClassifierCV):
        folds = model.cv
        if isinstance(folds, int):
            splits = calibration_splits(np.asarray(y), np.asarray(groups), folds)
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


@dataclass(frozen=True)
class FoldTask:
    """One cross-validation fit: a candidate's configuration on one fold.

    Attributes
    ----------
    config : the candidate's configuration.
    fold : the fold's number, from 1.
    train, validation : positions into the development rows.
    """

    config: ModelConfig
    fold: int
    train: np.ndarray
    validation: np.ndarray


@dataclass(frozen=True)
class FoldFit:
    """What one :class:`FoldTask` gave: the validation rows' probabilities and the fold's scores,
    or the reason the candidate could not be fitted on that fold (``error``, with no scores)."""

    proba: np.ndarray | None
    auc: float
    score: float
    seconds: float
    error: ValueError | None = None


def fit_fold(
    task: FoldTask,
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray | None,
    features: FeatureSpec,
    plan: CleaningPlan,
    n_classes: int,
) -> FoldFit:
    """Fit the task's pipeline on its fold's training rows and predict its validation rows.

    One task of :func:`cross_validate_candidates`, run wherever the engine in force runs tasks
    (this process or a Dask worker); the pipeline (imputer, scaler, PCA, model) sees the
    training rows only. A candidate that cannot be fitted (scikit-learn's ``ValueError``) is
    returned as ``error``, not raised, so the other candidates' tasks are kept.

    Parameters
    ----------
    task : the configuration and the fold's positions.
    X, y, groups : features, encoded labels and patient IDs (or None) of the development rows.
    features, plan : the feature columns and the cleaning plan the pipeline is built from.
    n_classes : the number of encoded classes (columns of the probabilities).
    """
    started = time.perf_counter()
    tr, va = task.train, task.validation
    try:
        # Predicting too under one thread: a BLAS product may sum in another order with
        # several threads, and the probabilities must not depend on where the task ran.
        with threadpool_limits(limits=1):
            pipeline = make_pipeline(task.config, features, plan, len(tr))
            _fit(pipeline, X.iloc[tr], y[tr], None if groups is None else groups[tr])
            proba = np.asarray(pipeline.predict_proba(X.iloc[va]), dtype=float)
        if proba.shape != (len(va), n_classes):
            raise ValueError(
                f"the training rows of fold {task.fold} hold {proba.shape[-1]} of the "
                f"{n_classes} classes"
            )
        auc = roc_auc(y[va], proba)
    except ValueError as exc:
        nan = float("nan")
        return FoldFit(None, nan, nan, time.perf_counter() - started, error=exc)
    score = auc if n_classes == 2 else float(np.mean(proba.argmax(axis=1) == y[va]))
    return FoldFit(proba, auc, score, time.perf_counter() - started)


def _fit_workers() -> int:
    """Local processes for the cross-validation fits: every core when a pool can fork.

    Like scikit-learn's ``cross_validate(n_jobs=-1)``, the fits then use every core; each fit
    is single-threaded (:func:`fit_fold`), so the results are exactly those of a serial run.
    A forked worker starts at once with the inputs inherited; where a pool cannot fork (a
    threaded host such as the dashboard, whose long runs go to the job layer's workers) the
    fits stay in this process, as before. On a cluster the cluster's workers run them.
    """
    return compute.default_workers() if compute.pool_forks() else 1


POOL_MIN_CELL_FITS = 250_000
"""Development cells (rows x features) times fits below which the fits run in this process.

Starting a pool and collecting its results costs about a tenth of a second; a handful of fits
on a small table take less than that. The built-in sample's ``auto`` comparison (455 rows x 30
features x 35 fits, about 480,000) goes to the pool; one model on it (5 fits) does not."""


def _cross_validate_each(
    configs: Sequence[ModelConfig],
    development: Development,
    fold_done: Callable[[int, int, FoldFit], None] | None = None,
) -> list[Candidate | ValueError]:
    """Every (configuration x fold) fit as one task on the engine in force.

    Returns, in the order of ``configs``, each one's :class:`Candidate`, or the ``ValueError``
    of its first fold (in fold order) that could not be fitted. ``fold_done(config index, fold,
    fit)`` is called as each task finishes (in completion order).
    """
    X, y, dev, folds = development.X, development.y, development.dev, development.folds
    tasks = [
        FoldTask(config, f, np.asarray(tr), np.asarray(va))
        for config in configs
        for f, (tr, va) in enumerate(folds, start=1)
    ]
    k = int(y.max()) + 1
    # Only the development rows go to the tasks: the test rows never leave this process.
    shared = {
        "X": X.iloc[dev],
        "y": y[dev],
        "groups": development.groups[dev] if development.groups is not None else None,
        "features": development.features,
        "plan": development.plan,
        "n_classes": k,
    }
    n_folds = len(folds)

    def finished(i: int, fold_fit: FoldFit) -> None:
        if fold_done is not None:
            fold_done(i // n_folds, tasks[i].fold, fold_fit)

    fits = compute.current().map(
        fit_fold,
        tasks,
        shared=shared,
        name="medimg-cv-fit",
        on_result=finished,
        workers=_fit_workers() if len(dev) * X.shape[1] * len(tasks) >= POOL_MIN_CELL_FITS else 1,
    )
    out: list[Candidate | ValueError] = []
    for c, config in enumerate(configs):
        mine = [(tasks[i], fits[i]) for i in range(c * n_folds, (c + 1) * n_folds)]
        error = next((f.error for _, f in mine if f.error is not None), None)
        if error is not None:
            out.append(error)
            continue
        oof = np.zeros((len(dev), k))
        for task, f in mine:
            oof[task.validation] = f.proba
        out.append(
            Candidate(
                kind=str(config.model),
                oof=oof,
                fold_scores=tuple(f.score for _, f in mine),
                fold_aucs=tuple(f.auc for _, f in mine),
                seconds=sum(f.seconds for _, f in mine),
            )
        )
    return out


def cross_validate(
    config: ModelConfig,
    development: Development,
    fold_done: Callable[[int], None] | None = None,
) -> Candidate:
    """Out-of-fold probabilities: every fold's pipeline (imputer, scaler, PCA, model) is fitted
    on that fold's training rows only, each fold as a task (:func:`fit_fold`).

    ``fold_done(fold)`` is called as each fold finishes. ``Candidate.seconds`` is the summed
    fitting time of the folds.

    Raises
    ------
    ValueError
        When a fold cannot be fitted (scikit-learn's message).
    """

    def done(c: int, fold: int, fold_fit: FoldFit) -> None:
        if fold_done is not None:
            fold_done(fold)

    (result,) = _cross_validate_each([config], development, done)
    if isinstance(result, ValueError):
        raise result
    return result


def _weighted_binary_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney, ties count one half) for each row of ``weights`` (r, n).

    A bootstrap replicate is the data with each row weighted by how often it was drawn, so all
    replicates are computed at once from one sort of the scores (the evaluation's kernel).
    """
    return _roc_auc(weights, _ranking(y, score))


def _auc_rankings(y: np.ndarray, proba: np.ndarray) -> list[_Ranking]:
    """The ranking :func:`_macro_auc` needs: the positive class's, or one per class (one-vs-rest)."""
    if proba.shape[1] == 2:
        return [_ranking(y, proba[:, 1])]
    return [_ranking((y == j).astype(int), proba[:, j]) for j in range(proba.shape[1])]


def _macro_auc(weights: np.ndarray, rankings: Sequence[_Ranking]) -> np.ndarray:
    """ROC AUC per weight row; the mean over classes with a defined AUC for multi-class."""
    if len(rankings) == 1:
        return _roc_auc(weights, rankings[0])
    per_class = np.stack([_roc_auc(weights, rk) for rk in rankings])
    finite = np.isfinite(per_class)
    total = np.where(finite, per_class, 0.0).sum(axis=0)
    count = finite.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _weighted_auc(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC per weight row; macro one-vs-rest over classes for multi-class (as sklearn)."""
    return _macro_auc(weights, _auc_rankings(y, proba))


def _class_layout(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An order of the rows by class, then by the last class's probability, and where each
    class starts in it. Bootstrap weights are exchangeable across rows; in this order the
    binary ranking selects contiguous runs (no gather per replicate) and a replicate's rows
    of each class are one ``reduceat`` away."""
    order = np.lexsort((proba[:, -1], y))
    y_sorted = y[order]
    return order, np.flatnonzero(np.r_[True, y_sorted[1:] != y_sorted[:-1]])


def binary_roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(_weighted_binary_auc(y, score, np.ones((1, len(y))))[0])


def roc_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC; macro one-vs-rest over the classes for multi-class."""
    return float(_weighted_auc(y, proba, np.ones((1, len(y))))[0])


def _auc_acc_block(
    item: tuple[int, int, int],
    *,
    y: np.ndarray,
    probas: tuple[np.ndarray, ...],
    codes: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One bootstrap task of :func:`bootstrap_auc_acc`: for ``(candidate, block number,
    replicates)``, the candidate's AUC and accuracy in each replicate of the block that kept two
    classes. The block draws from its own generator, seeded by ``(seed, block number)``, so the
    replicates are the same wherever the block runs (and the same for every candidate)."""
    candidate, number, n_rep = item
    order, starts = _class_layout(y, probas[candidate])
    y, proba, codes = y[order], probas[candidate][order], codes[order]
    rng = _block_rng(seed, number)
    n_units = int(codes.max()) + 1
    correct = (proba.argmax(axis=1) == y).astype(float)
    rankings = _auc_rankings(y, proba)
    aucs: list[np.ndarray] = []
    accs: list[np.ndarray] = []
    for size in _sub_chunks(n_rep, max(len(y), n_units)):
        weights = _boot_weights(rng, size, len(y), codes, n_units)
        per_class = np.add.reduceat(weights, starts, axis=1)
        weights = weights[(per_class > 0).sum(axis=1) >= 2]
        aucs.append(_macro_auc(weights, rankings))
        accs.append(np.einsum("ij,j->i", weights, correct) / weights.sum(axis=1))
    return np.concatenate(aucs), np.concatenate(accs)


def bootstrap_auc_acc(
    y: np.ndarray, proba: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int
) -> tuple[MetricValue, MetricValue]:
    """Leaderboard metrics with percentile 95% intervals (patients resampled when grouped).

    Replicates are row weights (how often each row, or each patient's rows, was drawn), which
    keeps ``auto`` fast: seven candidates times ``n_boot`` replicates. Replicates with a
    single class are skipped, as in :func:`medimg_core.modelling.evaluation.evaluate_scores`.
    The replicates run in fixed blocks, as tasks on the engine in force, each block with its
    own random stream: the intervals do not depend on where the blocks ran.
    """
    return _bootstrap_auc_acc_each(y, [proba], groups, n_boot, seed)[0]


def _bootstrap_auc_acc_each(
    y: np.ndarray,
    probas: Sequence[np.ndarray],
    groups: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> list[tuple[MetricValue, MetricValue]]:
    """:func:`bootstrap_auc_acc` of several candidates' probabilities in one set of tasks."""
    corrects = [(proba.argmax(axis=1) == y).astype(float) for proba in probas]
    points = [(roc_auc(y, p), float(c.mean())) for p, c in zip(probas, corrects, strict=True)]
    nan = (float("nan"), float("nan"))
    if n_boot <= 0:
        return [(MetricValue(auc, nan), MetricValue(acc, nan)) for auc, acc in points]
    blocks = _boot_blocks(n_boot)
    results = compute.current().map(
        _auc_acc_block,
        [(c, number, n_rep) for c in range(len(probas)) for number, n_rep in blocks],
        shared={
            "y": y,
            "probas": tuple(probas),
            "codes": _unit_codes(groups, len(y)),
            "seed": seed,
        },
        name="medimg-bootstrap-auc",
    )

    def interval(values: np.ndarray) -> tuple[float, float]:
        finite = values[np.isfinite(values)]
        if not finite.size:
            return nan
        lo, hi = np.percentile(finite, [2.5, 97.5])
        return (float(lo), float(hi))

    out = []
    for c, (auc, acc) in enumerate(points):
        mine = results[c * len(blocks) : (c + 1) * len(blocks)]
        aucs = np.concatenate([a for a, _ in mine])
        accs = np.concatenate([a for _, a in mine])
        out.append((MetricValue(auc, interval(aucs)), MetricValue(acc, interval(accs))))
    return out


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

    Every (kind x fold) fit is one task (:func:`fit_fold`) on the engine in force
    (:func:`medimg_core.compute.current`); the results are assembled in kind and fold order,
    so the candidates, their scores and the failures do not depend on where the tasks ran.

    Parameters
    ----------
    kinds : from :func:`candidate_kinds`.
    config : the user's configuration; each kind runs with :func:`comparison_config`.
    development : the rows, folds and preprocessing every kind shares.
    progress : ``progress(folds_done, message)`` as each fit finishes, ``folds_done`` counted
        over all kinds (a fold that could not be fitted counts as done).

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
    n_folds = len(development.folds)
    finished = 0

    def fold_done(i: int, f: int, fold_fit: FoldFit) -> None:
        nonlocal finished
        finished += 1
        outcome = "done" if fold_fit.error is None else "could not be fitted"
        report(
            finished,
            f"{kinds[i]}: fold {f} of {n_folds} {outcome}"
            + (f" (model {i + 1} of {len(kinds)})" if len(kinds) > 1 else ""),
        )

    results = _cross_validate_each(
        [comparison_config(config, kind) for kind in kinds], development, fold_done
    )
    candidates: list[Candidate] = []
    failures: list[str] = []
    for kind, result in zip(kinds, results, strict=True):
        if isinstance(result, Candidate):
            candidates.append(result)
        elif len(kinds) == 1:
            raise result
        else:
            failures.append(f"Model {kind!r} was left out of the comparison: {result}")
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
    intervals = _bootstrap_auc_acc_each(
        y_dev, [c.oof for c in comparison.candidates], groups_dev, n_boot, config.seed
    )
    scored = list(zip(comparison.candidates, intervals, strict=True))
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


def _selection_free_block(
    block: tuple[int, int],
    *,
    y: np.ndarray,
    oofs: tuple[np.ndarray, ...],
    simplicity: np.ndarray,
    codes: np.ndarray,
    validation: tuple[np.ndarray, ...],
    seed: int,
) -> np.ndarray:
    """One bootstrap task of :func:`selection_free_auc`: the out-of-bag AUC of the candidate
    chosen in each replicate of the block (replicates whose out-of-bag units lack a class are
    left out). The block draws from its own generator, seeded by ``(seed, block number)``."""
    number, n_rep = block
    rng = _block_rng(seed, number)
    n_units = int(codes.max()) + 1
    classes = np.unique(y)
    # Each candidate's rankings, pooled and per validation fold, sorted once per block.
    pooled_rk = [_auc_rankings(y, oof) for oof in oofs]
    fold_rk = [[_auc_rankings(y[va], oof[va]) for va in validation] for oof in oofs]
    out: list[np.ndarray] = []
    # In pieces whose in-bag and out-of-bag weight matrices hold about 16 MB of float64 each.
    for r in _sub_chunks(n_rep, max(len(y), n_units)):
        drawn = _unit_draws(rng, r, n_units)
        in_bag = drawn[:, codes].astype(float)
        out_bag = (drawn[:, codes] == 0).astype(float)
        # In-bag AUC of every candidate; per fold only for each replicate's top candidate
        # (the rule needs no other), and out-of-bag only for the chosen one.
        pooled = np.column_stack([_macro_auc(in_bag, rk) for rk in pooled_rk])
        ranked = np.nan_to_num(pooled, nan=-1.0)
        top = ranked.argmax(axis=1)
        top_auc = ranked[np.arange(r), top]
        top_folds = np.full((len(validation), r), np.nan)
        for j in range(len(oofs)):
            rows = np.flatnonzero(top == j)
            if rows.size:
                for f, va in enumerate(validation):
                    top_folds[f, rows] = _macro_auc(in_bag[rows][:, va], fold_rk[j][f])
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
        for j in range(len(oofs)):
            rows = np.flatnonzero(chosen == j)
            if rows.size:
                value[rows] = _macro_auc(out_bag[rows], pooled_rk[j])
        both = np.stack([(out_bag[:, y == j] > 0).any(axis=1) for j in classes]).all(axis=0)
        out.append(value[both & np.isfinite(value)])
    return np.concatenate(out)


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
    blocks = compute.current().map(
        _selection_free_block,
        _boot_blocks(n_boot),
        shared={
            "y": y,
            "oofs": tuple(c.oof for c in candidates),
            "simplicity": np.asarray([_simplicity_rank(c.kind) for c in candidates]),
            "codes": _unit_codes(groups_dev, n),
            "validation": tuple(np.asarray(va) for _, va in folds),
            "seed": seed,
        },
        name="medimg-bootstrap-bbc",
    )
    values = np.concatenate(blocks) if blocks else np.empty(0)
    if not values.size:
        return MetricValue(nan, (nan, nan), method=SELECTION_FREE_METHOD)
    lo, hi = np.percentile(values, [2.5, 97.5])
    return MetricValue(float(values.mean()), (float(lo), float(hi)), method=SELECTION_FREE_METHOD)
