from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

import medimg_core.modelling.explain as explain_module
from medimg_core.errors import ConfigError, DataError, SchemaError
from medimg_core.modelling.explain import (
    METHOD_LINEAR,
    METHOD_PERMUTATION,
    METHOD_TREE,
    Explanation,
    ModelExplainer,
    explain,
)
from medimg_core.modelling.models import MedimgModel, ModelConfig, build_preprocessor
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.roles import Roles

NUMERIC = ("radius", "texture", "area", "smoothness", "symmetry")
CATEGORICAL = ("site",)
SITES = ("north", "south", "west")
TOL = 1e-6


def make_data(n: int = 160, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "radius": rng.normal(14, 3, n),
            "texture": rng.normal(19, 4, n),
            # a wide-scale column so unscaled pipelines exercise large magnitudes
            "area": rng.normal(650, 300, n),
            "smoothness": rng.normal(0.1, 0.015, n),
            "symmetry": rng.normal(0.18, 0.03, n),
            "site": rng.choice(SITES, n),
        },
        index=pd.Index([f"case-{i:03d}" for i in range(n)], name="case_id"),
    )
    signal = (
        (frame["radius"] - 14) / 3
        + 0.5 * (frame["texture"] - 19) / 4
        + (frame["site"] == "south") * 0.7
        + rng.normal(0, 0.8, n)
    )
    y_binary = (signal > 0.2).to_numpy().astype(int)
    y_multi = np.digitize(signal.to_numpy(), [-0.5, 0.7])
    return frame, y_binary, y_multi


DATA, Y_BINARY, Y_MULTI = make_data()


