from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import Curve, Evaluation, MetricValue
from medimg_core.modelling.explain import Explanation
from medimg_core.modelling.selection import LeaderboardRow
from medimg_core.modelling.validation import SplitSummary
from medimg_core.reporting.figures import evaluation as plots
from medimg_core.reporting.figures.evaluation import (
    MAX_POINTS,
    beeswarm_figure,
    calibration_figure,
    case_probability_figure,
    class_balance_figure,
    cleaning_figure,
    confusion_figure,
    dependence_figure,
    distribution_figure,
    flow_counts,
    flow_figure,
    importance_figure,
    leaderboard_figure,
    pr_figure,
    roc_figure,
    threshold_figure,
    waterfall_figure,
)
from medimg_core.tables.cleaning import CleaningPlan, CleaningReport

FONT_MIN = 12


def binary_eval(
    partition: str = "test", n: int = 300, seed: int = 0, *, with_curves: bool = True
) -> Evaluation:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    score = np.clip(0.25 + 0.45 * y + rng.normal(0, 0.18, n), 0, 1)
    fpr, tpr, thr = roc_curve(y, score)
    precision, recall, pr_thr = precision_recall_curve(y, score)
    observed, predicted = calibration_curve(y, score, n_bins=10)
    pred = (score >= 0.5).astype(int)
    confusion = np.array(
        [
            [np.sum((y == 0) & (pred == 0)), np.sum((y == 0) & (pred == 1))],
            [np.sum((y == 1) & (pred == 0)), np.sum((y == 1) & (pred == 1))],
        ]
    )
    metrics = {
        "roc_auc": MetricValue(0.987, (0.971, 0.996)),
        "pr_auc": MetricValue(0.95, (0.9, 0.98)),
        "brier": MetricValue(0.0412, (0.031, 0.052)),
    }
    return Evaluation(
        partition=partition,
        metrics=metrics,
        y_true=y,
        y_score=score,
        threshold=0.5,
        confusion=confusion,
        class_names=("benign", "malignant"),
        positive_class="malignant",
        roc=Curve(fpr, tpr, thr, "1 - specificity", "sensitivity") if with_curves else None,
        pr=Curve(recall, precision, np.append(pr_thr, np.nan), "recall", "precision")
        if with_curves
        else None,
        calibration=Curve(predicted, observed, None, "predicted", "observed")
        if with_curves
        else None,
        per_class=None,
        row_ids=np.arange(n),
        groups_resampled=False,
        n_boot=200,
    )


def multiclass_eval(n: int = 240, k: int = 3) -> Evaluation:
    rng = np.random.default_rng(1)
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 2
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y, pred), 1)
    return Evaluation(
        partition="cv",
        metrics={"roc_auc": MetricValue(0.9, (0.85, 0.93))},
        y_true=y,
        y_score=proba,
        threshold=0.5,
        confusion=confusion,
        class_names=tuple(f"class {i}" for i in range(k)),
        positive_class=None,
        roc=None,
        pr=None,
        calibration=None,
        per_class=None,
        row_ids=np.arange(n),
        groups_resampled=False,
        n_boot=200,
    )


def make_explanation(
    n: int = 50, n_features: int = 20, output_space: str = "log-odds"
) -> Explanation:
    rng = np.random.default_rng(2)
    names = tuple(f"feature {i}" for i in range(n_features))
    data = pd.DataFrame(rng.normal(100, 30, (n, n_features)), columns=list(names))
    scale = np.linspace(2, 0.05, n_features)
    values = (data.to_numpy() - 100) / 30 * scale
    return Explanation(
        values=values,
        base_values=np.full(n, -0.4),
        data=data,
        feature_names=names,
        output_space=output_space,
        class_name="malignant",
        method="linear (exact, folded through the pipeline)",
        background_size=100,
        note="",
    )


def axis_title(axis: go.layout.XAxis | go.layout.YAxis) -> str:
    return axis.title.text or ""


def assert_house_layout(fig: go.Figure) -> None:
    assert isinstance(fig, go.Figure)
    assert fig.layout.template.layout.paper_bgcolor == "white"
    assert fig.layout.height is not None
    assert fig.layout.font.size >= FONT_MIN


