"""The Runs page's "Compare two runs" section: two runs trained on the sample, compared paired."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.access import SINGLE_USER
from medimg_core.cli import main as cli_main
from medimg_core.modelling.paired import compare_paired
from medimg_core.store.cases import load_cases
from medimg_core.store.registry import Registry, RunRecord
from medimg_core.ui.paired import RESULT_KEY

from .conftest import metric_values

PAGE = "pages/runs.py"
FAST = ["--cv", "3", "--n-boot", "50", "--seed", "5"]


def _train(home: Path, kind: str, *extra: str) -> RunRecord:
    out = home.parent / "models" / f"{kind}{len(list(home.parent.glob('models/*')))}"
    argv = ["train", "sample:wdbc", "--model", kind, *FAST, *extra, "-o", str(out)]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert cli_main(argv) == 0
    return Registry().list_runs(SINGLE_USER)[0]


def _expected(a: RunRecord, b: RunRecord, partition: str) -> tuple[float, float, float, float]:
    """AUC A, AUC B, difference and p-value from the stored cases, matched by row key."""
    cases_a, cases_b = load_cases(a.model_dir), load_cases(b.model_dir)
    stored = "test" if partition == "test" else "development"
    part_a = cases_a[cases_a["partition"] == stored]
    part_b = cases_b.loc[part_a.index]
    result = compare_paired(
        (part_a["diagnosis"] == "malignant").to_numpy(dtype=int),
        part_a["p_positive"],
        part_b["p_positive"],
        partition=partition,
    )
    return result.value_a.value, result.value_b.value, result.difference.value, result.p_value


def test_two_runs_on_the_same_split_are_compared(
    open_app: Callable[..., AppTest], app_env: Path
) -> None:
    logreg = _train(app_env, "logreg")
    knn = _train(app_env, "knn")
    at = open_app(PAGE)
    assert not at.exception
    assert at.selectbox(key="paired_a").value == logreg.id  # the older run is A
    assert at.selectbox(key="paired_b").value == knn.id
    labels = at.selectbox(key="paired_b").options
    assert any("k-nearest" in o.lower() and knn.id in o for o in labels)
    at.button(key="paired_go").click().run()
    assert not at.exception
    auc_a, auc_b, diff, p = _expected(logreg, knn, "test")
    shown = metric_values(at)
    assert shown["ROC AUC, run A"] == f"{auc_a:.3f}"
    assert shown["ROC AUC, run B"] == f"{auc_b:.3f}"
    assert shown["Difference (B − A)"] == f"{diff:+.3f}".replace("-", "−")
    assert at.session_state[RESULT_KEY][1].p_value == pytest.approx(p)
    sentence = [
        m.value for m in [*at.info, *at.success] if "ROC AUC is" in m.value or "equals" in m.value
    ]
    assert sentence and "test cases" in sentence[0] and "DeLong" in sentence[0]
    text = " ".join(m.value for m in at.markdown)
    assert "**Method:** DeLong test for two correlated ROC AUCs" in text
    assert "malignant, the positive class" in text
    assert any("selection" in c.value for c in at.caption)
    (rates,) = [d.value for d in at.dataframe if "Metric" in d.value.columns]
    assert list(rates["Metric"]) == ["Sensitivity for malignant", "Specificity for malignant"]
    cases_a = load_cases(logreg.model_dir)
    test_a = cases_a[cases_a["partition"] == "test"]
    positive = (test_a["diagnosis"] == "malignant").to_numpy()
    sens_a = (test_a["p_positive"][positive] >= logreg.threshold).mean()
    assert rates[f"Run A (threshold {logreg.threshold:.3f})"].iloc[0].startswith(f"{sens_a:.3f} (")

    at.radio(key="paired_partition").set_value("cv").run()
    assert "ROC AUC, run A" not in metric_values(at)  # the test result is not shown for cv
    at.button(key="paired_go").click().run()
    assert not at.exception
    auc_a, auc_b, _, _ = _expected(logreg, knn, "cv")
    assert metric_values(at)["ROC AUC, run B"] == f"{auc_b:.3f}"
    assert any("455 cross-validated" in m.value for m in [*at.info, *at.success])


def test_runs_on_another_split_are_refused_with_the_reason(
    open_app: Callable[..., AppTest], app_env: Path
) -> None:
    first = _train(app_env, "logreg")
    _train(app_env, "logreg", "--test-size", "0.3")
    at = open_app(PAGE)
    at.selectbox(key="paired_a").set_value(first.id).run()
    at.button(key="paired_go").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "different test split; retrain with the same seed and split" in errors[0]
    assert RESULT_KEY not in at.session_state


def test_one_run_explains_what_a_comparison_needs(
    open_app: Callable[..., AppTest], app_env: Path
) -> None:
    _train(app_env, "logreg")
    at = open_app(PAGE)
    assert not at.exception
    assert not [s for s in at.selectbox if s.key == "paired_a"]
    assert any("Train a second model on the same data" in c.value for c in at.caption)
