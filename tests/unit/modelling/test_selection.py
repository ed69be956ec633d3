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
    Candidate,
    Development,
    bootstrap_auc_acc,
    candidate_kinds,
    choose_model,
    comparison_config,
    cross_validate_candidates,
    one_standard_error_choice,
    roc_auc,
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
    assert seen[0][1] == "logreg: fold 1 of 3 done (model 1 of 2)"
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
    real = selection.cross_validate

    def knn_fails(config: ModelConfig, *args: object) -> Candidate:
        if config.model == "knn":
            raise ValueError("Expected n_neighbors <= n_samples")
        return real(config, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(selection, "cross_validate", knn_fails)
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
