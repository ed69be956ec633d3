"""AppTest of the Explain page: the guard, global and case explanations, what-if, the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.modelling import training
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store import persistence
from medimg_core.tables import cleaning, loading
from medimg_core.tables.roles import Roles
from medimg_core.ui import state
from medimg_core.ui.session import ActiveModel
from medimg_core.ui.workflow import SAMPLE_BUTTON
from tests.app.conftest import APP, ROOT, RUN_TIMEOUT

PAGE = "pages/explain.py"


def sample_active(config: ModelConfig | None = None) -> ActiveModel:
    """A logistic regression (or ``config``) on the sample (3 folds, 20% test), as the Train
    page activates it."""
    table = loading.load_sample()
    roles = Roles(label="diagnosis", id="case_id")
    report = cleaning.clean(table.frame, roles)
    result = training.train(
        report.data,
        roles,
        config=config or ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=100),
        positive="malignant",
    )
    cases = report.data.copy()
    test_rows = set(result.test_index)
    cases["partition"] = ["test" if i in test_rows else "development" for i in cases.index]
    # As the save path does: the card's top features come from the development cases.
    development = cases[cases["partition"] == "development"]
    card = persistence.build_card(
        result, cleaning=report, dataset_name=table.name, data=development
    )
    return ActiveModel(
        model=result.model,
        card=card,
        run_id=None,
        cv=result.cv,
        test=result.test,
        cases=cases,
    )


@pytest.fixture(scope="module")
def active() -> ActiveModel:
    return sample_active()


@pytest.fixture
def explain_app(app_env: Path, active: ActiveModel) -> Callable[[], AppTest]:
    def open_page() -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
        at.session_state[state.ACTIVE] = active
        at.switch_page(PAGE)
        return at.run()

    return open_page


def test_guard_offers_the_sample(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    assert not at.exception
    assert any("no data yet" in i.value.lower() for i in at.info)
    assert any(b.label == SAMPLE_BUTTON for b in at.button)


def chart_keys(at: AppTest) -> list[str]:
    """Widget keys of the page's plotly charts."""
    return [str(c.proto.id).rsplit("-", 1)[-1] for c in at.get("plotly_chart")]


def metric_map(at: AppTest) -> dict[str, str]:
    return {m.label: str(m.value) for m in at.metric}


def test_false_negative_from_cross_validation(explain_app: Callable[[], AppTest]) -> None:
    at = explain_app()
    at.selectbox(key="explain_partition").set_value("cv").run()
    at.radio(key="explain_pick").set_value("FN").run()
    assert not at.exception
    keys = chart_keys(at)
    for key in ("explain_importance", "explain_beeswarm", "explain_waterfall", "explain_gauge"):
        assert key in keys
    metrics = metric_map(at)
    assert metrics["True diagnosis"] == "malignant"
    assert metrics["Outcome"] == "FN"
    captions = [c.value for c in at.caption]
    ranking = [c for c in captions if c.startswith("Features ranked by mean |SHAP value|")]
    assert ranking and "log-odds of malignant" in ranking[0]
    assert "The model card's top features are the same ranking." in ranking[0]
    shap_csv = [b for b in at.get("download_button") if "SHAP values (CSV)" in b.proto.label]
    assert shap_csv and "log-odds of malignant" in shap_csv[0].proto.help
    features = at.dataframe[0].value
    assert list(features.columns) == [
        "Feature",
        "Value",
        "Typical value",
        "Contribution (log-odds)",
    ]
    assert any(b.proto.label.startswith("Download this case") for b in at.get("download_button"))
    assert any("keyed pseudonym" in c.value for c in at.caption)
    # A development FN was missed by a model that had not seen it; the final model, trained on
    # it, usually scores it differently, and the page must say which score is which.
    [note] = [
        i.value for i in at.info if "Cross-validation scored this development case" in i.value
    ]
    assert "sets its outcome (FN)" in note
    assert "trained on this case" in note


def test_held_out_false_negatives_or_a_clear_message(
    explain_app: Callable[[], AppTest], active: ActiveModel
) -> None:
    at = explain_app()
    assert not at.exception
    assert at.selectbox(key="explain_partition").value == "test"
    assert active.test is not None
    n_fn = int(((active.test.y_true == 1) & (active.test.y_score < active.model.threshold)).sum())
    pick = at.radio(key="explain_pick")
    assert pick.format_func("FN") == f"false negatives ({n_fn})"
    if not n_fn:
        # An empty list is not offered first.
        assert pick.value != "FN"
    pick.set_value("FN").run()
    if n_fn:
        assert metric_map(at)["Outcome"] == "FN"
    else:
        assert any("No false negatives among the" in i.value for i in at.info)
        assert "explain_waterfall" not in chart_keys(at)


def test_false_positive_and_uncertain_lists(explain_app: Callable[[], AppTest]) -> None:
    at = explain_app()
    at.selectbox(key="explain_partition").set_value("cv").run()
    at.radio(key="explain_pick").set_value("FP").run()
    assert not at.exception
    assert metric_map(at)["Outcome"] == "FP"
    at.radio(key="explain_pick").set_value("uncertain").run()
    assert not at.exception
    assert "explain_waterfall" in chart_keys(at)


