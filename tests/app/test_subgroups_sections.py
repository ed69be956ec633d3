"""The Train page's leave-one-site-out option and the Evaluate page's Subgroups and Sites sections."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import numpy as np
from streamlit.testing.v1 import AppTest

from medimg_core.modelling.evaluation import format_metric, metric_label
from medimg_core.reporting.summaries import group_metrics_from_card, metric_from_card
from medimg_core.ui import state
from medimg_core.ui.sites import LOSO_KEY

from .conftest import finish_training
from .test_evaluate_page import decoded

TRAIN = "pages/train.py"
EVALUATE = "pages/evaluate.py"
SITES = ("Hospital A", "Hospital B", "Hospital C")


def with_sites(at: AppTest, *, subgroups: tuple[str, ...] = ("mean radius",)) -> AppTest:
    """The sample's cleaned rows given a site column (three hospitals) and a subgroup column."""
    report = at.session_state[state.CLEANING]
    n = len(report.data)
    data = report.data.assign(site=[SITES[i % 3] for i in range(n)])
    at.session_state[state.CLEANING] = dataclasses.replace(report, data=data)
    roles = at.session_state[state.ROLES]
    at.session_state[state.ROLES] = dataclasses.replace(roles, site="site", subgroups=subgroups)
    return at.run()


def has_checkbox(at: AppTest, key: str) -> bool:
    return any(c.key == key for c in at.checkbox)


def test_the_option_is_shown_only_with_a_site(open_app: Callable[..., AppTest]) -> None:
    at = open_app(TRAIN)
    at.button(key="guard_sample_train").click().run()
    assert not at.exception
    assert not has_checkbox(at, LOSO_KEY)  # the sample has no site column
    at = with_sites(at)
    assert not at.exception
    assert at.checkbox(key=LOSO_KEY).label == "Also validate leave-one-site-out (3 sites in site)"
    at.checkbox(key=LOSO_KEY).check().run()
    assert any("deployed model is still the one trained" in c.value for c in at.caption)


def test_leave_one_site_out_from_train_is_shown_on_evaluate(
    open_app: Callable[..., AppTest],
) -> None:
    at = open_app(TRAIN)
    at.button(key="guard_sample_train").click().run()
    at = with_sites(at)
    at.checkbox(key=LOSO_KEY).check()
    at.selectbox(key="train_model").set_value("logreg")
    at.number_input(key="train_folds").set_value(3)
    at.select_slider(key="train_n_boot").set_value(200)
    at = finish_training(at.button(key="train_go").click().run())
    assert not at.exception and not at.error
    active = at.session_state[state.ACTIVE]
    card = active.card
    assert [r["group"] for r in card["leave_one_site_out"]["per_site"]] == list(SITES)
    assert list(card["subgroups"]) == ["site", "mean radius"]
    # The deployed model is the normally trained one (the sample's usual figures).
    assert active.cv.metrics["roc_auc"].value >= 0.99

    at.switch_page(EVALUATE).run()
    assert not at.exception
    headers = [s.value for s in at.subheader]
    assert "Subgroups" in headers and "Sites (leave-one-site-out)" in headers
    # The site table shows the card's numbers, CV rows then test rows.
    positive = "malignant"
    auc_label = metric_label("roc_auc", positive)
    # Group tables in order: by site, by mean radius, then the held-out sites.
    tables = [d.value for d in at.dataframe if "Group" in getattr(d.value, "columns", ())]
    assert len(tables) == 3
    table = tables[0]
    entry = card["subgroups"]["site"]
    rows = group_metrics_from_card([*entry["cv"], *entry["test"]])
    assert list(table["Group"]) == [r.group for r in rows]
    assert list(table["Cases"]) == [r.n for r in rows]
    assert list(table[auc_label]) == [format_metric(r.metrics["roc_auc"]) for r in rows]
    assert list(table["Data"])[:3] == ["cross-validated"] * 3
    assert "tertiles" in " ".join(m.value for m in at.markdown)
    # The forest plot of the held-out sites shows the per-site and pooled numbers.
    per_site = group_metrics_from_card(card["leave_one_site_out"]["per_site"])
    pooled = metric_from_card(card["leave_one_site_out"]["pooled"]["roc_auc"])
    chart = next(c for c in at.get("plotly_chart") if "on each held-out site" in c.proto.spec)
    forest = json.loads(chart.proto.spec)["data"]
    assert list(forest[0]["y"]) == [f"{r.group} (n={r.n})" for r in per_site]
    assert np.allclose(decoded(forest[0]["x"]), [r.metrics["roc_auc"].value for r in per_site])
    assert np.allclose(decoded(forest[1]["x"]), [pooled.value])
    sites_table = tables[2]
    assert list(sites_table["Data"]) == ["held out"] * 3
    assert list(sites_table[auc_label]) == [format_metric(r.metrics["roc_auc"]) for r in per_site]
    text = " ".join(m.value for m in at.markdown)
    assert f"{auc_label} {format_metric(pooled)}" in text
    assert np.isfinite(pooled.value)
    assert any("deployed model is still" in c.value for c in at.caption)


def test_without_groups_evaluate_says_how_to_get_them(open_app: Callable[..., AppTest]) -> None:
    at = open_app(EVALUATE)
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    assert "Subgroups" in [s.value for s in at.subheader]
    assert "Sites (leave-one-site-out)" not in [s.value for s in at.subheader]
    assert any("No site or subgroup column was marked" in c.value for c in at.caption)


def test_the_data_page_marks_subgroup_columns(open_app: Callable[..., AppTest]) -> None:
    at = open_app("pages/data.py")
    at.button(key="use_sample").click().run()
    subgroups = at.multiselect(key="role_subgroups")
    assert "diagnosis" not in subgroups.options and "case_id" not in subgroups.options
    subgroups.select("mean radius").run()
    at.button(key="confirm_roles").click().run()
    assert not at.exception
    roles = at.session_state[state.ROLES]
    assert roles.subgroups == ("mean radius",)
    assert "mean radius" not in roles.non_feature_columns()  # still a feature
