"""The database URL rules shared by the registry, the accounts store and the audit trail."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

from medimg_core.store.database import SQLITE_CONNECT_ARGS, engine_url


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
