"""Honest training: every fitted step lives inside the pipeline and sees training folds only."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)
from threadpoolctl import threadpool_limits

import medimg_core
from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import (
    Evaluation,
    MetricValue,
    choose_threshold,
    evaluate_scores,
)
from medimg_core.modelling.models import (
    CLASS_WEIGHT_IGNORED,
    MODEL_KINDS,
    MedimgModel,
    ModelConfig,
    build_pipeline,
    class_names_by_code,
    label_key,
    labels_by_code,
)
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.loading import frame_hash
from medimg_core.tables.roles import Roles, feature_columns, propose_positive_class

__all__ = [
    "MAX_CATEGORIES",
    "LeaderboardRow",
    "Progress",
    "SplitSummary",
    "TrainingResult",
    "ValidationConfig",
    "train",
]

MAX_CATEGORIES = 30
"""A text column with more distinct values than this is free text or an identifier, not a
category, and cannot be a feature."""

_THRESHOLD_METHODS = ("0.5", "youden", "sensitivity")
_RF_COMPARISON_TREES = 100
_SIMPLICITY = ("logreg", "svm_linear", "knn", "svm", "rf", "hgb", "mlp")
"""``auto``'s preference among candidates that tie within one standard error, simplest first."""

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
    oof_proba : out-of-fold probabilities of the development rows, shape (n_dev, k).
    dev_index, test_index : the index labels of the rows in each split (e.g. to take the
        development rows as explanation background).
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
    report: Progress = progress or (lambda fraction, message: None)
    _check_validation(validation)
    label_col = _label_column(data, roles)
    y_raw = data[label_col]
    n_missing_label = int(y_raw.isna().sum())
    if n_missing_label:
        raise DataError(
            f"{n_missing_label} row(s) have no value in the label column {label_col!r}; run "
            "cleaning first (it removes rows without a label) or fill them in."
        )
    classes = _sorted_labels(y_raw)
    if len(classes) < 2:
        raise DataError(
            f"The label column {label_col!r} has a single class ({classes[0]!r}); a "
            "diagnostic model needs cases of at least two classes."
        )
    extra_warnings: list[str] = []
    if len(classes) == 2:
        positive_class = _resolve_positive(classes, positive, y_raw)
    else:
        positive_class = None
        if positive is not None:
            extra_warnings.append(
                f"The positive class {positive!r} was ignored: the label has {len(classes)} "
                "classes, so every class is scored one-vs-rest."
            )
    features = _feature_columns(data, roles)
    numeric, categorical = _type_features(data, features)
    categories = {c: _categories(data[c]) for c in categorical}
    kinds = _candidate_kinds(config, numeric, categories, len(data))

    model_stub = MedimgModel(
        pipeline=None,  # type: ignore[arg-type]
        kind="",
        config=config,
        feature_columns=tuple(features),
        numeric_columns=tuple(numeric),
        categorical_columns=tuple(categorical),
        categories=categories,
        feature_ranges={},
        classes=classes,
        positive_class=positive_class,
        threshold=0.5,
        roles=roles,
        plan=plan,
    )
    X = model_stub.prepare_features(data)
    y = model_stub.encode_labels(y_raw)
    id_col = roles.id if roles.id and roles.id in data.columns else None
    groups = data[id_col].to_numpy() if id_col else None
    row_ids = groups if groups is not None else data.index.to_numpy()

    labels = labels_by_code(classes, positive_class)
    dev, test = _split(y, groups, labels, validation, config.seed, label_col)
    folds = _cv_folds(y, groups, dev, labels, validation.cv, config.seed)

    n_steps = len(kinds) * len(folds) + 2
    candidates: list[_Candidate] = []
    failures: list[str] = []
    for i, kind in enumerate(kinds):
        cfg = _comparison_config(config, kind)

        def fold_progress(f: int, kind: str = kind, i: int = i) -> None:
            report(
                (i * len(folds) + f) / n_steps,
                f"{kind}: fold {f} of {len(folds)} done"
                + (f" (model {i + 1} of {len(kinds)})" if len(kinds) > 1 else ""),
            )

        try:
            candidates.append(
                _cross_validate(cfg, X, y, dev, folds, numeric, categorical, plan, fold_progress)
            )
        except ValueError as exc:
            if len(kinds) == 1:
                raise
            failures.append(f"Model {kind!r} was left out of the comparison: {exc}")
    if not candidates:
        raise DataError(" ".join(failures))

    y_dev = y[dev]
    groups_dev = groups[dev] if groups is not None else None
    rng_seed = config.seed
    scored = [
        (c, _bootstrap_auc_acc(y_dev, c.oof, groups_dev, validation.n_boot, rng_seed))
        for c in candidates
    ]
    scored.sort(key=lambda cs: -np.nan_to_num(cs[1][0].value, nan=-1.0))
    best = _one_standard_error_choice(scored)
    leaderboard: tuple[LeaderboardRow, ...] = ()
    if config.model == "auto":
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

    final_config = replace(config, model=best.kind)  # type: ignore[arg-type]
    if _comparison_config(config, best.kind) != final_config:
        # The comparison ran a lighter version (fewer trees); the reported cross-validation
        # must be that of the model that is deployed, on the same folds.
        report((n_steps - 2) / n_steps, f"cross-validating the full {best.kind} model")
        best = _cross_validate(
            final_config, X, y, dev, folds, numeric, categorical, plan, lambda f: None
        )
    is_binary = len(classes) == 2
    oof_score = best.oof[:, 1] if is_binary else best.oof
    threshold = (
        float(
            choose_threshold(
                y_dev,
                oof_score,
                method=validation.threshold,
                target_sensitivity=validation.target_sensitivity,
            )
        )
        if is_binary
        else 0.5
    )
    report((n_steps - 2) / n_steps, f"refitting {best.kind} on all development rows")
    pipeline = _make_pipeline(final_config, numeric, categorical, plan, len(dev))
    _fit(pipeline, X.iloc[dev], y_dev)
    model = replace(
        model_stub,
        pipeline=pipeline,
        kind=best.kind,
        config=final_config,
        feature_ranges=_ranges(X.iloc[dev], numeric),
        threshold=threshold,
    )

    report((n_steps - 1) / n_steps, "evaluating")
    class_names = class_names_by_code(classes, positive_class)
    common = {
        "class_names": class_names,
        "positive_class": positive_class,
        "threshold": threshold,
        "n_boot": validation.n_boot,
        "seed": config.seed,
    }
    cv_eval = evaluate_scores(
        y_dev,
        oof_score,
        groups=groups_dev,
        row_ids=row_ids[dev],
        partition="cv",
        **common,
    )
    test_eval = None
    if len(test):
        proba_test = np.asarray(pipeline.predict_proba(X.iloc[test]), dtype=float)
        test_eval = evaluate_scores(
            y[test],
            proba_test[:, 1] if is_binary else proba_test,
            groups=groups[test] if groups is not None else None,
            row_ids=row_ids[test],
            partition="test",
            **common,
        )

    overlap_ids: tuple[Any, ...] = ()
    if groups is not None and len(test):
        overlap_ids = tuple(sorted(set(groups[dev]) & set(groups[test]), key=str))
    identical = _identical_rows_across(X, dev, test)
    split = SplitSummary(
        grouped_by=id_col,
        n_dev=len(dev),
        n_test=len(test),
        patients_dev=int(pd.unique(groups[dev]).size) if groups is not None else None,
        patients_test=int(pd.unique(groups[test]).size) if groups is not None else None,
        class_counts_dev=_class_counts(y_raw.iloc[dev], classes),
        class_counts_test=_class_counts(y_raw.iloc[test], classes),
        cv_folds=len(folds),
        test_size=float(np.mean(validation.predefined_test))
        if validation.predefined_test is not None
        else validation.test_size,
        overlap_ids=overlap_ids,
        identical_rows_across=identical,
    )
    warnings = [
        *extra_warnings,
        *failures,
        *_guards(
            model=model,
            X=X,
            y=y,
            y_raw=y_raw,
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
    )


@dataclass(frozen=True)
class _Candidate:
    kind: str
    oof: np.ndarray
    fold_scores: tuple[float, ...]
    fold_aucs: tuple[float, ...]
    seconds: float


def _check_validation(validation: ValidationConfig) -> None:
    if validation.cv < 2:
        raise ConfigError(
            f"Cross-validation needs at least 2 folds, got {validation.cv}; use 5 or 10."
        )
    if validation.predefined_test is None and not 0 <= validation.test_size < 1:
        raise ConfigError(
            f"test_size must be a share in [0, 1), got {validation.test_size}; 0.2 holds out "
            "a fifth of the patients, 0 disables the test set."
        )
    if validation.threshold not in _THRESHOLD_METHODS:
        raise ConfigError(
            f"Unknown threshold rule {validation.threshold!r}; choose one of "
            f"{list(_THRESHOLD_METHODS)}."
        )


def _label_column(data: pd.DataFrame, roles: Roles) -> str:
    if not roles.label:
        raise ConfigError(
            "No label column was chosen; pick the diagnosis column on the Data page or pass "
            "--label."
        )
    if roles.label not in data.columns:
        raise DataError(
            f"The label column {roles.label!r} is not in the data (columns: "
            f"{[str(c) for c in data.columns][:20]}); choose an existing column."
        )
    return roles.label


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _sorted_labels(values: pd.Series) -> tuple[Any, ...]:
    unique = [_plain(v) for v in pd.unique(values.dropna())]
    try:
        return tuple(sorted(unique))
    except TypeError:
        return tuple(sorted(unique, key=label_key))


def _resolve_positive(classes: tuple[Any, ...], positive: Any, y_raw: pd.Series) -> Any:
    if positive is None:
        proposed = propose_positive_class(y_raw)
        return next((c for c in classes if label_key(c) == label_key(proposed)), classes[1])
    for c in classes:
        if c == positive or label_key(c) == label_key(positive):
            return c
    raise ConfigError(
        f"The positive class {positive!r} is not among the labels "
        f"{[str(c) for c in classes]}; choose one of them."
    )


def _feature_columns(data: pd.DataFrame, roles: Roles) -> list[str]:
    return [str(c) for c in feature_columns(data, roles)]


def _type_features(data: pd.DataFrame, features: list[str]) -> tuple[list[str], list[str]]:
    if not features:
        raise DataError(
            "There are no feature columns left to train on (every column is the label, an ID "
            "or excluded); un-exclude at least one measurement column."
        )
    numeric: list[str] = []
    categorical: list[str] = []
    free_text: dict[str, int] = {}
    for col in features:
        values = data[col]
        if pd.api.types.is_numeric_dtype(values):
            numeric.append(col)
            continue
        distinct = int(values.dropna().map(str).nunique())
        if distinct <= MAX_CATEGORIES:
            categorical.append(col)
        else:
            free_text[col] = distinct
    if free_text:
        described = ", ".join(f"{c!r} ({n} distinct values)" for c, n in free_text.items())
        raise DataError(
            f"Column(s) {described} hold free text or identifiers, not numbers or categories "
            f"(at most {MAX_CATEGORIES} values); mark them as identifying/excluded on the Data "
            "page or with --exclude."
        )
    return numeric, categorical


def _categories(values: pd.Series) -> tuple[str, ...]:
    return tuple(sorted({str(v) for v in values.dropna()}))


def _candidate_kinds(
    config: ModelConfig, numeric: list[str], categories: dict[str, tuple[str, ...]], n_rows: int
) -> tuple[str, ...]:
    if config.model == "auto" and config.params:
        raise ConfigError(
            f"Hyper-parameters {sorted(config.params)} need one model kind, not 'auto'; choose "
            f"a model from {list(MODEL_KINDS)} or clear the parameters."
        )
    if config.pca is not None:
        width = len(numeric) + sum(len(v) for v in categories.values())
        if config.pca > width:
            raise ConfigError(
                f"PCA with {config.pca} components needs at least {config.pca} features; the "
                f"data have {width} after one-hot encoding. Choose at most {width} components."
            )
    return MODEL_KINDS if config.model == "auto" else (config.model,)


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


def _units_per_class(
    y: np.ndarray, groups: np.ndarray | None, rows: np.ndarray, k: int
) -> np.ndarray:
    if groups is None:
        return np.bincount(y[rows], minlength=k)
    frame = pd.DataFrame({"y": y[rows], "g": groups[rows]}).drop_duplicates()
    return np.bincount(frame["y"].to_numpy(dtype=int), minlength=k)


def _split(
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
    n_groups = pd.unique(groups).size
    if n_groups < n_splits:
        raise DataError(
            f"Only {n_groups} patients (distinct {unit[:-1]} IDs) for a {validation.test_size:.0%} "
            "test set; use test_size 0 or add patients."
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    dev, test = next(splitter.split(everything, y, groups))
    return np.sort(dev), np.sort(test)


def _cv_folds(
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
        splitter: Any = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
        parts = splitter.split(dev, y_dev)
    else:
        splitter = StratifiedGroupKFold(n_splits=cv, shuffle=True, random_state=seed)
        parts = splitter.split(dev, y_dev, groups[dev])
    folds = [(np.asarray(tr), np.asarray(va)) for tr, va in parts]
    for tr, _ in folds:
        if np.unique(y_dev[tr]).size < k:
            raise DataError(
                f"A cross-validation fold has no training case of some class with {cv} folds; "
                "use fewer folds (--cv) or add cases."
            )
    return folds


def _comparison_config(config: ModelConfig, kind: str) -> ModelConfig:
    """The configuration ``auto`` cross-validates ``kind`` with.

    The random forest is compared with 100 trees instead of 300 (its ranking barely moves and
    it is the slowest candidate); when it wins, it is cross-validated again and refitted with
    the full 300 trees, so the reported scores are those of the deployed model.
    """
    concrete = replace(config, model=kind)  # type: ignore[arg-type]
    if config.model == "auto" and kind == "rf":
        return replace(concrete, params={"n_estimators": _RF_COMPARISON_TREES})
    return concrete


def _one_standard_error_choice(
    scored: list[tuple[_Candidate, tuple[MetricValue, MetricValue]]],
) -> _Candidate:
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
    return min(tied, key=lambda c: _SIMPLICITY.index(c.kind) if c.kind in _SIMPLICITY else 99)


def _make_pipeline(
    config: ModelConfig,
    numeric: list[str],
    categorical: list[str],
    plan: CleaningPlan,
    n_train: int,
) -> Any:
    pipeline = build_pipeline(config, numeric, categorical, impute_strategy=plan.impute_strategy)
    # kNN cannot ask for more neighbours than there are training rows (tiny data sets).
    if config.model == "knn" and "n_neighbors" not in config.params:
        neighbours = pipeline.named_steps["model"].n_neighbors
        pipeline.set_params(model__n_neighbors=max(1, min(neighbours, n_train)))
    return pipeline


def _fit(pipeline: Any, X: pd.DataFrame, y: np.ndarray) -> None:
    # One thread per native pool (OpenMP, BLAS): histogram gradient boosting and the MLP
    # otherwise start a thread per core, and on a busy machine the oversubscription makes
    # them many times slower than serial. The folds are small; serial is fast enough.
    with threadpool_limits(limits=1):
        pipeline.fit(X, y)


def _cross_validate(
    config: ModelConfig,
    X: pd.DataFrame,
    y: np.ndarray,
    dev: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    numeric: list[str],
    categorical: list[str],
    plan: CleaningPlan,
    fold_done: Callable[[int], None],
) -> _Candidate:
    """Out-of-fold probabilities: every fold's pipeline (imputer, scaler, PCA, model) is fitted
    on that fold's training rows only."""
    started = time.perf_counter()
    X_dev = X.iloc[dev]
    y_dev = y[dev]
    k = int(y.max()) + 1
    oof = np.zeros((len(dev), k))
    fold_scores: list[float] = []
    fold_aucs: list[float] = []
    for f, (tr, va) in enumerate(folds, start=1):
        pipeline = _make_pipeline(config, numeric, categorical, plan, len(tr))
        _fit(pipeline, X_dev.iloc[tr], y_dev[tr])
        proba = np.asarray(pipeline.predict_proba(X_dev.iloc[va]), dtype=float)
        oof[va] = proba
        auc = _auc(y_dev[va], proba)
        fold_aucs.append(auc)
        fold_scores.append(auc if k == 2 else float(np.mean(proba.argmax(axis=1) == y_dev[va])))
        fold_done(f)
    return _Candidate(
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


def _binary_auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(_weighted_binary_auc(y, score, np.ones((1, len(y))))[0])


def _auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC; macro one-vs-rest over the classes for multi-class."""
    return float(_weighted_auc(y, proba, np.ones((1, len(y))))[0])


def _bootstrap_auc_acc(
    y: np.ndarray, proba: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int
) -> tuple[MetricValue, MetricValue]:
    """Leaderboard metrics with percentile 95% intervals (patients resampled when grouped).

    Replicates are row weights (how often each row, or each patient's rows, was drawn), which
    keeps ``auto`` fast: seven candidates times ``n_boot`` replicates. Replicates with a
    single class are skipped, as in :func:`medimg_core.modelling.evaluation.evaluate_scores`.
    """
    correct = (proba.argmax(axis=1) == y).astype(float)
    point_auc = _auc(y, proba)
    point_acc = float(correct.mean())
    if n_boot <= 0:
        nan = (float("nan"), float("nan"))
        return MetricValue(point_auc, nan), MetricValue(point_acc, nan)
    rng = np.random.default_rng(seed)
    if groups is None:
        codes = np.arange(len(y))
    else:
        codes, _ = pd.factorize(pd.Series(groups), use_na_sentinel=False)
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


def _ranges(X: pd.DataFrame, numeric: list[str]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for col in numeric:
        values = X[col].dropna()
        if len(values):
            out[col] = (float(values.min()), float(values.max()))
    return out


def _class_counts(values: pd.Series, classes: tuple[Any, ...]) -> dict[str, int]:
    keys = values.map(label_key).value_counts()
    return {str(c): int(keys.get(label_key(c), 0)) for c in classes}


def _identical_rows_across(X: pd.DataFrame, dev: np.ndarray, test: np.ndarray) -> int:
    """Test rows whose feature values all equal those of some development row."""
    if not len(test):
        return 0
    hashes = pd.util.hash_pandas_object(X, index=False).to_numpy()
    return int(np.isin(hashes[test], hashes[dev]).sum())


def _single_feature_aucs(
    X: pd.DataFrame, y: np.ndarray, numeric: tuple[str, ...]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for col in numeric:
        values = X[col].to_numpy(dtype=float)
        keep = np.isfinite(values)
        if keep.sum() < 2:
            continue
        auc = _binary_auc(y[keep], values[keep])
        if np.isfinite(auc):
            out[col] = auc
    return out


def _guards(
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
        for col, auc in _single_feature_aucs(X.iloc[dev], y[dev], model.numeric_columns).items():
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
