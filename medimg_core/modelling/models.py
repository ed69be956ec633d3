"""Model configurations and the deployable model: one scikit-learn Pipeline plus what it needs
to be used safely on new data (feature schema, classes, positive class, threshold, plan)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, RobustScaler, StandardScaler
from sklearn.svm import SVC, LinearSVC

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.calibration import Recalibration
from medimg_core.modelling.ood import DistanceReference
from medimg_core.modelling.schema import check_schema
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.roles import Roles, class_key

__all__ = [
    "CLASS_WEIGHT_IGNORED",
    "MODEL_KINDS",
    "MODEL_NAMES",
    "SEED_PCA_COMPONENTS",
    "MedimgModel",
    "ModelConfig",
    "build_pipeline",
    "build_preprocessor",
    "class_names_by_code",
    "default_params",
    "label_key",
    "labels_by_code",
    "model_name",
    "valid_params",
]

ModelKind = Literal["auto", "logreg", "svm", "svm_linear", "rf", "hgb", "knn", "mlp", "seed"]
MODEL_KINDS: tuple[str, ...] = ("logreg", "svm", "svm_linear", "rf", "hgb", "knn", "mlp")
"""Concrete models ``auto`` compares (``seed`` is the textbook preset, not a candidate)."""

CLASS_WEIGHT_IGNORED: frozenset[str] = frozenset({"knn", "mlp"})
"""Kinds whose scikit-learn estimator has no ``class_weight``: a requested weighting is ignored."""

SEED_PCA_COMPONENTS = 10
"""Principal components of the ``seed`` preset (capped at the number of features)."""

MODEL_NAMES: dict[str, str] = {
    "auto": "Auto: compare every model, keep the best",
    "logreg": "Logistic regression",
    "svm": "SVM (RBF kernel)",
    "svm_linear": "SVM (linear)",
    "rf": "Random forest",
    "hgb": "Gradient boosting (histogram)",
    "knn": "k-nearest neighbours",
    "mlp": "Neural network (MLP)",
    "seed": f"Textbook preset: scaler → PCA({SEED_PCA_COMPONENTS}) → random forest",
}
"""Display name of every model kind, the same on every page, figure and card summary."""


def model_name(kind: str | None) -> str:
    """The display name of a model kind (the kind itself when unknown)."""
    if not kind:
        return "unknown model"
    return MODEL_NAMES.get(kind, kind)


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
    ood : the development rows' distance statistics (see :mod:`medimg_core.modelling.ood`);
        None for models saved before they were kept, or trained on too few rows.
    recalibration : a logistic recalibration applied to the pipeline's P(positive) (binary
        only), e.g. fitted on an external site's cases; ``predict_proba`` and every scoring
        path return the recalibrated probabilities, and ``threshold`` is on that scale.
        Discrimination (the ranking of cases) is unchanged. None: the pipeline as trained.
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
    ood: DistanceReference | None = None
    recalibration: Recalibration | None = None

    @property
    def is_binary(self) -> bool:
        return len(self.classes) == 2

    def recalibrate(self, proba: np.ndarray) -> np.ndarray:
        """The pipeline's ``predict_proba`` output with :attr:`recalibration` applied (as given
        without one): column 1 recalibrated, column 0 its complement."""
        out = np.asarray(proba, dtype=float)
        if self.recalibration is None or not self.is_binary or out.ndim != 2 or not len(out):
            return out
        positive = self.recalibration.apply(out[:, 1])
        return np.column_stack([1.0 - positive, positive])

    def display_name(self, value: Any) -> Any:
        """A class as shown to users: its name from ``roles.class_names``, else the value itself.

        Class names live in the roles (so they travel with the model and its card); the model's
        classes, encoding and threshold always use the codes.
        """
        if not self.roles.class_names:
            return value
        return self.roles.class_name(value)

    def encode_labels(self, y: pd.Series | np.ndarray | list[Any]) -> np.ndarray:
        """Label values -> the encoded target the pipeline was fitted on.

        Binary: 1 for ``positive_class``, 0 for the other class. Multi-class: the index into
        ``classes``. Values are matched as they are, then by their text (so ``1`` read from a
        CSV as ``"1"`` still matches).

        Raises
        ------
        DataError
            When a value is missing or was not a class at training time.
        """
        values = pd.Series(y).reset_index(drop=True)
        if values.isna().any():
            raise DataError(
                f"{int(values.isna().sum())} row(s) have no label; remove them (run cleaning) "
                "before evaluating."
            )
        lookup = {label_key(c): i for i, c in enumerate(self.classes)}
        keys = values.map(label_key)
        unseen = sorted({str(v) for v, k in zip(values, keys, strict=True) if k not in lookup})
        if unseen:
            raise DataError(
                f"Label value(s) {unseen[:10]} were not seen when the model was trained "
                f"(classes: {[str(c) for c in self.classes]}); fix or remove those rows."
            )
        index = keys.map(lookup).to_numpy(dtype=int)
        if self.is_binary:
            positive_index = self.classes.index(self.positive_class)
            return (index == positive_index).astype(int)
        return index

    def prepare_features(self, X: pd.DataFrame) -> pd.DataFrame:
        """The feature columns in training order, numbers as floats and categories as text.

        Values in numeric columns that are not numbers become missing; call
        :func:`medimg_core.modelling.schema.check_schema` first to report them (``predict_proba`` does).
        """
        missing = [c for c in self.feature_columns if c not in X.columns]
        if missing:
            raise DataError(
                f"The data lack the feature column(s) {missing} the model was trained on; "
                "add them (same names) and try again."
            )
        out: dict[str, pd.Series] = {}
        for col in self.feature_columns:
            if col in self.numeric_columns:
                out[col] = pd.to_numeric(X[col], errors="coerce").astype(float)
            else:
                out[col] = _as_category_text(X[col])
        return pd.DataFrame(out, index=X.index)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities, shape (n, 2) for binary (column 1 = positive), (n, k) otherwise.

        Raises
        ------
        SchemaError
            When the data lack feature columns or hold text in numeric columns.
        """
        check_schema(self, X).raise_for_errors()
        proba = self.pipeline.predict_proba(self.prepare_features(X))
        return self.recalibrate(np.asarray(proba, dtype=float))

    def predict_labels(self, X: pd.DataFrame) -> np.ndarray:
        """Decisions as label values, at ``threshold`` for binary tasks."""
        proba = self.predict_proba(X)
        if self.is_binary:
            negative = next(c for c in self.classes if c != self.positive_class)
            return np.where(proba[:, 1] >= self.threshold, self.positive_class, negative)
        return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]


