"""The Runs page: the registry listed newest first, model cards, reopening and deleting runs."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.cli import main as cli_main
from medimg_core.reporting import summaries
from medimg_core.store.cases import CASES_NAME
from medimg_core.store.registry import Registry
from medimg_core.ui import state

PAGE = "pages/runs.py"


def with_a_run(open_app: Callable[..., AppTest]) -> AppTest:
    """The Runs page after the sample model was trained (through the Evaluate guard)."""
    at = open_app("pages/evaluate.py")
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def test_an_empty_registry_points_to_training(open_app: Callable[..., AppTest]) -> None:
    at = open_app(PAGE)
    assert not at.exception
    assert "No runs are saved yet" in at.info[0].value
    assert any(link.label == "Go to Train" for link in at.get("page_link"))


def test_a_trained_run_is_listed_with_its_card(open_app: Callable[..., AppTest]) -> None:
    at = with_a_run(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    table = at.dataframe[0].value
    assert list(table["id"]) == [run_id]
    assert table["in use"].iloc[0] == "●"
    assert table["model"].iloc[0] == "Logistic regression"
    for column in ("CV AUC", "test AUC"):
        assert re.fullmatch(r"\d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)", table[column].iloc[0])
    assert at.selectbox(key="runs_pick").value == run_id
    card_text = " ".join(m.value for m in at.markdown)
    assert "**Model:** Logistic regression" in card_text
    assert "grouped by patient (case_id)" in card_text
    assert at.get("json")


@pytest.mark.slow
def test_runs_on_one_test_set_are_labelled_a_selection_step(
    open_app: Callable[..., AppTest],
) -> None:
    at = with_a_run(open_app)
    assert not any("selection" in i.value for i in at.info)
    at.switch_page("pages/train.py").run()
    at.selectbox(key="train_model").set_value("knn")
    at.number_input(key="train_folds").set_value(3)
    at.select_slider(key="train_n_boot").set_value(200)
    at.button(key="train_go").click().run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 2
    notes = [i.value for i in at.info if "selection" in i.value]
    assert notes and notes[0].startswith(
        "Choosing among runs by their test results uses the test set for selection"
    )


def test_opening_a_run_makes_it_active_and_switches_page(
    open_app: Callable[..., AppTest],
) -> None:
    at = with_a_run(open_app)
    trained = at.session_state[state.ACTIVE]
    # Forget the session's model, as in a new session, then reopen the saved run.
    for key in (state.TRAINING, state.RUN_ID, state.ACTIVE):
        at.session_state[key] = None
    at.run()
    at.button(key="runs_open_evaluate").click().run()
    assert not at.exception
    opened = at.session_state[state.ACTIVE]
    assert opened.run_id == trained.run_id
    assert opened.cv.metrics["roc_auc"] == trained.cv.metrics["roc_auc"]
    assert opened.test.metrics["sensitivity"] == trained.test.metrics["sensitivity"]
    assert set(opened.cases["partition"]) == {"development", "test"}
    assert at.title[0].value == "Evaluate"
    assert at.get("plotly_chart")


def test_a_run_without_cases_opens_with_card_metrics(open_app: Callable[..., AppTest]) -> None:
    at = with_a_run(open_app)
    record = Registry().list_runs()[0]
    (record.model_dir / CASES_NAME).unlink()
    at.button(key="runs_open_evaluate").click().run()
    assert not at.exception
    assert at.title[0].value == "Evaluate"
    assert any("without its cases" in i.value for i in at.info)
    assert "ROC AUC" in at.dataframe[0].value.index


def test_delete_needs_confirmation(open_app: Callable[..., AppTest], app_env: Path) -> None:
    at = with_a_run(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    model_dir = Registry().get_run(run_id).model_dir
    assert at.button(key="runs_delete").disabled
    at.checkbox(key=f"runs_confirm_{run_id}").check().run()
    assert not at.button(key="runs_delete").disabled
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert Registry().list_runs() == []
    assert not model_dir.exists()
    assert any(run_id in s.value for s in at.success)
    assert state.ACTIVE not in at.session_state or at.session_state[state.ACTIVE] is None
    assert "No runs are saved yet" in at.info[0].value


def test_deleting_a_run_saved_outside_the_workspace_keeps_its_files(
    open_app: Callable[..., AppTest], app_env: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "model"  # as `medimg train -o /elsewhere` writes it
    argv = ["train", "sample:wdbc", "--model", "logreg", "--cv", "3", "--n-boot", "50"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main([*argv, "-o", str(outside)]) == 0
    (record,) = Registry().list_runs()
    at = open_app(PAGE)
    at.checkbox(key=f"runs_confirm_{record.id}").check().run()
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert Registry().list_runs() == []
    assert (outside / "model.skops").is_file() and (outside / "card.json").is_file()
    notice = " ".join(s.value for s in at.success)
    assert f"Run {record.id} was removed from the list of runs" in notice
    assert "left untouched" in notice


def test_an_unreachable_registry_is_one_error(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_app()
    monkeypatch.setenv("MEDIMG_DATABASE_URL", "nosuchdialect://nowhere")
    at.switch_page(PAGE).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "MEDIMG_DATABASE_URL" in at.error[0].value


def test_the_card_says_when_auto_chose_the_model() -> None:
    card = {
        "pipeline": {"kind": "logreg"},
        "leaderboard": [{"model": kind, "chosen": kind == "logreg"} for kind in "abcdefg"],
    }
    assert summaries.card_model_text(card).endswith("(chosen by auto from 7 models)")
    assert summaries.card_facts(card)["Model"] == summaries.card_model_text(card)
    one = {"pipeline": {"kind": "logreg"}, "leaderboard": []}
    assert "auto" not in summaries.card_model_text(one)
