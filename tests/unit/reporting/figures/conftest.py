"""Inputs and checks shared by the figure tests: evaluations, explanations, a leaderboard."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve, roc_curve

from medimg_core.modelling.evaluation import Curve, Evaluation, MetricValue
from medimg_core.modelling.explain import Explanation
from medimg_core.modelling.selection import LeaderboardRow

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


def leaderboard() -> tuple[LeaderboardRow, ...]:
    return (
        LeaderboardRow("logreg", MetricValue(0.995, (0.99, 0.999)), MetricValue(0.97, (0.95, 0.98)), (0.99, 1.0, 0.995), 1.2, True),
        LeaderboardRow("rf", MetricValue(0.99, (0.98, 0.995)), MetricValue(0.96, (0.94, 0.98)), (0.98, 0.99), 3.4, False),
        LeaderboardRow("knn", MetricValue(0.97, (0.95, 0.985)), MetricValue(0.93, (0.9, 0.95)), (), 0.5, False),
    )  # fmt: skip


def axis_title(axis: go.layout.XAxis | go.layout.YAxis) -> str:
    return axis.title.text or ""


def assert_house_layout(fig: go.Figure) -> None:
    assert isinstance(fig, go.Figure)
    assert fig.layout.template.layout.paper_bgcolor == "white"
    assert fig.layout.height is not None
    assert fig.layout.font.size >= FONT_MIN


def count_points(trace: go.Scatter | go.Scattergl) -> int:
    return 0 if trace.x is None else len(trace.x)
