"""Tests for medimg_core.store.accounts: local accounts, projects, sign-in and lock-out.

Every test that touches the database runs on SQLite and on PostgreSQL (``database_url``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text

from medimg_core.access import Action, Actor, Role
from medimg_core.errors import AuthenticationError, ConfigError, PermissionDenied
from medimg_core.store.accounts import (
    Accounts,
    AccountSettings,
    UserRecord,
    check_password,
    session_expired,
)
from medimg_core.store.database import engine_url
from medimg_core.store.registry import Registry

# Cheap parameters keep the tests fast; the library's defaults are measured in the benchmark.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class CountingHasher(PasswordHasher):
    """A fast hasher that counts verifications (to see that unknown users cost one too)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def accounts(home: Path, database_url: str) -> Iterator[Accounts]:
    settings = AccountSettings(lockout_attempts=3, lockout_minutes=15)
    acc = Accounts(url=database_url, hasher=FAST, settings=settings)
    yield acc
    acc.close()


def stored_hash(url: str, username: str) -> str:
    engine = create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            value = conn.execute(
                text("SELECT password_hash FROM users WHERE username_key = :k"),
                {"k": username.casefold()},
            ).scalar_one()
    finally:
        engine.dispose()
    return str(value)


def test_add_and_sign_in(accounts: Accounts) -> None:
    accounts.add_project("Oncology")
    record = accounts.add_user("Alice", PASSWORD, "analyst", projects=["oncology"], now=T0)
    assert record.username == "Alice"
    assert record.role is Role.ANALYST
    assert record.projects == ("Oncology",)
    assert record.created_at == T0
    assert record.last_sign_in is None
    actor = accounts.authenticate("alice", PASSWORD, now=T0 + timedelta(hours=1))
    assert actor == Actor("Alice", Role.ANALYST, frozenset({"Oncology"}), "Oncology")
    assert accounts.get_user("ALICE").last_sign_in == T0 + timedelta(hours=1)


def test_password_is_stored_as_an_argon2id_hash_only(accounts: Accounts, database_url: str) -> None:
    accounts.add_user("alice", PASSWORD, "viewer")
    digest = stored_hash(database_url, "alice")
    assert digest.startswith("$argon2id$")
    assert PASSWORD not in digest
    if database_url.startswith("sqlite"):
        db_file = Path(database_url.removeprefix("sqlite:///"))
        assert PASSWORD.encode() not in db_file.read_bytes()


def test_list_users_never_returns_hashes(accounts: Accounts) -> None:
    accounts.add_user("bob", PASSWORD, "viewer", projects=["default"])
    accounts.add_user("alice", PASSWORD + "!", "admin")
    users = accounts.list_users()
    assert [u.username for u in users] == ["alice", "bob"]
    assert "password_hash" not in UserRecord.__dataclass_fields__
    for user in users:
        assert not any("$argon2" in str(v) for v in vars(user).values())
    assert users[1].projects == ("default",)


def test_wrong_password_and_unknown_user_get_the_same_message(
    home: Path, database_url: str
) -> None:
    hasher = CountingHasher()
    acc = Accounts(url=database_url, hasher=hasher, settings=AccountSettings())
    try:
        acc.add_user("alice", PASSWORD, "viewer")
        with pytest.raises(AuthenticationError) as wrong:
            acc.authenticate("alice", "not the password at all")
        before = hasher.verifications
        with pytest.raises(AuthenticationError) as unknown:
            acc.authenticate("mallory", "not the password at all")
        # An unknown name still costs one argon2 verification, so timing does not tell.
        assert hasher.verifications == before + 1
    finally:
        acc.close()
    assert str(wrong.value) == str(unknown.value)
    assert str(wrong.value).startswith("Sign-in failed: the user name or password is wrong")
    assert (
        "after 5 failed attempts in a row an account is locked for 15 minutes"
        in str(wrong.value).lower()
    )


