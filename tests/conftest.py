"""Fixtures shared by every test folder: the databases the registry, audit trail and accounts run on.

medimg keeps its registry (and the audit trail and accounts beside it) in SQLite by default and in
PostgreSQL when ``MEDIMG_DATABASE_URL`` points there. Tests of those tables take ``database_url``
and so run once on each. The PostgreSQL server comes from ``MEDIMG_TEST_POSTGRES_URL`` (``.ci/run``
starts one and sets it); without it the PostgreSQL half is skipped with the reason.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import URL, make_url

POSTGRES_ENV = "MEDIMG_TEST_POSTGRES_URL"
# Set by .ci/run: there an unreachable server fails the PostgreSQL tests instead of skipping them.
REQUIRE_ENV = "MEDIMG_REQUIRE_POSTGRES"
NOT_AVAILABLE = f"PostgreSQL not available: set {POSTGRES_ENV} (.ci/run does)"
# Throw-away databases are named with this prefix; .ci/run drops any left by an interrupted run.
DATABASE_PREFIX = "medimg_t_"


def _server_url(url: str) -> URL:
    """``MEDIMG_TEST_POSTGRES_URL`` parsed; it must name a PostgreSQL server."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise pytest.UsageError(f"{POSTGRES_ENV} must be a postgresql:// URL, got {parsed!r}")
    return parsed


def _connect(url: URL) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password,
        dbname=url.database,
        connect_timeout=10,
        autocommit=True,
    )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server for tests, as ``postgresql://user:password@host:port/database``.

    Read from ``MEDIMG_TEST_POSTGRES_URL`` (``.ci/run`` starts a server and sets it). The role in
    the URL must be allowed to create databases (``database_url`` makes one per test). When the
    variable is unset or the server does not answer, every test that uses this fixture is skipped
    with the reason, unless ``MEDIMG_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which fails them.
    Most tests want ``database_url`` instead: an empty database of their own.
    """
    url = os.environ.get(POSTGRES_ENV, "").strip()
    required = os.environ.get(REQUIRE_ENV) == "1"
    if not url:
        if required:
            pytest.fail(f"{NOT_AVAILABLE}; {REQUIRE_ENV}=1 requires it")
        pytest.skip(NOT_AVAILABLE)
    parsed = _server_url(url)
    try:
        with _connect(parsed) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure to connect means "not available here"
        reason = f"{NOT_AVAILABLE}; cannot connect to {parsed!r}: {str(exc).strip()}"
        if required:
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def postgres_database_url(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, as a plain ``postgresql://...`` URL.

    The URL is written as a user would set ``MEDIMG_DATABASE_URL`` (no driver named). The database
    has a unique name (``medimg_t_<random>``) on the server of ``postgres_url`` and is dropped
    after the test even if connections are still open, so tests are isolated from each other
    and can run in parallel (``pytest -n 2``). Skipped like ``postgres_url``. For tests of
    PostgreSQL-only behaviour; tests of behaviour both databases share take ``database_url``.
    """
    server = _server_url(postgres_url)
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
    with _connect(server) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(server, name)


def _drop_database(server: URL, name: str) -> None:
    """Drop a test database. FORCE ends the test's own leftover connections, but not an
    autovacuum worker that the server started in it (a superuser process, which the test role
    may not end): wait for that one to finish and try again."""
    for attempt in range(40):
        try:
            with _connect(server) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == 39:
                raise
            time.sleep(0.25)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for one test, once on SQLite and once on PostgreSQL.

    A test that takes this fixture runs twice (ids ``[sqlite]`` and ``[postgresql]``):

    - ``sqlite``: ``sqlite:////<tmp_path>/registry.db``, a file not yet created.
    - ``postgresql``: ``postgres_database_url``, a new database of its own on the test server,
      dropped after the test. Skipped when no server is available (see ``postgres_url``);
      ``-m "not postgres"`` deselects this half.

    Pass it on explicitly (``Registry(url=database_url, home=...)``) or set it as
    ``MEDIMG_DATABASE_URL`` with ``monkeypatch.setenv`` to test the path users take.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    url: str = request.getfixturevalue("postgres_database_url")
    return url


@pytest.fixture(scope="session", autouse=True)
def session_encryption_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One encryption key for the session, outside every workspace, never the real home's.

    Set before any module- or session-scoped fixture runs, so a model such a fixture trains is
    encrypted with it (and readable by every test, see ``encryption_key_file``).
    ``MEDIMG_ENCRYPTION_KEY`` is cleared so that a developer's own key never reaches a test.
    """
    path = tmp_path_factory.mktemp("medimg-session-key") / "key"
    path.write_bytes(base64.urlsafe_b64encode(secrets.token_bytes(32)) + b"\n")
    path.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDIMG_KEY_FILE", str(path))
        patch.delenv("MEDIMG_ENCRYPTION_KEY", raising=False)
        yield path


@pytest.fixture(autouse=True)
def encryption_key_file(
    session_encryption_key: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """Each test's own key file (``MEDIMG_KEY_FILE``), in a folder outside any workspace.

    It holds the session's key, so files written by shared fixtures stay readable, while a test
    that rotates, deletes or loosens its key file touches nothing outside itself. A test that
    needs no key at all points ``MEDIMG_KEY_FILE`` at a path that does not exist.
    """
    path = tmp_path_factory.mktemp("medimg-key") / "key"
    shutil.copyfile(session_encryption_key, path)
    path.chmod(0o600)
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(path))
    monkeypatch.delenv("MEDIMG_ENCRYPTION_KEY", raising=False)
    return path


@pytest.fixture(autouse=True)
def restore_main_module() -> Iterator[None]:
    """Put back ``sys.modules["__main__"]`` after each test.

    Streamlit's AppTest runs ``app.py`` as ``__main__`` and leaves it there; a later test in
    the same pytest-xdist worker that starts a process with the "spawn" or "forkserver" method
    would then run ``app.py`` in the child (multiprocessing re-imports the parent's main module
    there) and the child dies before doing its work.
    """
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main
