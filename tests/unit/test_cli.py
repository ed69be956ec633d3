from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg_core.access import SINGLE_USER
from medimg_core.cli import _ProgressLine, main
from medimg_core.store.persistence import load_model
from medimg_core.store.registry import Registry
from medimg_core.tables.loading import load_sample

FAST = ["--model", "logreg", "--cv", "3", "--n-boot", "100"]


@dataclass(frozen=True)
class Trained:
    home: Path
    model_dir: Path
    stdout: str
    stderr: str
    status: int


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    base = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(base / "ws"))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        model_dir = base / "models" / "wdbc"
        status, out, err = run(["train", "sample:wdbc", *FAST, "-o", str(model_dir)])
        yield Trained(base / "ws", model_dir, out, err, status)


@pytest.fixture
def home(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIMG_HOME", str(trained.home))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return trained.home


def wdbc_csv(path: Path, rows: int = 40, **changes: object) -> Path:
    frame = load_sample("wdbc").frame.head(rows).copy()
    for column, value in changes.items():
        if value is None:
            frame = frame.drop(columns=[column])
        else:
            frame[column] = value
    frame.to_csv(path, index=False)
    return path


def assert_one_line_error(status: int, err: str, pattern: str) -> None:
    assert status == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[-1].startswith("medimg: error: ")
    assert re.search(pattern, lines[-1]), lines[-1]


def test_train_saves_records_and_summarises(trained: Trained) -> None:
    assert trained.status == 0, trained.stderr
    out = trained.stdout
    assert "Data: wdbc" in out
    assert "569 rows in" in out
    assert "grouped by patient (case_id)" in out
    assert "Positive class: malignant; threshold 0.500 (0.5" in out
    assert "Model: logreg" in out
    for name in ("accuracy", "ROC AUC", "sensitivity", "specificity", "PPV", "NPV"):
        assert name in out
    assert "cross-validated (dev)" in out and "held-out test" in out
    assert "Test set: 20% of patients held out at random, " in out
    assert f"Saved to {trained.model_dir}" in out

    loaded = load_model(trained.model_dir)
    card = loaded.card
    assert card["dataset"]["name"] == "wdbc"
    assert card["threshold"]["method"] == "0.5"
    assert card["validation"]["cv_folds"] == 3
    assert card["top_features"]
    assert "mean |SHAP value| in log-odds of malignant" in card["top_features_measure"]
    assert 0.97 < card["metrics"]["cv"]["roc_auc"]["value"] <= 1.0
    with Registry(home=trained.home) as registry:
        runs = registry.list_runs(SINGLE_USER)
    assert len(runs) == 1 and runs[0].model_dir == trained.model_dir


def test_runs_lists_newest_first(home: Path, trained: Trained) -> None:
    status, out, _ = run(["runs"])
    assert status == 0
    title, header, *rows = out.strip().splitlines()
    assert title == "Runs of project 'default', newest first:"
    assert header.split()[:5] == ["id", "created", "owner", "dataset", "model"]
    assert len(rows) == 1 and "logreg" in rows[0] and "wdbc" in rows[0]


def test_train_summary_and_card_give_calibration_per_partition(trained: Trained) -> None:
    out = trained.stdout
    card = load_model(trained.model_dir).card
    calibration = card["calibration"]
    for partition in ("cv", "test"):
        entry = calibration[partition]
        assert set(entry) >= {"intercept", "slope", "mean_predicted", "observed_rate", "curve"}
        assert sum(entry["curve"]["n"]) == entry["n"]
        assert len(entry["curve"]["mean_predicted"]) == len(entry["curve"]["observed"])
        assert f"calibration ({partition}): " in out
    cv = calibration["cv"]
    intercept = f"{cv['intercept']:.2f}".replace("-", "\u2212")
    assert f"calibration (cv): intercept {intercept}, slope {cv['slope']:.2f}" in out


def test_train_summary_and_card_give_the_decision_curve_at_the_threshold(
    trained: Trained,
) -> None:
    out = trained.stdout
    card = load_model(trained.model_dir).card
    assert "Decision curve (net benefit; treating no one scores 0):" in out
    for partition, name in (("cv", "cross-validated (dev)"), ("test", "held-out test")):
        chosen = card["decision_curve"][partition]["chosen"]
        assert chosen["threshold"] == pytest.approx(card["threshold"]["value"])
        assert chosen["net_benefit"] > max(chosen["treat_all"], 0.0)
        assert (
            f"  {name}: At threshold {chosen['threshold']:.2f} the model's net benefit is "
            f"{chosen['net_benefit']:.3f} vs {chosen['treat_all']:.3f} for treating everyone: "
            f"equivalent to {chosen['interventions_avoided_per_100']:.1f} fewer unnecessary "
            "interventions per 100 patients with no missed malignant cases"
        ) in out


def test_runs_says_choosing_by_the_test_set_is_a_selection_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    for kind in ("logreg", "knn"):
        argv = ["train", "sample:wdbc", *FAST, "-o", str(tmp_path / kind)]
        argv[argv.index("logreg")] = kind
        assert run(argv)[0] == 0
    status, out, _ = run(["runs"])
    assert status == 0
    assert "uses the test set for selection" in out
    assert "report the chosen run on new data" in out


def test_train_summary_says_what_data_is_kept(trained: Trained) -> None:
    assert (
        "Kept for reproducing this run: the label (diagnosis), 30 feature column(s) and the "
        "patient ID (case_id) as a keyed pseudonym" in trained.stdout
    )


def test_runs_delete_unregisters_a_model_saved_outside_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    outside = tmp_path / "elsewhere" / "model"
    assert run(["train", "sample:wdbc", *FAST, "-o", str(outside)])[0] == 0
    with Registry() as registry:
        (record,) = registry.list_runs(SINGLE_USER)
    status, out, err = run(["runs", "--delete", record.id])
    assert status == 0, err
    assert f"Run {record.id} was removed from the list of runs" in out
    assert "left untouched" in out
    assert (outside / "model.skops").is_file() and (outside / "card.json").is_file()
    assert "copy of its training data was deleted" in out
    with Registry() as registry:
        assert registry.list_runs(SINGLE_USER) == []
    assert not list((tmp_path / "ws" / "datasets").iterdir())


def test_runs_on_an_empty_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path))
    status, out, _ = run(["runs"])
    assert status == 0
    assert "No runs recorded yet" in out


