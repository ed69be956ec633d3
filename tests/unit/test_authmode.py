"""The three sign-in modes, and who an identity-provider sign-in becomes."""

from __future__ import annotations

from typing import Any

import pytest

from medimg_core.access import Role
from medimg_core.authmode import (
    SINGLE_USER_CAPTION,
    OidcSettings,
    Provider,
    SignInMode,
    actor_from_claims,
    decide_mode,
    is_local_address,
    parse_role_map,
    providers,
)
from medimg_core.errors import ConfigError, PermissionDenied


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1", "::1", "[::1]", " LOCALHOST "])
def test_loopback_addresses_are_local(address: str) -> None:
    assert is_local_address(address)


@pytest.mark.parametrize("address", [None, "", "0.0.0.0", "::", "10.1.2.3", "medimg.example.org"])
def test_unset_or_network_addresses_are_not_local(address: str | None) -> None:
    # Unset means Streamlit listens on every interface.
    assert not is_local_address(address)


def test_a_fresh_machine_on_localhost_runs_single_user() -> None:
    decision = decide_mode(auth_configured=False, n_local_users=0, server_address="localhost")
    assert decision.mode is SignInMode.SINGLE_USER
    assert decision.serves
    assert decision.message == SINGLE_USER_CAPTION


@pytest.mark.parametrize("address", [None, "0.0.0.0", "192.168.1.20"])
def test_a_network_server_without_sign_in_refuses_and_says_how_to_configure(
    address: str | None,
) -> None:
    decision = decide_mode(auth_configured=False, n_local_users=0, server_address=address)
    assert decision.mode is SignInMode.REFUSED
    assert not decision.serves
    assert "medimg users add" in decision.message
    assert "[auth]" in decision.message
    assert "secrets.toml" in decision.message


@pytest.mark.parametrize("address", ["localhost", "0.0.0.0"])
def test_local_accounts_as_soon_as_one_user_exists(address: str) -> None:
    decision = decide_mode(auth_configured=False, n_local_users=1, server_address=address)
    assert decision.mode is SignInMode.LOCAL


def test_medimg_auth_local_asks_for_sign_in_even_without_users() -> None:
    decision = decide_mode(
        auth_configured=False, n_local_users=0, server_address="0.0.0.0", forced="local"
    )
    assert decision.mode is SignInMode.LOCAL


@pytest.mark.parametrize("users", [0, 3])
def test_an_auth_section_means_single_sign_on(users: int) -> None:
    decision = decide_mode(auth_configured=True, n_local_users=users, server_address="0.0.0.0")
    assert decision.mode is SignInMode.OIDC


def test_a_wrong_medimg_auth_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="MEDIMG_AUTH='none' is not a sign-in mode"):
        decide_mode(auth_configured=False, n_local_users=0, server_address="::1", forced="none")
    with pytest.raises(ConfigError, match=r"no \[auth\] section"):
        decide_mode(auth_configured=False, n_local_users=0, server_address="::1", forced="oidc")


def test_role_map_reads_commas_or_semicolons_and_splits_at_the_last_equals() -> None:
    assert dict(parse_role_map("a=admin, b = Viewer")) == {"a": Role.ADMIN, "b": Role.VIEWER}
    dn = "cn=medimg,ou=groups,dc=example=analyst; cn=boss,dc=example=admin"
    assert dict(parse_role_map(dn)) == {
        "cn=medimg,ou=groups,dc=example": Role.ANALYST,
        "cn=boss,dc=example": Role.ADMIN,
    }


@pytest.mark.parametrize("text", ["admins", "=admin", "x=superuser", " ; "])
def test_role_map_errors_name_the_entry(text: str) -> None:
    with pytest.raises(ConfigError, match="MEDIMG_ROLE_MAP"):
        parse_role_map(text)


