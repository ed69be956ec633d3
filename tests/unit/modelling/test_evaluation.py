from __future__ import annotations

import inspect
import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling import evaluation as ev_mod
from medimg_core.modelling.evaluation import (
    METRIC_HELP,
    METRIC_KEYS,
    METRIC_LABELS,
    Evaluation,
    MetricValue,
    case_table,
    choose_threshold,
    confusion_at,
    evaluate_scores,
    format_metric,
    metric_label,
    positive_class_caption,
    summary_frame,
    tradeoff_table,
)

NAMES = ("benign", "malignant")


def binary_data(n: int, seed: int = 0, *, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    return y, (s.round(2) if ties else s)


def multi_data(n: int, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p.round(3) / p.round(3).sum(axis=1, keepdims=True)


def evaluate(y: Any, s: Any, **kw: Any) -> Evaluation:
    kw.setdefault("n_boot", 200)
    if s.ndim == 1:
        return evaluate_scores(y, s, class_names=NAMES, positive_class="malignant", **kw)
    names = tuple(f"class {c}" for c in range(s.shape[1]))
    return evaluate_scores(y, s, class_names=names, positive_class=None, **kw)


def test_public_names_are_exported() -> None:
    defined = {
        name
        for name, obj in vars(ev_mod).items()
        if not name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and obj.__module__ == ev_mod.__name__
    }
    assert defined <= set(ev_mod.__all__)
    assert all(hasattr(ev_mod, name) for name in ev_mod.__all__)


def test_binary_point_metrics_match_sklearn() -> None:
    y, s = binary_data(600, seed=1)
    ev = evaluate(y, s, threshold=0.45)
    pred = (s >= 0.45).astype(int)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, s),
        "pr_auc": skm.average_precision_score(y, s),
        "sensitivity": skm.recall_score(y, pred),
        "specificity": skm.recall_score(y, pred, pos_label=0),
        "ppv": skm.precision_score(y, pred),
        "npv": skm.precision_score(y, pred, pos_label=0),
        "f1": skm.f1_score(y, pred),
        "brier": skm.brier_score_loss(y, s),
    }
    for key, value in expected.items():
        assert ev.metrics[key].value == pytest.approx(value, abs=1e-12), key
    np.testing.assert_array_equal(ev.confusion, skm.confusion_matrix(y, pred))
    assert set(ev.metrics) == set(METRIC_KEYS)
    assert ev.threshold == 0.45
    assert ev.positive_class == "malignant"
    assert ev.is_binary


def test_multiclass_point_metrics_match_sklearn() -> None:
    y, p = multi_data(900, seed=2)
    ev = evaluate(y, p)
    pred = p.argmax(axis=1)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
        "pr_auc": skm.average_precision_score(y, p, average="macro"),
        "sensitivity": skm.recall_score(y, pred, average="macro"),
        "ppv": skm.precision_score(y, pred, average="macro"),
        "f1": skm.f1_score(y, pred, average="macro"),
        "brier": skm.brier_score_loss(y, p),
    }
    for key, value in expected.items():
        assert ev.metrics[key].value == pytest.approx(value, abs=1e-12), key
    spec = [skm.recall_score(y == c, pred == c, pos_label=False) for c in range(3)]
    npv = [skm.precision_score(y == c, pred == c, pos_label=False) for c in range(3)]
    assert ev.metrics["specificity"].value == pytest.approx(np.mean(spec))
    assert ev.metrics["npv"].value == pytest.approx(np.mean(npv))
    np.testing.assert_array_equal(ev.confusion, skm.confusion_matrix(y, pred))
    assert ev.per_class is not None
    recalls = skm.recall_score(y, pred, average=None)
    for c, name in enumerate(ev.class_names):
        figures = ev.per_class[name]
        assert figures["sensitivity"] == pytest.approx(recalls[c])
        assert figures["roc_auc"] == pytest.approx(skm.roc_auc_score(y == c, p[:, c]))
        assert figures["n"] == (y == c).sum()
    assert ev.threshold == 0.5
    assert ev.positive_class is None
    assert ev.roc is None and ev.pr is None and ev.calibration is None
    assert not ev.is_binary


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_binary_statistics_match_sklearn_sample_weight(seed: int) -> None:
    """The bootstrap computes every replicate from case multiplicities: check them directly."""
    y, s = binary_data(300, seed=seed)
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 4, size=(5, len(y))).astype(float)
    t = 0.5
    layout = ev_mod._layout(y, (s >= t).astype(np.int64), s)
    stats = ev_mod._binary_stats_fn(y[layout], s[layout], t)
    values, totals = stats(weights[:, layout])
    pred = (s >= t).astype(int)
    for r, w in enumerate(weights):
        assert values["roc_auc"][r] == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w))
        assert values["pr_auc"][r] == pytest.approx(
            skm.average_precision_score(y, s, sample_weight=w)
        )
        assert values["brier"][r] == pytest.approx(skm.brier_score_loss(y, s, sample_weight=w))
        assert values["ppv"][r] == pytest.approx(skm.precision_score(y, pred, sample_weight=w))
        assert values["sensitivity"][r] == pytest.approx(skm.recall_score(y, pred, sample_weight=w))
        np.testing.assert_allclose(totals[r], np.bincount(y, weights=w, minlength=2))


