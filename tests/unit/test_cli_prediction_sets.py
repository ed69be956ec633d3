"""``medimg predict`` writes each case's prediction set (conformal, calibrated on the run's
development cases) in a ``Prediction set (90%)`` column, formula-safe, whole or in parts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from medimg_core.modelling.conformal import fit_conformal
from medimg_core.store.cases import CASES_NAME, load_cases
from medimg_core.store.persistence import load_model
from tests.unit.test_cli import Trained, run, trained, wdbc_csv

__all__ = ["trained"]  # the module-scoped model fixture of test_cli, trained once here


def test_predict_writes_the_prediction_set_column(trained: Trained, tmp_path: Path) -> None:
    ids = [f'=HYPERLINK("x{i}")' if i == 0 else f"C{i}" for i in range(30)]
    data = wdbc_csv(tmp_path / "new.csv", rows=30, case_id=ids, diagnosis=None)
    target = tmp_path / "pred.csv"
    status, out, err = run(["predict", str(trained.model_dir), str(data), "-o", str(target)])
    assert status == 0, err
    frame = pd.read_csv(target)
    columns = list(frame.columns)
    assert columns[columns.index("decision") + 1] == "Prediction set (90%)"
    # The same sets as the calibration computed directly from the stored cases.
    loaded = load_model(trained.model_dir)
    fitted = fit_conformal(loaded.model, load_cases(trained.model_dir), confidence=0.9)
    assert frame["Prediction set (90%)"].tolist() == fitted.set_texts(frame["p_malignant"])
    assert frame["case_id"].iloc[0].startswith("'=")  # still formula-safe
    assert "Prediction sets at 90% confidence: " in out

    status, out, err = run(
        [
            "predict",
            str(trained.model_dir),
            str(data),
            "-o",
            str(tmp_path / "p95.csv"),
            "--confidence",
            "0.95",
        ]
    )
    assert status == 0, err
    wider = pd.read_csv(tmp_path / "p95.csv")
    assert "Prediction set (95%)" in wider.columns and "Prediction set (90%)" not in wider
    assert wider["Prediction set (95%)"].tolist() == fitted.at(0.95).set_texts(wider["p_malignant"])


def test_predict_refuses_a_bad_confidence(trained: Trained, tmp_path: Path) -> None:
    data = wdbc_csv(tmp_path / "new.csv", rows=5, diagnosis=None)
    for bad in ("1", "0", "90", "high"):
        status, _, err = run(
            [
                "predict",
                str(trained.model_dir),
                str(data),
                "-o",
                str(tmp_path / "p.csv"),
                "--confidence",
                bad,
            ]
        )
        assert status == 2
        assert "Traceback" not in err
        assert "expected a confidence strictly between 0 and 1" in err
    assert not (tmp_path / "p.csv").exists()


def test_parts_carry_the_same_sets_and_a_model_without_cases_says_why(
    trained: Trained, tmp_path: Path
) -> None:
    data = wdbc_csv(tmp_path / "new.csv", rows=60, diagnosis=None)
    model = str(trained.model_dir)
    status, _, err = run(["predict", model, str(data), "-o", str(tmp_path / "one.csv")])
    assert status == 0, err
    status, out, err = run(
        ["predict", model, str(data), "-o", f"{tmp_path}/parts/", "--format", "csv"]
    )
    assert status == 0, err
    assert "Prediction sets at 90% confidence" in out
    (part,) = sorted((tmp_path / "parts").glob("part-*"))
    assert part.read_text(encoding="utf-8") == (tmp_path / "one.csv").read_text(encoding="utf-8")

    bare = tmp_path / "bare"
    shutil.copytree(trained.model_dir, bare)
    (bare / CASES_NAME).unlink()
    status, out, err = run(["predict", str(bare), str(data), "-o", str(tmp_path / "b.csv")])
    assert status == 0, err
    assert "no prediction-set column" in err
    assert not any(str(c).startswith("Prediction set") for c in pd.read_csv(tmp_path / "b.csv"))


def test_train_reports_the_coverage_next_to_the_target(trained: Trained) -> None:
    assert trained.status == 0, trained.stderr
    card = load_model(trained.model_dir).card
    for key, target in (("0.9", "90%"), ("0.95", "95%")):
        coverage = card["conformal"][key]["test_coverage"]
        assert f"Target {target}: on the " in trained.stdout
        assert f"in the set for {coverage:.1%}" in trained.stdout
    assert "Cross-conformal: coverage close to the target" in trained.stdout
