"""Tests for medimg_core.modelling.prediction: scoring new cases, reasons, external evaluation."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import DataError, SchemaError
from medimg_core.modelling.prediction import evaluate_model, predict
from medimg_core.modelling.training import TrainingResult, train
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
    assert list(out.frame.columns) == ["case_id", "p_malignant", "decision", "threshold"]
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
    pattern = re.compile(r"^.+ = -?[\d,.e+-]+ \([+-]\d+\.\d\d\)$")
    assert all(pattern.match(r) for r in out.frame["reason_1"]), out.frame["reason_1"].tolist()
    # A single case is explained against the typical training case, not against itself.
    single = predict(result.model, df.head(1), explain_top=1).frame["reason_1"].iloc[0]
    assert not single.endswith("(+0.00)") and not single.endswith("(-0.00)")
    dev = df.loc[list(result.dev_index)]
    with_background = predict(result.model, df.head(1), explain_top=1, background=dev)
    assert pattern.match(with_background.frame["reason_1"].iloc[0])
