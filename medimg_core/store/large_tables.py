"""Training on a whole table on the server, and saving its run with a bounded set of cases.

A table of a million rows is never held by the server process. A training job's task
(:func:`train_server_table`, run on a job worker) reads the table itself from its source,
re-derives the cleaned rows from the cleaning plan (:func:`~medimg_core.tables.sources.
cleaned_rows`: the same rows the Clean page accounted for, deleted from disk before training
starts), trains with the usual honest validation, and sends back the result with a bounded,
uniformly sampled set of its cases. The server then saves the run (:func:`save_server_run`):
the model and its card hold the figures over every case; ``cases.parquet`` holds at most
:data:`MAX_TEST_CASES` test cases and :data:`MAX_DEVELOPMENT_CASES` development cases, which
is what Evaluate and Explain draw from, and the card says so (``cases_stored``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medimg_core.access import Action, Actor, require
from medimg_core.errors import ModelFileError, RegistryError
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store import cases, guarded, runs
from medimg_core.store.model_files import read_json_file
from medimg_core.store.persistence import CARD_NAME, save_model
from medimg_core.store.registry import Registry
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.partitioned import PartitionedTable
from medimg_core.tables.roles import Roles
from medimg_core.tables.sources import ServerCleaningReport, cleaned_rows

__all__ = [
    "CASES_STORED",
    "MAX_DEVELOPMENT_CASES",
    "MAX_TEST_CASES",
    "ServerTraining",
    "bounded_cases",
    "cases_note",
    "save_server_run",
    "train_server_table",
]

MAX_DEVELOPMENT_CASES = 20_000
"""Development cases (with their out-of-fold probabilities) stored with a run on a server table."""

MAX_TEST_CASES = 50_000
"""Test cases (with their probabilities) stored with a run on a server table."""

CASES_STORED = "cases_stored"
"""Card section: how many cases of each partition ``cases.parquet`` holds, and of how many."""

_CLEANING_SHARE = 0.15


@dataclass(frozen=True)
class ServerTraining:
    """What a training job on a server table sends back to the server.

    Attributes
    ----------
    result : the training outcome (its evaluations cover every case).
    cleaning : the account of the cleaning (every row; ``data`` empty).
    cases : :func:`bounded_cases` of the run's cases.
    n_development, n_test : cases in each partition (all of them, not only those stored).
    table_hash : the content hash of the source table.
    """

    result: TrainingResult
    cleaning: ServerCleaningReport
    cases: pd.DataFrame
    n_development: int
    n_test: int
    table_hash: str


def train_server_table(
    table: PartitionedTable,
    roles: Roles,
    plan: CleaningPlan,
    config: ModelConfig,
    validation: ValidationConfig,
    positive: Any,
    *,
    progress: Callable[[float, str], None] | None = None,
) -> ServerTraining:
    """Clean a server table with ``plan`` and train on every kept row (on a job worker).

    Parameters
    ----------
    table : the table opened lazily (workers must see its files).
    roles, plan, config, validation, positive : as for
        :func:`~medimg_core.modelling.training.train`.
    progress : ``progress(fraction, message)``; may raise
        :class:`~medimg_core.errors.Cancelled` to stop (nothing is left on disk).

    Returns
    -------
    ServerTraining
    """

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(fraction, message)

    report(0.0, "Reading and cleaning the table")
    data, cleaning = cleaned_rows(
        table, roles, plan, progress=lambda f, m: report(_CLEANING_SHARE * f, m)
    )
    result = train(
        data,
        roles,
        config=config,
        validation=validation,
        positive=positive,
        plan=plan,
        progress=lambda f, m: report(_CLEANING_SHARE + (1 - _CLEANING_SHARE) * f, m),
    )
    case_frame = cases.build_cases(result, data)
    n_dev = int((case_frame[cases.PARTITION] == cases.DEVELOPMENT).sum())
    kept = bounded_cases(case_frame, seed=config.seed)
    del data, case_frame
    return ServerTraining(
        result=result,
        cleaning=cleaning,
        cases=kept,
        n_development=n_dev,
        n_test=len(result.test_index),
        table_hash=table.content_hash,
    )


def bounded_cases(
    case_frame: pd.DataFrame,
    *,
    max_development: int = MAX_DEVELOPMENT_CASES,
    max_test: int = MAX_TEST_CASES,
    seed: int = 0,
) -> pd.DataFrame:
    """At most ``max_development`` development and ``max_test`` test cases, each a uniform
    random sample without replacement (from ``seed``), in their original order.

    Parameters
    ----------
    case_frame : :func:`medimg_core.store.cases.build_cases` output.

    Returns
    -------
    pandas.DataFrame
        Development rows first, then test rows, as in ``case_frame``.
    """
    rng = np.random.default_rng(seed)
    pieces = []
    for partition, cap in ((cases.DEVELOPMENT, max_development), (cases.TEST, max_test)):
        positions = np.flatnonzero((case_frame[cases.PARTITION] == partition).to_numpy())
        if len(positions) > cap:
            positions = np.sort(rng.choice(positions, size=cap, replace=False))
        pieces.append(case_frame.iloc[positions])
    return pd.concat(pieces)


def cases_note(card: Mapping[str, Any]) -> str | None:
    """The sentence Evaluate and Explain show when the run's stored cases are a sample, e.g.
    "This run was trained on 1,000,000 rows: the figures on this page use a random sample of
    50,000 of its 200,000 test cases ..."; None when every case is stored."""
    stored = card.get(CASES_STORED) or {}
    parts = []
    for partition in (cases.TEST, cases.DEVELOPMENT):
        entry = stored.get(partition) or {}
        kept, total = int(entry.get("stored", 0)), int(entry.get("of", 0))
        if total > kept:
            parts.append(f"{kept:,} of its {total:,} {partition} cases")
    if not parts:
        return None
    rows = int((card.get("dataset") or {}).get("rows_in") or 0)
    return (
        f"This run was trained on a table of {rows:,} rows on the server. The figures on this "
        f"page are drawn from a random sample of {' and '.join(parts)}; the model card's "
        "metrics, intervals and threshold were computed on every case."
    )


