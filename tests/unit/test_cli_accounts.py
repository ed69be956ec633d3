"""Tests for ``medimg users ...`` and ``medimg projects ...`` (medimg_core.cli)."""

from __future__ import annotations

import getpass
import io
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from medimg_core import cli
from medimg_core.access import Role
from medimg_core.errors import AuthenticationError
from medimg_core.store import accounts as accounts_module
from medimg_core.store.accounts import Accounts

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_hashing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command in a fresh workspace, with cheap argon2 parameters."""
    monkeypatch.setattr(
        accounts_module,
        "PasswordHasher",
        lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


ROOT = ("--user", "root")
"""Once accounts exist, the command line acts as a named account: here the admin "root"."""


def add_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Add the admin account "root" (in no project) while no account exists yet."""
    status, _, err = run(
        monkeypatch,
        capsys,
        *("users", "add", "root", "--role", "admin", "--password-stdin"),
        stdin=PASSWORD + "\n",
    )
    assert (status, err) == (0, "")


def test_add_user_reads_the_password_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(monkeypatch, capsys, "projects", "add", "oncology")[0] == 0
    status, out, err = run(
        monkeypatch,
        capsys,
        *("users", "add", "alice", "--role", "analyst", "--project", "oncology"),
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert (status, err) == (0, "")
    assert out.strip() == "Added alice (analyst), member of oncology."
    with Accounts() as acc:
        actor = acc.authenticate("alice", PASSWORD)
    assert actor.role is Role.ANALYST
    assert actor.projects == frozenset({"oncology"})


def test_add_user_asks_twice_without_echo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(typed))
    status, out, _ = run(monkeypatch, capsys, "users", "add", "bob", "--role", "viewer")
    assert status == 0
    assert "in no project yet, so they see no data" in out
    assert "medimg projects add-member PROJECT bob" in out
    with Accounts() as acc:
        acc.authenticate("bob", PASSWORD)


def test_two_different_passwords_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typed = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(typed))
    status, _, err = run(monkeypatch, capsys, "users", "add", "bob", "--role", "viewer")
    assert status == 2
    assert err == "medimg: error: the two passwords typed differ; run the command again.\n"
    with Accounts() as acc:
        assert acc.list_users() == []


@pytest.mark.parametrize(
    "given", [("--password", PASSWORD), (f"--password={PASSWORD}",), ("--pass", PASSWORD)]
)
def test_the_password_is_never_an_argument(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], given: tuple[str, ...]
) -> None:
    status, _, err = run(monkeypatch, capsys, "users", "add", "bob", "--role", "viewer", *given)
    assert status == 2
    assert "a password is never given on the command line" in err or "ambiguous option" in err
    assert PASSWORD not in err
    with Accounts() as acc:
        assert acc.list_users() == []


def test_errors_are_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(
        monkeypatch,
        capsys,
        *("users", "add", "alice", "--role", "admin", "--password-stdin"),
        stdin="short\n",
    )
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith("medimg: error: the password is too short (5 characters)")
    status, _, err = run(
        monkeypatch,
        capsys,
        *("users", "add", "alice", "--role", "admin", "--project", "cardio", "--password-stdin"),
        stdin=PASSWORD + "\n",
    )
    assert status == 2
    assert err.startswith("medimg: error: there is no project named 'cardio'")
    status, _, err = run(monkeypatch, capsys, "users", "disable", "nobody")
    assert (status, err.count("\n")) == (2, 1)
    assert "there is no user named 'nobody'" in err