def test_weighted_multiclass_statistics_match_sklearn_sample_weight() -> None:
    y, p = multi_data(300, seed=3)
    weights = np.random.default_rng(3).integers(0, 4, size=(4, len(y))).astype(float)
    pred = p.argmax(axis=1)
    layout = ev_mod._layout(y, pred, pred)
    stats, _ = ev_mod._multiclass_stats_fn(y[layout], p[layout])
    values, _ = stats(weights[:, layout])
    for r, w in enumerate(weights):
        assert values["roc_auc"][r] == pytest.approx(
            skm.roc_auc_score(y, p, multi_class="ovr", sample_weight=w)
        )
        assert values["f1"][r] == pytest.approx(
            skm.f1_score(y, pred, average="macro", sample_weight=w)
        )
        assert values["brier"][r] == pytest.approx(skm.brier_score_loss(y, p, sample_weight=w))


def test_intervals_contain_the_estimate_and_narrow_with_n() -> None:
    small = evaluate(*binary_data(150, seed=4))
    large = evaluate(*binary_data(3000, seed=4))
    for key in METRIC_KEYS:
        for ev in (small, large):
            lo, hi = ev.metrics[key].ci95
            assert lo <= ev.metrics[key].value <= hi, key
        width_small = np.diff(small.metrics[key].ci95)[0]
        width_large = np.diff(large.metrics[key].ci95)[0]
        assert width_large < width_small, key
    assert small.n_boot == small.n_boot_requested == 200
    assert not small.groups_resampled and small.n_groups is None


def test_bootstrap_is_reproducible_for_a_seed() -> None:
    y, s = binary_data(200, seed=5)
    first = evaluate(y, s, seed=7).to_dict()
    assert evaluate(y, s, seed=7).to_dict() == first
    assert evaluate(y, s, seed=8).to_dict() != first


def test_grouped_bootstrap_resamples_whole_patients() -> None:
    # Two patients with 500 images each: the model is always right on one, always wrong on the
    # other. Rows look like 1,000 independent cases; there are really two.
    y = np.tile([0, 1], 500)
    s = np.where(y == 1, 0.9, 0.1)
    s[500:] = 1 - s[500:]
    groups = np.repeat(["patient A", "patient B"], 500)
    by_row = evaluate(y, s)
    by_patient = evaluate(y, s, groups=groups)
    assert by_row.metrics["accuracy"].value == by_patient.metrics["accuracy"].value == 0.5
    assert np.diff(by_row.metrics["accuracy"].ci95)[0] < 0.1
    assert by_patient.metrics["accuracy"].ci95 == (0.0, 1.0)
    assert by_patient.groups_resampled
    assert by_patient.n_groups == 2


def test_one_row_per_patient_matches_row_bootstrap_width() -> None:
    y, s = binary_data(800, seed=6)
    by_row = evaluate(y, s, n_boot=400)
    singletons = evaluate(y, s, n_boot=400, groups=[f"p{i}" for i in range(len(y))])
    for key in ("roc_auc", "sensitivity", "brier"):
        w_row = np.diff(by_row.metrics[key].ci95)[0]
        w_grp = np.diff(singletons.metrics[key].ci95)[0]
        assert w_grp == pytest.approx(w_row, rel=0.25), key


