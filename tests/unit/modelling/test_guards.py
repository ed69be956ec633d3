"""Tests for medimg_core.modelling.guards: the warnings a clinical reader must see."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from medimg_core.modelling.guards import guards, identical_rows_across, single_feature_aucs
from medimg_core.modelling.training import TrainingResult


def test_identical_rows_across_counts_test_rows_seen_in_development() -> None:
    X = pd.DataFrame({"a": [1, 2, 3, 1, 5], "b": [0, 0, 0, 0, 1]})
    assert identical_rows_across(X, np.array([0, 1, 2]), np.array([3, 4])) == 1
    assert identical_rows_across(X, np.array([0, 1, 2]), np.array([], dtype=int)) == 0


def test_single_feature_aucs_skip_columns_without_values() -> None:
    X = pd.DataFrame({"leak": [0.1, 0.2, 0.8, 0.9], "empty": [np.nan] * 4, "noise": [1, 0, 1, 0]})
    y = np.array([0, 0, 1, 1])
    aucs = single_feature_aucs(X, y, ("leak", "empty", "noise"))
    assert aucs == {"leak": 1.0, "noise": 0.5}


def test_guards_name_shared_patients_and_repeated_rows(
    trained: TrainingResult, wdbc: pd.DataFrame
) -> None:
    model = trained.model
    X = model.prepare_features(wdbc)
    y = model.encode_labels(wdbc["diagnosis"])
    dev = np.flatnonzero(wdbc.index.isin(trained.dev_index))
    split = dataclasses.replace(
        trained.split, overlap_ids=("C0001", "C0002"), identical_rows_across=3
    )
    common = {"model": model, "X": X, "y": y, "y_raw": wdbc["diagnosis"], "dev": dev}
    base = guards(**common, cv_eval=trained.cv, test_eval=trained.test, split=trained.split)
    warned = guards(**common, cv_eval=trained.cv, test_eval=trained.test, split=split)
    added = [w for w in warned if w not in base]
    assert len(added) == 2
    assert added[0].startswith("3 test row(s) have feature values identical to a development row")
    assert added[1].startswith("2 patient ID(s) appear in both the development and the test set")
