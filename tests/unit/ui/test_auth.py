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
