"""The Evaluate page: guard, metrics with intervals, the threshold fragment, multi-class, runs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.modelling.decision import decision_curve, net_benefit_at
from medimg_core.modelling.evaluation import METRIC_KEYS, metric_label
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store.persistence import build_card
from medimg_core.tables.roles import Roles
from medimg_core.ui import state
from medimg_core.ui.session import ActiveModel

from .conftest import as_int, finish_training

PAGE = "pages/evaluate.py"


def evaluated(open_app: Callable[..., AppTest]) -> AppTest:
    """The Evaluate page after the guard's sample button trained the sample model."""
    at = open_app(PAGE)
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    return at


def called_positive(at: AppTest) -> str:
    """ "157 of 455": the "Called positive" figure and the number of cases under it."""
    count = next(str(m.value) for m in at.metric if m.label == "Called positive")
    shown = next(c.value for c in at.caption if c.value.startswith("of ") and "cases" in c.value)
    return f"{count} {shown.removesuffix(' cases')}"


def test_guard_without_a_model_offers_the_sample(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    assert not at.exception
    assert at.info and "no data yet" in at.info[0].value
    assert not at.get("plotly_chart")
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    assert at.session_state[state.ACTIVE] is not None
    assert at.subheader[0].value == "Metrics"


def test_metrics_plots_and_flow_are_shown(open_app: Callable[..., AppTest]) -> None:
    at = evaluated(open_app)
    assert not at.error
    table = at.dataframe[0].value
    assert list(table.index) == [metric_label(k, "malignant") for k in METRIC_KEYS]
    assert "NPV for malignant" in table.index
    assert any("cross-validated" in c for c in table.columns)
    assert any("held-out test" in c for c in table.columns)
    assert all("–" in cell for cell in table.loc["ROC AUC"])
    assert any("Positive class: malignant" in c.value for c in at.caption)
    # confusion (counts with shares), trade-off, ROC, PR, calibration, decision curve, flow, folds
    assert len(at.get("plotly_chart")) == 8
    assert any(e.label == "What the metrics mean" for e in at.expander)
    assert any("Go to Explain" in link.label for link in at.get("page_link"))


def test_the_slider_moves_the_confusion_numbers(open_app: Callable[..., AppTest]) -> None:
    at = evaluated(open_app)
    active = at.session_state[state.ACTIVE]
    saved = active.model.threshold
    before = called_positive(at)
    assert at.slider(key="eval_threshold").value == pytest.approx(saved)

    at.slider(key="eval_threshold").set_value(0.95).run()
    assert not at.exception
    after = called_positive(at)
    assert as_int(after.split(" of ")[0]) < as_int(before.split(" of ")[0])
    assert after.endswith(f"of {active.cv.n:,}")
    assert at.session_state[state.THRESHOLD] == pytest.approx(0.95)
    deltas = [m.delta for m in at.metric if m.label == "Sensitivity"]
    assert deltas and deltas[0] is not None

    at.radio(key="eval_partition").set_value("test").run()
    assert called_positive(at).endswith(f"of {active.test.n:,}")

    at.button(key="eval_reset").click().run()
    assert at.slider(key="eval_threshold").value == pytest.approx(saved)


def test_the_figures_after_a_move_show_the_new_thresholds_counts(
    open_app: Callable[..., AppTest],
) -> None:
    at = evaluated(open_app)
    active = at.session_state[state.ACTIVE]
    for threshold in (0.95, 0.2):
        at.slider(key="eval_threshold").set_value(threshold).run()
        assert not at.exception
        charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        matrix = next(
            f for f in charts if f"Counts at {threshold:.2f}" in f["layout"]["title"]["text"]
        )
        y_true, y_score = np.asarray(active.cv.y_true), np.asarray(active.cv.y_score)
        called = y_score >= threshold
        expected = [
            [int(np.sum(~called & (y_true == 0))), int(np.sum(called & (y_true == 0)))],
            [int(np.sum(~called & (y_true == 1))), int(np.sum(called & (y_true == 1)))],
        ]
        cells = [
            [int(cell.split("<br>")[0].replace(",", "")) for cell in row]
            for row in matrix["data"][0]["text"]
        ]
        assert cells == expected
        shown = next(str(m.value) for m in at.metric if m.label == "Called positive")
        assert as_int(shown) == expected[0][1] + expected[1][1]
        tradeoff = next(f for f in charts if f["layout"]["title"]["text"].startswith("Trade-off"))
        assert [s["x0"] for s in tradeoff["layout"]["shapes"]] == [pytest.approx(threshold)]
        assert tradeoff["layout"]["annotations"][0]["text"] == f"threshold {threshold:.2f}"


def test_the_threshold_explorer_opens_on_development_cases(
    open_app: Callable[..., AppTest],
) -> None:
    at = evaluated(open_app)
    active = at.session_state[state.ACTIVE]
    assert at.radio(key="eval_partition").value == "cv"
    assert called_positive(at).endswith(f"of {active.cv.n:,}")
    assert not any("optimistic" in w.value for w in at.warning)


def test_choosing_the_threshold_on_the_test_set_warns(open_app: Callable[..., AppTest]) -> None:
    at = evaluated(open_app)
    # Moving the threshold on the development cases is the intended use: no warning.
    at.slider(key="eval_threshold").set_value(0.7).run()
    assert not any("optimistic" in w.value for w in at.warning)
    assert at.session_state[state.THRESHOLD_SOURCE] == "cv"
    # Viewing the test cases with that threshold is fine too.
    at.radio(key="eval_partition").set_value("test").run()
    assert not any("optimistic" in w.value for w in at.warning)
    # Moving it while viewing the test cases is choosing it on the test set.
    at.slider(key="eval_threshold").set_value(0.3).run()
    assert not at.exception
    warnings = [w.value for w in at.warning if "optimistic" in w.value]
    assert warnings and "held-out test cases" in warnings[0]
    assert at.session_state[state.THRESHOLD_SOURCE] == "test"
    # Back to the saved threshold: nothing was chosen on the test set any more.
    at.button(key="eval_reset").click().run()
    assert not any("optimistic" in w.value for w in at.warning)
    assert at.session_state[state.THRESHOLD_SOURCE] is None


def test_target_prevalence_gives_ppv_and_npv(open_app: Callable[..., AppTest]) -> None:
    at = evaluated(open_app)
    active = at.session_state[state.ACTIVE]
    at.number_input(key="eval_prevalence").set_value(1.0).run()
    assert not at.exception
    metrics = {m.label: str(m.value) for m in at.metric}
    sens = active.cv.metrics["sensitivity"].value
    spec = active.cv.metrics["specificity"].value
    ppv = sens * 0.01 / (sens * 0.01 + (1 - spec) * 0.99)
    npv = spec * 0.99 / (spec * 0.99 + (1 - sens) * 0.01)
    assert metrics["PPV at 1.00%"] == f"{ppv:.3f}"
    assert metrics["NPV at 1.00%"] == f"{npv:.3f}"
    # Each interval sits under its figure, where it is not cut off.
    assert sum(c.value.startswith("95% CI ") for c in at.caption) >= 2
    assert any("sensitivity for malignant" in c.value for c in at.caption)


def test_recalibration_on_development_data_is_checked_on_test(
    open_app: Callable[..., AppTest],
) -> None:
    at = evaluated(open_app)
    at.toggle(key="eval_recalibrate").set_value(True).run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "Recalibrated" in getattr(d.value, "columns", []))
    assert list(table["On the test cases"])[:2] == ["Calibration intercept", "Calibration slope"]
    notes = " ".join(c.value for c in at.caption)
    assert "out-of-fold development predictions only" in notes
    assert "This is an analysis" in notes


