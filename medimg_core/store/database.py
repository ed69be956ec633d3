"""Opening medimg's database: the URL rules and engine options shared by the registry, the
accounts store and the audit trail.

Kept apart from :mod:`~medimg_core.store.registry` so that signing in (accounts) does not import
the modelling stack (scikit-learn) that the registry needs for training results.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.engine import URL, Connection, Engine, make_url

__all__ = ["SCHEMA_LOCK", "SQLITE_CONNECT_ARGS", "create_tables", "engine_url", "schema_lock"]

SCHEMA_LOCK = 7_202_611
"""PostgreSQL advisory-lock key under which every medimg table is created (registry, accounts,
audit): two processes opening a fresh database at once must not both create a table."""

SQLITE_CONNECT_ARGS: dict[str, Any] = {"timeout": 60}
"""Wait up to a minute for another process's write lock (SQLite's default is 5 s, too short for
several CLI runs, dashboard sessions and the audit trail writing to one file on a busy server)."""


def engine_url(url: str) -> URL:
    """The SQLAlchemy URL medimg opens for a user's database URL.

    ``postgresql://`` (and the older ``postgres://``) URLs name no driver; they get psycopg 3, the
    driver medimg installs, where SQLAlchemy would otherwise look for psycopg2. Any URL that
    names a driver (``postgresql+psycopg2://``) is kept as it is.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction no other process can create tables in at the same time.

    PostgreSQL: an advisory transaction lock (two ``CREATE TABLE``s of one name otherwise fail
    with a unique violation on ``pg_type``). SQLite: ``BEGIN IMMEDIATE``, the database's write
    lock, waited for as long as :data:`SQLITE_CONNECT_ARGS` allows.
    """
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_CONNECT_ARGS['timeout'] * 1000}")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
        yield conn


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """``metadata.create_all`` under :func:`schema_lock`."""
    with schema_lock(engine) as conn:
        metadata.create_all(conn)
