"""The database URL rules shared by the registry, the accounts store and the audit trail."""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from medimg_core.access import SINGLE_USER
from medimg_core.errors import RegistryError
from medimg_core.store.accounts import Accounts
from medimg_core.store.database import SQLITE_CONNECT_ARGS, engine_url, open_engine
from medimg_core.store.registry import Registry


def test_plain_postgresql_urls_get_the_installed_driver_and_others_are_kept() -> None:
    assert engine_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert engine_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    assert engine_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"
    assert engine_url("sqlite:////tmp/r.db").drivername == "sqlite"


def test_sqlite_waits_for_another_writer_longer_than_its_default() -> None:
    assert SQLITE_CONNECT_ARGS["timeout"] >= 30


def test_signing_in_does_not_import_the_modelling_stack() -> None:
    """The accounts store (sign-in) opens the database without loading scikit-learn."""
    code = "import sys, medimg_core.store.accounts; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _open_everything(url: str, home: str) -> None:
    from medimg_core.store.accounts import Accounts
    from medimg_core.store.audit import AuditTrail
    from medimg_core.store.registry import Registry

    with Registry(url=url, home=home) as registry:
        Accounts(url=url, home=home).close()
        AuditTrail(registry).close()


def test_processes_opening_a_fresh_database_at_once_do_not_race(
    database_url: str, tmp_path: Path
) -> None:
    """Two CLI runs or dashboard workers starting together both create the tables; before the
    schema lock, PostgreSQL failed one of them with a unique violation on pg_type."""
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_open_everything, args=(database_url, str(tmp_path)))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0, 0, 0]


# --- issue 12: an empty registry file is a lost registry, not a new one ----------------------


@pytest.mark.parametrize("opener", [Registry, Accounts], ids=["registry", "accounts"])
def test_an_empty_database_file_is_refused_with_the_fix(home: Path, opener: type) -> None:
    home.mkdir(parents=True)
    (home / "registry.db").write_bytes(b"")
    with pytest.raises(RegistryError, match=r"registry.db is empty \(0 bytes\).*Restore it from a"):
        opener()
    assert (home / "registry.db").stat().st_size == 0  # nothing written over it


def test_a_new_workspace_without_a_database_file_still_opens(home: Path) -> None:
    with Registry() as registry:
        assert registry.list_runs(SINGLE_USER) == []
    assert (home / "registry.db").stat().st_size > 0
    with Registry():  # and opens again
        pass


def test_a_database_being_created_by_another_process_is_not_refused(tmp_path: Path) -> None:
    """Between SQLite creating the file and committing its first table, the file is empty but
    write-locked: the check waits for the lock instead of refusing."""
    path = tmp_path / "registry.db"
    creator = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    creator.execute("BEGIN IMMEDIATE")
    assert path.stat().st_size == 0
    opened: list[object] = []
    opener = threading.Thread(
        target=lambda: opened.append(open_engine(f"sqlite:///{path}")), daemon=True
    )
    opener.start()
    opener.join(0.5)  # let it reach the lock (the test holds either way)
    creator.execute("CREATE TABLE t (x INTEGER)")
    creator.execute("COMMIT")
    creator.close()
    opener.join()
    assert len(opened) == 1


def test_the_cli_refuses_an_empty_registry_in_one_line(home: Path) -> None:
    from medimg_core.cli import main

    home.mkdir(parents=True)
    (home / "registry.db").write_bytes(b"")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(["runs"])
    assert status == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err.getvalue()
    assert "registry.db is empty (0 bytes)" in lines[0]
