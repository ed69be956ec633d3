"""Sign-in, the sidebar's user and project controls, navigation by role, and the Audit page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit import config
from streamlit.testing.v1 import AppTest

from medimg_core.access import Actor, Role
from medimg_core.store.accounts import Accounts
from medimg_core.store.audit import AuditFilter, AuditTrail
from medimg_core.ui import auth, state

from .conftest import APP, RUN_TIMEOUT

PASSWORD = "correct horse battery staple"
WRONG = "incorrect horse battery"
VIEWER_PAGES = {"Evaluate", "Explain", "Predict", "Runs"}
ALL_STEPS = {"Data", "Clean", "Train", "Jobs", *VIEWER_PAGES}


@pytest.fixture
def accounts(app_env: Path) -> Iterator[Accounts]:
    """Local accounts in the test's workspace: ada (admin), ana (analyst, two projects), vic
    (viewer)."""
    with Accounts() as store:
        store.add_project("lung")
        store.add_user("ada", PASSWORD, Role.ADMIN, projects=["default"])
        store.add_user("ana", PASSWORD, Role.ANALYST, projects=["default", "lung"])
        store.add_user("vic", PASSWORD, Role.VIEWER, projects=["default"])
        yield store


def new_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT)


def sign_in(at: AppTest, username: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="signin_user").input(username)
    at.text_input(key="signin_password").input(password)
    return at.button(key="signin_submit").click().run()


MENU: list[set[str]] = []


@pytest.fixture(autouse=True)
def menu(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Record the titles each ``st.navigation`` call shows in the menu (hidden pages left out)."""
    original = st.navigation

    def navigation(pages: Any, **kwargs: Any) -> Any:
        MENU.append({p.title for p in pages if p.visibility == "visible"})
        return original(pages, **kwargs)

    monkeypatch.setattr(st, "navigation", navigation)
    MENU.clear()
    yield
    MENU.clear()


def page_titles(at: AppTest) -> set[str]:
    """The page titles the menu showed in the last run."""
    assert MENU, "st.navigation was not called"
    return MENU[-1]


def trail_actions(user: str | None = None) -> list[tuple[str, str, str]]:
    """(user, action, client) of every audit entry, oldest first."""
    with AuditTrail() as trail:
        frame = trail.entries(AuditFilter(user=user))
    return list(zip(frame["user"], frame["action"], frame["client"], strict=True))


def sidebar_text(at: AppTest) -> str:
    return " ".join(c.value for c in at.sidebar.caption)


def test_single_user_mode_says_so_in_the_sidebar(open_app: Callable[..., AppTest]) -> None:
    at = open_app()
    assert not at.exception
    assert "Single-user mode: listening on localhost only" in sidebar_text(at)
    assert page_titles(at) >= ALL_STEPS | {"Audit"}
    assert not [t for t in at.text_input if t.key == "signin_user"]


@pytest.mark.parametrize("address", ["0.0.0.0", "10.20.30.40"])
@pytest.mark.parametrize("page", [None, "pages/data.py", "pages/runs.py"])
def test_a_network_server_without_sign_in_shows_one_error_and_nothing_else(
    app_env: Path, address: str, page: str | None
) -> None:
    config.set_option("server.address", address)
    at = new_app()
    if page is not None:
        at.switch_page(page)
    at.run()
    assert not at.exception
    [error] = at.error
    assert "medimg users add" in error.value and "[auth]" in error.value
    assert not at.title and not at.button and not at.sidebar.caption and not at.dataframe
    assert page_titles(at) <= {"Sign in"}


def test_an_unset_address_listens_everywhere_and_is_refused(app_env: Path) -> None:
    config.set_option("server.address", "")
    at = new_app()
    at.run()
    [error] = at.error
    assert "every network address" in error.value


def test_local_accounts_show_only_the_sign_in_form(accounts: Accounts) -> None:
    at = new_app()
    at.switch_page("pages/data.py")
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert page_titles(at) == {"Sign in"}
    assert not at.sidebar.caption


