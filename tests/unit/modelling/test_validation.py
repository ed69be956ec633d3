"""Tests for medimg_core.modelling.validation: settings, the patient-level split, the CV folds."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_core.errors import ConfigError, DataError
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