def count_points(trace: go.Scatter | go.Scattergl) -> int:
    return 0 if trace.x is None else len(trace.x)


def test_no_streamlit_import_in_plots() -> None:
    tree = ast.parse(inspect.getsource(plots))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported
    assert not any(name.split(".")[0] == "streamlit" for name in imported)


def test_importing_plots_does_not_load_streamlit() -> None:
    code = "import sys, medimg_core.reporting.figures.evaluation; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_all_matches_public_functions() -> None:
    public = {
        name
        for name, obj in vars(plots).items()
        if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == plots.__name__
    }
    assert public <= set(plots.__all__)
    for name in plots.__all__:
        assert hasattr(plots, name)


def test_confusion_annotations_equal_counts() -> None:
    confusion = np.array([[70, 3], [5, 1234]])
    fig = confusion_figure(confusion, ("benign", "malignant"))
    assert_house_layout(fig)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    texts = {(a.y, a.x): a.text for a in fig.layout.annotations}
    assert texts[("benign", "benign")] == "70"
    assert texts[("malignant", "malignant")] == "1,234"
    assert axis_title(fig.layout.xaxis) == "Predicted"
    assert axis_title(fig.layout.yaxis) == "True diagnosis"
    assert list(fig.data[0].x) == ["benign", "malignant"]
    assert "TP" in fig.data[0].customdata[1][1]


def test_confusion_normalised_shows_counts_and_row_shares() -> None:
    confusion = np.array([[30, 10], [0, 0]])
    fig = confusion_figure(confusion, ("a", "b"), normalize=True)
    texts = {(a.y, a.x): a.text for a in fig.layout.annotations}
    assert texts[("a", "a")] == "30<br>75.0%"
    assert texts[("b", "b")] == "0<br>0.0%"
    assert "row-normalised: share of each true class" in fig.layout.title.subtitle.text
    assert np.allclose(np.asarray(fig.data[0].z), [[0.75, 0.25], [0, 0]])


def test_confusion_multiclass_is_k_by_k() -> None:
    ev = multiclass_eval()
    fig = confusion_figure(ev.confusion, ev.class_names)
    assert len(fig.layout.annotations) == 9
    first = [int(a.text.replace(",", "")) for a in fig.layout.annotations]
    assert first == ev.confusion.ravel().tolist()


def test_confusion_shape_mismatch_names_the_fix() -> None:
    with pytest.raises(DataError, match=r"shape \(2, 2\) but there are 3 class names"):
        confusion_figure(np.eye(2, dtype=int), ("a", "b", "c"))


def test_roc_legends_name_partition_and_auc_with_ci() -> None:
    fig = roc_figure(binary_eval("cv", seed=3), binary_eval("test"))
    assert_house_layout(fig)
    assert len(fig.data) == 3
    assert fig.data[0].name == "Cross-validated (development) — AUC 0.99 (0.97–1.00)"
    assert fig.data[1].name.startswith("Held-out test — AUC")
    assert fig.data[2].name.startswith("Chance")
    assert list(fig.data[2].x) == [0, 1] and list(fig.data[2].y) == [0, 1]
    assert axis_title(fig.layout.xaxis).startswith("1 − specificity")
    assert axis_title(fig.layout.yaxis).startswith("Sensitivity")


def test_roc_computes_curve_when_missing_and_external_label() -> None:
    ev = binary_eval("external", with_curves=False)
    fig = roc_figure(ev)
    assert fig.data[0].name.startswith("External — AUC")
    fpr, _, _ = roc_curve(ev.y_true, ev.y_score)
    assert len(fig.data[0].x) == len(fpr)


def test_roc_without_ci_omits_interval() -> None:
    ev = binary_eval()
    ev.metrics["roc_auc"] = MetricValue(0.9, (float("nan"), float("nan")))
    assert roc_figure(ev).data[0].name == "Held-out test — AUC 0.90"


def test_roc_multiclass_one_vs_rest() -> None:
    ev = multiclass_eval()
    fig = roc_figure(ev)
    assert len(fig.data) == 3 + 1
    assert fig.data[0].name.startswith("Cross-validated (development) · class 0 vs rest — AUC")


