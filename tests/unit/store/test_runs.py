"""save_run: the model directory holds model, card and cases, and the run is recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from medimg_core.access import SINGLE_USER
from medimg_core.errors import RegistryError
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.privacy import pseudonym_key, pseudonymise_ids
from medimg_core.store.cases import load_cases
from medimg_core.store.persistence import load_model
from medimg_core.store.registry import Registry
from medimg_core.store.runs import save_run
from medimg_core.tables.cleaning import clean
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import propose_roles


@pytest.fixture(scope="module")
def trained():  # type: ignore[no-untyped-def]
    frame = load_sample().frame
    roles = propose_roles(frame).to_roles()
    report = clean(frame, roles)
    validation = ValidationConfig(cv=3, n_boot=50)
    result = train(report.data, roles, config=ModelConfig(model="logreg"), validation=validation)
    return result, report, validation


def test_save_run_writes_everything_and_records(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    result, report, validation = trained
    saved = save_run(
        SINGLE_USER,
        result,
        tmp_path / "model",
        data=report.data,
        cleaning=report,
        dataset_name="sample:wdbc",
        validation=validation,
    )
    assert {p.name for p in saved.model_dir.iterdir()} >= {
        "model.skops",
        "card.json",
        "cases.parquet",
    }
    assert len(load_cases(saved.model_dir)) == report.n_kept
    assert load_model(saved.model_dir).card["model_sha256"] == saved.card["model_sha256"]
    with Registry() as registry:
        assert [r.id for r in registry.list_runs(SINGLE_USER)] == [saved.run_id]


def test_registry_failure_is_strict_on_request(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDIMG_DATABASE_URL", "sqlite:////nonexistent-dir/x/registry.db")
    result, report, _ = trained
    kwargs = {"data": report.data, "cleaning": report, "dataset_name": "s"}
    with pytest.raises(RegistryError, match="the model was saved to"):
        save_run(SINGLE_USER, result, tmp_path / "strict", **kwargs)
    soft = save_run(SINGLE_USER, result, tmp_path / "soft", strict_registry=False, **kwargs)
    assert soft.run_id is None
    assert any("not recorded" in w for w in soft.warnings)
    assert (soft.model_dir / "model.skops").exists()


@pytest.mark.parametrize("kind", ["logreg", "rf"])
def test_card_top_features_are_the_explain_page_ranking(
    trained, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medimg_core.modelling.explain import development_explainer, development_explanation

    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    _, report, validation = trained
    result = train(
        report.data,
        propose_roles(report.data).to_roles(),
        config=ModelConfig(model=kind),  # type: ignore[arg-type]
        validation=validation,
    )
    saved = save_run(
        SINGLE_USER,
        result,
        tmp_path / "model",
        data=report.data,
        cleaning=report,
        dataset_name="sample:wdbc",
    )
    # What the Explain page computes for the saved run: its development cases, read back.
    cases = load_cases(saved.model_dir)
    development = cases[cases["partition"] == "development"]
    page = development_explanation(development_explainer(result.model, development), development)
    ranking = page.global_importance().head(len(saved.card["top_features"]))
    assert [t["feature"] for t in saved.card["top_features"]] == list(ranking.index)
    assert [t["importance"] for t in saved.card["top_features"]] == pytest.approx(
        list(ranking.to_numpy()), abs=1e-6
    )
    unit = "log-odds" if kind == "logreg" else "probability"
    assert (
        f"mean |SHAP value| in {unit} of {result.model.positive_class}"
        in (saved.card["top_features_measure"])
    )
    assert "same ranking as the Explain page" in saved.card["top_features_note"]


def test_saved_cases_and_stored_data_hold_pseudonyms_not_patient_ids(
    trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    result, report, validation = trained
    id_column = result.model.roles.id
    assert id_column is not None
    saved = save_run(
        SINGLE_USER,
        result,
        tmp_path / "model",
        data=report.data,
        cleaning=report,
        dataset_name="sample:wdbc",
        validation=validation,
    )
    key = pseudonym_key()
    raw_ids = report.data[id_column]
    on_disk = load_cases(saved.model_dir)[id_column]
    assert not set(on_disk) & set(raw_ids)
    assert set(on_disk) == set(pseudonymise_ids(raw_ids, key))
    with Registry() as registry:
        record = registry.get_run(SINGLE_USER, str(saved.run_id))
        stored = registry.load_dataset(SINGLE_USER, record.stored_dataset_hash)
    assert set(stored[id_column]) == set(on_disk)
    assert set(stored.columns) == {
        id_column,
        result.model.roles.label,
        *result.model.feature_columns,
    }
