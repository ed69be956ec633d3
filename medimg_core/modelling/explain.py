"""SHAP explanations in the clinician's own feature names, for every model kind.

Three routes, chosen from the fitted pipeline, all returning one :class:`Explanation` over the
ORIGINAL feature columns whose contributions add up to the model output:

* **linear** (``LogisticRegression`` last, optionally after PCA): the preprocessor works column by
  column and everything after it is linear, so the log-odds are a sum of one term per original
  column. Interventional SHAP of such a sum is exact and closed-form: each column's term minus its
  mean over the background. The slopes of PCA and the coefficients are obtained by pushing unit
  vectors through the fitted steps, so any scaler and any PCA settings are handled alike.
* **tree** (random forest, extra trees, decision tree or histogram gradient boosting directly after
  the preprocessor): ``shap.TreeExplainer`` on the preprocessed matrix; preprocessed columns map
  one-to-one back to numeric columns and one-hot columns are summed back to their column.
* **permutation** (everything else: PCA before trees, SVMs, kNN, MLP): the antithetic permutation
  algorithm of ``shap.PermutationExplainer`` on the whole pipeline in original column space,
  output the class probability. Its values are estimates: each comes with its standard error
  (from the spread over permutations), and permutations are added, up to a cap, until every
  standard error of a case is below a tolerance.

Every table and figure names the unit of the contributions (:func:`contribution_label`):
"log-odds", "probability" or "decision score" of the class explained.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    RobustScaler,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier

from medimg_core.errors import ConfigError, DataError, SchemaError
from medimg_core.modelling.models import MedimgModel

__all__ = [
    "GLOBAL_CASES",
    "METHOD_LINEAR",
    "METHOD_PERMUTATION",
    "METHOD_TREE",
    "PERMUTATION_TOLERANCE",
    "CaseExplanation",
    "Explanation",
    "ModelExplainer",
    "contribution_label",
    "development_explainer",
    "development_explanation",
    "development_sample",
    "explain",
    "importance_description",
    "standard_error_label",
]

METHOD_LINEAR = "linear (exact, folded through the pipeline)"
METHOD_TREE = "tree (TreeExplainer)"
METHOD_PERMUTATION = "permutation (model-agnostic)"

GLOBAL_CASES = 500
"""Most development cases in the global explanation (Explain page and model card alike)."""

PERMUTATION_TOLERANCE = 0.01
"""Target standard error of each permutation contribution (probability, one percentage point)."""

_ADDITIVITY_TOLERANCE = 1e-6
_SELF_CHECK_ROWS = 5
_PER_COLUMN_SCALERS = (StandardScaler, MinMaxScaler, RobustScaler, MaxAbsScaler)
_PROBABILITY_TREES = (RandomForestClassifier, ExtraTreesClassifier, DecisionTreeClassifier)


@dataclass(frozen=True)
class Explanation:
    """SHAP values for some cases, always over the ORIGINAL feature columns.

    ``values[i].sum() + base_values[i] == model output for case i`` in ``output_space``
    (tested to 1e-6). Columns that the pipeline one-hot encodes or mixes through PCA are folded
    back to the original column.

    Attributes
    ----------
    values : (n, n_features)
    base_values : (n,)
    data : the cases' original feature values (DataFrame, columns = feature_names, index = case ids)
    feature_names : tuple of original feature names
    output_space : "log-odds" or "probability" (the model output the values add up to); for
        multi-class linear and gradient-boosting models "decision score", the class's raw score
        before the softmax (its ``decision_function`` column)
    class_name : the class explained (the positive class for binary tasks)
    method : "linear (exact, folded through the pipeline)", "tree (TreeExplainer)" or
        "permutation (model-agnostic)"
    background_size : rows of background data used (for trees: the training rows recorded in the
        trees, whose average output is the base value)
    note : plain-language statement of the method, its feature space, background and cost
    standard_errors : (n, n_features) standard error of each value, in ``output_space``, for the
        permutation route (its values are estimates); None for the exact routes
    """

    values: np.ndarray
    base_values: np.ndarray
    data: pd.DataFrame
    feature_names: tuple[str, ...]
    output_space: str
    class_name: str
    method: str
    background_size: int
    note: str
    standard_errors: np.ndarray | None = None

    @property
    def unit(self) -> str:
        """What the values are in, e.g. "log-odds of malignant"."""
        return f"{self.output_space} of {self.class_name}"

    def global_importance(self) -> pd.Series:
        """Mean |SHAP| per feature, largest first."""
        imp = np.abs(self.values).mean(axis=0)
        return pd.Series(imp, index=list(self.feature_names)).sort_values(ascending=False)

    def case(self, i: int) -> CaseExplanation:
        """One case's explanation by position."""
        return CaseExplanation(
            case_id=self.data.index[i],
            values=pd.Series(self.values[i], index=list(self.feature_names)),
            base_value=float(self.base_values[i]),
            data=self.data.iloc[i],
            output_space=self.output_space,
            class_name=self.class_name,
            method=self.method,
            standard_errors=None
            if self.standard_errors is None
            else pd.Series(self.standard_errors[i], index=list(self.feature_names)),
        )

    def to_frame(self) -> pd.DataFrame:
        """Long format for downloads: one row per case and feature.

        Returns
        -------
        pandas.DataFrame
            Columns ``case_id``, ``feature``, ``value`` (the original feature value, kept as
            given, so categories stay text), ``explained class``, and the contribution named with
            its unit (``contribution (log-odds)``, see :func:`contribution_label`), followed by
            its standard error (``standard error (probability)``) for permutation estimates;
            cases in the order of ``data``, features in the order of ``feature_names``.
        """
        n, p = self.values.shape
        values = self.data.loc[:, list(self.feature_names)].to_numpy(dtype=object)
        columns: dict[str, Any] = {
            "case_id": np.repeat(self.data.index.to_numpy(dtype=object), p),
            "feature": np.tile(np.array(self.feature_names, dtype=object), n),
            "value": values.reshape(-1),
            "explained class": np.full(n * p, self.class_name, dtype=object),
            contribution_label(self.output_space, capital=False): np.asarray(
                self.values, dtype=float
            ).reshape(-1),
        }
        if self.standard_errors is not None:
            columns[standard_error_label(self.output_space, capital=False)] = np.asarray(
                self.standard_errors, dtype=float
            ).reshape(-1)
        return pd.DataFrame(columns)


