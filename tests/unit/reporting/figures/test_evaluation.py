"""Validation figures: confusion matrix, ROC, PR, calibration, threshold, leaderboard, gauge."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
from sklearn.metrics import roc_curve

from medimg_core.errors import ConfigError, DataError
from medimg_core.modelling.evaluation import Curve, Evaluation, MetricValue
from medimg_core.reporting.figures._style import MAX_POINTS, SHAP_RED
from medimg_core.reporting.figures.evaluation import (
    _tradeoff_fallback,
    calibration_figure,
    case_probability_figure,
    confusion_figure,
    leaderboard_figure,
    pr_figure,
    roc_figure,
    threshold_figure,
)
from tests.unit.reporting.figures.conftest import (
    assert_house_layout,
    axis_title,
    binary_eval,
    count_points,
    leaderboard,
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


def cell(fig: go.Figure, true: object, predicted: object) -> tuple[float, str]:
    """The heatmap's value and text in the cell labelled (true, predicted), found by label."""
    heatmap = fig.data[0]
    i = [str(v) for v in heatmap.y].index(str(true))
    j = [str(v) for v in heatmap.x].index(str(predicted))
    return float(np.asarray(heatmap.z)[i][j]), str(np.asarray(heatmap.text)[i][j])


def test_confusion_cells_equal_counts() -> None:
    confusion = np.array([[70, 3], [5, 1234]])
    fig = confusion_figure(confusion, ("benign", "malignant"))
    assert_house_layout(fig)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Heatmap)
    assert cell(fig, "benign", "benign") == (70, "70")
    assert cell(fig, "malignant", "malignant") == (1234, "1,234")
    assert axis_title(fig.layout.xaxis) == "Predicted"
    assert axis_title(fig.layout.yaxis) == "True diagnosis"
    assert list(fig.data[0].x) == ["benign", "malignant"]
    assert "TP" in fig.data[0].customdata[1][1]


NUMERIC_LABELS = [
    pytest.param(["2", "4"], ("2", "4"), id="strings-2-4"),
    pytest.param(["4", "2"], ("4", "2"), id="strings-4-2"),
    pytest.param(["0", "1"], ("0", "1"), id="strings-0-1"),
    pytest.param(["1", "0"], ("1", "0"), id="strings-1-0-breastmnist"),
    pytest.param([0, 1], (0, 1), id="ints-0-1"),
    pytest.param([1, 0], (1, 0), id="ints-1-0"),
    pytest.param([0.0, 1.0], (0.0, 1.0), id="floats-0-1"),
    pytest.param([np.int64(4), np.int64(2)], (np.int64(4), np.int64(2)), id="numpy-ints"),
    pytest.param(["10", "2", "33"], ("10", "2", "33"), id="digit-strings-3-classes"),
    pytest.param([3, 1, 2], (3, 1, 2), id="ints-3-classes-unsorted"),
]


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize(("labels", "class_names"), NUMERIC_LABELS)
def test_confusion_numeric_labels_are_names_not_positions(
    labels: list[object], class_names: tuple[object, ...], normalize: bool
) -> None:
    # Counts computed independently of medimg from made-up predictions, every cell distinct.
    rng = np.random.default_rng(7)
    k = len(labels)
    y_true = rng.choice(
        np.array(labels, dtype=object), size=400, p=np.arange(1, k + 1) / sum(range(1, k + 1))
    )
    y_pred = np.where(
        rng.random(400) < 0.7, y_true, rng.choice(np.array(labels, dtype=object), size=400)
    )
    counts = {(a, b): int(np.sum((y_true == a) & (y_pred == b))) for a in labels for b in labels}
    matrix = np.array([[counts[(a, b)] for b in labels] for a in labels])
    fig = confusion_figure(matrix, class_names, normalize=normalize)
    names = [str(c) for c in class_names]
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert axis.type == "category"
        assert axis.categoryorder == "array"
        assert list(axis.categoryarray) == names
    assert list(fig.data[0].x) == names and list(fig.data[0].y) == names
    assert all(isinstance(v, str) for v in (*fig.data[0].x, *fig.data[0].y))
    for a in labels:
        row_total = sum(counts[(a, b)] for b in labels)
        for b in labels:
            z, text = cell(fig, a, b)
            n = counts[(a, b)]
            assert text.split("<br>")[0] == f"{n:,}"
            assert z == pytest.approx(n / row_total if normalize else n)
            assert f"True diagnosis: {a}<br>Predicted: {b}" in str(
                np.asarray(fig.data[0].customdata)[names.index(str(a))][names.index(str(b))]
            )
    # Nothing is placed at data coordinates: plotly reads x="1" on a category axis as position 1.
    assert not [
        ann
        for ann in fig.layout.annotations
        if (ann.xref or "x") == "x" or (ann.yref or "y") == "y"
    ]


def test_confusion_names_equal_as_text_are_refused() -> None:
    with pytest.raises(DataError, match=r"same name \(1\) once written as text"):
        confusion_figure(np.eye(2, dtype=int), (1, "1"))


def test_confusion_normalised_shows_counts_and_row_shares() -> None:
    confusion = np.array([[30, 10], [0, 0]])
    fig = confusion_figure(confusion, ("a", "b"), normalize=True)
    assert cell(fig, "a", "a")[1] == "30<br>75.0%"
    assert cell(fig, "b", "b")[1] == "0<br>0.0%"
    assert "row-normalised: share of each true class" in fig.layout.title.subtitle.text
    assert np.allclose(np.asarray(fig.data[0].z), [[0.75, 0.25], [0, 0]])


def test_confusion_multiclass_is_k_by_k() -> None:
    ev = multiclass_eval()
    fig = confusion_figure(ev.confusion, ev.class_names)
    texts = np.asarray(fig.data[0].text)
    assert texts.shape == (3, 3)
    first = [int(t.replace(",", "")) for t in texts.ravel()]
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
    table = _tradeoff_fallback(ev.y_true, ev.y_score, 101)
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


def test_case_probability_gauge() -> None:
    fig = case_probability_figure(0.83, 0.4, class_name="malignant")
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Indicator)
    indicator = fig.data[0]
    assert indicator.value == 0.83
    assert indicator.gauge.threshold.value == 0.4
    assert indicator.gauge.shape == "bullet"
    assert fig.layout.annotations[0].text.startswith("Called malignant")
    assert indicator.gauge.bar.color == SHAP_RED
    below = case_probability_figure(0.1, 0.4, class_name="malignant")
    assert below.layout.annotations[0].text.startswith("Not called malignant")
    with pytest.raises(DataError, match=r"probability must be a number between 0 and 1, got 1\.2"):
        case_probability_figure(1.2, 0.5, class_name="malignant")


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
    assert np.asarray(confusion_figure(ev.confusion, ev.class_names).data[0].text).size == 4


def test_leaderboard_axis_title_fits_a_narrow_column() -> None:
    fig = leaderboard_figure(leaderboard())
    lines = axis_title(fig.layout.xaxis).split("<br>")
    assert lines[0] == "Cross-validated ROC AUC" and len(lines) == 2
    assert max(len(line) for line in lines) <= 24
    assert fig.layout.margin.b >= 50 and fig.layout.margin.r >= 15