def test_local_sign_in_opens_the_dashboard_and_is_audited(accounts: Accounts) -> None:
    at = new_app()
    at.run()
    sign_in(at, "ANA")
    assert not at.exception
    actor = at.session_state[state.ACTOR]
    assert (actor.username, actor.role, actor.project) == ("ana", Role.ANALYST, "default")
    assert [t.value for t in at.title][:1] == ["Data"]
    assert "Signed in as **ana** · analyst" in sidebar_text(at)
    project = at.selectbox(key=auth.PROJECT_KEY)
    assert project.value == "default" and list(project.options) == ["default", "lung"]
    assert at.button(key=auth.SIGNOUT_KEY)
    assert page_titles(at) == ALL_STEPS  # no Audit page for an analyst
    assert trail_actions() == [("ana", "sign-in", "local")]


@pytest.mark.parametrize(("username", "password"), [("ana", WRONG), ("nobody", PASSWORD), ("", "")])
def test_a_failed_sign_in_says_the_same_whatever_the_cause(
    accounts: Accounts, username: str, password: str
) -> None:
    at = new_app()
    at.run()
    sign_in(at, username, password)
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("Sign-in failed: the user name or password is wrong")
    assert state.ACTOR not in at.session_state
    assert [t.value for t in at.title] == ["Sign in"]
    # The password typed is not kept in the session.
    assert "signin_password" not in at.session_state
    assert trail_actions() == [(username or "(blank)", "sign-in failed", "local")]


def test_a_disabled_account_fails_with_the_same_message(accounts: Accounts) -> None:
    accounts.disable("vic")
    at = new_app()
    at.run()
    [error] = sign_in(at, "vic").error
    assert error.value.startswith("Sign-in failed: the user name or password is wrong")
    assert state.ACTOR not in at.session_state


