"""Case review and scoring of new cases."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest

from medimg_core._messages import format_value
from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling import training
from medimg_core.modelling.explain import ModelExplainer
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.privacy import pseudonymise_ids
from medimg_core.reporting import review
from medimg_core.tables import cleaning, loading
from medimg_core.tables.cleaning import CleaningPlan
from medimg_core.tables.roles import Roles


@dataclass(frozen=True)
class Trained:
    result: training.TrainingResult
    cases: pd.DataFrame
    explainer: ModelExplainer


@pytest.fixture(scope="module")
def trained() -> Trained:
    frame = loading.load_sample().frame
    roles = Roles(label="diagnosis", id="case_id")
    report = cleaning.clean(frame, roles)
    result = training.train(
        report.data,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=50),
        positive="malignant",
    )
    cases = report.data.copy()
    test_rows = set(result.test_index)
    cases["partition"] = ["test" if i in test_rows else "development" for i in cases.index]
    development = cases[cases["partition"] == "development"]
    return Trained(result, cases, ModelExplainer(result.model, development))


def new_cases(trained: Trained, n: int = 12) -> pd.DataFrame:
    rows = trained.cases[trained.cases["partition"] == "test"].head(n)
    return rows.drop(columns=["diagnosis", "partition"]).reset_index(drop=True)


def test_review_table_follows_the_cases(trained: Trained) -> None:
    evaluation = trained.result.test
    assert evaluation is not None
    table = review.review_table(evaluation, trained.cases, id_column="case_id")
    test_rows = trained.cases[trained.cases["partition"] == "test"]
    assert list(table.index) == list(test_rows.index)
    assert (table["label"] == test_rows["case_id"]).all()
    assert (table["true"] == test_rows["diagnosis"]).all()


def test_review_table_matches_by_id_when_rows_differ(trained: Trained) -> None:
    evaluation = trained.result.cv
    shuffled = trained.cases.sample(frac=1.0, random_state=1)
    shuffled = shuffled.drop(columns="partition")
    table = review.review_table(evaluation, shuffled, id_column="case_id")
    assert (shuffled.loc[table.index, "case_id"].to_numpy() == table["case_id"].to_numpy()).all()
    with pytest.raises(DataError, match="evaluated cases are not among"):
        review.review_table(evaluation, shuffled.head(50), id_column="case_id")


def test_select_cases_orders_the_most_telling_first(trained: Trained) -> None:
    table = review.review_table(trained.result.cv, trained.cases, id_column="case_id")
    fn = review.select_cases(table, "FN")
    assert (fn["outcome"] == "FN").all() and fn["p_positive"].is_monotonic_increasing
    fp = review.select_cases(table, "FP")
    assert (fp["outcome"] == "FP").all() and fp["p_positive"].is_monotonic_decreasing
    uncertain = review.select_cases(table, "uncertain", limit=10)
    assert len(uncertain) == 10 and uncertain["uncertainty"].is_monotonic_increasing
    wrong = review.select_cases(table, "wrong")
    assert set(wrong["outcome"]) <= {"FN", "FP"} and len(wrong) == len(fn) + len(fp)
    with pytest.raises(ConfigError, match="Unknown kind of case 'odd'"):
        review.select_cases(table, "odd")  # type: ignore[arg-type]


def test_case_labels_name_repeated_ids_by_row() -> None:
    cases = pd.DataFrame({"pid": ["a", "b", "a"]}, index=[10, 11, 12])
    assert list(review.case_labels(cases, "pid")) == ["a · row 10", "b", "a · row 12"]
    assert list(review.case_labels(cases, None)) == ["row 10", "row 11", "row 12"]


def test_feature_table_shows_typical_values(trained: Trained) -> None:
    model = trained.result.model
    row = model.prepare_features(trained.cases.iloc[[0]])
    case = trained.explainer.explain(row).case(0)
    development = trained.cases[trained.cases["partition"] == "development"]
    table = review.feature_table(case, development, k=4)
    assert len(table) == 4
    unit = case.output_space
    assert list(table.columns) == ["Feature", "Value", "Typical value", f"Contribution ({unit})"]
    assert table[f"Contribution ({unit})"].abs().is_monotonic_decreasing
    top = table["Feature"].iloc[0]
    assert table["Typical value"].iloc[0] == format_value(development[top].median())


def test_with_changes_edits_a_copy(trained: Trained) -> None:
    model = trained.result.model
    row = model.prepare_features(trained.cases.iloc[[0]])
    edited = review.with_changes(row, {"worst area": 4000})
    assert edited["worst area"].iloc[0] == 4000.0
    assert row["worst area"].iloc[0] != 4000.0
    with pytest.raises(DataError, match=r"unknown feature\(s\) \['nope'\]"):
        review.with_changes(row, {"nope": 1})
    with pytest.raises(DataError, match="needs one case, got 2 rows"):
        review.with_changes(model.prepare_features(trained.cases.iloc[:2]), {})


def test_scoring_one_case_gives_reasons_relative_to_development(trained: Trained) -> None:
    model = trained.result.model
    scored = review.score_new_cases(model, new_cases(trained, 1), explainers={1: trained.explainer})
    assert scored.ok and scored.n_scored == 1
    reason = scored.table["reason_1"].iloc[0]
    assert "(+0.00 " not in reason and "(-0.00 " not in reason
    assert reason.endswith(" log-odds)")
    fallback = review.score_new_cases(model, new_cases(trained, 1))
    assert fallback.table["reason_1"].iloc[0].split(" = ")[0] in model.feature_columns


def test_scoring_uses_the_threshold_and_hides_identifying_columns(trained: Trained) -> None:
    model = trained.result.model
    data = new_cases(trained)
    data["patient_name"] = [f"Person {i}" for i in range(len(data))]
    scored = review.score_new_cases(model, data, explainers={1: trained.explainer}, threshold=0.9)
    table = scored.table
    assert list(table.columns) == [
        "case_id",
        "P(malignant)",
        "decision",
        "reason_1",
        "reason_2",
        "reason_3",
        "ood_range",
        "ood_features",
        "ood_distance",
        "ood_flag",
    ]
    called = table["P(malignant)"] >= 0.9
    assert (table["decision"] == np.where(called, "malignant", "benign")).all()
    assert scored.n_called == int(called.sum())
    assert scored.threshold == 0.9
    assert any("patient_name" in w for w in scored.warnings)
    assert not table.astype(str).apply(lambda c: c.str.contains("Person")).any().any()


def test_schema_errors_stop_scoring(trained: Trained) -> None:
    data = new_cases(trained).drop(columns=["mean radius"])
    scored = review.score_new_cases(trained.result.model, data)
    assert not scored.ok
    assert scored.n_scored == 0 and scored.cleaning is None
    assert "mean radius" in " ".join(scored.schema.errors)


def test_cleaning_plan_applies_row_by_row(trained: Trained) -> None:
    model = trained.result.model
    data = new_cases(trained, 5)
    data.loc[2, "mean texture"] = np.nan
    scored = review.score_new_cases(model, data, explain_top=0)
    if model.plan.missing == "drop":
        assert scored.n_scored == 4
        assert list(scored.not_scored.columns) == ["case_id", "reason"]
        assert scored.not_scored["case_id"].iloc[0] == data.loc[2, "case_id"]
        assert not any("imputed" in w for w in scored.warnings)
    one = review.score_new_cases(model, data.iloc[[0, 0, 0]], explain_top=0)
    assert one.n_scored == 3


def test_prediction_plan_switches_off_batch_rules() -> None:
    plan = CleaningPlan(
        quality_column="qc",
        ranges={"a": (0.0, 1.0), "gone": (0.0, 2.0)},
        duplicates="drop",
    )
    adapted = review.prediction_plan(plan, ["a", "b"])
    assert adapted.duplicates == "keep"
    assert adapted.outlier_action == "flag"
    assert not adapted.drop_constant_columns and not adapted.drop_empty_columns
    assert adapted.quality_column is None
    assert adapted.ranges == {"a": (0.0, 1.0)}


def test_expected_columns_lists_types_and_training_values(trained: Trained) -> None:
    table = review.expected_columns(trained.result.model)
    assert len(table) == len(trained.result.model.feature_columns)
    assert set(table["Type"]) == {"number"}
    assert " to " in table["In training"].iloc[0]


def test_reason_text() -> None:
    assert review.reason_text("worst area", 1203.0, 0.8412) == "worst area = 1,203 (+0.84)"
    assert (
        review.reason_text("worst area", 1203.0, 0.8412, "probability")
        == "worst area = 1,203 (+0.84 probability)"
    )


def test_feature_table_adds_the_standard_error_of_permutation_estimates() -> None:
    from medimg_core.modelling.explain import CaseExplanation

    features = ["a", "b", "c"]
    case = CaseExplanation(
        case_id="x",
        values=pd.Series([0.02, -0.3, 0.1], index=features),
        base_value=0.4,
        data=pd.Series([1.0, 2.0, 3.0], index=features),
        output_space="probability",
        class_name="malignant",
        method="permutation (model-agnostic)",
        standard_errors=pd.Series([0.001, 0.02, 0.005], index=features),
    )
    reference = pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, 3.0], "c": [3.0, 4.0]})
    table = review.feature_table(case, reference, k=3)
    assert list(table.columns) == [
        "Feature",
        "Value",
        "Typical value",
        "Contribution (probability)",
        "Standard error (probability)",
    ]
    assert list(table["Feature"]) == ["b", "c", "a"]
    assert list(table["Standard error (probability)"]) == [0.02, 0.005, 0.001]


def test_scoring_can_name_cases_by_their_pseudonyms(trained: Trained) -> None:
    model = trained.result.model
    data = new_cases(trained, 6)
    key = b"review-test-key-0123456789abcdef"
    plain = review.score_new_cases(model, data, explain_top=0)
    hidden = review.score_new_cases(model, data, explain_top=0, id_key=key)
    expected = list(pseudonymise_ids(data["case_id"], key))
    assert list(plain.table["case_id"]) == list(data["case_id"])
    assert list(hidden.table["case_id"]) == expected
    assert not set(hidden.table["case_id"]) & set(data["case_id"])
    # Everything else is the same scoring.
    pd.testing.assert_frame_equal(
        plain.table.drop(columns="case_id"), hidden.table.drop(columns="case_id")
    )
    # Rows the cleaning removed are named by their pseudonyms too.
    strict = replace(model, plan=replace(model.plan, missing="drop"))
    gappy = data.copy()
    gappy.loc[2, "mean texture"] = np.nan
    removed = review.score_new_cases(strict, gappy, explain_top=0, id_key=key)
    assert list(removed.not_scored["case_id"]) == [expected[2]]


def test_pseudonymous_cases_match_the_stored_ids_and_keep_patients_together(
    trained: Trained,
) -> None:
    key = b"review-test-key-0123456789abcdef"
    cases = trained.cases.copy()
    cases.loc[cases.index[:2], "case_id"] = "SAME-PATIENT"
    cv = replace(
        trained.result.cv, row_ids=cases.loc[:, "case_id"].to_numpy()[: trained.result.cv.n]
    )
    shown, (shown_cv, none) = review.pseudonymous_cases(
        cases, (cv, None), id_column="case_id", key=key
    )
    assert shown is not None and shown_cv is not None and none is None
    assert list(shown["case_id"]) == list(pseudonymise_ids(cases["case_id"], key))
    assert shown["case_id"].iloc[0] == shown["case_id"].iloc[1]
    assert list(shown_cv.row_ids) == list(pseudonymise_ids(pd.Series(cv.row_ids), key))
    assert list(cases["case_id"]) != list(shown["case_id"])  # the input is left alone
    same, evaluations = review.pseudonymous_cases(cases, (cv,), id_column=None, key=key)
    assert same is cases and evaluations == (cv,)


def test_named_multiclass_cases_are_explained_for_their_predicted_class() -> None:
    # The predictions name their probability columns by the classes' names, not their codes.
    rng = np.random.default_rng(0)
    features = rng.normal(size=(150, 3))
    frame = pd.DataFrame(features, columns=["a", "b", "c"])
    frame["y"] = (features[:, 0] > 0.5).astype(int) + (features[:, 1] > 0.5).astype(int)
    roles = Roles(label="y", class_names=(("0", "zero"), ("1", "one"), ("2", "two")))
    result = training.train(
        frame,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=20),
    )
    development = frame.drop(columns="y")
    explainers = {i: ModelExplainer(result.model, development, class_index=i) for i in range(3)}
    scored = review.score_new_cases(result.model, development.head(5), explainers=explainers)
    assert len(scored.table) == 5
    assert scored.table["reason_1"].str.len().gt(0).all()
