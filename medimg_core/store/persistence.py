"""Saving and loading models: ``model.skops`` (the fitted pipeline) and ``card.json`` (everything a
reader needs to judge and reproduce the model), written atomically and verified on load.

Models are stored with :mod:`skops.io`, never pickle: loading refuses any type outside a fixed
allow-list of scikit-learn/numpy internals that medimg pipelines contain, and refuses a
``model.skops`` whose SHA-256 no longer matches the one recorded in ``card.json``.

``model.skops`` and ``ood.skops`` are encrypted at rest (:mod:`medimg_core.encryption`; a k-NN
model holds its training rows); their SHA-256 in the card is over the plaintext, checked after
decryption. ``card.json`` stays plain JSON: it holds feature names, categories and metrics,
never a row. Model files written before encryption are read as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.pipeline import Pipeline

from medimg_core.encryption import CIPHER, read_decrypted, write_encrypted
from medimg_core.errors import MedimgError, ModelFileError
from medimg_core.modelling.calibration import INTERCEPT_LIMIT, Recalibration, calibration_card
from medimg_core.modelling.conformal import conformal_card
from medimg_core.modelling.decision import decision_curves_card
from medimg_core.modelling.explain import (
    METHOD_PERMUTATION,
    development_explainer,
    development_explanation,
    importance_description,
)
from medimg_core.modelling.models import MedimgModel, ModelConfig
from medimg_core.modelling.ood import DistanceReference
from medimg_core.modelling.selection import SELECTION_FREE_NOTE
from medimg_core.modelling.subgroups import SiteValidation, subgroup_card
from medimg_core.modelling.training import TrainingResult
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store.model_files import (
    check_file_size,
    check_skops_archive,
    model_file_limit,
    old_dir,
    read_json_file,
    remove_stale_staging,
    staging_dir,
)
from medimg_core.tables.cleaning import CleaningPlan, CleaningReport
from medimg_core.tables.roles import Roles
from medimg_core.workspace import fsync_dir

__all__ = [
    "CARD_FORMAT",
    "CARD_NAME",
    "MODEL_NAME",
    "OOD_NAME",
    "TRUSTED_TYPES",
    "LoadedModel",
    "build_card",
    "load_model",
    "recalibration_card",
    "save_model",
    "test_split_source",
]

CARD_FORMAT = "medimg-model-card/1"
MODEL_NAME = "model.skops"
CARD_NAME = "card.json"
OOD_NAME = "ood.skops"
"""The development rows' distance statistics (numpy arrays only), beside ``model.skops``."""
TOP_FEATURES = 10

TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn.tree._tree.Tree",
    }
)
"""Types outside skops' default trust that medimg pipelines legitimately contain.

Built from what ``skops.io.get_untrusted_types`` reports for every model kind (logreg, svm,
svm_linear, rf, hgb, knn, mlp, seed), with and without PCA, for binary and multi-class targets,
plus the ball tree k-NN may pick on other data shapes. Anything else is refused on load.
"""


@dataclass(frozen=True)
class LoadedModel:
    """A model read back from disk with its card.

    Attributes
    ----------
    model : the rebuilt :class:`~medimg_core.modelling.models.MedimgModel`.
    card : the parsed ``card.json``.
    directory : the model directory it was read from.
    """

    model: MedimgModel
    card: dict[str, Any]
    directory: Path


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _library_versions() -> dict[str, str]:
    # Keys as training records them ("sklearn"), plus what loading a model depends on.
    versions = {"python": platform.python_version()}
    names = {"sklearn": "scikit-learn", "numpy": "numpy", "pandas": "pandas", "skops": "skops"}
    names |= {"scipy": "scipy", "shap": "shap", "medimg": "medimg"}
    for key, dist in names.items():
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[key] = metadata.version(dist)
    return versions