def with_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with missing values in a numeric and the categorical column."""
    out = frame.copy()
    out.iloc[0, out.columns.get_loc("radius")] = np.nan
    out.iloc[1, out.columns.get_loc("area")] = np.nan
    out.iloc[2, out.columns.get_loc("site")] = np.nan
    return out


def make_model(
    estimator: Any,
    *,
    scaling: str = "standard",
    pca: int | None = None,
    categorical: bool = True,
    multi: bool = False,
    data: pd.DataFrame = DATA,
) -> MedimgModel:
    categorical_columns = CATEGORICAL if categorical else ()
    columns = NUMERIC + categorical_columns
    steps: list[tuple[str, Any]] = [
        ("prep", build_preprocessor(NUMERIC, categorical_columns, scaling=scaling))
    ]
    if pca:
        steps.append(("pca", PCA(n_components=pca, random_state=0)))
    steps.append(("model", estimator))
    pipeline = Pipeline(steps)
    y = Y_MULTI if multi else Y_BINARY
    pipeline.fit(data.loc[:, list(columns)], y)
    classes: tuple[Any, ...] = ("high", "low", "mid") if multi else ("benign", "malignant")
    return MedimgModel(
        pipeline=pipeline,
        kind="test",
        config=ModelConfig(model="logreg", scaling=scaling, pca=pca),  # type: ignore[arg-type]
        feature_columns=columns,
        numeric_columns=NUMERIC,
        categorical_columns=categorical_columns,
        categories={"site": SITES} if categorical else {},
        feature_ranges={c: (float(data[c].min()), float(data[c].max())) for c in NUMERIC},
        classes=classes,
        positive_class=None if multi else "malignant",
        threshold=0.5,
        roles=Roles(label="diagnosis"),
        plan=CleaningPlan(),
    )


def logreg() -> LogisticRegression:
    return LogisticRegression(max_iter=5000)


def model_output(model: MedimgModel, X: pd.DataFrame, space: str, class_index: int) -> np.ndarray:
    columns = list(model.feature_columns)
    if space == "probability":
        return model.pipeline.predict_proba(X[columns])[:, class_index]
    scores = model.pipeline.decision_function(X[columns])
    if scores.ndim == 2:
        return scores[:, class_index]
    return scores if class_index == 1 else -scores


def assert_additive(model: MedimgModel, X: pd.DataFrame, result: Explanation) -> None:
    class_index = (
        result.class_name == str(model.positive_class)
        if model.is_binary
        else list(model.classes).index(result.class_name)
    )
    target = model_output(model, X, result.output_space, int(class_index))
    np.testing.assert_allclose(result.values.sum(axis=1) + result.base_values, target, atol=TOL)


BACKGROUND = DATA.iloc[:100]
CASES = with_gaps(DATA.iloc[100:130])


@pytest.mark.parametrize("scaling", ["standard", "minmax", "robust", "none"])
@pytest.mark.parametrize("pca", [None, 3])
@pytest.mark.parametrize("categorical", [True, False])
def test_linear_binary_is_additive_in_log_odds(
    scaling: str, pca: int | None, categorical: bool
) -> None:
    model = make_model(logreg(), scaling=scaling, pca=pca, categorical=categorical)
    result = explain(model, CASES, background=BACKGROUND)
    assert result.method == METHOD_LINEAR
    assert result.output_space == "log-odds"
    assert result.class_name == "malignant"
    assert result.values.shape == (len(CASES), len(model.feature_columns))
    assert result.background_size == len(BACKGROUND)
    assert_additive(model, CASES, result)
    # base value = mean log-odds over the background (the score is linear in the features)
    background_scores = model.pipeline.decision_function(BACKGROUND[list(model.feature_columns)])
    np.testing.assert_allclose(result.base_values, background_scores.mean(), atol=TOL)


@pytest.mark.parametrize("pca", [None, 4])
def test_linear_multiclass_explains_each_class_decision_score(pca: int | None) -> None:
    model = make_model(logreg(), pca=pca, multi=True)
    for k, name in enumerate(model.classes):
        result = explain(model, CASES, background=BACKGROUND, class_index=k)
        assert result.class_name == name
        assert result.output_space == "decision score"
        assert_additive(model, CASES, result)


def test_linear_without_scaling_equals_coefficient_times_centred_value() -> None:
    model = make_model(logreg(), scaling="none", categorical=False)
    X = DATA.iloc[100:110]
    result = explain(model, X, background=BACKGROUND)
    coef = model.pipeline.named_steps["model"].coef_[0]
    expected = coef * (X[list(NUMERIC)] - BACKGROUND[list(NUMERIC)].mean()).to_numpy()
    np.testing.assert_allclose(result.values, expected, atol=1e-9)


def _codes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    out = frame[columns].copy()
    if "site" in out:
        out["site"] = pd.Categorical(out["site"], categories=SITES).codes
    return out.to_numpy(dtype=float)


def _output_on_codes(model: MedimgModel, space: str, class_index: int) -> Any:
    columns = list(model.feature_columns)

    def output(matrix: np.ndarray) -> np.ndarray:
        frame = pd.DataFrame(matrix, columns=columns)
        if "site" in frame:
            codes = matrix[:, columns.index("site")].astype(int)
            frame["site"] = np.array(SITES, dtype=object)[codes]
        return model_output(model, frame, space, class_index)

    return output


def brute_force_shap(output: Any, X: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Interventional Shapley values by enumerating every coalition (an independent reference)."""
    n, p = X.shape
    coalitions = np.array(list(itertools.product([False, True], repeat=p)))
    index = {tuple(c): i for i, c in enumerate(coalitions)}
    result = np.zeros((n, p))
    for i, x in enumerate(X):
        rows = np.where(coalitions[:, None, :], x[None, None, :], background[None, :, :])
        worth = output(rows.reshape(-1, p)).reshape(len(coalitions), len(background)).mean(axis=1)
        for c, coalition in enumerate(coalitions):
            size = int(coalition.sum())
            for j in np.flatnonzero(~coalition):
                weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
                with_j = coalition.copy()
                with_j[j] = True
                result[i, j] += weight * (worth[index[tuple(with_j)]] - worth[c])
    return result