def test_decision_curve_is_read_at_the_saved_threshold(
    open_app: Callable[..., AppTest],
) -> None:
    at = evaluated(open_app)
    assert not at.exception
    active = at.session_state[state.ACTIVE]
    assert "Decision curve" in [s.value for s in at.subheader]
    chart = next(c for c in at.get("plotly_chart") if "Decision curve" in c.proto.spec)
    fig = json.loads(chart.proto.spec)
    t = active.model.threshold
    readings = []
    for ev, label in ((active.cv, "Cross-validated (development)"), (active.test, "Held-out test")):
        curve = decision_curve(
            (np.asarray(ev.y_true) == 1).astype(int),
            ev.y_score,
            partition=ev.partition,
            chosen_threshold=t,
        )
        trace = next(d for d in fig["data"] if d["name"].startswith(f"Model — {label}"))
        assert np.allclose(decoded(trace["x"]), curve.thresholds)
        assert np.allclose(decoded(trace["y"]), curve.net_benefit)
        reading = net_benefit_at(curve)
        readings.append(reading)
        text = next(m.value for m in at.markdown if m.value.startswith(f"**{label}**"))
        assert f"At threshold {t:.2f} the model's net benefit is {reading.net_benefit:.3f}" in text
        assert f"vs {reading.treat_all:.3f} for treating everyone" in text
        assert (
            f"{reading.interventions_avoided_per_100:.1f} fewer unnecessary interventions "
            "per 100 patients with no missed malignant cases"
        ) in text
    # The sample model beats treating everyone and treating no one at its threshold.
    assert all(r.net_benefit > max(r.treat_all, 0) for r in readings)
    assert any(s["type"] == "line" and s["x0"] == pytest.approx(t) for s in fig["layout"]["shapes"])
    table = next(d.value for d in at.dataframe if "Treat everyone" in d.value.columns)
    chosen = table[table["Threshold"] == f"{t:.2f} (chosen)"]
    assert list(chosen["Model"]) == pytest.approx([r.net_benefit for r in readings])
    assert list(chosen["Treat everyone"]) == pytest.approx([r.treat_all for r in readings])
    card = active.card["decision_curve"]
    assert card["cv"]["chosen"]["net_benefit"] == pytest.approx(readings[0].net_benefit)
    assert card["test"]["chosen"]["net_benefit"] == pytest.approx(readings[1].net_benefit)


