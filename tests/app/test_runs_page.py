"""The Runs page: the registry listed newest first, model cards, reopening and deleting runs."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core import access
from medimg_core.access import SINGLE_USER, Actor, Role
from medimg_core.cli import main as cli_main
from medimg_core.reporting import summaries
from medimg_core.store.audit import AuditTrail
from medimg_core.store.cases import CASES_NAME
from medimg_core.store.registry import Registry
from medimg_core.ui import state

from .conftest import finish_training

PAGE = "pages/runs.py"


def with_a_run(open_app: Callable[..., AppTest]) -> AppTest:
    """The Runs page after the sample model was trained (through the Evaluate guard)."""
    at = open_app("pages/evaluate.py")
    at.button(key="guard_sample_evaluate").click().run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception
    return at


def test_the_run_id_is_pinned_whole_beside_in_use(open_app: Callable[..., AppTest]) -> None:
    """A narrow window (1,024 px) scrolls the other columns; the run ID stays whole and in view."""
    at = with_a_run(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    table = at.dataframe[0]
    assert list(table.value.columns[:2]) == ["in use", "id"]
    config = json.loads(table.proto.columns)
    for column in ("in use", "id"):
        assert config[column]["pinned"] is True
    assert config["id"]["label"] == "Run"
    # The 29-character ID measured 195 px in Chromium at 1,024 px: under 7 px a character.
    assert config["id"]["width"] >= 7 * len(run_id)


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
    finish_training(at.button(key="train_go").click().run())
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
    record = Registry().list_runs(SINGLE_USER)[0]
    (record.model_dir / CASES_NAME).unlink()
    at.button(key="runs_open_evaluate").click().run()
    assert not at.exception
    assert at.title[0].value == "Evaluate"
    assert any("without its cases" in i.value for i in at.info)
    assert "ROC AUC" in at.dataframe[0].value.index


def test_delete_needs_confirmation(open_app: Callable[..., AppTest], app_env: Path) -> None:
    at = with_a_run(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    model_dir = Registry().get_run(SINGLE_USER, run_id).model_dir
    assert at.button(key="runs_delete").disabled
    at.checkbox(key=f"runs_confirm_{run_id}").check().run()
    assert not at.button(key="runs_delete").disabled
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert Registry().list_runs(SINGLE_USER) == []
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
    (record,) = Registry().list_runs(SINGLE_USER)
    at = open_app(PAGE)
    at.checkbox(key=f"runs_confirm_{record.id}").check().run()
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert Registry().list_runs(SINGLE_USER) == []
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


def test_a_viewer_cannot_delete_and_the_core_refuses_even_a_forced_click(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = with_a_run(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    at.session_state[state.ACTOR] = Actor("vera", Role.VIEWER, frozenset({"default"}), "default")
    at.run()
    assert not at.exception
    assert at.dataframe[0].value["owner"].iloc[0] == SINGLE_USER.username
    assert at.button(key="runs_delete").disabled
    assert at.checkbox(key=f"runs_confirm_{run_id}").disabled
    assert (
        f"Only {SINGLE_USER.username}, who trained it, or an admin can delete this run; you are "
        "signed in as vera (viewer)."
    ) in [c.value for c in at.caption]
    # The page only hides the way; the core decides: with the page's check switched off (as a
    # page that forgot it would be), the click reaches the core, which refuses.
    monkeypatch.setattr(access, "allowed", lambda *args, **kwargs: True)
    at.run()
    at.checkbox(key=f"runs_confirm_{run_id}").check().run()
    assert not at.button(key="runs_delete").disabled
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "vera (viewer) may not delete their own runs: only analysts and admins can; ask an "
        "admin if your role should change."
    ]
    assert [r.id for r in Registry().list_runs(SINGLE_USER)] == [run_id]


def test_a_member_of_another_project_sees_none_of_its_runs(
    open_app: Callable[..., AppTest],
) -> None:
    at = with_a_run(open_app)
    at.session_state[state.ACTOR] = Actor("bea", Role.ADMIN, frozenset({"b"}), "b")
    at.run()
    assert not at.exception
    assert "No runs are saved yet" in at.info[0].value
    assert not at.dataframe


def test_opening_and_evaluating_a_run_are_audited_once(open_app: Callable[..., AppTest]) -> None:
    at = with_a_run(open_app)
    run_id = at.session_state[state.ACTIVE].run_id
    with Registry() as registry:
        before = len(AuditTrail(registry).entries())
    at.button(key="runs_open_evaluate").click().run()
    assert not at.exception and at.title[0].value == "Evaluate"
    at.run()  # a rerun of the page is not a new evaluation
    with Registry() as registry:
        entries = AuditTrail(registry).entries().iloc[before:]
    assert entries[
        ["user", "project", "action", "object", "outcome", "client"]
    ].values.tolist() == [
        [SINGLE_USER.username, "default", "open run", run_id, "ok", "local"],
        [SINGLE_USER.username, "default", "evaluate", run_id, "ok", "local"],
    ]
