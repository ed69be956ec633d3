"""Tests for medimg_core.modelling.calibration: recalibration, departures, target prevalence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling import calibration
from medimg_core.modelling.calibration import (
    calibration_card,
    calibration_line,
    departure_warnings,
    fit_recalibration,
    predictive_values,
    predictive_values_at,
    recalibration_check,
)
from medimg_core.modelling.evaluation import (
    Evaluation,
    MetricValue,
    choose_threshold,
    confusion_at,
    evaluate_scores,
)
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.tables.roles import Roles


def distorted(
    n: int, seed: int, *, a: float = 1.0, b: float = 2.0, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Labels from the true risk expit(z + shift); the model reports expit(a + b·z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < expit(z + shift)).astype(int)
    return y, expit(a + b * z)


def ev(y: np.ndarray, p: np.ndarray, partition: str, **kw: object) -> Evaluation:
    return evaluate_scores(
        y,
        p,
        class_names=("benign", "malignant"),
        positive_class="malignant",
        partition=partition,
        n_boot=kw.pop("n_boot", 200),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_public_names_are_exported() -> None:
    public = {n for n in dir(calibration) if not n.startswith("_")}
    assert set(calibration.__all__) <= public
    assert "fit_recalibration" in calibration.__all__


def test_recalibration_recovers_a_known_distortion() -> None:
    # The model's logit is 1 + 2z for a true logit z: z = -0.5 + 0.5 * logit(p).
    y, p = distorted(40_000, 0)
    recal = fit_recalibration(y, p)
    assert recal.intercept == pytest.approx(-0.5, abs=0.05)
    assert recal.slope == pytest.approx(0.5, abs=0.03)
    assert recal.n_development == 40_000
    assert recal.to_dict()["fitted_on"] == "out-of-fold development predictions"
    # Applying it undoes the distortion.
    assert recal.apply(expit(1 + 2 * np.array([0.0, 1.0]))) == pytest.approx(
        expit([0.0, 1.0]), abs=0.02
    )


def test_recalibration_refuses_one_class_and_separated_classes() -> None:
    with pytest.raises(DataError, match="both classes"):
        fit_recalibration(np.ones(10, dtype=int), np.linspace(0.1, 0.9, 10))
    with pytest.raises(DataError, match="separate the classes perfectly"):
        fit_recalibration(np.r_[np.zeros(5), np.ones(5)].astype(int), np.r_[[0.1] * 5, [0.9] * 5])
    with pytest.raises(ConfigError, match="probabilities"):
        fit_recalibration(np.array([0, 1]), np.array([-0.5, 2.0]))


def test_recalibration_check_fits_on_development_and_scores_test_once() -> None:
    y_dev, p_dev = distorted(3000, 1)
    y_test, p_test = distorted(1500, 2)
    cv, test = ev(y_dev, p_dev, "cv"), ev(y_test, p_test, "test")
    check = recalibration_check(cv, test, method="0.5")
    before, after = test.calibration_stats, check.test_after.calibration_stats  # type: ignore[union-attr]
    assert before is not None and after is not None
    # Over-confident, too high before; close to ideal on the test cases afterwards.
    assert before["slope"] < 0.7 and before["intercept"] < -0.3
    assert after["slope"] == pytest.approx(1.0, abs=0.15)
    assert abs(after["intercept"]) < 0.15
    assert not check.still_departs
    assert check.test_after.partition == "test, recalibrated"  # type: ignore[union-attr]
    # The test labels play no part in the fit: flipping them leaves it unchanged.
    flipped = ev(1 - y_test, p_test, "test")
    other = recalibration_check(cv, flipped, method="0.5")
    assert other.recalibration == check.recalibration
    rows = {r["figure"]: r for r in check.table()}
    assert rows["Calibration slope"]["after"] != rows["Calibration slope"]["before"]
    assert set(rows) >= {"Calibration intercept", "Brier score", "Threshold", "Sensitivity"}


def test_recalibration_keeps_the_calls_of_a_rank_based_threshold_rule() -> None:
    y_dev, p_dev = distorted(2000, 3)
    y_test, p_test = distorted(800, 4)
    cv, test = ev(y_dev, p_dev, "cv"), ev(y_test, p_test, "test")
    raw = choose_threshold(y_dev, p_dev, method="youden")
    check = recalibration_check(cv, test, method="youden", threshold=raw)
    assert check.threshold_before == raw
    # Youden re-chosen on the recalibrated development scores is the same cut on a new scale,
    # so the test cases are called exactly as before.
    assert check.threshold_after == pytest.approx(check.recalibration.apply(np.array([raw]))[0])
    before = confusion_at(test, raw)
    assert check.test_after is not None
    assert (check.test_after.confusion == before.confusion).all()
    with pytest.raises(ConfigError, match="development"):
        recalibration_check(test, test)


def test_predictive_values_at_a_target_prevalence_match_bayes() -> None:
    pv = predictive_values(0.9, 0.8, 0.01)
    assert pv.ppv.value == pytest.approx(0.0435, abs=5e-5)
    assert pv.npv.value == pytest.approx(0.99874, abs=5e-6)
    assert np.isnan(pv.ppv.ci95[0])
    # Intervals are carried from the matching bounds of sensitivity and specificity.
    pv = predictive_values(MetricValue(0.9, (0.85, 0.94)), MetricValue(0.8, (0.75, 0.85)), 0.01)
    assert pv.ppv.ci95[0] == pytest.approx(0.85 * 0.01 / (0.85 * 0.01 + 0.25 * 0.99))
    assert pv.ppv.ci95[1] == pytest.approx(0.94 * 0.01 / (0.94 * 0.01 + 0.15 * 0.99))
    assert pv.npv.ci95[0] == pytest.approx(0.75 * 0.99 / (0.75 * 0.99 + 0.15 * 0.01))
    assert pv.ppv.ci95[0] < pv.ppv.value < pv.ppv.ci95[1]
    assert pv.npv.ci95[0] < pv.npv.value < pv.npv.ci95[1]
    # At the prevalence of the data set itself Bayes gives back the observed PPV.
    assert predictive_values(0.9, 0.8, 0.5).ppv.value == pytest.approx(0.9 / 1.1)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="prevalence"):
            predictive_values(0.9, 0.8, bad)


def test_predictive_values_of_an_evaluation_use_its_intervals() -> None:
    y, p = distorted(600, 5, a=0.0, b=1.0)
    cv = ev(y, p, "cv", threshold=0.5)
    pv = predictive_values_at(cv, 0.05)
    assert pv.sensitivity == cv.metrics["sensitivity"]
    assert pv.positive_class == "malignant" and pv.threshold == 0.5
    moved = predictive_values_at(cv, 0.05, threshold=0.8)
    assert moved.sensitivity.value < pv.sensitivity.value
    assert moved.specificity.value > pv.specificity.value
    lo, hi = moved.sensitivity.ci95
    assert lo < moved.sensitivity.value < hi
    assert "Wilson" in moved.sensitivity.method


def test_departure_warns_when_test_probabilities_are_too_high() -> None:
    y_dev, p_dev = distorted(2000, 6, a=0.0, b=1.0)
    # Test population with far less disease than the model expects: calibration-in-the-large
    # about -1.5.
    y_test, p_test = distorted(1000, 7, a=0.0, b=1.0, shift=-1.5)
    cv, test = ev(y_dev, p_dev, "cv"), ev(y_test, p_test, "test")
    assert test.calibration_stats is not None
    assert test.calibration_stats["intercept"] < -1.0
    notes = departure_warnings(cv, test)
    assert any(
        n.startswith("On the test cases the model's probabilities are too high on average")
        and "calibration-in-the-large −1." in n
        for n in notes
    )
    # Development data cannot correct a shift that only the test population shows.
    assert recalibration_check(cv, test).still_departs
    # Well calibrated on both: no calibration warning.
    y2, p2 = distorted(1000, 8, a=0.0, b=1.0)
    assert not [n for n in departure_warnings(cv, ev(y2, p2, "test")) if "too" in n]
    assert departure_warnings(cv, None) == []


def test_an_intercept_from_overconfident_extremes_is_not_called_too_low_on_average() -> None:
    """k-nearest neighbours give probabilities of exactly 0 or 1: a few positives among the
    cases called "certainly benign" move the log-odds intercept far while the average
    probability matches the observed rate (seen on the Wisconsin mimic: 0.93, 33.8% vs 34.8%)."""
    y_dev, p_dev = distorted(2000, 6, a=0.0, b=1.0)
    y_test = np.r_[np.ones(10), np.zeros(990), np.ones(500)].astype(int)
    p_test = np.r_[np.full(1000, 1e-6), np.full(500, 1 - 1e-6)]
    test = ev(y_test, p_test, "test")
    assert test.calibration_stats is not None and test.calibration_stats["intercept"] > 0.5
    notes = departure_warnings(ev(y_dev, p_dev, "cv"), test)
    calibration = [n for n in notes if "calibration-in-the-large" in n]
    assert len(calibration) == 1
    assert "too low on average" not in calibration[0]
    assert "probabilities near 0 or 1" in calibration[0]
    assert "33.3%" in calibration[0] and "34.0%" in calibration[0]


def test_departure_warns_when_test_sensitivity_leaves_the_cv_interval() -> None:
    y_dev, p_dev = distorted(2000, 9, a=0.0, b=1.0)
    cv = ev(y_dev, p_dev, "cv")
    y_test, p_test = distorted(1000, 10, a=0.0, b=1.0)
    # Half the test positives get their scores lowered: sensitivity drops on the test set.
    pos = np.flatnonzero(y_test == 1)
    p_low = p_test.copy()
    p_low[pos[::2]] *= 0.3
    notes = departure_warnings(cv, ev(y_test, p_low, "test"))
    worse = [n for n in notes if "does worse than development" in n]
    assert worse and "sensitivity for malignant" in worse[0]
    lo, hi = cv.metrics["sensitivity"].ci95
    assert f"{lo:.3f}–{hi:.3f}" in worse[0]


def test_calibration_card_entry_and_line() -> None:
    y, p = distorted(500, 11)
    test = ev(y, p, "test")
    entry = calibration_card(test)
    assert entry is not None
    assert set(entry) >= {"intercept", "slope", "mean_predicted", "observed_rate", "curve", "n"}
    assert len(entry["curve"]["mean_predicted"]) == len(test.calibration.x)  # type: ignore[union-attr]
    assert sum(entry["curve"]["n"]) == 500
    line = calibration_line("test", entry)
    assert line.startswith("calibration (test): intercept −")
    assert f"slope {entry['slope']:.2f}" in line
    assert "perfectly separated" in calibration_line("test", {"intercept": None, "slope": None})


def test_training_warns_when_a_predefined_test_set_departs() -> None:
    """A shifted test population reaches TrainingResult.warnings through the guards."""
    rng = np.random.default_rng(12)
    n_dev, n_test = 600, 300
    x = rng.normal(0, 1, (n_dev + n_test, 3))
    risk = 1.5 * x[:, 0] + x[:, 1]
    risk[n_dev:] -= 2.0  # the test clinic sees much less disease at the same findings
    y = rng.random(n_dev + n_test) < expit(risk)
    data = pd.DataFrame(x, columns=["a", "b", "c"])
    data["finding"] = np.where(y, "malignant", "benign")
    is_test = tuple(bool(v) for v in np.arange(n_dev + n_test) >= n_dev)
    result: TrainingResult = train(
        data,
        Roles(label="finding"),
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=100, predefined_test=is_test),
        positive="malignant",
    )
    assert any("probabilities are too high on average" in w for w in result.warnings)