def _numeric_slopes(prep: Any, columns: list[str]) -> np.ndarray:
    """d(scaled value)/d(raw value) per numeric column: the scalers are affine per column."""
    scaler = prep.named_transformers_["num"].named_steps["scale"]
    if scaler == "passthrough":
        return np.ones(len(columns))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ones = scaler.transform(np.ones((1, len(columns))))
        zeros = scaler.transform(np.zeros((1, len(columns))))
    return np.asarray(ones - zeros, dtype=float).ravel()


def _linear_top_features(model: MedimgModel) -> list[dict[str, Any]] | None:
    """Importance of each original column for a linear final step, or None if not linear.

    The coefficients are folded back through PCA and the scaler to one weight per raw unit of
    each original column, then multiplied by the column's training range: the change in
    log-odds across the observed range. A categorical column's importance is the spread of its
    one-hot weights (the largest log-odds difference between two of its categories).
    """
    estimator = model.pipeline.steps[-1][1]
    coef = getattr(estimator, "coef_", None)
    prep = model.pipeline.named_steps.get("prep")
    if coef is None or prep is None or not hasattr(prep, "output_indices_"):
        return None
    weights = np.atleast_2d(np.asarray(coef, dtype=float))
    pca = model.pipeline.named_steps.get("pca")
    if pca is not None:
        weights = weights @ pca.components_
    importance: dict[str, float] = {}
    for name, _, columns in prep.transformers_:
        if name not in ("num", "cat"):
            continue
        block = weights[:, prep.output_indices_[name]]
        if name == "num":
            raw = block * _numeric_slopes(prep, list(columns))
            for j, column in enumerate(columns):
                low, high = model.feature_ranges.get(column, (0.0, 1.0))
                span = float(high - low) if np.isfinite(high - low) else 1.0
                importance[column] = float(np.mean(np.abs(raw[:, j]) * span))
        else:
            onehot = prep.named_transformers_["cat"].named_steps["onehot"]
            start = 0
            for column, cats in zip(columns, onehot.categories_, strict=True):
                part = block[:, start : start + len(cats)]
                start += len(cats)
                importance[column] = float(np.mean(part.max(axis=1) - part.min(axis=1)))
    ranked = sorted(importance.items(), key=lambda kv: kv[1], reverse=True)[:TOP_FEATURES]
    return [{"feature": f, "importance": round(v, 6)} for f, v in ranked]


_CARD_SHAP_CASES = 30
_CARD_SHAP_BACKGROUND = 30


def _shap_top_features(
    model: MedimgModel, data: pd.DataFrame
) -> tuple[list[dict[str, Any]], str, str]:
    """The Explain page's ranking (mean |SHAP| over the same development cases), and its name.

    Exact explanations (linear, tree) are computed exactly as the Explain page computes them,
    so the card and the page list the same features in the same order. The model-agnostic
    permutation estimate costs thousands of model calls per case: the card then ranks a small
    sample and says so.
    """
    missing = [c for c in model.feature_columns if c not in data.columns]
    if missing:
        return [], "", ""
    rows = data.loc[:, list(model.feature_columns)]
    explainer = development_explainer(model, rows)
    same = "the same ranking as the Explain page's feature importance"
    if explainer.method == METHOD_PERMUTATION:
        explainer = development_explainer(
            model, rows, max_background=_CARD_SHAP_BACKGROUND, tolerance=None
        )
        explanation = development_explanation(explainer, rows, max_cases=_CARD_SHAP_CASES)
        same = (
            f"a quick estimate against {_CARD_SHAP_BACKGROUND} background rows; the Explain "
            "page ranks more cases and its order may differ slightly"
        )
    else:
        explanation = development_explanation(explainer, rows)
    ranked = explanation.global_importance().head(TOP_FEATURES)
    top = [{"feature": str(f), "importance": round(float(v), 6)} for f, v in ranked.items()]
    measure = importance_description(explanation)
    return top, f"Ranked by {measure}: {same}.", measure