def test_settings_from_the_environment() -> None:
    settings = OidcSettings.from_env(
        {
            "MEDIMG_ROLE_CLAIM": "roles",
            "MEDIMG_ROLE_MAP": "r1=viewer",
            "MEDIMG_USERNAME_CLAIM": "preferred_username",
        }
    )
    assert settings.role_claim == "roles"
    assert settings.username_claim == "preferred_username"
    assert settings.projects_claim == "projects"
    assert dict(settings.role_map) == {"r1": Role.VIEWER}
    default = OidcSettings.from_env({})
    assert default.role_map["medimg-admin"] is Role.ADMIN
    assert default.role_claim == "groups" and default.username_claim == "email"
    with pytest.raises(ConfigError, match="MEDIMG_ROLE_CLAIM"):
        OidcSettings.from_env({"MEDIMG_ROLE_CLAIM": "groups; drop table"})


SETTINGS = OidcSettings()


def test_claims_become_an_actor_with_the_highest_mapped_role() -> None:
    claims = {
        "email": "ana@hospital.org",
        "sub": "123",
        "groups": ["staff", "medimg-viewer", "medimg-analyst"],
        "projects": ["breast", "lung"],
    }
    actor = actor_from_claims(claims, SETTINGS, memberships=["default"])
    assert actor.username == "ana@hospital.org"
    assert actor.role is Role.ANALYST
    assert actor.projects == {"breast", "lung", "default"}
    assert actor.project == "default"


def test_a_single_string_role_claim_and_sub_when_no_email() -> None:
    actor = actor_from_claims({"sub": "u-42", "groups": "medimg-admin"}, SETTINGS)
    assert actor.username == "u-42"
    assert actor.role is Role.ADMIN
    assert actor.projects == frozenset()
    assert actor.project is None


def test_without_default_the_first_project_by_name_is_current() -> None:
    claims = {"email": "b@x.org", "groups": ["medimg-viewer"], "projects": ["Lung", "breast"]}
    assert actor_from_claims(claims, SETTINGS).project == "breast"


def test_no_mapped_role_means_no_access_and_the_values_are_not_echoed() -> None:
    claims = {"email": "eve@x.org", "groups": ["secret-group-name", "medimg-Admin"]}
    with pytest.raises(PermissionDenied, match="no medimg role") as caught:
        actor_from_claims(claims, SETTINGS)
    assert "secret-group-name" not in str(caught.value)


HOSTILE: list[Any] = [
    None,
    42,
    {"medimg-admin": True},
    [["medimg-admin"]],
    [{"name": "medimg-admin"}],
    "medimg-admin\nmedimg-viewer",
    b"medimg-admin",
    True,
]


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_hostile_role_claims_give_no_role(value: Any) -> None:
    with pytest.raises(PermissionDenied, match="no medimg role"):
        actor_from_claims({"email": "m@x.org", "groups": value}, SETTINGS)


@pytest.mark.parametrize(
    "username", [None, "", "   ", "a\x00b", "line\nbreak", "x" * 500, 12, ["a"], {"a": 1}]
)
def test_hostile_user_names_are_refused(username: Any) -> None:
    with pytest.raises(PermissionDenied, match="did not say who you are"):
        actor_from_claims({"email": username, "groups": ["medimg-admin"]}, SETTINGS)


def test_hostile_project_values_are_dropped() -> None:
    claims = {
        "email": "p@x.org",
        "groups": ["medimg-viewer"],
        "projects": ["ok", "../etc", "", None, 7, "x" * 65, "new\nline", ["nested"], "fine one"],
    }
    actor = actor_from_claims(claims, SETTINGS)
    assert actor.projects == {"ok", "fine one"}


def test_a_role_value_with_padding_still_maps_but_case_must_match() -> None:
    assert actor_from_claims({"sub": "s", "groups": [" medimg-viewer "]}, SETTINGS).role is (
        Role.VIEWER
    )
    with pytest.raises(PermissionDenied):
        actor_from_claims({"sub": "s", "groups": ["MEDIMG-VIEWER"]}, SETTINGS)


def test_providers_named_and_unnamed() -> None:
    section = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x",
        "client_id": "id",
        "server_metadata_url": "https://login.example.org/.well-known/openid-configuration",
        "azure-ad": {"client_id": "a", "server_metadata_url": "https://x"},
        "not_a_provider": {"something": 1},
    }
    assert providers(section) == [
        Provider(None, "login.example.org"),
        Provider("azure-ad", "Azure Ad"),
    ]
    assert providers({"redirect_uri": "x", "cookie_secret": "y"}) == []