def label_key(value: Any) -> str:
    """How labels are compared: by their text, with ``1.0`` and ``1`` the same."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.generic):
        value = value.item()
    return str(value)


def _as_category_text(values: pd.Series) -> pd.Series:
    """Categories as strings (missing kept) so one-hot encoding never sees mixed types."""
    return values.map(lambda v: v if pd.isna(v) else str(v)).astype(object)


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


def _estimator_factories(seed: int) -> dict[str, tuple[Any, dict[str, Any]]]:
    """kind -> (estimator class, default arguments). Calibrated SVMs are wrapped later."""
    return {
        "logreg": (LogisticRegression, {"max_iter": 5000, "random_state": seed}),
        "svm": (SVC, {"kernel": "rbf", "random_state": seed}),
        "svm_linear": (LinearSVC, {"max_iter": 10000, "random_state": seed}),
        "rf": (RandomForestClassifier, {"n_estimators": 300, "random_state": seed, "n_jobs": 1}),
        "hgb": (HistGradientBoostingClassifier, {"random_state": seed}),
        "knn": (KNeighborsClassifier, {"n_neighbors": 15}),
        "mlp": (
            MLPClassifier,
            {"early_stopping": True, "max_iter": 1000, "random_state": seed},
        ),
        "seed": (RandomForestClassifier, {"n_estimators": 100, "random_state": seed, "n_jobs": 1}),
    }


def default_params(kind: str) -> dict[str, Any]:
    """The hyper-parameters medimg sets for ``kind`` before ``ModelConfig.params`` (e.g. 300
    trees for the random forest); empty for an unknown kind."""
    _, defaults = _estimator_factories(0).get(kind, (None, {}))
    return {k: v for k, v in defaults.items() if k != "random_state"}


def valid_params(kind: str) -> tuple[str, ...]:
    """Hyper-parameter names ``ModelConfig.params`` may set for ``kind``.

    For "svm" and "svm_linear" they are the parameters of the SVC / LinearSVC inside the
    calibration wrapper.
    """
    factories = _estimator_factories(0)
    if kind not in factories:
        raise ConfigError(
            f"Unknown model kind {kind!r}; choose one of {[*MODEL_KINDS, 'seed']} "
            "(or 'auto' to compare them)."
        )
    cls, _ = factories[kind]
    return tuple(sorted(cls().get_params(deep=False)))


def build_pipeline(
    config: ModelConfig,
    numeric_columns: tuple[str, ...] | list[str],
    categorical_columns: tuple[str, ...] | list[str],
    *,
    impute_strategy: str = "median",
) -> Pipeline:
    """An unfitted pipeline ``prep`` -> optional ``pca`` -> ``model`` for one concrete kind.

    Parameters
    ----------
    config : the configuration; ``config.model`` must be a concrete kind, not "auto".
        ``config.params`` override the estimator's defaults; ``config.class_weight`` is passed to
        every estimator that supports it (not kNN or MLP). "seed" is StandardScaler -> PCA(10)
        -> RandomForest(100 trees) whatever ``scaling`` says (``pca`` may change the components).
    numeric_columns, categorical_columns : the feature columns by type.
    impute_strategy : "median" or "mean" for numeric columns.

    Returns
    -------
    Pipeline
        Steps "prep", optionally "pca", and "model"; only scikit-learn types.

    Raises
    ------
    ConfigError
        For "auto", an unknown kind, an unknown hyper-parameter or an impossible PCA size.
    DataError
        When there are no feature columns.
    """
    kind = config.model
    if kind == "auto":
        raise ConfigError(
            "build_pipeline needs a concrete model kind, not 'auto'; use train() to compare "
            f"the kinds {list(MODEL_KINDS)}."
        )
    n_features = len(numeric_columns) + len(categorical_columns)
    if n_features == 0:
        raise DataError(
            "There are no feature columns to train on; un-exclude at least one column on the "
            "Data page (or drop it from --exclude)."
        )
    allowed = valid_params(kind)
    unknown = sorted(set(config.params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"Unknown hyper-parameter(s) {unknown} for model {kind!r}; valid ones are "
            f"{list(allowed)}."
        )
    cls, defaults = _estimator_factories(config.seed)[kind]
    arguments = dict(defaults)
    if config.class_weight is not None and kind not in CLASS_WEIGHT_IGNORED:
        arguments["class_weight"] = config.class_weight
    arguments.update(config.params)
    estimator: Any = cls(**arguments)
    if kind in ("svm", "svm_linear"):
        estimator = CalibratedClassifierCV(estimator, method="sigmoid", cv=5)

    if kind == "seed":
        scaling = "standard"
        n_components: int | None = min(config.pca or SEED_PCA_COMPONENTS, n_features)
    else:
        scaling = config.scaling
        n_components = config.pca
    if scaling not in (*_SCALERS, "none"):
        raise ConfigError(f"Unknown scaling {scaling!r}; choose one of {[*_SCALERS, 'none']}.")
    if n_components is not None and n_components < 1:
        raise ConfigError(f"PCA components must be at least 1, got {n_components}.")
    prep = build_preprocessor(
        numeric_columns, categorical_columns, scaling=scaling, impute_strategy=impute_strategy
    )
    return Pipeline([("prep", prep), *_pca_step(n_components, config.seed), ("model", estimator)])


def labels_by_code(classes: tuple[Any, ...], positive_class: Any) -> tuple[Any, ...]:
    """Label value of each encoded class: (negative, positive) for binary, else ``classes``."""
    if len(classes) == 2:
        negative = next(c for c in classes if c != positive_class)
        return (negative, positive_class)
    return classes


def class_names_by_code(
    classes: tuple[Any, ...], positive_class: Any, names: Sequence[tuple[str, str]] = ()
) -> tuple[str, ...]:
    """:func:`labels_by_code` as display strings (``Evaluation.class_names``).

    ``names`` are the user's class names, (code as text, name) pairs as in
    :attr:`Roles.class_names`: a named code shows its name ("malignant" for 0).
    """
    given = dict(names)
    return tuple(
        given.get(class_key(c), str(c)) if given else str(c)
        for c in labels_by_code(classes, positive_class)
    )