def test_list_disable_enable_and_set_role(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(monkeypatch, capsys, "users", "list")
    assert status == 0
    assert out.startswith("No users yet in sqlite:///")
    for name, role in (("root", "admin"), ("alice", "viewer")):
        run(
            monkeypatch,
            capsys,
            *(ROOT if name != "root" else ()),
            *("users", "add", name, "--role", role, "--project", "default", "--password-stdin"),
            stdin=PASSWORD + "\n",
        )
    assert run(monkeypatch, capsys, *ROOT, "users", "disable", "alice")[0] == 0
    status, out, _ = run(monkeypatch, capsys, *ROOT, "users", "list")
    lines = out.splitlines()
    assert lines[0].split() == [
        "name",
        "role",
        "projects",
        "disabled",
        "locked",
        "last",
        "sign-in",
    ]
    assert lines[1].split() == ["alice", "viewer", "default", "yes", "no", "never"]
    assert lines[2].split() == ["root", "admin", "default", "no", "no", "never"]
    assert PASSWORD not in out and "argon2" not in out
    with Accounts() as acc, pytest.raises(AuthenticationError):
        acc.authenticate("alice", PASSWORD)
    status, out, _ = run(monkeypatch, capsys, *ROOT, "users", "enable", "alice")
    assert out.startswith("Enabled alice")
    status, out, _ = run(monkeypatch, capsys, *ROOT, "users", "set-role", "alice", "analyst")
    assert out.strip() == "alice is now analyst; it applies from their next sign-in."
    with Accounts() as acc:
        assert acc.authenticate("alice", PASSWORD).role is Role.ANALYST
    status, _, err = run(monkeypatch, capsys, *ROOT, "users", "set-role", "alice", "owner")
    assert status == 2
    assert "invalid choice: 'owner'" in err


def test_list_shows_a_locked_account(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    add_root(monkeypatch, capsys)
    run(
        monkeypatch,
        capsys,
        *ROOT,
        *("users", "add", "alice", "--role", "viewer", "--password-stdin"),
        stdin=PASSWORD + "\n",
    )
    with Accounts() as acc:
        for _ in range(acc.settings.lockout_attempts):
            with pytest.raises(AuthenticationError):
                acc.authenticate("alice", "wrong password!")
        until = acc.get_user("alice").locked_until
    assert until is not None and until > datetime.now(UTC)
    _, out, _ = run(monkeypatch, capsys, *ROOT, "users", "list")
    assert f"until {until:%Y-%m-%d %H:%M} UTC" in out.splitlines()[1]


def test_set_password(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run(
        monkeypatch,
        capsys,
        *("users", "add", "alice", "--role", "viewer", "--password-stdin"),
        stdin=PASSWORD + "\n",
    )
    status, out, _ = run(
        monkeypatch,
        capsys,
        *("--user", "alice", "users", "set-password", "ALICE", "--password-stdin"),
        stdin="another long passphrase\r\n",
    )
    assert status == 0
    assert out.startswith("Changed the password of alice")
    with Accounts() as acc:
        acc.authenticate("alice", "another long passphrase")
        with pytest.raises(AuthenticationError):
            acc.authenticate("alice", PASSWORD)


def test_projects_add_list_and_members(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(monkeypatch, capsys, "projects", "add", "Oncology")
    assert status == 0
    assert out.startswith("Added project Oncology.")
    status, _, err = run(monkeypatch, capsys, "projects", "add", "oncology")
    assert status == 2
    assert "a project named 'oncology' already exists" in err
    add_root(monkeypatch, capsys)
    run(
        monkeypatch,
        capsys,
        *ROOT,
        *("users", "add", "alice", "--role", "viewer", "--password-stdin"),
        stdin=PASSWORD + "\n",
    )
    status, out, _ = run(monkeypatch, capsys, *ROOT, "projects", "add-member", "oncology", "alice")
    assert out.strip() == "Project Oncology now has 1 member(s): alice."
    _, out, _ = run(monkeypatch, capsys, *ROOT, "projects", "list")
    assert [line.split() for line in out.splitlines()] == [
        ["project", "members"],
        ["default", "(none)"],
        ["Oncology", "alice"],
    ]
    status, out, _ = run(
        monkeypatch, capsys, *ROOT, "projects", "remove-member", "Oncology", "alice"
    )
    assert status == 0
    assert "Members: none." in out
    with Accounts() as acc:
        assert acc.authenticate("alice", PASSWORD).projects == frozenset()
