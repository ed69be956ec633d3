from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from medimg_core.encryption import MAGIC, is_encrypted, read_decrypted
from medimg_core.errors import EncryptionError, ModelFileError
from medimg_core.modelling.evaluation import METRIC_KEYS, Evaluation, MetricValue
from medimg_core.modelling.models import MedimgModel, ModelConfig, build_preprocessor
from medimg_core.modelling.ood import fit_distance_reference
from medimg_core.modelling.selection import LeaderboardRow
from medimg_core.modelling.training import ReaderComparison, TrainingResult
from medimg_core.modelling.validation import SplitSummary, ValidationConfig
from medimg_core.store import persistence
from medimg_core.store.persistence import LoadedModel, build_card, load_model, save_model
from medimg_core.tables.cleaning import CleaningPlan, CleaningReport
from medimg_core.tables.roles import Roles


def wdbc_frame() -> pd.DataFrame:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.data.iloc[:, :6].copy()
    frame["site"] = np.where(np.arange(len(frame)) % 3 == 0, "north", "south")
    frame["diagnosis"] = np.where(bunch.target == 0, "malignant", "benign")
    frame["case_id"] = [f"P{i:04d}" for i in range(len(frame))]
    return frame


def _evaluation(partition: str, y_true: np.ndarray, y_score: np.ndarray) -> Evaluation:
    metrics = {k: MetricValue(0.9, (0.85, 0.95)) for k in METRIC_KEYS}
    metrics["brier"] = MetricValue(0.08, (float("nan"), float("nan")))
    return Evaluation(
        partition=partition,
        metrics=metrics,
        y_true=y_true,
        y_score=y_score,
        threshold=0.5,
        confusion=np.array([[10, 2], [1, 8]]),
        class_names=("benign", "malignant"),
        positive_class="malignant",
        roc=None,
        pr=None,
        calibration=None,
        per_class=None,
        row_ids=np.arange(len(y_true)),
        groups_resampled=False,
        n_boot=200,
    )


def make_result(estimator: Any = None, *, pca: int | None = None) -> TrainingResult:
    """A TrainingResult built by hand around a fitted pipeline (no dependency on training)."""
    frame = wdbc_frame()
    numeric = tuple(frame.columns[:6])
    categorical = ("site",)
    features = numeric + categorical
    y = (frame["diagnosis"] == "malignant").astype(int).to_numpy()
    steps: list[tuple[str, Any]] = [("prep", build_preprocessor(numeric, categorical))]
    if pca:
        steps.append(("pca", PCA(n_components=pca, random_state=0)))
    if estimator is None:
        estimator = LogisticRegression(max_iter=5000)
    steps.append(("model", estimator))
    pipeline = Pipeline(steps).fit(frame[list(features)], y)
    kind = "logreg" if isinstance(estimator, LogisticRegression) else "rf"
    model = MedimgModel(
        pipeline=pipeline,
        kind=kind,
        config=ModelConfig(model=kind, pca=pca, seed=7),  # type: ignore[arg-type]
        feature_columns=features,
        numeric_columns=numeric,
        categorical_columns=categorical,
        categories={"site": ("north", "south")},
        feature_ranges={c: (float(frame[c].min()), float(frame[c].max())) for c in numeric},
        classes=("benign", "malignant"),
        positive_class="malignant",
        threshold=0.42,
        roles=Roles(label="diagnosis", id="case_id"),
        plan=CleaningPlan(),
    )
    score = pipeline.predict_proba(frame[list(features)])[:, 1]
    split = SplitSummary(
        grouped_by="case_id",
        n_dev=455,
        n_test=114,
        patients_dev=455,
        patients_test=114,
        class_counts_dev={"benign": 285, "malignant": 170},
        class_counts_test={"benign": 72, "malignant": 42},
        cv_folds=3,
        test_size=0.2,
    )
    board = (
        LeaderboardRow(
            kind=kind,
            roc_auc=MetricValue(0.99, (0.98, 1.0)),
            accuracy=MetricValue(0.95, (0.93, 0.97)),
            fold_aucs=(0.99, 0.98, 0.995),
            seconds=1.234,
            chosen=True,
        ),
    )
    return TrainingResult(
        model=model,
        cv=_evaluation("cv", y[:455], score[:455]),
        test=_evaluation("test", y[455:], score[455:]),
        split=split,
        leaderboard=board,
        warnings=("a warning",),
        fold_scores=(0.99, 0.98, 0.995),
        dataset_hash="ab" * 32,
        seconds=2.5,
        versions={"sklearn": "test"},
    )


