"""Tests for medimg_core.modelling.validation: settings, the patient-level split, the CV folds."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling import validation
from medimg_core.modelling.validation import (
    ValidationConfig,
    check_validation,
    cv_folds,
    split_development_test,
)

LABELS = ("normal", "pneumonia")


def _patients(n: int = 40, per: int = 3) -> tuple[np.ndarray, np.ndarray]:
    groups = np.repeat([f"P{i:03d}" for i in range(n)], per)
    y = np.repeat(np.arange(n) % 2, per)
    return y, groups


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ValidationConfig(cv=1), "at least 2 folds, got 1"),
        (ValidationConfig(test_size=1.0), r"test_size must be a share in \[0, 1\), got 1.0"),
        (ValidationConfig(threshold="f1"), "Unknown threshold rule 'f1'"),  # type: ignore[arg-type]
    ],
)
def test_invalid_settings_are_refused(config: ValidationConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_validation(config)


def test_grouped_split_keeps_each_patient_on_one_side_and_both_classes_on_each() -> None:
    y, groups = _patients()
    dev, test = split_development_test(y, groups, LABELS, ValidationConfig(), 0, "dx")
    assert set(groups[dev]).isdisjoint(groups[test])
    assert sorted([*dev, *test]) == list(range(len(y)))
    assert set(y[test]) == {0, 1} and set(y[dev]) == {0, 1}
    assert 0.1 < len(test) / len(y) < 0.3


def test_ungrouped_split_is_stratified_and_repeatable() -> None:
    y = np.array([0] * 80 + [1] * 20)
    first = split_development_test(y, None, LABELS, ValidationConfig(), 3, "dx")
    again = split_development_test(y, None, LABELS, ValidationConfig(), 3, "dx")
    np.testing.assert_array_equal(first[1], again[1])
    assert y[first[1]].sum() == 4 and len(first[1]) == 20


def test_no_test_set_and_predefined_masks() -> None:
    y, groups = _patients(10)
    dev, test = split_development_test(y, groups, LABELS, ValidationConfig(test_size=0), 0, "dx")
    assert len(dev) == len(y) and len(test) == 0
    mask = tuple(bool(i % 5 == 0) for i in range(len(y)))
    dev, test = split_development_test(
        y, groups, LABELS, ValidationConfig(predefined_test=mask), 0, "dx"
    )
    assert list(test) == [i for i in range(len(y)) if mask[i]]
    with pytest.raises(ConfigError, match="mask has 3 entries but the data have 30 rows"):
        split_development_test(
            y, groups, LABELS, ValidationConfig(predefined_test=(True, False, True)), 0, "dx"
        )


def test_too_few_patients_names_the_class_and_the_count() -> None:
    y, groups = _patients(8)
    with pytest.raises(DataError, match=r"smallest class 'normal' has 4 patients in 'dx'; 5-fold"):
        split_development_test(y, groups, LABELS, ValidationConfig(), 0, "dx")


def test_folds_are_grouped_and_every_fold_trains_on_every_class() -> None:
    y, groups = _patients()
    dev = np.arange(len(y))
    folds = cv_folds(y, groups, dev, LABELS, 5, 0)
    assert len(folds) == 5
    seen = np.concatenate([va for _, va in folds])
    assert sorted(seen) == list(range(len(dev)))
    for tr, va in folds:
        assert set(groups[dev][tr]).isdisjoint(groups[dev][va])
        assert set(y[dev][tr]) == {0, 1}
    with pytest.raises(DataError, match="in the development part; 5-fold"):
        cv_folds(y, groups, dev[:12], LABELS, 5, 0)


def _forbid_group_splitter(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("StratifiedGroupKFold loops once per patient; not needed here")

    monkeypatch.setattr(validation, "StratifiedGroupKFold", refuse)


def test_single_label_patients_are_stratified_without_the_per_patient_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forbid_group_splitter(monkeypatch)
    rng = np.random.default_rng(0)
    groups = rng.permutation(np.repeat(np.arange(300), 3)).astype(str)
    y = (groups.astype(int) % 3 == 0).astype(int)  # one label per patient
    dev, test = split_development_test(y, groups, LABELS, ValidationConfig(), 7, "dx")
    assert set(groups[dev]).isdisjoint(groups[test])
    assert sorted([*dev, *test]) == list(range(len(y)))
    folds = cv_folds(y, groups, dev, LABELS, 5, 7)
    again = cv_folds(y, groups, dev, LABELS, 5, 7)
    for (tr, va), (tr2, va2) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(va, va2)
        np.testing.assert_array_equal(tr, tr2)
    g_dev, y_dev = groups[dev], y[dev]
    positives = []
    for tr, va in folds:
        assert set(g_dev[tr]).isdisjoint(g_dev[va])
        assert sorted([*tr, *va]) == list(range(len(dev)))
        positives.append(len(set(g_dev[va][y_dev[va] == 1])))
    # Stratified by patient: every fold holds the same number of positive patients, give or take one.
    assert max(positives) - min(positives) <= 1


def test_unique_ids_split_like_rows_and_mixed_label_patients_still_stay_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _forbid_group_splitter(monkeypatch)
    y = np.array([0] * 80 + [1] * 20)
    ids = np.arange(100)
    _, test = split_development_test(y, ids, LABELS, ValidationConfig(), 3, "dx")
    assert y[test].sum() == 4 and len(test) == 20
    monkeypatch.undo()
    y, groups = _patients()
    y[::3] = 1 - y[::3]  # every patient now has rows of both labels
    dev, test = split_development_test(y, groups, LABELS, ValidationConfig(), 0, "dx")
    assert set(groups[dev]).isdisjoint(groups[test])
    for tr, va in cv_folds(y, groups, dev, LABELS, 5, 0):
        assert set(groups[dev][tr]).isdisjoint(groups[dev][va])


@pytest.mark.parametrize("n_mixed", [2, 12])
def test_only_mixed_label_patients_go_through_the_per_patient_splitter(
    monkeypatch: pytest.MonkeyPatch, n_mixed: int
) -> None:
    seen: list[set[str]] = []
    real = validation.StratifiedGroupKFold

    class Spy(real):  # type: ignore[misc, valid-type]
        def split(self, X: object, y: object = None, groups: object = None) -> object:
            seen.append(set(np.asarray(groups).tolist()))
            return super().split(X, y, groups)

    monkeypatch.setattr(validation, "StratifiedGroupKFold", Spy)
    y, groups = _patients(100)
    mixed = np.isin(groups, [f"P{i:03d}" for i in range(n_mixed)])
    y[mixed & (np.arange(len(y)) % 3 == 0)] ^= 1
    dev = np.arange(len(y))
    folds = cv_folds(y, groups, dev, LABELS, 5, 1)
    assert sorted(np.concatenate([va for _, va in folds])) == list(range(len(y)))
    for tr, va in folds:
        assert set(groups[tr]).isdisjoint(groups[va])
    # Below 5 mixed patients no splitter is needed; above, it sees the mixed patients alone.
    assert len(seen) == (0 if n_mixed < 5 else 1)
    assert all(len(s) == n_mixed for s in seen)
