"""External validation recorded in the registry, feature shift against the run's cases, and a
recalibrated version saved as a new run (card round trip through save/load, skops included)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit

from medimg_core.access import SINGLE_USER
from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.calibration import Recalibration
from medimg_core.modelling.explain import ModelExplainer
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.prediction import predict
from medimg_core.modelling.training import train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.reporting.external import (
    OPTIMISM_NOTE,
    development_rows,
    evaluation_history,
    save_recalibrated_run,
    validate_external,
)
from medimg_core.store.cases import case_evaluations, load_cases
from medimg_core.store.persistence import load_model
from medimg_core.store.registry import Registry
from medimg_core.store.runs import save_run
from medimg_core.tables.cleaning import clean
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import propose_roles

RESULT_KEYS = {
    "metrics",
    "calibration",
    "shift",
    "threshold",
    "confusion",
    "class_names",
    "positive_class",
    "bootstrap_unit",
    "warnings",
    "decision_curve",
}


@pytest.fixture(scope="module")
def trained():  # type: ignore[no-untyped-def]
    frame = load_sample().frame
    roles = propose_roles(frame).to_roles()
    report = clean(frame, roles)
    validation = ValidationConfig(cv=3, n_boot=50)
    result = train(report.data, roles, config=ModelConfig(model="logreg"), validation=validation)
    return result, report, validation


@pytest.fixture
def run(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    result, report, validation = trained
    return save_run(
        SINGLE_USER,
        result,
        tmp_path / "models" / "wdbc",
        data=report.data,
        cleaning=report,
        dataset_name="sample:wdbc",
        validation=validation,
    )


def shifted_site(rows: int = 150) -> pd.DataFrame:
    """Another site: a sample of the cases with 'mean radius' measured 15% larger."""
    frame = load_sample().frame.sample(rows, random_state=3).reset_index(drop=True)
    frame["mean radius"] = frame["mean radius"] * 1.15
    return frame


def test_external_evaluation_is_recorded_with_shift(run) -> None:  # type: ignore[no-untyped-def]
    loaded = load_model(run.model_dir)
    site = shifted_site()
    done = validate_external(
        SINGLE_USER,
        loaded,
        site,
        dataset_name="site-b.csv",
        dataset_hash="abc123",
        client="local",
        run_id=run.run_id,
        n_boot=50,
    )
    assert done.evaluation_id is not None
    with Registry() as registry:
        (record,) = registry.list_evaluations(SINGLE_USER, run.run_id)
    assert record.id == done.evaluation_id
    assert record.dataset_name == "site-b.csv" and record.n == 150
    assert set(record.result) >= RESULT_KEYS
    assert record.result["positive_class"] == "malignant"
    assert record.result["decision_curve"]["partition"] == "external"
    # The largest shift first, and its SMD is the hand computation on the run's own cases.
    top = record.result["shift"][0]
    assert top["feature"] == "mean radius" and top["flag"] == "notable"
    rows = development_rows(run.model_dir)
    assert rows is not None
    dev = rows["mean radius"].to_numpy(dtype=float)
    new = site["mean radius"].to_numpy(dtype=float)
    pooled = np.sqrt((dev.var(ddof=1) + new.var(ddof=1)) / 2)
    assert top["smd"] == pytest.approx((new.mean() - dev.mean()) / pooled)
    assert any("mean radius" in w and "differ notably" in w for w in record.result["warnings"])
    (row,) = evaluation_history([record])
    auc = record.result["metrics"]["roc_auc"]
    assert row["ROC AUC (95% CI)"].startswith(f"{auc['value']:.3f} (")
    assert row["file"] == "site-b.csv" and row["cases"] == "150"
    notable = [s["feature"] for s in record.result["shift"] if s["flag"] == "notable"]
    assert row["notable shifts"].startswith(", ".join(notable[:3]))
    assert notable[0] == "mean radius" and row["recalibrated run"] == ""


def test_unrecorded_model_says_so(run) -> None:  # type: ignore[no-untyped-def]
    done = validate_external(
        SINGLE_USER,
        load_model(run.model_dir),
        shifted_site(60),
        dataset_name="x.csv",
        dataset_hash="h",
        client="local",
        run_id=None,
        n_boot=20,
    )
    assert done.record is None
    assert any("not recorded" in n for n in done.notes)


def test_recalibrated_version_is_a_new_run_that_round_trips(run) -> None:  # type: ignore[no-untyped-def]
    parent = load_model(run.model_dir)
    site = shifted_site()
    # Labels flipped for some benign cases: the model's probabilities are too low there.
    benign = site.index[site["diagnosis"] == "benign"][:25]
    site.loc[benign, "diagnosis"] = "malignant"
    done = validate_external(
        SINGLE_USER,
        parent,
        site,
        dataset_name="site-c.csv",
        dataset_hash="h2",
        client="local",
        run_id=run.run_id,
        n_boot=20,
        recalibrate=True,
    )
    assert done.result["recalibration"]["note"] == OPTIMISM_NOTE
    saved = save_recalibrated_run(
        SINGLE_USER,
        parent,
        done.evaluation,
        dataset_name="site-c.csv",
        client="local",
        parent_run_id=run.run_id,
        evaluation_id=done.evaluation_id,
    )
    recal = saved.recalibration
    assert recal.intercept == pytest.approx(done.result["recalibration"]["intercept"])
    assert recal.slope > 0 and recal.n_development == 150
    # Loaded back (model.skops checksum verified, card parsed): the same recalibration.
    child = load_model(saved.model_dir)
    assert child.model.recalibration == recal
    assert child.card["recalibrated_from"] == run.run_id
    assert "site-c.csv" in child.card["recalibration"]["fitted_on"]
    assert child.card["model_sha256"] == parent.card["model_sha256"]
    # Threshold mapped through the recalibration: the same cases are called positive.
    assert child.model.threshold == pytest.approx(
        float(expit(recal.intercept + recal.slope * logit(parent.model.threshold)))
    )
    p_parent = parent.model.predict_proba(site)[:, 1]
    p_child = child.model.predict_proba(site)[:, 1]
    np.testing.assert_allclose(p_child, recal.apply(p_parent), rtol=1e-12)
    np.testing.assert_array_equal(
        parent.model.predict_labels(site), child.model.predict_labels(site)
    )
    # The batch path (predict) applies it too.
    scored = predict(child.model, site.drop(columns=["diagnosis"]))
    np.testing.assert_allclose(scored.frame["p_malignant"], p_child, rtol=1e-12)
    assert scored.threshold == pytest.approx(child.model.threshold)
    # Its stored cases are the parent's, with recalibrated probabilities; AUC unchanged.
    parent_cases, child_cases = load_cases(run.model_dir), load_cases(saved.model_dir)
    assert list(child_cases.index) == list(parent_cases.index)
    np.testing.assert_allclose(
        child_cases["p_positive"], recal.apply(parent_cases["p_positive"]), rtol=1e-12
    )
    cv_parent, _ = case_evaluations(parent.model, parent_cases, n_boot=0)
    cv_child, _ = case_evaluations(child.model, child_cases, n_boot=0)
    assert cv_child.metrics["roc_auc"].value == pytest.approx(cv_parent.metrics["roc_auc"].value)
    assert cv_child.metrics["sensitivity"].value == pytest.approx(
        cv_parent.metrics["sensitivity"].value
    )
    on_disk = json.loads((saved.model_dir / "card.json").read_text())
    assert on_disk["metrics"]["cv"]["roc_auc"]["value"] == pytest.approx(
        cv_parent.metrics["roc_auc"].value
    )
    # Registry: a new run, and the evaluation points at it.
    with Registry() as registry:
        runs = {r.id: r for r in registry.list_runs(SINGLE_USER)}
        (record,) = registry.list_evaluations(SINGLE_USER, run.run_id)
    assert saved.run_id in runs and saved.run_id != run.run_id
    assert runs[saved.run_id].card["recalibrated_from"] == run.run_id
    assert runs[saved.run_id].threshold == pytest.approx(child.model.threshold)
    assert record.recalibrated_run_id == saved.run_id
    assert evaluation_history([record])[0]["recalibrated run"] == saved.run_id
    # Explanations are of the model before recalibration, and say so.
    explainer = ModelExplainer(child.model, site.drop(columns=["diagnosis"]).head(40))
    assert "explanation is of the model before recalibration" in explainer.note
    assert "before recalibration" not in ModelExplainer(parent.model, site.head(40)).note
    # A recalibrated version is not recalibrated again.
    with pytest.raises(ConfigError, match="already a recalibrated version"):
        save_recalibrated_run(
            SINGLE_USER,
            child,
            done.evaluation,
            dataset_name="site-c.csv",
            client="local",
            parent_run_id=saved.run_id,
        )


def test_model_without_recalibration_is_unchanged_and_slope_must_be_positive(  # type: ignore[no-untyped-def]
    run,
) -> None:
    parent = load_model(run.model_dir)
    site = shifted_site(80)
    raw = parent.model.pipeline.predict_proba(parent.model.prepare_features(site))
    np.testing.assert_allclose(parent.model.predict_proba(site), raw)
    identity = Recalibration(intercept=0.0, slope=1.0, n_development=1)
    from dataclasses import replace

    same = replace(parent.model, recalibration=identity)
    # The identity recalibration changes nothing beyond its clipping to [1e-6, 1 − 1e-6].
    np.testing.assert_allclose(same.predict_proba(site), raw, atol=1e-6)
    # Labels reversed: higher probabilities mean fewer positives; recalibration is refused.
    flipped = site.copy()
    flipped["diagnosis"] = flipped["diagnosis"].map({"malignant": "benign", "benign": "malignant"})
    done = validate_external(
        SINGLE_USER,
        parent,
        flipped,
        dataset_name="flipped.csv",
        dataset_hash="h3",
        client="local",
        run_id=None,
        n_boot=20,
    )
    with pytest.raises(DataError, match="recalibration cannot repair"):
        save_recalibrated_run(
            SINGLE_USER,
            parent,
            done.evaluation,
            dataset_name="flipped.csv",
            client="local",
            parent_run_id=None,
        )
    assert not any(p.name.startswith("wdbc-recalibrated") for p in run.model_dir.parent.iterdir())
