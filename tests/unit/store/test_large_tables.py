"""Training on a whole server table, and its run saved with a bounded, named set of cases."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg_core.access import SINGLE_USER, Actor, Role
from medimg_core.errors import Cancelled, PermissionDenied
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store import cases
from medimg_core.store.large_tables import (
    CASES_STORED,
    ServerTraining,
    bounded_cases,
    cases_note,
    save_server_run,
    train_server_table,
)
from medimg_core.store.registry import Registry
from medimg_core.tables.cleaning import clean, suggest_plan
from medimg_core.tables.roles import Roles
from medimg_core.tables.sources import resolve_table_source, summarise_source

ROLES = Roles(label="diagnosis", id="patient_id")
CONFIG = ModelConfig(model="hgb")
VALIDATION = ValidationConfig(cv=3, n_boot=50)
SOURCE = {"path": "/data/cohort", "format": "parquet"}


@pytest.fixture(scope="module")
def server_table(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    n = 3_000
    frame = pd.DataFrame(rng.normal(size=(n, 5)), columns=[f"f{i}" for i in range(5)])
    risk = frame["f0"] - frame["f1"] + rng.normal(scale=0.5, size=n)
    frame["diagnosis"] = np.where(risk > 0, "malignant", "benign")
    frame.loc[::41, "f3"] = np.nan
    frame.insert(0, "patient_id", [f"P{i // 3:05d}" for i in range(n)])
    frame.loc[7, "diagnosis"] = None
    root = tmp_path_factory.mktemp("data")
    (root / "cohort").mkdir()
    for i, part in enumerate(np.array_split(np.arange(n), 3)):
        frame.iloc[part].to_parquet(root / "cohort" / f"part.{i}.parquet", index=False)
    summary = summarise_source(resolve_table_source("cohort", (root,)), sample_size=500)
    plan = suggest_plan(summary.sample, ROLES)
    return summary.table, plan


@pytest.fixture(scope="module")
def outcome(server_table) -> ServerTraining:  # type: ignore[no-untyped-def]
    table, plan = server_table
    return train_server_table(table, ROLES, plan, CONFIG, VALIDATION, "malignant")


def test_training_on_a_server_table_equals_training_on_it_in_memory(
    server_table,  # type: ignore[no-untyped-def]
    outcome: ServerTraining,
) -> None:
    table, plan = server_table
    report = clean(table.frame.compute(), ROLES, plan)
    here = train(
        report.data, ROLES, config=CONFIG, validation=VALIDATION, positive="malignant", plan=plan
    )
    result = outcome.result
    assert result.dev_index == here.dev_index and result.test_index == here.test_index
    np.testing.assert_array_equal(result.oof_proba, here.oof_proba)
    assert result.cv.metrics["roc_auc"].value == here.cv.metrics["roc_auc"].value
    assert result.test is not None and here.test is not None
    np.testing.assert_array_equal(result.test.y_score, here.test.y_score)
    assert outcome.cleaning.n_kept == report.n_kept == len(report.data)
    assert outcome.cleaning.counts == report.counts
    assert (outcome.n_development, outcome.n_test) == (len(here.dev_index), len(here.test_index))
    # Few cases: every one is kept.
    assert len(outcome.cases) == report.n_kept
    assert outcome.table_hash == table.content_hash


def test_progress_covers_cleaning_then_training_and_can_stop_it(server_table) -> None:  # type: ignore[no-untyped-def]
    table, plan = server_table
    seen: list[tuple[float, str]] = []

    def stop_in_training(fraction: float, message: str) -> None:
        seen.append((fraction, message))
        if "fold" in message.lower():
            raise Cancelled("Stopped at your request; nothing was saved.")

    with pytest.raises(Cancelled):
        train_server_table(
            table, ROLES, plan, CONFIG, VALIDATION, "malignant", progress=stop_in_training
        )
    assert seen[0] == (0.0, "Reading and cleaning the table")
    assert any(m.startswith("Cleaning: pass") for _, m in seen)
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)


def test_bounded_cases_sample_each_partition_in_order() -> None:
    frame = pd.DataFrame(
        {
            "x": np.arange(100),
            cases.PARTITION: [cases.DEVELOPMENT] * 70 + [cases.TEST] * 30,
        },
        index=np.arange(100) * 10,
    )
    kept = bounded_cases(frame, max_development=20, max_test=50, seed=4)
    parts = kept[cases.PARTITION].tolist()
    assert parts == [cases.DEVELOPMENT] * 20 + [cases.TEST] * 30
    assert kept.index[:20].is_monotonic_increasing and kept.index[:20].max() < 700
    pd.testing.assert_frame_equal(kept, bounded_cases(frame, max_development=20, seed=4))
    assert not kept.index[:20].equals(bounded_cases(frame, max_development=20, seed=5).index[:20])


def test_a_saved_server_run_names_its_source_and_what_its_cases_are(
    outcome: ServerTraining, home: Path
) -> None:
    few = bounded_cases(outcome.cases, max_development=300, max_test=200)
    sampled = replace(outcome, cases=few)
    saved = save_server_run(
        SINGLE_USER,
        sampled,
        home / "models" / "m1",
        client="local",
        dataset_name="cohort",
        source=SOURCE,
        validation=VALIDATION,
    )
    card = saved.card
    assert card[CASES_STORED]["development"] == {"stored": 300, "of": outcome.n_development}
    assert card[CASES_STORED]["test"] == {"stored": 200, "of": outcome.n_test}
    assert card["source"]["path"] == "/data/cohort"
    assert card["source"]["table_hash"] == outcome.table_hash
    assert card["dataset"]["rows_in"] == outcome.cleaning.n_input
    # The card's metrics are those over every case, not over the stored sample.
    assert card["validation"]["n_cv"] == outcome.n_development
    assert len(cases.load_cases(saved.model_dir)) == 500
    with Registry() as registry:
        (record,) = registry.list_runs(SINGLE_USER)
    assert record.id == saved.run_id
    assert record.n_rows == outcome.cleaning.n_kept
    assert record.dataset_hash == outcome.table_hash
    note = cases_note(card)
    assert note is not None
    assert f"200 of its {outcome.n_test:,} test cases" in note
    assert f"300 of its {outcome.n_development:,} development cases" in note
    assert cases_note({CASES_STORED: {"test": {"stored": 5, "of": 5}}}) is None


def test_a_viewer_cannot_save_a_server_run(outcome: ServerTraining, home: Path) -> None:
    viewer = Actor("vic", Role.VIEWER, SINGLE_USER.projects, SINGLE_USER.project)
    with pytest.raises(PermissionDenied):
        save_server_run(
            viewer,
            outcome,
            home / "models" / "m2",
            client="local",
            dataset_name="cohort",
            source=SOURCE,
            validation=VALIDATION,
        )
    assert not (home / "models" / "m2").exists()