@pytest.mark.parametrize("pca", [None, 3])
@pytest.mark.parametrize("multi", [False, True])
def test_folded_linear_values_equal_exact_shapley_values(pca: int | None, multi: bool) -> None:
    model = make_model(logreg(), scaling="robust", pca=pca, multi=multi)
    columns = list(model.feature_columns)
    background = DATA.iloc[:40]
    X = DATA.iloc[120:124]
    class_index = 2 if multi else 1
    space = "decision score" if multi else "log-odds"
    reference = brute_force_shap(
        _output_on_codes(model, space, class_index), _codes(X, columns), _codes(background, columns)
    )
    ours = explain(model, X, background=background, class_index=class_index)
    np.testing.assert_allclose(ours.values, reference, atol=TOL)


@pytest.mark.slow
def test_folded_linear_values_equal_shap_exact_explainer() -> None:
    # slow only because shap compiles numba code on first use in a process
    import shap

    model = make_model(logreg(), scaling="standard", pca=3)
    columns = list(model.feature_columns)
    background = DATA.iloc[:40]
    X = DATA.iloc[120:124]
    masker = shap.maskers.Independent(_codes(background, columns), max_samples=len(background))
    explainer = shap.explainers.Exact(_output_on_codes(model, "log-odds", 1), masker)
    reference = explainer(_codes(X, columns))
    ours = explain(model, X, background=background)
    np.testing.assert_allclose(ours.values, reference.values, atol=TOL)
    np.testing.assert_allclose(ours.base_values, reference.base_values, atol=TOL)


def test_permutation_with_two_features_equals_exact_shapley_values() -> None:
    # With two columns the forward and the backward order are all the orders there are.
    data = DATA.loc[:, ["radius", "site"]]
    pipeline = Pipeline(
        [("prep", build_preprocessor(["radius"], ["site"])), ("model", KNeighborsClassifier(9))]
    )
    pipeline.fit(data, Y_BINARY)
    model = replace(
        make_model(logreg()),
        pipeline=pipeline,
        feature_columns=("radius", "site"),
        numeric_columns=("radius",),
    )
    background, X = data.iloc[:30], data.iloc[100:106]
    result = ModelExplainer(model, background, max_evals=5).explain(X)
    assert result.method == METHOD_PERMUTATION
    reference = brute_force_shap(
        _output_on_codes(model, "probability", 1),
        _codes(X, ["radius", "site"]),
        _codes(background, ["radius", "site"]),
    )
    np.testing.assert_allclose(result.values, reference, atol=1e-12)


def test_permutation_estimates_converge_to_exact_shapley_values() -> None:
    model = make_model(KNeighborsClassifier(n_neighbors=9))
    columns = list(model.feature_columns)
    background, X = DATA.iloc[:20], DATA.iloc[100:103]
    result = ModelExplainer(model, background, max_evals=13 * 200).explain(X)
    reference = brute_force_shap(
        _output_on_codes(model, "probability", 1), _codes(X, columns), _codes(background, columns)
    )
    assert np.abs(result.values - reference).max() < 0.02


@pytest.mark.parametrize("categorical", [True, False])
def test_random_forest_is_additive_in_probability(categorical: bool) -> None:
    forest = RandomForestClassifier(n_estimators=25, random_state=0, n_jobs=1)
    model = make_model(forest, categorical=categorical)
    result = explain(model, CASES, background=BACKGROUND)
    assert result.method == METHOD_TREE
    assert result.output_space == "probability"
    assert result.background_size == len(DATA)
    assert_additive(model, CASES, result)


def test_random_forest_multiclass_and_both_binary_classes() -> None:
    multi = make_model(RandomForestClassifier(n_estimators=15, random_state=0), multi=True)
    for k in range(3):
        assert_additive(multi, CASES, explain(multi, CASES, class_index=k))
    binary = make_model(RandomForestClassifier(n_estimators=15, random_state=0))
    positive = explain(binary, CASES, class_index=1)
    negative = explain(binary, CASES, class_index=0)
    assert negative.class_name == "benign"
    assert_additive(binary, CASES, negative)
    np.testing.assert_allclose(positive.values, -negative.values, atol=TOL)