def save_server_run(
    actor: Actor,
    outcome: ServerTraining,
    model_dir: str | os.PathLike[str],
    *,
    client: str,
    dataset_name: str,
    source: Mapping[str, Any],
    validation: ValidationConfig,
) -> runs.SavedRun:
    """Save a run trained on a server table: model, card, the bounded cases, and its registry
    record (audited as "train" with the new run ID).

    The registry stores the stored cases' rows as the run's data (the whole table stays at its
    source: the card's ``source`` section and cleaning plan re-derive it); its record keeps the
    whole table's hash and row count.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not train (audited as refused; nothing is written).
    ModelFileError
        When the model directory cannot be written.
    """
    result = outcome.result
    with guarded.audited(actor, Action.TRAIN, client=client) as entry:
        require(actor, Action.TRAIN)
        development = outcome.cases[outcome.cases[cases.PARTITION] == cases.DEVELOPMENT]
        directory = save_model(
            result,
            Path(model_dir),
            cleaning=outcome.cleaning,
            dataset_name=dataset_name,
            validation=validation,
            data=development,
            cases=outcome.cases,
        )
        n_test_stored = int((outcome.cases[cases.PARTITION] == cases.TEST).sum())
        _add_to_card(
            directory,
            {
                CASES_STORED: {
                    cases.DEVELOPMENT: {"stored": len(development), "of": outcome.n_development},
                    cases.TEST: {"stored": n_test_stored, "of": outcome.n_test},
                    "sampling": "uniform at random without replacement, seed "
                    f"{result.model.config.seed}",
                },
                "source": {
                    **dict(source),
                    "table_hash": outcome.table_hash,
                    "re_derived": "the cleaned rows are not stored: they are re-derived from "
                    "the source and the cleaning plan",
                },
            },
        )
        cases.save_cases(directory, outcome.cases, id_column=result.model.roles.id)
        # The same stamp (project, owner) as every saved run.
        card = runs._stamp_card(directory, actor)
        warnings = tuple(result.warnings)
        run_id: str | None
        try:
            with Registry() as registry:
                run_id = registry.record_run(
                    actor,
                    result,
                    data=outcome.cases,
                    card=card,
                    model_dir=directory,
                    dataset_hash=outcome.table_hash,
                    n_rows=outcome.cleaning.n_kept,
                )
        except RegistryError as exc:
            run_id = None
            warnings = (*warnings, f"The run was not recorded in the registry: {exc}")
        entry.object = run_id
    return runs.SavedRun(
        model_dir=directory, card=card, cases=outcome.cases, run_id=run_id, warnings=warnings
    )


def _add_to_card(directory: Path, sections: Mapping[str, Any]) -> None:
    path = directory / CARD_NAME
    card = read_json_file(path)
    card.update(sections)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(card, indent=2, allow_nan=False, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        raise ModelFileError(
            f"cannot write the model card {path}: {exc}; check that the folder is writable."
        ) from exc
