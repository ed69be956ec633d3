"""Tests for medimg_core.modelling.selection: candidates on shared folds, AUC, the 1-SE choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling import selection
from medimg_core.modelling.evaluation import MetricValue
from medimg_core.modelling.models import MODEL_KINDS, ModelConfig
from medimg_core.modelling.selection import (
    SELECTION_FREE_METHOD,
    Candidate,
    Comparison,
    Development,
    bootstrap_auc_acc,
    candidate_kinds,
    choose_model,
    comparison_config,
    cross_validate_candidates,
    one_standard_error_choice,
    roc_auc,
    selection_free_auc,
)
from medimg_core.modelling.task import FeatureSpec
from medimg_core.tables.cleaning import CleaningPlan

SPEC = FeatureSpec(("a", "b", "site"), ("a", "b"), ("site",), {"site": ("x", "y", "z")})


def test_candidate_kinds() -> None:
    assert candidate_kinds(ModelConfig(model="auto"), SPEC) == MODEL_KINDS
    assert candidate_kinds(ModelConfig(model="rf"), SPEC) == ("rf",)
    with pytest.raises(ConfigError, match="need one model kind, not 'auto'"):
        candidate_kinds(ModelConfig(model="auto", params={"C": 1.0}), SPEC)
    with pytest.raises(ConfigError, match="PCA with 6 components needs at least 6 features"):
        candidate_kinds(ModelConfig(model="logreg", pca=6), SPEC)


def test_auto_compares_a_lighter_forest_only() -> None:
    auto = ModelConfig(model="auto")
    assert comparison_config(auto, "rf").params == {"n_estimators": 100}
    assert comparison_config(auto, "logreg") == ModelConfig(model="logreg")
    assert comparison_config(ModelConfig(model="rf"), "rf") == ModelConfig(model="rf")


def test_roc_auc_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    score = np.round(rng.random(200) + 0.3 * y, 2)  # ties on purpose
    proba = np.column_stack([1 - score, score])
    assert roc_auc(y, proba) == pytest.approx(roc_auc_score(y, score))
    y3 = rng.integers(0, 3, 300)
    p3 = rng.dirichlet(np.ones(3), 300)
    assert roc_auc(y3, p3) == pytest.approx(roc_auc_score(y3, p3, multi_class="ovr"))


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 150)
    score = np.clip(rng.random(150) * 0.6 + 0.4 * y, 0, 1)
    proba = np.column_stack([1 - score, score])
    auc, acc = bootstrap_auc_acc(y, proba, None, 200, 0)
    assert auc.ci95[0] <= auc.value <= auc.ci95[1]
    assert acc.ci95[0] <= acc.value <= acc.ci95[1]
    none_auc, _ = bootstrap_auc_acc(y, proba, None, 0, 0)
    assert none_auc.value == auc.value and np.isnan(none_auc.ci95[0])


def _candidate(kind: str, fold_aucs: tuple[float, ...]) -> Candidate:
    return Candidate(kind, np.zeros((1, 2)), fold_aucs, fold_aucs, 0.0)


def test_one_standard_error_rule_prefers_the_simpler_model() -> None:
    def metric(v: float) -> tuple[MetricValue, MetricValue]:
        return MetricValue(v, (v, v)), MetricValue(0.9, (0.9, 0.9))

    hgb = _candidate("hgb", (0.95, 0.97, 0.99))
    logreg = _candidate("logreg", (0.95, 0.96, 0.97))
    assert one_standard_error_choice([(hgb, metric(0.97)), (logreg, metric(0.965))]) is logreg
    assert one_standard_error_choice([(hgb, metric(0.97)), (logreg, metric(0.90))]) is hgb


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = (X["a"] + 0.5 * rng.normal(size=60) > 0).astype(int).to_numpy()
    return X, y


def _folds(n: int, k: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    parts = np.array_split(np.arange(n), k)
    return [(np.setdiff1d(np.arange(n), va), va) for va in parts]


def test_candidates_share_the_folds_and_report_progress(
    small: tuple[pd.DataFrame, np.ndarray],
) -> None:
    X, y = small
    spec = FeatureSpec(("a", "b"), ("a", "b"), (), {})
    seen: list[tuple[int, str]] = []
    comparison = cross_validate_candidates(
        ("logreg", "knn"),
        ModelConfig(model="auto"),
        Development(X, y, np.arange(60), _folds(60), spec, CleaningPlan()),
        progress=lambda done, message: seen.append((done, message)),
    )
    assert [c.kind for c in comparison.candidates] == ["logreg", "knn"]
    assert all(c.oof.shape == (60, 2) and len(c.fold_aucs) == 3 for c in comparison.candidates)
    assert [d for d, _ in seen] == [1, 2, 3, 4, 5, 6]
    # In completion order: the fits run on every core, so fold 2 may finish first.
    assert "logreg: fold 1 of 3 done (model 1 of 2)" in [m for _, m in seen]
    best, board = choose_model(comparison, y, None, config=ModelConfig(model="auto"), n_boot=50)
    assert [row.chosen for row in board].count(True) == 1
    assert next(row for row in board if row.chosen).kind == best.kind
    assert board[0].roc_auc.value >= board[1].roc_auc.value
    _, none = choose_model(comparison, y, None, config=ModelConfig(model="logreg"), n_boot=50)
    assert none == ()


def test_a_failing_candidate_is_left_out_with_its_reason(
    small: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = small
    spec = FeatureSpec(("a", "b"), ("a", "b"), (), {})
    real = selection.make_pipeline

    def knn_fails(config: ModelConfig, *args: object) -> object:
        if config.model == "knn":
            raise ValueError("Expected n_neighbors <= n_samples")
        return real(config, *args)  # type: ignore[arg-type]

    # Inline, every fold's task looks the pipeline builder up here.
    monkeypatch.setattr(selection, "make_pipeline", knn_fails)
    development = Development(X, y, np.arange(60), _folds(60), spec, CleaningPlan())
    comparison = cross_validate_candidates(
        ("logreg", "knn"), ModelConfig(model="auto"), development
    )
    assert [c.kind for c in comparison.candidates] == ["logreg"]
    assert comparison.failures == (
        "Model 'knn' was left out of the comparison: Expected n_neighbors <= n_samples",
    )
    with pytest.raises(DataError, match="Model 'knn' was left out"):
        cross_validate_candidates(("knn", "knn"), ModelConfig(model="auto"), development)
    with pytest.raises(ValueError, match="n_neighbors"):
        cross_validate_candidates(("knn",), ModelConfig(model="knn"), development)


def _noise_comparison(
    n: int, n_candidates: int, seed: int
) -> tuple[Comparison, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Candidates whose out-of-fold scores are pure noise: every true AUC is 0.5."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n // 2, dtype=int), np.ones(n - n // 2, dtype=int)]
    folds = _folds(n, 5)
    candidates = []
    for i in range(n_candidates):
        score = rng.random(n)
        oof = np.column_stack([1 - score, score])
        fold_aucs = tuple(roc_auc(y[va], oof[va]) for _, va in folds)
        kind = MODEL_KINDS[i] if i < len(MODEL_KINDS) else f"noise{i}"
        candidates.append(Candidate(kind, oof, fold_aucs, fold_aucs, 0.0))
    return Comparison(tuple(candidates)), y, folds


def test_selection_free_auc_removes_the_winners_curse_on_noise() -> None:
    naive, corrected, covered = [], [], 0
    for seed in range(8):
        comparison, y, folds = _noise_comparison(200, 20, seed)
        _, board = choose_model(comparison, y, None, config=ModelConfig(model="auto"), n_boot=0)
        naive.append(max(row.roc_auc.value for row in board))
        free = selection_free_auc(comparison, y, None, folds, n_boot=300, seed=seed)
        assert free.method == SELECTION_FREE_METHOD
        corrected.append(free.value)
        covered += free.ci95[0] <= 0.5 <= free.ci95[1]
    assert np.mean(naive) > 0.56  # the best of 20 coins looks like a test
    assert abs(np.mean(corrected) - 0.5) < 0.02
    assert covered == 8


def test_selection_free_auc_keeps_a_real_signal_and_resamples_patients() -> None:
    rng = np.random.default_rng(3)
    n = 120
    y = np.tile([0, 1], n // 2)
    groups = np.repeat(np.arange(n // 2), 2)  # two rows per patient
    strong = np.clip(0.5 + 0.35 * (2 * y - 1) + 0.2 * rng.normal(size=n), 0, 1)
    weak = rng.random(n)
    folds = _folds(n, 4)
    cands = []
    for kind, s in (("logreg", strong), ("rf", weak)):
        oof = np.column_stack([1 - s, s])
        aucs = tuple(roc_auc(y[va], oof[va]) for _, va in folds)
        cands.append(Candidate(kind, oof, aucs, aucs, 0.0))
    comparison = Comparison(tuple(cands))
    free = selection_free_auc(comparison, y, groups, folds, n_boot=200, seed=0)
    assert free.value == pytest.approx(roc_auc(y, cands[0].oof), abs=0.03)
    assert free.ci95[0] < free.value < free.ci95[1]
    # Same seed, same answer; no replicates, no estimate.
    again = selection_free_auc(comparison, y, groups, folds, n_boot=200, seed=0)
    assert again == free
    assert np.isnan(selection_free_auc(comparison, y, groups, folds, n_boot=0, seed=0).value)


def _twins(n_patients: int = 40, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Two near-identical rows per patient (e.g. two views of one lesion)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_patients) % 2, 2)
    base = rng.normal(size=(n_patients, 2)) + np.c_[np.arange(n_patients) % 2, np.zeros(n_patients)]
    X = pd.DataFrame(np.repeat(base, 2, axis=0) + 1e-3 * rng.normal(size=(2 * n_patients, 2)))
    X.columns = ["a", "b"]
    return X, y, np.repeat([f"P{i:02d}" for i in range(n_patients)], 2)


def _spy_on_calibration(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    from sklearn.calibration import CalibratedClassifierCV

    seen: list[object] = []
    real = CalibratedClassifierCV.fit

    def spy(self: CalibratedClassifierCV, X: object, y: object, **kw: object) -> object:
        seen.append(self.cv)
        return real(self, X, y, **kw)

    monkeypatch.setattr(CalibratedClassifierCV, "fit", spy)
    return seen


@pytest.mark.parametrize("kind", ["svm", "svm_linear"])
def test_svm_calibration_folds_never_split_a_patient(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y, groups = _twins()
    seen = _spy_on_calibration(monkeypatch)
    spec = FeatureSpec(("a", "b"), ("a", "b"), (), {})
    pipeline = selection.make_pipeline(ModelConfig(model=kind), spec, CleaningPlan(), len(y))  # type: ignore[arg-type]
    selection.fit(pipeline, X, y, groups)
    (splits,) = seen
    assert isinstance(splits, list) and len(splits) == 5
    for train_rows, calibration_rows in splits:
        assert not set(groups[train_rows]) & set(groups[calibration_rows])
        assert set(y[train_rows]) == {0, 1}
    # The saved model keeps a fold count, not the rows' positions; it still predicts.
    assert pipeline.named_steps["model"].cv == 5
    assert pipeline.predict_proba(X).shape == (len(y), 2)
    # Without patient IDs the calibration keeps its ordinary stratified folds.
    seen.clear()
    selection.fit(pipeline, X, y)
    assert seen == [5]


def test_training_an_svm_groups_its_calibration_folds_by_patient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medimg_core.modelling.training import train
    from medimg_core.modelling.validation import ValidationConfig
    from medimg_core.tables.roles import Roles

    X, y, groups = _twins(60)
    frame = X.assign(patient=groups, label=np.where(y == 1, "disease", "healthy"))
    seen = _spy_on_calibration(monkeypatch)
    # The spy records in this process: the CV fits stay here instead of in forked workers.
    monkeypatch.setattr(selection, "_fit_workers", lambda: 1)
    result = train(
        frame,
        Roles(label="label", id="patient"),
        config=ModelConfig(model="svm"),
        validation=ValidationConfig(test_size=0.2, cv=3, n_boot=20),
        positive="disease",
    )
    assert len(seen) == 4  # three CV folds and the final refit
    assert all(isinstance(cv, list) for cv in seen)
    # The refit calibrated on the development patients, each kept on one side.
    n_dev_rows = result.split.n_dev
    final = seen[-1]
    assert sum(len(va) for _, va in final) == n_dev_rows  # type: ignore[union-attr]
    dev_patients = frame.loc[list(result.dev_index), "patient"].to_numpy()
    for train_rows, calibration_rows in final:  # type: ignore[union-attr]
        assert not set(dev_patients[train_rows]) & set(dev_patients[calibration_rows])
    assert result.model.pipeline.named_steps["model"].cv == 5


def test_leaderboard_and_evaluation_share_one_bootstrap() -> None:
    from medimg_core.modelling.evaluation import evaluate_scores

    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(150), 2)
    y = np.repeat(rng.integers(0, 2, 150), 2)
    score = np.clip(0.3 * y + rng.random(300) * 0.7, 0.001, 0.999)
    score[np.isclose(score, 0.5)] = 0.51  # no tie at the threshold: argmax and >= agree
    proba = np.column_stack([1 - score, score])
    auc, acc = bootstrap_auc_acc(y, proba, groups, 250, 9)
    evaluation = evaluate_scores(
        y, score, class_names=("no", "yes"), positive_class="yes", groups=groups, n_boot=250, seed=9
    )
    # The same patients drawn in the same replicates, scored by the same AUC kernel.
    assert auc.ci95 == pytest.approx(evaluation.metrics["roc_auc"].ci95, rel=1e-12)
    assert acc.ci95 == pytest.approx(evaluation.metrics["accuracy"].ci95, rel=1e-12)
    assert auc.value == pytest.approx(evaluation.metrics["roc_auc"].value, rel=1e-12)


def test_unique_patient_ids_calibrate_on_the_ungrouped_folds() -> None:
    from sklearn.model_selection import StratifiedKFold

    y = np.random.default_rng(3).integers(0, 2, 200)
    ids = np.array([f"p{i}" for i in range(200)], dtype=object)
    splits = selection.calibration_splits(y, ids, 5)
    expected = StratifiedKFold(5).split(np.zeros(200), y)
    assert splits is not None
    for (tr, va), (tr0, va0) in zip(splits, expected, strict=True):
        np.testing.assert_array_equal(tr, tr0)
        np.testing.assert_array_equal(va, va0)


@pytest.mark.parametrize("mixed", [False, True])
def test_calibration_splits_keep_patients_whole_and_stratified(mixed: bool) -> None:
    groups = np.repeat(np.arange(60), 3)
    y = (groups % 3 == 0).astype(int)
    if mixed:  # a patient whose rows disagree goes to StratifiedGroupKFold
        y[0] = 1 - y[0]
    splits = selection.calibration_splits(y, groups, 5)
    assert splits is not None and len(splits) == 5
    assert sorted(np.concatenate([va for _, va in splits]).tolist()) == list(range(180))
    for tr, va in splits:
        assert not set(groups[tr]) & set(groups[va])
        assert set(y[va]) == {0, 1}
    # Too few patients of a class for stratified folds: grouped folds all the same.
    few = np.zeros(180, dtype=int)
    few[:9] = 1
    for tr, va in selection.calibration_splits(few, groups, 5) or []:
        assert not set(groups[tr]) & set(groups[va])


def test_parallel_cross_validation_equals_the_serial_run(
    small: tuple[pd.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimg_core import compute

    X, y = small
    spec = FeatureSpec(("a", "b"), ("a", "b"), (), {})
    development = Development(X, y, np.arange(60), _folds(60), spec, CleaningPlan())
    kinds = ("logreg", "rf", "hgb")
    calls: list[int] = []
    real_map = compute.Engine.map

    def spy(self: compute.Engine, fn, items, **kw):  # type: ignore[no-untyped-def]
        calls.append(kw.get("workers") or 1)
        return real_map(self, fn, items, **kw)

    monkeypatch.setattr(compute.Engine, "map", spy)
    monkeypatch.setattr(compute, "pool_forks", lambda: True)
    monkeypatch.setattr(compute, "default_workers", lambda: 2)
    monkeypatch.setattr(selection, "POOL_MIN_CELL_FITS", 0)  # a small table, pooled all the same
    pooled = cross_validate_candidates(kinds, ModelConfig(model="auto"), development)
    monkeypatch.setattr(selection, "_fit_workers", lambda: 1)
    serial = cross_validate_candidates(kinds, ModelConfig(model="auto"), development)
    assert calls == [2, 1]
    # Left to itself, so small a comparison stays in this process.
    monkeypatch.undo()
    calls.clear()
    monkeypatch.setattr(compute.Engine, "map", spy)
    monkeypatch.setattr(compute, "pool_forks", lambda: True)
    monkeypatch.setattr(compute, "default_workers", lambda: 2)
    cross_validate_candidates(kinds, ModelConfig(model="auto"), development)
    assert calls == [1]
    for a, b in zip(pooled.candidates, serial.candidates, strict=True):
        assert a.kind == b.kind
        np.testing.assert_array_equal(a.oof, b.oof)
        assert a.fold_aucs == b.fold_aucs
