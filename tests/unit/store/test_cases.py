"""Stored cases: built from a training result, written atomically, read back, evaluations rebuilt."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg_core.encryption import MAGIC, is_encrypted, read_decrypted
from medimg_core.errors import DataError, EncryptionError, ModelFileError
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.privacy import pseudonymise
from medimg_core.store.cases import (
    CASES_NAME,
    build_cases,
    case_evaluations,
    load_cases,
    probability_columns,
    save_cases,
)
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import Roles


def sample_data() -> pd.DataFrame:
    frame = load_sample().frame.iloc[:240].copy()
    frame["surname"] = [f"Name {i}" for i in range(len(frame))]
    # A non-default index, as cleaning leaves it after removing rows.
    return frame.set_axis(np.arange(len(frame)) * 3 + 7)


@pytest.fixture(scope="module")
def binary() -> tuple[TrainingResult, pd.DataFrame]:
    data = sample_data()
    roles = Roles(label="diagnosis", id="case_id", exclude=("surname",))
    result = train(
        data,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=50),
        positive="malignant",
    )
    return result, data


@pytest.fixture(scope="module")
def multiclass() -> tuple[TrainingResult, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = 120
    label = np.repeat(["a", "b", "c"], n // 3)
    shift = {"a": 0.0, "b": 1.5, "c": 3.0}
    data = pd.DataFrame(
        {
            "x1": [shift[v] for v in label] + rng.normal(0, 1, n),
            "x2": rng.normal(0, 1, n),
            "grade": label,
        }
    )
    result = train(
        data,
        Roles(label="grade"),
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=50),
    )
    return result, data


def test_cases_hold_model_columns_partition_and_probabilities(
    binary: tuple[TrainingResult, pd.DataFrame],
) -> None:
    result, data = binary
    cases = build_cases(result, data)
    assert "surname" not in cases.columns
    assert list(cases.columns[:2]) == ["case_id", "diagnosis"]
    assert list(cases.columns[-2:]) == ["partition", "p_positive"]
    dev = cases[cases["partition"] == "development"]
    test = cases[cases["partition"] == "test"]
    assert list(dev.index) == list(result.dev_index)
    assert list(test.index) == list(result.test_index)
    np.testing.assert_allclose(dev["p_positive"], result.oof_proba[:, 1])
    np.testing.assert_allclose(test["p_positive"], result.test.y_score)
    assert list(dev["case_id"]) == list(result.cv.row_ids)


def test_save_and_load_round_trip_without_leftovers(
    binary: tuple[TrainingResult, pd.DataFrame], tmp_path: Path
) -> None:
    cases = build_cases(*binary)
    path = save_cases(tmp_path, cases)
    assert path == tmp_path / CASES_NAME
    assert [p.name for p in tmp_path.iterdir()] == [CASES_NAME]
    loaded = load_cases(tmp_path)
    pd.testing.assert_frame_equal(loaded, cases)
    # Saving again replaces the file in one step.
    save_cases(tmp_path, cases.iloc[:10])
    assert len(load_cases(tmp_path)) == 10
    assert [p.name for p in tmp_path.iterdir()] == [CASES_NAME]


def test_cases_are_encrypted_on_disk(
    binary: tuple[TrainingResult, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = build_cases(*binary)
    path = save_cases(tmp_path, cases)
    stored = path.read_bytes()
    assert stored.startswith(MAGIC)
    # Parquet files start and end with "PAR1"; column names sit in clear in its footer.
    assert b"PAR1" not in stored and b"partition" not in stored
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(read_decrypted(path))), cases)
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(tmp_path.parent / "no-such-key"))
    with pytest.raises(EncryptionError, match=r"The stored cases .*cases.parquet is encrypted"):
        load_cases(tmp_path)


def test_cases_saved_in_clear_by_an_older_medimg_still_load(
    binary: tuple[TrainingResult, pd.DataFrame], tmp_path: Path
) -> None:
    cases = build_cases(*binary)
    save_cases(tmp_path, cases)
    (tmp_path / CASES_NAME).write_bytes(read_decrypted(tmp_path / CASES_NAME))
    assert not is_encrypted(tmp_path / CASES_NAME)
    pd.testing.assert_frame_equal(load_cases(tmp_path), cases)


def test_mixed_type_columns_are_stored_as_text(tmp_path: Path) -> None:
    frame = pd.DataFrame({"note": [1, "two", None], "partition": ["development"] * 3})
    save_cases(tmp_path, frame)
    note = load_cases(tmp_path)["note"]
    assert list(note.iloc[:2]) == ["1", "two"]
    assert note.isna().iloc[2]


def test_rebuilt_evaluations_equal_the_training_ones(
    binary: tuple[TrainingResult, pd.DataFrame], tmp_path: Path
) -> None:
    result, data = binary
    save_cases(tmp_path, build_cases(result, data))
    cv, test = case_evaluations(result.model, load_cases(tmp_path), n_boot=50)
    assert test is not None and result.test is not None
    for key in ("roc_auc", "sensitivity", "brier"):
        assert cv.metrics[key] == result.cv.metrics[key]
        assert test.metrics[key] == result.test.metrics[key]
    np.testing.assert_array_equal(cv.confusion, result.cv.confusion)
    assert cv.groups_resampled and cv.partition == "cv" and test.partition == "test"
    assert cv.threshold == result.model.threshold


def test_rebuilt_evaluations_name_coded_classes_as_training_did(tmp_path: Path) -> None:
    data = sample_data()
    data["diagnosis"] = (data["diagnosis"] == "benign").astype(int)  # 0 = malignant, as BreastMNIST
    roles = Roles(
        label="diagnosis",
        id="case_id",
        exclude=("surname",),
        class_names=(("0", "malignant"), ("1", "benign")),
    )
    result = train(
        data,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=20),
        positive=0,
    )
    save_cases(tmp_path, build_cases(result, data))
    cv, test = case_evaluations(result.model, load_cases(tmp_path), n_boot=20)
    assert cv.class_names == result.cv.class_names == ("benign", "malignant")
    assert test is not None and test.class_names == ("benign", "malignant")


def test_multiclass_cases_have_one_probability_per_class(
    multiclass: tuple[TrainingResult, pd.DataFrame],
) -> None:
    result, data = multiclass
    assert probability_columns(result.model) == ("p_a", "p_b", "p_c")
    cases = build_cases(result, data)
    dev = cases[cases["partition"] == "development"]
    np.testing.assert_allclose(dev[["p_a", "p_b", "p_c"]].to_numpy(), result.oof_proba)
    cv, test = case_evaluations(result.model, cases, n_boot=50)
    assert cv.metrics["accuracy"] == result.cv.metrics["accuracy"]
    assert test is not None and test.y_score.shape[1] == 3
    assert list(cv.row_ids) == list(result.dev_index)


def test_without_a_test_set_there_is_no_test_evaluation() -> None:
    data = sample_data()
    result = train(
        data,
        Roles(label="diagnosis", id="case_id", exclude=("surname",)),
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(test_size=0.0, cv=3, n_boot=20),
        positive="malignant",
    )
    cases = build_cases(result, data)
    assert set(cases["partition"]) == {"development"}
    cv, test = case_evaluations(result.model, cases, n_boot=20)
    assert test is None and cv.n == len(data)


def test_refuses_tables_that_do_not_match(binary: tuple[TrainingResult, pd.DataFrame]) -> None:
    result, data = binary
    with pytest.raises(DataError, match="not in the table passed as data"):
        build_cases(result, data.iloc[5:])
    with pytest.raises(DataError, match="index has duplicates"):
        build_cases(result, pd.concat([data, data.iloc[:1]]))
    # A column the model does not use may have any name; it is not kept.
    assert "partition" in build_cases(result, data.rename(columns={"surname": "partition"}))
    renamed = data.rename(columns={"mean radius": "p_positive"})
    clashing = train(
        renamed,
        Roles(label="diagnosis", id="case_id", exclude=("surname",)),
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=20),
        positive="malignant",
    )
    with pytest.raises(DataError, match=r"\['p_positive'\] of the data clash"):
        build_cases(clashing, renamed)


def test_missing_or_foreign_files_are_model_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="saved without its cases"):
        load_cases(tmp_path)
    (tmp_path / CASES_NAME).write_bytes(b"not parquet")
    with pytest.raises(ModelFileError, match="damaged"):
        load_cases(tmp_path)
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / CASES_NAME)
    with pytest.raises(ModelFileError, match="not a medimg cases file"):
        load_cases(tmp_path)
    with pytest.raises(ModelFileError, match="does not exist"):
        save_cases(tmp_path / "nowhere", pd.DataFrame({"partition": ["test"]}))


def test_cases_of_another_model_are_refused(
    binary: tuple[TrainingResult, pd.DataFrame],
    multiclass: tuple[TrainingResult, pd.DataFrame],
) -> None:
    cases = build_cases(*binary)
    with pytest.raises(DataError, match="lack the column"):
        case_evaluations(multiclass[0].model, cases)
    with pytest.raises(DataError, match="no development rows"):
        case_evaluations(binary[0].model, cases[cases["partition"] == "test"])


def test_stored_patient_ids_are_keyed_pseudonyms_and_evaluations_are_unchanged(
    binary: tuple[TrainingResult, pd.DataFrame], tmp_path: Path
) -> None:
    result, data = binary
    key = b"cases-test-key-0123456789abcdef!"
    frame = build_cases(result, data)
    path = save_cases(tmp_path, frame, id_column="case_id", key=key)
    stored = load_cases(tmp_path)
    assert stored["case_id"].tolist() == [pseudonymise(v, key) for v in frame["case_id"]]
    assert not set(stored["case_id"]) & set(data["case_id"])
    raw = path.read_bytes()
    assert str(data["case_id"].iloc[0]).encode() not in raw
    # One pseudonym per patient: patient-level bootstrap intervals come out as in training.
    cv, test = case_evaluations(result.model, stored, n_boot=50)
    assert test is not None and result.test is not None
    for name in ("roc_auc", "sensitivity", "specificity", "brier"):
        assert cv.metrics[name] == result.cv.metrics[name]
        assert test.metrics[name] == result.test.metrics[name]
