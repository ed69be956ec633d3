"""Metrics per subgroup (site, sex, age band) and leave-one-site-out validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import evaluate_scores
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.subgroups import (
    MISSING,
    GroupMetrics,
    SiteValidation,
    group_labels,
    leave_one_site_out,
    subgroup_card,
    subgroup_metrics,
)
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store.cases import build_cases
from medimg_core.tables.cleaning import CleaningPlan, clean
from medimg_core.tables.roles import Roles

FAST = ValidationConfig(test_size=0.2, cv=3, n_boot=100)
LOGREG = ModelConfig(model="logreg")
ROLES = Roles(
    label="diagnosis",
    id="patient_id",
    site="site",
    subgroups=("sex", "age"),
    exclude=("patient_name",),
)
SITE_NOISE = {"Hospital A": 0.5, "Hospital B": 0.5, "Hospital C": 3.0}


def sites_table(n_per_site: int = 120, seed: int = 0) -> pd.DataFrame:
    """A messy three-site table: two rows per patient, sex written in several ways or missing,
    ages with gaps, a feature with gaps, a patient name, and a few rows without a site.

    At Hospital C the measurements are much noisier (another scanner), so any model does worse
    there.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for site, noise in SITE_NOISE.items():
        n = n_per_site
        y = rng.random(n) < 0.4
        x = rng.normal(size=(n, 4))
        x[:, 0] += np.where(y, 1.8, 0.0)
        x[:, 1] += np.where(y, 1.2, 0.0)
        x[:, :2] += rng.normal(scale=noise, size=(n, 2))
        df = pd.DataFrame(x, columns=["texture", "radius", "smoothness", "area"])
        df.loc[rng.random(n) < 0.05, "smoothness"] = np.nan
        df["site"] = site
        df["sex"] = rng.choice(["F", "M", "female", None], size=n, p=[0.45, 0.4, 0.05, 0.1])
        age = rng.integers(28, 88, size=n).astype(float)
        age[rng.random(n) < 0.08] = np.nan
        df["age"] = age
        df["diagnosis"] = np.where(y, "malignant", "benign")
        df["patient_id"] = [f"{site[-1]}{i // 2:03d}" for i in range(n)]
        df["patient_name"] = [f"Person {site[-1]}{i // 2}" for i in range(n)]
        parts.append(df)
    frame = pd.concat(parts, ignore_index=True)
    frame.loc[[5, 6], "site"] = None  # one patient whose site was not recorded
    return frame


@pytest.fixture(scope="module")
def sites() -> pd.DataFrame:
    return clean(sites_table(), ROLES, CleaningPlan(missing="impute")).data


@pytest.fixture(scope="module")
def trained(sites: pd.DataFrame) -> TrainingResult:
    return train(sites, ROLES, config=LOGREG, validation=FAST)


@pytest.fixture(scope="module")
def cases(trained: TrainingResult, sites: pd.DataFrame) -> pd.DataFrame:
    return build_cases(trained, sites)


# --- grouping --------------------------------------------------------------------------------


def test_age_is_put_in_bands_and_missing_is_a_group() -> None:
    ages = pd.Series([25, 39.9, 40, 49, 50, 65, 70, 90, np.nan])
    labels, order, how = group_labels(ages, column="age_years")
    assert list(labels) == ["<40", "<40", "40–49", "40–49", "50–59", "60–69", "≥70", "≥70", MISSING]
    assert order == ("<40", "40–49", "50–59", "60–69", "≥70", MISSING)
    assert "age bands" in how


def test_ages_outside_the_usual_bands_use_tertiles_of_the_reference() -> None:
    # Children: every age is below 40, so the usual bands would give one group.
    reference = pd.Series(np.arange(1.0, 16.0))  # development ages 1..15
    evaluated = pd.Series([2.0, 7.0, 14.0, 30.0])
    labels, order, how = group_labels(evaluated, column="age", reference=reference)
    assert "tertiles" in how and "does not fit the usual age bands" in how
    cuts = np.quantile(reference, [1 / 3, 2 / 3])
    assert f"{cuts[0]:g}" in how and f"{cuts[1]:g}" in how
    assert len(order) == 3
    assert labels.iloc[0] == order[0] and labels.iloc[2] == order[2] and labels.iloc[3] == order[2]


def test_categories_are_sorted_with_missing_last() -> None:
    labels, order, how = group_labels(pd.Series(["M", None, "F", " ", "F"]), column="sex")
    assert order == ("F", "M", MISSING)
    assert list(labels) == ["M", MISSING, "F", MISSING, "F"]
    assert how == "one group per value"


# --- subgroup metrics --------------------------------------------------------------------------


