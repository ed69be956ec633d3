"""Site and subgroup columns in the stored cases, the registry's table and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medimg_core.access import SINGLE_USER
from medimg_core.modelling.subgroups import leave_one_site_out, subgroup_metrics
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.reporting.summaries import stored_data_text
from medimg_core.store.cases import build_cases, load_cases
from medimg_core.store.persistence import CARD_NAME
from medimg_core.store.registry import Registry, reproducible_table
from medimg_core.store.runs import save_run
from medimg_core.tables.cleaning import CleaningPlan, clean
from tests.unit.modelling.test_subgroups import FAST, LOGREG, ROLES, sites_table


@pytest.fixture(scope="module")
def sites() -> pd.DataFrame:
    return clean(sites_table(60), ROLES, CleaningPlan(missing="impute")).data


@pytest.fixture(scope="module")
def trained(sites: pd.DataFrame) -> TrainingResult:
    return train(sites, ROLES, config=LOGREG, validation=FAST)


def test_cases_keep_site_and_subgroups_but_no_identifying_column(
    trained: TrainingResult, sites: pd.DataFrame
) -> None:
    cases = build_cases(trained, sites)
    assert {"site", "sex", "age"} <= set(cases.columns)
    assert "patient_name" not in cases.columns
    assert "site" not in trained.model.feature_columns


def test_reproducible_table_keeps_the_analysis_columns(
    trained: TrainingResult, sites: pd.DataFrame
) -> None:
    table, mapping = reproducible_table(trained.model, sites, key=b"k" * 32)
    assert "site" in table.columns and mapping["analysis"] == ["site"]
    assert "patient_name" not in table.columns and "patient_name" in mapping["left_out"]
    assert "sex" in mapping["features"] and "age" in mapping["features"]
    card = {"roles": trained.model.roles.to_dict(), "stored_dataset": mapping}
    assert "the site and subgroup column(s) site" in stored_data_text(card)


def test_saved_run_card_holds_subgroups_and_leave_one_site_out(
    trained: TrainingResult,
    sites: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDIMG_DATABASE_URL", raising=False)
    by_site = leave_one_site_out(sites, ROLES, LOGREG, FAST)
    saved = save_run(
        SINGLE_USER,
        trained,
        tmp_path / "model",
        data=sites,
        cleaning=None,
        dataset_name="sites.csv",
        validation=FAST,
        site_validation=by_site,
    )
    card = json.loads((saved.model_dir / CARD_NAME).read_text(encoding="utf-8"))
    assert list(card["subgroups"]) == ["site", "sex", "age"]
    # The card's figures are those the stored cases give again.
    cases = load_cases(saved.model_dir)
    again = subgroup_metrics(trained.model, cases, ["sex"], partition="test", n_boot=FAST.n_boot)
    stored = card["subgroups"]["sex"]["test"]
    assert [r["group"] for r in stored] == [r.group for r in again]
    for entry, row in zip(stored, again, strict=True):
        assert entry["n"] == row.n
        assert entry["metrics"]["roc_auc"] == row.metrics["roc_auc"].to_dict()
    loso = card["leave_one_site_out"]
    assert [r["group"] for r in loso["per_site"]] == ["Hospital A", "Hospital B", "Hospital C"]
    assert loso["pooled"]["roc_auc"] == by_site.pooled["roc_auc"].to_dict()  # type: ignore[index]
    with Registry() as registry:
        record = registry.get_run(SINGLE_USER, str(saved.run_id))
        table = registry.load_dataset(SINGLE_USER, record.stored_dataset_hash)
    assert "site" in table.columns and "patient_name" not in table.columns


def test_a_card_without_roles_for_groups_has_no_subgroups(
    trained: TrainingResult, sites: pd.DataFrame
) -> None:
    from medimg_core.store.persistence import build_card

    card = build_card(trained, cleaning=None, dataset_name="sites.csv")
    assert "subgroups" not in card and "leave_one_site_out" not in card
