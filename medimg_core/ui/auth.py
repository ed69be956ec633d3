"""Who is using the dashboard: the signed-in user, on whose behalf every core call acts.

Pages never decide permissions themselves: they pass :func:`current_actor` to the core, which
refuses what the actor's role does not allow (:mod:`medimg_core.access`). Without sign-in
configured, the dashboard runs in single-user mode as :data:`~medimg_core.access.SINGLE_USER`.
"""

from __future__ import annotations

import ipaddress

import streamlit as st

from medimg_core.access import SINGLE_USER, Actor
from medimg_core.ui import state

__all__ = ["client_address", "current_actor"]


def current_actor() -> Actor:
    """The signed-in user of this browser session, or the local single user."""
    actor = state.get(state.ACTOR)
    return actor if isinstance(actor, Actor) else SINGLE_USER


def client_address() -> str:
    """The browser's IP address for the audit trail ("local" when Streamlit does not know it,
    as in tests). Only a valid IP address is passed on, never a header value as sent."""
    try:
        address = st.context.ip_address
    except Exception:  # outside a running app (bare mode, tests)
        return "local"
    if not address:
        return "local"
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "local"
