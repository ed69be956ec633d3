"""The Evaluate page's subgroup helpers: card entries read back, older cards computed from cases."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medimg_core.modelling.subgroups import subgroup_card
from medimg_core.reporting.summaries import group_metrics_from_card, metric_from_card
from medimg_core.store.cases import build_cases
from medimg_core.store.persistence import build_card
from medimg_core.tables.cleaning import CleaningPlan, clean
from medimg_core.ui.session import ActiveModel
from medimg_core.ui.subgroups import subgroup_table, subgroups_from_card
from tests.unit.modelling.test_subgroups import FAST, LOGREG, ROLES, sites_table


def active_model() -> ActiveModel:
    from medimg_core.modelling.training import train

    data = clean(sites_table(60), ROLES, CleaningPlan(missing="impute")).data
    result = train(data, ROLES, config=LOGREG, validation=FAST)
    cases = build_cases(result, data)
    card = build_card(result, cleaning=None, dataset_name="sites.csv")  # no cases: no subgroups
    return ActiveModel(
        model=result.model, card=card, run_id=None, cv=result.cv, test=result.test, cases=cases
    )


def test_a_card_without_subgroups_is_computed_from_the_cases() -> None:
    active = active_model()
    assert "subgroups" not in active.card
    entry = subgroups_from_card(active)
    assert entry == subgroup_card(active.model, active.cases, n_boot=FAST.n_boot)
    assert active.cases is not None
    raw = active.cases.drop(columns=["partition"])
    assert (
        subgroups_from_card(ActiveModel(active.model, active.card, None, None, None, raw)) is None
    )


def test_table_rows_show_the_card_numbers() -> None:
    active = active_model()
    entry = subgroups_from_card(active)
    assert entry is not None
    rows = group_metrics_from_card([*entry["sex"]["cv"], *entry["sex"]["test"]])
    table = subgroup_table(rows, "malignant")
    assert list(table["Group"]) == [r.group for r in rows]
    assert list(table["malignant cases"]) == [r.n_positive for r in rows]
    first = entry["sex"]["cv"][0]["metrics"]["sensitivity"]
    shown = table["Sensitivity for malignant"].iloc[0]
    assert shown.startswith(f"{first['value']:.3f} ({first['ci95'][0]:.3f}–")
    assert isinstance(table, pd.DataFrame)


def test_card_entries_read_missing_numbers_as_nan() -> None:
    value = metric_from_card({"value": None, "ci95": [None, None]})
    assert np.isnan(value.value) and np.isnan(value.ci95[0])
    assert metric_from_card({"value": 0.8, "ci95": [0.7, 0.9], "method": "m"}).method == "m"
    assert np.isnan(metric_from_card(None).value)