def contribution_label(output_space: str, *, capital: bool = True) -> str:
    """The name of a contribution column or axis with its unit: "Contribution (log-odds)"."""
    return f"{'C' if capital else 'c'}ontribution ({output_space})"


def standard_error_label(output_space: str, *, capital: bool = True) -> str:
    """The name of a standard-error column with its unit: "Standard error (probability)"."""
    return f"{'S' if capital else 's'}tandard error ({output_space})"


@dataclass(frozen=True)
class CaseExplanation:
    """One case: contributions per original feature, the base value and the feature values.

    ``standard_errors`` (permutation estimates only, else None) gives each contribution's
    standard error in ``output_space``.
    """

    case_id: Any
    values: pd.Series
    base_value: float
    data: pd.Series
    output_space: str
    class_name: str
    method: str
    standard_errors: pd.Series | None = None

    @property
    def unit(self) -> str:
        """What the values are in, e.g. "log-odds of malignant"."""
        return f"{self.output_space} of {self.class_name}"

    @property
    def output(self) -> float:
        """Model output in ``output_space`` (base value + sum of contributions)."""
        return float(self.base_value + self.values.sum())

    def top_reasons(self, k: int = 3) -> list[tuple[str, Any, float]]:
        """The k largest |contributions|: (feature, value, contribution)."""
        order = self.values.abs().sort_values(ascending=False).index[:k]
        return [(str(f), self.data[f], float(self.values[f])) for f in order]


class ModelExplainer:
    """Explains any rows of one fitted model; build once per model and background, then reuse.

    Parameters
    ----------
    model : MedimgModel
        The fitted model.
    background : pandas.DataFrame
        Rows standing in for "feature unknown" (usually the development data). Must hold every
        feature column. The linear route uses all of them (it only needs their mean); the
        permutation route samples at most ``max_background`` rows with ``seed``; the tree route
        uses the training distribution recorded in the trees instead (path-dependent TreeSHAP).
    max_background : int, default 100
        Cap on background rows for the permutation route (its cost grows linearly with it).
    seed : int, default 0
        Seed for the background sample and the permutations.
    class_index : int or None
        Encoded class to explain: for binary models 1 = the positive class (default) and 0 = the
        other; for multi-class models the index into ``model.classes`` (default 0; the dashboard
        passes the predicted class).
    max_evals : int or None
        Masked model evaluations per case in the permutation route's first round; default
        ``max(500, 2 * n_features + 1)`` and never below two permutations
        (``2 * (2 * n_features + 1)``): the standard errors need at least two.
    tolerance : float or None, default ``PERMUTATION_TOLERANCE`` (0.01)
        Permutation route: target standard error of every contribution of a case, in
        probability. Rounds of as many permutations as the first are added for the cases still
        above it, up to ``max_permutations``; None keeps the first round only.
    max_permutations : int or None
        Cap on permutations per case; default four rounds.

    Attributes
    ----------
    method : str
        One of ``METHOD_LINEAR``, ``METHOD_TREE``, ``METHOD_PERMUTATION``.
    output_space, class_name, background_size, note : str, str, int, str
        Copied into every :class:`Explanation`.
    """

    def __init__(
        self,
        model: MedimgModel,
        background: pd.DataFrame,
        *,
        max_background: int = 100,
        seed: int = 0,
        class_index: int | None = None,
        max_evals: int | None = None,
        tolerance: float | None = PERMUTATION_TOLERANCE,
        max_permutations: int | None = None,
    ) -> None:
        if max_background < 1:
            raise ConfigError(
                f"max_background={max_background} leaves no background rows; "
                "pass a positive number such as 100."
            )
        self.model = model
        self.max_background = max_background
        self.seed = seed
        self.class_index, self.class_name = _resolve_class(model, class_index)
        frame = _feature_frame(model, background, what="background data")
        route = _build_route(model, frame, self.class_index, self.class_name)
        if route is None or not _reproduces_model(
            route, model, frame.iloc[:_SELF_CHECK_ROWS], self.class_index
        ):
            sample = _sample_rows(frame, max_background, seed)
            route = _PermutationRoute(
                model,
                sample,
                self.class_index,
                self.class_name,
                seed,
                max_evals,
                tolerance=tolerance,
                max_permutations=max_permutations,
            )
        self._route: _Route = route
        self.method = self._route.method
        self.output_space = self._route.output_space
        self.background_size = self._route.background_size
        self.note = self._route.note
        if model.recalibration is not None and model.is_binary:
            # Recalibration is monotone: it changes the probabilities, never which features
            # push a case up or down; the contributions add up to the model as trained.
            self.note += (
                " This model's probabilities are recalibrated ("
                f"{model.recalibration.fitted_on}); the explanation is of the model before "
                "recalibration, whose contributions add up to its un-recalibrated output. "
                "Recalibration does not change the order of the cases or which features "
                "matter."
            )

    def explain(self, X: pd.DataFrame) -> Explanation:
        """SHAP values for the rows of ``X`` over the original feature columns.

        Parameters
        ----------
        X : pandas.DataFrame
            Cases to explain; must hold every feature column (extra columns are ignored). Missing
            values are allowed: the pipeline imputes them and ``data`` shows them as missing.

        Returns
        -------
        Explanation
            ``values[i].sum() + base_values[i]`` equals the model output of case ``i`` in
            ``output_space``; ``data`` keeps ``X``'s index (the case IDs).
        """
        frame = _feature_frame(self.model, X, what="data to explain")
        values, base_values, standard_errors = self._route.values(frame)
        return Explanation(
            values=values,
            base_values=base_values,
            data=frame,
            feature_names=tuple(self.model.feature_columns),
            output_space=self.output_space,
            class_name=self.class_name,
            method=self.method,
            background_size=self.background_size,
            note=self.note,
            standard_errors=standard_errors,
        )


