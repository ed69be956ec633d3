"""Tests for medimg_core.modelling.guards: the warnings a clinical reader must see."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from medimg_core.modelling import guards as guards_module
from medimg_core.modelling.guards import (
    guards,
    identical_rows_across,
    likely_repeated_rows,
    single_feature_aucs,
)
from medimg_core.modelling.training import TrainingResult


def test_identical_rows_across_counts_test_rows_seen_in_development() -> None:
    X = pd.DataFrame({"a": [1, 2, 3, 1, 5], "b": [0, 0, 0, 0, 1]})
    assert identical_rows_across(X, np.array([0, 1, 2]), np.array([3, 4])) == (1, 0)
    assert identical_rows_across(X, np.array([0, 1, 2]), np.array([], dtype=int)) == (0, 0)


def test_identical_rows_across_counts_twins_with_the_opposite_label() -> None:
    # Like BreastMNIST: a test image pixel-identical to a training image, labels swapped.
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 1.0, 2.0, 9.0], "b": [5.0, 6.0, 7.0, 5.0, 6.0, 0.0]})
    y = np.array([0, 1, 1, 1, 1, 0])
    dev, test = np.array([0, 1, 2]), np.array([3, 4, 5])
    assert identical_rows_across(X, dev, test, y) == (2, 1)


def test_single_feature_aucs_skip_columns_without_values() -> None:
    X = pd.DataFrame({"leak": [0.1, 0.2, 0.8, 0.9], "empty": [np.nan] * 4, "noise": [1, 0, 1, 0]})
    y = np.array([0, 0, 1, 1])
    aucs = single_feature_aucs(X, y, ("leak", "empty", "noise"))
    assert aucs == {"leak": 1.0, "noise": 0.5}


def test_single_feature_aucs_on_some_rows_read_only_those() -> None:
    X = pd.DataFrame({"leak": [0.9, 0.1, 0.2, 0.5, 0.8], "noise": [1, 1, 0, 0, 1]})
    rows = np.array([1, 2, 4])
    aucs = single_feature_aucs(X, np.array([0, 0, 1]), ("leak", "noise"), rows)
    assert aucs == single_feature_aucs(X.iloc[rows], np.array([0, 0, 1]), ("leak", "noise"))
    assert aucs["leak"] == 1.0


def test_guards_name_shared_patients_and_repeated_rows(
    trained: TrainingResult, wdbc: pd.DataFrame
) -> None:
    model = trained.model
    X = model.prepare_features(wdbc)
    y = model.encode_labels(wdbc["diagnosis"])
    dev = np.flatnonzero(wdbc.index.isin(trained.dev_index))
    split = dataclasses.replace(
        trained.split,
        overlap_ids=("C0001", "C0002"),
        identical_rows_across=3,
        identical_rows_opposite_label=1,
    )
    common = {"model": model, "X": X, "y": y, "y_raw": wdbc["diagnosis"], "dev": dev}
    base = guards(**common, cv_eval=trained.cv, test_eval=trained.test, split=trained.split)
    warned = guards(**common, cv_eval=trained.cv, test_eval=trained.test, split=split)
    added = [w for w in warned if w not in base]
    assert len(added) == 2
    assert split.grouped_by == "case_id"
    # Grouped by patient: different patients sharing every value, no leak, said as such.
    assert added[0].startswith(
        "3 test row(s) have feature values identical to a development row of another patient "
        "(1 of them with the opposite label"
    )
    assert "no patient is on both sides" in added[0] and "Kept, not removed" in added[0]
    assert added[1].startswith("2 patient ID(s) appear in both the development and the test set")
    # Without an ID the same rows may be one patient on both sides: advise declaring the ID.
    by_row = dataclasses.replace(split, grouped_by=None, overlap_ids=())
    rows = [w for w in guards(**common, cv_eval=trained.cv, test_eval=trained.test, split=by_row)]
    repeat = next(w for w in rows if w.startswith("3 test row(s)"))
    assert "partly repeats training data" in repeat and "give the rows a patient ID" in repeat
    # On coarse scores without an ID, shared rows between patients are expected: said so.
    scores = X.rank(method="first").mod(5).add(1)  # every column a 1-5 score
    coarse = guards(**{**common, "X": scores}, cv_eval=trained.cv, test_eval=None, split=by_row)
    said = next(w for w in coarse if w.startswith("3 test row(s)"))
    assert "need not be a leak" in said and "partly repeats" not in said


def _wdbc_features() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True).data


def test_near_identical_rows_are_counted_without_false_alarms() -> None:
    X = _wdbc_features()
    numeric = tuple(X.columns)
    assert likely_repeated_rows(X, numeric) == 0
    # 50 patients measured twice: the second record differs in the 5th significant digit.
    rng = np.random.default_rng(0)
    again = X.iloc[:50] * (1 + 1e-5 * rng.standard_normal((50, X.shape[1])))
    assert likely_repeated_rows(pd.concat([X, again]), numeric) == 50
    # Compared in pieces of rows (bounded memory on large tables): pairs across pieces count.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(guards_module, "_PAIR_CHUNK", 7)
        assert likely_repeated_rows(pd.concat([X, again]), numeric) == 50
    # Integer scores (1-10 cytology): identical rows between patients are expected, no alarm.
    scores = pd.DataFrame(rng.integers(1, 4, size=(700, 9)), columns=[f"s{i}" for i in range(9)])
    scores.iloc[:300] = 1
    assert likely_repeated_rows(scores, tuple(scores.columns)) == 0
    # One continuous column shared by chance (age in years): no alarm either.
    age = pd.DataFrame({"age": rng.integers(20, 90, 1000).astype(float)})
    assert likely_repeated_rows(age, ("age",)) == 0


def test_training_without_an_id_warns_about_repeated_patients() -> None:
    from sklearn.datasets import load_breast_cancer

    from medimg_core.modelling.models import ModelConfig
    from medimg_core.modelling.training import train
    from medimg_core.modelling.validation import ValidationConfig
    from medimg_core.tables.roles import Roles

    data = load_breast_cancer(as_frame=True)
    frame = data.data.iloc[:200].assign(diagnosis=np.where(data.target[:200] == 0, "m", "b"))
    twice = frame.iloc[:40].copy()
    twice["mean radius"] *= 1.00001
    doubled = pd.concat([frame, twice], ignore_index=True)
    settings = {
        "config": ModelConfig(model="logreg"),
        "validation": ValidationConfig(test_size=0.2, cv=3, n_boot=20),
        "positive": "m",
    }
    warned = train(doubled, Roles(label="diagnosis"), **settings)
    assert any("40 row(s) are near-identical" in w for w in warned.warnings)
    assert any("patient ID" in w for w in warned.warnings)
    clean = train(frame, Roles(label="diagnosis"), **settings)
    assert not any("near-identical" in w for w in clean.warnings)
    ids = doubled.assign(patient=[f"P{i}" for i in range(200)] + [f"P{i}" for i in range(40)])
    grouped = train(ids, Roles(label="diagnosis", id="patient"), **settings)
    assert not any("near-identical" in w for w in grouped.warnings)


def test_repeated_patients_are_named_before_training_without_an_id() -> None:
    from medimg_core.modelling.guards import repeated_patients_warning
    from medimg_core.tables.roles import Roles

    frame = _wdbc_features().iloc[:200].assign(diagnosis=["m", "b"] * 100)
    twice = frame.iloc[:30].copy()
    twice["mean radius"] *= 1.00001
    doubled = pd.concat([frame, twice], ignore_index=True)
    warning = repeated_patients_warning(doubled, Roles(label="diagnosis"))
    assert warning is not None and warning.startswith("30 row(s) are near-identical")
    assert repeated_patients_warning(frame, Roles(label="diagnosis")) is None
    ids = doubled.assign(patient=[f"P{i}" for i in range(200)] + [f"P{i}" for i in range(30)])
    assert repeated_patients_warning(ids, Roles(label="diagnosis", id="patient")) is None
    # Feature problems are left for training to report in full, not half-reported here.
    assert repeated_patients_warning(frame[["diagnosis"]], Roles(label="diagnosis")) is None