def _top_features(
    model: MedimgModel, data: pd.DataFrame | None
) -> tuple[list[dict[str, Any]], str, str | None]:
    """Top features, the note saying what they rank, and their unit (None when not SHAP)."""
    if data is not None:
        try:
            top, note, measure = _shap_top_features(model, data)
        except (ImportError, MedimgError) as exc:
            return [], f"Not computed at save time ({exc}); see the Explain page.", None
        if top:
            return top, note, measure
    linear = _linear_top_features(model)
    if linear is not None:
        return (
            linear,
            (
                "Ranked by |coefficient| folded back through the pipeline to each original column, "
                "times the column's training range (change in log-odds across that range); no "
                "development rows were given, so this is not the Explain page's SHAP ranking."
            ),
            "change in log-odds across the training range",
        )
    return (
        [],
        (
            f"Not computed at save time for model kind {model.kind!r} (no development rows "
            "given); compute SHAP explanations on the Explain page or with `medimg predict --explain`."
        ),
        None,
    )


def _schema(model: MedimgModel) -> dict[str, Any]:
    return {
        "feature_columns": list(model.feature_columns),
        "numeric_columns": list(model.numeric_columns),
        "categorical_columns": list(model.categorical_columns),
        "categories": {c: list(v) for c, v in model.categories.items()},
        "feature_ranges": {c: [lo, hi] for c, (lo, hi) in model.feature_ranges.items()},
        "classes": list(model.classes),
    }


def _descriptions(
    model: MedimgModel,
    image_settings: Mapping[str, Any] | None,
    given: Mapping[str, str] | None,
) -> dict[str, str]:
    if given is not None:
        return {str(k): str(v) for k, v in given.items() if k in model.feature_columns}
    if image_settings is None:
        return {}
    # Imported here: the imaging modules (pydicom, Pillow) are only needed for image models.
    from medimg_core.imaging.feature_table import feature_descriptions

    return feature_descriptions(image_settings, list(model.feature_columns))


def test_split_source(dataset_name: str | None) -> str | None:
    """Who made a file's own test split: "MedMNIST" for an ``.npz`` file, else None."""
    name = str(dataset_name or "").lower()
    return "MedMNIST" if name.endswith(".npz") or "mnist" in name else None


def _threshold_method(result: TrainingResult, validation: ValidationConfig | None) -> str:
    config = validation or getattr(result, "validation", None)
    if isinstance(config, ValidationConfig):
        return str(config.threshold)
    return "unknown"


