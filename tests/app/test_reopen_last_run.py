"""After a reload (a new session), the model pages offer to reopen the user's last run."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from medimg_core.access import SINGLE_USER
from medimg_core.cli import main as cli_main
from medimg_core.errors import PermissionDenied
from medimg_core.store.audit import AuditTrail
from medimg_core.store.registry import Registry
from medimg_core.tables.loading import load_sample
from medimg_core.ui import state, workflow


def trained_run(directory: Path) -> str:
    """Train the sample's logistic regression (as the local user, from the command line) and
    return its run ID."""
    argv = ["train", "sample:wdbc", "--model", "logreg", "--cv", "3", "--n-boot", "50"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main([*argv, "-o", str(directory / "model")]) == 0
    (record,) = Registry().list_runs(SINGLE_USER)
    return record.id


def reopen_button(at: AppTest, step: str) -> object:
    [button] = [b for b in at.button if b.key == f"guard_reopen_{step}"]
    return button


def test_a_new_session_reopens_the_last_run_in_one_click(
    open_app: Callable[..., AppTest], tmp_path: Path
) -> None:
    first = open_app("pages/evaluate.py")
    assert not [b for b in first.button if b.key == "guard_reopen_evaluate"]  # nothing to reopen
    run_id = trained_run(tmp_path)
    case_ids = set(load_sample().frame["case_id"].astype(str))

    reloaded = open_app("pages/explain.py")  # a reload: a new session, the same workspace
    assert not reloaded.exception
    shown = " ".join(i.value for i in reloaded.info)
    assert "There is no data yet" not in shown
    assert "reload starts a new session" in shown
    button = reopen_button(reloaded, "explain")
    assert re.fullmatch(
        rf"Reopen the last run \({re.escape(run_id)}, Logistic regression, "
        r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\)",
        button.label,  # type: ignore[attr-defined]
    )
    assert not [c for c in case_ids if c in button.label]  # type: ignore[attr-defined]
    # The sample is still offered, no longer as the main action.
    assert reloaded.button(key="guard_sample_explain").proto.type == "secondary"

    with Registry() as registry:
        before = len(AuditTrail(registry).entries())
    button.click().run()  # type: ignore[attr-defined]
    assert not reloaded.exception
    assert reloaded.title[0].value == "Explain"
    assert reloaded.session_state[state.ACTIVE].run_id == run_id
    assert not [b for b in reloaded.button if b.key == "guard_reopen_explain"]
    with Registry() as registry:
        entries = AuditTrail(registry).entries().iloc[before:]
    assert [SINGLE_USER.username, "open run", run_id, "ok"] in entries[
        ["user", "action", "object", "outcome"]
    ].values.tolist()


def test_a_run_that_cannot_be_opened_any_more_is_reported(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trained_run(tmp_path)
    reloaded = open_app("pages/predict.py")
    button = reopen_button(reloaded, "predict")
    # Deleted by someone else between drawing the button and the click.
    monkeypatch.setattr(
        "medimg_core.store.guarded.open_run",
        lambda *_a, **_k: (_ for _ in ()).throw(PermissionDenied("no such run in your projects")),
    )
    button.click().run()  # type: ignore[attr-defined]
    assert not reloaded.exception
    assert state.ACTIVE not in reloaded.session_state
    assert any("no such run in your projects" in e.value for e in reloaded.error)


def record(run_id: str, owner: str | None, day: int) -> SimpleNamespace:
    return SimpleNamespace(
        id=run_id, owner=owner, model_kind="hgb", created_at=datetime(2026, 11, day, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([], None),
        ([record("r3", "bob", 3), record("r2", "local", 2), record("r1", "local", 1)], "r2"),
        ([record("r3", "bob", 3), record("r2", None, 2)], "r3"),
    ],
    ids=["none", "own-newest-first", "visible-when-none-own"],
)
def test_the_last_run_is_the_users_own_newest_else_the_newest_visible(
    monkeypatch: pytest.MonkeyPatch, runs: list[SimpleNamespace], expected: str | None
) -> None:
    monkeypatch.setattr(workflow, "current_actor", lambda: SINGLE_USER)
    monkeypatch.setattr("medimg_core.store.guarded.list_runs", lambda actor: runs)
    last = workflow.last_run()
    assert (last.run_id if last is not None else None) == expected
    if last is not None:
        assert last.model == "Gradient boosting (histogram)"


def test_no_offer_when_the_user_may_not_list_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workflow, "current_actor", lambda: SINGLE_USER)

    def refused(actor: object) -> list[object]:
        raise PermissionDenied("you are not a member of any project")

    monkeypatch.setattr("medimg_core.store.guarded.list_runs", refused)
    assert workflow.last_run() is None
