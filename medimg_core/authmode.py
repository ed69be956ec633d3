"""How people sign in to the dashboard: the three modes, and who an OIDC sign-in is.

Pure functions, no Streamlit and no database, so that the rules are tested without a server. The
dashboard (:mod:`medimg_core.ui.auth`) gathers the facts once per server process and asks
:func:`decide_mode`:

- **OIDC single sign-on** when ``.streamlit/secrets.toml`` has an ``[auth]`` section;
- **local accounts** when the accounts store has at least one user (or ``MEDIMG_AUTH=local``);
- otherwise **single-user mode**, but only while the server listens on localhost. A server that
  other computers can reach, without sign-in, serves no page at all.

An OIDC sign-in becomes an :class:`~medimg_core.access.Actor` through :func:`actor_from_claims`:
the user name from ``MEDIMG_USERNAME_CLAIM`` (default ``email``, else ``sub``), the role from
``MEDIMG_ROLE_CLAIM`` (default ``groups``) mapped through ``MEDIMG_ROLE_MAP``, the projects from
``MEDIMG_PROJECTS_CLAIM`` (default ``projects``) plus the local memberships of that user name.
Claims come from outside medimg and are treated as hostile: values of the wrong type, control
characters and over-long values are ignored, never shown or recorded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from medimg_core.access import DEFAULT_PROJECT, Actor, Role
from medimg_core.errors import ConfigError, PermissionDenied

__all__ = [
    "DEFAULT_ROLE_MAP",
    "LOCAL_ADDRESSES",
    "SINGLE_USER_CAPTION",
    "ModeDecision",
    "OidcSettings",
    "Provider",
    "SignInMode",
    "actor_from_claims",
    "decide_mode",
    "is_local_address",
    "parse_role_map",
    "providers",
    "username_from_claims",
]

LOCAL_ADDRESSES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
"""Server addresses that only this computer can reach. An unset address is not one of them:
Streamlit then listens on every network interface."""

DEFAULT_ROLE_MAP = "medimg-admin=admin,medimg-analyst=analyst,medimg-viewer=viewer"
"""``MEDIMG_ROLE_MAP`` when unset: identity-provider groups named for medimg, so that nobody
gets a role by belonging to some unrelated group."""

# A user name or project from a token: printable, one line, bounded (as the audit trail needs).
_CLAIM_TEXT = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_PROJECT_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
_CLAIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")
# A token with thousands of groups is legitimate in large directories; more than this is not.
_MAX_CLAIM_VALUES = 10_000


class SignInMode(StrEnum):
    """How the dashboard knows who is using it."""

    SINGLE_USER = "single-user"
    LOCAL = "local"
    OIDC = "oidc"
    REFUSED = "refused"


def is_local_address(address: str | None) -> bool:
    """Whether a server bound to ``address`` is reachable from this computer only.

    ``None`` or an empty address means every interface (Streamlit's default), so it is not local.
    """
    if address is None:
        return False
    return address.strip().strip("[]").lower() in LOCAL_ADDRESSES


@dataclass(frozen=True)
class ModeDecision:
    """The sign-in mode of this server, and what to tell people about it.

    Attributes
    ----------
    mode : the mode.
    server_address : the address the server listens on (None: every interface).
    message : one plain line for the screen: the mode, or (refused) how to configure sign-in.
    """

    mode: SignInMode
    server_address: str | None
    message: str

    @property
    def serves(self) -> bool:
        """Whether any page may be shown."""
        return self.mode is not SignInMode.REFUSED


SINGLE_USER_CAPTION = "Single-user mode: listening on localhost only"


def _refusal(address: str | None) -> str:
    where = "every network address" if not address else f"{address}"
    return (
        f"medimg will not open here: this server listens on {where}, which other computers "
        "can reach, and no sign-in is configured, so anyone on the network would see patient "
        "data. Configure sign-in and restart the server: for local accounts, create an admin "
        "with `medimg users add NAME --role admin`; for single sign-on, add an [auth] section "
        "to .streamlit/secrets.toml (see the README). To use medimg on this computer only, "
        "start it with `make run`, which listens on localhost."
    )


def decide_mode(
    *,
    auth_configured: bool,
    n_local_users: int,
    server_address: str | None,
    forced: str | None = None,
) -> ModeDecision:
    """Choose the sign-in mode from the facts of this server.

    Parameters
    ----------
    auth_configured : whether ``.streamlit/secrets.toml`` has an ``[auth]`` section.
    n_local_users : how many local accounts exist.
    server_address : ``server.address`` (None or empty: every interface).
    forced : ``MEDIMG_AUTH``: ``"local"`` or ``"oidc"`` to choose the mode, empty or None to
        decide from the facts.

    Returns
    -------
    ModeDecision
        OIDC when configured, else local accounts when any exist, else single-user on a
        localhost server, else refused.

    Raises
    ------
    ConfigError
        When ``forced`` is not a mode, or asks for OIDC without an ``[auth]`` section.
    """
    choice = (forced or "").strip().lower()
    if choice not in ("", "local", "oidc"):
        raise ConfigError(
            f"MEDIMG_AUTH={forced!r} is not a sign-in mode; use 'local' (local accounts) or "
            "'oidc' (single sign-on), or unset it to decide from the configuration."
        )
    if choice == "oidc" and not auth_configured:
        raise ConfigError(
            "MEDIMG_AUTH=oidc but .streamlit/secrets.toml has no [auth] section; add one "
            "(see the README) or unset MEDIMG_AUTH."
        )
    if choice == "local" or (choice == "" and not auth_configured and n_local_users > 0):
        return ModeDecision(SignInMode.LOCAL, server_address, "Sign-in with local accounts")
    if auth_configured:
        return ModeDecision(SignInMode.OIDC, server_address, "Sign-in with single sign-on")
    if is_local_address(server_address):
        return ModeDecision(SignInMode.SINGLE_USER, server_address, SINGLE_USER_CAPTION)
    return ModeDecision(SignInMode.REFUSED, server_address, _refusal(server_address))


def parse_role_map(text: str) -> Mapping[str, Role]:
    """Read ``MEDIMG_ROLE_MAP``: identity-provider values to medimg roles.

    Entries are ``value=role``, separated by ``;`` when the text has any (directory names such
    as ``cn=x,ou=groups`` contain commas), else by ``,``. A value is split from its role at the
    last ``=``.

    Raises
    ------
    ConfigError
        An entry without ``=``, with an empty value, or naming no role.
    """
    separator = ";" if ";" in text else ","
    mapping: dict[str, Role] = {}
    for raw in text.split(separator):
        entry = raw.strip()
        if not entry:
            continue
        value, sep, role = entry.rpartition("=")
        if not sep or not value.strip():
            raise ConfigError(
                f"MEDIMG_ROLE_MAP entry {entry!r} is not of the form value=role (for example "
                "medimg-admin=admin)."
            )
        try:
            mapping[value.strip()] = Role.parse(role)
        except ConfigError as exc:
            raise ConfigError(f"MEDIMG_ROLE_MAP entry {entry!r}: {exc}") from None
    if not mapping:
        raise ConfigError(
            f"MEDIMG_ROLE_MAP maps nothing to a role; give entries such as {DEFAULT_ROLE_MAP!r}."
        )
    return MappingProxyType(mapping)


def _claim_name(name: str, variable: str) -> str:
    name = name.strip()
    if not _CLAIM_NAME.match(name):
        raise ConfigError(f"{variable}={name!r} is not a claim name; use a name such as 'groups'.")
    return name


@dataclass(frozen=True)
class OidcSettings:
    """Which claims of the identity token medimg reads, and how groups become roles.

    Attributes
    ----------
    username_claim : the claim holding the user name (``sub`` is used when it is absent).
    role_claim : the claim holding groups or roles (a string or a list of strings).
    role_map : claim value -> medimg role; the highest matching role applies.
    projects_claim : the claim listing the user's projects (a string or a list of strings).
    """

    username_claim: str = "email"
    role_claim: str = "groups"
    role_map: Mapping[str, Role] = field(default_factory=lambda: parse_role_map(DEFAULT_ROLE_MAP))
    projects_claim: str = "projects"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OidcSettings:
        """Settings from ``MEDIMG_USERNAME_CLAIM``, ``MEDIMG_ROLE_CLAIM``, ``MEDIMG_ROLE_MAP``
        and ``MEDIMG_PROJECTS_CLAIM``.

        Raises
        ------
        ConfigError
            When a claim name or the role map is invalid.
        """
        env = os.environ if environ is None else environ

        def get(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        return cls(
            username_claim=_claim_name(
                get("MEDIMG_USERNAME_CLAIM", "email"), "MEDIMG_USERNAME_CLAIM"
            ),
            role_claim=_claim_name(get("MEDIMG_ROLE_CLAIM", "groups"), "MEDIMG_ROLE_CLAIM"),
            role_map=parse_role_map(get("MEDIMG_ROLE_MAP", DEFAULT_ROLE_MAP)),
            projects_claim=_claim_name(
                get("MEDIMG_PROJECTS_CLAIM", "projects"), "MEDIMG_PROJECTS_CLAIM"
            ),
        )


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _CLAIM_TEXT.match(value) else None


def _values(value: Any) -> list[str]:
    """A claim that is one string or a list of strings; anything else counts as no value."""
    if isinstance(value, str):
        items: Iterable[Any] = [value]
    elif isinstance(value, list | tuple):
        items = value[:_MAX_CLAIM_VALUES]
    else:
        return []
    return [text for text in map(_text, items) if text is not None]


def username_from_claims(claims: Mapping[str, Any], settings: OidcSettings) -> str | None:
    """The user name an identity token gives: the configured claim, else ``sub``; None when
    neither is one printable line of at most 128 characters."""
    return _text(claims.get(settings.username_claim)) or _text(claims.get("sub"))


def actor_from_claims(
    claims: Mapping[str, Any],
    settings: OidcSettings,
    memberships: Iterable[str] = (),
) -> Actor:
    """The medimg user an identity provider signed in.

    Parameters
    ----------
    claims : the identity token's claims (``st.user``).
    settings : which claims to read, and the role map.
    memberships : the projects the local accounts store gives this user name.

    Returns
    -------
    Actor
        With the highest role that any value of the role claim maps to; the projects of the
        projects claim and of ``memberships``; the current project "default" when a member,
        else the first project by name, else None.

    Raises
    ------
    PermissionDenied
        When the token carries no usable user name, or no value of the role claim maps to a
        role (the message names the claim, never its values).
    """
    username = username_from_claims(claims, settings)
    if username is None:
        raise PermissionDenied(
            f"your sign-in did not say who you are (no usable {settings.username_claim!r} or "
            "'sub' claim); ask your administrator to check the identity provider's settings."
        )
    roles = [
        settings.role_map[value]
        for value in _values(claims.get(settings.role_claim))
        if value in settings.role_map
    ]
    if not roles:
        raise PermissionDenied(
            f"{username} is signed in but has no medimg role: none of the values of the "
            f"{settings.role_claim!r} claim is mapped to a role; ask your administrator to add "
            "you to a medimg group (MEDIMG_ROLE_MAP lists them)."
        )
    projects = {
        p
        for p in (*_values(claims.get(settings.projects_claim)), *memberships)
        if _PROJECT_TEXT.match(p)
    }
    if DEFAULT_PROJECT in projects:
        current: str | None = DEFAULT_PROJECT
    else:
        current = min(projects, key=str.casefold, default=None)
    return Actor(username, max(roles), frozenset(projects), current)


@dataclass(frozen=True)
class Provider:
    """One identity provider configured in ``[auth]``.

    Attributes
    ----------
    key : the name to pass to ``st.login`` (None for the unnamed provider of ``[auth]``).
    label : the name shown on the sign-in button.
    """

    key: str | None
    label: str


def _host(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    host = urlparse(url).hostname
    return host if host and _CLAIM_TEXT.match(host) else None


def providers(auth_section: Mapping[str, Any]) -> list[Provider]:
    """The identity providers of an ``[auth]`` section, as ``st.login`` names them.

    The unnamed provider (``client_id`` directly in ``[auth]``) is shown by its metadata
    host; a named one (``[auth.microsoft]``) by its name.
    """
    found: list[Provider] = []
    if "client_id" in auth_section:
        host = _host(auth_section.get("server_metadata_url"))
        found.append(Provider(None, host or "your organisation's sign-in"))
    for name, value in auth_section.items():
        if isinstance(value, Mapping) and "client_id" in value:
            found.append(Provider(str(name), str(name).replace("-", " ").title()))
    return found
