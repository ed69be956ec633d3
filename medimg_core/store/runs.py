"""Saving a training run: the model directory (model, card, cases) and its registry record.

The command line and the dashboard both end training here, so a run saved by either opens the
same way later (Runs page, ``medimg evaluate``, ``medimg predict``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medimg_core.access import DEFAULT_PROJECT, Action, Actor, require
from medimg_core.errors import ModelFileError, RegistryError
from medimg_core.modelling.subgroups import SiteValidation
from medimg_core.modelling.training import TrainingResult
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store import cases
from medimg_core.store.model_files import read_json_file
from medimg_core.store.persistence import CARD_NAME, save_model
from medimg_core.store.registry import Registry
from medimg_core.tables.cleaning import CleaningReport

__all__ = ["SavedRun", "save_run"]


@dataclass(frozen=True)
class SavedRun:
    """Where a run went.

    Attributes
    ----------
    model_dir : the model directory (``model.skops``, ``card.json``, ``cases.parquet``).
    card : the model card as written.
    cases : the rows used, with partition and validation probabilities (no identifying columns;
        ``cases.parquet`` on disk holds the patient IDs as keyed pseudonyms).
    run_id : the registry id, or None when ``record`` was off or recording failed softly.
    warnings : the training guards, plus a note when the run could not be recorded.
    """

    model_dir: Path
    card: dict[str, Any]
    cases: pd.DataFrame
    run_id: str | None
    warnings: tuple[str, ...]


def save_run(
    actor: Actor,
    result: TrainingResult,
    model_dir: str | os.PathLike[str],
    *,
    data: pd.DataFrame,
    cleaning: CleaningReport | None,
    dataset_name: str,
    validation: ValidationConfig | None = None,
    strict_registry: bool = True,
    image_settings: Mapping[str, Any] | None = None,
    feature_descriptions: Mapping[str, str] | None = None,
    site_validation: SiteValidation | None = None,
) -> SavedRun:
    """Save the model with its card and cases, then record the run in the registry.

    Parameters
    ----------
    actor : who trained it; needs the right to train in their current project, checked before
        anything is written. The run belongs to that project, with the actor as owner.
    result : the training outcome.
    model_dir : the model directory to create or replace (written atomically).
    data : the cleaned table the model was developed and tested on.
    cleaning : the cleaning report of that table (for the card's data summary).
    dataset_name : a human name for the data (file name or sample name).
    validation : the validation settings used (the card records the threshold rule and folds).
    strict_registry : raise when the run cannot be recorded (command line); otherwise keep the
        saved model and add a warning (dashboard).
    image_settings : for a model trained on image features, ``FeatureTable.settings``; the
        card keeps them so that prediction re-extracts new images identically.
    feature_descriptions : feature name -> one-line description for the card (default, for
        image models, the image features' own descriptions).
    site_validation : leave-one-site-out validation, when it was run (stored in the card as
        ``leave_one_site_out``; the saved model is still the normally trained one).

    Returns
    -------
    SavedRun

    Raises
    ------
    PermissionDenied
        When ``actor`` may not train in their current project (nothing is written).
    ModelFileError
        When the model directory cannot be written.
    RegistryError
        When the run cannot be recorded and ``strict_registry`` is set.
    """
    require(actor, Action.TRAIN)
    case_frame = cases.build_cases(result, data)
    development = case_frame[case_frame[cases.PARTITION] == cases.DEVELOPMENT]
    directory = save_model(
        result,
        Path(model_dir),
        cleaning=cleaning,
        dataset_name=dataset_name,
        validation=validation,
        data=development,
        image_settings=image_settings,
        feature_descriptions=feature_descriptions,
        cases=case_frame,
        site_validation=site_validation,
    )
    cases.save_cases(directory, case_frame, id_column=result.model.roles.id)
    card = _stamp_card(directory, actor)
    warnings = tuple(result.warnings)
    run_id: str | None
    try:
        with Registry() as registry:
            run_id = registry.record_run(actor, result, data=data, card=card, model_dir=directory)
    except RegistryError as exc:
        if strict_registry:
            raise RegistryError(f"the model was saved to {directory}, but {exc}") from exc
        run_id = None
        warnings = (*warnings, f"The run was not recorded in the registry: {exc}")
    return SavedRun(
        model_dir=directory, card=card, cases=case_frame, run_id=run_id, warnings=warnings
    )


def _stamp_card(directory: Path, actor: Actor) -> dict[str, Any]:
    """The saved card with the run's project and owner added (written back atomically), so
    that whoever reads the card alone knows whose model it is and where it belongs."""
    path = directory / CARD_NAME
    card = read_json_file(path)
    card["project"] = actor.project or DEFAULT_PROJECT
    card["owner"] = actor.username
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(card, indent=2, allow_nan=False), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise ModelFileError(
            f"cannot write the model card {path}: {exc}; check that the folder is writable."
        ) from exc
    return card
