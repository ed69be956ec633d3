"""The router frames every page: sidebar, and medimg errors shown as one st.error."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.runtime.pages_manager import PagesManager
from streamlit.testing.v1 import AppTest

from medimg_core.ui import state
from medimg_core.ui.errors import UNEXPECTED_MESSAGE

DONE = ":material/check_circle:"


@pytest.mark.parametrize("step", state.STEPS, ids=lambda s: s.key)
def test_every_page_runs_inside_the_router(
    open_app: Callable[..., AppTest], step: state.Step
) -> None:
    at = open_app(step.path)
    assert not at.exception
    assert [t.value for t in at.title][:1] == [step.title]
    assert any("honest" in c.value for c in at.sidebar.caption)
    assert not [e for e in at.error if "unexpected problem" in e.value]


def test_unexpected_errors_are_hidden_without_data(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDIMG_RAISE")
    monkeypatch.setattr(
        "medimg_core.ui.workflow.require",
        lambda *_a, **_k: (_ for _ in ()).throw(KeyError("patient 1234 Jane Doe")),
    )
    at = open_app("pages/clean.py")
    assert not at.exception
    [error] = at.error
    assert error.value.startswith(UNEXPECTED_MESSAGE.split("(")[0])
    assert "Jane" not in error.value and "1234" not in error.value


def sidebar_icons(at: AppTest) -> dict[str, str]:
    """Page title -> the icon the sidebar shows for it after the last run."""
    registered = getattr(at, "_registered_pages", {}) or {}
    return {str(info.get("page_name")): str(info.get("icon")) for info in registered.values()}


def test_sidebar_ticks_a_step_in_the_run_that_finishes_it(
    open_app: Callable[..., AppTest],
) -> None:
    at = open_app()
    assert sidebar_icons(at)["Data"] != DONE
    at.button(key="use_sample").click().run()
    assert not at.exception
    assert sidebar_icons(at)["Data"] == DONE
    assert any("Roles confirmed" in s.value for s in at.success)
    assert sidebar_icons(at)["Clean"] != DONE

    at.switch_page("pages/clean.py").run()
    assert not at.exception
    assert sidebar_icons(at)["Clean"] == DONE
    assert at.metric


def test_sidebar_rerun_cannot_loop(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch
) -> None:
    flips = iter(range(1000))
    monkeypatch.setattr(
        "medimg_core.ui.state.step_done", lambda step: step.key == "data" and next(flips) % 2 == 0
    )
    at = open_app()
    assert not at.exception
    assert [t.value for t in at.title][:1] == ["Data"]


@pytest.mark.parametrize("step", state.STEPS, ids=lambda s: s.key)
def test_a_page_opened_by_url_on_a_fresh_server_runs_through_the_router(
    open_app: Callable[..., AppTest], monkeypatch: pytest.MonkeyPatch, step: state.Step
) -> None:
    # Every AppTest run starts like a fresh server: pages/ beside app.py and no st.navigation
    # called yet, so Streamlit's legacy multipage mode runs the requested page file on its own.
    pinned = PagesManager.__init__

    def fresh(self: PagesManager, *args: object, **kwargs: object) -> None:
        pinned(self, *args, **kwargs)  # type: ignore[arg-type]
        PagesManager.uses_pages_directory = True

    monkeypatch.setattr(PagesManager, "__init__", fresh)
    at = open_app(step.path)
    assert not at.exception
    assert [t.value for t in at.title][:1] == [step.title]
    assert any("honest" in c.value for c in at.sidebar.caption)
    assert sidebar_icons(at).get(step.title) is not None
    assert PagesManager.uses_pages_directory is False
