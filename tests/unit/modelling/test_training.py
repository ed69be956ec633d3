"""Tests for medimg_core.modelling.training: honest validation and guards, end to end through train()."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.models import MODEL_KINDS, ModelConfig
from medimg_core.modelling.prediction import evaluate_model, predict
from medimg_core.modelling.schema import check_schema
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig, cv_folds
from medimg_core.tables.roles import Roles
from tests.unit.modelling.conftest import FAST, LOGREG, ROLES


def test_result_is_complete(trained: TrainingResult, wdbc: pd.DataFrame) -> None:
    model = trained.model
    assert model.kind == "logreg"
    assert model.positive_class == "malignant"
    assert model.classes == ("benign", "malignant")
    assert "case_id" not in model.feature_columns and "diagnosis" not in model.feature_columns
    assert len(model.feature_columns) == 30
    assert set(model.feature_ranges) == set(model.feature_columns)
    split = trained.split
    assert split.n_dev + split.n_test == len(wdbc)
    assert split.grouped_by == "case_id"
    assert split.patients_dev == split.n_dev
    assert sum(split.class_counts_test.values()) == split.n_test
    assert split.cv_folds == 3
    assert trained.cv.partition == "cv" and trained.cv.n == split.n_dev
    assert trained.test is not None and trained.test.partition == "test"
    assert trained.test.n == split.n_test
    assert trained.cv.class_names == ("benign", "malignant")
    assert trained.cv.groups_resampled
    assert set(trained.cv.row_ids) <= set(wdbc["case_id"])
    assert len(trained.fold_scores) == 3
    assert trained.oof_proba is not None and trained.oof_proba.shape == (split.n_dev, 2)
    assert set(trained.versions) == {"python", "sklearn", "numpy", "pandas", "shap", "medimg"}
    assert len(trained.dataset_hash) == 64
    assert trained.seconds > 0
    assert trained.leaderboard == ()
    assert set(trained.dev_index).isdisjoint(trained.test_index)
    assert not any("leakage" in w or "separates" in w for w in trained.warnings)
    perfect_test = trained.test.metrics["accuracy"].value == 1.0
    assert any("classified correctly" in w for w in trained.warnings) == perfect_test


def test_logistic_regression_reaches_published_numbers(wdbc: pd.DataFrame) -> None:
    result = train(wdbc, ROLES, config=LOGREG, validation=ValidationConfig(test_size=0, cv=10))
    assert result.test is None
    assert result.cv.metrics["accuracy"].value >= 0.97
    assert result.cv.metrics["roc_auc"].value >= 0.99


def test_seed_preset_is_honest_where_the_textbook_fit_is_perfect(wdbc: pd.DataFrame) -> None:
    X = wdbc.drop(columns=["case_id", "diagnosis"])
    y = wdbc["diagnosis"]
    textbook = make_pipeline(
        StandardScaler(), PCA(10, random_state=42), RandomForestClassifier(100, random_state=42)
    )
    # Fit on everything, score on the same rows: the leaked number the preset must not show.
    assert textbook.fit(X, y).score(X, y) == 1.0
    result = train(wdbc, ROLES, config=ModelConfig(model="seed"), validation=FAST)
    accuracy = result.cv.metrics["accuracy"].value
    assert 0.9 < accuracy < 1.0
    assert [name for name, _ in result.model.pipeline.steps] == ["prep", "pca", "model"]


@pytest.mark.slow
def test_auto_on_the_sample_is_accurate_and_ranks_every_kind() -> None:
    from medimg_core.tables.loading import load_sample

    frame = load_sample("wdbc").frame
    result = train(frame, Roles(label="diagnosis", id="case_id"))
    assert result.cv.metrics["accuracy"].value >= 0.97
    assert result.cv.metrics["roc_auc"].value >= 0.99
    board = result.leaderboard
    assert {row.kind for row in board} == set(MODEL_KINDS)
    aucs = [row.roc_auc.value for row in board]
    assert aucs == sorted(aucs, reverse=True)
    assert sum(row.chosen for row in board) == 1
    chosen = next(row for row in board if row.chosen)
    assert chosen.kind == result.model.kind
    assert chosen.roc_auc.ci95[0] <= chosen.roc_auc.value <= chosen.roc_auc.ci95[1]
    assert result.cv.metrics["roc_auc"].value == pytest.approx(chosen.roc_auc.value)
    seed = train(frame, Roles(label="diagnosis", id="case_id"), config=ModelConfig(model="seed"))
    assert 0.9 < seed.cv.metrics["accuracy"].value < 0.97


def test_auto_reports_progress_over_candidates(wdbc: pd.DataFrame) -> None:
    calls: list[tuple[float, str]] = []
    small = wdbc.iloc[::3]
    result = train(
        small,
        ROLES,
        validation=ValidationConfig(test_size=0.2, cv=2, n_boot=20),
        progress=lambda f, m: calls.append((f, m)),
    )
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("model 7 of 7" in m for _, m in calls)
    assert len(result.leaderboard) == len(MODEL_KINDS)


def _patients(n_patients: int = 60, per_patient: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pid = np.repeat([f"P{i:03d}" for i in range(n_patients)], per_patient)
    sick = np.repeat(np.arange(n_patients) % 2, per_patient)
    return pd.DataFrame(
        {
            "patient": pid,
            "x1": rng.normal(size=len(pid)) + sick,
            "x2": rng.normal(size=len(pid)),
            "label": np.where(sick == 1, "pneumonia", "normal"),
        }
    )


def test_grouped_splits_never_share_a_patient() -> None:
    df = _patients()
    roles = Roles(label="label", id="patient")
    result = train(df, roles, config=LOGREG, validation=FAST)
    dev_ids = set(df.loc[list(result.dev_index), "patient"])
    test_ids = set(df.loc[list(result.test_index), "patient"])
    assert dev_ids.isdisjoint(test_ids)
    assert result.split.patients_dev == len(dev_ids)
    assert result.split.patients_test == len(test_ids)
    assert result.split.patients_dev + result.split.patients_test == 60
    assert result.split.overlap_ids == ()
    assert result.split.to_dict()["level"] == "patient (patient)"
    y = (df["label"] == "pneumonia").astype(int).to_numpy()
    groups = df["patient"].to_numpy()
    dev = np.arange(len(df))
    for train_rows, val_rows in cv_folds(y, groups, dev, ("normal", "pneumonia"), 5, 0):
        assert set(groups[train_rows]).isdisjoint(groups[val_rows])


def test_predefined_test_split_reports_shared_patients() -> None:
    df = _patients()
    mask = tuple(bool(v) for v in (np.arange(len(df)) % 5 == 0))
    result = train(
        df,
        Roles(label="label", id="patient"),
        config=LOGREG,
        validation=ValidationConfig(cv=3, n_boot=20, predefined_test=mask),
    )
    assert result.split.n_test == sum(mask)
    assert len(result.split.overlap_ids) > 0
    assert any("both the development and the test set" in w for w in result.warnings)
    with pytest.raises(ConfigError, match="mask has 3 entries but the data have 180 rows"):
        train(
            df,
            Roles(label="label", id="patient"),
            validation=ValidationConfig(predefined_test=(True,) * 3),
        )


def test_multiclass_iris() -> None:
    iris = load_iris(as_frame=True)
    df = iris.data.copy()
    df["species"] = np.asarray(iris.target_names)[iris.target]
    result = train(df, Roles(label="species"), config=LOGREG, validation=FAST, positive="setosa")
    model = result.model
    assert model.classes == ("setosa", "versicolor", "virginica")
    assert model.positive_class is None
    assert result.cv.y_score.shape == (result.split.n_dev, 3)
    assert result.cv.metrics["accuracy"].value > 0.9
    assert any("positive class 'setosa' was ignored" in w for w in result.warnings)
    out = predict(model, df.head(4))
    assert list(out.frame.columns) == [
        "row",
        "p_setosa",
        "p_versicolor",
        "p_virginica",
        "decision",
        "ood_range",
        "ood_features",
        "ood_distance",
        "ood_flag",
    ]
    assert evaluate_model(model, df, n_boot=20).partition == "external"


def test_categorical_features_and_unseen_categories() -> None:
    df = _patients(per_patient=1, n_patients=120)
    df["scanner"] = np.where(np.arange(len(df)) % 2 == 0, "GE", "Siemens")
    result = train(df, Roles(label="label", id="patient"), config=LOGREG, validation=FAST)
    model = result.model
    assert model.categorical_columns == ("scanner",)
    assert model.categories["scanner"] == ("GE", "Siemens")
    new = df.head(3).copy()
    new["scanner"] = ["GE", "Philips", "Siemens"]
    report = check_schema(model, new)
    assert report.unseen_categories == {"scanner": ("Philips",)}
    assert report.ok
    assert any("not seen in training ['Philips']" in w for w in report.warnings)
    assert len(predict(model, new).frame) == 3


def test_single_class_is_refused(wdbc: pd.DataFrame) -> None:
    only = wdbc[wdbc["diagnosis"] == "benign"]
    with pytest.raises(DataError, match=r"single class \('benign'\)"):
        train(only, ROLES, config=LOGREG)


def test_too_few_rows_per_class_names_the_count(wdbc: pd.DataFrame) -> None:
    few = pd.concat(
        [
            wdbc[wdbc["diagnosis"] == "benign"].head(40),
            wdbc[wdbc["diagnosis"] == "malignant"].head(4),
        ]
    )
    with pytest.raises(
        DataError, match=r"smallest class 'malignant' has 4 patients.*at most 3 folds"
    ):
        train(few, ROLES, config=LOGREG, validation=ValidationConfig(cv=5))
    with pytest.raises(DataError, match=r"smallest class 'malignant' has 4 rows"):
        train(
            few.drop(columns="case_id"),
            Roles(label="diagnosis"),
            config=LOGREG,
            validation=ValidationConfig(cv=5),
        )
    six = pd.concat([few, wdbc[wdbc["diagnosis"] == "malignant"].iloc[4:6]])
    with pytest.raises(DataError, match=r"has 3 rows in the development part.*at most 3 folds"):
        train(
            six.drop(columns="case_id"),
            Roles(label="diagnosis"),
            config=LOGREG,
            validation=ValidationConfig(cv=5, test_size=0.5),
        )


def test_free_text_column_is_refused(wdbc: pd.DataFrame) -> None:
    df = wdbc.copy()
    df["notes"] = [f"seen by dr {i}" for i in range(len(df))]
    with pytest.raises(DataError, match=r"'notes' \(569 distinct values\).*--exclude"):
        train(df, ROLES, config=LOGREG)
    ok = train(
        df,
        Roles(label="diagnosis", id="case_id", exclude=("notes",)),
        config=LOGREG,
        validation=FAST,
    )
    assert "notes" not in ok.model.feature_columns


def test_no_features_is_refused(wdbc: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="no feature columns"):
        train(wdbc[["case_id", "diagnosis"]], ROLES, config=LOGREG)


def test_bad_positive_lists_the_labels(wdbc: pd.DataFrame) -> None:
    with pytest.raises(
        ConfigError, match=r"'cancer' is not among the labels \['benign', 'malignant'\]"
    ):
        train(wdbc, ROLES, config=LOGREG, positive="cancer")


def test_explicit_positive_is_used(wdbc: pd.DataFrame) -> None:
    result = train(wdbc, ROLES, config=LOGREG, validation=FAST, positive="benign")
    assert result.model.positive_class == "benign"
    assert result.cv.class_names == ("malignant", "benign")


def test_missing_labels_point_to_cleaning(wdbc: pd.DataFrame) -> None:
    df = wdbc.copy()
    df.loc[df.index[:3], "diagnosis"] = None
    with pytest.raises(
        DataError, match=r"3 row.*no value in the label column 'diagnosis'.*cleaning"
    ):
        train(df, ROLES, config=LOGREG)


def test_option_errors(wdbc: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="need one model kind, not 'auto'"):
        train(wdbc, ROLES, config=ModelConfig(params={"C": 1.0}))
    with pytest.raises(ConfigError, match="at least 2 folds"):
        train(wdbc, ROLES, validation=ValidationConfig(cv=1))
    with pytest.raises(ConfigError, match="No label column"):
        train(wdbc, Roles(), config=LOGREG)
    with pytest.raises(ConfigError, match=r"PCA with 40 components.*at most 30"):
        train(wdbc, ROLES, config=ModelConfig(model="logreg", pca=40))


def test_leaky_feature_triggers_guards(wdbc: pd.DataFrame) -> None:
    df = wdbc.copy()
    df["biopsy result"] = (df["diagnosis"] == "malignant").astype(float) * 10 + np.linspace(
        0, 1, len(df)
    )
    result = train(df, ROLES, config=LOGREG, validation=FAST)
    text = " ".join(result.warnings)
    assert "'biopsy result' alone separates the classes" in text
    assert "Near-perfect cross-validated performance" in text


def test_duplicated_rows_across_the_split_are_counted(wdbc: pd.DataFrame) -> None:
    twice = pd.concat([wdbc, wdbc], ignore_index=True)
    twice["case_id"] = [f"R{i}" for i in range(len(twice))]
    result = train(twice, ROLES, config=LOGREG, validation=FAST)
    assert result.split.identical_rows_across > 0
    assert any("identical to a development row" in w for w in result.warnings)


def test_imbalance_and_ignored_class_weights(wdbc: pd.DataFrame) -> None:
    skewed = pd.concat(
        [wdbc[wdbc["diagnosis"] == "benign"], wdbc[wdbc["diagnosis"] == "malignant"].head(40)]
    )
    result = train(
        skewed,
        ROLES,
        config=ModelConfig(model="knn", class_weight="balanced"),
        validation=FAST,
    )
    text = " ".join(result.warnings)
    assert "Class imbalance: 'malignant' is only 10% of the cases" in text
    assert "knn model has no class weights" in text


def test_the_steps_compose_into_train(trained: TrainingResult, wdbc: pd.DataFrame) -> None:
    from medimg_core.modelling.evaluation import choose_threshold
    from medimg_core.modelling.task import resolve_task
    from medimg_core.modelling.training import (
        choose_development_threshold,
        refit,
        score,
        summarise_split,
    )

    model = trained.model
    assert trained.oof_proba is not None
    dev = np.flatnonzero(wdbc.index.isin(trained.dev_index))
    test = np.flatnonzero(wdbc.index.isin(trained.test_index))
    X = model.prepare_features(wdbc)
    y = model.encode_labels(wdbc["diagnosis"])
    task = resolve_task(wdbc, ROLES)
    # The threshold comes from the out-of-fold development predictions only.
    threshold = choose_development_threshold(task, y[dev], trained.oof_proba, FAST)
    assert threshold == model.threshold == choose_threshold(y[dev], trained.oof_proba[:, 1])
    # Refitting on the development rows alone gives the same model and ranges from those rows.
    again = refit(
        dataclasses.replace(model, pipeline=None),
        "logreg",
        X.iloc[dev],
        y[dev],
        threshold=threshold,
    )  # type: ignore[arg-type]
    np.testing.assert_allclose(again.predict_proba(wdbc), model.predict_proba(wdbc))
    assert again.feature_ranges["mean area"][1] == X["mean area"].iloc[dev].max()
    groups = wdbc["case_id"].to_numpy()
    cv_eval, test_eval = score(
        model, X, y, dev, test, trained.oof_proba, groups=groups, row_ids=groups, validation=FAST
    )
    assert test_eval is not None and trained.test is not None
    assert cv_eval.metrics["roc_auc"].value == trained.cv.metrics["roc_auc"].value
    assert test_eval.metrics["roc_auc"].value == trained.test.metrics["roc_auc"].value
    assert test_eval.n == len(test) and test_eval.partition == "test"
    _, none = score(
        model,
        X,
        y,
        dev,
        test[:0],
        trained.oof_proba,
        groups=groups,
        row_ids=groups,
        validation=FAST,
    )
    assert none is None
    split = summarise_split(
        task,
        X,
        dev,
        test,
        n_folds=3,
        groups=groups,
        id_column="case_id",
        validation=FAST,
    )
    assert split == trained.split


def _noise_table(n: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    frame["label"] = np.where(np.arange(n) % 2 == 0, "disease", "healthy")
    return frame


def test_auto_reports_a_selection_free_auc_below_the_winners() -> None:
    result = train(
        _noise_table(),
        Roles(label="label"),
        config=ModelConfig(model="auto"),
        validation=ValidationConfig(test_size=0.2, cv=3, n_boot=200),
        positive="disease",
    )
    free = result.selection_free
    assert free is not None and "BBC-CV" in free.method
    winner = result.cv.metrics["roc_auc"].value
    assert free.value < winner
    assert free.ci95[0] <= 0.5 <= free.ci95[1]
    single = train(
        _noise_table(),
        Roles(label="label"),
        config=LOGREG,
        validation=FAST,
        positive="disease",
    )
    assert single.selection_free is None


def test_the_chosen_row_shows_the_deployed_forest_like_the_headline(
    monkeypatch: pytest.MonkeyPatch, wdbc: pd.DataFrame
) -> None:
    from medimg_core.modelling import training

    # Only the forest competes, so it is chosen after being ranked with 100 trees.
    monkeypatch.setattr(training, "candidate_kinds", lambda config, features: ("rf",))
    result = train(wdbc.iloc[::2], ROLES, config=ModelConfig(model="auto"), validation=FAST)
    (row,) = result.leaderboard
    assert row.chosen and row.kind == "rf"
    assert row.roc_auc.value == pytest.approx(result.cv.metrics["roc_auc"].value, abs=1e-12)
    assert row.fold_aucs == result.fold_scores
    assert "100 trees" in row.note and "300 trees" in row.note


# --- Reader-assessment features: performance with and without them (issue 8, section 5) ----


def mammography(n: int = 500, seed: int = 3) -> pd.DataFrame:
    """A BI-RADS-like reader score that carries most of the signal, plus weak measurements."""
    rng = np.random.default_rng(seed)
    malignant = rng.random(n) < 0.4
    return pd.DataFrame(
        {
            "patient": [f"P{i:04d}" for i in range(n)],
            "birads": np.clip(np.round(3 + 1.5 * malignant + rng.normal(0, 0.7, n)), 1, 5),
            "age": np.round(55 + 6 * malignant + rng.normal(0, 11, n)),
            "margin": rng.integers(1, 5, n) + malignant,
            "severity": np.where(malignant, "malignant", "benign"),
        }
    )


MAMMO_ROLES = Roles(label="severity", id="patient", reader=("birads",))


def test_reader_features_are_compared_on_the_same_folds_and_test_rows() -> None:
    data = mammography()
    result = train(data, MAMMO_ROLES, config=LOGREG, validation=FAST, positive="malignant")
    comparison = result.without_reader
    assert comparison is not None
    assert comparison.reader_columns == ("birads",)
    assert comparison.kind == result.model.kind
    # The deployed model keeps the reader's assessment as a feature.
    assert "birads" in result.model.feature_columns
    assert comparison.cv is not None and comparison.test is not None and result.test is not None
    assert comparison.cv.n == result.cv.n and comparison.test.n == result.test.n
    assert comparison.cv.partition == "cv" and comparison.test.partition == "test"
    with_auc = result.cv.metrics["roc_auc"].value
    without_auc = comparison.cv.metrics["roc_auc"].value
    assert without_auc < with_auc - 0.05
    # Without BI-RADS, the same kind on the remaining features, cross-validated by hand.
    manual = train(
        data.drop(columns="birads"),
        Roles(label="severity", id="patient"),
        config=LOGREG,
        validation=FAST,
        positive="malignant",
    )
    assert without_auc == pytest.approx(manual.cv.metrics["roc_auc"].value)
    assert comparison.test.metrics["roc_auc"].value == pytest.approx(
        manual.test.metrics["roc_auc"].value  # type: ignore[union-attr]
    )
    card = comparison.to_dict()
    assert card["reader_columns"] == ["birads"] and card["cv"]["roc_auc"]["value"] == without_auc
    assert "birads" in comparison.note


def test_no_reader_comparison_without_reader_features(trained: TrainingResult) -> None:
    assert trained.without_reader is None


def test_a_reader_score_alone_has_nothing_to_compare_with() -> None:
    data = mammography()[["patient", "birads", "severity"]]
    result = train(data, MAMMO_ROLES, config=LOGREG, validation=FAST, positive="malignant")
    assert result.without_reader is not None
    assert result.without_reader.cv is None
    assert "only input" in result.without_reader.note


def test_refit_keeps_the_development_distance_statistics(trained: TrainingResult) -> None:
    reference = trained.model.ood
    assert reference is not None
    assert reference.columns == trained.model.numeric_columns
    assert reference.n_development == trained.split.n_dev
    assert reference.precision.shape == (len(reference.columns),) * 2
    assert reference.cutoff > 0


@pytest.mark.parametrize("model", ["auto", "logreg"])
def test_values_that_overflow_scaling_are_refused_before_any_model_is_fitted(
    wdbc: pd.DataFrame, model: str
) -> None:
    # Without the check, logreg failed inside scikit-learn ("Input X contains NaN") and "auto"
    # quietly left it out of the comparison.
    data = wdbc.head(60).copy()
    data["mean radius"] = np.where(np.arange(60) % 2, 1.79e308, -1.79e308)
    with pytest.raises(DataError, match=r"too large to compute with.*'mean radius': 60 value"):
        train(data, ROLES, config=ModelConfig(model=model), validation=FAST)
