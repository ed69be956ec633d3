"""Tests for medimg_core.modelling.conformal: prediction sets with (approximate) coverage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.batch import predict_partitioned
from medimg_core.modelling.conformal import (
    EMPTY_TEXT,
    GUARANTEE_NOTE,
    UNCERTAIN_TEXT,
    check_confidence,
    confidence_text,
    conformal_summary,
    coverage_frame,
    fit_conformal,
    fit_scores,
    set_column_name,
    set_size_counts,
    summarise_sets,
    with_prediction_sets,
)
from medimg_core.modelling.prediction import predict
from medimg_core.modelling.training import TrainingResult
from medimg_core.store.cases import build_cases

NAMES = ("benign", "malignant")


def synthetic_binary(
    n: int, seed: int, *, prevalence: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels and a model that is worse on the rare (positive) class."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    # P(true class): high for the common class, often low for the rare one.
    p_true = np.where(y == 1, rng.beta(2.0, 2.0, n), rng.beta(8.0, 1.5, n))
    p_positive = np.where(y == 1, p_true, 1.0 - p_true)
    return y, p_positive


def tolerance(target: float, n_test: int, n_cal: int) -> float:
    """3 standard errors of the coverage (binomial on the test cases, plus the spread of the
    calibration quantile, about target * (1 - target) / n_cal), plus the 1/(q+1)
    conservativeness of unsmoothed p-values."""
    variance = target * (1 - target) * (1.0 / n_test + 1.0 / n_cal)
    return 3.0 * math.sqrt(variance) + 1.0 / (n_cal + 1)


@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_mondrian_coverage_overall_and_per_class_within_binomial_tolerance(
    confidence: float,
) -> None:
    y_cal, p_cal = synthetic_binary(4000, seed=1)
    y_test, p_test = synthetic_binary(20000, seed=2)
    fitted = fit_scores(y_cal, p_cal, NAMES, confidence=confidence)
    result = summarise_sets(fitted, y_test, p_test)
    assert result.n_calibration == 4000 and result.n_test == 20000
    assert result.test_coverage is not None
    assert abs(result.test_coverage - confidence) <= tolerance(confidence, 20000, 4000)
    for j, name in enumerate(NAMES):
        n_test, n_cal = int((y_test == j).sum()), int((y_cal == j).sum())
        assert abs(result.test_coverage_by_class[name] - confidence) <= tolerance(
            confidence, n_test, n_cal
        ), name
    assert sum(result.set_sizes.values()) == 20000
    low, high = result.test_coverage_ci95 or (0.0, 0.0)
    assert low <= result.test_coverage <= high


def test_standard_split_conformal_misses_the_rare_class_mondrian_does_not() -> None:
    y_cal, p_cal = synthetic_binary(4000, seed=3)
    y_test, p_test = synthetic_binary(20000, seed=4)
    standard = summarise_sets(
        fit_scores(y_cal, p_cal, NAMES, confidence=0.9, mondrian=False), y_test, p_test
    )
    mondrian = summarise_sets(fit_scores(y_cal, p_cal, NAMES, confidence=0.9), y_test, p_test)
    assert not standard.mondrian and mondrian.mondrian
    # Standard split conformal: right on average ...
    assert standard.test_coverage is not None
    assert abs(standard.test_coverage - 0.9) <= tolerance(0.9, 20000, 4000)
    # ... but the rare class is covered far less often; per class it is right again.
    assert standard.test_coverage_by_class["malignant"] < 0.8
    assert mondrian.test_coverage_by_class["malignant"] >= 0.9 - tolerance(0.9, 3000, 600)


def test_multiclass_coverage_per_class() -> None:
    rng = np.random.default_rng(5)
    names = ("glioma", "meningioma", "pituitary")

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
        alpha = np.ones((n, 3))
        alpha[np.arange(n), y] = 3.0
        return y, np.vstack([rng.dirichlet(a) for a in alpha])

    y_cal, p_cal = draw(3000)
    y_test, p_test = draw(12000)
    fitted = fit_scores(y_cal, p_cal, names, confidence=0.9)
    assert fitted.shown_order == (0, 1, 2)
    result = summarise_sets(fitted, y_test, p_test)
    for j, name in enumerate(names):
        n_test, n_cal = int((y_test == j).sum()), int((y_cal == j).sum())
        assert abs(result.test_coverage_by_class[name] - 0.9) <= tolerance(0.9, n_test, n_cal)
    sets = fitted.predict_sets(p_test[:200])
    assert all(set(s) <= set(names) for s in sets)
    assert any(len(s) >= 2 for s in sets)
    assert result.set_sizes["both/uncertain"] == int(
        (fitted.inclusion(p_test).sum(axis=1) >= 2).sum()
    )


def test_set_texts_name_the_classes() -> None:
    # Calibration: confident, correct development cases of both classes.
    y = np.array([0] * 50 + [1] * 50)
    p = np.concatenate([np.linspace(0.0, 0.2, 50), np.linspace(0.8, 1.0, 50)])
    fitted = fit_scores(y, p, NAMES, confidence=0.9)
    sets = fitted.predict_sets(np.array([0.99, 0.01, 0.5]))
    assert sets[0] == ("malignant",)
    assert sets[1] == ("benign",)
    assert sets[2] == ()
    assert fitted.set_text(sets[0]) == "{malignant}"
    assert fitted.set_text(sets[1]) == "{benign}"
    assert fitted.set_text(()) == "{} — no class at this confidence, refer"
    # Positive class first, whatever the code order.
    assert fitted.set_text(("malignant", "benign")) == "{malignant, benign} — uncertain, refer"
    # Overlapping classes: a middle probability is consistent with both.
    y2 = np.array([0] * 50 + [1] * 50)
    p2 = np.concatenate([np.linspace(0.0, 0.7, 50), np.linspace(0.3, 1.0, 50)])
    both = fit_scores(y2, p2, NAMES, confidence=0.9).predict_sets(np.array([0.5]))
    assert both == [("malignant", "benign")]
    assert fitted.set_texts(np.array([[0.01, 0.99]])) == ["{malignant}"]
    counts = set_size_counts(
        ["{malignant}", f"{{a, b}} — {UNCERTAIN_TEXT}", f"{{}} — {EMPTY_TEXT}", "{benign}"]
    )
    assert counts == {"single": 2, "both/uncertain": 1, "empty": 1}
    assert set_column_name(0.9) == "Prediction set (90%)"
    assert confidence_text(0.975) == "97.5%"


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), "ninety", None])
def test_bad_confidence_is_refused(bad: object) -> None:
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        check_confidence(bad)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        fit_scores([0, 1], [0.2, 0.8], NAMES, confidence=bad)  # type: ignore[arg-type]
    fitted = fit_scores([0, 1], [0.2, 0.8], NAMES)
    with pytest.raises(ConfigError, match=r"for example 0\.9"):
        fitted.at(bad)  # type: ignore[arg-type]


def direct_quantile(scores: np.ndarray, confidence: float) -> float:
    """Split-conformal quantile by hand: the ceil((n+1)(1-alpha))-th smallest score."""
    n = len(scores)
    rank = math.ceil((n + 1) * confidence)
    return math.inf if rank > n else float(np.sort(scores)[rank - 1])


@pytest.mark.parametrize("mondrian", [True, False])
@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95])
def test_crepes_agrees_with_a_direct_quantile(mondrian: bool, confidence: float) -> None:
    rng = np.random.default_rng(7)
    y_cal = rng.choice(3, size=301, p=[0.5, 0.35, 0.15])
    p_cal = rng.dirichlet([2.0, 2.0, 2.0], size=301)
    p_new = rng.dirichlet([1.0, 1.0, 1.0], size=500)
    fitted = fit_scores(y_cal, p_cal, ("a", "b", "c"), confidence=confidence, mondrian=mondrian)
    scores = 1.0 - p_cal[np.arange(301), y_cal]
    inside = fitted.inclusion(p_new)
    for j, name in enumerate(("a", "b", "c")):
        pool = scores[y_cal == j] if mondrian else scores
        q_hat = direct_quantile(pool, confidence)
        expected = 1.0 - p_new[:, j] <= q_hat
        np.testing.assert_array_equal(inside[:, j], expected)
        assert fitted.quantiles()[name if mondrian else "all"] == q_hat
        # The p-values are those of the textbook formula (no smoothing).
        p_values = fitted.p_values(p_new)[:, j]
        counts = (pool[None, :] >= (1.0 - p_new[:, j])[:, None]).sum(axis=1)
        np.testing.assert_allclose(p_values, (counts + 1) / (len(pool) + 1))


def test_too_few_calibration_cases_keep_a_class_in_every_set() -> None:
    y = np.array([0] * 40 + [1] * 5)
    p = np.concatenate([np.full(40, 0.1), np.full(5, 0.9)])
    fitted = fit_scores(y, p, NAMES, confidence=0.9)
    assert fitted.n_calibration_by_class == {"benign": 40, "malignant": 5}
    assert all("malignant" in s for s in fitted.predict_sets(np.array([0.0, 0.5, 1.0])))
    (note,) = fitted.notes()
    assert "Only 5 development case(s) of malignant" in note and "at least 9" in note
    assert fitted.at(0.8).notes() == ()  # 5 >= 0.8 / 0.2 = 4


def test_fit_conformal_uses_development_cases_only(
    trained: TrainingResult, wdbc: pd.DataFrame
) -> None:
    model = trained.model
    cases = build_cases(trained, wdbc)
    dev = cases[cases["partition"] == "development"]
    fitted = fit_conformal(model, cases)
    assert fitted.n_calibration == len(dev)
    assert fitted.class_names == ("benign", "malignant")
    # The test rows never change the calibration: relabel them all, same predictor.
    tampered = cases.copy()
    test_rows = tampered["partition"] == "test"
    tampered.loc[test_rows, "diagnosis"] = "benign"
    tampered.loc[test_rows, "p_positive"] = 0.5
    again = fit_conformal(model, tampered)
    np.testing.assert_array_equal(again.scores, fitted.scores)
    # The summary scores the stored test probabilities once, as the direct count does.
    result = conformal_summary(model, cases, confidence=0.9)
    test = cases[test_rows]
    y_test = model.encode_labels(test["diagnosis"])
    inside = fitted.inclusion(test["p_positive"].to_numpy())
    assert result.n_test == len(test)
    assert result.test_coverage == pytest.approx(inside[np.arange(len(test)), y_test].mean())
    for j, name in enumerate(fitted.class_names):
        assert result.test_coverage_by_class[name] == pytest.approx(inside[y_test == j, j].mean())
    assert sum(result.set_sizes.values()) == len(test)
    assert result.notes[0] == GUARANTEE_NOTE
    assert "held-out test cases the true class was in the set" in result.sentence
    as_dict = result.to_dict()
    assert as_dict["confidence"] == 0.9 and as_dict["n_test"] == len(test)
    no_test = conformal_summary(model, cases[~test_rows])
    assert no_test.test_coverage is None and "not measured" in no_test.sentence
    with pytest.raises(DataError, match="no development rows"):
        fit_conformal(model, cases[test_rows])
    with pytest.raises(DataError, match="lack the column"):
        fit_conformal(model, cases.drop(columns="p_positive"))


def test_prediction_set_column_is_the_same_whole_or_in_parts(
    trained: TrainingResult, wdbc: pd.DataFrame, tmp_path: object
) -> None:
    model = trained.model
    fitted = fit_conformal(model, build_cases(trained, wdbc), confidence=0.95)
    new = wdbc.drop(columns="diagnosis").head(120)
    whole = with_prediction_sets(predict(model, new).frame, model, fitted)
    columns = list(whole.columns)
    assert columns[columns.index("decision") + 1] == "Prediction set (95%)"
    parts = pd.concat(
        [
            with_prediction_sets(predict(model, new.iloc[:50]).frame, model, fitted),
            with_prediction_sets(predict(model, new.iloc[50:]).frame, model, fitted),
        ]
    )
    assert parts["Prediction set (95%)"].tolist() == whole["Prediction set (95%)"].tolist()
    p = whole["p_malignant"].to_numpy()
    assert whole["Prediction set (95%)"].tolist() == fitted.set_texts(p)
    with pytest.raises(DataError, match="lack the probability column"):
        with_prediction_sets(whole.drop(columns="p_malignant"), model, fitted)


def test_batch_prediction_carries_the_sets(
    trained: TrainingResult, wdbc: pd.DataFrame, tmp_path: pytest.TempPathFactory
) -> None:
    from pathlib import Path

    model = trained.model
    fitted = fit_conformal(model, build_cases(trained, wdbc))
    source = Path(str(tmp_path)) / "new.parquet"
    wdbc.drop(columns="diagnosis").to_parquet(source, index=False, row_group_size=200)
    result = predict_partitioned(
        model, source, Path(str(tmp_path)) / "out", rows_per_partition=200, conformal=fitted
    )
    parts = pd.concat([pd.read_parquet(result.output / p) for p in result.parts])
    expected = with_prediction_sets(
        predict(model, wdbc.drop(columns="diagnosis")).frame, model, fitted
    )
    assert parts["Prediction set (90%)"].tolist() == expected["Prediction set (90%)"].tolist()
    assert result.set_sizes == set_size_counts(expected["Prediction set (90%)"])
    assert result.to_dict()["prediction_sets"]["confidence"] == 0.9
    assert any(n.startswith("Prediction sets at 90% confidence") for n in result.notes)


def test_the_card_summarises_coverage_at_90_and_95(
    trained: TrainingResult, wdbc: pd.DataFrame
) -> None:
    from medimg_core.store.persistence import build_card

    card = build_card(trained, cleaning=None, dataset_name="wdbc")
    cases = build_cases(trained, wdbc)
    assert set(card["conformal"]) == {"0.9", "0.95"}
    for confidence in (0.9, 0.95):
        expected = conformal_summary(trained.model, cases, confidence=confidence).to_dict()
        assert card["conformal"][f"{confidence:g}"] == expected
    assert card["conformal"]["0.9"]["n_calibration"] == trained.cv.n


def test_coverage_frame_shows_the_summaries_numbers() -> None:
    y_cal, p_cal = synthetic_binary(800, seed=11)
    y_test, p_test = synthetic_binary(400, seed=12)
    fitted = fit_scores(y_cal, p_cal, NAMES)
    measured = [summarise_sets(fitted.at(c), y_test, p_test) for c in (0.9, 0.95)]
    frame = coverage_frame(measured)
    assert frame["Target"].tolist() == ["90%", "95%"]
    for row, item in zip(frame.to_dict("records"), measured, strict=True):
        assert item.test_coverage is not None and item.test_coverage_ci95 is not None
        low, high = item.test_coverage_ci95
        assert row["Test coverage (95% CI)"] == (f"{item.test_coverage:.1%} ({low:.1%}–{high:.1%})")
        assert row["Coverage, malignant"] == f"{item.test_coverage_by_class['malignant']:.1%}"
        assert row["One class"] == item.set_sizes["single"]
        assert row["Uncertain (2+ classes)"] == item.set_sizes["both/uncertain"]
        assert row["Empty"] == item.set_sizes["empty"]
        assert row["One class"] + row["Uncertain (2+ classes)"] + row["Empty"] == 400
    empty = coverage_frame([summarise_sets(fitted, [], [])])
    assert empty.loc[0, "Test coverage (95% CI)"] == "n/a"


def test_test_cases_unlike_the_development_cases_are_flagged() -> None:
    y_cal, p_cal = synthetic_binary(800, seed=21)
    y_test, p_test = synthetic_binary(400, seed=22)
    fitted = fit_scores(y_cal, p_cal, NAMES, confidence=0.9)
    same = summarise_sets(fitted, y_test, p_test)
    assert not same.falls_short
    assert "beyond chance" not in same.sentence
    # Another population: the model is as confident, but often wrong, on the test cases.
    shifted = summarise_sets(fitted, 1 - y_test, p_test)
    assert shifted.test_coverage is not None and shifted.test_coverage < 0.5
    assert shifted.falls_short
    assert "below the target beyond chance" in shifted.sentence