def build_card(
    result: TrainingResult,
    *,
    cleaning: CleaningReport | None,
    dataset_name: str,
    validation: ValidationConfig | None = None,
    data: pd.DataFrame | None = None,
    image_settings: Mapping[str, Any] | None = None,
    feature_descriptions: Mapping[str, str] | None = None,
    cases: pd.DataFrame | None = None,
    site_validation: SiteValidation | None = None,
) -> dict[str, Any]:
    """The model card: what was trained on which data, how it was validated, how well it did.

    Parameters
    ----------
    result : the training outcome.
    cleaning : the cleaning report of the training table, or None when it was not cleaned.
    dataset_name : a human name for the data (file name or sample name).
    validation : the validation settings used for training; they name the threshold method.
    data : development rows; used for SHAP-based top features when the model is not linear.
    image_settings : for a model trained on image features, the extraction settings
        (``FeatureTable.settings``); stored as ``features.image_settings`` so that prediction
        re-extracts new images identically.
    feature_descriptions : feature name -> one-line description, stored as
        ``features.descriptions``; default, for image models, the descriptions of the image
        features among the model's columns.
    cases : the run's cases (``medimg_core.store.cases.build_cases``); when the roles name a
        site or subgroup columns, their metrics per group on CV and test are stored as
        ``subgroups`` (:func:`~medimg_core.modelling.subgroups.subgroup_card`).
    site_validation : leave-one-site-out validation, when it was run; stored as
        ``leave_one_site_out`` (extra evidence: the saved model is the normally trained one).

    Returns
    -------
    dict
        JSON-ready, in the ``medimg-model-card/1`` shape of ``docs/design.md``; the
        ``model_sha256`` entry is filled in by :func:`save_model`.
    """
    model = result.model
    split = result.split
    class_counts: dict[str, int] = {}
    for counts in (split.class_counts_dev, split.class_counts_test):
        for cls, n in counts.items():
            class_counts[str(cls)] = class_counts.get(str(cls), 0) + int(n)
    if cleaning is not None:
        cleaning_part = {**cleaning.to_dict(), "applied": True, "plan": model.plan.to_dict()}
        rows_in = cleaning.n_input
        removed_by_rule = dict(cleaning.counts)
    else:
        cleaning_part = {"applied": False, "plan": model.plan.to_dict()}
        rows_in = split.n_dev + split.n_test
        removed_by_rule = {}
    top, top_note, top_measure = _top_features(model, data)
    features = _schema(model)
    if image_settings is not None:
        features["image_settings"] = dict(image_settings)
    descriptions = _descriptions(model, image_settings, feature_descriptions)
    if descriptions:
        features["descriptions"] = descriptions
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "model_sha256": None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "name": dataset_name,
            "hash": result.dataset_hash,
            "rows_in": rows_in,
            "rows_used": split.n_dev + split.n_test,
            "removed_by_rule": removed_by_rule,
            "classes": class_counts,
        },
        "cleaning": cleaning_part,
        "roles": model.roles.to_dict(),
        "features": features,
        "validation": {
            **split.to_dict(),
            "test_split_text": split.test_text(
                source=test_split_source(dataset_name),
                unit="images" if image_settings is not None else "rows",
            ),
            "n_cv": result.cv.n,
            "n_test_evaluated": result.test.n if result.test is not None else 0,
            "n_boot": result.cv.n_boot,
            "bootstrap_unit": "patient" if result.cv.groups_resampled else "row",
            "fold_scores": list(result.fold_scores),
            "settings": validation.to_dict() if validation is not None else None,
        },
        "positive_class": model.positive_class,
        # The class names themselves live in roles.class_names; this is for readers of the JSON.
        "positive_class_name": (
            str(model.display_name(model.positive_class)) if model.is_binary else None
        ),
        "threshold": {
            "value": model.threshold,
            "method": _threshold_method(result, validation),
            "chosen_on": "out-of-fold development predictions",
        },
        "top_features": top,
        "top_features_note": top_note,
        "top_features_measure": top_measure,
        "metrics": {
            "cv": result.cv.to_dict(),
            "test": result.test.to_dict() if result.test is not None else None,
        },
        "calibration": {
            "cv": calibration_card(result.cv),
            "test": calibration_card(result.test),
            "method": "logistic fit on logit(p): slope with intercept, and intercept with slope "
            "fixed at 1 (calibration-in-the-large); curve over 10 equal-count bins",
            "departure_limit": INTERCEPT_LIMIT,
        },
        # Net benefit at the chosen threshold and a few others; the full curve is rebuilt from
        # the run's cases (modelling.decision). None for multi-class models.
        "decision_curve": decision_curves_card(result.cv, result.test),
        # Prediction sets at 90% and 95%: coverage on the test cases against the target.
        "conformal": conformal_card(result.cv, result.test),
        "leaderboard": [row.to_dict() for row in result.leaderboard],
        # Features that are a reader's assessment (e.g. BI-RADS): performance without them.
        "without_reader": (
            result.without_reader.to_dict() if result.without_reader is not None else None
        ),
        "selection_free": _selection_free(result),
        "warnings": list(result.warnings),
        "versions": {**_library_versions(), **dict(result.versions)},
        "seed": model.config.seed,
        "pipeline": {
            "kind": model.kind,
            **model.config.to_dict(),
            "steps": [f"{name}: {type(step).__name__}" for name, step in model.pipeline.steps],
        },
        "training_seconds": round(float(result.seconds), 2),
        # Predict's distance check; the arrays are in OOD_NAME, checked by their SHA-256.
        "out_of_distribution": (
            {**model.ood.summary(), "file": OOD_NAME, "sha256": None}
            if model.ood is not None
            else None
        ),
    }
    if model.recalibration is not None:
        card["recalibration"] = recalibration_card(model.recalibration)
    if cases is not None and model.roles.analysis_columns():
        n_boot = result.cv.n_boot_requested or result.cv.n_boot
        card["subgroups"] = subgroup_card(model, cases, n_boot=n_boot)
    if site_validation is not None:
        card["leave_one_site_out"] = site_validation.to_dict()
    return _jsonable(card)