def test_evaluate_writes_external_metrics(trained: Trained, tmp_path: Path) -> None:
    data = wdbc_csv(tmp_path / "other.csv", rows=120)
    target = tmp_path / "out" / "metrics.json"
    status, out, err = run(
        ["evaluate", str(trained.model_dir), str(data), "--json", str(target), "--n-boot", "50"]
    )
    assert status == 0, err
    payload = json.loads(target.read_text())
    assert payload["partition"] == "external"
    assert payload["n"] == 120
    assert payload["positive_class"] == "malignant"
    assert set(payload["metrics"]) >= {"roc_auc", "sensitivity", "specificity", "ppv", "npv"}
    assert set(payload["metrics"]["roc_auc"]) == {"value", "ci95", "method"}
    assert payload["metrics"]["roc_auc"]["method"].startswith("percentile bootstrap")
    assert "External validation" in out and "ROC AUC" in out
    assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]


def test_evaluate_reports_calibration_and_departures_on_external_cases(
    trained: Trained, tmp_path: Path
) -> None:
    frame = load_sample("wdbc").frame.head(200).copy()
    # A population where many cases the model reads as benign are malignant: its probabilities
    # are too low there, and it misses many malignant cases.
    benign = frame.index[frame["diagnosis"] == "benign"][:40]
    frame.loc[benign, "diagnosis"] = "malignant"
    frame.to_csv(tmp_path / "shifted.csv", index=False)
    target = tmp_path / "shifted.json"
    data = str(tmp_path / "shifted.csv")
    status, out, err = run(
        ["evaluate", str(trained.model_dir), data, "--json", str(target), "--n-boot", "50"]
    )
    assert status == 0, err
    payload = json.loads(target.read_text())
    assert payload["calibration"]["intercept"] > 0.5
    assert "calibration (external): intercept " in out
    assert any("probabilities are too low on average" in w for w in payload["warnings"])
    assert any("does worse than development" in w for w in payload["warnings"])
    assert "On the external cases the model's probabilities are too low" in out


def test_evaluate_with_renamed_label(trained: Trained, tmp_path: Path) -> None:
    frame = load_sample("wdbc").frame.head(60).rename(columns={"diagnosis": "truth"})
    frame.to_csv(tmp_path / "renamed.csv", index=False)
    target = tmp_path / "m.json"
    status, _, err = run(
        [
            "evaluate",
            str(trained.model_dir),
            str(tmp_path / "renamed.csv"),
            "--label",
            "truth",
            "--json",
            str(target),
            "--n-boot",
            "20",
        ]
    )
    assert status == 0, err
    assert json.loads(target.read_text())["n"] == 60


def test_predict_with_reasons_writes_a_safe_csv(trained: Trained, tmp_path: Path) -> None:
    ids = [f'=HYPERLINK("x{i}")' if i == 0 else f"C{i}" for i in range(8)]
    data = wdbc_csv(tmp_path / "new.csv", rows=8, case_id=ids, diagnosis=None)
    target = tmp_path / "pred.csv"
    status, out, err = run(
        ["predict", str(trained.model_dir), str(data), "-o", str(target), "--explain", "2"]
    )
    assert status == 0, err
    frame = pd.read_csv(target)
    assert len(frame) == 8
    assert {"reason_1", "reason_2", "decision", "p_malignant"} <= set(frame.columns)
    assert "reason_3" not in frame.columns
    assert frame["case_id"].iloc[0].startswith("'=")
    assert frame["reason_1"].str.contains(r"\([+-]\d").all()
    assert "Wrote 8 prediction(s)" in out


def test_clean_writes_data_and_report(tmp_path: Path, home: Path) -> None:
    frame = load_sample("wdbc").frame.head(50).copy()
    frame = pd.concat([frame, frame.iloc[:2]], ignore_index=True)
    frame.loc[3, "diagnosis"] = np.nan
    frame.to_csv(tmp_path / "raw.csv", index=False)
    out_path, report_path = tmp_path / "clean.parquet", tmp_path / "report.json"
    status, out, err = run(
        [
            "clean",
            str(tmp_path / "raw.csv"),
            "--label",
            "diagnosis",
            "-o",
            str(out_path),
            "--report",
            str(report_path),
        ]
    )
    assert status == 0, err
    report = json.loads(report_path.read_text())
    cleaned = pd.read_parquet(out_path)
    assert report["rows_in"] == 52
    assert report["rows_kept"] == len(cleaned)
    assert report["removed_by_rule"]["missing label"] == 1
    assert report["rows_in"] == report["rows_kept"] + report["rows_removed"]
    assert report["roles"]["label"] == "diagnosis"
    assert "52 rows in" in out


