"""Readable summaries of model cards, and the comparison of saved runs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.modelling.evaluation import METRIC_KEYS, MetricValue, metric_label
from medimg_core.modelling.models import MODEL_KINDS, ModelConfig
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.reporting.comparison import (
    SELECTION_NOTE,
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
    card_positive_text,
    card_summary_frame,
    choice_or_default,
    describe_test_set,
    flow_counts_from_card,
    fold_figure,
    fold_summary,
    human_date,
    interval_text,
    leaderboard_frame,
    leaderboard_rows,
    model_name,
    reader_comparison_frame,
    split_frame,
    threshold_origin,
)
from medimg_core.store.persistence import build_card, save_model
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
    assert facts["Validation"].startswith(
        "3-fold cross-validation; test set: 20% of patients held out at random, "
        f"{result.split.n_test} rows"
    )
    assert "grouped by patient (case_id)" in facts["Validation"]
    assert "Youden" in facts["Threshold"] and "development data" in facts["Threshold"]
    assert "positive class malignant" in facts["Label"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", facts["Created"])
    assert card_metric(card, "test", "roc_auc").value == pytest.approx(
        result.test.metrics["roc_auc"].value
    )
    table = card_summary_frame(card)
    assert list(table.index) == [metric_label(k, "malignant") for k in METRIC_KEYS]
    assert "Specificity for malignant" in table.index
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
    # Two runs scored on one test set: picking between them is a selection step.
    assert comparison_notes(runs) == (SELECTION_NOTE,)
    assert "different data" in comparison_notes([*runs, record(card, "run-3", "cd" * 8)])[1]
    assert len(comparison_figure(runs).data) == 2
    assert run_label(runs[1]) == "Random forest · wdbc · 2024-05-01 10:32"
    with pytest.raises(ConfigError, match="at least one saved run"):
        comparison_figure([])


def test_card_tables_name_the_class_of_numeric_codes() -> None:
    card = {
        "positive_class": 0,
        "roles": {"label": "label", "class_names": {"0": "malignant", "1": "normal, benign"}},
        "dataset": {"classes": {"0": 42, "1": 114}},
        "metrics": {"test": {"sensitivity": {"value": 0.548, "ci95": [0.4, 0.7]}}},
    }
    assert card_positive_text(card) == "malignant (code 0)"
    table = card_summary_frame(card)
    assert table.loc["Sensitivity for malignant", "held-out test"].startswith("0.548")
    facts = card_facts(card)
    assert "0 malignant: 42" in facts["Label"]
    assert facts["Label"].endswith("positive class malignant (code 0)")
    unnamed = {**card, "roles": {"label": "label"}}
    assert card_positive_text(unnamed) == "0"
    assert "Sensitivity for 0" in card_summary_frame(unnamed).index
    assert card_positive_text({"positive_class": None}) is None


def test_card_facts_say_what_is_encrypted_at_rest(tmp_path: Path) -> None:
    frame = load_sample().frame.iloc[:120]
    roles = Roles(label="diagnosis", id="case_id")
    result = train(
        frame,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=20),
        positive="malignant",
    )
    target = save_model(result, tmp_path / "m", dataset_name="wdbc")
    card = json.loads((target / "card.json").read_text())
    stored = card_facts(card)["Encryption at rest"]
    assert stored.startswith("model.skops, ood.skops encrypted at rest (AES-256-GCM)")
    assert stored.endswith("not encrypted: card.json and the run registry")
    older = {k: v for k, v in card.items() if k != "encryption"}
    assert "saved in clear" in card_facts(older)["Encryption at rest"]
    assert "medimg keys rotate" in card_facts(older)["Encryption at rest"]


def test_reader_comparison_table_from_the_card() -> None:
    metric = {"value": 0.9, "ci95": [0.85, 0.95]}
    lower = {"value": 0.75, "ci95": [0.7, 0.8]}
    card = {
        "positive_class": "malignant",
        "metrics": {"cv": {"roc_auc": metric, "sensitivity": metric}, "test": None},
        "without_reader": {
            "reader_columns": ["BI-RADS"],
            "cv": {"roc_auc": lower, "sensitivity": lower},
            "test": None,
        },
    }
    frame = reader_comparison_frame(card)
    assert frame is not None
    assert list(frame.columns) == [
        "With BI-RADS (cross-validated)",
        "Without BI-RADS (cross-validated)",
    ]
    assert frame.loc["ROC AUC", "With BI-RADS (cross-validated)"] == "0.900 (0.850–0.950)"
    assert frame.loc["ROC AUC", "Without BI-RADS (cross-validated)"] == "0.750 (0.700–0.800)"
    assert frame.loc["Sensitivity for malignant", "Without BI-RADS (cross-validated)"].startswith(
        "0.750"
    )
    assert reader_comparison_frame({"metrics": card["metrics"]}) is None


def test_card_facts_and_leaderboard_say_which_auc_is_selection_free() -> None:
    from medimg_core.reporting.summaries import (
        card_facts,
        leaderboard_frame,
        leaderboard_rows,
        selection_free_metric,
    )

    card = {
        "metrics": {"cv": {"roc_auc": {"value": 0.61, "ci95": [0.52, 0.70]}}},
        "selection_free": {
            "roc_auc": {"value": 0.51, "ci95": [0.40, 0.62], "method": "BBC-CV"},
            "method": "BBC-CV",
        },
        "leaderboard": [
            {
                "model": "rf",
                "roc_auc": {"value": 0.61, "ci95": [0.52, 0.70]},
                "chosen": True,
                "note": "ranked as a lighter forest (100 trees)",
            },
            {"model": "logreg", "roc_auc": {"value": 0.60, "ci95": [0.5, 0.7]}, "chosen": False},
        ],
    }
    facts = card_facts(card)
    assert facts["Selection-free CV ROC AUC"].startswith("0.510 (0.400–0.620)")
    assert "optimistic" in facts["CV ROC AUC"]
    assert selection_free_metric(card) == MetricValue(0.51, (0.40, 0.62), method="BBC-CV")
    frame = leaderboard_frame(leaderboard_rows(card["leaderboard"]))
    assert frame["Note"].tolist() == ["ranked as a lighter forest (100 trees)", ""]
    single = {"metrics": card["metrics"]}
    assert "Selection-free CV ROC AUC" not in card_facts(single)
    assert "optimistic" not in card_facts(single)["CV ROC AUC"]
    assert "Note" not in leaderboard_frame(leaderboard_rows(card["leaderboard"][1:]))


def test_card_facts_give_calibration_per_partition(trained: tuple[TrainingResult, dict]) -> None:
    _, card = trained
    cv = card["calibration"]["cv"]
    fact = card_facts(card)["Calibration"]
    intercept = f"{cv['intercept']:.2f}".replace("-", "−")
    assert fact.startswith(f"cross-validated: intercept {intercept}, slope {cv['slope']:.2f}")
    assert "; test: " in fact
    assert "Calibration" not in card_facts({**card, "calibration": None})


def test_threshold_origin_says_where_the_threshold_came_from() -> None:
    card = {
        "threshold": {"value": 0.31, "method": "sensitivity"},
        "validation": {"settings": {"target_sensitivity": 0.95}},
    }
    assert threshold_origin(card, 0.31) == (
        "threshold 0.310 saved with the model: rule “Reach a target sensitivity (95%)”, "
        "chosen on cross-validated development cases"
    )
    moved = threshold_origin(card, 0.5, "cv")
    assert "set by the user on the Evaluate page from the cross-validated (development) cases" in (
        moved
    )
    assert "the saved model keeps 0.310" in moved and "optimistic" not in moved
    assert threshold_origin(card, 0.5, "test").endswith(
        "chosen on the test set, so the test figures are optimistic"
    )
    # Back at the saved value, the saved rule applies whatever page moved the slider.
    assert "chosen on cross-validated development cases" in threshold_origin(card, 0.31, "test")


def test_a_file_split_is_named_as_the_files_own_not_a_share_held_out() -> None:
    frame = load_sample().frame.iloc[:150]
    roles = Roles(label="diagnosis", id="case_id")
    # The file's own test split: every fifth row, 20% as in a random split, but not random.
    mask = tuple(bool(i % 5 == 0) for i in range(len(frame)))
    validation = ValidationConfig(cv=3, n_boot=20, predefined_test=mask)
    result = train(
        frame,
        roles,
        config=ModelConfig(model="logreg"),
        validation=validation,
        positive="malignant",
    )
    assert result.split.test_split == "predefined"
    card = build_card(
        result,
        cleaning=None,
        dataset_name="breastmnist.npz",
        validation=validation,
        image_settings={"features": "first-order"},
        feature_descriptions={},
    )
    card = json.loads(json.dumps(card))
    assert card["validation"]["test_split"] == "predefined"
    expected = "MedMNIST's own test split, 30 images"
    assert card["validation"]["test_split_text"] == expected
    assert describe_test_set(card) == expected
    facts = card_facts(card)
    assert f"test set: {expected}" in facts["Validation"]
    assert "held out" not in facts["Validation"] and "20%" not in facts["Validation"]
    # A card written before the split was named still says what its settings recorded.
    del card["validation"]["test_split_text"], card["validation"]["test_split"]
    assert describe_test_set(card) == "the file's own test split, 30 rows"


def test_a_random_split_says_its_share_and_level(trained: tuple[TrainingResult, dict]) -> None:
    result, card = trained
    assert card["validation"]["test_split"] == "random"
    assert describe_test_set(card) == (
        f"20% of patients held out at random, {result.split.n_test} rows"
    )
    assert result.split.test_text(unit="rows") == describe_test_set(card)


def test_human_date() -> None:
    assert human_date(datetime(2026, 11, 3, 9, 5, tzinfo=UTC)) == "3 November 2026, 09:05 UTC"
    assert human_date("2026-11-30T21:08:49+00:00") == "30 November 2026, 21:08 UTC"
    assert human_date("2026-11-30T22:08:49+01:00") == "30 November 2026, 21:08 UTC"
    assert human_date(datetime(2026, 1, 2, 14, 5)) == "2 January 2026, 14:05 UTC"
    assert human_date(None) == "unknown"
    assert human_date("") == "unknown"
    assert human_date(float("nan")) == "unknown"
    assert human_date("not a date") == "not a date"
