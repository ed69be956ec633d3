"""Honest training: every fitted step lives inside the pipeline and sees training folds only.

:func:`train` is a short list of named steps, each a function that can be read and tested alone:

1. resolve the task and the features (:mod:`~medimg_core.modelling.task`);
2. split development and test rows, by patient, and make the CV folds
   (:mod:`~medimg_core.modelling.validation`);
3. cross-validate the candidates on the same folds and choose one
   (:mod:`~medimg_core.modelling.selection`; every candidate-and-fold fit and every block of
   bootstrap replicates is a task on the engine in force, :mod:`medimg_core.compute`, with the
   same results in this process or on a Dask cluster);
4. choose the threshold on out-of-fold development predictions, refit on every development row
   (:func:`choose_development_threshold`, :func:`refit`);
5. score the cross-validated predictions and, once, the test rows (:func:`score`);
6. summarise the split and run the guards (:func:`summarise_split`,
   :mod:`~medimg_core.modelling.guards`).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

import medimg_core
from medimg_core.modelling.evaluation import (
    Evaluation,
    MetricValue,
    choose_threshold,
    evaluate_scores,
)
from medimg_core.modelling.guards import guards, identical_rows_across
from medimg_core.modelling.models import (
    MedimgModel,
    ModelConfig,
    class_names_by_code,
    default_params,
    label_key,
)
from medimg_core.modelling.ood import fit_distance_reference
from medimg_core.modelling.selection import (
    Candidate,
    Development,
    LeaderboardRow,
    bootstrap_auc_acc,
    candidate_kinds,
    choose_model,
    comparison_config,
    cross_validate,
    cross_validate_candidates,
    fit,
    make_pipeline,
    selection_free_auc,
)
from medimg_core.modelling.task import FeatureSpec, Task, resolve_features, resolve_task
from medimg_core.modelling.validation import (
    SplitSummary,
    ValidationConfig,
    check_validation,
    cv_folds,
    split_development_test,
)
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.loading import frame_hash
from medimg_core.tables.roles import Roles

__all__ = [
    "Progress",
    "ReaderComparison",
    "TrainingResult",
    "choose_development_threshold",
    "compare_without_reader",
    "cross_validate_deployed",
    "deployed_leaderboard",
    "refit",
    "score",
    "summarise_split",
    "train",
]


Progress = Callable[[float, str], None]
"""``progress(fraction_done, message)``; fraction in [0, 1]."""


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
    oof_proba : out-of-fold probabilities of the development rows, shape (n_dev, k).
    dev_index, test_index : the index labels of the rows in each split (e.g. to take the
        development rows as explanation background).
    without_reader : when some features are a reader's assessment (``roles.reader``), the
        same model kind cross-validated on the same folds (and tested once) without them.
    selection_free : when ``auto`` compared several models, the cross-validated ROC AUC of
        the whole "compare, then keep one" procedure (BBC-CV, see
        :func:`~medimg_core.modelling.selection.selection_free_auc`). The chosen model's own CV
        AUC (``cv``) is optimistic because it was selected on the same folds. None when a
        single model was trained: its CV figures are already selection-free.
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
    dev_index: tuple[Any, ...] = ()
    test_index: tuple[Any, ...] = ()
    without_reader: ReaderComparison | None = None
    selection_free: MetricValue | None = None


_DEFAULT_CONFIG = ModelConfig()
_DEFAULT_VALIDATION = ValidationConfig()
_DEFAULT_PLAN = CleaningPlan()


def train(
    data: pd.DataFrame,
    roles: Roles,
    *,
    config: ModelConfig = _DEFAULT_CONFIG,
    validation: ValidationConfig = _DEFAULT_VALIDATION,
    positive: Any = None,
    plan: CleaningPlan = _DEFAULT_PLAN,
    progress: Progress | None = None,
) -> TrainingResult:
    """Train and validate a model honestly.

    Rows are split into a stratified held-out test set and a development part (by patient when
    ``roles.id`` is set: no patient is in two splits). Stratified k-fold cross-validation on the
    development part gives out-of-fold probabilities; the threshold is chosen on them, the final
    model is refitted on every development row and scored once on the test set.

    Parameters
    ----------
    data : cleaned data (``clean(...).data``): label, optional ID and feature columns.
    roles : the confirmed roles; features are every column that has no role.
    config : the pipeline; ``model="auto"`` compares every kind in ``MODEL_KINDS`` on the same
        folds by cross-validated ROC AUC (macro one-vs-rest for multi-class) and keeps the best.
    validation : test share, folds, threshold rule, bootstrap replicates, predefined test set.
    positive : the positive label for a binary task; None proposes one (e.g. "malignant").
    plan : the cleaning plan, stored with the model (its ``impute_strategy`` is used).
    progress : ``progress(fraction, message)`` called as folds and candidates finish.

    Returns
    -------
    TrainingResult

    Raises
    ------
    DataError
        Missing labels, a single class, too few rows per class for the folds, free-text
        feature columns or no features.
    ConfigError
        An invalid option, or a positive class that is not among the labels.
    """
    started = time.perf_counter()
    report: Progress = progress or _silent
    check_validation(validation)
    # 1. What is predicted, from what.
    task = resolve_task(data, roles, positive)
    features = resolve_features(data, roles)
    kinds = candidate_kinds(config, features)
    untrained = _untrained_model(task, features, config=config, roles=roles, plan=plan)
    X = untrained.prepare_features(data)
    y = untrained.encode_labels(task.labels)
    id_column = roles.id if roles.id and roles.id in data.columns else None
    groups = data[id_column].to_numpy() if id_column else None
    # 2. Development and test rows, then folds of the development rows; all by patient.
    dev, test = split_development_test(
        y, groups, task.labels_by_code, validation, config.seed, task.label_column
    )
    folds = cv_folds(y, groups, dev, task.labels_by_code, validation.cv, config.seed)
    y_dev, groups_dev = y[dev], _part(groups, dev)
    # 3. Every candidate on the same folds; the simplest within one standard error of the best.
    n_steps = len(kinds) * len(folds) + 2
    development = Development(X, y, dev, folds, features, plan, groups=groups)
    comparison = cross_validate_candidates(
        kinds, config, development, progress=lambda done, message: report(done / n_steps, message)
    )
    best, leaderboard = choose_model(
        comparison, y_dev, groups_dev, config=config, n_boot=validation.n_boot
    )
    compared = best
    best = cross_validate_deployed(
        best, config, development, progress=lambda message: report((n_steps - 2) / n_steps, message)
    )
    leaderboard = deployed_leaderboard(
        leaderboard,
        compared,
        best,
        y_dev,
        groups_dev,
        validation=validation,
        config=config,
    )
    selection_free = (
        selection_free_auc(
            comparison,
            y_dev,
            groups_dev,
            folds,
            n_boot=validation.n_boot,
            seed=config.seed,
        )
        if len(comparison.candidates) > 1
        else None
    )
    # 4. Threshold from out-of-fold predictions; the deployed model sees every development row.
    threshold = choose_development_threshold(task, y_dev, best.oof, validation)
    report((n_steps - 2) / n_steps, f"refitting {best.kind} on all development rows")
    model = refit(untrained, best.kind, X.iloc[dev], y_dev, threshold=threshold, groups=groups_dev)

    # 5. Cross-validated scores, and the test rows scored once.
    report((n_steps - 1) / n_steps, "evaluating")
    row_ids = groups if groups is not None else data.index.to_numpy()
    cv_eval, test_eval = score(
        model, X, y, dev, test, best.oof, groups=groups, row_ids=row_ids, validation=validation
    )
    without_reader = compare_without_reader(
        untrained,
        best.kind,
        task,
        development,
        test,
        groups=groups,
        row_ids=row_ids,
        validation=validation,
    )
    # 6. What the reader must know about the split and the scores.
    split = summarise_split(
        task,
        X,
        dev,
        test,
        n_folds=len(folds),
        groups=groups,
        id_column=id_column,
        validation=validation,
    )
    warnings = [
        *task.warnings,
        *comparison.failures,
        *guards(
            model=model,
            X=X,
            y=y,
            y_raw=task.labels,
            dev=dev,
            cv_eval=cv_eval,
            test_eval=test_eval,
            split=split,
        ),
    ]
    report(1.0, "done")
    return TrainingResult(
        model=model,
        cv=cv_eval,
        test=test_eval,
        split=split,
        leaderboard=leaderboard,
        warnings=tuple(warnings),
        fold_scores=best.fold_scores,
        dataset_hash=frame_hash(data),
        seconds=time.perf_counter() - started,
        versions=_versions(),
        oof_proba=best.oof,
        dev_index=tuple(data.index[dev]),
        test_index=tuple(data.index[test]),
        selection_free=selection_free,
        without_reader=without_reader,
    )


@dataclass(frozen=True)
class ReaderComparison:
    """Performance without the features that are a reader's own assessment (e.g. BI-RADS).

    A model fed the radiologist's BI-RADS category partly repeats the radiologist; the
    difference between the two rows is what the other features add to it.

    Attributes
    ----------
    reader_columns : the reader-assessment features left out.
    kind : the model kind (the deployed model's).
    cv : out-of-fold evaluation without them, on the same folds as the deployed model (None
        when no other feature is left).
    test : the held-out test set scored once without them (None without a test set).
    threshold : the threshold chosen, by the same rule, on the out-of-fold predictions
        without them (so each model is judged at its own operating point).
    note : one plain sentence for the reader.
    """

    reader_columns: tuple[str, ...]
    kind: str
    cv: Evaluation | None
    test: Evaluation | None
    threshold: float | None
    note: str

    @property
    def label(self) -> str:
        """The reader columns as text, e.g. "BI-RADS" or "birads, density"."""
        return ", ".join(self.reader_columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reader_columns": list(self.reader_columns),
            "model": self.kind,
            "threshold": self.threshold,
            "note": self.note,
            "cv": self.cv.to_dict() if self.cv is not None else None,
            "test": self.test.to_dict() if self.test is not None else None,
        }


def compare_without_reader(
    untrained: MedimgModel,
    kind: str,
    task: Task,
    development: Development,
    test: np.ndarray,
    *,
    groups: np.ndarray | None,
    row_ids: np.ndarray,
    validation: ValidationConfig,
) -> ReaderComparison | None:
    """The chosen model kind cross-validated, and tested once, without the reader's features.

    Same folds, same test rows, same configuration; the threshold is chosen by the same rule
    on its own out-of-fold predictions. The deployed model keeps the reader's features.

    Returns
    -------
    ReaderComparison or None
        None when ``roles.reader`` names no feature of the model.
    """
    reader = tuple(c for c in untrained.roles.reader if c in untrained.feature_columns)
    if not reader:
        return None
    features = development.features
    kept = [c for c in features.columns if c not in reader]
    label = ", ".join(reader)
    if not kept:
        return ReaderComparison(
            reader_columns=reader,
            kind=kind,
            cv=None,
            test=None,
            threshold=None,
            note=f"{label} is the model's only input, so there is no model without it to compare.",
        )
    reduced = FeatureSpec(
        tuple(kept),
        tuple(c for c in features.numeric if c in kept),
        tuple(c for c in features.categorical if c in kept),
        {c: v for c, v in features.categories.items() if c in kept},
    )
    config = replace(untrained.config, model=kind)  # type: ignore[arg-type]
    if config.pca is not None and config.pca > reduced.width:
        config = replace(config, pca=reduced.width)
    base = replace(
        untrained,
        config=config,
        feature_columns=reduced.columns,
        numeric_columns=reduced.numeric,
        categorical_columns=reduced.categorical,
        categories=reduced.categories,
    )
    X = development.X.loc[:, list(kept)]
    candidate = cross_validate(config, replace(development, X=X, features=reduced))
    dev, y = development.dev, development.y
    threshold = choose_development_threshold(task, y[dev], candidate.oof, validation)
    # The refitted model only scores the test rows: without them, the out-of-fold figures suffice.
    model = (
        refit(base, kind, X.iloc[dev], y[dev], threshold=threshold, groups=_part(groups, dev))
        if len(test)
        else replace(base, kind=kind, threshold=threshold)
    )
    cv_eval, test_eval = score(
        model,
        X,
        y,
        dev,
        test,
        candidate.oof,
        groups=groups,
        row_ids=row_ids,
        validation=validation,
    )
    return ReaderComparison(
        reader_columns=reader,
        kind=kind,
        cv=cv_eval,
        test=test_eval,
        threshold=threshold if task.is_binary else None,
        note=f"{label} is a reader's assessment: the model keeps it as an input; the figures "
        f"'without {label}' show what the other features achieve alone (same model kind, same "
        "folds and test cases).",
    )


def cross_validate_deployed(
    best: Candidate,
    config: ModelConfig,
    development: Development,
    progress: Callable[[str], None] | None = None,
) -> Candidate:
    """The chosen candidate, cross-validated again in full when ``auto`` compared a lighter one.

    The comparison may run a lighter version of a kind (fewer trees); the reported
    cross-validation must be that of the model that is deployed, on the same folds.
    """
    deployed = replace(config, model=best.kind)  # type: ignore[arg-type]
    if comparison_config(config, best.kind) == deployed:
        return best
    if progress is not None:
        progress(f"cross-validating the full {best.kind} model")
    return cross_validate(deployed, development)


def deployed_leaderboard(
    leaderboard: tuple[LeaderboardRow, ...],
    compared: Candidate,
    deployed: Candidate,
    y_dev: np.ndarray,
    groups_dev: np.ndarray | None,
    *,
    validation: ValidationConfig,
    config: ModelConfig,
) -> tuple[LeaderboardRow, ...]:
    """The leaderboard with the chosen row showing the deployed model's CV figures.

    When ``auto`` ranked a lighter version of the chosen kind (a forest with fewer trees),
    :func:`cross_validate_deployed` cross-validated the full model again on the same folds; the
    chosen row then shows those figures, the same as the headline, and says what was ranked.
    """
    if deployed is compared:
        return leaderboard
    auc, acc = bootstrap_auc_acc(y_dev, deployed.oof, groups_dev, validation.n_boot, config.seed)
    lighter = comparison_config(config, compared.kind).params.get("n_estimators")
    full = {**default_params(deployed.kind), **config.params}.get("n_estimators")
    rows = []
    for row in leaderboard:
        if row.chosen:
            note = (
                f"ranked as a lighter forest ({lighter} trees, CV ROC AUC "
                f"{row.roc_auc.value:.3f}); shown: the deployed forest"
                + (f" ({full} trees)" if full else "")
                + ", cross-validated on the same folds"
            )
            row = replace(
                row,
                roc_auc=auc,
                accuracy=acc,
                fold_aucs=deployed.fold_aucs,
                seconds=deployed.seconds,
                note=note,
            )
        rows.append(row)
    return tuple(rows)


def choose_development_threshold(
    task: Task, y_dev: np.ndarray, oof: np.ndarray, validation: ValidationConfig
) -> float:
    """The decision threshold on P(positive), chosen on out-of-fold development predictions.

    Never on the test set. Multi-class tasks decide by the most probable class (0.5 is stored).
    """
    if not task.is_binary:
        return 0.5
    return float(
        choose_threshold(
            y_dev,
            oof[:, 1],
            method=validation.threshold,
            target_sensitivity=validation.target_sensitivity,
        )
    )


def refit(
    untrained: MedimgModel,
    kind: str,
    X_dev: pd.DataFrame,
    y_dev: np.ndarray,
    *,
    threshold: float,
    groups: np.ndarray | None = None,
) -> MedimgModel:
    """Fit the chosen kind on every development row: the deployable model.

    Parameters
    ----------
    untrained : the schema-only model from the training data (``pipeline`` unset).
    kind : the chosen model kind.
    X_dev, y_dev : prepared features and encoded labels of the development rows.
    threshold : from :func:`choose_development_threshold`.
    groups : patient IDs of the development rows; the SVMs' calibration folds keep each
        patient's rows together.
    """
    config = replace(untrained.config, model=kind)  # type: ignore[arg-type]
    features = FeatureSpec(
        untrained.feature_columns,
        untrained.numeric_columns,
        untrained.categorical_columns,
        dict(untrained.categories),
    )
    pipeline = make_pipeline(config, features, untrained.plan, len(X_dev))
    fit(pipeline, X_dev, y_dev, groups)
    return replace(
        untrained,
        pipeline=pipeline,
        kind=kind,
        config=config,
        feature_ranges=_ranges(X_dev, list(untrained.numeric_columns)),
        threshold=threshold,
        # What "like the development data" means for a new case (Predict's distance check).
        ood=fit_distance_reference(X_dev, untrained.numeric_columns, seed=config.seed),
    )


def score(
    model: MedimgModel,
    X: pd.DataFrame,
    y: np.ndarray,
    dev: np.ndarray,
    test: np.ndarray,
    oof: np.ndarray,
    *,
    groups: np.ndarray | None,
    row_ids: np.ndarray,
    validation: ValidationConfig,
) -> tuple[Evaluation, Evaluation | None]:
    """The cross-validated evaluation (from ``oof``) and the test evaluation, scored once.

    Returns
    -------
    (Evaluation, Evaluation or None)
        Partition "cv" on the development rows; partition "test" on the held-out rows (None
        when there is no test set). Both at the model's threshold, with bootstrap intervals
        that resample patients when ``groups`` is given.
    """
    common: dict[str, Any] = {
        "class_names": class_names_by_code(
            model.classes, model.positive_class, model.roles.class_names
        ),
        "positive_class": model.positive_class,
        "threshold": model.threshold,
        "n_boot": validation.n_boot,
        "seed": model.config.seed,
    }

    def evaluate(rows: np.ndarray, proba: np.ndarray, partition: str) -> Evaluation:
        return evaluate_scores(
            y[rows],
            proba[:, 1] if model.is_binary else proba,
            groups=_part(groups, rows),
            row_ids=row_ids[rows],
            partition=partition,
            **common,
        )

    cv_eval = evaluate(dev, oof, "cv")
    if not len(test):
        return cv_eval, None
    proba_test = np.asarray(model.pipeline.predict_proba(X.iloc[test]), dtype=float)
    return cv_eval, evaluate(test, proba_test, "test")


def summarise_split(
    task: Task,
    X: pd.DataFrame,
    dev: np.ndarray,
    test: np.ndarray,
    *,
    n_folds: int,
    groups: np.ndarray | None,
    id_column: str | None,
    validation: ValidationConfig,
) -> SplitSummary:
    """Counts of rows, patients and classes per part, and what crosses the split."""
    overlap_ids: tuple[Any, ...] = ()
    patients_dev = patients_test = None
    if groups is not None:
        # Vectorised over patient codes: no Python set of every ID.
        ids, patients = pd.factorize(pd.Series(groups, dtype=object), use_na_sentinel=False)
        in_dev, in_test = np.unique(ids[dev]), np.unique(ids[test])
        patients_dev, patients_test = int(in_dev.size), int(in_test.size)
        both = np.intersect1d(in_dev, in_test, assume_unique=True)
        overlap_ids = tuple(sorted(np.asarray(patients, dtype=object)[both], key=str))
    # Labels compared by label_key, computed once per distinct label rather than per row.
    raw, distinct = pd.factorize(task.labels, use_na_sentinel=False)
    keys = np.asarray([label_key(v) for v in distinct], dtype=object)
    key_codes, key_names = pd.factorize(pd.Series(keys, dtype=object))
    codes = key_codes[raw]
    identical, opposite = identical_rows_across(X, dev, test, codes)

    def class_counts(rows: np.ndarray) -> dict[str, int]:
        counts = np.bincount(codes[rows], minlength=len(key_names))
        found = dict(zip(key_names, counts.tolist(), strict=True))
        return {str(c): int(found.get(label_key(c), 0)) for c in task.classes}

    return SplitSummary(
        grouped_by=id_column,
        n_dev=len(dev),
        n_test=len(test),
        patients_dev=patients_dev,
        patients_test=patients_test,
        class_counts_dev=class_counts(dev),
        class_counts_test=class_counts(test),
        cv_folds=n_folds,
        test_size=float(np.mean(validation.predefined_test))
        if validation.predefined_test is not None
        else validation.test_size,
        overlap_ids=overlap_ids,
        identical_rows_across=identical,
        identical_rows_opposite_label=opposite,
        predefined_test=validation.predefined_test is not None,
    )


def _silent(fraction: float, message: str) -> None:
    """The default progress callback: report nothing."""


def _untrained_model(
    task: Task,
    features: FeatureSpec,
    *,
    config: ModelConfig,
    roles: Roles,
    plan: CleaningPlan,
) -> MedimgModel:
    """The model's schema before any fit: it prepares features and encodes labels as training will."""
    return MedimgModel(
        pipeline=None,  # type: ignore[arg-type]
        kind="",
        config=config,
        feature_columns=features.columns,
        numeric_columns=features.numeric,
        categorical_columns=features.categorical,
        categories=features.categories,
        feature_ranges={},
        classes=task.classes,
        positive_class=task.positive_class,
        threshold=0.5,
        roles=roles,
        plan=plan,
    )


def _part(groups: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return groups[rows] if groups is not None else None


def _ranges(X: pd.DataFrame, numeric: list[str]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for col in numeric:
        values = X[col].dropna()
        if len(values):
            out[col] = (float(values.min()), float(values.max()))
    return out


def _versions() -> dict[str, str]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "sklearn": version("scikit-learn"),
        "numpy": version("numpy"),
        "pandas": version("pandas"),
        "shap": version("shap"),
        "medimg": medimg_core.__version__,
    }