@pytest.mark.parametrize("multi", [False, True])
def test_gradient_boosting_is_additive_in_raw_score(multi: bool) -> None:
    booster = HistGradientBoostingClassifier(max_iter=30, random_state=0)
    model = make_model(booster, scaling="none", multi=multi)
    for k in [0, 1]:
        result = explain(model, CASES, background=BACKGROUND, class_index=k)
        assert result.method == METHOD_TREE
        assert result.output_space == ("decision score" if multi else "log-odds")
        assert_additive(model, CASES, result)


def test_seed_preset_pca_then_forest_uses_permutation_and_is_additive() -> None:
    forest = RandomForestClassifier(n_estimators=20, random_state=0, n_jobs=1)
    model = make_model(forest, pca=3, categorical=False)
    X = with_gaps(DATA.iloc[100:104])
    result = explain(model, X, background=BACKGROUND, max_background=30)
    assert result.method == METHOD_PERMUTATION
    assert result.output_space == "probability"
    assert result.background_size == 30
    assert "model evaluations per case" in result.note
    assert "30 background rows" in result.note
    assert_additive(model, X, result)


def test_permutation_handles_categories_missing_values_and_unseen_categories() -> None:
    model = make_model(KNeighborsClassifier(n_neighbors=7), multi=True)
    X = with_gaps(DATA.iloc[100:104])
    X.iloc[3, X.columns.get_loc("site")] = "east"
    result = explain(model, X, background=BACKGROUND, max_background=20, class_index=2)
    assert result.method == METHOD_PERMUTATION
    assert result.class_name == "mid"
    assert_additive(model, X, result)
    assert pd.isna(result.data.loc[X.index[2], "site"])
    assert result.data.loc[X.index[3], "site"] == "east"


def test_svm_uses_permutation() -> None:
    svm = CalibratedClassifierCV(SVC(), cv=3)
    model = make_model(svm, categorical=False)
    explainer = ModelExplainer(model, BACKGROUND, max_background=10, max_evals=11)
    assert explainer.method == METHOD_PERMUTATION
    result = explainer.explain(DATA.iloc[100:102])
    assert_additive(model, DATA.iloc[100:102], result)


def test_permutation_is_reproducible_and_leaves_numpy_random_state_alone() -> None:
    model = make_model(KNeighborsClassifier(n_neighbors=7), categorical=False)
    X = DATA.iloc[100:103]
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    first = explain(model, X, background=BACKGROUND, max_background=15, seed=4)
    assert np.array_equal(np.random.get_state()[1], before)
    second = explain(model, X, background=BACKGROUND, max_background=15, seed=4)
    np.testing.assert_array_equal(first.values, second.values)


def test_permutation_values_do_not_depend_on_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model(KNeighborsClassifier(n_neighbors=7))
    X = with_gaps(DATA.iloc[100:106])
    explainer = ModelExplainer(model, BACKGROUND, max_background=12, max_evals=40)
    together = explainer.explain(X)
    # force one pipeline call per case as well
    monkeypatch.setattr(explain_module, "_ROWS_PER_CALL", 1)
    alone = np.vstack([explainer.explain(X.iloc[[i]]).values for i in range(len(X))])
    np.testing.assert_allclose(together.values, alone, atol=1e-12)


def test_max_evals_is_raised_to_the_minimum_for_two_permutations() -> None:
    # Two permutations at least: a standard error needs two estimates.
    model = make_model(KNeighborsClassifier(n_neighbors=7), categorical=False)
    explainer = ModelExplainer(model, BACKGROUND, max_background=10, max_evals=3)
    assert "starts with 2 forward-and-backward permutations" in explainer.note
    assert_additive(model, DATA.iloc[:2], explainer.explain(DATA.iloc[:2]))


def test_tree_route_falls_back_to_permutation_when_it_does_not_add_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = explain_module._TreeRoute.values

    def skewed(self: Any, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, None]:
        values, base, _ = original(self, frame)
        return values, base + 0.01, None

    monkeypatch.setattr(explain_module._TreeRoute, "values", skewed)
    model = make_model(RandomForestClassifier(n_estimators=10, random_state=0))
    explainer = ModelExplainer(model, BACKGROUND, max_background=10, max_evals=13)
    assert explainer.method == METHOD_PERMUTATION
    assert_additive(model, CASES.iloc[:2], explainer.explain(CASES.iloc[:2]))