def decoded(values: object) -> np.ndarray:
    """A plotly JSON array: a plain list, or ``{"dtype", "bdata"}`` (base64) in plotly 6."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values, dtype=float)


def three_class_model() -> ActiveModel:
    rng = np.random.default_rng(0)
    n = 150
    label = np.repeat(["cyst", "fibroadenoma", "carcinoma"], n // 3)
    centre = {"cyst": 0.0, "fibroadenoma": 1.0, "carcinoma": 2.0}
    x = np.array([centre[v] for v in label])
    data = pd.DataFrame(
        {
            "lesion": [f"L{i:03d}" for i in range(n)],
            "size": x + rng.normal(0, 0.8, n),
            "density": -x + rng.normal(0, 0.8, n),
            "margin": rng.normal(0, 1, n),
            "finding": label,
        }
    )
    roles = Roles(label="finding", id="lesion")
    result = train(
        data,
        roles,
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=100),
    )
    card = build_card(result, cleaning=None, dataset_name="lesions")
    return ActiveModel(
        model=result.model, card=card, run_id=None, cv=result.cv, test=result.test, cases=data
    )


def test_multiclass_shows_macro_metrics_and_no_slider(open_app: Callable[..., AppTest]) -> None:
    at = open_app()
    at.session_state[state.ACTIVE] = three_class_model()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert not [s for s in at.slider if s.key == "eval_threshold"]
    assert any("3 classes" in i.value and "no threshold" in i.value for i in at.info)
    assert any("macro averages" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 6
    assert any("Decision curves apply to two-class models" in c.value for c in at.caption)
    assert active_card_has_no_decision_curve(at)


def active_card_has_no_decision_curve(at: AppTest) -> bool:
    return at.session_state[state.ACTIVE].card["decision_curve"] is None


@pytest.mark.slow
def test_saved_runs_are_compared(open_app: Callable[..., AppTest]) -> None:
    at = evaluated(open_app)
    first = at.session_state[state.ACTIVE].run_id
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_model").set_value("knn")
    at.number_input(key="train_folds").set_value(3)
    at.select_slider(key="train_n_boot").set_value(200)
    finish_training(at.button(key="train_go").click().run())
    assert not at.exception
    second = at.session_state[state.ACTIVE].run_id
    at.switch_page(PAGE).run()
    assert not at.exception
    assert set(at.multiselect(key="eval_compare").value) == {first, second}
    frames = [d.value for d in at.dataframe]
    compared = next(f for f in frames if "Run" in getattr(f, "columns", []))
    assert set(compared["Run"]) == {first, second}
    assert len(at.get("plotly_chart")) == 9


def test_an_unreachable_registry_is_a_warning_not_a_crash(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch, app_env: Path
) -> None:
    at = evaluated(open_app)
    monkeypatch.setenv("MEDIMG_DATABASE_URL", "nosuchdialect://nowhere")
    at.run()
    assert not at.exception
    assert any("cannot be listed" in w.value for w in at.warning)
    assert at.dataframe


def reader_model() -> ActiveModel:
    """A mammography-like model whose BI-RADS feature is marked as a reader's assessment."""
    rng = np.random.default_rng(5)
    n = 300
    malignant = rng.random(n) < 0.4
    data = pd.DataFrame(
        {
            "BI-RADS": np.clip(np.round(3 + 1.5 * malignant + rng.normal(0, 0.7, n)), 1, 5),
            "age": np.round(55 + 6 * malignant + rng.normal(0, 11, n)),
            "severity": np.where(malignant, "malignant", "benign"),
        }
    )
    result = train(
        data,
        Roles(label="severity", reader=("BI-RADS",)),
        config=ModelConfig(model="logreg"),
        validation=ValidationConfig(cv=3, n_boot=100),
        positive="malignant",
    )
    card = build_card(result, cleaning=None, dataset_name="mammo")
    return ActiveModel(
        model=result.model, card=card, run_id=None, cv=result.cv, test=result.test, cases=data
    )


def test_performance_with_and_without_the_reader_is_shown(
    open_app: Callable[..., AppTest],
) -> None:
    at = open_app()
    at.session_state[state.ACTIVE] = reader_model()
    at.switch_page(PAGE).run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "Without BI-RADS (cross-validated)" in d.value)
    assert {"With BI-RADS (held-out test)", "Without BI-RADS (held-out test)"} <= set(table)
    auc = table.loc["ROC AUC"]
    assert float(auc["Without BI-RADS (cross-validated)"].split()[0]) < float(
        auc["With BI-RADS (cross-validated)"].split()[0]
    )
    assert any("With and without BI-RADS" in m.value for m in at.markdown)