def test_group_intervals_equal_evaluate_scores_on_the_subset(
    trained: TrainingResult, cases: pd.DataFrame
) -> None:
    model = trained.model
    rows = subgroup_metrics(model, cases, ["sex"], partition="cv", n_boot=100, seed=3)
    dev = cases[cases["partition"] == "development"]
    female = dev[dev["sex"] == "F"]
    expected = evaluate_scores(
        model.encode_labels(female["diagnosis"]),
        female["p_positive"].to_numpy(),
        class_names=("benign", "malignant"),
        positive_class="malignant",
        threshold=model.threshold,
        groups=female["patient_id"].to_numpy(),
        n_boot=100,
        seed=3,
    )
    row = next(r for r in rows if r.group == "F")
    assert row.n == len(female) and row.partition == "cv"
    assert row.n_positive == int((female["diagnosis"] == "malignant").sum())
    for key, metric in expected.metrics.items():
        assert row.metrics[key].value == pytest.approx(metric.value, nan_ok=True)
        assert row.metrics[key].ci95 == pytest.approx(metric.ci95, nan_ok=True)
    assert "patients" in row.metrics["roc_auc"].method  # patient-level bootstrap
    assert sum(r.n for r in rows) == len(dev)  # every development case in exactly one group


def test_every_column_and_partition_has_its_groups(
    trained: TrainingResult, cases: pd.DataFrame
) -> None:
    test_rows = subgroup_metrics(
        trained.model, cases, ["site", "sex", "age"], partition="test", n_boot=50
    )
    test = cases[cases["partition"] == "test"]
    for column in ("site", "sex", "age"):
        rows = [r for r in test_rows if r.column == column]
        assert sum(r.n for r in rows) == len(test)
        assert all(r.partition == "test" for r in rows)
    sites = [r.group for r in test_rows if r.column == "site"]
    assert sites[:3] == ["Hospital A", "Hospital B", "Hospital C"]
    assert {r.grouping for r in test_rows if r.column == "age"} == {
        "in age bands (<40, 40–49, 50–59, 60–69, ≥70 years)"
    }


def test_the_missing_sex_group_is_reported(trained: TrainingResult, cases: pd.DataFrame) -> None:
    rows = subgroup_metrics(trained.model, cases, ["sex"], partition="cv", n_boot=50)
    assert [r.group for r in rows] == ["F", "M", "female", MISSING]
    dev = cases[cases["partition"] == "development"]
    assert rows[-1].n == int(dev["sex"].isna().sum()) > 0


def test_tiny_and_one_class_groups_get_notes_not_errors(
    trained: TrainingResult, cases: pd.DataFrame
) -> None:
    tiny = cases.copy()
    dev = tiny.index[tiny["partition"] == "development"]
    tiny["ward"] = "main"
    benign = tiny.loc[dev][tiny.loc[dev, "diagnosis"] == "benign"].index[:3]
    tiny.loc[benign, "ward"] = "annex"  # three benign cases: no positives, no AUC
    rows = subgroup_metrics(trained.model, tiny, ["ward"], partition="cv", n_boot=50)
    annex = next(r for r in rows if r.group == "annex")
    assert annex.n == 3 and annex.n_positive == 0
    assert np.isnan(annex.metrics["roc_auc"].value)
    assert np.isnan(annex.metrics["sensitivity"].value)
    assert annex.metrics["specificity"].value == pytest.approx(
        float((tiny.loc[benign, "p_positive"] < trained.model.threshold).mean())
    )
    assert "only 3 cases" in annex.note and "every case is benign" in annex.note
    assert "sensitivity" in annex.note
    assert annex.to_dict()["metrics"]["roc_auc"]["value"] is None


def test_a_coded_label_is_named_in_the_group_notes(sites: pd.DataFrame) -> None:
    coded = sites.assign(diagnosis=(sites["diagnosis"] == "malignant").astype(int))
    roles = dataclasses.replace(ROLES, class_names=(("0", "benign"), ("1", "malignant")))
    result = train(coded, roles, config=LOGREG, validation=FAST, positive=1)
    cases = build_cases(result, coded)
    dev = cases.index[cases["partition"] == "development"]
    cases["ward"] = "main"
    cases.loc[cases.loc[dev][cases.loc[dev, "diagnosis"] == 0].index[:3], "ward"] = "annex"
    rows = subgroup_metrics(result.model, cases, ["ward"], partition="cv", n_boot=50)
    annex = next(r for r in rows if r.group == "annex")
    assert "every case is benign" in annex.note
    assert "every case is 0" not in annex.note


def test_bad_partition_or_column_is_refused(trained: TrainingResult, cases: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="'cv' or 'test'"):
        subgroup_metrics(trained.model, cases, ["sex"], partition="external")
    with pytest.raises(ConfigError, match="not among the model's stored cases"):
        subgroup_metrics(trained.model, cases, ["ethnicity"], partition="cv")


def test_card_entry_has_cv_and_test_per_column(
    trained: TrainingResult, cases: pd.DataFrame
) -> None:
    card = subgroup_card(trained.model, cases, n_boot=50)
    assert card is not None
    assert list(card) == ["site", "sex", "age"]
    assert card["site"]["is_site"] and not card["sex"]["is_site"]
    assert {r["partition"] for r in card["age"]["cv"]} == {"cv"}
    assert {r["partition"] for r in card["age"]["test"]} == {"test"}
    assert card["age"]["grouping"].startswith("in age bands")