def explain(
    model: MedimgModel,
    X: pd.DataFrame,
    *,
    background: pd.DataFrame | None = None,
    max_background: int = 100,
    seed: int = 0,
    class_index: int | None = None,
) -> Explanation:
    """SHAP values for the rows of ``X``, in the model's original feature names.

    Parameters
    ----------
    model : MedimgModel
        The fitted model.
    X : pandas.DataFrame
        Cases to explain (every feature column; missing values allowed).
    background : pandas.DataFrame, optional
        Rows standing in for "feature unknown", usually the development data. Defaults to ``X``
        itself, which suits a batch (contributions are then relative to the batch average) but
        not a single case (every contribution would be zero): pass the development data then.
    max_background : int, default 100
        Cap on background rows for the permutation route.
    seed : int, default 0
        Seed for the background sample and the permutations.
    class_index : int or None
        Encoded class to explain (see :class:`ModelExplainer`).

    Returns
    -------
    Explanation

    See Also
    --------
    ModelExplainer : the same, built once and reused for many calls.
    """
    explainer = ModelExplainer(
        model,
        X if background is None else background,
        max_background=max_background,
        seed=seed,
        class_index=class_index,
    )
    return explainer.explain(X)


def development_explainer(
    model: MedimgModel,
    development: pd.DataFrame,
    *,
    class_index: int | None = None,
    max_background: int = 100,
    tolerance: float | None = PERMUTATION_TOLERANCE,
) -> ModelExplainer:
    """The explainer of a model against its development cases, seeded with the model's seed.

    The Explain page and the model card both build their explainer here, so that the same
    model and development cases give the same contributions in both.

    Parameters
    ----------
    model : the fitted model.
    development : its development cases (every feature column).
    class_index : encoded class explained (see :class:`ModelExplainer`).
    max_background, tolerance : see :class:`ModelExplainer` (permutation route only).
    """
    return ModelExplainer(
        model,
        development,
        max_background=max_background,
        seed=model.config.seed,
        class_index=class_index,
        tolerance=tolerance,
    )


def development_sample(
    development: pd.DataFrame, *, seed: int, max_cases: int = GLOBAL_CASES
) -> pd.DataFrame:
    """At most ``max_cases`` development cases: all of them, or a fixed sample drawn with ``seed``
    (kept in their original order)."""
    if len(development) <= max_cases:
        return development
    return development.sample(n=max_cases, random_state=seed).sort_index()


def development_explanation(
    explainer: ModelExplainer, development: pd.DataFrame, *, max_cases: int = GLOBAL_CASES
) -> Explanation:
    """The global explanation: SHAP values of a fixed, seeded sample of development cases.

    Its :meth:`Explanation.global_importance` is the ranking the Explain page draws and the
    model card lists as its top features, described by :func:`importance_description`.

    Parameters
    ----------
    explainer : from :func:`development_explainer`.
    development : the development cases.
    max_cases : most cases explained (``GLOBAL_CASES``).
    """
    model = explainer.model
    sample = development_sample(development, seed=model.config.seed, max_cases=max_cases)
    return explainer.explain(model.prepare_features(sample))


def importance_description(explanation: Explanation) -> str:
    """What a global ranking ranks, e.g. "mean |SHAP value| in log-odds of malignant over 455
    development cases (exact linear SHAP)"."""
    kind = explanation.method.split(" (")[0]
    return (
        f"mean |SHAP value| in {explanation.unit} over {len(explanation.data):,} development "
        f"cases ({kind} SHAP)"
    )