def test_roc_downsamples_long_curves() -> None:
    n = 60_000
    x = np.linspace(0, 1, n)
    ev = binary_eval()
    long = Evaluation(**{**ev.__dict__, "roc": Curve(x, np.sqrt(x), x[::-1], "fpr", "tpr")})
    fig = roc_figure(long)
    assert count_points(fig.data[0]) <= MAX_POINTS
    assert fig.data[0].x[0] == 0 and fig.data[0].x[-1] == 1


def test_roc_needs_an_evaluation() -> None:
    with pytest.raises(ConfigError, match="needs at least one Evaluation"):
        roc_figure()


def test_pr_has_prevalence_lines() -> None:
    ev = binary_eval("test")
    fig = pr_figure(binary_eval("cv", seed=4), ev)
    assert_house_layout(fig)
    assert len(fig.data) == 4
    assert fig.data[2].name == "Held-out test — PR AUC 0.95 (0.90–0.98)"
    prevalence = fig.data[3]
    assert "Prevalence" in prevalence.name
    assert np.allclose(prevalence.y, ev.y_true.mean())
    assert axis_title(fig.layout.xaxis) == "Sensitivity (recall)"
    assert axis_title(fig.layout.yaxis) == "PPV (precision)"


def test_pr_multiclass_and_missing_curve() -> None:
    fig = pr_figure(multiclass_eval())
    assert len(fig.data) == 6
    fig = pr_figure(binary_eval(with_curves=False))
    assert len(fig.data) == 2
    assert max(fig.data[0].x) == 1.0


def test_calibration_has_diagonal_and_brier_legend() -> None:
    fig = calibration_figure(binary_eval("cv", seed=5), binary_eval("test"))
    assert_house_layout(fig)
    assert len(fig.data) == 3
    assert fig.data[1].name == "Held-out test — Brier 0.041 (0.031–0.052)"
    assert fig.data[2].name == "Perfect calibration"
    assert axis_title(fig.layout.xaxis) == "Predicted probability of malignant"
    assert axis_title(fig.layout.yaxis) == "Observed frequency of malignant"


def test_calibration_multiclass_and_computed() -> None:
    assert len(calibration_figure(multiclass_eval()).data) == 4
    assert len(calibration_figure(binary_eval(with_curves=False)).data) == 2


def test_threshold_figure_traces_and_line() -> None:
    ev = binary_eval()
    fig = threshold_figure(ev, threshold=0.3)
    assert_house_layout(fig)
    assert [t.name for t in fig.data] == ["Sensitivity", "Specificity", "PPV", "NPV"]
    assert fig.layout.shapes[0].x0 == 0.3
    assert "probability of malignant" in axis_title(fig.layout.xaxis)


