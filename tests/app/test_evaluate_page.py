"""The Evaluate page: guard, metrics with intervals, the threshold fragment, multi-class, runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.modelling.evaluation import METRIC_LABELS
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store.persistence import build_card
from medimg_core.tables.roles import Roles
from medimg_core.ui import state
from medimg_core.ui.session import ActiveModel

from .conftest import as_int

PAGE = "pages/evaluate.py"


def evaluated(open_app: Callable[..., AppTest]) -> AppTest:
    """The Evaluate page after the guard's sample button trained the sample model."""
    at = open_app(PAGE)
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    return at


def called_positive(at: AppTest) -> str:
    return next(str(m.value) for m in at.metric if m.label == "Called positive")


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
    assert list(table.index) == list(METRIC_LABELS.values())
    assert any("cross-validated" in c for c in table.columns)
    assert any("held-out test" in c for c in table.columns)
    assert all("–" in cell for cell in table.loc["ROC AUC"])
    assert any("Positive class: malignant" in c.value for c in at.caption)
    # confusion (counts, shares), trade-off, ROC, PR, calibration, flow, folds
    assert len(at.get("plotly_chart")) == 8
    assert any(e.label == "What the metrics mean" for e in at.expander)
    assert any("Go to Explain" in link.label for link in at.get("page_link"))


def test_the_slider_moves_the_confusion_numbers(open_app: Callable[..., AppTest]) -> None:
    at = evaluated(open_app)
    active = at.session_state[state.ACTIVE]
    saved = active.model.threshold
    before = called_positive(at)
    assert at.radio(key="eval_partition").value == "test"
    assert at.slider(key="eval_threshold").value == pytest.approx(saved)

    at.slider(key="eval_threshold").set_value(0.95).run()
    assert not at.exception
    after = called_positive(at)
    assert as_int(after.split(" of ")[0]) < as_int(before.split(" of ")[0])
    assert after.endswith(f"of {active.test.n:,}")
    assert at.session_state[state.THRESHOLD] == pytest.approx(0.95)
    deltas = [m.delta for m in at.metric if m.label == "Sensitivity"]
    assert deltas and deltas[0] is not None

    at.radio(key="eval_partition").set_value("cv").run()
    assert called_positive(at).endswith(f"of {active.cv.n:,}")

    at.button(key="eval_reset").click().run()
    assert at.slider(key="eval_threshold").value == pytest.approx(saved)


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


@pytest.mark.slow
def test_saved_runs_are_compared(open_app: Callable[..., AppTest]) -> None:
    at = evaluated(open_app)
    first = at.session_state[state.ACTIVE].run_id
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_model").set_value("knn")
    at.number_input(key="train_folds").set_value(3)
    at.select_slider(key="train_n_boot").set_value(200)
    at.button(key="train_go").click().run()
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