def test_array_transform_falls_back_to_the_column_transformer_when_it_differs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = explain_module._apply_blocks
    calls = []

    def shifted(blocks: Any, frame: pd.DataFrame) -> np.ndarray:
        calls.append(len(frame))
        return original(blocks, frame) + 1e-12

    monkeypatch.setattr(explain_module, "_apply_blocks", shifted)
    model = make_model(RandomForestClassifier(n_estimators=10, random_state=0))
    explainer = ModelExplainer(model, BACKGROUND)
    assert explainer.method == METHOD_TREE
    n_calls = len(calls)
    assert_additive(model, CASES, explainer.explain(CASES))
    assert len(calls) == n_calls


@pytest.mark.parametrize("scaling", ["standard", "minmax", "robust", "none"])
def test_numeric_blocks_run_as_numpy_and_match_the_column_transformer_bit_for_bit(
    scaling: str,
) -> None:
    model = make_model(
        RandomForestClassifier(n_estimators=5, random_state=0), scaling=scaling, categorical=False
    )
    prep = model.pipeline.steps[0][1]
    transform = explain_module._ColumnwiseTransform(prep, BACKGROUND.loc[:, list(NUMERIC)])
    [(_, _, numeric, array_steps)] = transform._blocks
    assert numeric and array_steps is not None  # scikit-learn is not called per case
    rows = CASES.loc[:, list(NUMERIC)]
    rows.iloc[3] = np.nan  # a case with every value missing: all imputed
    before = rows.copy()
    np.testing.assert_array_equal(transform.transform(rows), prep.transform(rows))
    pd.testing.assert_frame_equal(rows, before)  # the in-place steps never touch the caller's rows


