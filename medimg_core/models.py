"""Model configurations and the deployable model: one scikit-learn Pipeline plus what it needs
to be used safely on new data (feature schema, classes, positive class, threshold, plan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler

from medimg_core.cleaning import CleaningPlan
from medimg_core.roles import Roles

__all__ = ["MODEL_KINDS", "MedimgModel", "ModelConfig", "build_preprocessor"]

ModelKind = Literal["auto", "logreg", "svm", "svm_linear", "rf", "hgb", "knn", "mlp", "seed"]
MODEL_KINDS: tuple[str, ...] = ("logreg", "svm", "svm_linear", "rf", "hgb", "knn", "mlp")
"""Concrete models ``auto`` compares (``seed`` is the textbook preset, not a candidate)."""


@dataclass(frozen=True)
class ModelConfig:
    """How to build the pipeline.

    Parameters
    ----------
    model : "auto" compares every kind in ``MODEL_KINDS`` by cross-validated ROC AUC and keeps
        the best; "seed" is the textbook preset StandardScaler -> PCA(10) -> RandomForest.
        "svm" is the RBF kernel, "svm_linear" the linear one, both with calibrated probabilities.
    scaling : "standard", "minmax", "robust" or "none".
    pca : number of principal components, or None for no PCA.
    class_weight : "balanced" or None.
    params : model hyper-parameters passed to the estimator (e.g. {"C": 1.0}, {"n_estimators": 300}).
    seed : random seed recorded in the card and used for every random step.
    """

    model: ModelKind = "auto"
    scaling: Literal["standard", "minmax", "robust", "none"] = "standard"
    pca: int | None = None
    class_weight: Literal["balanced"] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "scaling": self.scaling,
            "pca": self.pca,
            "class_weight": self.class_weight,
            "params": dict(self.params),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**{**d, "params": dict(d.get("params") or {})})


@dataclass(frozen=True)
class MedimgModel:
    """A fitted pipeline with the schema and decisions that go with it.

    The pipeline takes a DataFrame with exactly ``feature_columns`` (names, in any order) and is
    fitted on an encoded target: for two classes ``y = (label == positive_class)``, so column 1 of
    ``predict_proba`` is the probability of the positive class; for more classes ``y`` is the
    index into ``classes``.

    Attributes
    ----------
    pipeline : the fitted scikit-learn Pipeline (preprocessing steps named "prep", optional
        "pca", final step "model").
    kind : the concrete model kind (never "auto").
    config : the configuration, with ``model`` resolved to ``kind``.
    feature_columns : the original feature names, in training order.
    numeric_columns, categorical_columns : partition of ``feature_columns``.
    categories : categorical column -> categories seen in training.
    feature_ranges : numeric column -> (min, max) seen in training.
    classes : class labels as they appear in the data (strings or numbers), sorted; for binary
        tasks ``classes[1]`` is not necessarily the positive class: see ``positive_class``.
    positive_class : the label value treated as positive (binary only; None for multi-class).
    threshold : decision threshold on P(positive) chosen on development data (binary only).
    roles : the confirmed roles, plan : the cleaning plan, both re-applied to new data.
    """

    pipeline: Pipeline
    kind: str
    config: ModelConfig
    feature_columns: tuple[str, ...]
    numeric_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    categories: dict[str, tuple[Any, ...]]
    feature_ranges: dict[str, tuple[float, float]]
    classes: tuple[Any, ...]
    positive_class: Any
    threshold: float
    roles: Roles
    plan: CleaningPlan

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    def encode_labels(self, y: pd.Series) -> np.ndarray:
        """Label values -> the encoded target the pipeline was fitted on."""
        raise NotImplementedError  # filled in by the training module's owner

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities, shape (n, 2) for binary (column 1 = positive), (n, k) otherwise."""
        raise NotImplementedError

    def predict_labels(self, X: pd.DataFrame) -> np.ndarray:
        """Decisions as label values, at ``threshold`` for binary tasks."""
        raise NotImplementedError


_SCALERS: dict[str, Any] = {
    "standard": StandardScaler,
    "minmax": MinMaxScaler,
    "robust": RobustScaler,
}


def build_preprocessor(
    numeric_columns: tuple[str, ...] | list[str],
    categorical_columns: tuple[str, ...] | list[str],
    *,
    scaling: str = "standard",
    impute_strategy: str = "median",
) -> ColumnTransformer:
    """The "prep" step every medimg pipeline starts with.

    Numeric columns: ``SimpleImputer(impute_strategy)`` then the scaler (or passthrough).
    Categorical columns: most-frequent imputation then one-hot encoding that ignores unseen
    categories (the schema check reports them before prediction). Output feature names are the
    original numeric names and ``<column>_<category>`` for one-hot columns, in that order.

    The imputer is always present: when the plan drops rows with missing values it is fitted on
    complete data and only acts on new cases with gaps, which are flagged at prediction time.
    """
    scaler: Any = "passthrough" if scaling == "none" else _SCALERS[scaling]()
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric_columns:
        num = Pipeline([("impute", SimpleImputer(strategy=impute_strategy)), ("scale", scaler)])
        transformers.append(("num", num, list(numeric_columns)))
    if categorical_columns:
        cat = Pipeline(
            [
                ("impute", SimpleImputer(strategy="most_frequent")),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("cat", cat, list(categorical_columns)))
    return ColumnTransformer(transformers, verbose_feature_names_out=False)


def _pca_step(n_components: int | None, seed: int) -> list[tuple[str, Any]]:
    return [] if not n_components else [("pca", PCA(n_components=n_components, random_state=seed))]
