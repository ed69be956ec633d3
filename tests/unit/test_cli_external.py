"""`medimg evaluate` records the evaluation in the run's history (with feature shift),
`--recalibrate` saves a recalibrated version as a new run, `medimg runs --show` lists them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from medimg_core.access import SINGLE_USER
from medimg_core.store.persistence import load_model
from medimg_core.store.registry import Registry
from medimg_core.tables.loading import load_sample
from tests.unit.test_cli import FAST, run


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    model_dir = tmp_path / "models" / "wdbc"
    status, _, err = run(["train", "sample:wdbc", *FAST, "-o", str(model_dir)])
    assert status == 0, err
    return model_dir


def test_evaluate_records_and_recalibrates(trained: Path, tmp_path: Path) -> None:
    frame = load_sample("wdbc").frame.sample(150, random_state=5).reset_index(drop=True)
    frame["mean texture"] = frame["mean texture"] + 6.0  # another scanner's texture scale
    frame.to_csv(tmp_path / "site-b.csv", index=False)
    target = tmp_path / "m.json"
    argv = ["evaluate", str(trained), str(tmp_path / "site-b.csv"), "--json", str(target)]
    status, out, err = run([*argv, "--n-boot", "50", "--recalibrate"])
    assert status == 0, err
    recorded = re.search(r"Recorded as evaluation (\S+) of run (\S+) ", out)
    assert recorded is not None, out
    evaluation_id, run_id = recorded.groups()
    assert "Feature shift vs development" in out
    assert re.search(r"\n  mean texture: notable shift, higher in the new data", out)
    assert "Saved a recalibrated version as run" in out
    assert "optimistic" in out
    payload = json.loads(target.read_text())
    assert payload["evaluation_id"] == evaluation_id
    assert payload["shift"][0]["feature"] == "mean texture"
    new_run = payload["recalibrated_run"]["run_id"]
    with Registry() as registry:
        (record,) = registry.list_evaluations(SINGLE_USER, run_id)
        child = registry.get_run(SINGLE_USER, new_run)
    assert record.id == evaluation_id and record.n == 150
    assert record.dataset_name == "site-b.csv"
    assert record.result["shift"][0]["feature"] == "mean texture"
    recalibration = load_model(payload["recalibrated_run"]["model_dir"]).model.recalibration
    assert recalibration is not None
    assert record.result["recalibration"]["slope"] == pytest.approx(recalibration.slope)
    assert record.recalibrated_run_id == new_run
    assert child.card["recalibrated_from"] == run_id

    status, shown, err = run(["runs", "--show", run_id])
    assert status == 0, err
    assert "External evaluations (1)" in shown
    auc = record.result["metrics"]["roc_auc"]
    line = next(x for x in shown.splitlines() if x.startswith(evaluation_id))
    assert "site-b.csv" in line and " 150 " in line and new_run in line
    assert f"{auc['value']:.3f} ({auc['ci95'][0]:.3f}–{auc['ci95'][1]:.3f})" in line
    slope = record.result["calibration"]["slope"]
    assert f"{slope:.2f}".replace("-", "−") in line

    status, shown, err = run(["runs", "--show", new_run])
    assert status == 0, err
    assert f"Recalibrated version of run {run_id}" in shown
    assert "site-b.csv" in shown


def test_runs_show_unknown_run_is_one_clear_error(trained: Path) -> None:
    status, _, err = run(["runs", "--show", "nope"])
    assert status == 2
    assert "no such run" in err and "Traceback" not in err