def test_a_locked_account_refuses_even_the_right_password(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_LOCKOUT_ATTEMPTS", "2")
    monkeypatch.setenv("MEDIMG_LOCKOUT_MINUTES", "20")
    at = new_app()
    at.run()
    sign_in(at, "ana", WRONG)
    sign_in(at, "ana", WRONG)
    [error] = sign_in(at, "ana", PASSWORD).error
    assert "After 2 failed attempts in a row an account is locked for 20 minutes" in error.value
    assert state.ACTOR not in at.session_state
    assert accounts.get_user("ana").locked()
    assert [a for _, a, _ in trail_actions()] == ["sign-in failed"] * 3


def test_an_idle_session_is_signed_out_with_a_message(
    accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_SESSION_IDLE_MINUTES", "10")
    at = new_app()
    at.run()
    sign_in(at, "ana")
    at.session_state[auth.LAST_SEEN] = datetime.now(UTC) - timedelta(minutes=9)
    at.run()
    assert at.session_state[state.ACTOR].username == "ana"
    assert at.session_state[auth.LAST_SEEN] > datetime.now(UTC) - timedelta(minutes=1)

    at.session_state[auth.LAST_SEEN] = datetime.now(UTC) - timedelta(minutes=11)
    at.run()
    assert not at.exception
    assert state.ACTOR not in at.session_state
    assert [t.value for t in at.title] == ["Sign in"]
    assert any("after 10 minutes without activity" in i.value for i in at.info)
    assert [a for _, a, _ in trail_actions()] == ["sign-in", "sign-out"]


def test_sign_out_ends_the_session_and_is_audited(accounts: Accounts) -> None:
    at = new_app()
    at.run()
    sign_in(at, "ada")
    at.button(key="use_sample").click().run()
    assert state.TABLE in at.session_state
    at.button(key=auth.SIGNOUT_KEY).click().run()
    assert not at.exception
    assert state.ACTOR not in at.session_state and state.TABLE not in at.session_state
    assert [t.value for t in at.title] == ["Sign in"]
    assert any(i.value == "You are signed out." for i in at.info)
    assert [a for _, a, _ in trail_actions()] == ["sign-in", "sign-out"]


def test_switching_project_forgets_the_work_of_the_previous_one(accounts: Accounts) -> None:
    at = new_app()
    at.run()
    sign_in(at, "ana")
    at.button(key="use_sample").click().run()
    assert state.TABLE in at.session_state and state.ROLES in at.session_state
    at.selectbox(key=auth.PROJECT_KEY).select("lung").run()
    assert not at.exception
    actor = at.session_state[state.ACTOR]
    assert actor.project == "lung" and actor.username == "ana"
    for key in (state.TABLE, state.ROLES, state.PROPOSAL):
        assert key not in at.session_state
    assert at.selectbox(key=auth.PROJECT_KEY).value == "lung"
    assert at.button(key="use_sample")  # the Data page starts again


def test_a_user_without_projects_is_told_so(accounts: Accounts) -> None:
    accounts.add_user("nora", PASSWORD, Role.ANALYST)
    at = new_app()
    at.run()
    sign_in(at, "nora")
    assert not at.exception
    assert at.session_state[state.ACTOR].project is None
    assert any("not a member of any project" in w.value for w in at.sidebar.warning)


def test_viewers_see_only_evaluate_explain_predict_and_runs(accounts: Accounts) -> None:
    at = new_app()
    at.run()
    sign_in(at, "vic")
    assert not at.exception
    assert page_titles(at) == VIEWER_PAGES
    assert [t.value for t in at.title][:1] == ["Runs"]
    # Links and addresses still reach the steps a viewer cannot use: they say why, and do not run.
    for page, title in (("pages/train.py", "Train"), ("pages/data.py", "Data")):
        at.switch_page(page).run()
        assert not at.exception
        assert [t.value for t in at.title] == [title]
        [info] = at.info
        assert "vic (viewer) may not" in info.value
        assert not [b for b in at.button if b.key == "use_sample"]
        assert not at.get("file_uploader")
    at.switch_page("pages/runs.py").run()
    assert [t.value for t in at.title][:1] == ["Runs"]
    with pytest.raises(ValueError):
        at.switch_page("pages/audit.py")  # not registered for a viewer at all


def test_the_audit_page_shows_filters_the_chain_and_exports(accounts: Accounts) -> None:
    at = new_app()
    at.run()
    sign_in(at, "nobody", WRONG)
    sign_in(at, "ada")
    assert "Audit" in page_titles(at)
    at.switch_page("pages/audit.py").run()
    assert not at.exception
    assert [t.value for t in at.title][:1] == ["Audit"]
    [success] = at.success
    assert "intact: 2 entries" in success.value
    with AuditTrail() as trail:
        last_hash = trail.verify().last_hash
    assert last_hash in success.value
    [table] = at.dataframe
    assert list(table.value["action"]) == ["sign-in failed", "sign-in"]
    assert "2 entries match" in " ".join(c.value for c in at.caption)

    at.selectbox(key="audit_action").select("sign-in failed").run()
    assert list(at.dataframe[0].value["user"]) == ["nobody"]
    at.selectbox(key="audit_action").set_value(None)
    at.text_input(key="audit_user").input("ada").run()
    assert list(at.dataframe[0].value["action"]) == ["sign-in"]
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    at.date_input(key="audit_dates").set_value((yesterday - timedelta(days=5), yesterday)).run()
    assert at.dataframe[0].value.empty
    assert "0 entries match" in " ".join(c.value for c in at.caption)


def test_the_audit_page_shows_a_broken_chain(accounts: Accounts, app_env: Path) -> None:
    import sqlite3

    at = new_app()
    at.run()
    sign_in(at, "ada")
    sign_in_again = new_app()
    sign_in_again.run()
    sign_in(sign_in_again, "vic")
    with sqlite3.connect(app_env / "registry.db") as db:
        db.execute("DROP TRIGGER audit_refuse_update")
        db.execute("UPDATE audit SET user = 'someone' WHERE seq = 1")
    at.switch_page("pages/audit.py").run()
    assert not at.success
    assert any("broken at entry 1" in e.value for e in at.error)


def _run_page(path: str) -> None:
    """Run one page file inside the router's error boundary, as ``app.py`` does."""
    import runpy

    from medimg_core.ui.errors import page_errors

    with page_errors():
        runpy.run_path(path)


def test_the_audit_page_refuses_a_viewer_even_when_opened_directly(accounts: Accounts) -> None:
    page = str(APP.parent / "pages" / "audit.py")
    at = AppTest.from_function(_run_page, args=(page,), default_timeout=RUN_TIMEOUT)
    at.session_state[state.ACTOR] = Actor("vic", Role.VIEWER, frozenset({"default"}), "default")
    at.run()
    assert not at.exception
    [error] = at.error
    assert "vic (viewer) may not read the audit trail" in error.value
    assert not at.dataframe and not at.success and not at.get("download_button")


OIDC_SECRETS = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "a long random cookie secret for tests",
        "client_id": "medimg",
        "client_secret": "s3cret",
        "server_metadata_url": "https://login.example.org/.well-known/openid-configuration",
    }
}