def test_threshold_fallback_matches_counts() -> None:
    ev = binary_eval()
    table = plots._tradeoff_fallback(ev.y_true, ev.y_score, 101)
    row = table.iloc[50]
    assert row["threshold"] == pytest.approx(0.5)
    (tn, fp), (fn, tp) = ev.confusion
    assert row["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert row["specificity"] == pytest.approx(tn / (tn + fp))
    assert row["ppv"] == pytest.approx(tp / (tp + fp))
    assert row["npv"] == pytest.approx(tn / (tn + fn))
    assert np.isnan(table["ppv"].iloc[-1]) or table["ppv"].iloc[-1] >= 0


def test_threshold_figure_rejects_multiclass() -> None:
    with pytest.raises(ConfigError, match="needs a two-class evaluation; this one has 3 classes"):
        threshold_figure(multiclass_eval())
    with pytest.raises(ConfigError, match=r"between 0 and 1, got 1\.5"):
        threshold_figure(binary_eval(), threshold=1.5)


def test_importance_shows_the_top_features_and_names_the_rest_in_the_title() -> None:
    exp = make_explanation(n_features=20)
    fig = importance_figure(exp, max_display=5)
    assert_house_layout(fig)
    assert len(fig.data) == 1
    bar = fig.data[0]
    assert len(bar.y) == 5
    assert "top 5 of 20 features" in fig.layout.title.text
    assert list(bar.y)[-1] == "feature 0"
    assert bar.x[-1] == pytest.approx(exp.global_importance().iloc[0])
    assert axis_title(fig.layout.xaxis) == "Mean |SHAP value| (log-odds of malignant)"


def test_beeswarm_rows_colours_and_cap() -> None:
    exp = make_explanation(n=2_000, n_features=20)
    fig = beeswarm_figure(exp, max_display=8)
    assert_house_layout(fig)
    assert len(fig.data) == 1
    points = fig.data[0]
    assert count_points(points) <= MAX_POINTS
    assert list(fig.layout.yaxis.ticktext)[-1] == "feature 0"
    assert len(fig.layout.yaxis.ticktext) == 8
    colour = np.asarray(points.marker.color)
    assert colour.min() == 0 and colour.max() == 1
    assert "SHAP value" in axis_title(fig.layout.xaxis)
    again = beeswarm_figure(exp, max_display=8)
    assert np.array_equal(np.asarray(again.data[0].y), np.asarray(points.y))


def test_beeswarm_high_value_is_red_end() -> None:
    exp = make_explanation(n=100, n_features=3)
    fig = beeswarm_figure(exp, max_display=1)
    colour = np.asarray(fig.data[0].marker.color)
    values = exp.data["feature 0"].to_numpy()
    assert colour[np.argmax(values)] == 1 and colour[np.argmin(values)] == 0
    assert fig.data[0].marker.colorscale[-1][1] == plots._SHAP_RED


def test_beeswarm_missing_values_in_grey_trace() -> None:
    exp = make_explanation(n=30, n_features=3)
    exp.data.iloc[0, 0] = np.nan
    fig = beeswarm_figure(exp)
    assert len(fig.data) == 2
    assert count_points(fig.data[1]) == 1
    assert count_points(fig.data[0]) + count_points(fig.data[1]) == 90


def test_beeswarm_downsamples_many_cases() -> None:
    exp = make_explanation(n=25_000, n_features=2)
    fig = beeswarm_figure(exp)
    assert count_points(fig.data[0]) == MAX_POINTS


def test_waterfall_cumulative_end_equals_output() -> None:
    exp = make_explanation(n=5, n_features=20)
    case = exp.case(2)
    fig = waterfall_figure(case, max_display=6)
    assert_house_layout(fig)
    assert len(fig.data) == 1
    trace = fig.data[0]
    measure = list(trace.measure)
    assert measure[0] == "absolute" and measure[-1] == "total"
    x = np.asarray(trace.x, dtype=float)
    relative = x[[m == "relative" for m in measure]]
    assert len(relative) == 7
    assert x[0] + relative.sum() == pytest.approx(case.output)
    assert x[-1] == pytest.approx(case.base_value + case.values.sum())
    assert "other 14 features" in trace.y
    assert axis_title(fig.layout.xaxis) == "Log-odds of malignant"
    top = trace.y[-2]
    biggest = case.values.abs().idxmax()
    assert top.startswith(f"{biggest} = ")
    assert trace.increasing.marker.color == plots._SHAP_RED
    assert trace.decreasing.marker.color == plots._SHAP_BLUE


def test_waterfall_labels_use_readable_values_and_threshold() -> None:
    exp = make_explanation(n=2, n_features=3, output_space="probability")
    exp.data.iloc[0, 0] = 1203.4
    fig = waterfall_figure(exp.case(0), threshold=0.4)
    assert "feature 0 = 1,203" in fig.data[0].y
    assert fig.layout.shapes[0].x0 == 0.4
    assert axis_title(fig.layout.xaxis) == "Probability of malignant"
    no_line = waterfall_figure(make_explanation(n=2, n_features=3).case(0), threshold=0.4)
    assert len(no_line.layout.shapes) == 0


def test_dependence_figure() -> None:
    exp = make_explanation(n=40, n_features=4)
    fig = dependence_figure(exp, "feature 1")
    assert_house_layout(fig)
    assert len(fig.data) == 1
    assert np.allclose(fig.data[0].y, exp.values[:, 1])
    assert axis_title(fig.layout.xaxis) == "feature 1"
    assert "SHAP value" in axis_title(fig.layout.yaxis)
    with pytest.raises(ConfigError, match="Feature 'nope' is not in this explanation"):
        dependence_figure(exp, "nope")


def test_dependence_downsamples() -> None:
    exp = make_explanation(n=12_000, n_features=2)
    assert count_points(dependence_figure(exp, "feature 0").data[0]) == MAX_POINTS


def cleaning_report() -> CleaningReport:
    data = pd.DataFrame({"a": range(540)})
    removed = pd.DataFrame({"a": range(29), "reason": ["missing values"] * 20 + ["duplicate"] * 9})
    return CleaningReport(
        data=data,
        removed=removed,
        counts={"missing label": 0, "missing values": 20, "duplicate": 9},
        conflicts=pd.DataFrame(),
        flags=pd.DataFrame(),
        dropped_columns={},
        n_input=569,
        plan=CleaningPlan(),
    )


def test_cleaning_figure() -> None:
    fig = cleaning_figure(cleaning_report())
    assert_house_layout(fig)
    assert len(fig.data) == 1
    assert list(fig.data[0].x) == [9, 20, 0]
    assert "569 in, 540 kept" in fig.layout.title.text
    assert fig.data[0].text[1] == "20 (3.5%)"


def test_flow_figure_from_result_objects() -> None:
    split = SplitSummary(
        grouped_by=None,
        n_dev=432,
        n_test=108,
        patients_dev=None,
        patients_test=None,
        class_counts_dev={},
        class_counts_test={},
        cv_folds=5,
        test_size=0.2,
    )
    counts = flow_counts(cleaning_report(), split)
    assert counts == {
        "rows in": 569,
        "missing label": 0,
        "missing values": 20,
        "duplicate": 9,
        "development": 432,
        "test": 108,
    }
    fig = flow_figure(counts)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Sankey)
    labels = list(fig.data[0].node.label)
    assert labels[0] == "Rows in<br>569"
    assert "Development<br>432" in labels and "Test<br>108" in labels
    assert sum(fig.data[0].link.value) == 20 + 9 + 540 + 432 + 108
    assert "missing label" in fig.layout.title.subtitle.text


