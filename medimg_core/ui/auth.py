"""Who is using the dashboard: sign-in, the signed-in user, and the sidebar that shows them.

Pages never decide permissions themselves: they pass :func:`current_actor` to the core, which
refuses what the actor's role does not allow (:mod:`medimg_core.access`).

The sign-in mode is decided once per server process (:func:`server_mode`, rules in
:mod:`medimg_core.authmode`): OIDC single sign-on, local accounts, or single-user mode as
:data:`~medimg_core.access.SINGLE_USER` on a server that listens on localhost only. The router
(``app.py``) calls :func:`gate` before anything else: without a signed-in user it routes every
address to the sign-in page (or, on a server reachable from the network without sign-in, to
one error), so no page runs for someone who has not signed in.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

import streamlit as st

from medimg_core.access import POLICY, SINGLE_USER, Action, Actor
from medimg_core.authmode import (
    ModeDecision,
    OidcSettings,
    SignInMode,
    actor_from_claims,
    decide_mode,
    providers,
    username_from_claims,
)
from medimg_core.errors import AuthenticationError, ConfigError, PermissionDenied
from medimg_core.ui import state
from medimg_core.workspace import workspace_home

# The accounts and audit stores share the run registry's module, which loads scikit-learn; they
# are imported where used so that importing this module (every page does) stays light.
if TYPE_CHECKING:
    from medimg_core.store.audit import AuditFilter

__all__ = [
    "LAST_SEEN",
    "MODE",
    "NOTICE",
    "PROJECT_KEY",
    "SIGNOUT_KEY",
    "audit_filter",
    "client_address",
    "closed_step",
    "current_actor",
    "gate",
    "record",
    "refusal_page",
    "server_mode",
    "shows_audit",
    "sidebar",
    "sign_in_page",
    "visible_steps",
]

LAST_SEEN = "auth_last_seen"
"""Session key: when this signed-in session last ran (UTC), for the idle expiry."""
MODE = "auth_mode"
"""Session key: the :class:`~medimg_core.authmode.SignInMode` value this session runs under."""
NOTICE = "auth_notice"
"""Session key: a message for the sign-in page (signed out, session expired, no role)."""
OIDC_REFUSED = "auth_oidc_refused"
"""Session key: why an identity-provider sign-in was not let in (recorded once)."""
PROJECT_KEY = "sidebar_project"
SIGNOUT_KEY = "sidebar_signout"

# What survives a project switch: who is signed in, not what they were working on.
_KEEP_ON_SWITCH = frozenset({state.ACTOR, LAST_SEEN, MODE, PROJECT_KEY})

# The action a workflow page exists for; a role without it does not see the page.
_STEP_ACTION = {
    "data": Action.UPLOAD,
    "clean": Action.CLEAN,
    "train": Action.TRAIN,
    # Jobs are started by training: whoever may train sees their own jobs (admins see all).
    "jobs": Action.TRAIN,
}

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def current_actor() -> Actor:
    """The signed-in user of this browser session, or the local single user.

    Raises
    ------
    PermissionDenied
        When the session runs under local accounts or single sign-on and nobody is signed in
        (the router shows only the sign-in page then; this stops any other way in).
    """
    actor = state.get(state.ACTOR)
    if isinstance(actor, Actor):
        return actor
    if state.get(MODE) in (SignInMode.LOCAL.value, SignInMode.OIDC.value, SignInMode.REFUSED.value):
        raise PermissionDenied("you are not signed in; sign in to use medimg.")
    return SINGLE_USER


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


def _auth_section() -> Mapping[str, Any] | None:
    """The ``[auth]`` section of ``.streamlit/secrets.toml``, or None."""
    try:
        if not st.secrets.load_if_toml_exists():
            return None
        section = st.secrets.get("auth")
    except Exception:  # an unreadable secrets file is reported by Streamlit at start-up
        return None
    return section if isinstance(section, Mapping) and section else None


@functools.lru_cache(maxsize=16)
def _decide(address: str | None, auth_configured: bool, forced: str, home: str) -> ModeDecision:
    # The workspace is part of the key only so that tests with their own workspace get their
    # own decision; a server's is fixed for its life. If the account database cannot be read,
    # the error is shown and nothing is served (failing closed), and the next view tries again.
    from medimg_core.store.accounts import Accounts

    n_users = 0
    if not auth_configured or forced.strip().lower() == "local":
        with Accounts() as accounts:
            n_users = len(accounts.list_users())
    return decide_mode(
        auth_configured=auth_configured,
        n_local_users=n_users,
        server_address=address,
        forced=forced,
    )


def server_mode() -> ModeDecision:
    """This server's sign-in mode, decided at its first page view and kept for its life.

    Adding the first local account, or an ``[auth]`` section, takes effect at the next start.
    """
    address = st.get_option("server.address")
    return _decide(
        str(address) if address else None,
        _auth_section() is not None,
        os.environ.get("MEDIMG_AUTH", ""),
        str(workspace_home()),
    )


def _audit_name(typed: str) -> str:
    """A typed user name as the audit trail can hold it: one printable line, bounded."""
    name = _CONTROL.sub("", typed).strip()[:128]
    return name or "(blank)"


def record(
    action: str,
    actor: Actor | None = None,
    *,
    user: str | None = None,
    outcome: str = "ok",
    object: str | None = None,
) -> None:
    """Write one audit entry for this browser session (its client address included).

    Parameters
    ----------
    action : one of :data:`medimg_core.store.audit.ACTIONS`.
    actor : who acted; None for a failed sign-in, named by ``user``.
    user : the name typed, when there is no actor.
    outcome : "ok", "refused" or "failed".
    object : a run ID or content hash, or None.
    """
    from medimg_core.store.audit import AuditTrail

    name = actor.username if actor is not None else _audit_name(user or "")
    with AuditTrail() as trail:
        trail.append(
            user=name,
            role=None if actor is None else actor.role.value,
            project=None if actor is None else actor.project,
            action=action,
            outcome=outcome,
            client=client_address(),
            object=object,
        )


def _end_session(notice: str) -> None:
    """Forget everything this browser session held, and leave a message for the sign-in page."""
    st.session_state.clear()
    st.session_state[NOTICE] = notice


def _expired(actor: Actor) -> bool:
    """Whether the session has been idle too long (then it is signed out and audited)."""
    from medimg_core.store.accounts import AccountSettings, session_expired

    now = datetime.now(UTC)
    last_seen = state.get(LAST_SEEN)
    minutes = AccountSettings.from_env().session_idle_minutes
    if isinstance(last_seen, datetime) and session_expired(last_seen, now, minutes):
        record("sign-out", actor)
        _end_session(
            f"Your session ended after {minutes} minutes without activity, to protect patient "
            "data on an unattended screen. Sign in again to continue."
        )
        return True
    st.session_state[LAST_SEEN] = now
    return False


def _start_session(actor: Actor) -> None:
    st.session_state[state.ACTOR] = actor
    st.session_state[LAST_SEEN] = datetime.now(UTC)
    st.session_state[PROJECT_KEY] = actor.project
    st.session_state.pop(NOTICE, None)


def _oidc_actor() -> Actor | None:
    """The identity-provider user of this session, signed in on their first page view."""
    if not st.user.is_logged_in:
        st.session_state.pop(state.ACTOR, None)
        return None
    actor = state.get(state.ACTOR)
    if isinstance(actor, Actor):
        return actor
    if state.has(OIDC_REFUSED):
        return None
    claims = st.user.to_dict()
    try:
        settings = OidcSettings.from_env()
        username = username_from_claims(claims, settings)
        actor = actor_from_claims(claims, settings, _memberships(username or ""))
    except PermissionDenied as exc:
        st.session_state[OIDC_REFUSED] = str(exc)
        record("sign-in failed", user=str(claims.get("sub") or ""), outcome="refused")
        return None
    record("sign-in", actor)
    _start_session(actor)
    return actor


def _memberships(username: str) -> tuple[str, ...]:
    """The projects the local accounts store gives a user name (none when it has no account)."""
    from medimg_core.store.accounts import Accounts

    if not username:
        return ()
    with Accounts() as accounts:
        try:
            return accounts.get_user(username).projects
        except ConfigError:
            return ()


def gate() -> Actor | None:
    """Decide who this session is, before anything is drawn.

    Returns
    -------
    Actor or None
        The user pages act for (the local single user in single-user mode), or None when
        nobody is signed in or the server refuses to serve: the router then routes to
        :func:`sign_in_page` or :func:`refusal_page`.
    """
    decision = server_mode()
    st.session_state[MODE] = decision.mode.value
    if decision.mode is SignInMode.REFUSED:
        return None
    if decision.mode is SignInMode.SINGLE_USER:
        return SINGLE_USER
    if decision.mode is SignInMode.OIDC:
        actor = _oidc_actor()
    else:
        found = state.get(state.ACTOR)
        actor = found if isinstance(found, Actor) else None
    if actor is None:
        return None
    if _expired(actor):
        if decision.mode is SignInMode.OIDC:
            st.logout()
        return None
    return actor


def refusal_page() -> None:
    """The only thing a server reachable from the network, without sign-in, shows."""
    st.error(server_mode().message, icon=":material/lock:")


def sign_in_page() -> None:
    """Sign in: a form for local accounts, a button per identity provider for single sign-on."""
    # A narrow column: a sign-in form across a wide screen reads like a data-entry page.
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("Sign in")
        notice = state.get(NOTICE)
        if notice:
            st.info(notice, icon=":material/info:")
        if server_mode().mode is SignInMode.OIDC:
            _oidc_sign_in()
        else:
            _local_sign_in()


def _oidc_sign_in() -> None:
    refused = state.get(OIDC_REFUSED)
    if refused:
        st.error(refused, icon=":material/block:")
        if st.button("Sign out", key="signin_logout"):
            st.session_state.clear()
            st.logout()
        return
    section = _auth_section() or {}
    found = providers(section)
    if not found:
        st.error(
            "Single sign-on is configured in .streamlit/secrets.toml, but its [auth] section "
            "names no identity provider (no client_id); ask your administrator.",
            icon=":material/error:",
        )
        return
    for provider in found:
        key = f"signin_oidc_{provider.key or 'default'}"
        if st.button(f"Sign in with {provider.label}", key=key, type="primary"):
            st.login(provider.key)


def _local_sign_in() -> None:
    with st.form("signin_form", clear_on_submit=True, enter_to_submit=True):
        username = st.text_input("User name", key="signin_user", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="signin_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Sign in", key="signin_submit", type="primary")
    st.caption(
        "Accounts are created by an administrator (`medimg users add`); a forgotten password "
        "is reset by them too."
    )
    # The typed password is not kept in the session once it has been checked.
    st.session_state.pop("signin_password", None)
    if not submitted:
        return
    from medimg_core.store.accounts import Accounts

    try:
        with Accounts() as accounts:
            actor = accounts.authenticate(username, password)
    except AuthenticationError as exc:
        record("sign-in failed", user=username, outcome="failed")
        st.error(str(exc), icon=":material/lock:")
        return
    record("sign-in", actor)
    _start_session(actor)
    st.rerun()


def visible_steps(actor: Actor) -> list[state.Step]:
    """The workflow pages ``actor``'s role can use: viewers see Evaluate, Explain, Predict and
    Runs; analysts and admins see every step."""
    granted = POLICY[actor.role]
    return [s for s in state.STEPS if _STEP_ACTION.get(s.key, Action.OPEN_RUN) in granted]


def closed_step(actor: Actor, step: state.Step) -> None:
    """What a user sees instead of a step their role cannot use (opened by a link or its
    address): its name, and why it is closed."""
    action = _STEP_ACTION.get(step.key, Action.OPEN_RUN)
    st.title(step.title)
    st.info(
        f"{step.title} is not available to you: {actor.describe()} may not "
        f"{action.description}. Open a saved run on the Runs page to evaluate, explain or "
        "predict with it; ask an admin if your role should change.",
        icon=":material/lock:",
    )


def shows_audit(actor: Actor) -> bool:
    """Whether ``actor`` sees the Audit page (admins)."""
    return Action.READ_AUDIT in POLICY[actor.role]


def _switch_project() -> None:
    """Change the current project; the work of the previous one is forgotten (its data, roles,
    cleaning and model belong to that project)."""
    actor = current_actor()
    chosen = st.session_state.get(PROJECT_KEY)
    if chosen is None or chosen == actor.project:
        return
    moved = actor.in_project(chosen)
    for key in list(st.session_state.keys()):
        if key not in _KEEP_ON_SWITCH:
            del st.session_state[key]
    st.session_state[state.ACTOR] = moved


def _sign_out() -> None:
    actor = current_actor()
    mode = state.get(MODE)
    record("sign-out", actor)
    _end_session("You are signed out.")
    if mode == SignInMode.OIDC.value:
        st.logout()


def sidebar(actor: Actor) -> None:
    """Who is signed in, as which role, in which project; the project switch and sign-out.

    In single-user mode, the caption saying so (and that only this computer can reach it).
    """
    decision = server_mode()
    if decision.mode is SignInMode.SINGLE_USER:
        st.caption(decision.message)
        return
    st.caption(f"Signed in as **{actor.username}** · {actor.role.value}")
    projects = sorted(actor.projects, key=str.casefold)
    if projects:
        if st.session_state.get(PROJECT_KEY) not in projects:
            st.session_state[PROJECT_KEY] = actor.project or projects[0]
        st.selectbox("Project", projects, key=PROJECT_KEY, on_change=_switch_project)
    else:
        st.warning(
            "You are not a member of any project yet, so there is no data to work on; ask an "
            "admin to add you to one (`medimg projects add-member`).",
            icon=":material/folder_off:",
        )
    st.button("Sign out", key=SIGNOUT_KEY, on_click=_sign_out)


def audit_filter(user: str, action: str | None, dates: tuple[date, ...]) -> AuditFilter:
    """The Audit page's filters as the core reads them: a blank user or no action means any;
    a date range covers whole days in UTC."""
    from medimg_core.store.audit import AuditFilter

    since = datetime.combine(dates[0], time.min, UTC) if dates else None
    until = datetime.combine(dates[-1], time.max, UTC) if dates else None
    return AuditFilter(user=user.strip() or None, action=action or None, since=since, until=until)