def oidc_app(user: dict[str, object]) -> AppTest:
    at = new_app()
    at.secrets = dict(OIDC_SECRETS)
    at.user = user
    return at


def test_single_sign_on_offers_the_provider_when_signed_out(app_env: Path) -> None:
    config.set_option("server.address", "0.0.0.0")
    at = oidc_app({"is_logged_in": False})
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    [button] = at.button
    assert button.key == "signin_oidc_default"
    assert button.label == "Sign in with login.example.org"
    assert page_titles(at) == {"Sign in"}


def test_single_sign_on_maps_the_group_to_a_role_and_audits(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_ROLE_CLAIM", "roles")
    monkeypatch.setenv("MEDIMG_ROLE_MAP", "radiology-view=viewer")
    at = oidc_app(
        {
            "is_logged_in": True,
            "email": "rita@hospital.org",
            "sub": "abc",
            "roles": ["radiology-view"],
            "projects": ["lung"],
        }
    )
    at.run()
    assert not at.exception
    actor = at.session_state[state.ACTOR]
    assert (actor.username, actor.role, actor.project) == ("rita@hospital.org", Role.VIEWER, "lung")
    assert page_titles(at) == VIEWER_PAGES
    assert "Signed in as **rita@hospital.org** · viewer" in sidebar_text(at)
    at.run()
    assert trail_actions() == [("rita@hospital.org", "sign-in", "local")]


def test_single_sign_on_without_a_mapped_role_lets_nobody_in(app_env: Path) -> None:
    at = oidc_app({"is_logged_in": True, "email": "eve@x.org", "groups": ["staff"]})
    at.run()
    assert not at.exception
    assert state.ACTOR not in at.session_state
    assert page_titles(at) == {"Sign in"}
    assert any("no medimg role" in e.value for e in at.error)
    at.run()
    assert [a for _, a, _ in trail_actions()] == ["sign-in failed"]


def test_single_sign_on_uses_local_memberships_and_signs_out_at_the_provider(
    accounts: Accounts,
) -> None:
    accounts.add_user("ana@hospital.org", PASSWORD, Role.VIEWER, projects=["lung"])
    at = oidc_app({"is_logged_in": True, "email": "ana@hospital.org", "groups": "medimg-admin"})
    at.run()
    actor = at.session_state[state.ACTOR]
    # The role comes from the identity provider, the projects also from local memberships.
    assert (actor.role, actor.projects, actor.project) == (Role.ADMIN, {"lung"}, "lung")
    assert "Audit" in page_titles(at)
    at.button(key=auth.SIGNOUT_KEY).click().run()
    assert not at.exception
    assert at.user.get("is_logged_in") is False
    assert state.ACTOR not in at.session_state
    assert [t.value for t in at.title] == ["Sign in"]
    assert [b.key for b in at.button] == ["signin_oidc_default"]
    assert [a for _, a, _ in trail_actions()] == ["sign-in", "sign-out"]


def test_an_unreadable_account_database_serves_nothing(
    app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without knowing whether accounts exist, medimg cannot know that sign-in is off: it fails
    # closed, with the reason, rather than opening single-user mode.
    monkeypatch.setenv("MEDIMG_DATABASE_URL", "nosuchdialect://nowhere")
    at = new_app()
    at.switch_page("pages/data.py")
    at.run()
    assert not at.exception
    [error] = at.error
    assert "MEDIMG_DATABASE_URL" in error.value
    assert not at.title and not at.sidebar.caption and page_titles(at) == {"Sign in"}