# --- leave one site out ------------------------------------------------------------------------


def test_leave_one_site_out_scores_each_site_and_the_shifted_site_is_worse(
    sites: pd.DataFrame,
) -> None:
    result = leave_one_site_out(sites, ROLES, LOGREG, FAST)
    assert isinstance(result, SiteValidation)
    assert [r.group for r in result.per_site] == ["Hospital A", "Hospital B", "Hospital C"]
    for row in result.per_site:
        assert row.n == int((sites["site"] == row.group).sum())
        assert row.partition == "held-out site"
        lo, hi = row.metrics["roc_auc"].ci95
        assert lo <= row.metrics["roc_auc"].value <= hi
    auc = {r.group: r.metrics["roc_auc"].value for r in result.per_site}
    assert auc["Hospital C"] < min(auc["Hospital A"], auc["Hospital B"]) - 0.05
    assert result.pooled is not None
    assert sum(r.n for r in result.per_site) == len(sites) - int(sites["site"].isna().sum())
    assert any("no site" in n for n in result.notes)
    assert any("deployed model is still" in n for n in result.notes)
    assert result.to_dict()["per_site"][2]["group"] == "Hospital C"


def test_leave_one_site_out_matches_training_with_that_site_as_test(sites: pd.DataFrame) -> None:
    result = leave_one_site_out(sites, ROLES, LOGREG, FAST)
    held = sites["site"].eq("Hospital B")
    direct = train(
        sites,
        ROLES,
        config=LOGREG,
        validation=dataclasses.replace(FAST, predefined_test=tuple(held)),
    )
    assert direct.test is not None
    row = next(r for r in result.per_site if r.group == "Hospital B")
    assert row.metrics["roc_auc"].value == pytest.approx(direct.test.metrics["roc_auc"].value)
    assert row.threshold == pytest.approx(direct.model.threshold)


def test_leave_one_site_out_refuses_a_single_site(sites: pd.DataFrame) -> None:
    one = sites[sites["site"] == "Hospital A"]
    with pytest.raises(DataError, match=r"at least 2 sites.*one site \(Hospital A\)"):
        leave_one_site_out(one, ROLES, LOGREG, FAST)
    with pytest.raises(ConfigError, match="needs a site column"):
        leave_one_site_out(sites, dataclasses.replace(ROLES, site=None), LOGREG, FAST)


def test_a_site_with_one_class_is_skipped_with_a_note(sites: pd.DataFrame) -> None:
    data = sites.copy()
    extra = data[(data["site"] == "Hospital A") & (data["diagnosis"] == "benign")].head(12).copy()
    extra["site"] = "Clinic D"
    extra["patient_id"] = [f"D{i:03d}" for i in range(len(extra))]
    extra.index = extra.index + 10_000
    data = pd.concat([data, extra])
    result = leave_one_site_out(data, ROLES, LOGREG, FAST)
    assert "Clinic D" not in [r.group for r in result.per_site]
    assert any("Site Clinic D was not held out" in n and "benign" in n for n in result.notes)
    assert result.n_sites == 4


def test_group_metrics_dict_is_json_ready() -> None:
    from medimg_core.modelling.evaluation import MetricValue

    row = GroupMetrics("sex", "F", "cv", 4, 1, {"roc_auc": MetricValue(np.nan, (np.nan, np.nan))})
    d = row.to_dict()
    assert d["metrics"]["roc_auc"] == {"value": None, "ci95": [None, None]}
    assert d["n"] == 4 and d["grouping"] == ""


def test_multiclass_groups_use_macro_metrics() -> None:
    rng = np.random.default_rng(2)
    n = 150
    label = np.repeat(["cyst", "fibroadenoma", "carcinoma"], n // 3)
    centre = {"cyst": 0.0, "fibroadenoma": 1.5, "carcinoma": 3.0}
    data = pd.DataFrame(
        {
            "size": [centre[v] for v in label] + rng.normal(0, 0.8, n),
            "margin": rng.normal(0, 1, n),
            "sex": rng.choice(["F", "M"], n),
            "finding": label,
        }
    )
    roles = Roles(label="finding", subgroups=("sex",))
    result = train(data, roles, config=LOGREG, validation=FAST)
    cases = build_cases(result, data)
    rows = subgroup_metrics(result.model, cases, ["sex"], partition="cv", n_boot=50)
    assert [r.group for r in rows] == ["F", "M"]
    first = result.model.classes[0]
    dev = cases[cases["partition"] == "development"]
    female = dev[dev["sex"] == "F"]
    assert rows[0].n_positive == int((female["finding"] != first).sum())
    assert rows[0].threshold is None
    assert 0.0 <= rows[0].metrics["accuracy"].value <= 1.0


def test_the_same_failure_in_every_round_is_raised_as_it_is(sites: pd.DataFrame) -> None:
    data = sites.assign(free_text=[f"note {i}" for i in range(len(sites))])
    roles = dataclasses.replace(ROLES, exclude=())
    with pytest.raises(DataError, match="free_text"):
        leave_one_site_out(data, roles, LOGREG, FAST)