def test_any_case_by_id(explain_app: Callable[[], AppTest], active: ActiveModel) -> None:
    assert active.cases is not None
    test_rows = active.cases[active.cases["partition"] == "test"]
    row_key = test_rows.index[3]
    case_id = str(test_rows.at[row_key, "case_id"])
    at = explain_app()
    at.radio(key="explain_pick").set_value("id").run()
    at.selectbox(key="explain_case_test_id").set_value(row_key).run()
    assert not at.exception
    waterfall = next(c for c in at.get("plotly_chart") if str(c.proto.id).endswith("waterfall"))
    assert f"Case {case_id}" in waterfall.proto.spec
    assert metric_map(at)["True diagnosis"] == str(test_rows.at[row_key, "diagnosis"])


def test_what_if_changes_the_probability(explain_app: Callable[[], AppTest]) -> None:
    at = explain_app()
    at.selectbox(key="explain_partition").set_value("cv").run()
    at.radio(key="explain_pick").set_value("FN").run()
    assert not any("Edited P(" in label for label in metric_map(at))
    first = at.number_input[0]
    assert first.key is not None and first.key.startswith("whatif_")
    first.set_value(float(first.value) * 3).run()
    assert not at.exception
    changed = {k: v for k, v in metric_map(at).items() if "Edited P(" in k}
    assert len(changed) == 1
    delta = next(m for m in at.metric if "Edited P(" in m.label).proto.delta
    assert "was" in delta and not delta.startswith("+0.00")
    assert "explain_whatif_waterfall" in chart_keys(at)


def run_in_error_boundary(page: str) -> None:
    """Run a page file inside the router's error boundary.

    AppTest runs a page of an app with a ``pages/`` folder directly (Streamlit's first
    multipage mode), bypassing ``app.py`` and its ``page_errors``; this puts it back.
    """
    import runpy

    from medimg_core.ui.errors import page_errors
    from medimg_core.ui.state import routed

    # As app.py runs it: routed, so the page does not send itself through the router.
    with routed(), page_errors():
        runpy.run_path(page)


def test_a_model_without_cases_is_a_clear_error(app_env: Path, active: ActiveModel) -> None:
    bare = ActiveModel(
        model=active.model, card=active.card, run_id="bare", cv=None, test=None, cases=None
    )
    at = AppTest.from_function(
        run_in_error_boundary, args=(str(ROOT / PAGE),), default_timeout=RUN_TIMEOUT
    )
    at.session_state[state.ACTIVE] = bare
    at.run()
    assert not at.exception
    assert len(at.error) == 1
    assert "no stored development cases" in at.error[0].value


def three_class_active() -> ActiveModel:
    """A logistic regression on three classes made from the sample's tumour size."""
    frame = loading.load_sample().frame.iloc[:240].copy()
    size = frame["mean area"].rank(pct=True)
    frame["grade"] = pd.cut(size, [0, 1 / 3, 2 / 3, 1], labels=["low", "mid", "high"]).astype(str)
    frame = frame.drop(columns=["diagnosis", "mean area", "worst area", "mean radius"])
    roles = Roles(label="grade", id="case_id")
    report = cleaning.clean(frame, roles)
    result = training.train(
        report.data,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=50),
    )
    cases = report.data.copy()
    test_rows = set(result.test_index)
    cases["partition"] = ["test" if i in test_rows else "development" for i in cases.index]
    card = persistence.build_card(result, cleaning=report, dataset_name="grades")
    return ActiveModel(
        model=result.model, card=card, run_id="three", cv=result.cv, test=result.test, cases=cases
    )


def test_multiclass_explains_the_predicted_class(app_env: Path) -> None:
    active = three_class_active()
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)
    at.session_state[state.ACTIVE] = active
    at.switch_page(PAGE)
    at.run()
    assert not at.exception
    options = [o.rsplit(" (", 1)[0] for o in at.radio(key="explain_pick").options]
    assert options == ["misclassified cases", "most uncertain cases", "any case by ID"]
    at.radio(key="explain_pick").set_value("uncertain").run()
    assert not at.exception
    assert "explain_waterfall" in chart_keys(at)
    case_class = next(s for s in at.selectbox if str(s.key).startswith("explain_case_class_"))
    assert "(predicted)" in case_class.format_func(case_class.value)


def test_a_forests_case_probability_is_the_sum_of_its_contributions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Opening a case of a forest explains it once; running the 300-tree model again for its
    # probability cost ~80 times as much. TreeSHAP's contributions add up to that probability.
    from medimg_core.reporting import review
    from medimg_core.ui import explaining

    forest = sample_active(ModelConfig(model="rf", params={"n_estimators": 50}))
    assert forest.test is not None and forest.cases is not None
    table = review.review_table(forest.test, forest.cases, id_column="case_id", threshold=0.5)
    row_key = table.index[0]
    features = forest.model.prepare_features(forest.cases.loc[[row_key]])
    expected = float(review.case_probabilities(forest.model, features).to_numpy()[0, 1])

    def not_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was run again for the probability")

    monkeypatch.setattr(review, "case_probabilities", not_again)
    view = explaining.case_view(forest, row_key, 1, review_table=table)
    assert view.case.output_space == "probability"
    assert view.probability == pytest.approx(expected, abs=1e-12)
    edited = explaining.case_view(forest, row_key, 1, changes={"worst area": 4000.0})
    assert 0.0 <= edited.probability <= 1.0
