"""Shared data for the modelling tests: the Wisconsin sample with a case ID, one fast model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.tables.roles import Roles

FAST = ValidationConfig(test_size=0.2, cv=3, n_boot=50)
LOGREG = ModelConfig(model="logreg")
ROLES = Roles(label="diagnosis", id="case_id")


@pytest.fixture(scope="module")
def wdbc() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    df = data.data.copy()
    df.insert(0, "case_id", [f"C{i:04d}" for i in range(len(df))])
    df["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
    return df


@pytest.fixture(scope="module")
def trained(wdbc: pd.DataFrame) -> TrainingResult:
    return train(wdbc, ROLES, config=LOGREG, validation=FAST)