def recalibration_card(recalibration: Recalibration) -> dict[str, Any]:
    """The card's ``recalibration`` entry: the fitted intercept and slope, where they were
    fitted, and what recalibration does and does not change."""
    return {
        **recalibration.to_dict(),
        "formula": "p' = expit(intercept + slope × logit(p))",
        "note": "Logistic recalibration changes the probabilities, not the ranking of cases: "
        "discrimination (ROC AUC) is unchanged; the threshold is the parent model's threshold "
        "mapped through the same formula, so the same cases are called positive.",
    }


def _selection_free(result: TrainingResult) -> dict[str, Any] | None:
    """The card's selection-free estimate of ``auto``'s ROC AUC, saying why it differs."""
    metric = result.selection_free
    if metric is None:
        return None
    return {
        "roc_auc": metric.to_dict(),
        "method": metric.method,
        "note": SELECTION_FREE_NOTE,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_model_file(path: Path, what: str) -> bytes:
    """The plaintext of a model file (decrypted; files saved before encryption as they are),
    refused without reading when it is not a regular file or larger than
    ``MEDIMG_MODEL_FILE_MB``."""
    check_file_size(path, model_file_limit())
    try:
        return read_decrypted(path, what=what)
    except OSError as exc:
        raise ModelFileError(
            f"cannot read {path}: {exc.strerror or exc}; check the model directory's "
            "permissions or restore it."
        ) from exc


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def _is_model_dir(path: Path) -> bool:
    return (path / MODEL_NAME).is_file() and (path / CARD_NAME).is_file()


def _refuse_foreign_target(target: Path) -> None:
    """Only a new path, an empty folder or an existing model directory may be (re)written."""
    if target.exists() and not (
        target.is_dir() and (_is_model_dir(target) or not any(target.iterdir()))
    ):
        raise ModelFileError(
            f"{target} exists and is not a medimg model directory; medimg will not overwrite "
            "it. Choose a new directory name or remove it first."
        )


def save_model(
    result: TrainingResult,
    directory: str | os.PathLike[str],
    *,
    cleaning: CleaningReport | None = None,
    dataset_name: str = "",
    validation: ValidationConfig | None = None,
    data: pd.DataFrame | None = None,
    image_settings: Mapping[str, Any] | None = None,
    feature_descriptions: Mapping[str, str] | None = None,
    cases: pd.DataFrame | None = None,
    site_validation: SiteValidation | None = None,
) -> Path:
    """Write ``model.skops`` and ``card.json`` into ``directory``, atomically.

    Both files are written into a temporary directory beside the target, flushed to disk, and
    the directory is then renamed into place. An existing model directory is replaced (moved
    aside, the new one renamed in, the old one deleted), so a crash leaves either the old model
    or the new one, never a half-written one.

    Parameters
    ----------
    result : the training outcome to save.
    directory : the model directory to create or replace.
    cleaning, dataset_name, validation, data, image_settings, feature_descriptions, cases,
    site_validation : passed to :func:`build_card`.

    Returns
    -------
    Path
        The model directory.

    Raises
    ------
    ModelFileError
        When ``directory`` exists and is not an empty folder or a medimg model directory, or it
        cannot be written.
    """
    target = Path(directory).expanduser().absolute()
    _refuse_foreign_target(target)
    card = build_card(
        result,
        cleaning=cleaning,
        dataset_name=dataset_name,
        validation=validation,
        data=data,
        image_settings=image_settings,
        feature_descriptions=feature_descriptions,
        cases=cases,
        site_validation=site_validation,
    )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # What an interrupted save left beside the target (never anything else).
        remove_stale_staging(target.parent)
        staging = staging_dir(target)
    except OSError as exc:
        raise ModelFileError(
            f"cannot write the model directory {target}: {exc.strerror or exc}; choose a "
            "writable location."
        ) from exc
    old: Path | None = None
    try:
        # Serialised in memory and encrypted before anything reaches the disk; the checksums in
        # the card are over the plaintext, so they also vouch for what decryption returns.
        model_bytes = sio.dumps(result.model.pipeline)
        card["model_sha256"] = hashlib.sha256(model_bytes).hexdigest()
        write_encrypted(staging / MODEL_NAME, model_bytes)
        encrypted = [MODEL_NAME]
        if result.model.ood is not None and card.get("out_of_distribution"):
            ood_bytes = sio.dumps(result.model.ood.arrays())
            card["out_of_distribution"]["sha256"] = hashlib.sha256(ood_bytes).hexdigest()
            write_encrypted(staging / OOD_NAME, ood_bytes)
            encrypted.append(OOD_NAME)
        card["encryption"] = {
            "cipher": CIPHER,
            "encrypted": encrypted,
            "not_encrypted": [CARD_NAME],
            "note": "The SHA-256 checksums above are over the decrypted files.",
        }
        card_path = staging / CARD_NAME
        card_path.write_text(json.dumps(card, indent=2, allow_nan=False), encoding="utf-8")
        _fsync_file(card_path)
        fsync_dir(staging)
        if target.exists():
            old = old_dir(target)
            os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
                old = None
            raise
        fsync_dir(target.parent)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelFileError(
            f"cannot write the model directory {target}: {exc.strerror or exc}; choose a "
            "writable location with free space."
        ) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _read_card(directory: Path) -> dict[str, Any]:
    """``card.json``, bounded in size and nesting before it is parsed."""
    card = read_json_file(directory / CARD_NAME)
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise ModelFileError(
            f"{directory / CARD_NAME} has format {found!r}, expected {CARD_FORMAT!r}; this is "
            "not a model card written by this version of medimg. Re-train the model."
        )
    return card


def _as_float(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _model_from_card(pipeline: Pipeline, card: dict[str, Any]) -> MedimgModel:
    features = card["features"]
    pipe = card["pipeline"]
    config_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    config = ModelConfig.from_dict({k: v for k, v in pipe.items() if k in config_keys})
    classes = tuple(features["classes"])
    positive = card["positive_class"]
    if positive is not None and positive not in classes:
        raise ValueError(f"'positive_class' {str(positive)[:80]!r} is not one of the classes")
    return MedimgModel(
        pipeline=pipeline,
        kind=str(pipe["kind"]),
        config=config,
        feature_columns=tuple(features["feature_columns"]),
        numeric_columns=tuple(features["numeric_columns"]),
        categorical_columns=tuple(features["categorical_columns"]),
        categories={c: tuple(v) for c, v in features["categories"].items()},
        feature_ranges={
            c: (_as_float(lo), _as_float(hi)) for c, (lo, hi) in features["feature_ranges"].items()
        },
        classes=classes,
        positive_class=positive,
        threshold=float(card["threshold"]["value"]),
        roles=Roles.from_dict(card["roles"]),
        plan=CleaningPlan.from_dict(card["cleaning"]["plan"]),
        recalibration=_recalibration_from_card(card.get("recalibration")),
    )


def _recalibration_from_card(entry: Any) -> Recalibration | None:
    """The card's ``recalibration`` entry as a :class:`Recalibration` (None without one)."""
    if not entry:
        return None
    return Recalibration(
        intercept=float(entry["intercept"]),
        slope=float(entry["slope"]),
        n_development=int(entry["n_development"]),
        fitted_on=str(entry.get("fitted_on") or "unknown"),
    )


def load_model(directory: str | os.PathLike[str]) -> LoadedModel:
    """Read a model directory written by :func:`save_model`, verifying it first.

    Checks, in order: both files exist; ``card.json`` is a medimg card; the SHA-256 of
    ``model.skops`` (decrypted) matches the card; ``model.skops`` holds only trusted types
    (:data:`TRUSTED_TYPES` on top of skops' defaults) and a scikit-learn Pipeline.

    Parameters
    ----------
    directory : the model directory.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelFileError
        When any check fails; the message says which and what to do.
    EncryptionError
        When a model file is encrypted with a key that is not at hand, or was altered.
    """
    path = Path(directory).expanduser()
    if not (path.is_dir() and _is_model_dir(path)):
        raise ModelFileError(
            f"{path} is not a medimg model directory: expected {MODEL_NAME} and {CARD_NAME}. "
            "Pass the directory that `medimg train -o` or the Train page saved."
        )
    card = _read_card(path)
    model_path = path / MODEL_NAME
    model_bytes = _read_model_file(model_path, "The model file")
    if card.get("model_sha256") != hashlib.sha256(model_bytes).hexdigest():
        raise ModelFileError(
            f"{MODEL_NAME} in {path} was modified after it was saved (checksum mismatch); "
            "re-train or restore the file."
        )
    # Bounded before skops unpacks anything: unpacked size, member count, schema nesting.
    check_skops_archive(model_bytes, str(model_path))
    try:
        found = sio.get_untrusted_types(data=model_bytes)
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, TypeError, RecursionError) as exc:
        raise ModelFileError(
            f"{model_path} is not a skops model file ({exc}); medimg only loads models it "
            "saved itself. Re-train the model."
        ) from exc
    refused = sorted(set(found) - TRUSTED_TYPES)
    if refused:
        raise ModelFileError(
            f"{model_path} contains types medimg does not trust ({', '.join(refused)}); "
            "medimg refuses to load it because loading could run foreign code. Only load "
            "models that medimg trained."
        )
    try:
        pipeline = sio.loads(model_bytes, trusted=list(found))
    except Exception as exc:
        raise ModelFileError(
            f"{model_path} cannot be loaded ({type(exc).__name__}: {exc}); it was probably "
            "saved by an incompatible version. Re-train the model."
        ) from exc
    if not isinstance(pipeline, Pipeline):
        raise ModelFileError(
            f"{model_path} holds a {type(pipeline).__name__}, not a scikit-learn Pipeline; "
            "it was not saved by medimg. Re-train the model."
        )
    try:
        model = _model_from_card(pipeline, card)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(
            f"{path / CARD_NAME} is incomplete (missing or invalid entry {exc}); restore the "
            "file or re-train the model."
        ) from exc
    model = dataclasses.replace(model, ood=_load_ood(path, card))
    return LoadedModel(model=model, card=card, directory=path.absolute())


def _load_ood(directory: Path, card: dict[str, Any]) -> DistanceReference | None:
    """The distance statistics saved with the model; None for models saved before them."""
    entry = card.get("out_of_distribution")
    if not isinstance(entry, dict):
        return None
    name = entry.get("file") or OOD_NAME
    if name != OOD_NAME:
        # Only the file medimg writes, never a path the card names (``/dev/zero``, ``../..``).
        raise ModelFileError(
            f"{directory / CARD_NAME} names {str(name)[:100]!r} as its out-of-distribution "
            f"statistics, where medimg writes {OOD_NAME}; the card was altered. Restore the "
            "model directory or re-train the model."
        )
    path = directory / OOD_NAME
    raw = _read_model_file(path, "The out-of-distribution statistics") if path.is_file() else None
    if raw is None or entry.get("sha256") != hashlib.sha256(raw).hexdigest():
        raise ModelFileError(
            f"{path} is missing or was modified after it was saved (checksum mismatch); "
            "restore the model directory or re-train the model."
        )
    check_skops_archive(raw, str(path))
    try:
        found = sio.get_untrusted_types(data=raw)
        if found:
            raise ModelFileError(
                f"{path} contains types medimg does not trust ({', '.join(sorted(found))}); "
                "medimg refuses to load it. Re-train the model."
            )
        return DistanceReference.from_parts(entry, sio.loads(raw, trusted=[]))
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(
            f"{path} cannot be read ({type(exc).__name__}: {exc}); re-train the model."
        ) from exc
