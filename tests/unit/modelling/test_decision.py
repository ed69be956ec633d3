"""Decision curves: net benefit by hand, against a direct loop, edge cases and input checks."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.decision import (
    CARD_THRESHOLDS,
    DEFAULT_THRESHOLDS,
    DecisionCurve,
    decision_card,
    decision_curve,
    decision_curves_card,
    evaluation_curve,
    net_benefit_at,
)
from medimg_core.modelling.training import TrainingResult

# Ten cases, four diseased (prevalence 0.4).
Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.6, 0.3, 0.7, 0.4, 0.2, 0.2, 0.1, 0.05])


def direct_loop(y: np.ndarray, p: np.ndarray, t: float) -> float:
    tp = fp = 0
    for yi, pi in zip(y, p, strict=True):
        if pi >= t:
            if yi == 1:
                tp += 1
            else:
                fp += 1
    return tp / len(y) - fp / len(y) * t / (1 - t)


def test_net_benefit_by_hand_on_ten_cases() -> None:
    curve = decision_curve(Y, P, partition="cv", chosen_threshold=0.5)
    # t = 0.5: called positive 0.9, 0.8, 0.6 (diseased) and 0.7 (not): 3/10 − 1/10 · 1 = 0.2;
    # treat all: 0.4 − 0.6 · 1 = −0.2.
    assert curve.at(0.5) == pytest.approx((0.2, -0.2))
    # t = 0.25 (weight 1/3): 4 diseased and 2 healthy called (0.7, 0.4): 0.4 − 0.2/3;
    # treat all 0.4 − 0.6/3 = 0.2.
    assert curve.at(0.25) == pytest.approx((0.4 - 0.2 / 3, 0.2))
    # t = 0.2: ties at 0.2 are called positive (P ≥ t), so 4 healthy: 0.4 − 0.4/4 = 0.3.
    assert curve.at(0.2) == pytest.approx((0.3, 0.25))
    # t = 0.95: nobody called positive: net benefit 0, like treating no one.
    assert curve.at(0.95)[0] == pytest.approx(0.0)
    assert curve.prevalence == pytest.approx(0.4)
    assert curve.n == 10


def test_reading_at_the_chosen_threshold() -> None:
    curve = decision_curve(Y, P, partition="test", chosen_threshold=0.3)
    reading = net_benefit_at(curve)
    # t = 0.3 (weight 3/7): 4 diseased, 2 healthy called: 0.4 − 0.2 · 3/7; treat all 0.4 − 0.6 · 3/7.
    nb, all_ = 0.4 - 0.2 * 3 / 7, 0.4 - 0.6 * 3 / 7
    assert reading.net_benefit == pytest.approx(nb)
    assert reading.treat_all == pytest.approx(all_)
    # (NB − NB_all) · (1 − t)/t · 100 = 0.4 · 3/7 · 7/3 · 100 = 40 fewer interventions.
    assert reading.interventions_avoided_per_100 == pytest.approx(40.0)
    assert reading.best_strategy == "model"
    text = reading.sentence("malignant")
    assert text.startswith(f"At threshold 0.30 the model's net benefit is {nb:.3f} vs {all_:.3f}")
    assert "40.0 fewer unnecessary interventions per 100 patients" in text
    assert "no missed malignant" in text


def test_matches_a_direct_loop_on_random_data() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(int)
    p = np.round(np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1), 2)  # many ties with the grid
    curve = decision_curve(y, p, partition="cv", chosen_threshold=0.377)
    assert 0.377 in curve.thresholds
    assert len(curve.thresholds) == len(DEFAULT_THRESHOLDS) + 1
    for t, nb, ta in zip(curve.thresholds, curve.net_benefit, curve.treat_all, strict=True):
        assert nb == pytest.approx(direct_loop(y, p, t), abs=1e-12)
        assert ta == pytest.approx(y.mean() - (1 - y.mean()) * t / (1 - t), abs=1e-12)
    assert curve.at(0.377)[0] == pytest.approx(direct_loop(y, p, 0.377))


def test_all_one_class() -> None:
    p = np.array([0.2, 0.5, 0.8])
    none = decision_curve(np.zeros(3, dtype=int), p, partition="cv", chosen_threshold=0.5)
    assert none.prevalence == 0.0
    # Only false positives: model −FP/n · t/(1 − t), treat all −t/(1 − t).
    assert none.at(0.5) == pytest.approx((-2 / 3, -1.0))
    assert net_benefit_at(none).best_strategy == "treat none"
    assert "no better than treating no one" in net_benefit_at(none).sentence("malignant")
    every = decision_curve(np.ones(3, dtype=int), p, partition="cv")
    # Every case diseased: treating all earns the prevalence, 1, at every threshold.
    assert np.allclose(every.treat_all, 1.0)
    assert every.at(0.5) == pytest.approx((2 / 3, 1.0))
    assert net_benefit_at(every, 0.5).best_strategy == "treat all"


def test_custom_thresholds_and_two_column_probabilities() -> None:
    proba = np.column_stack([1 - P, P])
    curve = decision_curve(Y, proba, partition="external", thresholds=[0.5, 0.1, 0.25])
    assert list(curve.thresholds) == [0.1, 0.25, 0.5]
    assert curve.net_benefit[2] == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("y", "p", "error", "match"),
    [
        (Y, np.where(np.arange(10) == 3, np.nan, P), DataError, "missing"),
        (Y, P * 10, DataError, "between 0 and 1"),
        (Y, P - 0.5, DataError, "between 0 and 1"),
        (Y[:5], P, DataError, "one label and one probability"),
        (np.array([], dtype=int), np.array([]), DataError, "no cases"),
        (Y * 2, P, DataError, "0/1"),
        (np.array([0, 1, 2] * 3 + [0]), P, ConfigError, "two-class"),
        (Y, np.full((10, 3), 1 / 3), ConfigError, "two-class model"),
        (Y, np.array(["a"] * 10), DataError, "numbers"),
    ],
)
def test_bad_inputs_are_refused_clearly(
    y: np.ndarray, p: np.ndarray, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        decision_curve(y, p, partition="cv")


@pytest.mark.parametrize("t", [0.0, 1.0, -0.1, float("nan")])
def test_thresholds_must_lie_strictly_inside_zero_one(t: float) -> None:
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        decision_curve(Y, P, partition="cv", thresholds=[0.2, t])
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        decision_curve(Y, P, partition="cv", chosen_threshold=t)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        decision_curve(Y, P, partition="cv").at(t)


def test_reading_needs_a_threshold() -> None:
    with pytest.raises(ConfigError, match="no chosen threshold"):
        net_benefit_at(decision_curve(Y, P, partition="cv"))


def test_round_trip_through_a_dict() -> None:
    curve = decision_curve(Y, P, partition="test", chosen_threshold=0.42)
    back = DecisionCurve.from_dict(curve.to_dict())
    assert back.y_true is None
    assert np.array_equal(back.thresholds, curve.thresholds)
    assert np.allclose(back.net_benefit, curve.net_benefit)
    assert back.chosen_threshold == pytest.approx(0.42)
    # On the grid (the chosen threshold was added to it) the stored curve is exact.
    assert back.at(0.42) == pytest.approx(curve.at(0.42))
    # Between grid points it reads the line the figure draws.
    mid = back.at(0.415)[0]
    assert mid == pytest.approx(np.interp(0.415, curve.thresholds, curve.net_benefit))
    with pytest.raises(DataError, match="cannot be read"):
        DecisionCurve.from_dict({"partition": "cv"})


def test_card_summary() -> None:
    curve = decision_curve(Y, P, partition="cv", chosen_threshold=0.5)
    card = decision_card(curve)
    assert card is not None
    assert card["prevalence"] == pytest.approx(0.4)
    assert card["chosen"]["net_benefit"] == pytest.approx(0.2)
    assert card["chosen"]["treat_all"] == pytest.approx(-0.2)
    assert [row["threshold"] for row in card["at"]] == list(CARD_THRESHOLDS)
    assert card["at"][1]["net_benefit"] == pytest.approx(0.3)  # t = 0.2, worked out above
    assert decision_card(None) is None


def test_card_entry_of_a_trained_model(trained: TrainingResult) -> None:
    entry = decision_curves_card(trained.cv, trained.test)
    assert entry is not None and trained.test is not None
    t = trained.model.threshold
    cv_curve = evaluation_curve(trained.cv)
    assert cv_curve is not None and cv_curve.chosen_threshold == pytest.approx(t)
    y = np.asarray(trained.cv.y_true)
    expected = direct_loop(y, np.asarray(trained.cv.y_score), t)
    assert entry["cv"]["chosen"]["net_benefit"] == pytest.approx(expected)
    assert entry["test"]["n"] == trained.test.n
    # The sample model beats treating everyone at its threshold, on both partitions.
    for part in ("cv", "test"):
        chosen = entry[part]["chosen"]
        assert chosen["net_benefit"] > max(chosen["treat_all"], 0.0)
