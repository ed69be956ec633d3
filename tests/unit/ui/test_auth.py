"""The dashboard's acting user."""

from __future__ import annotations

import pytest
import streamlit as st

from medimg_core.access import SINGLE_USER, Actor, Role
from medimg_core.ui import state
from medimg_core.ui.auth import current_actor


@pytest.fixture(autouse=True)
def clean_session() -> None:
    st.session_state.clear()


def test_without_sign_in_the_dashboard_acts_as_the_local_single_user() -> None:
    assert current_actor() == SINGLE_USER
    st.session_state[state.ACTOR] = "not an actor"
    assert current_actor() == SINGLE_USER


def test_the_signed_in_user_acts() -> None:
    alice = Actor("alice", Role.VIEWER, frozenset({"breast"}), "breast")
    st.session_state[state.ACTOR] = alice
    assert current_actor() == alice


def test_the_client_address_is_local_outside_a_browser_session() -> None:
    from medimg_core.ui.auth import client_address

    assert client_address() == "local"


@pytest.mark.parametrize("mode", ["local", "oidc", "refused"])
def test_with_sign_in_on_nobody_signed_in_is_refused_not_made_admin(mode: str) -> None:
    from medimg_core.errors import PermissionDenied
    from medimg_core.ui.auth import MODE

    st.session_state[MODE] = mode
    with pytest.raises(PermissionDenied, match="not signed in"):
        current_actor()
    alice = Actor("alice", Role.VIEWER, frozenset({"breast"}), "breast")
    st.session_state[state.ACTOR] = alice
    assert current_actor() == alice


def test_single_user_mode_acts_as_the_local_single_user() -> None:
    from medimg_core.ui.auth import MODE

    st.session_state[MODE] = "single-user"
    assert current_actor() == SINGLE_USER


def test_navigation_by_role() -> None:
    from medimg_core.ui.auth import shows_audit, visible_steps

    def titles(role: Role) -> list[str]:
        return [s.title for s in visible_steps(Actor("u", role))]

    assert titles(Role.VIEWER) == ["Evaluate", "Explain", "Predict", "Runs"]
    assert titles(Role.ANALYST) == titles(Role.ADMIN) == [s.title for s in state.STEPS]
    assert [shows_audit(Actor("u", r)) for r in Role] == [False, False, True]


def test_audit_filter_covers_whole_days_in_utc() -> None:
    from datetime import UTC, date, datetime

    from medimg_core.ui.auth import audit_filter

    f = audit_filter("  ada ", "sign-in", (date(2026, 3, 1), date(2026, 3, 2)))
    assert (f.user, f.action) == ("ada", "sign-in")
    assert f.since == datetime(2026, 3, 1, tzinfo=UTC)
    assert f.until == datetime(2026, 3, 2, 23, 59, 59, 999999, tzinfo=UTC)
    blank = audit_filter("", None, ())
    assert (blank.user, blank.action, blank.since, blank.until) == (None, None, None, None)
    single = audit_filter("", None, (date(2026, 3, 1),))
    assert single.until == datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
