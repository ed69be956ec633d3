"""Tests for medimg_core.reporting.comparison.paired_runs and paired_sentence: two saved runs
compared case by case, and refused when they were not scored on the same cases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import MetricValue
from medimg_core.modelling.paired import PairedComparison, compare_paired
from medimg_core.reporting.comparison import (
    paired_rates,
    paired_rates_frame,
    paired_runs,
    paired_sentence,
)
from medimg_core.store.registry import RunRecord


def _record(run_id: str, *, data: str = "abc", positive: Any = "malignant") -> RunRecord:
    card = {
        "positive_class": positive,
        "roles": {"label": "diagnosis", "id": "case_id", "class_names": {}},
    }
    return RunRecord(
        id=run_id,
        created_at=datetime(2026, 11, 30, 10, 32, tzinfo=UTC),
        dataset_name="wdbc",
        dataset_hash=data * 16,
        label="diagnosis",
        model_kind="logreg",
        positive_class=positive,
        n_rows=200,
        metrics={},
        config={},
        plan={},
        versions={},
        seed=7,
        model_dir=Path("/nowhere"),
        card=card,
    )


def _cases(seed: int, *, n: int = 200, n_test: int = 60, per_patient: int = 1) -> pd.DataFrame:
    """Stored cases as ``load_cases`` gives them: index = row key of the cleaned table."""
    rng = np.random.default_rng(0)  # the same cases and labels whatever the model
    y = rng.integers(0, 2, n)
    noise = np.random.default_rng(seed).normal(0, 1, n)
    p = 1 / (1 + np.exp(-(2 * y - 1 + noise)))
    return pd.DataFrame(
        {
            "case_id": [f"pseud{i // per_patient:04d}" for i in range(n)],
            "diagnosis": np.where(y == 1, "malignant", "benign"),
            "partition": ["development"] * (n - n_test) + ["test"] * n_test,
            "p_positive": p,
        },
        index=pd.Index(np.arange(n) * 3 + 10),
    )


A, B = _record("20261130-103200-000001-aaaaaa"), _record("20261130-103300-000002-bbbbbb")


def test_runs_on_the_same_cases_are_compared_case_by_case_whatever_the_row_order() -> None:
    cases_a, cases_b = _cases(1), _cases(2)
    shuffled_b = cases_b.sample(frac=1.0, random_state=3)  # matched by key, not by position
    result = paired_runs(A, cases_a, B, shuffled_b)
    test_a = cases_a[cases_a["partition"] == "test"]
    test_b = cases_b[cases_b["partition"] == "test"]
    y = (test_a["diagnosis"] == "malignant").to_numpy(dtype=int)
    expected = compare_paired(
        y, test_a["p_positive"], test_b["p_positive"], groups=test_a["case_id"], partition="test"
    )
    assert result == expected
    assert result.value_b.value == pytest.approx(roc_auc_score(y, test_b["p_positive"]))
    assert (result.n_cases, result.n_patients, result.partition) == (60, 60, "test")
    cv = paired_runs(A, cases_a, B, shuffled_b, partition="cv")
    assert (cv.n_cases, cv.partition) == (140, "cv")


def test_repeated_patients_switch_to_the_paired_bootstrap_with_run_a_seed() -> None:
    cases_a, cases_b = _cases(1, per_patient=2), _cases(2, per_patient=2)
    result = paired_runs(A, cases_a, B, cases_b, partition="cv", n_boot=200)
    assert result.method.startswith("paired bootstrap")
    assert (result.n_cases, result.n_patients) == (140, 70)
    assert result == paired_runs(A, cases_a, B, cases_b, partition="cv", n_boot=200, seed=7)


def test_runs_trained_on_different_data_are_refused() -> None:
    with pytest.raises(DataError, match="trained on different data"):
        paired_runs(A, _cases(1), _record("20261130-103400-000003-cccccc", data="xyz"), _cases(2))


def test_runs_with_a_different_test_split_are_refused() -> None:
    other = _cases(2)
    other["partition"] = np.roll(other["partition"].to_numpy(), 5)
    with pytest.raises(DataError, match="different test split; retrain with the same seed"):
        paired_runs(A, _cases(1), B, other)
    with pytest.raises(DataError, match="different development cases"):
        paired_runs(A, _cases(1), B, other, partition="cv")


def test_same_keys_with_other_labels_or_patients_are_not_the_same_cases() -> None:
    relabelled = _cases(2)
    first_test = relabelled.index[relabelled["partition"] == "test"][0]
    flipped = "benign" if relabelled.loc[first_test, "diagnosis"] == "malignant" else "malignant"
    relabelled.loc[first_test, "diagnosis"] = flipped
    with pytest.raises(DataError, match="1 of the matched cases carry a different label"):
        paired_runs(A, _cases(1), B, relabelled)
    repseudonymised = _cases(2)
    repseudonymised["case_id"] = "other" + repseudonymised["case_id"]
    with pytest.raises(DataError, match="different patients"):
        paired_runs(A, _cases(1), B, repseudonymised)


def test_other_refusals_say_what_to_do() -> None:
    with pytest.raises(DataError, match="calls benign positive"):
        paired_runs(A, _cases(1), _record(B.id, positive="benign"), _cases(2))
    with pytest.raises(ConfigError, match="same run"):
        paired_runs(A, _cases(1), A, _cases(1))
    with pytest.raises(ConfigError, match=r"'test'.*'cv'"):
        paired_runs(A, _cases(1), B, _cases(2), partition="validation")
    multi = _cases(2).drop(columns="p_positive")
    with pytest.raises(DataError, match="multi-class"):
        paired_runs(A, _cases(1), _record(B.id, positive=None), multi)
    no_test = _cases(2)
    no_test["partition"] = "development"
    with pytest.raises(DataError, match="Run B has no test cases; compare on cv"):
        paired_runs(A, _cases(1), B, no_test)


def _comparison(diff: float, lo: float, hi: float, p: float, **kw: Any) -> PairedComparison:
    fields: dict[str, Any] = {
        "metric": "roc_auc",
        "value_a": MetricValue(0.98, (0.96, 0.99)),
        "value_b": MetricValue(0.98 + diff, (0.96, 0.99)),
        "difference": MetricValue(diff, (lo, hi)),
        "p_value": p,
        "method": "DeLong test for two correlated ROC AUCs (114 cases)",
        "n_cases": 114,
        "n_patients": None,
        "partition": "test",
    }
    return PairedComparison(**{**fields, **kw})


def test_the_sentence_gives_direction_interval_p_and_verdict() -> None:
    text = paired_sentence(_comparison(0.012, -0.004, 0.028, 0.14))
    assert text == (
        "Run B's ROC AUC is 0.012 higher than Run A's (95% CI \u22120.004 to 0.028, p = 0.14, "
        "DeLong): no evidence of a difference on these 114 test cases."
    )
    lower = paired_sentence(
        _comparison(
            -0.05,
            -0.08,
            -0.02,
            0.0004,
            partition="cv",
            n_patients=80,
            method="paired bootstrap over patients (...)",
        ),
        "Logistic regression",
        "Random forest",
    )
    assert lower == (
        "Random forest's ROC AUC is 0.050 lower than Logistic regression's (95% CI \u22120.080 "
        "to \u22120.020, p < 0.001, paired bootstrap): evidence that Logistic regression ranks "
        "cases better on these 114 cross-validated (out-of-fold) development cases of 80 "
        "patients."
    )
    same = paired_sentence(_comparison(0.0, 0.0, 0.0, 1.0))
    assert same.startswith("Run B's ROC AUC equals Run A's (0.000 difference, 95% CI 0.000 to")
    assert "p = 1.00" in same and "no evidence of a difference" in same


def _with_threshold(record: RunRecord, threshold: float) -> RunRecord:
    card = {**record.card, "threshold": {"value": threshold}}
    return RunRecord(**{**record.__dict__, "card": card})


def test_sensitivity_and_specificity_name_the_class_at_each_run_threshold() -> None:
    a, b = _with_threshold(A, 0.4), _with_threshold(B, 0.6)
    cases_a, cases_b = _cases(1), _cases(2)
    rates = paired_rates(a, cases_a, b, cases_b)
    assert rates is not None
    sens, spec = rates
    test_a = cases_a[cases_a["partition"] == "test"]
    test_b = cases_b.loc[test_a.index]
    positive = (test_a["diagnosis"] == "malignant").to_numpy()
    assert sens.value_a.value == pytest.approx((test_a["p_positive"][positive] >= 0.4).mean())
    assert sens.value_b.value == pytest.approx((test_b["p_positive"][positive] >= 0.6).mean())
    assert spec.value_b.value == pytest.approx((test_b["p_positive"][~positive] < 0.6).mean())
    frame = paired_rates_frame(rates, "malignant", threshold_a=0.4, threshold_b=0.6)
    assert list(frame["Metric"]) == ["Sensitivity for malignant", "Specificity for malignant"]
    assert list(frame.columns[1:3]) == ["Run A (threshold 0.400)", "Run B (threshold 0.600)"]
    assert frame["Run B (threshold 0.600)"].iloc[0].startswith(f"{sens.value_b.value:.3f} (")
    assert frame["Cases"].tolist() == [f"{int(positive.sum())}", f"{int((~positive).sum())}"]


def test_rates_are_left_out_when_patients_repeat_or_a_threshold_is_missing() -> None:
    a, b = _with_threshold(A, 0.5), _with_threshold(B, 0.5)
    repeated = paired_rates(a, _cases(1, per_patient=2), b, _cases(2, per_patient=2))
    assert repeated is None
    assert paired_rates(A, _cases(1), B, _cases(2)) is None  # no threshold recorded
