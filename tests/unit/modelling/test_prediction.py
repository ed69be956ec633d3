"""Tests for medimg_core.modelling.prediction: scoring new cases, reasons, external evaluation."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import ConfigError, DataError, SchemaError
from medimg_core.modelling.prediction import (
    ABSTAINED,
    NO_DISTANCE_CHECK,
    Abstention,
    evaluate_model,
    ood_summary,
    predict,
    stamp_export,
)
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.privacy import to_safe_csv
from medimg_core.tables.roles import Roles
from tests.unit.modelling.conftest import FAST, LOGREG


def test_evaluate_model_on_new_data(trained: TrainingResult, wdbc: pd.DataFrame) -> None:
    new = wdbc.loc[list(trained.test_index)]
    evaluation = evaluate_model(trained.model, new, n_boot=50, seed=1)
    assert evaluation.partition == "external"
    assert evaluation.n == len(new)
    assert evaluation.groups_resampled
    assert evaluation.threshold == trained.model.threshold
    assert trained.test is not None
    assert evaluation.metrics["roc_auc"].value == pytest.approx(
        trained.test.metrics["roc_auc"].value
    )
    odd = new.copy()
    odd.loc[odd.index[0], "diagnosis"] = "borderline"
    with pytest.raises(DataError, match=r"\['borderline'\] were not seen"):
        evaluate_model(trained.model, odd)
    with pytest.raises(DataError, match="no label column 'diagnosis'"):
        evaluate_model(trained.model, new.drop(columns="diagnosis"))


def test_predict_output(trained: TrainingResult, wdbc: pd.DataFrame) -> None:
    model = trained.model
    new = wdbc.head(4).drop(columns="diagnosis")
    out = predict(model, new)
    assert list(out.frame.columns) == [
        "case_id",
        "p_malignant",
        "decision",
        "threshold",
        "ood_range",
        "ood_features",
        "ood_distance",
        "ood_flag",
    ]
    assert out.frame["case_id"].tolist() == new["case_id"].tolist()
    p = out.frame["p_malignant"].to_numpy()
    np.testing.assert_allclose(p, model.predict_proba(new)[:, 1])
    assert (out.frame["decision"] == np.where(p >= model.threshold, "malignant", "benign")).all()
    assert out.threshold == model.threshold and out.positive_class == "malignant"
    assert out.schema.ok
    without_id = predict(model, new.drop(columns="case_id"))
    assert without_id.frame["row"].tolist() == [1, 2, 3, 4]
    with pytest.raises(SchemaError, match="lack 1 feature column"):
        predict(model, new.drop(columns="worst area"))


def test_predict_with_reasons_and_no_identifying_columns(wdbc: pd.DataFrame) -> None:
    df = wdbc.copy()
    df["name"] = [f"Patient {i}" for i in range(len(df))]
    roles = Roles(label="diagnosis", id="case_id", exclude=("name",))
    result = train(df, roles, config=LOGREG, validation=FAST)
    out = predict(result.model, df.head(3), explain_top=2)
    assert "name" not in out.frame.columns
    assert list(out.frame.columns)[-2:] == ["reason_1", "reason_2"]
    # Each reason names its unit: the logistic model explains in log-odds.
    pattern = re.compile(r"^.+ = -?[\d,.e+-]+ \([+-]\d+\.\d\d log-odds\)$")
    assert all(pattern.match(r) for r in out.frame["reason_1"]), out.frame["reason_1"].tolist()
    # A single case is explained against the typical training case, not against itself.
    single = predict(result.model, df.head(1), explain_top=1).frame["reason_1"].iloc[0]
    assert "(+0.00 " not in single and "(-0.00 " not in single
    dev = df.loc[list(result.dev_index)]
    with_background = predict(result.model, df.head(1), explain_top=1, background=dev)
    assert pattern.match(with_background.frame["reason_1"].iloc[0])


# --- Out-of-distribution flags, abstention and stamped exports (issue 8, section 5) ---------


def _correlated(n: int, seed: int) -> pd.DataFrame:
    """Two strongly correlated measurements and a label that depends on them."""
    rng = np.random.default_rng(seed)
    size = rng.normal(10.0, 2.0, n)
    frame = pd.DataFrame(
        {
            "size": size,
            "perimeter": 3.0 * size + rng.normal(0.0, 0.5, n),
            "texture": rng.normal(20.0, 4.0, n),
        }
    )
    p = 1.0 / (1.0 + np.exp(-(size - 10.0)))
    frame["diagnosis"] = np.where(rng.random(n) < p, "malignant", "benign")
    return frame


@pytest.fixture(scope="module")
def correlated() -> TrainingResult:
    return train(_correlated(400, 0), Roles(label="diagnosis"), config=LOGREG, validation=FAST)


def test_values_outside_the_training_range_are_flagged_by_name(
    trained: TrainingResult, wdbc: pd.DataFrame
) -> None:
    new = wdbc.head(4).drop(columns="diagnosis").copy()
    new.loc[new.index[1], "worst area"] = 100_000.0
    frame = predict(trained.model, new).frame
    assert frame["ood_range"].tolist() == [False, True, False, False]
    assert frame["ood_flag"].iloc[1]
    _, high = trained.model.feature_ranges["worst area"]
    assert "worst area = 100,000" in frame["ood_features"].iloc[1]
    assert "training range" in frame["ood_features"].iloc[1]
    assert frame["ood_features"].iloc[0] == ""
    assert ood_summary(frame).startswith("1 of 4 cases are unlike the training data")
    assert high < 100_000


def test_a_case_inside_every_range_but_unlike_training_is_flagged_by_distance(
    correlated: TrainingResult,
) -> None:
    model = correlated.model
    assert model.ood is not None
    (s_lo, s_hi), (p_lo, p_hi) = model.feature_ranges["size"], model.feature_ranges["perimeter"]
    typical = {"size": 10.0, "perimeter": 30.0, "texture": 20.0}
    # Large size with a small perimeter: each value seen in training, the pair never.
    odd = {"size": s_lo + 0.8 * (s_hi - s_lo), "perimeter": p_lo + 0.2 * (p_hi - p_lo)}
    new = pd.DataFrame([typical, {**odd, "texture": 20.0}])
    frame = predict(model, new).frame
    assert frame["ood_range"].tolist() == [False, False]
    assert frame["ood_flag"].tolist() == [False, True]
    assert frame["ood_distance"].iloc[1] > model.ood.cutoff > frame["ood_distance"].iloc[0]
    assert "only by their distance" in ood_summary(frame)


def test_about_one_in_a_hundred_new_cases_like_training_is_flagged(
    correlated: TrainingResult,
) -> None:
    model = correlated.model
    assert model.ood is not None and model.ood.quantile == 0.99
    fresh = _correlated(3000, 7).drop(columns="diagnosis")
    distance = predict(model, fresh).frame["ood_distance"].to_numpy()
    assert 0.002 <= float(np.mean(distance > model.ood.cutoff)) <= 0.03


def test_abstention_on_unusual_cases_and_an_uncertainty_band(trained: TrainingResult) -> None:
    model = trained.model
    new = pd.DataFrame([model.ood.center] * 3, columns=list(model.ood.columns))  # type: ignore[union-attr]
    new.loc[0, "worst area"] = 100_000.0
    p = model.predict_proba(new)[:, 1]
    band = (min(p[1], model.threshold) - 0.01, max(p[1], model.threshold) + 0.01)
    band = (max(band[0], 0.0), min(band[1], 1.0))
    out = predict(model, new, abstain=Abstention(ood=True, band=band))
    frame = out.frame
    assert frame["decision"].iloc[0] == ABSTAINED
    assert "outside the training range" in frame["abstain_reason"].iloc[0]
    assert frame["decision"].iloc[1] == ABSTAINED
    assert "uncertainty band" in frame["abstain_reason"].iloc[1]
    assert frame["abstain_reason"].str.startswith("no decision — refer to a reader").iloc[:2].all()
    decided = frame["decision"] != ABSTAINED
    assert set(frame.loc[decided, "decision"]) <= {"malignant", "benign"}
    assert (frame.loc[decided, "abstain_reason"] == "").all()
    n_abstained = int((~decided).sum())
    assert f"{n_abstained} of 3 cases got no decision" in " ".join(out.notes)
    plain = predict(model, new)
    assert ABSTAINED not in set(plain.frame["decision"])
    assert "abstain_reason" not in plain.frame.columns


def test_an_uncertainty_band_must_contain_the_threshold(trained: TrainingResult) -> None:
    new = pd.DataFrame([trained.model.ood.center], columns=list(trained.model.ood.columns))  # type: ignore[union-attr]
    cut = trained.model.threshold
    with pytest.raises(ConfigError, match="must contain the threshold"):
        predict(trained.model, new, abstain=Abstention(band=(min(cut + 0.05, 0.98), 0.99)))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        predict(trained.model, new, abstain=Abstention(band=(0.7, 0.3)))


def test_a_model_saved_without_distance_statistics_still_predicts(
    trained: TrainingResult, wdbc: pd.DataFrame
) -> None:
    old = dataclasses.replace(trained.model, ood=None)
    new = wdbc.head(3).drop(columns="diagnosis").copy()
    new.loc[new.index[0], "worst area"] = 100_000.0
    out = predict(old, new)
    assert out.frame["ood_distance"].isna().all()
    assert out.frame["ood_flag"].tolist() == [True, False, False]
    assert out.distance_cutoff is None
    assert NO_DISTANCE_CHECK in out.notes


def test_exports_are_stamped_and_stay_formula_safe(trained: TrainingResult) -> None:
    frame = pd.DataFrame({"case_id": ["=cmd()", "C2"], "p_malignant": [0.9, 0.1]})
    stamped = stamp_export(
        frame, run_id="20260101-x", model_sha256="ab" * 32, threshold=0.35, positive_class=0
    )
    assert list(stamped.columns[:4]) == ["run_id", "model_sha256", "threshold", "positive_class"]
    assert stamped["run_id"].tolist() == ["20260101-x"] * 2
    assert stamped["threshold"].tolist() == [0.35, 0.35]
    assert stamped["positive_class"].tolist() == ["0", "0"]
    text = to_safe_csv(stamped).decode()
    assert "'=cmd()" in text and "\n=cmd" not in text and ",=cmd" not in text
    without_run = stamp_export(
        frame, run_id=None, model_sha256="cd" * 32, threshold=None, positive_class=None
    )
    assert without_run["run_id"].iloc[0] == "model-sha256:" + "cd" * 32
    assert without_run["threshold"].isna().all()
