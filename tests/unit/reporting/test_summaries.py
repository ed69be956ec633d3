"""Readable summaries of model cards, and the comparison of saved runs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.modelling.evaluation import METRIC_LABELS, MetricValue
from medimg_core.modelling.models import MODEL_KINDS, ModelConfig
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.reporting.comparison import (
    comparison_figure,
    comparison_notes,
    run_label,
    runs_frame,
)
from medimg_core.reporting.figures.data import flow_figure
from medimg_core.reporting.summaries import (
    MODEL_CHOICES,
    FoldSummary,
    calibration_frame,
    card_facts,
    card_metric,
    card_summary_frame,
    choice_or_default,
    flow_counts_from_card,
    fold_figure,
    fold_summary,
    interval_text,
    leaderboard_frame,
    leaderboard_rows,
    model_name,
    split_frame,
)
from medimg_core.store.persistence import build_card
from medimg_core.store.registry import RunRecord
from medimg_core.tables.cleaning import clean
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import Roles


@pytest.fixture(scope="module")
def trained() -> tuple[TrainingResult, dict]:
    frame = load_sample().frame.iloc[:200]
    roles = Roles(label="diagnosis", id="case_id")
    report = clean(frame, roles)
    validation = ValidationConfig(cv=3, n_boot=50, threshold="youden")
    result = train(
        report.data,
        roles,
        config=ModelConfig(model="auto"),
        validation=validation,
        positive="malignant",
    )
    card = build_card(result, cleaning=report, dataset_name="wdbc", validation=validation)
    return result, json.loads(json.dumps(card))


def record(
    card: dict, run_id: str, dataset_hash: str = "ab" * 8, kind: str = "logreg"
) -> RunRecord:
    return RunRecord(
        id=run_id,
        created_at=datetime(2024, 5, 1, 10, 32, tzinfo=UTC),
        dataset_name="wdbc",
        dataset_hash=dataset_hash,
        label="diagnosis",
        model_kind=kind,
        positive_class="malignant",
        n_rows=200,
        metrics=card["metrics"],
        config={},
        plan={},
        versions={},
        seed=42,
        model_dir=Path("/nowhere"),
        card=card,
    )


def test_every_choice_has_a_readable_name() -> None:
    assert ("auto", *MODEL_KINDS, "seed") == MODEL_CHOICES
    assert model_name("svm_linear") == "SVM (linear)"
    assert model_name("seed").startswith("Textbook preset: scaler → PCA(10)")
    assert model_name("custom") == "custom"
    assert all(model_name(k) != k for k in MODEL_CHOICES)


def test_choice_or_default_matches_numbers_and_text() -> None:
    assert choice_or_default(1, (0.1, 1.0, 10.0), 0.1) == 1.0
    assert choice_or_default("youden", ("0.5", "youden"), "0.5") == "youden"
    assert choice_or_default(0.5, (0.1, 1.0), 1.0) == 1.0
    assert choice_or_default(None, (0.1, 1.0), 1.0) == 1.0


def test_interval_text() -> None:
    assert interval_text(MetricValue(0.9, (0.85, 0.95))) == "95% CI 0.850–0.950"
    assert interval_text(MetricValue(0.9, (float("nan"), float("nan")))) == "no interval"


def test_leaderboard_survives_the_card(trained: tuple[TrainingResult, dict]) -> None:
    result, card = trained
    rows = leaderboard_rows(card["leaderboard"])
    assert [r.kind for r in rows] == [r.kind for r in result.leaderboard]
    assert rows[0].roc_auc.value == pytest.approx(result.leaderboard[0].roc_auc.value)
    table = leaderboard_frame(rows)
    assert (table["Chosen"] == "✓").sum() == 1
    assert table["CV ROC AUC (95% CI)"].str.contains("–").all()


def test_split_and_flow_add_up(trained: tuple[TrainingResult, dict]) -> None:
    result, card = trained
    split = split_frame(card)
    assert list(split.columns) == ["Development", "Test"]
    assert list(split.index) == ["Rows", "Patients", "Class benign", "Class malignant"]
    assert split.loc["Rows", "Development"] == result.split.n_dev
    assert split.loc["Patients", "Test"] == result.split.patients_test
    assert split.loc["Class malignant":, "Test"].sum() + split.loc["Class benign", "Test"] == (
        result.split.n_test
    )
    counts = flow_counts_from_card(card)
    assert counts["rows in"] == 200
    assert counts["development"] + counts["test"] == result.split.n_dev + result.split.n_test
    flow_figure(counts)


def test_folds_card_facts_and_metrics(trained: tuple[TrainingResult, dict]) -> None:
    result, card = trained
    folds = fold_summary(card)
    assert folds.metric == "ROC AUC"
    assert folds.scores == pytest.approx(result.fold_scores)
    assert "over 3 folds" in folds.text()
    assert len(fold_figure(folds).data) == 1
    assert FoldSummary.from_scores("ROC AUC", []).text() == "No per-fold scores were recorded."
    assert np.isnan(FoldSummary.from_scores("ROC AUC", [0.9]).sd)

    facts = card_facts(card)
    assert facts["Pipeline"] == (
        f"impute missing values → standardise → {model_name(result.model.kind).lower()}"
    )
    assert facts["Validation"].startswith("3-fold cross-validation, 20% held-out test")
    assert "grouped by patient (case_id)" in facts["Validation"]
    assert "Youden" in facts["Threshold"] and "development data" in facts["Threshold"]
    assert "positive class malignant" in facts["Label"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", facts["Created"])
    assert card_metric(card, "test", "roc_auc").value == pytest.approx(
        result.test.metrics["roc_auc"].value
    )
    table = card_summary_frame(card)
    assert list(table.index) == list(METRIC_LABELS.values())
    assert list(table.columns) == ["cross-validated (development)", "held-out test"]

    calibration = calibration_frame([result.cv, result.test])
    assert list(calibration.index) == ["Slope", "Intercept", "Mean predicted", "Observed rate"]
    assert list(calibration.columns) == ["Cross-validated", "Held-out test"]
    assert calibration.loc["Slope", "Cross-validated"] == (
        f"{result.cv.calibration_stats['slope']:.2f}"
    )
    assert calibration_frame([]).empty


def test_runs_are_compared_with_caveats(trained: tuple[TrainingResult, dict]) -> None:
    _, card = trained
    runs = [record(card, "run-1"), record(card, "run-2", kind="rf")]
    table = runs_frame(runs)
    assert list(table["Run"]) == ["run-1", "run-2"]
    assert list(table["Model"]) == ["Logistic regression", "Random forest"]
    assert table["Test ROC AUC (95% CI)"].str.contains("–").all()
    assert comparison_notes(runs) == ()
    assert "different data" in comparison_notes([*runs, record(card, "run-3", "cd" * 8)])[0]
    assert len(comparison_figure(runs).data) == 2
    assert run_label(runs[1]) == "Random forest · wdbc · 2024-05-01 10:32"
    with pytest.raises(ConfigError, match="at least one saved run"):
        comparison_figure([])