def test_flow_figure_rejects_counts_that_do_not_add_up() -> None:
    with pytest.raises(DataError, match="569 rows in − 29 removed = 540, but development"):
        flow_figure({"rows in": 569, "missing values": 29, "development": 400, "test": 100})
    with pytest.raises(DataError, match="negative"):
        flow_figure({"rows in": -1})
    fig = flow_figure({"duplicate": 5, "development": 80, "test": 20})
    assert fig.data[0].node.label[0] == "Rows in<br>105"


def leaderboard() -> tuple[LeaderboardRow, ...]:
    return (
        LeaderboardRow("logreg", MetricValue(0.995, (0.99, 0.999)), MetricValue(0.97, (0.95, 0.98)), (0.99, 1.0, 0.995), 1.2, True),
        LeaderboardRow("rf", MetricValue(0.99, (0.98, 0.995)), MetricValue(0.96, (0.94, 0.98)), (0.98, 0.99), 3.4, False),
        LeaderboardRow("knn", MetricValue(0.97, (0.95, 0.985)), MetricValue(0.93, (0.9, 0.95)), (), 0.5, False),
    )  # fmt: skip


def test_leaderboard_highlights_chosen() -> None:
    fig = leaderboard_figure(leaderboard())
    assert_house_layout(fig)
    assert [t.name for t in fig.data] == ["Other candidates", "Chosen model", "Single folds"]
    assert list(fig.data[1].y) == ["Logistic regression"]
    assert list(fig.layout.yaxis.categoryarray)[-1] == "Logistic regression"
    assert fig.data[1].error_x.arrayminus[0] == pytest.approx(0.005)
    assert len(fig.data[2].x) == 5
    assert "ROC AUC" in axis_title(fig.layout.xaxis)
    with pytest.raises(ConfigError, match="leaderboard is empty"):
        leaderboard_figure(())