def _scores_table(path: Path) -> Path:
    """Biopsies with an ID and 1-10 scores: different patients share scores; 3 true repeats."""
    rng = np.random.default_rng(11)
    n_benign, n_malignant = 140, 60
    scores = np.vstack(
        [
            np.where(rng.random((n_benign, 4)) < 0.85, 1, 2),
            rng.integers(1, 11, (n_malignant, 4)),
        ]
    )
    frame = pd.DataFrame(scores, columns=["clump", "size", "shape", "nuclei"])
    frame.insert(0, "id", np.arange(5000, 5000 + len(frame)))
    frame["class"] = ["benign"] * n_benign + ["malignant"] * n_malignant
    frame.loc[[7, 12], "size"] = np.nan
    frame = pd.concat([frame, frame.iloc[[1, 2, 150]]], ignore_index=True)
    frame.to_csv(path, index=False)
    return path


def _clean(tmp_path: Path, data: Path, *options: str) -> tuple[int, str, str, dict]:
    report_path = tmp_path / "report.json"
    status, out, err = run(
        [
            "clean",
            str(data),
            "--label",
            "class",
            "--id",
            "id",
            *options,
            "-o",
            str(tmp_path / "clean.parquet"),
            "--report",
            str(report_path),
        ]
    )
    report = json.loads(report_path.read_text()) if status == 0 else {}
    return status, out, err, report


def test_clean_keeps_distinct_patients_and_prints_class_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    status, out, err, report = _clean(tmp_path, _scores_table(tmp_path / "scores.csv"))
    assert status == 0, err
    # Only the three repeated records go; patients sharing their scores all stay.
    assert report["rows_in"] == 203 and report["rows_kept"] == 200
    assert report["removed_by_rule"]["duplicate record"] == 3
    assert report["removed_by_rule"]["missing values"] == 0
    assert report["class_counts"]["before"] == {"benign": 142, "malignant": 61}
    assert report["class_counts"]["after"] == {"benign": 140, "malignant": 60}
    assert report["missing_by_column"]["size"] == {"missing": 2, "share": round(2 / 203, 4)}
    assert "classes before -> after cleaning: benign 142 -> 140 (70.0% -> 70.0%)" in out
    assert "missing values per predictor: size 2 (1%) (kept; the model imputes)" in out


def test_clean_drop_missing_is_an_explicit_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    data = _scores_table(tmp_path / "scores.csv")
    status, _, err, report = _clean(tmp_path, data, "--drop-missing", "--duplicates", "keep")
    assert status == 0, err
    assert report["removed_by_rule"]["missing values"] == 2
    assert report["removed_by_rule"]["duplicate record"] == 0
    assert report["plan"]["missing"] == "drop" and report["plan"]["duplicates"] == "keep"
    status, _, err, report = _clean(tmp_path, data, "--impute")
    assert status == 0, err
    assert report["plan"]["missing"] == "impute"


def test_clean_sample(tmp_path: Path, home: Path) -> None:
    status, _, err = run(
        [
            "clean",
            "sample:wdbc",
            "-o",
            str(tmp_path / "c.parquet"),
            "--report",
            str(tmp_path / "r.json"),
        ]
    )
    assert status == 0, err
    assert len(pd.read_parquet(tmp_path / "c.parquet")) == 569


def test_positive_given_as_text_matches_a_numeric_label(tmp_path: Path, home: Path) -> None:
    rng = np.random.default_rng(0)
    n = 120
    y = np.arange(n) % 2
    frame = pd.DataFrame(
        {"a": rng.normal(size=n) + y, "b": rng.normal(size=n), "c": rng.normal(size=n), "y": y}
    )
    frame.to_csv(tmp_path / "num.csv", index=False)
    model_dir = tmp_path / "num_model"
    status, out, err = run(
        [
            "train",
            str(tmp_path / "num.csv"),
            "--label",
            "y",
            "--positive",
            "0",
            *FAST,
            "-o",
            str(model_dir),
        ]
    )
    assert status == 0, err
    assert load_model(model_dir).model.positive_class == 0
    assert "Positive class: 0" in out


def test_identifying_columns_are_excluded_and_said(tmp_path: Path, home: Path) -> None:
    frame = load_sample("wdbc").frame.head(100).copy()
    names = ["Alice Smith", "Bob Jones", "Carol White", "David Brown", "Eve Black"]
    frame.insert(1, "patient_name", [names[i % 5] + f" {i}" for i in range(100)])
    frame.to_csv(tmp_path / "named.csv", index=False)
    model_dir = tmp_path / "named_model"
    status, _, err = run(
        ["train", str(tmp_path / "named.csv"), "--label", "diagnosis", *FAST, "-o", str(model_dir)]
    )
    assert status == 0, err
    assert "excluding identifying column(s) 'patient_name'" in err
    model = load_model(model_dir).model
    assert "patient_name" not in model.feature_columns
    assert "patient_name" in model.roles.exclude


def test_missing_file(tmp_path: Path, home: Path) -> None:
    status, out, err = run(["train", str(tmp_path / "nope.csv"), "--label", "x", "-o", "m"])
    assert_one_line_error(status, err, r"nope\.csv")
    assert out == ""


def test_label_absent(tmp_path: Path, home: Path) -> None:
    status, _, err = run(
        ["train", "sample:wdbc", "--label", "outcome", *FAST, "-o", str(tmp_path / "m")]
    )
    assert_one_line_error(status, err, r"--label 'outcome' is not a column of wdbc")
    assert not (tmp_path / "m").exists()


