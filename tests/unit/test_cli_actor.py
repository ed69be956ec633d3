"""The command line acts as a named local user (``--user`` / ``MEDIMG_USER``, ``--project``):
refusals are one line with exit status 2, and every action is audited with client "cli"."""

from __future__ import annotations

import getpass
import io
import sys
from pathlib import Path

import pandas as pd
import pytest
from argon2 import PasswordHasher

from medimg_core.access import DEFAULT_PROJECT, SINGLE_USER, Role
from medimg_core.cli import cli_actor
from medimg_core.errors import ConfigError, PermissionDenied
from medimg_core.store import accounts as accounts_module
from medimg_core.store.accounts import Accounts
from medimg_core.store.audit import AuditTrail
from medimg_core.store.registry import Registry
from tests.unit.test_cli import FAST, assert_one_line_error, run, wdbc_csv

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def fast_hashing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        accounts_module,
        "PasswordHasher",
        lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    monkeypatch.delenv("MEDIMG_USER", raising=False)


def add_users(*users: tuple[str, str, tuple[str, ...]]) -> None:
    with Accounts() as accounts:
        for project in {p for _, _, projects in users for p in projects}:
            if project not in {p.name for p in accounts.list_projects()}:
                accounts.add_project(project)
        for name, role, projects in users:
            accounts.add_user(name, PASSWORD, role, projects=projects)


def audit_rows() -> list[tuple[str | None, ...]]:
    """(user, project, action, outcome) of every entry with client "cli"."""
    with Registry() as registry:
        frame = AuditTrail(registry).entries()
    frame = frame[frame["client"] == "cli"]
    rows = frame[["user", "project", "action", "outcome"]].itertuples(index=False, name=None)
    return [tuple(None if pd.isna(v) else v for v in row) for row in rows]  # type: ignore[misc]


def test_without_accounts_the_cli_is_the_single_local_user(home: Path) -> None:
    actor = cli_actor(None, None)
    assert (actor.role, actor.projects, actor.project) == (
        SINGLE_USER.role,
        SINGLE_USER.projects,
        DEFAULT_PROJECT,
    )
    assert actor.username == getpass.getuser()
    with pytest.raises(PermissionDenied, match="not a member of project 'other'"):
        cli_actor(None, "other")


def test_with_accounts_a_named_enabled_account_is_needed(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_users(("ann", "analyst", ("default",)), ("max", "admin", ("onco", "cardio")))
    with pytest.raises(PermissionDenied, match="--user NAME"):
        cli_actor(None, None)
    with pytest.raises(ConfigError, match="no local account 'ghost'"):
        cli_actor("ghost", None)
    ann = cli_actor("ANN", None)
    assert (ann.username, ann.role, ann.project) == ("ann", Role.ANALYST, "default")
    monkeypatch.setenv("MEDIMG_USER", "ann")
    assert cli_actor(None, None) == ann
    with pytest.raises(ConfigError, match=r"several projects .*--project"):
        cli_actor("max", None)
    assert cli_actor("max", "onco").project == "onco"
    with pytest.raises(PermissionDenied, match="not a member of project 'default'"):
        cli_actor("max", "default")
    with Accounts() as accounts:
        accounts.disable("ann")
    with pytest.raises(PermissionDenied, match="'ann' is disabled"):
        cli_actor("ann", None)


def test_refusals_are_one_line_and_audited(home: Path, tmp_path: Path) -> None:
    add_users(("vera", "viewer", ("default",)), ("ann", "analyst", ("default",)))
    status, _, err = run(["runs"])
    assert_one_line_error(status, err, r"local accounts are configured.*--user NAME")
    model_dir = tmp_path / "m"
    status, _, err = run(["--user", "vera", "train", "sample:wdbc", *FAST, "-o", str(model_dir)])
    assert_one_line_error(status, err, r"vera \(viewer\) may not train a model: only analysts")
    assert not model_dir.exists()
    status, _, err = run(
        [
            *("--user", "vera", "clean", "sample:wdbc"),
            *("-o", str(tmp_path / "c.parquet"), "--report", str(tmp_path / "r.json")),
        ]
    )
    assert_one_line_error(status, err, r"may not clean data")
    assert not (tmp_path / "c.parquet").exists()
    status, _, err = run(["--user", "vera", "users", "disable", "ann"])
    assert_one_line_error(status, err, r"may not manage users")
    status, _, err = run(["--user", "vera", "audit", "verify"])
    assert_one_line_error(status, err, r"may not read the audit trail")
    status, _, err = run(["--user", "ann", "--project", "onco", "runs"])
    assert_one_line_error(status, err, r"ann is not a member of project 'onco'")
    assert audit_rows() == [
        ("vera", "default", "train", "refused"),
        ("vera", "default", "clean", "refused"),
        ("vera", "default", "user change", "refused"),
    ]


def test_an_analyst_trains_owns_and_deletes_only_their_runs(home: Path, tmp_path: Path) -> None:
    add_users(
        ("ann", "analyst", ("default",)),
        ("otto", "analyst", ("default",)),
        ("vera", "viewer", ("default",)),
    )
    status, out, err = run(
        ["--user", "ann", "train", "sample:wdbc", *FAST, "-o", str(tmp_path / "m")]
    )
    assert status == 0, err
    assert "Recorded in project 'default' with ann as owner" in out
    with Registry() as registry:
        (run_id,) = [r.id for r in registry.list_runs(SINGLE_USER)]
        assert registry.get_run(SINGLE_USER, run_id).owner == "ann"
    cases = wdbc_csv(tmp_path / "new.csv")
    status, _, err = run(
        [
            "--user",
            "vera",
            "predict",
            str(tmp_path / "m"),
            str(cases),
            "-o",
            str(tmp_path / "p.csv"),
        ]
    )
    assert status == 0, err
    status, _, err = run(
        [
            "--user",
            "vera",
            "evaluate",
            str(tmp_path / "m"),
            str(cases),
            "--json",
            str(tmp_path / "e.json"),
        ]
    )
    assert_one_line_error(status, err, r"vera \(viewer\) may not validate a model on external")
    assert not (tmp_path / "e.json").exists()
    status, out, _ = run(["--user", "otto", "runs"])
    assert status == 0 and run_id in out and " ann " in out
    status, _, err = run(["--user", "otto", "runs", "--delete", run_id])
    assert_one_line_error(status, err, r"otto \(analyst\) may not delete ann's run")
    status, out, _ = run(["--user", "ann", "runs", "--delete", run_id])
    assert status == 0 and f"Run {run_id}" in out
    assert audit_rows() == [
        ("ann", "default", "train", "ok"),
        ("vera", "default", "predict", "ok"),
        ("vera", "default", "evaluate", "refused"),
        ("otto", "default", "delete", "refused"),
        ("ann", "default", "delete", "ok"),
    ]


def test_account_changes_are_audited(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    status, _, _ = run(["users", "add", "root", "--role", "admin", "--password-stdin"])
    assert status == 0
    status, _, _ = run(["--user", "root", "projects", "add", "onco"])
    assert status == 0
    assert audit_rows() == [
        (getpass.getuser(), "default", "user change", "ok"),
        ("root", None, "project change", "ok"),
    ]