def test_lockout_after_n_failures_and_unlock_after_the_time(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD, "viewer", projects=["default"])
    for i in range(3):
        assert not accounts.get_user("alice").locked(T0)
        with pytest.raises(AuthenticationError):
            accounts.authenticate("alice", "wrong password!", now=T0 + timedelta(seconds=i))
    record = accounts.get_user("alice")
    locked_at = T0 + timedelta(seconds=2)
    assert record.locked_until == locked_at + timedelta(minutes=15)
    assert record.locked(locked_at + timedelta(minutes=14, seconds=59))
    # While locked, even the right password is refused, with the same message.
    with pytest.raises(AuthenticationError, match="Sign-in failed"):
        accounts.authenticate("alice", PASSWORD, now=locked_at + timedelta(minutes=14))
    # Once the lock ends the user has the full number of attempts again.
    assert record.failed_attempts == 0
    unlocked = locked_at + timedelta(minutes=15)
    with pytest.raises(AuthenticationError):
        accounts.authenticate("alice", "wrong password!", now=unlocked)
    assert not accounts.get_user("alice").locked(unlocked)
    actor = accounts.authenticate("alice", PASSWORD, now=unlocked)
    assert actor.username == "alice"
    after = accounts.get_user("alice")
    assert after.failed_attempts == 0
    assert after.locked_until is None


def test_only_consecutive_failures_lock(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD, "viewer")
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            accounts.authenticate("alice", "wrong password!", now=T0)
    accounts.authenticate("alice", PASSWORD, now=T0)
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            accounts.authenticate("alice", "wrong password!", now=T0)
    assert accounts.get_user("alice").failed_attempts == 2
    assert not accounts.get_user("alice").locked(T0)
    accounts.authenticate("alice", PASSWORD, now=T0)