def _features(result: TrainingResult) -> pd.DataFrame:
    return wdbc_frame()[list(result.model.feature_columns)]


def _cleaning_report() -> CleaningReport:
    frame = wdbc_frame()
    removed = frame.iloc[:3].assign(reason="duplicate")
    return CleaningReport(
        data=frame.iloc[3:],
        removed=removed,
        counts={"missing label": 0, "missing values": 0, "duplicate": 3},
        conflicts=pd.DataFrame({"conflict_group": pd.Series([], dtype=int)}),
        flags=pd.DataFrame({"rule": pd.Series([], dtype=str)}),
        dropped_columns={},
        n_input=len(frame),
        plan=CleaningPlan(),
    )


@pytest.fixture(scope="module")
def result() -> TrainingResult:
    return make_result()


def test_card_shape(result: TrainingResult) -> None:
    card = build_card(
        result,
        cleaning=_cleaning_report(),
        dataset_name="wdbc",
        validation=ValidationConfig(threshold="youden"),
    )
    assert card["format"] == "medimg-model-card/1"
    assert card["dataset"]["name"] == "wdbc"
    assert card["dataset"]["rows_in"] == 569
    assert card["dataset"]["removed_by_rule"]["duplicate"] == 3
    assert card["dataset"]["classes"] == {"benign": 357, "malignant": 212}
    assert card["cleaning"]["applied"] is True
    assert card["cleaning"]["plan"]["missing"] == "impute"
    assert card["cleaning"]["plan"]["duplicates"] == "auto"
    assert {"class_counts", "missing_by_column", "identical_across_split"} <= set(card["cleaning"])
    assert card["validation"]["level"] == "patient (case_id)"
    assert card["validation"]["n_dev"] == 455 and card["validation"]["n_test"] == 114
    assert card["positive_class"] == "malignant"
    assert card["threshold"] == {
        "value": 0.42,
        "method": "youden",
        "chosen_on": "out-of-fold development predictions",
    }
    assert set(card["metrics"]["cv"]) == set(METRIC_KEYS)
    assert card["metrics"]["cv"]["roc_auc"] == {"value": 0.9, "ci95": [0.85, 0.95]}
    assert card["metrics"]["test"]["brier"] == {"value": 0.08, "ci95": [None, None]}
    assert card["leaderboard"][0]["model"] == "logreg"
    assert card["warnings"] == ["a warning"]
    assert card["seed"] == 7
    assert card["pipeline"]["kind"] == "logreg"
    assert card["pipeline"]["steps"][-1] == "model: LogisticRegression"
    assert card["versions"]["sklearn"] == "test"
    assert "skops" in card["versions"]
    assert "python" in card["versions"]
    assert card["features"]["categories"] == {"site": ["north", "south"]}
    json.dumps(card, allow_nan=False)


def test_linear_top_features_rank_original_columns(result: TrainingResult) -> None:
    card = build_card(result, cleaning=None, dataset_name="wdbc")
    names = [t["feature"] for t in card["top_features"]]
    assert set(names) == set(result.model.feature_columns)
    importances = [t["importance"] for t in card["top_features"]]
    assert importances == sorted(importances, reverse=True)
    assert "log-odds" in card["top_features_note"]
    # Without development rows this is not the Explain page's ranking, and the card says so.
    assert "not the Explain page's SHAP ranking" in card["top_features_note"]
    assert card["top_features_measure"] == "change in log-odds across the training range"
    assert card["threshold"]["method"] == "unknown"
    assert card["cleaning"] == {"applied": False, "plan": CleaningPlan().to_dict()}


