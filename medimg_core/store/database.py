"""Opening medimg's database: the URL rules and engine options shared by the registry, the
accounts store and the audit trail.

Kept apart from :mod:`~medimg_core.store.registry` so that signing in (accounts) does not import
the modelling stack (scikit-learn) that the registry needs for training results.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from medimg_core.errors import RegistryError
from medimg_core.workspace import workspace_home

__all__ = [
    "SCHEMA_LOCK",
    "SQLITE_CONNECT_ARGS",
    "create_tables",
    "database_url",
    "engine_url",
    "first_line",
    "open_engine",
    "refuse_empty_sqlite",
    "safe_url",
    "schema_lock",
    "session_scope",
    "sqlite_write_transaction",
]

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


def database_url(url: str | None, home: str | os.PathLike[str] | None = None) -> str:
    """The database URL medimg uses: ``url``, else ``MEDIMG_DATABASE_URL``, else
    ``sqlite:///<home>/registry.db`` (the workspace folder created when that file is used).

    Raises
    ------
    RegistryError
        When the workspace folder cannot be created.
    """
    url = url or os.environ.get("MEDIMG_DATABASE_URL")
    return url or f"sqlite:///{workspace_home(home)}/registry.db"


def open_engine(url: str, **options: Any) -> Engine:
    """An engine for a user's database URL (see :func:`engine_url`), with medimg's options.

    A server database may restart under a long-running dashboard: its connections are tested
    before use instead of failing the next page. SQLite waits for other writers (see
    :data:`SQLITE_CONNECT_ARGS`). ``options`` go to :func:`sqlalchemy.create_engine` as well.
    """
    parsed = engine_url(url)
    if parsed.get_backend_name() != "sqlite":
        options["pool_pre_ping"] = True
    else:
        refuse_empty_sqlite(parsed)
        options["connect_args"] = SQLITE_CONNECT_ARGS
    return create_engine(parsed, **options)


_EMPTY_CHECKS = 5
_EMPTY_RECHECK_SECONDS = 0.1


def _sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or a ``file:`` URI."""
    name = parsed.database
    if not name or name == ":memory:" or name.startswith("file:") or parsed.query.get("uri"):
        return None
    return Path(name).expanduser()


def refuse_empty_sqlite(parsed: URL) -> None:
    """Refuse a SQLite database file that exists but is empty (0 bytes).

    SQLite opens an empty file as an empty database, so a registry truncated by a failing disk,
    a bad copy or a restore would silently show no runs, and the next write would make the loss
    permanent. A workspace without the file (a new one) is fine: SQLite creates it. A process
    creating a new database holds its write lock until its tables are committed, so the check
    waits for that lock (as long as :data:`SQLITE_CONNECT_ARGS` allows) and looks again, a few
    times over half a second (the creator may not hold the lock yet): only a file still empty
    then is refused.

    Raises
    ------
    RegistryError
        When the file is empty.
    """
    path = _sqlite_file(parsed)
    if path is None:
        return
    try:
        for attempt in range(_EMPTY_CHECKS):
            if not path.is_file() or path.stat().st_size > 0:
                return
            if attempt:
                # The creator may have opened the file but not yet taken the lock.
                time.sleep(_EMPTY_RECHECK_SECONDS)
            conn = sqlite3.connect(path, timeout=SQLITE_CONNECT_ARGS["timeout"])
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.rollback()
            finally:
                conn.close()
        if not path.is_file() or path.stat().st_size > 0:
            return
    except (OSError, sqlite3.Error):
        return  # unreadable or locked for good: opening it reports the problem in its own terms
    raise RegistryError(
        f"the database file {path} is empty (0 bytes), so the runs, accounts and audit trail "
        "it held are gone from it; medimg will not open it as a new, empty database. Restore "
        "it from a backup, or, if this workspace never recorded anything, delete the empty "
        "file and medimg will create a new one."
    )


def safe_url(url: str) -> str:
    """``url`` with its password masked, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextlib.contextmanager
def session_scope(
    engine: Engine, what: str, *, passthrough: tuple[type[Exception], ...] = ()
) -> Iterator[Session]:
    """A session in one transaction, committed at the end.

    A database error raises :class:`~medimg_core.errors.RegistryError` ("cannot <what>: ..."),
    except those of the ``passthrough`` types, which the caller handles.
    """
    try:
        with Session(engine) as session, session.begin():
            yield session
    except passthrough:
        raise
    except SQLAlchemyError as exc:
        raise RegistryError(
            f"cannot {what}: {first_line(exc)}; check that the database is reachable and writable."
        ) from exc


@contextlib.contextmanager
def sqlite_write_transaction(engine: Engine) -> Iterator[Connection]:
    """A SQLite transaction that holds the database's write lock from its start.

    ``BEGIN IMMEDIATE`` (the driver would otherwise open a deferred transaction itself, and take
    the lock only at the first write), waited for as long as :data:`SQLITE_CONNECT_ARGS` allows.
    """
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


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A transaction no other process can create tables in at the same time.

    PostgreSQL: an advisory transaction lock (two ``CREATE TABLE``s of one name otherwise fail
    with a unique violation on ``pg_type``). SQLite: ``BEGIN IMMEDIATE``, the database's write
    lock (:func:`sqlite_write_transaction`).
    """
    if engine.dialect.name == "sqlite":
        with sqlite_write_transaction(engine) as conn:
            yield conn
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")
        yield conn


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """``metadata.create_all`` under :func:`schema_lock`."""
    with schema_lock(engine) as conn:
        metadata.create_all(conn)