def test_numeric_array_path_leaves_infinite_values_to_scikit_learn() -> None:
    model = make_model(RandomForestClassifier(n_estimators=5, random_state=0), categorical=False)
    prep = model.pipeline.steps[0][1]
    transform = explain_module._ColumnwiseTransform(prep, BACKGROUND.loc[:, list(NUMERIC)])
    rows = CASES.loc[:, list(NUMERIC)].iloc[:2].copy()
    rows.iloc[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        transform.transform(rows)


def test_numeric_array_path_is_checked_on_missing_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # An imputer fill that differs from scikit-learn's shows only on missing values: the check
    # when the explainer is built includes a row with every numeric value missing.
    monkeypatch.setattr(
        explain_module, "_impute", lambda statistics, X: np.where(np.isnan(X), 0.0, X)
    )
    model = make_model(RandomForestClassifier(n_estimators=5, random_state=0), categorical=False)
    prep = model.pipeline.steps[0][1]
    transform = explain_module._ColumnwiseTransform(prep, BACKGROUND.loc[:, list(NUMERIC)])
    assert transform._blocks is None
    rows = CASES.loc[:, list(NUMERIC)]
    np.testing.assert_array_equal(transform.transform(rows), prep.transform(rows))


def test_model_explainer_reuses_one_setup_for_many_calls() -> None:
    model = make_model(logreg())
    explainer = ModelExplainer(model, BACKGROUND)
    together = explainer.explain(CASES)
    one_by_one = np.vstack([explainer.explain(CASES.iloc[[i]]).values for i in range(5)])
    np.testing.assert_allclose(together.values[:5], one_by_one, atol=1e-12)


def test_explanation_keeps_case_ids_original_values_and_feature_order() -> None:
    model = make_model(logreg())
    X = CASES.assign(extra=1.0)[["extra", "site", *reversed(NUMERIC)]]
    result = explain(model, X, background=BACKGROUND)
    assert result.feature_names == NUMERIC + CATEGORICAL
    assert list(result.data.columns) == list(result.feature_names)
    assert result.data.index.equals(CASES.index)
    assert np.isnan(result.data.iloc[0]["radius"])
    assert pd.isna(result.data.iloc[2]["site"])
    assert_additive(model, X, result)


def test_default_background_is_the_explained_rows() -> None:
    model = make_model(logreg())
    result = explain(model, CASES)
    assert result.background_size == len(CASES)
    # the background average output is the base value, so contributions centre on zero
    np.testing.assert_allclose(result.values.mean(axis=0), 0.0, atol=1e-9)


def test_to_frame_is_long_format_with_one_row_per_case_and_feature() -> None:
    model = make_model(logreg())
    X = CASES.iloc[:3]
    result = explain(model, X, background=BACKGROUND)
    long = result.to_frame()
    # The contribution column names its unit: a CSV read alone must say what the numbers are.
    assert list(long.columns) == [
        "case_id",
        "feature",
        "value",
        "explained class",
        "contribution (log-odds)",
    ]
    assert set(long["explained class"]) == {result.class_name}
    assert len(long) == 3 * len(result.feature_names)
    row = long[(long["case_id"] == X.index[1]) & (long["feature"] == "site")].iloc[0]
    assert row["value"] == X.iloc[1]["site"]
    assert row["contribution (log-odds)"] == pytest.approx(
        result.values[1, result.feature_names.index("site")]
    )
    np.testing.assert_allclose(
        long.groupby("case_id", sort=False)["contribution (log-odds)"].sum().to_numpy(),
        result.values.sum(axis=1),
    )
    assert result.standard_errors is None and result.case(0).standard_errors is None
    assert result.unit == f"log-odds of {result.class_name}"


def test_permutation_frame_names_probability_and_standard_errors() -> None:
    model = make_model(KNeighborsClassifier(n_neighbors=7), categorical=False)
    result = explain(model, DATA.iloc[100:102], background=BACKGROUND, max_background=10)
    long = result.to_frame()
    assert list(long.columns)[-2:] == [
        "contribution (probability)",
        "standard error (probability)",
    ]
    assert result.standard_errors is not None
    assert result.standard_errors.shape == result.values.shape
    np.testing.assert_allclose(
        long["standard error (probability)"].to_numpy(), result.standard_errors.reshape(-1)
    )
    case = result.case(1)
    assert case.standard_errors is not None
    np.testing.assert_allclose(case.standard_errors.to_numpy(), result.standard_errors[1])


def _permutation_model() -> tuple[Any, pd.DataFrame]:
    model = make_model(KNeighborsClassifier(n_neighbors=7), categorical=False)
    return model, DATA.iloc[100:112]


def test_permutation_runs_with_different_seeds_agree_within_their_standard_errors() -> None:
    model, X = _permutation_model()
    background = BACKGROUND.iloc[:20]
    # The same background for both runs: only the permutations differ with the seed.
    runs = [
        ModelExplainer(model, background, max_background=20, seed=seed, tolerance=None).explain(X)
        for seed in (1, 2)
    ]
    first, second = runs
    assert first.standard_errors is not None and second.standard_errors is not None
    assert np.abs(first.values - second.values).max() > 0  # the seeds did give other orders
    combined = np.sqrt(first.standard_errors**2 + second.standard_errors**2)
    gap = np.abs(first.values - second.values)
    # Within 4 combined standard errors everywhere (allowing for the estimated SE of columns
    # that barely move the output, where both SEs are ~0 and so is the gap).
    assert np.all(gap <= 4 * combined + 1e-9)
    # Most gaps are inside 2 SE, and the SE is not inflated: the squared standardised gaps
    # average about 1, as they do for an honest standard error.
    assert float(np.mean(gap <= 2 * combined + 1e-9)) >= 0.8
    moving = combined > 1e-9
    assert 0.3 <= float(np.mean((gap[moving] / combined[moving]) ** 2)) <= 3.0


def test_permutation_adds_rounds_until_the_standard_errors_meet_the_tolerance() -> None:
    model, X = _permutation_model()
    coarse = ModelExplainer(model, BACKGROUND, max_background=20, max_evals=26, tolerance=None)
    coarse_result = coarse.explain(X)
    assert coarse_result.standard_errors is not None
    loose = float(coarse_result.standard_errors.max())
    assert loose > 0.005
    fine = ModelExplainer(
        model, BACKGROUND, max_background=20, max_evals=26, tolerance=0.005, max_permutations=400
    )
    fine_result = fine.explain(X)
    assert fine_result.standard_errors is not None
    assert float(fine_result.standard_errors.max()) <= 0.005
    assert "until every standard error of the case is below 0.005" in fine.note
    assert_additive(model, X, fine_result)


def test_permutation_cap_stops_the_rounds() -> None:
    model, X = _permutation_model()
    explainer = ModelExplainer(
        model, BACKGROUND, max_background=20, max_evals=26, tolerance=1e-9, max_permutations=6
    )
    result = explainer.explain(X.iloc[:2])
    assert "up to 6 permutations" in explainer.note
    assert result.standard_errors is not None and result.standard_errors.max() > 1e-9
    assert_additive(model, X.iloc[:2], result)


def test_permutation_tolerance_must_be_positive() -> None:
    model, _ = _permutation_model()
    with pytest.raises(ConfigError, match="tolerance must be a positive standard error"):
        ModelExplainer(model, BACKGROUND, max_background=10, tolerance=0.0)


def test_case_and_global_importance_and_top_reasons() -> None:
    model = make_model(logreg())
    result = explain(model, CASES, background=BACKGROUND)
    importance = result.global_importance()
    assert importance.index[0] == "radius"
    assert importance.is_monotonic_decreasing
    case = result.case(4)
    assert case.case_id == CASES.index[4]
    assert case.output == pytest.approx(model_output(model, CASES.iloc[[4]], "log-odds", 1)[0])
    reasons = case.top_reasons(2)
    assert len(reasons) == 2
    assert abs(reasons[0][2]) >= abs(reasons[1][2])
    assert reasons[0][1] == CASES.iloc[4][reasons[0][0]]


def test_missing_feature_column_is_a_schema_error() -> None:
    model = make_model(logreg())
    with pytest.raises(SchemaError, match=r"lacks 1 of the model's 6 feature columns: 'area'"):
        explain(model, CASES.drop(columns="area"))
    with pytest.raises(SchemaError, match=r"background data lacks .* 'site'"):
        ModelExplainer(model, BACKGROUND.drop(columns="site"))


def test_non_numeric_value_in_numeric_column_is_a_schema_error() -> None:
    model = make_model(logreg())
    X = CASES.astype({"radius": object})
    X.iloc[5, X.columns.get_loc("radius")] = "12,5"
    with pytest.raises(SchemaError, match=r"'radius' .* such as '12,5'; correct or blank"):
        ModelExplainer(model, BACKGROUND).explain(X)


def test_empty_or_non_frame_input_is_a_data_error() -> None:
    model = make_model(logreg())
    with pytest.raises(DataError, match="has no rows; pass at least one case"):
        explain(model, CASES.iloc[:0], background=BACKGROUND)
    with pytest.raises(DataError, match=r"must be a table .* got ndarray"):
        explain(model, CASES.to_numpy(), background=BACKGROUND)  # type: ignore[arg-type]


def test_bad_class_index_and_background_size_are_config_errors() -> None:
    model = make_model(logreg(), multi=True)
    with pytest.raises(ConfigError, match=r"class_index=3 is out of range .* between 0 and 2"):
        explain(model, CASES, class_index=3)
    with pytest.raises(ConfigError, match="max_background=0 leaves no background rows"):
        ModelExplainer(model, BACKGROUND, max_background=0)


def test_public_names() -> None:
    assert set(explain_module.__all__) == {
        "GLOBAL_CASES",
        "PERMUTATION_TOLERANCE",
        "contribution_label",
        "development_explainer",
        "development_explanation",
        "development_sample",
        "importance_description",
        "standard_error_label",
        "METHOD_LINEAR",
        "METHOD_PERMUTATION",
        "METHOD_TREE",
        "CaseExplanation",
        "Explanation",
        "ModelExplainer",
        "explain",
    }