def test_distribution_numeric_is_binned_and_compact() -> None:
    s = pd.Series(np.random.default_rng(0).normal(size=50_000))
    s.iloc[:7] = np.nan
    fig = distribution_figure(s)
    assert fig.layout.height == 120
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Bar)
    assert len(fig.data[0].x) <= 30
    assert sum(fig.data[0].y) == 50_000 - 7
    assert fig.layout.annotations[0].text == "7 missing"


def test_distribution_text_top_ten() -> None:
    s = pd.Series([f"site {i}" for i in range(15) for _ in range(i + 1)])
    fig = distribution_figure(s)
    assert len(fig.data[0].x) == 11
    assert fig.data[0].x[0] == "site 14"
    assert fig.data[0].x[-1] == "other (5)"


def test_distribution_dates_and_empty() -> None:
    dates = pd.Series(pd.date_range("2020-01-01", periods=400, freq="D"))
    assert len(distribution_figure(dates).data) == 1
    empty = distribution_figure(pd.Series([np.nan, np.nan]))
    assert len(empty.data) == 0
    assert empty.layout.annotations[0].text == "all values missing"


def test_class_balance_percentages() -> None:
    labels = pd.Series(["benign"] * 357 + ["malignant"] * 212)
    fig = class_balance_figure(labels)
    assert_house_layout(fig)
    assert list(fig.data[0].x) == ["benign", "malignant"]
    assert list(fig.data[0].text) == ["357 (62.7%)", "212 (37.3%)"]
    assert "569 cases" in fig.layout.title.text


def test_case_probability_gauge() -> None:
    fig = case_probability_figure(0.83, 0.4, class_name="malignant")
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Indicator)
    indicator = fig.data[0]
    assert indicator.value == 0.83
    assert indicator.gauge.threshold.value == 0.4
    assert indicator.gauge.shape == "bullet"
    assert fig.layout.annotations[0].text.startswith("Called malignant")
    assert indicator.gauge.bar.color == plots._SHAP_RED
    below = case_probability_figure(0.1, 0.4, class_name="malignant")
    assert below.layout.annotations[0].text.startswith("Not called malignant")
    with pytest.raises(DataError, match=r"probability must be a number between 0 and 1, got 1\.2"):
        case_probability_figure(1.2, 0.5, class_name="malignant")


@pytest.mark.parametrize(
    "build",
    [
        lambda: roc_figure(binary_eval()),
        lambda: pr_figure(binary_eval()),
        lambda: calibration_figure(binary_eval()),
        lambda: threshold_figure(binary_eval()),
        lambda: importance_figure(make_explanation()),
        lambda: beeswarm_figure(make_explanation()),
        lambda: waterfall_figure(make_explanation().case(0)),
        lambda: confusion_figure(np.eye(2, dtype=int), ("a", "b")),
        lambda: leaderboard_figure(leaderboard()),
    ],
)
def test_fixed_height_and_short_title(build: object) -> None:
    fig = build()  # type: ignore[operator]
    assert 300 <= fig.layout.height <= 600
    assert fig.layout.template.layout.font is not None
    title = re.sub(r"<[^>]+>", "", fig.layout.title.text or "")
    assert 0 < len(title) <= 60


def test_figures_accept_evaluate_scores_output() -> None:
    evaluation = pytest.importorskip("medimg_core.modelling.evaluation")
    if not hasattr(evaluation, "evaluate_scores"):
        pytest.skip("evaluation.evaluate_scores is not written yet")
    synthetic = binary_eval(n=200)
    ev = evaluation.evaluate_scores(
        synthetic.y_true,
        synthetic.y_score,
        class_names=("benign", "malignant"),
        positive_class="malignant",
        partition="test",
        n_boot=50,
    )
    assert roc_figure(ev).data[0].name.startswith("Held-out test — AUC")
    assert len(pr_figure(ev).data) == 2
    calibration = calibration_figure(ev)
    assert "Brier" in calibration.data[0].name
    assert len(threshold_figure(ev).data) == 4
    assert len(confusion_figure(ev.confusion, ev.class_names).layout.annotations) == 4
