"""Tests for medimg_core.modelling.models: one pipeline per kind, parameter checks, the model's methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from threadpoolctl import threadpool_limits

from medimg_core.errors import ConfigError, DataError, SchemaError
from medimg_core.modelling.models import (
    MODEL_KINDS,
    MedimgModel,
    ModelConfig,
    build_pipeline,
    class_names_by_code,
    label_key,
    valid_params,
)
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.roles import Roles


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_breast_cancer(as_frame=True)
    X = data.data.iloc[:, :6].copy()
    X["site"] = np.where(np.arange(len(X)) % 3 == 0, "A", "B")
    y = (data.target.to_numpy() == 0).astype(int)
    return X, y


NUMERIC = ["mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness"]


@pytest.mark.parametrize("kind", [*MODEL_KINDS, "seed"])
def test_every_kind_fits_and_predicts(kind: str, small: tuple[pd.DataFrame, np.ndarray]) -> None:
    X, y = small
    pipe = build_pipeline(ModelConfig(model=kind, seed=3), NUMERIC, ["site"])  # type: ignore[arg-type]
    assert pipe.steps[0][0] == "prep"
    assert pipe.steps[-1][0] == "model"
    # One native thread, as training does: a shared machine punishes oversubscription.
    with threadpool_limits(limits=1):
        pipe.fit(X, y)
    proba = pipe.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_seed_preset_is_scaler_pca_forest() -> None:
    pipe = build_pipeline(ModelConfig(model="seed", seed=7, scaling="none"), NUMERIC, [])
    assert [name for name, _ in pipe.steps] == ["prep", "pca", "model"]
    pca = pipe.named_steps["pca"]
    assert isinstance(pca, PCA)
    # Capped at the number of features (5 here), otherwise the textbook 10.
    assert pca.n_components == 5
    assert pca.random_state == 7
    forest = pipe.named_steps["model"]
    assert isinstance(forest, RandomForestClassifier)
    assert forest.n_estimators == 100
    assert forest.random_state == 7
    scaler = pipe.named_steps["prep"].transformers[0][1].named_steps["scale"]
    assert type(scaler).__name__ == "StandardScaler"


def test_pca_only_when_asked() -> None:
    assert "pca" not in build_pipeline(ModelConfig(model="logreg"), NUMERIC, []).named_steps
    pipe = build_pipeline(ModelConfig(model="logreg", pca=3), NUMERIC, [])
    assert pipe.named_steps["pca"].n_components == 3


def test_svms_are_calibrated_and_seeded() -> None:
    for kind, inner in (("svm", "SVC"), ("svm_linear", "LinearSVC")):
        model = build_pipeline(ModelConfig(model=kind, seed=5), NUMERIC, []).named_steps["model"]  # type: ignore[arg-type]
        assert isinstance(model, CalibratedClassifierCV)
        assert type(model.estimator).__name__ == inner
        assert model.estimator.random_state == 5
    svc = build_pipeline(ModelConfig(model="svm"), NUMERIC, []).named_steps["model"].estimator
    assert svc.kernel == "rbf"


def test_params_and_class_weight_reach_the_estimator() -> None:
    cfg = ModelConfig(model="rf", class_weight="balanced", params={"n_estimators": 20})
    forest = build_pipeline(cfg, NUMERIC, []).named_steps["model"]
    assert forest.n_estimators == 20
    assert forest.class_weight == "balanced"
    assert forest.n_jobs == 1
    svc = build_pipeline(
        ModelConfig(model="svm", class_weight="balanced", params={"C": 3.0}), NUMERIC, []
    ).named_steps["model"]
    assert svc.estimator.C == 3.0
    assert svc.estimator.class_weight == "balanced"
    # kNN has no class weights: the request is ignored (training states it in a warning).
    knn = build_pipeline(ModelConfig(model="knn", class_weight="balanced"), NUMERIC, [])
    assert knn.named_steps["model"].n_neighbors == 15


def test_unknown_param_names_the_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"Unknown hyper-parameter\(s\) \['trees'\].*n_estimators"
    ):
        build_pipeline(ModelConfig(model="rf", params={"trees": 3}), NUMERIC, [])
    assert "C" in valid_params("svm")
    with pytest.raises(ConfigError, match="Unknown model kind 'xgb'"):
        valid_params("xgb")


def test_auto_and_empty_features_are_refused() -> None:
    with pytest.raises(ConfigError, match="concrete model kind, not 'auto'"):
        build_pipeline(ModelConfig(), NUMERIC, [])
    with pytest.raises(DataError, match="no feature columns"):
        build_pipeline(ModelConfig(model="logreg"), [], [])
    with pytest.raises(ConfigError, match="Unknown scaling 'log'"):
        build_pipeline(ModelConfig(model="logreg", scaling="log"), NUMERIC, [])  # type: ignore[arg-type]


def _model(
    classes: tuple[object, ...], positive: object, threshold: float = 0.5
) -> tuple[MedimgModel, pd.DataFrame]:
    rng = np.random.default_rng(0)
    n = 90
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    labels = np.asarray(classes, dtype=object)[np.arange(n) % len(classes)]
    X["a"] += np.arange(n) % len(classes)
    pipe = build_pipeline(ModelConfig(model="logreg"), ["a", "b"], [])
    model = MedimgModel(
        pipeline=pipe,
        kind="logreg",
        config=ModelConfig(model="logreg"),
        feature_columns=("a", "b"),
        numeric_columns=("a", "b"),
        categorical_columns=(),
        categories={},
        feature_ranges={"a": (float(X.a.min()), float(X.a.max())), "b": (-5.0, 5.0)},
        classes=classes,
        positive_class=positive,
        threshold=threshold,
        roles=Roles(label="y"),
        plan=CleaningPlan(),
    )
    pipe.fit(X, model.encode_labels(pd.Series(labels)))
    return model, X


def test_encode_labels_binary_uses_the_positive_class() -> None:
    model, _ = _model(("benign", "malignant"), "malignant")
    out = model.encode_labels(pd.Series(["benign", "malignant", "malignant"]))
    assert out.tolist() == [0, 1, 1]
    # The positive class need not be the larger one.
    model2, _ = _model(("no", "yes"), "no")
    assert model2.encode_labels(pd.Series(["no", "yes"])).tolist() == [1, 0]


def test_encode_labels_matches_numbers_read_as_text() -> None:
    model, _ = _model((0, 1), 1)
    assert model.encode_labels(pd.Series(["1", "0", 1.0])).tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"Label value\(s\) \['2'\] were not seen"):
        model.encode_labels(pd.Series([0, 2]))
    with pytest.raises(DataError, match="have no label"):
        model.encode_labels(pd.Series([0, None]))


def test_encode_labels_multiclass_is_the_class_index() -> None:
    model, _ = _model(("a", "b", "c"), None)
    assert model.encode_labels(pd.Series(["c", "a", "b"])).tolist() == [2, 0, 1]


def test_predict_proba_and_labels() -> None:
    model, X = _model(("benign", "malignant"), "malignant", threshold=0.5)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 2)
    labels = model.predict_labels(X)
    assert set(labels) <= {"benign", "malignant"}
    expected = np.where(proba[:, 1] >= 0.5, "malignant", "benign")
    assert (labels == expected).all()
    strict, _ = _model(("benign", "malignant"), "malignant", threshold=1.0)
    assert (strict.predict_labels(X) == "benign").all()


def test_predict_labels_multiclass_is_argmax() -> None:
    model, X = _model(("a", "b", "c"), None)
    proba = model.predict_proba(X)
    assert (model.predict_labels(X) == np.array(["a", "b", "c"])[proba.argmax(axis=1)]).all()


def test_predict_proba_checks_the_schema_first() -> None:
    model, X = _model(("benign", "malignant"), "malignant")
    with pytest.raises(SchemaError, match=r"lack 1 feature column\(s\).*\['b'\]"):
        model.predict_proba(X.drop(columns="b"))
    bad = X.astype({"a": object})
    bad.loc[0, "a"] = "n/a?"
    with pytest.raises(SchemaError, match="Column 'a' should hold numbers but contains"):
        model.predict_proba(bad)


def test_prepare_features_orders_and_types_columns() -> None:
    model, X = _model(("benign", "malignant"), "malignant")
    text = X[["b", "a"]].astype(str)
    out = model.prepare_features(text)
    assert list(out.columns) == ["a", "b"]
    assert out.dtypes.tolist() == [np.float64, np.float64]


def test_label_key() -> None:
    assert label_key(1.0) == label_key(1) == label_key("1") == label_key(np.int64(1))
    assert label_key("malignant") == "malignant"
    assert label_key(1.5) == "1.5"


def test_class_names_by_code_shows_the_names_users_gave() -> None:
    names = (("0", "malignant"), ("1", "normal, benign"))
    # BreastMNIST: code 0 is the positive class, so the order is (negative, positive).
    assert class_names_by_code((0, 1), 0, names) == ("normal, benign", "malignant")
    assert class_names_by_code((0.0, 1.0), 0.0, names) == ("normal, benign", "malignant")
    assert class_names_by_code((0, 1), 1) == ("0", "1")
    assert class_names_by_code((0, 1, 2), None, (("2", "drusen"),)) == ("0", "1", "drusen")