def test_lockout_settings_come_from_the_environment(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_LOCKOUT_ATTEMPTS", "2")
    monkeypatch.setenv("MEDIMG_LOCKOUT_MINUTES", "60")
    acc = Accounts(url=database_url, hasher=FAST)
    try:
        acc.add_user("alice", PASSWORD, "viewer")
        for _ in range(2):
            with pytest.raises(AuthenticationError, match=r"After 2 failed .* for 60 minutes"):
                acc.authenticate("alice", "wrong password!", now=T0)
        assert acc.get_user("alice").locked_until == T0 + timedelta(minutes=60)
    finally:
        acc.close()


@pytest.mark.parametrize("value", ["0", "-3", "five", "2.5"])
def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("MEDIMG_LOCKOUT_ATTEMPTS", value)
    with pytest.raises(ConfigError, match=r"MEDIMG_LOCKOUT_ATTEMPTS must be a whole number"):
        AccountSettings.from_env()


def test_disabled_user_is_refused_until_enabled(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD, "viewer")
    accounts.add_user("root", PASSWORD, "admin")
    with pytest.raises(AuthenticationError) as unknown:
        accounts.authenticate("nobody", PASSWORD)
    assert accounts.disable("alice").disabled
    with pytest.raises(AuthenticationError) as disabled:
        accounts.authenticate("alice", PASSWORD)
    assert str(disabled.value) == str(unknown.value)
    assert accounts.get_user("alice").last_sign_in is None
    assert not accounts.enable("alice").disabled
    assert accounts.authenticate("alice", PASSWORD).username == "alice"


def test_enable_lifts_a_lockout(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD, "viewer")
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            accounts.authenticate("alice", "wrong password!", now=T0)
    accounts.enable("alice")
    accounts.authenticate("alice", PASSWORD, now=T0)


def test_old_hash_parameters_are_upgraded_at_sign_in(home: Path, database_url: str) -> None:
    weak = Accounts(url=database_url, hasher=FAST)
    weak.add_user("alice", PASSWORD, "viewer")
    weak.close()
    old = stored_hash(database_url, "alice")
    assert "m=1024,t=1,p=1" in old
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    acc = Accounts(url=database_url, hasher=stronger)
    try:
        acc.authenticate("alice", PASSWORD)
        new = stored_hash(database_url, "alice")
        assert new != old
        assert "m=2048,t=2,p=1" in new
        assert not stronger.check_needs_rehash(new)
        acc.authenticate("alice", PASSWORD)  # the new hash verifies
        # A wrong password does not upgrade anything.
        with pytest.raises(AuthenticationError):
            acc.authenticate("alice", "wrong password!")
        assert stored_hash(database_url, "alice") == new
    finally:
        acc.close()


@pytest.mark.parametrize(
    ("username", "password", "match"),
    [
        ("alice", "short pass", r"too short \(10 characters\); use at least 12"),
        ("alice", "", r"too short \(0 characters\)"),
        ("alice.smith-01", "Alice.Smith-01", "must not be the user name"),
        ("alice", "x" * 1025, "too long"),
    ],
)
def test_password_policy(username: str, password: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_password(password, username)


def test_password_policy_applies_to_add_and_set(accounts: Accounts) -> None:
    with pytest.raises(ConfigError, match="too short"):
        accounts.add_user("alice", "short", "viewer")
    assert accounts.list_users() == []
    accounts.add_user("alice", PASSWORD, "viewer")
    with pytest.raises(ConfigError, match="too short"):
        accounts.set_password("alice", "short")
    accounts.authenticate("alice", PASSWORD)
    accounts.set_password("alice", "a new long passphrase")
    with pytest.raises(AuthenticationError):
        accounts.authenticate("alice", PASSWORD)
    accounts.authenticate("alice", "a new long passphrase")


def test_user_names_are_unique_regardless_of_case(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD, "viewer")
    with pytest.raises(ConfigError, match="a user named 'Alice' already exists"):
        accounts.add_user("Alice", PASSWORD + "x", "admin")
    with pytest.raises(ConfigError, match="not a valid user name"):
        accounts.add_user("al ice", PASSWORD, "viewer")


def test_role_change_applies_at_the_next_sign_in(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD, "viewer", projects=["default"])
    accounts.add_user("root", PASSWORD, "admin")
    assert accounts.authenticate("alice", PASSWORD).role is Role.VIEWER
    assert accounts.set_role("ALICE", "analyst").role is Role.ANALYST
    assert accounts.authenticate("alice", PASSWORD).role is Role.ANALYST
    with pytest.raises(ConfigError, match="'owner' is not a role"):
        accounts.set_role("alice", "owner")
    with pytest.raises(ConfigError, match="there is no user named 'carol'"):
        accounts.set_role("carol", "admin")


def test_the_only_admin_cannot_be_demoted_or_disabled(accounts: Accounts) -> None:
    accounts.add_user("root", PASSWORD, "admin")
    with pytest.raises(ConfigError, match="only enabled admin"):
        accounts.set_role("root", "viewer")
    with pytest.raises(ConfigError, match="only enabled admin"):
        accounts.disable("root")
    accounts.add_user("second", PASSWORD, "admin")
    accounts.set_role("root", "viewer")
    assert accounts.get_user("root").role is Role.VIEWER


def test_projects_and_membership(accounts: Accounts) -> None:
    assert [p.name for p in accounts.list_projects()] == ["default"]
    accounts.add_project("Oncology")
    accounts.add_project("neuro")
    with pytest.raises(ConfigError, match="a project named 'oncology' already exists"):
        accounts.add_project("oncology")
    with pytest.raises(ConfigError, match="no project named 'cardio'"):
        accounts.add_user("alice", PASSWORD, "viewer", projects=["cardio"])
    accounts.add_user("alice", PASSWORD, "viewer")
    assert accounts.authenticate("alice", PASSWORD).project is None
    accounts.add_member("oncology", "alice")
    record = accounts.add_member("Oncology", "ALICE")  # twice: no change
    assert record.members == ("alice",)
    accounts.add_member("neuro", "alice")
    actor = accounts.authenticate("alice", PASSWORD)
    assert actor.projects == frozenset({"Oncology", "neuro"})
    assert actor.project == "neuro"  # first by name (case-insensitive) when not in "default"
    accounts.add_member("default", "alice")
    assert accounts.authenticate("alice", PASSWORD).project == "default"
    assert accounts.remove_member("neuro", "alice").members == ()
    assert accounts.authenticate("alice", PASSWORD).projects == frozenset({"Oncology", "default"})
    with pytest.raises(ConfigError, match="alice is not a member of project 'neuro'"):
        accounts.remove_member("neuro", "alice")
    with pytest.raises(ConfigError, match="no project named 'cardio'"):
        accounts.add_member("cardio", "alice")
    projects = {p.name: p.members for p in accounts.list_projects()}
    assert projects == {"default": ("alice",), "neuro": (), "Oncology": ("alice",)}


def test_acting_user_needs_the_admin_role(accounts: Accounts) -> None:
    viewer = Actor("vic", Role.VIEWER, frozenset({"default"}), "default")
    admin = Actor("root", Role.ADMIN, frozenset(), None)
    accounts.add_user("root", PASSWORD, "admin")
    calls: list[tuple[str, Any]] = [
        ("add_user", ("bob", PASSWORD, "viewer")),
        ("set_role", ("bob", "admin")),
        ("disable", ("bob",)),
        ("add_project", ("cardio",)),
        ("add_member", ("default", "bob")),
    ]
    for name, args in calls:
        with pytest.raises(PermissionDenied, match=r"vic \(viewer\) may not manage"):
            getattr(accounts, name)(*args, by=viewer)
        getattr(accounts, name)(*args, by=admin)
    assert accounts.get_user("bob").role is Role.ADMIN
    # A user may change their own password, not another's.
    accounts.add_user("vic", PASSWORD, "viewer")
    accounts.set_password("vic", "vic's new passphrase", by=viewer)
    with pytest.raises(PermissionDenied, match="manage users"):
        accounts.set_password("bob", "bob's new passphrase", by=viewer)
    assert Action.MANAGE_USERS.description == "manage users"


def test_accounts_live_in_the_registry_database(home: Path) -> None:
    with Registry() as registry, Accounts(hasher=FAST) as acc:
        assert acc.url == registry.url
        assert acc.url.endswith(f"{home}/registry.db")


def test_accounts_follow_medimg_database_url(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_DATABASE_URL", database_url)
    with Accounts(hasher=FAST) as acc:
        acc.add_user("alice", PASSWORD, "viewer")
    with Accounts(url=database_url, hasher=FAST) as again:
        assert [u.username for u in again.list_users()] == ["alice"]


def test_unreachable_database_is_one_clear_error(home: Path) -> None:
    from medimg_core.errors import RegistryError

    with pytest.raises(RegistryError, match="cannot open the account database at"):
        Accounts(url="sqlite:////nonexistent-dir/x/registry.db", hasher=FAST)


@pytest.mark.parametrize(
    ("idle", "expired"),
    [(timedelta(minutes=29, seconds=59), False), (timedelta(minutes=30), True)],
)
def test_session_expires_after_the_idle_time(idle: timedelta, expired: bool) -> None:
    assert session_expired(T0, T0 + idle, 30) is expired


def test_session_idle_time_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not session_expired(T0, T0 + timedelta(minutes=20))
    monkeypatch.setenv("MEDIMG_SESSION_IDLE_MINUTES", "10")
    assert session_expired(T0, T0 + timedelta(minutes=10))
    assert not session_expired(T0, T0 + timedelta(minutes=9))
    # Naive times are taken as UTC, as SQLite returns them.
    assert session_expired(T0.replace(tzinfo=None), T0 + timedelta(minutes=10))