def test_linear_top_features_match_manual_fold_through_pca() -> None:
    result = make_result(pca=3)
    model = result.model
    card = build_card(result, cleaning=None, dataset_name="x")
    pipe = model.pipeline
    scaler = pipe.named_steps["prep"].named_transformers_["num"].named_steps["scale"]
    w = (pipe.named_steps["model"].coef_ @ pipe.named_steps["pca"].components_).ravel()
    column = "mean radius"
    j = model.numeric_columns.index(column)
    low, high = model.feature_ranges[column]
    expected = abs(w[j] / scaler.scale_[j]) * (high - low)
    got = {t["feature"]: t["importance"] for t in card["top_features"]}[column]
    assert got == pytest.approx(expected, rel=1e-5)


def test_non_linear_model_without_rows_notes_missing_top_features() -> None:
    result = make_result(RandomForestClassifier(n_estimators=5, random_state=0))
    card = build_card(result, cleaning=None, dataset_name="x")
    assert card["top_features"] == []
    assert "not computed at save time" in card["top_features_note"].lower()


def test_round_trip_gives_identical_predictions(tmp_path: Path, result: TrainingResult) -> None:
    target = save_model(result, tmp_path / "m", dataset_name="wdbc")
    assert sorted(p.name for p in target.iterdir()) == ["card.json", "model.skops"]
    loaded = load_model(target)
    assert isinstance(loaded, LoadedModel)
    X = _features(result)
    np.testing.assert_array_equal(
        loaded.model.pipeline.predict_proba(X), result.model.pipeline.predict_proba(X)
    )
    original, back = result.model, loaded.model
    for field in (
        "kind",
        "config",
        "feature_columns",
        "numeric_columns",
        "categorical_columns",
        "categories",
        "feature_ranges",
        "classes",
        "positive_class",
        "threshold",
        "roles",
        "plan",
    ):
        assert getattr(back, field) == getattr(original, field), field
    plaintext = read_decrypted(target / "model.skops")
    assert loaded.card["model_sha256"] == hashlib.sha256(plaintext).hexdigest()
    assert loaded.directory == target


def test_model_file_is_encrypted_and_its_checksum_is_over_the_plaintext(
    tmp_path: Path, result: TrainingResult
) -> None:
    target = save_model(result, tmp_path / "m", dataset_name="wdbc")
    stored = (target / "model.skops").read_bytes()
    assert stored.startswith(MAGIC) and is_encrypted(target / "model.skops")
    plaintext = sio.dumps(result.model.pipeline)
    # skops writes a ZIP: its local-file signature must not be visible on disk.
    assert plaintext.startswith(b"PK") and b"PK\x03\x04" not in stored
    card = json.loads((target / "card.json").read_text())
    assert (
        card["model_sha256"] == hashlib.sha256(read_decrypted(target / "model.skops")).hexdigest()
    )
    assert card["model_sha256"] != hashlib.sha256(stored).hexdigest()
    assert card["encryption"]["cipher"] == "AES-256-GCM"
    assert card["encryption"]["encrypted"] == ["model.skops"]
    assert card["encryption"]["not_encrypted"] == ["card.json"]


def test_a_model_saved_in_clear_by_an_older_medimg_still_loads(
    tmp_path: Path, result: TrainingResult
) -> None:
    target = save_model(result, tmp_path / "m")
    _replace_model_file(target, read_decrypted(target / "model.skops"))
    assert not is_encrypted(target / "model.skops")
    X = _features(result)
    np.testing.assert_array_equal(
        load_model(target).model.pipeline.predict_proba(X),
        result.model.pipeline.predict_proba(X),
    )


def test_a_model_file_needs_the_key_it_was_saved_with(
    tmp_path: Path, result: TrainingResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = save_model(result, tmp_path / "m")
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(tmp_path / "elsewhere" / "no-key"))
    with pytest.raises(EncryptionError, match=r"The model file .*model.skops is encrypted"):
        load_model(target)