class _Route(Protocol):
    """One way of computing SHAP values; ``values`` returns (values, base values, standard
    errors or None)."""

    method: str
    output_space: str
    background_size: int
    note: str

    def values(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(values, base values, standard errors or None when the values are exact)."""
        ...


class _LinearRoute:
    """Interventional SHAP of a model that is linear after a column-wise preprocessor.

    With ``z = prep(x)`` every ``z_t`` depends on one original column, and the score is
    ``g(z) = G . z + c``. For a sum of per-column terms, interventional SHAP of column ``j`` is
    its term minus the term's background mean: ``sum_{t from j} G_t (z_t - mean_bg z_t)``.
    """

    method = METHOD_LINEAR

    def __init__(
        self,
        model: MedimgModel,
        background: pd.DataFrame,
        feature_map: np.ndarray,
        class_index: int,
        class_name: str,
    ) -> None:
        pipeline = model.pipeline
        self._prep = _ColumnwiseTransform(pipeline.steps[0][1], background)
        self._rest = pipeline[1:]
        self._map = feature_map
        self._class_index = class_index
        z_background = self._prep.transform(background)
        self._z_mean = z_background.mean(axis=0)
        # g is affine in z, so pushing the unit vectors through the fitted PCA and model gives its
        # slopes whatever the scaler, whitening or solver; the step size does not matter.
        probes = np.vstack([self._z_mean, self._z_mean + np.eye(len(self._z_mean))])
        scores = self._score(probes)
        self._base = float(scores[0])
        self._slopes = scores[1:] - scores[0]
        multi = not model.is_binary
        self.output_space = "decision score" if multi else "log-odds"
        self.background_size = len(background)
        has_pca = len(pipeline.steps) > 2
        self.note = (
            "Exact SHAP values of a linear model: imputation, scaling"
            + (", PCA" if has_pca else "")
            + " and the coefficients are folded into one additive term per original column "
            "(one-hot columns summed back to their column). Contributions are in "
            + (
                f"the raw decision score of '{class_name}' (before the softmax)"
                if multi
                else f"log-odds of '{class_name}'"
            )
            + f", relative to the average over {len(background)} background rows, and add up "
            "exactly to the model output. Cost: one pass through the preprocessing per case."
        )

    def _score(self, z: np.ndarray) -> np.ndarray:
        return _select_score(self._rest.decision_function(z), self._class_index)

    def values(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, None]:
        z = self._prep.transform(frame)
        contributions = (z - self._z_mean) * self._slopes
        values = contributions @ self._map
        return values, np.full(len(frame), self._base), None


class _TreeRoute:
    """Path-dependent TreeSHAP on the preprocessed matrix, folded back to original columns.

    Path-dependent TreeSHAP needs no background (the trees record how many training rows took
    each branch) and is exact. On the 200-tree WDBC forest of ``benchmarks/bench_shap_tree.py``
    it costs 0.6 ms of CPU per case against 11 ms for the interventional variant with 100
    background rows, which moreover missed ``predict_proba`` by 0.005 (one tree in 200 routing a
    case differently) when run on unscaled features.
    """

    method = METHOD_TREE

    def __init__(
        self,
        model: MedimgModel,
        background: pd.DataFrame,
        feature_map: np.ndarray,
        class_index: int,
        class_name: str,
    ) -> None:
        self._prep = _ColumnwiseTransform(model.pipeline.steps[0][1], background)
        estimator = model.pipeline.steps[-1][1]
        self._map = feature_map
        self._class_index = class_index
        # Imported here rather than at module level: importing shap takes seconds, and the
        # result types of this module are imported by every page that draws an explanation.
        import shap

        self._explainer = shap.TreeExplainer(estimator)
        self._expected = np.atleast_1d(np.asarray(self._explainer.expected_value, dtype=float))
        # Numeric features only: preprocessed column j is feature j, and the fold is a no-op.
        self._identity = feature_map.shape[0] == feature_map.shape[1] and bool(
            np.array_equal(feature_map, np.eye(feature_map.shape[0]))
        )
        probability = isinstance(estimator, _PROBABILITY_TREES)
        if probability:
            self.output_space = "probability"
        else:
            self.output_space = "log-odds" if model.is_binary else "decision score"
        self.background_size = _training_rows(estimator)
        n_trees = len(getattr(estimator, "estimators_", ())) or len(
            getattr(estimator, "_predictors", ())
        )
        space = (
            f"probability of '{class_name}'"
            if probability
            else (
                f"log-odds of '{class_name}'"
                if model.is_binary
                else f"the raw decision score of '{class_name}' (before the softmax)"
            )
        )
        self.note = (
            "TreeSHAP (path-dependent) on the preprocessed features, mapped one-to-one back to "
            "the original columns (one-hot columns summed back to their column). Contributions "
            f"are in {space}, relative to the model's average output over the "
            f"{self.background_size} training rows recorded in its trees, and add up exactly to "
            f"the model output. Cost: one pass over the {max(n_trees, 1)} tree(s) per case."
        )

    def values(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, None]:
        z = self._prep.transform(frame)
        # Additivity is verified once when the explainer is built (against the pipeline's own
        # output), so shap's per-call check, which re-runs the model, is skipped.
        raw = np.asarray(self._explainer.shap_values(z, check_additivity=False), dtype=float)
        expected = self._expected
        if raw.ndim == 3:
            tree_values, base = raw[:, :, self._class_index], expected[self._class_index]
        else:
            # A single raw output is the positive class's log-odds; class 0 is its negation.
            sign = 1.0 if self._class_index == 1 else -1.0
            tree_values, base = sign * raw, sign * expected[0]
        folded = np.array(tree_values) if self._identity else tree_values @ self._map
        return folded, np.full(len(frame), float(base)), None


class _PermutationRoute:
    """Antithetic permutation SHAP over the whole pipeline in original column space.

    The algorithm of ``shap.PermutationExplainer``: for each random order of the columns, switch
    the case's values on one column at a time (the others taken from each background row), then
    off again in the same order; a column's contribution is the average change in output when
    it is switched. The sum telescopes to ``f(x) - mean_background f``, so the values add up
    exactly. It is written here with numpy because shap's version compiles numba code on its
    first call in every process (about 10 s of CPU time) and sends one case at a time to the
    model; here the same permutations serve every case (a case's values do not depend on the
    batch it comes in) and many cases share one call to the pipeline.

    Categorical columns travel through the numeric masking as integer codes and are decoded
    back to their values (and the column's dtype) before the pipeline sees them.

    Each forward-and-backward permutation gives one complete estimate of every contribution
    (adding up exactly); the values are their mean and the standard errors the spread of the
    estimates over permutations divided by the square root of their number. Permutations come
    in rounds drawn from one seeded stream, the same for every case; a case gets another round
    while its largest standard error exceeds ``tolerance``, up to ``max_permutations``. Whether
    a case gets more rounds depends on that case alone, so its values still do not depend on
    the batch it comes in.
    """

    method = METHOD_PERMUTATION

    def __init__(
        self,
        model: MedimgModel,
        background: pd.DataFrame,
        class_index: int,
        class_name: str,
        seed: int,
        max_evals: int | None,
        *,
        tolerance: float | None = PERMUTATION_TOLERANCE,
        max_permutations: int | None = None,
    ) -> None:
        self._model = model
        self._columns = list(model.feature_columns)
        self._categorical = [c for c in self._columns if c in set(model.categorical_columns)]
        self._dtypes = background.dtypes
        self._class_index = class_index
        self._codes: dict[str, list[Any]] = {
            c: list(model.categories.get(c, ())) for c in self._categorical
        }
        self._background = self._encode(background)
        n_features = len(self._columns)
        per_permutation = 2 * n_features + 1
        budget = max(500 if max_evals is None else max_evals, 2 * per_permutation)
        self._round_size = budget // per_permutation
        self._max_permutations = max(
            self._round_size,
            4 * self._round_size if max_permutations is None else int(max_permutations),
        )
        if tolerance is not None and not tolerance > 0:
            raise ConfigError(
                f"The permutation tolerance must be a positive standard error, got {tolerance}; "
                f"pass e.g. {PERMUTATION_TOLERANCE} (one percentage point) or None."
            )
        self._tolerance = tolerance
        # Every round is drawn here, not on demand: the explainer is shared between sessions.
        rng = np.random.default_rng(seed)
        n_rounds = max(1, self._max_permutations // self._round_size)
        self._rounds: list[tuple[np.ndarray, np.ndarray]] = []
        for _ in range(n_rounds if tolerance is not None else 1):
            orders = np.array(
                [rng.permutation(n_features) for _ in range(self._round_size)]
            ).reshape(self._round_size, n_features)
            self._rounds.append((orders, _permutation_states(orders)))
        self._base = float(self._predict(self._background).mean())
        n_evaluations = self._round_size * per_permutation
        self.output_space = "probability"
        self.background_size = len(background)
        more = (
            f"more rounds are added, up to {self._max_permutations} permutations, until every "
            f"standard error of the case is below {tolerance:g}"
            if tolerance is not None and self._max_permutations > self._round_size
            else "no further permutations are added"
        )
        self.note = (
            f"Permutation SHAP (model-agnostic) on the whole pipeline over the {n_features} "
            f"original columns, with {len(background)} background rows standing in for a feature "
            f"being unknown. Contributions are in probability of '{class_name}' and add up "
            f"exactly to the model's probability; they are estimates, each shown with its "
            f"standard error (the spread over permutations; it does not cover the choice of "
            f"background rows). A case starts with "
            f"{self._round_size} forward-and-backward permutations; {more}. Cost: "
            f"≈ {n_evaluations} model evaluations per case and round, each averaged over the "
            f"{len(background)} background rows "
            f"(≈ {n_evaluations * len(background):,} pipeline predictions)."
        )

    def _encode(self, frame: pd.DataFrame) -> np.ndarray:
        matrix = np.empty((len(frame), len(self._columns)), dtype=float)
        for j, column in enumerate(self._columns):
            series = frame[column]
            if column not in self._codes:
                matrix[:, j] = series.to_numpy(dtype=float, na_value=np.nan)
                continue
            known = self._codes[column]
            lookup = {value: code for code, value in enumerate(known)}
            codes = np.full(len(frame), np.nan)
            for i, value in enumerate(series.to_numpy(dtype=object)):
                if pd.isna(value):
                    continue
                if value not in lookup:
                    lookup[value] = len(known)
                    known.append(value)
                codes[i] = lookup[value]
            matrix[:, j] = codes
        return matrix

    def _decode(self, matrix: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(matrix, columns=self._columns)
        for column in self._categorical:
            j = self._columns.index(column)
            known = np.array([*self._codes[column], np.nan], dtype=object)
            codes = matrix[:, j]
            index = np.where(np.isnan(codes), len(known) - 1, codes).astype(int)
            decoded = pd.Series(known[index], name=column)
            try:
                frame[column] = decoded.astype(self._dtypes[column])
            except (TypeError, ValueError):
                frame[column] = decoded
        return frame

    def _predict(self, matrix: np.ndarray) -> np.ndarray:
        proba = self._model.pipeline.predict_proba(self._decode(matrix))
        return np.asarray(proba[:, self._class_index], dtype=float)

    def values(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cases = self._encode(frame)
        n_cases, n_features = cases.shape
        full = self._predict(cases)
        total = np.zeros((n_cases, n_features))
        squares = np.zeros((n_cases, n_features))
        counts = np.zeros(n_cases)
        active = np.arange(n_cases)
        for r, (orders, states) in enumerate(self._rounds):
            if r and self._tolerance is not None:
                se = _standard_errors(total[active], squares[active], counts[active])
                active = active[se.max(axis=1, initial=0.0) > self._tolerance]
            if not len(active):
                break
            estimates = self._estimates(cases[active], full[active], orders, states)
            total[active] += estimates.sum(axis=1)
            squares[active] += np.square(estimates).sum(axis=1)
            counts[active] += len(orders)
        values = total / counts[:, None]
        # Every permutation's estimates add up to f(x) - base exactly, so their mean does too.
        return values, np.full(n_cases, self._base), _standard_errors(total, squares, counts)

    def _estimates(
        self, cases: np.ndarray, full: np.ndarray, orders: np.ndarray, states: np.ndarray
    ) -> np.ndarray:
        """(cases, permutations, features): one complete estimate per permutation."""
        n_cases, n_features = cases.shape
        n_states, n_background = len(states), len(self._background)
        intermediate = np.empty((n_cases, n_states))
        if n_states:
            chunk = max(1, _ROWS_PER_CALL // (n_states * n_background))
            for start in range(0, n_cases, chunk):
                block = cases[start : start + chunk]
                masked = np.where(
                    states[None, :, None, :],
                    block[:, None, None, :],
                    self._background[None, None, :, :],
                ).reshape(-1, n_features)
                outputs = self._predict(masked).reshape(len(block), n_states, n_background)
                intermediate[start : start + len(block)] = outputs.mean(axis=2)
        return _permutation_estimates(orders, intermediate, self._base, full)


def _standard_errors(total: np.ndarray, squares: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Standard error of a mean from running sums over ``counts`` (>= 2) estimates."""
    n = counts[:, None]
    variance = np.maximum(squares - np.square(total) / n, 0.0) / np.maximum(n - 1, 1)
    return np.sqrt(variance / n)


def _permutation_states(orders: np.ndarray) -> np.ndarray:
    """Which columns are switched on at each intermediate step of each permutation.

    For an order ``o`` of ``p`` columns: forward steps ``k = 1..p-1`` have ``o[:k]`` on,
    backward steps ``k = 1..p-1`` have ``o[k:]`` on. All-off (the base value) and all-on (the
    case itself) are shared by every permutation and evaluated once. Shape
    ``(n_permutations * 2 * (p - 1), p)``.
    """
    n_permutations, p = orders.shape
    states = np.zeros((n_permutations, 2, max(p - 1, 0), p), dtype=bool)
    for r, order in enumerate(orders):
        for k in range(1, p):
            states[r, 0, k - 1, order[:k]] = True
            states[r, 1, k - 1, order[k:]] = True
    return states.reshape(-1, p)


def _permutation_estimates(
    orders: np.ndarray, intermediate: np.ndarray, base: float, full: np.ndarray
) -> np.ndarray:
    """Each permutation's marginal contributions, shape (cases, permutations, features).

    A permutation's forward and backward passes together give one estimate of every column's
    contribution; over one permutation they add up to ``full - base`` exactly.
    """
    n_permutations, p = orders.shape
    n_cases = len(full)
    steps = intermediate.reshape(n_cases, n_permutations, 2, max(p - 1, 0))
    low = np.full((n_cases, n_permutations, 1), base)
    high = np.broadcast_to(full[:, None, None], (n_cases, n_permutations, 1))
    forward = np.diff(np.concatenate([low, steps[:, :, 0], high], axis=2), axis=2)
    backward = -np.diff(np.concatenate([high, steps[:, :, 1], low], axis=2), axis=2)
    # Step k of both passes switches column order[k].
    by_step = (forward + backward) / 2
    estimates = np.zeros((n_cases, n_permutations, p))
    for r, order in enumerate(orders):
        estimates[:, r, order] = by_step[:, r, :]
    return estimates


_ROWS_PER_CALL = 200_000
"""Rows sent to the pipeline in one call by the permutation route (memory stays ~50 MB)."""


class _ColumnwiseTransform:
    """The fitted "prep" step applied block by block to plain arrays.

    ``ColumnTransformer.transform`` on a one-row DataFrame spends most of its time selecting
    columns, validating pandas dtypes and dispatching through joblib (several times the cost of
    the transforms themselves, which dominated single-case latency). Here each fitted block is
    copied once with its recorded input names removed, so it accepts a numpy array without a
    feature-name warning, and the blocks are applied in turn. A numeric block made only of
    imputation and per-column scaling (medimg's own preprocessor) is applied as the same numpy
    operations its fitted steps perform, in the same order, without scikit-learn's per-call
    validation (most of a one-row call). The result is checked against
    ``ColumnTransformer.transform`` when built, on background rows and on a row with every
    numeric value missing; if they differ in any bit (an unusual preprocessor), the
    ColumnTransformer itself is used.

    Frames passed in have exactly the model's feature columns in order (``_feature_frame``).
    """

    def __init__(self, prep: Any, background: pd.DataFrame) -> None:
        self._prep = prep
        self._blocks = _array_blocks(prep, list(background.columns))
        rows = _check_rows(background.iloc[:_TRANSFORM_CHECK_ROWS], self._blocks)
        if self._blocks is not None and not np.array_equal(
            _apply_blocks(self._blocks, rows), _dense(prep.transform(rows)), equal_nan=True
        ):
            self._blocks = None

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        if self._blocks is None:
            return _dense(self._prep.transform(frame))
        return _apply_blocks(self._blocks, frame)


_TRANSFORM_CHECK_ROWS = 200
_ArrayStep = Callable[[np.ndarray], np.ndarray]
_Block = tuple[Pipeline, np.ndarray, bool, tuple[_ArrayStep, ...] | None]


def _apply_blocks(blocks: list[_Block], frame: pd.DataFrame) -> np.ndarray:
    parts = []
    for transformer, positions, numeric, array_steps in blocks:
        if not numeric:
            parts.append(
                _dense(transformer.transform(frame.take(positions, axis=1).to_numpy(dtype=object)))
            )
            continue
        if len(positions) == frame.shape[1] and np.array_equal(positions, _arange(len(positions))):
            block = frame
        else:
            block = frame.take(positions, axis=1)
        # A copy: the steps below work in place and must never write into the caller's frame.
        array = block.to_numpy(dtype=float, na_value=np.nan, copy=True)
        # scikit-learn refuses infinite values; let it, with its own message.
        if array_steps is None or np.isinf(array).any():
            parts.append(_dense(transformer.transform(array)))
            continue
        for step in array_steps:
            array = step(array)
        parts.append(array)
    if len(parts) == 1:
        return parts[0]
    return np.hstack(parts) if parts else np.empty((len(frame), 0))


def _arange(n: int) -> np.ndarray:
    return np.arange(n)


def _check_rows(rows: pd.DataFrame, blocks: list[_Block] | None) -> pd.DataFrame:
    """``rows`` and one more with every numeric block's values missing (imputation checked)."""
    if blocks is None or not len(rows):
        return rows
    numeric = sorted(
        {int(j) for _, positions, is_numeric, _ in blocks if is_numeric for j in positions}
    )
    missing = rows.iloc[:1].assign(**{str(rows.columns[j]): np.nan for j in numeric})
    return pd.concat([rows, missing.loc[:, list(rows.columns)]], ignore_index=True)


def _array_blocks(prep: Any, feature_columns: list[str]) -> list[_Block] | None:
    """Copies of the fitted blocks that accept arrays, in output order; None if not possible."""
    if not isinstance(prep, ColumnTransformer):
        return None
    position = {c: j for j, c in enumerate(feature_columns)}
    fitted = {name: (transformer, columns) for name, transformer, columns in prep.transformers_}
    blocks: list[_Block] = []
    for name, block in sorted(prep.output_indices_.items(), key=lambda item: item[1].start):
        if block.stop == block.start:
            continue
        transformer, columns = fitted[name]
        if not isinstance(transformer, Pipeline) or not all(c in position for c in columns):
            return None
        copy = _clone_fitted(transformer)
        numeric = not any(isinstance(step, OneHotEncoder) for _, step in copy.steps)
        array_steps = _numpy_steps(copy) if numeric else None
        blocks.append((copy, np.array([position[c] for c in columns]), numeric, array_steps))
    return blocks


def _numpy_steps(pipeline: Pipeline) -> tuple[_ArrayStep, ...] | None:
    """The fitted steps of a numeric block as the numpy operations their ``transform`` performs
    on a dense float array (scikit-learn's own order of operations, so the same bits); None
    when a step is anything else."""
    steps: list[_ArrayStep] = []
    for _, step in pipeline.steps:
        if step is None or (isinstance(step, str) and step == "passthrough"):
            continue
        if isinstance(step, SimpleImputer) and type(step) is SimpleImputer:
            statistics = np.asarray(step.statistics_, dtype=float)
            if (
                step.add_indicator
                or not _is_nan(step.missing_values)
                or np.isnan(statistics).any()  # columns empty in training are dropped
            ):
                return None
            steps.append(partial(_impute, statistics))
        elif type(step) is StandardScaler:
            steps.append(
                partial(
                    _centre_and_scale,
                    step.mean_ if step.with_mean else None,
                    step.scale_ if step.with_std else None,
                )
            )
        elif type(step) is RobustScaler:
            steps.append(
                partial(
                    _centre_and_scale,
                    step.center_ if step.with_centering else None,
                    step.scale_ if step.with_scaling else None,
                )
            )
        elif type(step) is MinMaxScaler:
            steps.append(
                partial(
                    _min_max,
                    step.scale_,
                    step.min_,
                    tuple(step.feature_range) if step.clip else None,
                )
            )
        elif type(step) is MaxAbsScaler and not getattr(step, "clip", False):
            steps.append(partial(_centre_and_scale, None, step.scale_))
        else:
            return None
    return tuple(steps)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _impute(statistics: np.ndarray, X: np.ndarray) -> np.ndarray:
    missing = np.isnan(X)
    if missing.any():
        X = np.where(missing, statistics, X)
    return X


def _centre_and_scale(
    centre: np.ndarray | None, scale: np.ndarray | None, X: np.ndarray
) -> np.ndarray:
    # X is this call's own array (converted from the frame), so it is changed in place.
    if centre is not None:
        X -= centre
    if scale is not None:
        X /= scale
    return X


def _min_max(
    scale: np.ndarray, minimum: np.ndarray, clip: tuple[float, float] | None, X: np.ndarray
) -> np.ndarray:
    X *= scale
    X += minimum
    if clip is not None:
        np.clip(X, clip[0], clip[1], out=X)
    return X


def _clone_fitted(pipeline: Pipeline) -> Pipeline:
    """A deep copy of a fitted pipeline whose steps no longer remember input column names."""
    copy = deepcopy(pipeline)
    for _, step in copy.steps:
        if hasattr(step, "feature_names_in_"):
            del step.feature_names_in_
    return copy


def _resolve_class(model: MedimgModel, class_index: int | None) -> tuple[int, str]:
    classes = list(model.classes)
    k = len(classes)
    if class_index is None:
        class_index = 1 if model.is_binary else 0
    if not 0 <= class_index < k:
        raise ConfigError(
            f"class_index={class_index} is out of range for a model with {k} classes "
            f"{[str(c) for c in classes]}; pass an index between 0 and {k - 1}"
            + (" (1 = the positive class)." if model.is_binary else ".")
        )
    if not model.is_binary:
        return class_index, str(model.display_name(classes[class_index]))
    positive = model.positive_class if model.positive_class is not None else classes[1]
    if class_index == 1:
        return 1, str(model.display_name(positive))
    others = [c for c in classes if c != positive]
    return 0, str(model.display_name(others[0] if others else classes[0]))


def _feature_frame(model: MedimgModel, frame: pd.DataFrame, *, what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(
            f"The {what} must be a table (pandas DataFrame), got {type(frame).__name__}; "
            "pass the rows as a DataFrame with the model's feature columns."
        )
    columns = list(model.feature_columns)
    in_order = frame.columns.tolist() == columns
    missing = [] if in_order else [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise SchemaError(
            f"The {what} lacks {len(missing)} of the model's {len(columns)} feature columns: "
            f"{shown}. Provide rows with every column the model was trained on."
        )
    if len(frame) == 0:
        raise DataError(f"The {what} has no rows; pass at least one case.")
    # Selecting columns costs ~0.5 ms even on one row; skip it when they are already right.
    selected = frame.copy(deep=False) if in_order else frame.loc[:, columns]
    numeric = set(model.numeric_columns)
    for column, dtype in zip(columns, selected.dtypes.tolist(), strict=True):
        if getattr(dtype, "kind", "O") in "biuf" or column not in numeric:
            continue
        if not pd.api.types.is_numeric_dtype(dtype):
            numbers = pd.to_numeric(selected[column], errors="coerce")
            bad = selected[column][numbers.isna() & selected[column].notna()]
            if len(bad):
                raise SchemaError(
                    f"Numeric column {column!r} in the {what} holds non-numeric values such as "
                    f"{bad.iloc[0]!r}; correct or blank those cells before explaining."
                )
    return selected


def _sample_rows(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(frame) <= n:
        return frame
    return frame.sample(n=n, random_state=seed)


def _dense(matrix: Any) -> np.ndarray:
    if hasattr(matrix, "toarray"):
        matrix = matrix.toarray()
    return np.asarray(matrix, dtype=float)


def _select_score(scores: np.ndarray, class_index: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim == 2:
        return scores[:, class_index]
    return scores if class_index == 1 else -scores


def _training_rows(estimator: Any) -> int:
    if hasattr(estimator, "estimators_"):
        return round(float(estimator.estimators_[0].tree_.weighted_n_node_samples[0]))
    if hasattr(estimator, "tree_"):
        return round(float(estimator.tree_.weighted_n_node_samples[0]))
    return int(estimator._predictors[0][0].nodes[0]["count"])


def _build_route(
    model: MedimgModel,
    background: pd.DataFrame,
    class_index: int,
    class_name: str,
) -> _Route | None:
    """The linear or tree route when the pipeline allows one, else None (permutation)."""
    steps = model.pipeline.steps
    if len(steps) < 2:
        return None
    feature_map = _feature_map(steps[0][1], list(model.feature_columns))
    if feature_map is None:
        return None
    final = steps[-1][1]
    middle = [step for _, step in steps[1:-1]]
    if isinstance(final, LogisticRegression) and all(isinstance(s, PCA) for s in middle):
        return _LinearRoute(model, background, feature_map, class_index, class_name)
    tree_types = (*_PROBABILITY_TREES, HistGradientBoostingClassifier)
    if isinstance(final, tree_types) and not middle:
        return _TreeRoute(model, background, feature_map, class_index, class_name)
    return None


def _reproduces_model(
    route: _Route, model: MedimgModel, rows: pd.DataFrame, class_index: int
) -> bool:
    """Whether the route's values add up to the pipeline's own output on a few rows."""
    values, base, _ = route.values(rows)
    if route.output_space == "probability":
        target = model.pipeline.predict_proba(rows)[:, class_index]
    else:
        target = _select_score(model.pipeline.decision_function(rows), class_index)
    gap = np.abs(values.sum(axis=1) + base - np.asarray(target, dtype=float))
    return bool(np.all(gap <= _ADDITIVITY_TOLERANCE))


def _step_sources(step: Any, sources: list[str]) -> list[str] | None:
    """Original column behind each output of one column-wise step, or None if it mixes columns."""
    if step is None or (isinstance(step, str) and step == "passthrough"):
        return sources
    if isinstance(step, SimpleImputer):
        if step.add_indicator:
            return None
        # The imputer drops columns that were empty in training; its output names say which.
        kept = set(step.get_feature_names_out(sources))
        return [s for s in sources if s in kept]
    if isinstance(step, _PER_COLUMN_SCALERS):
        return sources
    if isinstance(step, OneHotEncoder):
        if getattr(step, "infrequent_categories_", None) is not None and any(
            c is not None for c in step.infrequent_categories_
        ):
            return None
        drop = step.drop_idx_ if step.drop_idx_ is not None else [None] * len(sources)
        expanded: list[str] = []
        for source, categories, dropped in zip(sources, step.categories_, drop, strict=True):
            expanded += [source] * (len(categories) - (0 if dropped is None else 1))
        return expanded
    return None


def _feature_map(prep: Any, feature_columns: list[str]) -> np.ndarray | None:
    """Matrix (n_preprocessed, n_features) with a 1 where an output comes from a column.

    None when the preprocessor is not a ColumnTransformer of column-wise steps (then no output
    can be attributed to a single original column and the permutation route is used).
    """
    if not isinstance(prep, ColumnTransformer):
        return None
    position = {c: j for j, c in enumerate(feature_columns)}
    n_out = sum(s.stop - s.start for s in prep.output_indices_.values())
    mapping = np.zeros((n_out, len(feature_columns)))
    names_in = list(getattr(prep, "feature_names_in_", feature_columns))
    for name, transformer, columns in prep.transformers_:
        block = prep.output_indices_[name]
        if block.stop == block.start:
            continue
        sources: list[str] | None = [
            names_in[c] if isinstance(c, (int, np.integer)) else str(c) for c in columns
        ]
        steps: list[Any] = (
            [s for _, s in transformer.steps]
            if isinstance(transformer, Pipeline)
            else [transformer]
        )
        for step in steps:
            if sources is None:
                return None
            sources = _step_sources(step, sources)
        if sources is None or len(sources) != block.stop - block.start:
            return None
        if any(s not in position for s in sources):
            return None
        for offset, source in enumerate(sources):
            mapping[block.start + offset, position[source]] = 1.0
    return mapping