def test_single_class_label(tmp_path: Path, home: Path) -> None:
    data = wdbc_csv(tmp_path / "one.csv", rows=60, diagnosis="benign")
    status, _, err = run(
        ["train", str(data), "--label", "diagnosis", *FAST, "-o", str(tmp_path / "m")]
    )
    assert_one_line_error(status, err, r"benign")
    assert not (tmp_path / "m").exists()


def test_positive_that_is_not_a_label_value(tmp_path: Path, home: Path) -> None:
    status, _, err = run(
        ["train", "sample:wdbc", "--positive", "cancer", *FAST, "-o", str(tmp_path / "m")]
    )
    assert_one_line_error(status, err, r"--positive 'cancer' is not a value of the label")


def test_train_refuses_a_foreign_output_directory(tmp_path: Path, home: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    status, _, err = run(["train", "sample:wdbc", *FAST, "-o", str(tmp_path)])
    assert_one_line_error(status, err, r"exists and is not a medimg model directory")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_tampered_model(trained: Trained, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.skops", "card.json"):
        (copy / name).write_bytes((trained.model_dir / name).read_bytes())
    with (copy / "model.skops").open("ab") as fh:
        fh.write(b"!")
    data = wdbc_csv(tmp_path / "new.csv", rows=5)
    status, _, err = run(["predict", str(copy), str(data), "-o", str(tmp_path / "p.csv")])
    assert_one_line_error(status, err, r"checksum mismatch")
    assert not (tmp_path / "p.csv").exists()


def test_not_a_model_directory(tmp_path: Path) -> None:
    status, _, err = run(
        ["evaluate", str(tmp_path), "sample:wdbc", "--json", str(tmp_path / "m.json")]
    )
    assert_one_line_error(status, err, r"is not a medimg model directory")


def test_predict_with_missing_columns(trained: Trained, tmp_path: Path) -> None:
    data = wdbc_csv(tmp_path / "short.csv", rows=5, **{"mean radius": None})
    status, _, err = run(["predict", str(trained.model_dir), str(data), "-o", str(tmp_path / "p")])
    assert_one_line_error(status, err, r"mean radius")
    assert not (tmp_path / "p").exists()


def test_evaluate_without_label(trained: Trained, tmp_path: Path) -> None:
    data = wdbc_csv(tmp_path / "nolabel.csv", rows=5, diagnosis=None)
    status, _, err = run(
        ["evaluate", str(trained.model_dir), str(data), "--json", str(tmp_path / "m.json")]
    )
    assert_one_line_error(status, err, r"no label column 'diagnosis'")


def test_unwritable_output(trained: Trained, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    data = wdbc_csv(tmp_path / "new.csv", rows=5)
    status, _, err = run(
        ["predict", str(trained.model_dir), str(data), "-o", str(blocker / "p.csv")]
    )
    assert_one_line_error(status, err, r"cannot write .*choose a writable output path")


def test_usage_errors_exit_2() -> None:
    assert run(["train", "sample:wdbc"])[0] == 2
    assert run(["train", "sample:wdbc", "-o", "m", "--model", "xgboost"])[0] == 2
    assert run(["train", "sample:wdbc", "-o", "m", "--test-size", "1.5"])[0] == 2
    assert run([])[0] == 2
    assert run(["--version"])[0] == 0


def test_progress_line_is_sparse_off_a_terminal() -> None:
    stream = io.StringIO()
    progress = _ProgressLine(stream)
    for i in range(101):
        progress(i / 100, f"step {i}")
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[0] == "[  0%] step 0" and lines[-1] == "[100%] step 100"


def test_progress_line_rewrites_one_line_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = _ProgressLine(stream)
    progress(0.5, "fold 2 of 4")
    progress(1.0, "done")
    progress.finish()
    text = stream.getvalue()
    assert "\n" not in text
    assert text.count("\r") == 4
    assert text.endswith(" \r")


def _subprocess(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDIMG_HOME": str(home)}
    env.pop("MEDIMG_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "medimg_core", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_module_entry_point_exit_status(tmp_path: Path) -> None:
    bad = _subprocess(["evaluate", str(tmp_path), "sample:wdbc", "--json", "x.json"], tmp_path)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("medimg: error: ")
    assert "is not a medimg model directory" in bad.stderr


IMAGE_FAST = ["--model", "logreg", "--cv", "3", "--n-boot", "50", "--workers", "1"]


def texture(kind: str, seed: int, size: int = 16) -> np.ndarray:
    """Smooth blocky shading ("normal") or fine-grained speckle ("pneumonia")."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(90, 160)
    if kind == "normal":
        values = level + np.kron(rng.normal(0, 25, (size // 4, size // 4)), np.ones((4, 4)))
    else:
        values = level + rng.normal(0, 35, (size, size))
    return np.clip(values, 0, 255).astype(np.uint8)


def image_folder(root: Path, n: int = 12, seed: int = 0) -> Path:
    from PIL import Image

    for k, kind in enumerate(("normal", "pneumonia")):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(texture(kind, seed + 100 * k + i)).save(root / kind / f"{kind}_{i}.png")
    return root


@dataclass(frozen=True)
class ImageModel:
    home: Path
    images: Path
    model_dir: Path
    status: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageModel]:
    base = tmp_path_factory.mktemp("cli-images")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDIMG_HOME", str(base / "ws"))
        mp.delenv("MEDIMG_DATABASE_URL", raising=False)
        images = image_folder(base / "images")
        model_dir = base / "models" / "textures"
        status, out, err = run(["train", str(images), *IMAGE_FAST, "-o", str(model_dir)])
        yield ImageModel(base / "ws", images, model_dir, status, out, err)


@pytest.fixture
def image_home(image_model: ImageModel, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIMG_HOME", str(image_model.home))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    return image_model.home


def test_features_writes_parquet_with_settings(tmp_path: Path, image_home: Path) -> None:
    from medimg_core.imaging.features import read_feature_settings

    images = image_folder(tmp_path / "images", n=3)
    out = tmp_path / "features.parquet"
    status, stdout, err = run(["features", str(images), "-o", str(out), "--workers", "1"])
    assert status == 0, err
    settings = read_feature_settings(out)
    assert settings is not None and settings["size"] == [16, 16]
    frame = pd.read_parquet(out)
    assert len(frame) == 6
    assert {"file", "label", "glcm_contrast"} <= set(frame.columns)
    assert "Extracted 66 features from 6 images" in stdout
    assert "[100%] Extracted features from 6 of 6 images" in err
    assert "medimg: One sub-folder per class: normal, pneumonia." in err


def test_features_with_size_and_a_left_out_file(tmp_path: Path, image_home: Path) -> None:
    images = image_folder(tmp_path / "images", n=3)
    good = (images / "normal" / "normal_0.png").read_bytes()
    (images / "normal" / "broken.png").write_bytes(good[:40])
    out = tmp_path / "features.parquet"
    status, _, err = run(["features", str(images), "-o", str(out), "--size", "24"])
    assert status == 0, err
    assert "medimg: left out normal/broken.png: not an image medimg can read" in err
    assert "Images resized to 24×24 (as requested)." in err
    assert len(pd.read_parquet(out)) == 6


def test_train_on_an_image_folder(image_model: ImageModel) -> None:
    assert image_model.status == 0, image_model.stderr
    assert f"Data: {image_model.images.name}" in image_model.stdout
    assert "Positive class: pneumonia" in image_model.stdout
    card = load_model(image_model.model_dir).card
    assert card["features"]["image_settings"]["size"] == [16, 16]
    assert card["features"]["descriptions"]["intensity_mean"].startswith("average brightness")
    assert card["roles"]["label"] == "label"
    assert "file" in card["roles"]["exclude"]
    assert "file" not in card["features"]["feature_columns"]
    assert "no patient_id: splits are by image" in image_model.stderr


def test_predict_images_with_reasons(image_model: ImageModel, tmp_path: Path) -> None:
    new = image_folder(tmp_path / "new", n=2, seed=700)
    out = tmp_path / "pred.csv"
    status, stdout, err = run(
        [
            *("predict", str(image_model.model_dir), str(new), "-o", str(out)),
            *("--explain", "2", "--workers", "1"),
        ]
    )
    assert status == 0, err
    frame = pd.read_csv(out)
    assert list(frame.columns) == [
        "run_id",
        "model_sha256",
        "threshold",
        "positive_class",
        "file",
        "p_pneumonia",
        "decision",
        "Prediction set (90%)",
        "ood_range",
        "ood_features",
        "ood_distance",
        "ood_flag",
        "reason_1",
        "reason_2",
    ]
    assert sorted(frame["file"]) == [
        "normal/normal_0.png",
        "normal/normal_1.png",
        "pneumonia/pneumonia_0.png",
        "pneumonia/pneumonia_1.png",
    ]
    assert frame["reason_2"].str.contains(" = ").all()
    assert "Wrote 4 prediction(s)" in stdout


def test_evaluate_images(image_model: ImageModel, tmp_path: Path) -> None:
    new = image_folder(tmp_path / "new", n=4, seed=900)
    out = tmp_path / "metrics.json"
    status, stdout, err = run(
        [
            *("evaluate", str(image_model.model_dir), str(new), "--json", str(out)),
            *("--n-boot", "50", "--workers", "1"),
        ]
    )
    assert status == 0, err
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["n"] == 8
    assert payload["metrics"]["roc_auc"]["value"] >= 0.75
    assert "External validation" in stdout


def test_evaluate_unlabelled_images(image_model: ImageModel, tmp_path: Path) -> None:
    new = image_folder(tmp_path / "new", n=2)
    status, _, err = run(
        ["evaluate", str(image_model.model_dir), str(new / "normal"), "--json", "m.json"]
    )
    assert_one_line_error(status, err, r"'normal' has no labels, which external validation needs")


def test_train_from_a_features_parquet_keeps_the_settings(
    tmp_path: Path, image_model: ImageModel, image_home: Path
) -> None:
    out = tmp_path / "features.parquet"
    assert run(["features", str(image_model.images), "-o", str(out), "--workers", "1"])[0] == 0
    model_dir = tmp_path / "from-parquet"
    status, _, err = run(["train", str(out), *IMAGE_FAST[:-2], "-o", str(model_dir)])
    assert status == 0, err
    card = load_model(model_dir).card
    assert card["features"]["image_settings"]["size"] == [16, 16]
    assert "holds image features written by `medimg features`" in err
    new = image_folder(tmp_path / "new", n=1, seed=300)
    status, _, err = run(["predict", str(model_dir), str(new), "-o", str(tmp_path / "p.csv")])
    assert status == 0, err


def test_train_on_medmnist_npz_uses_its_test_split(tmp_path: Path, image_home: Path) -> None:
    arrays = {}
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        kinds = ["normal" if i % 2 == 0 else "pneumonia" for i in range(n)]
        arrays[f"{split}_images"] = np.stack(
            [texture(k, 1000 * len(split) + i) for i, k in enumerate(kinds)]
        )
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    path = tmp_path / "tiny.npz"
    np.savez(path, **arrays)
    model_dir = tmp_path / "npz-model"
    # Codes 0/1 of an unrecognised file: the positive class must be named.
    status, _, err = run(["train", str(path), *IMAGE_FAST, "-o", str(model_dir)])
    assert status == 2 and "--positive VALUE" in err
    status, stdout, err = run(
        ["train", str(path), *IMAGE_FAST, "--positive", "1", "-o", str(model_dir)]
    )
    assert status == 0, err
    assert "using the data's own split: 8 'test' rows held out" in err
    card = load_model(model_dir).card
    assert card["validation"]["n_test"] == 8
    assert card["validation"]["settings"]["predefined_test"] is True
    # The summary and the card name the file's own split, not a share held out at random.
    assert card["validation"]["test_split_text"] == "MedMNIST's own test split, 8 images"
    assert "Test set: MedMNIST's own test split, 8 images" in stdout
    assert "held out at random" not in stdout
    assert "Positive class: 1" in stdout
    # Named as PneumoniaMNIST, the published names are used and pneumonia is positive.
    named = tmp_path / "pneumoniamnist.npz"
    named.write_bytes(path.read_bytes())
    status, stdout, err = run(["train", str(named), *IMAGE_FAST, "-o", str(tmp_path / "pn")])
    assert status == 0, err
    assert "recognised PneumoniaMNIST: using its published class names" in err
    assert "Positive class: pneumonia (code 1)" in stdout
    assert "sensitivity for pneumonia" in stdout
    assert load_model(tmp_path / "pn").card["roles"]["class_names"] == {
        "0": "normal",
        "1": "pneumonia",
    }


def test_npz_pair_identical_across_its_split_is_kept_and_reported(
    tmp_path: Path, image_home: Path
) -> None:
    arrays = {}
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        kinds = ["normal" if i % 2 == 0 else "pneumonia" for i in range(n)]
        arrays[f"{split}_images"] = np.stack(
            [texture(k, 1000 * len(split) + i) for i, k in enumerate(kinds)]
        )
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    # Like BreastMNIST: a test image is a pixel copy of a training image, other label.
    arrays["test_images"][0] = arrays["train_images"][1]
    assert arrays["test_labels"][0, 0] != arrays["train_labels"][1, 0]
    path = tmp_path / "leaky.npz"
    np.savez(path, **arrays)
    model_dir = tmp_path / "leaky-model"
    status, stdout, err = run(
        ["train", str(path), *IMAGE_FAST, "--positive", "1", "-o", str(model_dir)]
    )
    assert status == 0, err
    card = load_model(model_dir).card
    # Both copies stay: the file's own test set keeps its 8 images.
    assert card["validation"]["n_test"] == 8
    assert card["cleaning"]["rows_removed"] == 0
    assert card["cleaning"]["identical_across_split"] == {"pairs": 1, "opposite_label": 1}
    assert card["validation"]["identical_rows_across_splits"] == 1
    assert card["validation"]["identical_rows_across_splits_opposite_label"] == 1
    assert (
        "1 test row(s) identical to a development row of the file's own split "
        "(1 with the opposite label), kept" in stdout
    )
    assert "(1 of them with the opposite label" in stdout


def test_table_model_refuses_images(trained: Trained, tmp_path: Path) -> None:
    images = image_folder(tmp_path / "images", n=1)
    status, _, err = run(["predict", str(trained.model_dir), str(images), "-o", "p.csv"])
    assert_one_line_error(
        status,
        err,
        r"trained on a table, not images: pass a table .* with the columns 'mean radius'",
    )


def test_image_options_on_a_table(tmp_path: Path, home: Path) -> None:
    status, _, err = run(["train", "sample:wdbc", "--size", "32", "-o", str(tmp_path / "m")])
    assert_one_line_error(status, err, r"--size apply to image data, but .* is a table")


def test_zip_with_parent_paths_exits_2(tmp_path: Path, image_home: Path) -> None:
    import zipfile

    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("normal/a.png", b"x")
        zf.writestr("../../escape.png", b"x")
    status, _, err = run(["train", str(archive), "-o", str(tmp_path / "m")])
    assert_one_line_error(status, err, r"points outside the archive folder .*refusing to unpack")
    assert not (tmp_path / "escape.png").exists()


def test_single_class_folder_exits_2(tmp_path: Path, image_home: Path) -> None:
    images = image_folder(tmp_path / "images", n=2)
    for png in (images / "pneumonia").iterdir():
        png.unlink()
    (images / "pneumonia").rmdir()
    status, _, err = run(["train", str(images), "-o", str(tmp_path / "m")])
    assert_one_line_error(status, err, r"only one class, 'normal' \(2 images\)")


def test_no_readable_image_exits_2(tmp_path: Path, image_home: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "normal").mkdir(parents=True)
    (folder / "normal" / "a.txt").write_text("not an image", encoding="utf-8")
    status, _, err = run(["features", str(folder), "-o", str(tmp_path / "f.parquet")])
    assert_one_line_error(status, err, r"No readable image in 'docs'")


def test_dicom_without_pixels_exits_2(image_model: ImageModel, tmp_path: Path) -> None:
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    path = tmp_path / "report.dcm"
    ds.save_as(path)
    status, _, err = run(["predict", str(image_model.model_dir), str(path), "-o", "p.csv"])
    assert_one_line_error(status, err, r"report.dcm")
    assert "1CT1" not in err


def test_labels_naming_missing_files(tmp_path: Path, image_home: Path) -> None:
    images = image_folder(tmp_path / "images", n=3)
    rows = [
        {"file": p.relative_to(images).as_posix(), "label": p.parent.name}
        for p in sorted(images.rglob("*.png"))
    ]
    labels = tmp_path / "labels.csv"
    pd.DataFrame([*rows, {"file": "normal/gone.png", "label": "normal"}]).to_csv(labels)
    out = tmp_path / "f.parquet"
    status, _, err = run(["features", str(images), "--labels", str(labels), "-o", str(out)])
    assert status == 0, err
    assert (
        "1 labels-table row(s) name a file that is not in the set (left out): normal/gone.png"
        in err
    )


def _coded_wdbc(path: Path, rows: int = 160) -> Path:
    # The UCI Wisconsin original codes its class 2 = benign, 4 = malignant.
    frame = load_sample("wdbc").frame.sample(rows, random_state=0).reset_index(drop=True)
    frame["class"] = frame.pop("diagnosis").map({"benign": 2, "malignant": 4})
    frame.to_csv(path, index=False)
    return path


def test_train_refuses_numeric_codes_without_a_positive(tmp_path: Path, home: Path) -> None:
    data = _coded_wdbc(tmp_path / "coded.csv")
    status, _, err = run(["train", str(data), "--label", "class", *FAST, "-o", str(tmp_path / "m")])
    assert_one_line_error(
        status,
        err,
        r"holds the numeric codes 2 and 4.*--positive VALUE.*--class-names 2=NAME,4=NAME",
    )
    assert not (tmp_path / "m").exists()
    status, _, err = run(
        ["train", str(data), "--class-names", "2 benign", *FAST, "-o", str(tmp_path / "m")]
    )
    assert status == 2 and "code=name" in err


def test_class_names_name_every_display_and_travel_with_the_model(
    tmp_path: Path, home: Path
) -> None:
    data = _coded_wdbc(tmp_path / "coded.csv")
    model_dir = tmp_path / "named"
    status, out, err = run(
        [
            "train",
            str(data),
            "--label",
            "class",
            "--class-names",
            "2=benign, 4=malignant",
            "--positive",
            "malignant",
            *FAST,
            "-o",
            str(model_dir),
        ]
    )
    assert status == 0, err
    assert "Positive class: malignant (code 4); threshold" in out
    assert re.search(r"sensitivity for malignant\s+\d\.\d{3}", out)
    assert "NPV for malignant" in out
    loaded = load_model(model_dir)
    assert loaded.model.positive_class == 4
    assert loaded.card["roles"]["class_names"] == {"2": "benign", "4": "malignant"}
    assert loaded.model.roles.class_names == (("2", "benign"), ("4", "malignant"))
    predictions = tmp_path / "p.csv"
    status, _, err = run(["predict", str(model_dir), str(data), "-o", str(predictions)])
    assert status == 0, err
    table = pd.read_csv(predictions)
    assert "p_malignant" in table.columns
    assert set(table["decision"]) <= {"benign", "malignant"}
    # Without --positive, the class names alone say which is the disease.
    status, out, err = run(
        [
            "train",
            str(data),
            "--class-names",
            "2=benign,4=malignant",
            *FAST,
            "-o",
            str(tmp_path / "n"),
        ]
    )
    assert status == 0, err
    assert "Positive class: malignant (code 4)" in out
    assert "its class name reads as the disease (class names: 2 = benign, 4 = malignant)" in out


def test_a_patient_number_column_is_refused_as_a_feature(tmp_path: Path, home: Path) -> None:
    # As in the UCI Wisconsin original's "Sample code number": not proposed as the ID.
    frame = load_sample("wdbc").frame.head(120).copy()
    frame.insert(0, "sample_code_number", np.arange(40_001, 40_121))
    frame.to_csv(tmp_path / "numbered.csv", index=False)
    status, _, err = run(
        ["train", str(tmp_path / "numbered.csv"), *FAST, "-o", str(tmp_path / "m")]
    )
    assert_one_line_error(
        status,
        err,
        r"'sample_code_number'.*patient or record numbers.*--keep-feature sample_code_number",
    )
    model_dir = tmp_path / "kept"
    status, _, err = run(
        [
            "train",
            str(tmp_path / "numbered.csv"),
            "--keep-feature",
            "sample_code_number",
            *FAST,
            "-o",
            str(model_dir),
        ]
    )
    assert status == 0, err
    model = load_model(model_dir).model
    assert "sample_code_number" in model.feature_columns
    assert model.roles.keep_as_feature == ("sample_code_number",)


# --- Predict: out-of-distribution flags, abstention, stamped CSV; train --reader ------------


def test_predict_csv_is_stamped_flags_unusual_cases_and_abstains(
    trained: Trained, home: Path, tmp_path: Path
) -> None:
    frame = load_sample("wdbc").frame.head(10).drop(columns=["diagnosis"]).copy()
    frame.loc[frame.index[2], "worst area"] = 100_000.0
    frame.to_csv(tmp_path / "new.csv", index=False)
    target = tmp_path / "pred.csv"
    status, out, err = run(
        [
            "predict",
            str(trained.model_dir),
            str(tmp_path / "new.csv"),
            "-o",
            str(target),
            "--abstain-ood",
        ]
    )
    assert status == 0, err
    written = pd.read_csv(target)
    with Registry() as registry:
        run_ids = [
            r.id for r in registry.list_runs(SINGLE_USER) if r.model_dir == trained.model_dir
        ]
    card = json.loads((trained.model_dir / "card.json").read_text())
    assert written["run_id"].unique().tolist() == run_ids[:1] and run_ids
    assert written["model_sha256"].unique().tolist() == [card["model_sha256"]]
    assert written["threshold"].unique().tolist() == [pytest.approx(card["threshold"]["value"])]
    assert written["positive_class"].unique().tolist() == ["malignant"]
    assert written["ood_flag"].iloc[2] and written["ood_range"].iloc[2]
    assert "worst area" in written["ood_features"].iloc[2]
    assert written["decision"].iloc[2] == "abstained"
    assert written["abstain_reason"].iloc[2].startswith("no decision — refer to a reader")
    assert "of 10 cases are unlike the training data" in out
    assert "cases got no decision and should be referred to a reader" in out


def test_predict_refuses_a_band_without_the_threshold(trained: Trained, tmp_path: Path) -> None:
    data = wdbc_csv(tmp_path / "new.csv", rows=5, diagnosis=None)
    status, _, err = run(
        [
            "predict",
            str(trained.model_dir),
            str(data),
            "-o",
            str(tmp_path / "p.csv"),
            "--abstain-band",
            "0.98,0.99",
        ]
    )
    assert status == 2 and "must contain the threshold" in err
    status, _, err = run(
        [
            "predict",
            str(trained.model_dir),
            str(data),
            "-o",
            str(tmp_path / "p.csv"),
            "--abstain-band",
            "0.6",
        ]
    )
    assert status == 2 and "LOW,HIGH" in err


def test_train_reports_performance_with_and_without_the_reader(tmp_path: Path, home: Path) -> None:
    rng = np.random.default_rng(3)
    n = 300
    malignant = rng.random(n) < 0.4
    frame = pd.DataFrame(
        {
            "patient": [f"P{i:04d}" for i in range(n)],
            "birads": np.clip(np.round(3 + 1.5 * malignant + rng.normal(0, 0.7, n)), 1, 5),
            "age": np.round(55 + 6 * malignant + rng.normal(0, 11, n)),
            "severity": np.where(malignant, "malignant", "benign"),
        }
    )
    frame.to_csv(tmp_path / "mammo.csv", index=False)
    model_dir = tmp_path / "m"
    args = ["train", str(tmp_path / "mammo.csv"), "--label", "severity", "--id", "patient"]
    args += ["--positive", "malignant", *FAST, "-o", str(model_dir)]
    status, out, err = run([*args, "--reader", "birads"])
    assert status == 0, err
    assert "With and without birads (a reader's assessment)" in out
    header = next(line for line in out.splitlines() if "without birads (CV)" in line)
    assert "with birads (CV)" in header and "without birads (test)" in header
    card = json.loads((model_dir / "card.json").read_text())
    assert card["roles"]["reader"] == ["birads"]
    assert "birads" in card["features"]["feature_columns"]
    assert (
        card["without_reader"]["cv"]["roc_auc"]["value"] < card["metrics"]["cv"]["roc_auc"]["value"]
    )
    status, _, err = run([*args, "--reader", "severity"])
    assert status == 2 and "not a model feature" in err


def test_train_summary_names_the_selection_free_auc() -> None:
    import dataclasses

    from medimg_core import cli
    from medimg_core.modelling.evaluation import MetricValue
    from tests.unit.store.test_persistence import make_result

    base = make_result()
    row = dataclasses.replace(base.leaderboard[0], note="ranked as a lighter forest (100 trees)")
    result = dataclasses.replace(
        base, leaderboard=(row,), selection_free=MetricValue(0.912, (0.85, 0.96))
    )
    text = cli._train_summary(result, None, "wdbc", "youden", Path("m"), "run1")
    assert "Selection-free CV ROC AUC of auto: 0.912 (0.850–0.960)" in text
    assert "optimistic" in text
    assert "(ranked as a lighter forest (100 trees))" in text
    plain = cli._train_summary(base, None, "wdbc", "youden", Path("m"), "run1")
    assert "Selection-free" not in plain
    assert "Intervals not from the bootstrap" not in plain
    exact = MetricValue(1.0, (0.916, 1.0), method="Clopper-Pearson exact (42 patients)")
    cv = dataclasses.replace(base.cv, metrics={**base.cv.metrics, "sensitivity": exact})
    noted = cli._train_summary(
        dataclasses.replace(base, cv=cv), None, "wdbc", "youden", Path("m"), "run1"
    )
    assert "sensitivity (cross-validated): Clopper-Pearson exact (42 patients)" in noted


def test_train_warns_about_near_identical_rows_before_fitting(home: Path, tmp_path: Path) -> None:
    frame = load_sample("wdbc").frame.drop(columns=["case_id"]).head(150)
    twice = frame.head(20).copy()
    twice["mean radius"] *= 1.00001
    path = tmp_path / "twice.csv"
    pd.concat([frame, twice], ignore_index=True).to_csv(path, index=False)
    status, out, err = run(["train", str(path), *FAST, "-o", str(tmp_path / "m")])
    assert status == 0, err
    warning = next(line for line in err.splitlines() if "near-identical" in line)
    assert warning.startswith("medimg: warning: 20 row(s) are near-identical")
    # Said before the first model is fitted, not only in the summary afterwards.
    assert err.index(warning) < err.index("fold 1")
    assert "20 row(s) are near-identical" in out.split("Warnings:")[1]