def test_round_trip_keeps_numeric_classes(tmp_path: Path, result: TrainingResult) -> None:
    model = result.model
    numeric_model = MedimgModel(
        **{
            **{f: getattr(model, f) for f in model.__dataclass_fields__},
            "classes": (0, 1),
            "positive_class": 1,
        }
    )
    numeric_result = TrainingResult(
        **{
            **{f: getattr(result, f) for f in result.__dataclass_fields__},
            "model": numeric_model,
        }
    )
    loaded = load_model(save_model(numeric_result, tmp_path / "m"))
    assert loaded.model.classes == (0, 1)
    assert loaded.model.positive_class == 1


def test_save_replaces_an_existing_model(tmp_path: Path, result: TrainingResult) -> None:
    target = tmp_path / "m"
    save_model(result, target, dataset_name="first")
    save_model(result, target, dataset_name="second")
    assert load_model(target).card["dataset"]["name"] == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_save_refuses_to_overwrite_a_foreign_directory(
    tmp_path: Path, result: TrainingResult
) -> None:
    target = tmp_path / "photos"
    target.mkdir()
    (target / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(ModelFileError, match=r"photos exists and is not a medimg model directory"):
        save_model(result, target)
    assert (target / "holiday.jpg").exists()


def test_crash_mid_save_leaves_no_model_and_no_temp(
    tmp_path: Path, result: TrainingResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_write(path: Any, data: bytes) -> None:
        Path(path).write_bytes(data[:10])
        raise RuntimeError("disk vanished")

    monkeypatch.setattr(persistence, "write_encrypted", broken_write)
    with pytest.raises(RuntimeError, match="disk vanished"):
        save_model(result, tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_crash_while_replacing_keeps_the_old_model(
    tmp_path: Path, result: TrainingResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = save_model(result, tmp_path / "m", dataset_name="old")

    def broken_write(path: Any, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persistence, "write_encrypted", broken_write)
    with pytest.raises(ModelFileError, match="No space left on device"):
        save_model(result, target, dataset_name="new")
    assert load_model(target).card["dataset"]["name"] == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_missing_directory_or_files(tmp_path: Path, result: TrainingResult) -> None:
    with pytest.raises(ModelFileError, match=r"is not a medimg model directory: expected"):
        load_model(tmp_path / "nowhere")
    target = save_model(result, tmp_path / "m")
    (target / "card.json").unlink()
    with pytest.raises(ModelFileError, match=r"expected model.skops and card.json"):
        load_model(target)


def test_directory_with_only_a_pickle_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelFileError, match=r"is not a medimg model directory"):
        load_model(folder)


def _replace_model_file(target: Path, content: bytes) -> None:
    """What an attacker who also edits the card would do: new bytes, matching checksum."""
    (target / "model.skops").write_bytes(content)
    card = json.loads((target / "card.json").read_text())
    card["model_sha256"] = persistence._sha256(target / "model.skops")
    (target / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize(
    "content", [pickle.dumps({"a": 1}), b"\x00random bytes\xff" * 20], ids=["pickle", "random"]
)
def test_model_file_that_is_not_skops_is_refused(
    tmp_path: Path, result: TrainingResult, content: bytes
) -> None:
    target = save_model(result, tmp_path / "m")
    _replace_model_file(target, content)
    with pytest.raises(ModelFileError, match=r"is not a skops model file"):
        load_model(target)


def test_tampered_model_file_is_refused(tmp_path: Path, result: TrainingResult) -> None:
    target = save_model(result, tmp_path / "m")
    with (target / "model.skops").open("ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(
        EncryptionError,
        match=r"model.skops was modified or damaged after it was saved \(checksum mismatch",
    ):
        load_model(target)


def test_tampered_plaintext_model_file_is_refused(tmp_path: Path, result: TrainingResult) -> None:
    target = save_model(result, tmp_path / "m")
    _replace_model_file(target, read_decrypted(target / "model.skops"))
    with (target / "model.skops").open("ab") as fh:
        fh.write(b"\x00")
    with pytest.raises(
        ModelFileError,
        match=r"model.skops .* was modified after it was saved \(checksum mismatch\); "
        r"re-train or restore the file",
    ):
        load_model(target)


@pytest.mark.parametrize("card_text", ["{not json", '{"format": "other/2"}', "[1, 2]"])
def test_wrong_card_is_refused(tmp_path: Path, result: TrainingResult, card_text: str) -> None:
    target = save_model(result, tmp_path / "m")
    (target / "card.json").write_text(card_text)
    with pytest.raises(ModelFileError, match=r"card"):
        load_model(target)


def test_incomplete_card_is_refused(tmp_path: Path, result: TrainingResult) -> None:
    target = save_model(result, tmp_path / "m")
    card = json.loads((target / "card.json").read_text())
    del card["features"]
    (target / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"card.json is incomplete .*'features'"):
        load_model(target)


def custom_scaling(X: Any) -> Any:
    return X


class Sneaky:
    """A class skops does not know: loading it would import and run code from this module."""


@pytest.mark.parametrize(
    ("extra", "type_name"),
    [
        (FunctionTransformer(custom_scaling), "test_persistence.custom_scaling"),
        (FunctionTransformer(eval), "builtins.eval"),
    ],
    ids=["custom-function", "eval"],
)
def test_untrusted_types_are_refused(
    tmp_path: Path, result: TrainingResult, extra: Any, type_name: str
) -> None:
    target = save_model(result, tmp_path / "m")
    steps = [("extra", extra), *result.model.pipeline.steps]
    hostile = Pipeline(steps)
    sio.dump(hostile, target / "model.skops")
    _replace_model_file(target, (target / "model.skops").read_bytes())
    with pytest.raises(ModelFileError, match=rf"{type_name}.*refuses to load it"):
        load_model(target)


def test_untrusted_custom_class_is_refused(tmp_path: Path, result: TrainingResult) -> None:
    target = save_model(result, tmp_path / "m")
    pipeline = Pipeline(list(result.model.pipeline.steps))
    pipeline.sneaky = Sneaky()  # type: ignore[attr-defined]
    sio.dump(pipeline, target / "model.skops")
    _replace_model_file(target, (target / "model.skops").read_bytes())
    with pytest.raises(ModelFileError, match=r"test_persistence.Sneaky.*refuses to load it"):
        load_model(target)


def test_skops_file_that_is_not_a_pipeline_is_refused(
    tmp_path: Path, result: TrainingResult
) -> None:
    target = save_model(result, tmp_path / "m")
    sio.dump(LogisticRegression(), target / "model.skops")
    _replace_model_file(target, (target / "model.skops").read_bytes())
    with pytest.raises(ModelFileError, match=r"holds a LogisticRegression, not a scikit-learn"):
        load_model(target)


def test_trusted_types_cover_every_model_kind(tmp_path: Path) -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC, LinearSVC

    frame = wdbc_frame()
    X, y = frame[["mean radius", "mean texture", "site"]], frame["diagnosis"] == "malignant"
    estimators = [
        CalibratedClassifierCV(SVC()),
        CalibratedClassifierCV(LinearSVC()),
        RandomForestClassifier(n_estimators=3),
        HistGradientBoostingClassifier(max_iter=5),
        KNeighborsClassifier(15),
        MLPClassifier(early_stopping=True, max_iter=30),
    ]
    for i, estimator in enumerate(estimators):
        pipe = Pipeline(
            [
                ("prep", build_preprocessor(["mean radius", "mean texture"], ["site"])),
                ("model", estimator),
            ]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipe.fit(X, y)
        path = tmp_path / f"{i}.skops"
        sio.dump(pipe, path)
        assert set(sio.get_untrusted_types(file=path)) <= persistence.TRUSTED_TYPES


# --- Distance statistics for Predict's out-of-distribution check (issue 8, section 5) ------


def _with_ood(result: TrainingResult) -> TrainingResult:
    frame = wdbc_frame()
    model = result.model
    reference = fit_distance_reference(frame.iloc[:455], model.numeric_columns, seed=7)
    return dataclasses.replace(result, model=dataclasses.replace(model, ood=reference))


def test_distance_statistics_round_trip_with_skops(tmp_path: Path, result: TrainingResult) -> None:
    with_ood = _with_ood(result)
    target = save_model(with_ood, tmp_path / "m")
    assert is_encrypted(target / persistence.OOD_NAME)
    assert not sio.get_untrusted_types(data=read_decrypted(target / persistence.OOD_NAME))
    card = json.loads((target / "card.json").read_text())
    entry = card["out_of_distribution"]
    assert entry["file"] == persistence.OOD_NAME and len(entry["sha256"]) == 64
    assert card["encryption"]["encrypted"] == ["model.skops", "ood.skops"]
    assert entry["quantile"] == 0.99 and entry["columns"] == list(result.model.numeric_columns)
    loaded = load_model(target).model
    assert loaded.ood is not None and with_ood.model.ood is not None
    assert loaded.ood.cutoff == pytest.approx(with_ood.model.ood.cutoff)
    rows = wdbc_frame().iloc[455:470]
    np.testing.assert_allclose(
        loaded.ood.distances(rows[list(loaded.ood.columns)]),
        with_ood.model.ood.distances(rows[list(loaded.ood.columns)]),
    )


def test_a_model_saved_before_distance_statistics_loads_without_them(
    tmp_path: Path, result: TrainingResult
) -> None:
    target = save_model(_with_ood(result), tmp_path / "m")
    card_path = target / "card.json"
    card = json.loads(card_path.read_text())
    del card["out_of_distribution"]
    card_path.write_text(json.dumps(card))
    (target / persistence.OOD_NAME).unlink()
    assert load_model(target).model.ood is None


def test_tampered_distance_statistics_are_refused(tmp_path: Path, result: TrainingResult) -> None:
    target = save_model(_with_ood(result), tmp_path / "m")
    sio.dump({"center": np.zeros(6), "scale": np.ones(6), "precision": np.eye(6)}, target / "x")
    (target / "x").replace(target / persistence.OOD_NAME)
    with pytest.raises(ModelFileError, match="modified after it was saved"):
        load_model(target)


def test_card_keeps_performance_without_reader_features(result: TrainingResult) -> None:
    comparison = ReaderComparison(
        reader_columns=("birads",),
        kind="logreg",
        cv=result.cv,
        test=None,
        threshold=0.4,
        note="birads is a reader's assessment",
    )
    card = build_card(
        dataclasses.replace(result, without_reader=comparison),
        cleaning=None,
        dataset_name="mammo",
    )
    assert card["without_reader"]["reader_columns"] == ["birads"]
    assert card["without_reader"]["cv"]["roc_auc"]["value"] == pytest.approx(
        result.cv.metrics["roc_auc"].value
    )
    assert build_card(result, cleaning=None, dataset_name="x")["without_reader"] is None


def test_card_keeps_the_selection_free_auc_and_the_interval_methods() -> None:
    base = make_result()
    row = dataclasses.replace(base.leaderboard[0], note="ranked as a lighter forest (100 trees)")
    result = dataclasses.replace(
        base,
        leaderboard=(row,),
        selection_free=MetricValue(0.93, (0.88, 0.97), method="bootstrap bias-corrected CV"),
    )
    card = build_card(result, cleaning=None, dataset_name="wdbc")
    free = card["selection_free"]
    assert free["roc_auc"]["value"] == 0.93 and free["roc_auc"]["ci95"] == [0.88, 0.97]
    assert free["method"] == "bootstrap bias-corrected CV"
    assert "optimistic" in free["note"] and "selection-free" in free["note"]
    assert card["leaderboard"][0]["note"] == "ranked as a lighter forest (100 trees)"
    assert build_card(make_result(), cleaning=None, dataset_name="x")["selection_free"] is None


# --- issue 12: interrupted saves and hostile model directories --------------------------------


def _killed_save(parent: Path, name: str, *, age: float) -> Path:
    """The folder a save killed mid-way (SIGKILL: no clean-up ran) leaves beside its target."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # its process id is now free
    folder = parent / f".{name}.saving-{proc.pid}-x1y2z3"
    folder.mkdir(parents=True)
    (folder / "model.skops").write_bytes(b"half a model")
    then = time.time() - age
    os.utime(folder, (then, then))
    return folder


def test_a_save_removes_what_an_interrupted_save_left(
    tmp_path: Path, result: TrainingResult
) -> None:
    stale = _killed_save(tmp_path, "m", age=120)
    legacy = tmp_path / ".other.saving-abc123"  # an older medimg's name, empty, a day old
    legacy.mkdir()
    os.utime(legacy, (0, 0))
    mine = tmp_path / "notes"
    mine.mkdir()
    target = save_model(result, tmp_path / "m")
    assert not stale.exists() and not legacy.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "notes"]
    assert load_model(target).model.kind == result.model.kind


def test_a_save_keeps_a_staging_folder_that_may_still_be_in_use(
    tmp_path: Path, result: TrainingResult
) -> None:
    fresh = _killed_save(tmp_path, "m", age=0)  # could be another container's save
    save_model(result, tmp_path / "m")
    assert fresh.is_dir()


def test_a_card_nested_5000_levels_is_one_model_file_error(
    tmp_path: Path, result: TrainingResult
) -> None:
    target = save_model(result, tmp_path / "m")
    (target / "card.json").write_text('{"format": "x", "a": ' + "[" * 4999 + "]" * 4999 + "}")
    with pytest.raises(ModelFileError, match=r"card.json is nested 5000 levels deep"):
        load_model(target)


def test_a_card_of_400_mb_is_refused_without_reading_it(
    tmp_path: Path, result: TrainingResult
) -> None:
    target = save_model(result, tmp_path / "m")
    with (target / "card.json").open("r+b") as fh:  # sparse: only the size changes
        fh.truncate(400 << 20)
    with pytest.raises(ModelFileError, match=r"card.json is 400 MB, more than the 16 MB"):
        load_model(target)


@pytest.mark.parametrize("name", ["/dev/zero", "../../card.json", "model.skops"])
def test_a_card_cannot_point_the_distance_statistics_elsewhere(
    tmp_path: Path, result: TrainingResult, name: str
) -> None:
    target = save_model(_with_ood(result), tmp_path / "m")
    card = json.loads((target / "card.json").read_text())
    card["out_of_distribution"]["file"] = name
    (target / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"as its out-of-distribution statistics"):
        load_model(target)


@pytest.mark.parametrize(
    ("entry", "value"),
    [
        ("features", [1]),
        ("pipeline", "logreg"),
        ("threshold", {"value": "high"}),
        ("roles", 5),
        ("cleaning", {"plan": "none"}),
        ("recalibration", "yes"),
        ("positive_class", {"a": 1}),
    ],
)
def test_a_card_with_wrong_types_is_one_model_file_error(
    tmp_path: Path, result: TrainingResult, entry: str, value: Any
) -> None:
    target = save_model(result, tmp_path / "m")
    card = json.loads((target / "card.json").read_text())
    card[entry] = value
    (target / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=r"card.json is incomplete"):
        load_model(target)


@pytest.mark.parametrize("keep", [0, 22, 1000, -22])
def test_a_truncated_model_file_is_one_model_file_error(
    tmp_path: Path, result: TrainingResult, keep: int
) -> None:
    target = save_model(result, tmp_path / "m")
    plain = read_decrypted(target / "model.skops")
    _replace_model_file(target, plain[:keep])
    with pytest.raises(ModelFileError, match=r"is not a skops model file"):
        load_model(target)