def test_missing_patient_ids_count_as_separate_patients() -> None:
    y, s = binary_data(40, seed=7)
    groups = np.array(["a"] * 10 + [None] * 30, dtype=object)
    ev = evaluate(y, s, groups=groups)
    assert ev.n_groups == 31


def test_degenerate_replicates_are_skipped_and_counted() -> None:
    y = np.zeros(30, dtype=int)
    y[0] = 1
    s = np.linspace(0.05, 0.95, 30)
    ev = evaluate(y, s, n_boot=500)
    assert ev.n_boot_requested == 500
    # A replicate misses the only positive with probability (29/30)^30, about 36%.
    assert 200 < ev.n_boot < 450
    assert np.isfinite(ev.metrics["roc_auc"].ci95).all()


def test_one_class_gives_nan_for_metrics_that_need_both_without_warnings() -> None:
    y = np.ones(20, dtype=int)
    s = np.linspace(0.3, 0.9, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = evaluate(y, s)
        summary_frame(ev)
    for key in ("roc_auc", "pr_auc", "specificity", "balanced_accuracy"):
        assert np.isnan(ev.metrics[key].value), key
        assert np.isnan(ev.metrics[key].ci95).all(), key
    assert ev.metrics["accuracy"].value == pytest.approx(ev.metrics["sensitivity"].value)
    assert np.isfinite(ev.metrics["accuracy"].ci95).all()
    assert ev.n_boot == 200
    assert ev.roc is None and ev.pr is None
    assert ev.calibration_stats is not None and np.isnan(ev.calibration_stats["slope"])
    assert json.dumps(ev.to_dict())


def test_ppv_without_positive_calls_is_nan() -> None:
    y, s = binary_data(100, seed=8)
    s = s * 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = evaluate(y, s, threshold=0.95)
    assert np.isnan(ev.metrics["ppv"].value)
    assert ev.metrics["sensitivity"].value == 0.0
    assert ev.to_dict()["ppv"] == {"value": None, "ci95": [None, None]}


def test_multiclass_with_an_absent_class_does_not_crash() -> None:
    y, p = multi_data(120, seed=9)
    keep = y != 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ev = evaluate(y[keep], p[keep])
    assert np.isnan(ev.metrics["sensitivity"].value)
    assert np.isnan(ev.metrics["roc_auc"].value)
    assert 0 < ev.metrics["accuracy"].value < 1
    assert ev.n_boot == 200


def test_zero_replicates_give_nan_intervals() -> None:
    ev = evaluate(*binary_data(50), n_boot=0)
    assert ev.n_boot == 0
    assert np.isnan(ev.metrics["roc_auc"].ci95).all()
    assert np.isfinite(ev.metrics["roc_auc"].value)


@pytest.mark.parametrize(
    ("y", "s", "kw", "error", "match"),
    [
        ([0, 1, 1], [0.1, 0.9], {}, ConfigError, "y_true has 3 values but y_score has 2 rows"),
        (
            [0, 1],
            [0.1, 1.3],
            {},
            ConfigError,
            r"probabilities in \[0, 1\]; got values from 0.1 to 1.3",
        ),
        ([0, 1], [0.1, np.nan], {}, ConfigError, "1 missing or infinite"),
        ([0, 2], [0.1, 0.9], {}, ConfigError, r"must be 0/1 .*got \[2\]"),
        (["no", "yes"], [0.1, 0.9], {}, ConfigError, "encoded class indices.*'no'"),
        ([0, 1], [[0.1, 0.9], [0.8, 0.2]], {}, ConfigError, "1-D P\\(positive\\)"),
        (
            [0, 1],
            [0.1, 0.9],
            {"threshold": 1.5},
            ConfigError,
            r"threshold must lie in \[0, 1\]; got 1.5",
        ),
        ([0, 1], [0.1, 0.9], {"n_boot": -1}, ConfigError, "n_boot must be 0 or more; got -1"),
        (
            [0, 1],
            [0.1, 0.9],
            {"groups": ["a"]},
            ConfigError,
            r"groups must hold one value per case \(2\)",
        ),
        ([0, 1], [0.1, 0.9], {"row_ids": [1, 2, 3]}, ConfigError, "row_ids must hold one value"),
        ([], [], {}, DataError, "no cases to evaluate"),
    ],
)
def test_invalid_inputs_raise_clear_errors(
    y: list[Any], s: list[Any], kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        evaluate_scores(y, s, class_names=NAMES, positive_class="malignant", **kw)


def test_class_names_must_match_the_scores() -> None:
    y, p = multi_data(30)
    with pytest.raises(ConfigError, match=r"class_names has 2 names .* 3 probability columns"):
        evaluate_scores(y, p, class_names=("a", "b"), positive_class=None)


def test_inputs_are_kept_in_their_original_order() -> None:
    y, s = binary_data(50, seed=10)
    ids = [f"case-{i}" for i in range(50)]
    ev = evaluate(pd.Series(y), pd.Series(s), row_ids=ids)
    np.testing.assert_array_equal(ev.y_true, y)
    np.testing.assert_array_equal(ev.y_score, s)
    assert list(ev.row_ids) == ids
    np.testing.assert_array_equal(evaluate(y, s).row_ids, np.arange(50))


def test_curves_use_clinical_names_and_match_sklearn() -> None:
    y, s = binary_data(400, seed=11)
    ev = evaluate(y, s)
    assert ev.roc is not None and ev.pr is not None and ev.calibration is not None
    fpr, tpr, _ = skm.roc_curve(y, s)
    np.testing.assert_allclose(ev.roc.x, fpr)
    np.testing.assert_allclose(ev.roc.y, tpr)
    assert (ev.roc.x_name, ev.roc.y_name) == ("1 − specificity", "sensitivity")
    assert (ev.pr.x_name, ev.pr.y_name) == ("sensitivity", "PPV")
    assert ev.pr.thresholds is not None and len(ev.pr.thresholds) == len(ev.pr.x)
    cal = ev.calibration
    assert (cal.x_name, cal.y_name) == ("mean predicted probability", "observed frequency")
    assert cal.counts is not None and cal.counts.sum() == len(y)
    assert len(cal.x) <= 10
    assert np.all(np.diff(cal.x) > 0)


def test_calibration_slope_and_intercept() -> None:
    rng = np.random.default_rng(12)
    p = rng.uniform(0.02, 0.98, 20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    good = evaluate(y, p, n_boot=0).calibration_stats
    assert good is not None
    assert good["slope"] == pytest.approx(1.0, abs=0.08)
    assert good["intercept"] == pytest.approx(0.0, abs=0.05)
    # Pushing probabilities towards 0 and 1 (over-confidence) gives a slope below 1.
    sharp = 1 / (1 + np.exp(-2 * np.log(p / (1 - p))))
    over = evaluate(y, sharp, n_boot=0).calibration_stats
    assert over is not None and over["slope"] == pytest.approx(0.5, abs=0.05)
    # Adding 0.1 to every probability shows as a negative calibration intercept.
    high = evaluate(y, np.clip(p + 0.1, 0, 1), n_boot=0).calibration_stats
    assert high is not None and high["intercept"] < -0.2
    assert high["mean_predicted"] > high["observed_rate"]


def test_calibration_slope_is_nan_when_classes_are_separated() -> None:
    y = np.array([0] * 10 + [1] * 10)
    s = np.r_[np.linspace(0.1, 0.3, 10), np.linspace(0.7, 0.9, 10)]
    stats = evaluate(y, s, n_boot=0).calibration_stats
    assert stats is not None and np.isnan(stats["slope"])


def test_choose_threshold_on_a_constructed_example() -> None:
    y = [0, 0, 0, 0, 1, 0, 1, 1, 1, 1]
    s = [0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9]
    assert choose_threshold(y, s) == 0.5
    # Youden: at 0.35 sensitivity 1 and specificity 4/5 (J = 0.8); at 0.6 sens 4/5, spec 1
    # (J = 0.8): ties go to the higher threshold.
    assert choose_threshold(y, s, method="youden") == 0.6
    assert choose_threshold(y, s, method="sensitivity", target_sensitivity=0.9) == 0.35
    assert choose_threshold(y, s, method="sensitivity", target_sensitivity=0.8) == 0.6
    assert choose_threshold(y, s, method="sensitivity", target_sensitivity=0.5) == 0.7


def test_youden_threshold_maximises_j() -> None:
    y, s = binary_data(500, seed=13)
    t = choose_threshold(y, s, method="youden")
    fpr, tpr, _ = skm.roc_curve(y, s)
    best = (tpr - fpr).max()
    pred = s >= t
    j = skm.recall_score(y, pred) + skm.recall_score(y, pred, pos_label=0) - 1
    assert j == pytest.approx(best)


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.floats(0, 1), min_size=2, max_size=40),
    labels=st.lists(st.integers(0, 1), min_size=40, max_size=40),
    target=st.floats(0.01, 0.99),
)
def test_sensitivity_threshold_is_the_highest_that_reaches_the_target(
    scores: list[float], labels: list[int], target: float
) -> None:
    y = np.array(labels[: len(scores)])
    s = np.array(scores)
    if y.sum() == 0:
        y[0] = 1
    t = choose_threshold(y, s, method="sensitivity", target_sensitivity=target)
    sens = (s[y == 1] >= t).mean()
    assert sens >= target - 1e-12
    higher = s[s > t]
    if higher.size:
        assert (s[y == 1] >= higher.min()).mean() < target


def test_choose_threshold_errors() -> None:
    with pytest.raises(ConfigError, match="Unknown threshold method 'best'"):
        choose_threshold([0, 1], [0.2, 0.8], method="best")
    with pytest.raises(ConfigError, match=r"strictly between 0 and 1; got 1\.0"):
        choose_threshold([0, 1], [0.2, 0.8], method="sensitivity", target_sensitivity=1.0)
    with pytest.raises(DataError, match="needs both positive and negative"):
        choose_threshold([1, 1], [0.2, 0.8], method="youden")
    with pytest.raises(DataError, match="without positive cases"):
        choose_threshold([0, 0], [0.2, 0.8], method="sensitivity")
    with pytest.raises(ConfigError, match="y_true has 2 values but y_score has 3 rows"):
        choose_threshold([0, 1], [0.2, 0.8, 0.4], method="youden")


def test_confusion_at_matches_sklearn() -> None:
    y, s = binary_data(700, seed=14)
    ev = evaluate(y, s, n_boot=0)
    for t in (0.0, 0.2, 0.37, 0.5, 0.81, 1.0):
        summary = confusion_at(ev, t)
        pred = (s >= t).astype(int)
        np.testing.assert_array_equal(
            summary.confusion, skm.confusion_matrix(y, pred, labels=[0, 1])
        )
        assert summary.accuracy == pytest.approx(skm.accuracy_score(y, pred))
        assert summary.sensitivity == pytest.approx(skm.recall_score(y, pred))
        assert summary.n_positive_calls == pred.sum()
    at_default = confusion_at(ev, ev.threshold)
    np.testing.assert_array_equal(at_default.confusion, ev.confusion)
    assert at_default.specificity == pytest.approx(ev.metrics["specificity"].value)
    assert at_default.npv == pytest.approx(ev.metrics["npv"].value)
    assert json.dumps(confusion_at(ev, 1.0).to_dict())


def test_threshold_helpers_refuse_multiclass_and_bad_thresholds() -> None:
    multi = evaluate(*multi_data(60), n_boot=0)
    with pytest.raises(ConfigError, match="confusion_at needs a binary evaluation; this one has 3"):
        confusion_at(multi, 0.5)
    with pytest.raises(ConfigError, match="tradeoff_table needs a binary evaluation"):
        tradeoff_table(multi)
    binary = evaluate(*binary_data(60), n_boot=0)
    with pytest.raises(ConfigError, match=r"threshold must lie in \[0, 1\]; got -0.1"):
        confusion_at(binary, -0.1)
    with pytest.raises(ConfigError, match="n_points must be at least 2; got 1"):
        tradeoff_table(binary, n_points=1)


def test_tradeoff_table_is_monotone_and_agrees_with_confusion_at() -> None:
    y, s = binary_data(500, seed=15, ties=False)
    ev = evaluate(y, s, n_boot=0)
    table = tradeoff_table(ev, n_points=51)
    assert list(table.columns) == ["threshold", "sensitivity", "specificity", "ppv", "npv"]
    assert len(table) == 51
    assert table["threshold"].iloc[0] == 0.0 and table["threshold"].iloc[-1] == 1.0
    assert (np.diff(table["sensitivity"]) <= 0).all()
    assert (np.diff(table["specificity"]) >= 0).all()
    for _, row in table.iloc[::7].iterrows():
        summary = confusion_at(ev, row["threshold"])
        assert row["sensitivity"] == pytest.approx(summary.sensitivity)
        assert row["specificity"] == pytest.approx(summary.specificity)
        np.testing.assert_equal(row["ppv"], summary.ppv)


def test_case_table_binary_outcomes() -> None:
    y = np.array([1, 1, 0, 0, 1])
    s = np.array([0.9, 0.2, 0.7, 0.1, 0.5])
    ev = evaluate(y, s, row_ids=["c1", "c2", "c3", "c4", "c5"], n_boot=0)
    table = case_table(ev)
    assert list(table.columns) == [
        "case_id",
        "true",
        "p_positive",
        "predicted",
        "outcome",
        "uncertainty",
    ]
    assert list(table["case_id"]) == ["c1", "c2", "c3", "c4", "c5"]
    assert list(table["outcome"]) == ["TP", "FN", "FP", "TN", "TP"]
    assert list(table["true"]) == ["malignant", "malignant", "benign", "benign", "malignant"]
    assert list(table["predicted"]) == ["malignant", "benign", "malignant", "benign", "malignant"]
    np.testing.assert_allclose(table["uncertainty"], [0.4, 0.3, 0.2, 0.4, 0.0])
    assert list(case_table(ev, threshold=0.8)["outcome"]) == ["TP", "FN", "TN", "TN", "FN"]


def test_case_table_counts_match_the_confusion_matrix() -> None:
    y, s = binary_data(300, seed=16)
    ev = evaluate(y, s, n_boot=0)
    counts = case_table(ev)["outcome"].value_counts()
    (tn, fp), (fn, tp) = ev.confusion
    assert dict(counts) == {k: v for k, v in {"TN": tn, "FP": fp, "FN": fn, "TP": tp}.items() if v}


def test_case_table_multiclass() -> None:
    y = np.array([0, 1, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    table = case_table(evaluate(y, p, n_boot=0))
    assert list(table.columns) == [
        "case_id",
        "true",
        "p_predicted",
        "predicted",
        "outcome",
        "uncertainty",
    ]
    assert list(table["outcome"]) == ["correct", "wrong", "correct"]
    assert list(table["predicted"]) == ["class 0", "class 0", "class 2"]
    np.testing.assert_allclose(table["p_predicted"], [0.7, 0.5, 0.7])
    np.testing.assert_allclose(table["uncertainty"], [0.5, 0.1, 0.5])


def test_format_metric() -> None:
    assert format_metric(MetricValue(0.9781, (0.9623, 0.99))) == "0.978 (0.962–0.990)"
    assert format_metric(MetricValue(0.5, (np.nan, np.nan))) == "0.500 (CI n/a)"
    assert format_metric(MetricValue(np.nan, (np.nan, np.nan))) == "n/a"


def test_summary_frame_layout() -> None:
    cv = evaluate(*binary_data(200, seed=17))
    test = evaluate(*binary_data(80, seed=18), partition="test")
    frame = summary_frame(cv, test)
    assert list(frame.index) == [metric_label(k, "malignant") for k in METRIC_KEYS]
    assert list(frame.index)[:4] == ["Accuracy", "Balanced accuracy", "ROC AUC", "PR AUC"]
    assert list(frame.index)[4:8] == [
        "Sensitivity for malignant",
        "Specificity for malignant",
        "PPV for malignant",
        "NPV for malignant",
    ]
    assert list(frame.columns) == ["cross-validated (development)", "held-out test"]
    assert frame.loc["ROC AUC", "held-out test"] == format_metric(test.metrics["roc_auc"])
    assert frame.attrs["caption"].startswith("Positive class: malignant — ")
    assert frame.attrs["n"] == {"cross-validated (development)": 200, "held-out test": 80}
    assert set(frame.attrs["help"]) == set(frame.index)
    twice = summary_frame(cv, cv)
    assert list(twice.columns) == [
        "cross-validated (development)",
        "cross-validated (development) (2)",
    ]
    with pytest.raises(ConfigError, match="at least one Evaluation"):
        summary_frame()


def test_labels_and_help_cover_every_metric() -> None:
    assert set(METRIC_LABELS) == set(METRIC_HELP) == set(METRIC_KEYS)
    assert (
        METRIC_HELP["sensitivity"]
        == "Share of diseased cases the model flags (true-positive rate)."
    )
    assert all(text.endswith(".") for text in METRIC_HELP.values())


def test_positive_class_caption() -> None:
    assert positive_class_caption(evaluate(*binary_data(30), n_boot=0)) == (
        "Positive class: malignant — sensitivity and PPV are for finding malignant, "
        "specificity and NPV for clearing benign"
    )
    caption = positive_class_caption(evaluate(*multi_data(30), n_boot=0))
    assert caption.startswith("3 classes (class 0, class 1, class 2)")
    assert "macro" in caption


def test_evaluation_serialises_to_json() -> None:
    ev = evaluate(*binary_data(100, seed=19))
    card = json.loads(json.dumps(ev.to_dict()))
    assert set(card) == set(METRIC_KEYS)
    assert card["roc_auc"]["value"] == pytest.approx(ev.metrics["roc_auc"].value)


def test_large_input_runs_with_a_full_bootstrap() -> None:
    y, s = binary_data(10_000, seed=20, ties=False)
    ev = evaluate(y, s, n_boot=1000, groups=np.arange(10_000) // 5)
    assert ev.n_boot == 1000
    assert ev.n_groups == 2000
    lo, hi = ev.metrics["roc_auc"].ci95
    assert hi - lo < 0.03


def test_perfect_proportions_get_a_wilson_interval_not_a_point() -> None:
    y = np.r_[np.zeros(72, dtype=int), np.ones(42, dtype=int)]
    s = np.where(y == 1, 0.9, 0.1)
    ev = evaluate_scores(
        y, s, class_names=("benign", "malignant"), positive_class="malignant", n_boot=200
    )
    lo, hi = ev.metrics["accuracy"].ci95
    assert ev.metrics["accuracy"].value == 1.0
    assert hi == 1.0
    assert 0.96 < lo < 0.975  # Wilson lower bound for 114/114
    lo_sens, _ = ev.metrics["sensitivity"].ci95
    assert 0.9 < lo_sens < 0.93  # 42/42


def test_metric_tables_name_the_class_of_numeric_codes() -> None:
    # BreastMNIST: code 0 is malignant. The table must say so, not "Sensitivity" of "1".
    y, s = binary_data(60, seed=3)
    ev = evaluate_scores(
        y, s, class_names=("benign", "malignant"), positive_class=0, n_boot=0, partition="test"
    )
    frame = summary_frame(ev)
    assert "Sensitivity for malignant" in frame.index
    assert "NPV for malignant" in frame.index
    assert frame.attrs["caption"].startswith("Positive class: malignant (code 0) — ")
    assert "clearing benign" in frame.attrs["caption"]
    assert metric_label("roc_auc", "malignant") == "ROC AUC"
    assert metric_label("sensitivity") == "Sensitivity"
    multi = summary_frame(evaluate(*multi_data(30), n_boot=0))
    assert "Sensitivity" in multi.index


def _perfect(n_neg: int, n_pos: int, per_patient: int = 1) -> tuple[np.ndarray, np.ndarray]:
    y = np.repeat(np.r_[np.zeros(n_neg, dtype=int), np.ones(n_pos, dtype=int)], per_patient)
    return y, np.where(y == 1, 0.9, 0.1)


def _newcombe_gap(theta: float, m: int, n: int, z: float = 1.959963984540054) -> float:
    n_star = (m + n) / 2
    extra = (n_star - 1) * ((1 - theta) / (2 - theta) + theta / (1 + theta))
    return (1 - theta) ** 2 - z * z * theta * (1 - theta) * (1 + extra) / (m * n)


def test_no_interval_of_a_perfect_classifier_collapses_to_a_point() -> None:
    y, s = _perfect(72, 42)
    ev = evaluate(y, s)
    for key in ("roc_auc", "sensitivity", "specificity", "ppv", "npv", "accuracy", "f1"):
        lo, hi = ev.metrics[key].ci95
        assert ev.metrics[key].value == 1.0 and hi == 1.0 and lo < 0.99, key
    assert ev.metrics["balanced_accuracy"].ci95[0] < 0.99
    # Exact bounds on the counts: 42/42 diseased found, 114/114 correct.
    assert ev.metrics["sensitivity"].ci95[0] == pytest.approx(0.025 ** (1 / 42))
    assert ev.metrics["accuracy"].ci95[0] == pytest.approx(0.025 ** (1 / 114))
    assert "Clopper-Pearson" in ev.metrics["sensitivity"].method
    # The AUC's lower bound solves Newcombe's Method 5 equation with 42 vs 72 cases.
    auc = ev.metrics["roc_auc"]
    assert "Newcombe" in auc.method and "42 vs 72 cases" in auc.method
    assert _newcombe_gap(auc.ci95[0], 42, 72) == pytest.approx(0.0, abs=1e-9)
    assert 0.9 < auc.ci95[0] < 0.99
    # Balanced accuracy: mean of the two exact bounds at 1.25% each (Bonferroni).
    ba = ev.metrics["balanced_accuracy"]
    assert ba.ci95[0] == pytest.approx((0.0125 ** (1 / 42) + 0.0125 ** (1 / 72)) / 2)
    assert "Bonferroni" in ba.method
    # F1: harmonic mean of the PPV (42 called positive) and sensitivity (42 diseased) bounds.
    assert ev.metrics["f1"].ci95[0] == pytest.approx(0.0125 ** (1 / 42))
    # A figure the bootstrap could bound keeps its bootstrap interval and says so.
    assert ev.metrics["brier"].method.startswith("percentile bootstrap")
    assert ev.to_dict()["roc_auc"]["method"] == auc.method


def test_perfect_intervals_count_patients_not_rows_when_grouped() -> None:
    # Two near-identical images per patient: 20 healthy and 20 diseased patients, 80 rows.
    y, s = _perfect(20, 20, per_patient=2)
    groups = np.repeat(np.arange(40), 2)
    by_row = evaluate(y, s)
    by_patient = evaluate(y, s, groups=groups)
    assert by_row.metrics["sensitivity"].ci95[0] == pytest.approx(0.025 ** (1 / 40))
    assert by_patient.metrics["sensitivity"].ci95[0] == pytest.approx(0.025 ** (1 / 20))
    assert "20 patients" in by_patient.metrics["sensitivity"].method
    assert by_patient.metrics["accuracy"].ci95[0] == pytest.approx(0.025 ** (1 / 40))
    auc_rows, auc_patients = by_row.metrics["roc_auc"], by_patient.metrics["roc_auc"]
    assert "20 vs 20 patients" in auc_patients.method
    assert _newcombe_gap(auc_patients.ci95[0], 20, 20) == pytest.approx(0.0, abs=1e-9)
    assert auc_patients.ci95[0] < auc_rows.ci95[0] < 1.0
    assert by_patient.metrics["balanced_accuracy"].ci95[0] == pytest.approx(0.0125 ** (1 / 20))
    assert by_patient.metrics["f1"].ci95[0] < by_row.metrics["f1"].ci95[0] < 1.0


def test_null_and_multiclass_figures_get_count_based_intervals() -> None:
    # Every diseased case missed: sensitivity 0 with an upper bound above 0.
    y = np.r_[np.zeros(30, dtype=int), np.ones(10, dtype=int)]
    s = np.full(40, 0.2)
    ev = evaluate(y, s)
    lo, hi = ev.metrics["sensitivity"].ci95
    assert (lo, ev.metrics["sensitivity"].value) == (0.0, 0.0)
    assert hi == pytest.approx(1 - 0.025 ** (1 / 10))
    assert ev.metrics["f1"].value == 0.0 and ev.metrics["f1"].ci95[1] > 0.0
    # Three classes, all perfectly ranked: the macro AUC keeps a lower bound below 1.
    y3 = np.repeat([0, 1, 2], 15)
    s3 = np.eye(3)[y3] * 0.8 + 0.2 / 3
    ev3 = evaluate(y3, s3)
    for key in ("roc_auc", "sensitivity", "balanced_accuracy", "f1", "accuracy"):
        lo, hi = ev3.metrics[key].ci95
        assert ev3.metrics[key].value == 1.0 and hi == 1.0 and lo < 0.99, key
