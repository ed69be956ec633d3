"""Tests for medimg_core.reporting.comparison: saved runs side by side, with their caveats."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medimg_core.errors import ConfigError
from medimg_core.reporting.comparison import (
    SELECTION_NOTE,
    comparison_figure,
    comparison_notes,
    run_label,
    runs_frame,
    selection_note,
)
from medimg_core.store.registry import RunRecord


def _metric(value: float, lo: float, hi: float) -> dict[str, Any]:
    return {"value": value, "ci95": [lo, hi]}


def _run(
    run_id: str,
    kind: str,
    *,
    cv: float,
    test: float | None,
    data: str = "abc123",
    positive: Any = "malignant",
) -> RunRecord:
    metrics: dict[str, Any] = {"cv": {"roc_auc": _metric(cv, cv - 0.02, cv + 0.01)}}
    if test is not None:
        metrics["test"] = {
            "roc_auc": _metric(test, test - 0.05, min(1.0, test + 0.03)),
            "sensitivity": _metric(0.9, 0.8, 0.95),
            "specificity": _metric(0.95, 0.9, 0.98),
        }
    return RunRecord(
        id=run_id,
        created_at=datetime(2026, 11, 30, 10, 32, tzinfo=UTC),
        dataset_name="wdbc",
        dataset_hash=data * 8,
        label="diagnosis",
        model_kind=kind,
        positive_class=positive,
        n_rows=569,
        metrics=metrics,
        config={},
        plan={},
        versions={},
        seed=0,
        model_dir=Path("/nowhere"),
        card={"metrics": metrics, "threshold": {"value": 0.42}},
    )


def test_label_and_frame_show_each_run_with_its_intervals() -> None:
    runs = [_run("r1", "rf", cv=0.99, test=0.97), _run("r2", "logreg", cv=0.995, test=None)]
    assert run_label(runs[0]) == "Random forest · wdbc · 2026-11-30 10:32"
    frame = runs_frame(runs)
    assert list(frame["Run"]) == ["r1", "r2"]
    assert frame.loc[0, "Threshold"] == "0.420"
    assert frame.loc[0, "CV ROC AUC (95% CI)"].startswith("0.990")
    assert "0.970" in frame.loc[0, "Test ROC AUC (95% CI)"]
    assert frame.loc[1, "Rows"] == 569


def test_notes_say_when_runs_are_not_comparable() -> None:
    same = [_run("a", "rf", cv=0.9, test=0.9), _run("b", "hgb", cv=0.9, test=0.9)]
    assert comparison_notes(same) == (SELECTION_NOTE,)
    other = [*same, _run("c", "rf", cv=0.9, test=0.9, data="zzz999", positive="benign")]
    notes = comparison_notes(other)
    assert len(notes) == 3
    assert "different data" in notes[1] and "different classes positive" in notes[2]


def test_choosing_among_runs_on_one_test_set_is_labelled_a_selection_step() -> None:
    same = [_run("a", "rf", cv=0.9, test=0.91), _run("b", "hgb", cv=0.9, test=0.95)]
    assert selection_note(same) == SELECTION_NOTE
    assert comparison_notes(same)[0] == (
        "Choosing among runs by their test results uses the test set for selection: the "
        "chosen run's test figures are then optimistic; report the chosen run on new data."
    )
    names = [trace.name for trace in comparison_figure(same).data]
    assert names[1] == "Held-out test (choosing a run by it is a selection step)"
    assert [t.name for t in comparison_figure(same[:1]).data][1] == "Held-out test"
    # One run, runs on different data, or runs without a test set select nothing.
    assert selection_note(same[:1]) is None
    assert selection_note([same[0], _run("c", "rf", cv=0.9, test=0.9, data="zzz999")]) is None
    assert selection_note([same[0], _run("d", "rf", cv=0.9, test=None)]) is None


def test_figure_plots_the_numbers_of_the_cards() -> None:
    runs = [_run("r1", "rf", cv=0.99, test=0.97), _run("r2", "logreg", cv=0.95, test=None)]
    fig = comparison_figure(runs)
    cv, test = fig.data
    assert cv.name == "Cross-validated (development)" and test.name == "Held-out test"
    np.testing.assert_allclose(cv.x, [0.99, 0.95])
    np.testing.assert_allclose(cv.error_x.arrayminus, [0.02, 0.02])
    np.testing.assert_allclose(test.x[:1], [0.97])
    assert np.isnan(test.x[1])
    assert list(cv.y) == ["Random forest · r1", "Logistic regression · r2"]
    low, high = fig.layout.xaxis.range
    assert low < 0.92 and high > 1.0
    with pytest.raises(ConfigError, match="at least one saved run"):
        comparison_figure([])
