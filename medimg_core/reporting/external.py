"""External validation recorded in the run's history, with feature shift and recalibration.

One entry point for the command line and the dashboard: :func:`validate_external` scores a
saved model on a new site's labelled file (no refit), compares each feature with the run's
development cases (:func:`medimg_core.modelling.shift.feature_shift`), and records the result in
the registry (:meth:`Registry.record_evaluation`) so the run's history and its report list it.

:func:`save_recalibrated_run` fits logistic recalibration on those external cases and saves the
model with it as a NEW run: same pipeline (discrimination unchanged), probabilities mapped by
``p' = expit(a + b·logit(p))``, threshold mapped through the same formula so the same cases are
called positive. Its figures on the external cases it was fitted on are optimistic by
construction; the card says where the recalibration came from.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.access import Action, Actor
from medimg_core.errors import ConfigError, DataError, MedimgError, ModelFileError
from medimg_core.modelling.calibration import (
    Recalibration,
    calibration_card,
    departure_warnings,
    fit_recalibration,
)
from medimg_core.modelling.decision import decision_curves_card, evaluation_curve
from medimg_core.modelling.evaluation import Evaluation, evaluate_scores, format_metric
from medimg_core.modelling.models import MedimgModel
from medimg_core.modelling.shift import (
    NOTABLE_SHIFT,
    SHIFT_CONVENTION,
    FeatureShift,
    feature_shift,
)
from medimg_core.reporting.summaries import card_metric, human_date, metric_from_card
from medimg_core.store import cases as stored_cases
from medimg_core.store import guarded
from medimg_core.store.model_files import remove_stale_staging, staging_dir
from medimg_core.store.persistence import (
    CARD_NAME,
    MODEL_NAME,
    OOD_NAME,
    LoadedModel,
    recalibration_card,
)
from medimg_core.store.registry import EvaluationRecord, Registry
from medimg_core.workspace import fsync_dir

__all__ = [
    "OPTIMISM_NOTE",
    "ExternalValidation",
    "RecalibratedRun",
    "development_rows",
    "evaluation_history",
    "external_result",
    "recalibrated_dir",
    "recalibration_on_external",
    "save_recalibrated_run",
    "validate_external",
]

OPTIMISM_NOTE = (
    "The recalibration is fitted on these external cases, so calibration measured on the same "
    "cases after recalibration is optimistic; check it on another set of cases. Discrimination "
    "(ROC AUC) is unchanged by recalibration."
)


@dataclass(frozen=True)
class RecalibratedRun:
    """A model saved with a recalibration fitted on external cases, as a new run.

    Attributes
    ----------
    run_id : the new run's registry id (None when it could not be recorded).
    model_dir : its model directory.
    card : its model card (``recalibration`` and ``recalibrated_from`` entries).
    recalibration : the fitted intercept and slope.
    threshold_before, threshold_after : the parent's threshold and the same threshold mapped
        through the recalibration (the same cases are called positive).
    """

    run_id: str | None
    model_dir: Path
    card: dict[str, Any]
    recalibration: Recalibration
    threshold_before: float
    threshold_after: float

    @property
    def sentence(self) -> str:
        """What was saved, in plain words."""
        recal = self.recalibration
        return (
            f"Saved a recalibrated version as run {self.run_id or '(not recorded)'} in "
            f"{self.model_dir}: P' = expit({recal.intercept:.2f} + {recal.slope:.2f} × logit(P)), "
            f"fitted on {recal.fitted_on}. Threshold {self.threshold_before:.3f} maps to "
            f"{self.threshold_after:.3f}, so the same cases are called positive; ROC AUC is "
            "unchanged."
        )


@dataclass(frozen=True)
class ExternalValidation:
    """One external validation of a saved model, as recorded.

    Attributes
    ----------
    evaluation : metrics with 95% intervals on the new cases (partition "external").
    shift : per-feature comparison with the development cases, largest |SMD| first (empty when
        the run's cases are not available).
    result : the JSON-ready dict recorded in the registry (``EvaluationRecord.result``).
    record : the registry record (None when the model is not a recorded run).
    notes : what the reader should know (e.g. why nothing was recorded).
    """

    evaluation: Evaluation
    shift: tuple[FeatureShift, ...]
    result: dict[str, Any]
    record: EvaluationRecord | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def evaluation_id(self) -> str | None:
        return self.record.id if self.record is not None else None


def development_rows(model_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """The run's development cases (stored ``cases.parquet``); None when it has none."""
    try:
        frame = stored_cases.load_cases(model_dir)
    except ModelFileError:
        return None
    return frame[frame[stored_cases.PARTITION] == stored_cases.DEVELOPMENT]


def external_result(
    model: MedimgModel,
    card: dict[str, Any],
    evaluation: Evaluation,
    shift: Sequence[FeatureShift],
    *,
    recalibration: Recalibration | None = None,
) -> dict[str, Any]:
    """The dict recorded for an external evaluation (keys fixed across medimg).

    Keys: ``metrics`` (metric -> {value, ci95, method}), ``calibration`` (as
    :func:`calibration_card`), ``shift`` (list of :meth:`FeatureShift.to_dict`, largest first),
    ``shift_convention``, ``threshold``, ``confusion``, ``class_names``, ``positive_class``,
    ``bootstrap_unit``, ``warnings``, ``decision_curve`` (a DecisionCurve dict, binary only)
    and, when asked, ``recalibration`` (intercept and slope fitted on these cases, with the
    calibration after it, which is optimistic).
    """
    binary = evaluation.is_binary
    warnings = departure_warnings(
        {key: card_metric(card, "cv", key) for key in ("sensitivity", "specificity")},
        evaluation,
    )
    notable = [s.feature for s in shift if s.flag == "notable"]
    if notable:
        warnings.append(
            f"{len(notable)} feature(s) differ notably from development (|SMD| > "
            f"{NOTABLE_SHIFT:g}): {', '.join(notable[:5])}{' …' if len(notable) > 5 else ''}. "
            "The new cases come from a different population or measurement; read the metrics "
            "with that in mind."
        )
    curve = evaluation_curve(evaluation) if binary else None
    out: dict[str, Any] = {
        "metrics": evaluation.to_dict(),
        "calibration": calibration_card(evaluation),
        "shift": [s.to_dict() for s in shift],
        "shift_convention": SHIFT_CONVENTION,
        "threshold": float(evaluation.threshold) if binary else None,
        "confusion": np.asarray(evaluation.confusion).tolist(),
        "class_names": [str(c) for c in evaluation.class_names],
        "positive_class": (
            str(model.display_name(model.positive_class)) if model.is_binary else None
        ),
        "bootstrap_unit": "patient" if evaluation.groups_resampled else "row",
        "warnings": warnings,
        "decision_curve": curve.to_dict() if curve is not None else None,
    }
    if recalibration is not None:
        after = evaluate_scores(
            evaluation.y_true,
            recalibration.apply(evaluation.y_score),
            class_names=evaluation.class_names,
            positive_class=evaluation.positive_class,
            threshold=float(recalibration.apply(np.array([evaluation.threshold]))[0]),
            row_ids=evaluation.row_ids,
            partition="external, recalibrated",
            n_boot=0,
        )
        out["recalibration"] = {
            **recalibration.to_dict(),
            "calibration_after": calibration_card(after),
            "note": OPTIMISM_NOTE,
        }
    return out


def recalibration_on_external(evaluation: Evaluation, dataset_name: str) -> Recalibration:
    """Logistic recalibration fitted on an external evaluation's cases.

    Raises
    ------
    ConfigError
        A multi-class model.
    DataError
        One class only, perfect separation, or a slope of zero or less (the model ranks the
        new cases the wrong way round, which recalibration cannot repair).
    """
    if not evaluation.is_binary:
        raise ConfigError(
            "Recalibration applies to two-class models; this one has "
            f"{len(evaluation.class_names)} classes."
        )
    fitted = fit_recalibration(evaluation.y_true, evaluation.y_score)
    if not fitted.slope > 0:
        raise DataError(
            f"The recalibration slope on {dataset_name} is {fitted.slope:.2f}: on these cases "
            "higher probabilities do not mean more positives, so recalibration cannot repair "
            "the model. Do not use it on this population; retrain with its data instead."
        )
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    return replace(
        fitted,
        fitted_on=f"{evaluation.n} external cases of {dataset_name} (evaluated {when})",
    )


def validate_external(
    actor: Actor,
    loaded: LoadedModel,
    frame: pd.DataFrame,
    *,
    dataset_name: str,
    dataset_hash: str,
    client: str,
    run_id: str | None,
    n_boot: int = 1000,
    seed: int | None = None,
    recalibrate: bool = False,
    registry: Registry | None = None,
) -> ExternalValidation:
    """Evaluate a saved model on a new labelled file and record it in the run's history.

    Parameters
    ----------
    actor : who evaluates (needs the external-validation permission; audited).
    loaded : the saved model.
    frame : the new cases, with the model's label and feature columns.
    dataset_name, dataset_hash : the file's name and content hash (recorded).
    client : "cli" or the dashboard client's address.
    run_id : the model's run; None when it is not recorded (then nothing is recorded).
    n_boot, seed : bootstrap of the 95% intervals (seed defaults to the model's).
    recalibrate : also fit a logistic recalibration on these cases and record its intercept
        and slope (binary models; :func:`save_recalibrated_run` saves it as a new run).

    Raises
    ------
    PermissionDenied, DataError, SchemaError
        As :func:`guarded.evaluate_external`; nothing is recorded then.
    """
    model = loaded.model
    evaluation = guarded.evaluate_external(
        actor,
        model,
        frame,
        client=client,
        run_id=run_id,
        n_boot=n_boot,
        seed=model.config.seed if seed is None else seed,
        registry=registry,
    )
    notes: list[str] = []
    reference = development_rows(loaded.directory)
    shift: tuple[FeatureShift, ...] = ()
    if reference is None or reference.empty:
        notes.append(
            "Feature shift is not shown: this model was saved without its development cases."
        )
    else:
        shift = feature_shift(
            reference, frame, model.feature_columns, categorical=model.categorical_columns
        )
    recalibration = recalibration_on_external(evaluation, dataset_name) if recalibrate else None
    result = external_result(model, loaded.card, evaluation, shift, recalibration=recalibration)
    record = None
    if run_id is None:
        notes.append(
            "The evaluation was not recorded: this model directory is not a run of your "
            "current project (train it with medimg, or open the run's own folder)."
        )
    else:
        record = guarded.record_evaluation(
            actor,
            run_id,
            client=client,
            registry=registry,
            dataset_name=dataset_name,
            dataset_hash=dataset_hash,
            n=evaluation.n,
            result=result,
        )
    return ExternalValidation(
        evaluation=evaluation, shift=shift, result=result, record=record, notes=tuple(notes)
    )


def recalibrated_dir(parent: str | os.PathLike[str], evaluation_id: str | None) -> Path:
    """A new folder beside the parent model for its recalibrated version."""
    parent_path = Path(parent).expanduser().absolute()
    stem = f"{parent_path.name}-recalibrated"
    if evaluation_id:
        stem += f"-{evaluation_id.rsplit('-', 1)[-1]}"
    target = parent_path.with_name(stem)
    n = 2
    while target.exists():
        target = parent_path.with_name(f"{stem}-{n}")
        n += 1
    return target


def _recalibrated_card(
    card: dict[str, Any],
    model: MedimgModel,
    recal: Recalibration,
    *,
    parent_run_id: str | None,
    evaluation_id: str | None,
    threshold_after: float,
    case_frame: pd.DataFrame | None,
) -> dict[str, Any]:
    new = copy.deepcopy(card)
    for key in ("project", "owner", "stored_dataset", "run_context"):
        new.pop(key, None)
    new["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    new["recalibrated_from"] = parent_run_id
    new["recalibration"] = {
        **recalibration_card(recal),
        "evaluation_id": evaluation_id,
        "optimism": OPTIMISM_NOTE,
    }
    before = float(card["threshold"]["value"])
    new["threshold"] = {
        **card["threshold"],
        "value": threshold_after,
        "parent_value": before,
        "method": f"parent threshold {before:.3f} mapped through the recalibration",
        "chosen_on": "the parent model's out-of-fold development predictions",
    }
    warnings = list(new.get("warnings") or [])
    warnings.append(
        f"Recalibrated version of run {parent_run_id or 'unrecorded'} with a recalibration "
        f"fitted on {recal.fitted_on}. {OPTIMISM_NOTE}"
    )
    if case_frame is not None and not case_frame.empty:
        n_boot = int((card.get("validation") or {}).get("n_boot") or 1000)
        cv, test = stored_cases.case_evaluations(model, case_frame, n_boot=n_boot)
        new["metrics"] = {"cv": cv.to_dict(), "test": test.to_dict() if test else None}
        new["calibration"] = {
            **(card.get("calibration") or {}),
            "cv": calibration_card(cv),
            "test": calibration_card(test),
        }
        if "decision_curve" in card:
            new["decision_curve"] = decision_curves_card(cv, test)
    else:
        warnings.append(
            "The parent run kept no cases, so its development and test figures are copied "
            "unchanged: discrimination and the calls at the threshold are the same, but the "
            "calibration figures are those before recalibration."
        )
    new["warnings"] = warnings
    return new


def save_recalibrated_run(
    actor: Actor,
    loaded: LoadedModel,
    evaluation: Evaluation,
    *,
    dataset_name: str,
    client: str,
    parent_run_id: str | None,
    evaluation_id: str | None = None,
    target: str | os.PathLike[str] | None = None,
    registry: Registry | None = None,
) -> RecalibratedRun:
    """Fit logistic recalibration on an external evaluation and save the model as a new run.

    The pipeline is the parent's (same ``model.skops``, so discrimination is unchanged); the new
    card holds ``recalibration`` (intercept, slope, where they were fitted) and
    ``recalibrated_from`` (the parent run); the parent's stored cases are copied with
    recalibrated probabilities, so the new run's development and test figures are those of
    the same cases. The threshold is the parent's mapped through the recalibration (monotone:
    the same cases are called positive). The evaluation is linked to the new run.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not train (audited as refused; nothing is written).
    ConfigError, DataError
        A multi-class model, or no usable recalibration (see :func:`recalibration_on_external`).
    ModelFileError
        When the new model directory cannot be written (nothing half-written is left).
    """
    model = loaded.model
    if model.recalibration is not None:
        raise ConfigError(
            "This model is already a recalibrated version; recalibrate its parent run instead "
            f"({loaded.card.get('recalibrated_from') or 'see its card'})."
        )
    with guarded.audited(
        actor,
        Action.TRAIN,
        client=client,
        object=parent_run_id,
        registry=registry,
    ) as entry:
        recal = recalibration_on_external(evaluation, dataset_name)
        before = float(model.threshold)
        after = float(recal.apply(np.array([before]))[0])
        new_model = replace(model, recalibration=recal, threshold=after)
        try:
            case_frame: pd.DataFrame | None = stored_cases.load_cases(loaded.directory)
        except ModelFileError:
            case_frame = None
        if case_frame is not None:
            case_frame = case_frame.copy()
            column = stored_cases.probability_columns(model)[0]
            case_frame[column] = recal.apply(case_frame[column].to_numpy(dtype=float))
        card = _recalibrated_card(
            loaded.card,
            new_model,
            recal,
            parent_run_id=parent_run_id,
            evaluation_id=evaluation_id,
            threshold_after=after,
            case_frame=case_frame,
        )
        directory = _write_model_dir(
            loaded.directory,
            Path(target)
            if target is not None
            else recalibrated_dir(loaded.directory, evaluation_id),
            card,
            case_frame,
        )
        run_id = None
        if parent_run_id is not None:
            try:
                with _registry(registry) as reg:
                    run_id = reg.record_derived_run(
                        actor, parent_run_id, card=card, model_dir=directory
                    )
                    if evaluation_id is not None:
                        reg.link_recalibrated(actor, evaluation_id, run_id)
            except BaseException:
                if run_id is None:  # not recorded: leave no orphan model folder behind
                    shutil.rmtree(directory, ignore_errors=True)
                raise
            entry.object = run_id
        return RecalibratedRun(
            run_id=run_id,
            model_dir=directory,
            card=card,
            recalibration=recal,
            threshold_before=before,
            threshold_after=after,
        )
    raise AssertionError("unreachable")  # pragma: no cover


class _registry:
    """The given registry, or a new one closed on exit."""

    def __init__(self, registry: Registry | None) -> None:
        self._given = registry
        self._own: Registry | None = None

    def __enter__(self) -> Registry:
        if self._given is not None:
            return self._given
        self._own = Registry()
        return self._own

    def __exit__(self, *exc: object) -> None:
        if self._own is not None:
            self._own.close()


def _write_model_dir(
    parent: Path, target: Path, card: dict[str, Any], case_frame: pd.DataFrame | None
) -> Path:
    """Copy the parent's model files, write the new card and cases, rename into place."""
    target = target.expanduser().absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ModelFileError(
            f"{target} exists and is not empty; choose a new folder for the recalibrated model."
        )
    try:
        remove_stale_staging(target.parent)
        staging = staging_dir(target)
    except OSError as exc:
        raise ModelFileError(
            f"cannot write {target}: {exc.strerror or exc}; choose a writable location."
        ) from exc
    try:
        # The pipeline and distance statistics are the parent's, byte for byte (still
        # encrypted); the card's checksums over their plaintext stay valid.
        for name in (MODEL_NAME, OOD_NAME):
            if (parent / name).is_file():
                shutil.copyfile(parent / name, staging / name)
        (staging / CARD_NAME).write_text(
            json.dumps(card, indent=2, allow_nan=False), encoding="utf-8"
        )
        if case_frame is not None:
            # The IDs are already keyed pseudonyms: written as they are.
            stored_cases.save_cases(staging, case_frame)
        fsync_dir(staging)
        if target.exists():
            target.rmdir()
        os.rename(staging, target)
        fsync_dir(target.parent)
    except (OSError, ValueError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelFileError(
            f"cannot write the recalibrated model to {target}: {exc}; choose a writable "
            "location with free space."
        ) from exc
    except MedimgError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _signed(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.2f}".replace("-", "−")


def evaluation_history(records: Sequence[EvaluationRecord]) -> list[dict[str, str]]:
    """One display row per recorded external evaluation of a run (newest first as given).

    Columns: evaluation, date, user, file, cases, ROC AUC (95% CI), calibration slope,
    calibration intercept, notable shifts, recalibrated run.
    """
    rows: list[dict[str, str]] = []
    for record in records:
        result = record.result or {}
        metrics = result.get("metrics") or {}
        calibration = result.get("calibration") or {}
        notable = [
            s.get("feature") for s in result.get("shift") or [] if s.get("flag") == "notable"
        ]
        rows.append(
            {
                "evaluation": record.id,
                "date": human_date(record.created_at),
                "user": record.username,
                "file": record.dataset_name or record.dataset_hash[:12],
                "cases": str(record.n),
                "ROC AUC (95% CI)": format_metric(metric_from_card(metrics.get("roc_auc"))),
                "calibration slope": _signed(calibration.get("slope")),
                "calibration intercept": _signed(calibration.get("intercept")),
                "notable shifts": ", ".join(str(f) for f in notable[:3])
                + (" …" if len(notable) > 3 else "")
                or "none",
                "recalibrated run": record.recalibrated_run_id or "",
            }
        )
    return rows
