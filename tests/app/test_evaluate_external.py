"""The Evaluate page's external validation: upload a shifted copy of the sample, the evaluation
is recorded, the shift table and figure show the recorded SMDs, and a recalibrated version is
saved as a new run listed on the Runs page."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.access import SINGLE_USER
from medimg_core.store.registry import Registry
from medimg_core.tables.loading import load_sample
from medimg_core.ui import state

PAGE = "pages/evaluate.py"


def shifted_csv() -> bytes:
    frame = load_sample().frame.sample(150, random_state=2).reset_index(drop=True)
    frame["mean radius"] = frame["mean radius"] * 1.15
    return frame.to_csv(index=False).encode()


def test_external_validation_is_recorded_with_shift_and_recalibration(
    open_app: Callable[..., AppTest],
) -> None:
    at = open_app(PAGE)
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    run_id = at.session_state[state.ACTIVE].run_id
    assert run_id
    assert at.button(key="external_run").disabled  # nothing uploaded yet
    at.file_uploader(key="external_upload").set_value(
        ("site-b.csv", shifted_csv(), "text/csv")
    ).run()
    at.button(key="external_run").click().run()
    assert not at.exception and not at.error
    done = next(s.value for s in at.success if "recorded as evaluation" in s.value)
    found = re.search(r"150 cases, recorded as evaluation (\S+) of run (\S+)\.", done)
    assert found is not None and found.group(2) == run_id
    with Registry() as registry:
        (record,) = registry.list_evaluations(SINGLE_USER, run_id)
    assert record.id == found.group(1)
    assert record.dataset_name == "site-b.csv" and record.n == 150

    # The shift table: largest first, plain-language flag, the recorded SMD.
    table = next(d.value for d in at.dataframe if "in words" in d.value.columns)
    top = record.result["shift"][0]
    assert table["feature"].iloc[0] == "mean radius" == top["feature"]
    assert table["shift"].iloc[0] == "notable shift"
    assert table["SMD"].iloc[0] == pytest.approx(top["smd"])
    assert list(table["feature"]) == [s["feature"] for s in record.result["shift"]]
    # The figure shows the same numbers.
    chart = next(c for c in at.get("plotly_chart") if "Feature shift" in c.proto.spec)
    fig = json.loads(chart.proto.spec)
    bars = {y: x for trace in fig["data"] for x, y in zip(trace["x"], trace["y"], strict=True)}
    for row in record.result["shift"][:20]:
        assert bars[row["feature"]] == pytest.approx(row["smd"])
    # The external metrics column is the recorded one.
    metrics = next(d.value for d in at.dataframe if "external validation" in d.value.columns)
    auc = record.result["metrics"]["roc_auc"]
    lo, hi = auc["ci95"]
    assert metrics.loc["ROC AUC", "external validation"] == (
        f"{auc['value']:.3f} ({lo:.3f}–{hi:.3f})"
    )

    at.button(key="external_recalibrate").click().run()
    assert not at.exception and not at.error
    saved = next(s.value for s in at.success if s.value.startswith("Saved a recalibrated"))
    new_run = re.search(r"as run (\S+) in", saved).group(1)  # type: ignore[union-attr]
    with Registry() as registry:
        (record,) = registry.list_evaluations(SINGLE_USER, run_id)
        child = registry.get_run(SINGLE_USER, new_run)
    assert record.recalibrated_run_id == new_run
    assert child.card["recalibrated_from"] == run_id

    at.switch_page("pages/runs.py").run()
    assert not at.exception
    at.selectbox(key="runs_pick").set_value(run_id).run()
    history = next(d.value for d in at.dataframe if "recalibrated run" in d.value.columns)
    assert list(history["evaluation"]) == [record.id]
    assert history["recalibrated run"].iloc[0] == new_run
    assert history["file"].iloc[0] == "site-b.csv"
