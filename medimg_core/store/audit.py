"""The audit trail: who did what, when, from where, with which outcome; append-only and
tamper-evident.

Every entry is one row of the ``audit`` table in the registry database (SQLite by default,
PostgreSQL through ``MEDIMG_DATABASE_URL``). An entry records the time (UTC), the user, their
role and project, the action (one of :data:`ACTIONS`), the object acted on, the outcome and the
client address. The object is a run ID or a content hash and nothing else: an entry never holds
a cell value, a patient identifier or a file name that could carry one.

Tamper evidence: each entry carries ``hash``, the SHA-256 of a canonical JSON of its fields and
of ``prev_hash``, the hash of the entry before it (64 zeros for the first). Changing, removing
or moving an entry breaks the chain at that entry, which :meth:`AuditTrail.verify` reports.
The database itself refuses UPDATE and DELETE on the table (triggers), and appends are
serialised (``BEGIN IMMEDIATE`` in SQLite, an exclusive table lock in PostgreSQL) so that two
writers never chain to the same predecessor. Entry numbers (``seq``) are given under that lock,
without gaps, so a gap always means a removed entry.

A chain cannot show that its newest entries were cut off: :attr:`VerifyResult.last_hash`, noted
somewhere else (a ticket, an e-mail to the information-governance office), closes that gap.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from medimg_core._messages import quote_list
from medimg_core.access import Action, Actor, Role, require
from medimg_core.errors import ConfigError, PrivacyError, RegistryError
from medimg_core.privacy import to_safe_csv
from medimg_core.store.audit_actions import ACTIONS
from medimg_core.store.database import schema_lock, sqlite_write_transaction
from medimg_core.store.registry import Registry

__all__ = [
    "ACTIONS",
    "CLIENT_WORDS",
    "COLUMNS",
    "GENESIS_HASH",
    "OUTCOMES",
    "ROLES",
    "AuditEntry",
    "AuditFilter",
    "AuditTrail",
    "VerifyResult",
    "audit_csv",
    "entry_hash",
    "read_entries",
    "verify_trail",
]


OUTCOMES: tuple[str, ...] = ("ok", "refused", "failed")
"""``refused``: not permitted; ``failed``: permitted but did not complete."""

ROLES: tuple[str, ...] = tuple(role.value for role in Role)

CLIENT_WORDS: tuple[str, ...] = ("cli", "local")
"""Clients that are not a network address: the command line, and the machine itself."""

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first entry."""

COLUMNS: tuple[str, ...] = (
    "seq",
    "time",
    "user",
    "role",
    "project",
    "action",
    "object",
    "outcome",
    "client",
    "prev_hash",
    "hash",
)

_RUN_ID = re.compile(r"^\d{8}-\d{6}-\d{6}-[0-9a-f]{6}$")
_CONTENT_HASH = re.compile(r"^[0-9a-f]{64}$")
# A staff name or e-mail from the identity provider: printable, one line, bounded.
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_REFUSAL = "the audit trail is append-only: its entries cannot be changed or removed"

_metadata = MetaData()
_audit = Table(
    "audit",
    _metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("user", String(128), nullable=False, index=True),
    Column("role", String(16), nullable=True),
    Column("project", String(128), nullable=True),
    Column("action", String(32), nullable=False, index=True),
    Column("object", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("client", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS audit_refuse_update BEFORE UPDATE ON audit "
    f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END",
    f"CREATE TRIGGER IF NOT EXISTS audit_refuse_delete BEFORE DELETE ON audit "
    f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END",
)
_POSTGRES_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION medimg_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN RAISE EXCEPTION '{_REFUSAL}'; END $$",
    "DO $$ BEGIN "
    "IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'audit'::regclass "
    "AND tgname = 'audit_refuse_change') THEN "
    "CREATE TRIGGER audit_refuse_change BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH ROW EXECUTE FUNCTION medimg_audit_refuse(); END IF; "
    "IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'audit'::regclass "
    "AND tgname = 'audit_refuse_truncate') THEN "
    "CREATE TRIGGER audit_refuse_truncate BEFORE TRUNCATE ON audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION medimg_audit_refuse(); END IF; "
    "END $$",
)
# Any fixed number: serialises the creation of the table, function and triggers between
# processes starting at once, which PostgreSQL would otherwise let collide.


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit trail.

    Attributes
    ----------
    seq : the entry's number, 1, 2, 3 ... without gaps.
    time : when it was written (UTC).
    user, role, project : who acted, as which role, in which project (role and project are
        None where there is none, such as a failed sign-in).
    action : one of :data:`ACTIONS`.
    object : the run ID or content hash acted on, or None.
    outcome : one of :data:`OUTCOMES`.
    client : the client's IP address, or "cli" / "local".
    prev_hash, hash : the chain: the previous entry's hash, and this entry's.
    """

    seq: int
    time: datetime
    user: str
    role: str | None
    project: str | None
    action: str
    object: str | None
    outcome: str
    client: str
    prev_hash: str
    hash: str

    def hashed_fields(self) -> dict[str, Any]:
        """The fields the hash covers (all but ``hash``), as JSON-ready values."""
        return {
            "seq": self.seq,
            "time": _time_text(self.time),
            "user": self.user,
            "role": self.role,
            "project": self.project,
            "action": self.action,
            "object": self.object,
            "outcome": self.outcome,
            "client": self.client,
            "prev_hash": self.prev_hash,
        }


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to read; every criterion given must hold.

    Attributes
    ----------
    user : entries by this user.
    action : entries of this action (one of :data:`ACTIONS`).
    since, until : entries written at or after ``since`` and at or before ``until``; a time
        without a zone is read as UTC.
    """

    user: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the whole chain.

    Attributes
    ----------
    ok : True when every entry is intact and in place.
    n_entries : how many entries the table holds.
    first_broken_seq : the number of the first entry that is changed, missing or out of place;
        None when intact.
    reason : what is wrong with it, in plain words; None when intact.
    last_hash : the newest entry's hash (64 zeros when empty). Noted elsewhere, it shows later
        whether the newest entries were removed, which no chain can show by itself.
    """

    ok: bool
    n_entries: int
    first_broken_seq: int | None
    reason: str | None
    last_hash: str

    @property
    def message(self) -> str:
        """One line for the user: intact with its size, or the first broken entry and why."""
        if self.ok:
            return f"audit trail intact: {self.n_entries} entries"
        return f"audit trail broken at entry {self.first_broken_seq}: {self.reason}"


def entry_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's fields.

    Parameters
    ----------
    fields : :meth:`AuditEntry.hashed_fields`.

    Returns
    -------
    str
        Keys sorted, no spaces, UTF-8: the same entry gives the same hash on every database
        and every machine.
    """
    text = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def audit_csv(frame: pd.DataFrame) -> bytes:
    """CSV bytes of :meth:`AuditTrail.entries`, times in ISO 8601 UTC, formula-safe.

    A user name such as ``=HYPERLINK(...)`` typed at a failed sign-in would otherwise run as a
    formula when the export is opened in a spreadsheet.
    """
    out = frame.copy()
    if "time" in out.columns:
        out["time"] = [_time_text(t.to_pydatetime()) for t in out["time"]]
    return to_safe_csv(out)


class AuditTrail:
    """The audit table in the registry database: append and read, never change.

    Parameters
    ----------
    registry : the registry whose database holds the trail; by default one opened with
        :class:`~medimg_core.store.registry.Registry`'s defaults (``MEDIMG_DATABASE_URL``,
        else the SQLite file in the workspace), closed by :meth:`close`.
    clock : returns the current time; for tests. Defaults to the system clock in UTC.

    Raises
    ------
    RegistryError
        When the database cannot be opened, is neither SQLite nor PostgreSQL, or the table and
        its triggers cannot be created.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._owns_registry = registry is None
        self._registry = Registry() if registry is None else registry
        # The same engine as the run registry: one database, one connection pool.
        self._engine: Engine = self._registry._engine
        self.url = self._registry.url
        self._clock = clock or (lambda: datetime.now(UTC))
        self._dialect = self._engine.dialect.name
        if self._dialect not in ("sqlite", "postgresql"):
            raise RegistryError(
                f"the audit trail needs SQLite or PostgreSQL, but MEDIMG_DATABASE_URL points at "
                f"{self._dialect} ({self.url}); use a postgresql:// URL or unset it."
            )
        self._create_schema()

    def close(self) -> None:
        """Release the database connections (when the trail opened its own registry)."""
        if self._owns_registry:
            self._registry.close()

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_schema(self) -> None:
        # Two processes opening a fresh database at once must not both create the table.
        try:
            with schema_lock(self._engine) as conn:
                _metadata.create_all(conn)
                triggers = _SQLITE_TRIGGERS if self._dialect == "sqlite" else _POSTGRES_TRIGGERS
                for statement in triggers:
                    conn.exec_driver_sql(statement)
        except SQLAlchemyError as exc:
            raise self._error("create the audit table", exc) from exc

    def _error(self, action: str, exc: SQLAlchemyError) -> RegistryError:
        detail = str(getattr(exc, "orig", exc) or type(exc).__name__).strip().splitlines()
        return RegistryError(
            f"cannot {action} in the audit trail at {self.url}: "
            f"{detail[0] if detail else type(exc).__name__}; check that the database is "
            "reachable and writable."
        )

    @contextlib.contextmanager
    def _append_transaction(self) -> Iterator[Connection]:
        """A transaction that no other append can interleave with."""
        if self._dialect == "sqlite":
            # The write lock is taken before the last hash is read.
            with sqlite_write_transaction(self._engine) as conn:
                yield conn
        else:
            with self._engine.begin() as conn:
                # EXCLUSIVE blocks other writers until commit and still lets readers read.
                conn.exec_driver_sql("LOCK TABLE audit IN EXCLUSIVE MODE")
                yield conn

    def append(
        self,
        *,
        user: str,
        action: str,
        outcome: str = "ok",
        client: str,
        role: str | None = None,
        project: str | None = None,
        object: str | None = None,
    ) -> AuditEntry:
        """Write one entry at the end of the chain.

        Parameters
        ----------
        user : who acted (the name typed, for a failed sign-in).
        action : one of :data:`ACTIONS`.
        outcome : one of :data:`OUTCOMES`.
        client : the client's IP address, or "cli" / "local".
        role : the acting role (one of :data:`ROLES`), or None.
        project : the project acted in, or None.
        object : a run ID or a 64-hex content hash, or None. Anything else is refused: an
            entry must never hold a cell value, a patient identifier or a file name.

        Returns
        -------
        AuditEntry
            The entry as written, with its number and hashes.

        Raises
        ------
        ConfigError
            When a field is not one of the allowed values.
        PrivacyError
            When ``object`` is not a run ID or a content hash.
        RegistryError
            When the database cannot be written.
        """
        fields = _checked(
            user=user,
            role=role,
            project=project,
            action=action,
            object=object,
            outcome=outcome,
            client=client,
        )
        try:
            with self._append_transaction() as conn:
                last = conn.execute(
                    select(_audit.c.seq, _audit.c.hash).order_by(_audit.c.seq.desc()).limit(1)
                ).first()
                seq, prev_hash = (1, GENESIS_HASH) if last is None else (last[0] + 1, last[1])
                unsigned = AuditEntry(
                    seq=seq,
                    time=_utc(self._clock()),
                    prev_hash=prev_hash,
                    hash="",
                    **fields,
                )
                entry = _signed(unsigned)
                row = {name: getattr(entry, name) for name in COLUMNS}
                row["time"] = _stored_time(entry.time, self._dialect)
                conn.execute(insert(_audit).values(**row))
        except SQLAlchemyError as exc:
            raise self._error("write an entry", exc) from exc
        return entry

    def entries(self, filters: AuditFilter | None = None) -> pd.DataFrame:
        """The entries that match ``filters``, oldest first.

        Parameters
        ----------
        filters : which entries; all of them by default.

        Returns
        -------
        pandas.DataFrame
            One row per entry, columns :data:`COLUMNS`; ``time`` is a UTC datetime.

        Raises
        ------
        ConfigError
            When the action filter is not one of :data:`ACTIONS`.
        """
        filters = filters or AuditFilter()
        query = select(*(_audit.c[name] for name in COLUMNS)).order_by(_audit.c.seq)
        if filters.user is not None:
            query = query.where(_audit.c.user == filters.user)
        if filters.action is not None:
            query = query.where(_audit.c.action == _one_of(filters.action, ACTIONS, "action"))
        if filters.since is not None:
            since = _stored_time(_utc(filters.since), self._dialect)
            query = query.where(_audit.c.time >= since)
        if filters.until is not None:
            until = _stored_time(_utc(filters.until), self._dialect)
            query = query.where(_audit.c.time <= until)
        try:
            with self._engine.connect() as conn:
                rows = [tuple(r) for r in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise self._error("read entries", exc) from exc
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        frame["seq"] = frame["seq"].astype("int64")
        frame["time"] = pd.to_datetime([_utc(t) for t in frame["time"]], utc=True)
        return frame

    def verify(self) -> VerifyResult:
        """Check every entry and every link, oldest first.

        Returns
        -------
        VerifyResult
            The first entry that is missing (a gap in the numbers), out of place (its link to
            the entry before does not match), or changed (its hash does not match its fields).
        """
        expected_seq, prev_hash = 1, GENESIS_HASH
        broken: tuple[int, str] | None = None
        n_entries = 0
        query = select(*(_audit.c[name] for name in COLUMNS)).order_by(_audit.c.seq)
        try:
            with self._engine.connect() as conn:
                result = conn.execution_options(yield_per=5000).execute(query)
                for row in result:
                    n_entries += 1
                    if broken is not None:
                        continue
                    entry = AuditEntry(**dict(zip(COLUMNS, row, strict=True)))
                    broken = _first_fault(entry, expected_seq, prev_hash)
                    expected_seq, prev_hash = entry.seq + 1, entry.hash
        except SQLAlchemyError as exc:
            raise self._error("read entries", exc) from exc
        if broken is None:
            return VerifyResult(True, n_entries, None, None, prev_hash)
        return VerifyResult(False, n_entries, broken[0], broken[1], prev_hash)


def read_entries(
    actor: Actor, filters: AuditFilter | None = None, *, trail: AuditTrail | None = None
) -> pd.DataFrame:
    """The entries matching ``filters``, for someone allowed to read the audit trail.

    Parameters
    ----------
    actor : who reads; needs ``Action.READ_AUDIT`` (admins).
    filters : which entries; all of them by default.
    trail : the trail to read; by default the one in the registry database.

    Returns
    -------
    pandas.DataFrame
        As :meth:`AuditTrail.entries`.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not read the audit trail (checked before the database is opened).
    """
    require(actor, Action.READ_AUDIT)
    if trail is not None:
        return trail.entries(filters)
    with AuditTrail() as own:
        return own.entries(filters)


def verify_trail(actor: Actor, *, trail: AuditTrail | None = None) -> VerifyResult:
    """:meth:`AuditTrail.verify`, for someone allowed to read the audit trail.

    Raises
    ------
    PermissionDenied
        When ``actor`` may not read the audit trail.
    """
    require(actor, Action.READ_AUDIT)
    if trail is not None:
        return trail.verify()
    with AuditTrail() as own:
        return own.verify()


def _first_fault(entry: AuditEntry, expected_seq: int, prev_hash: str) -> tuple[int, str] | None:
    if entry.seq > expected_seq:
        return expected_seq, (
            f"entry {expected_seq} is missing (the entries jump from {expected_seq - 1} to "
            f"{entry.seq}); it was removed"
        )
    if entry.seq < expected_seq:
        return entry.seq, f"entry number {entry.seq} is out of sequence; the table was edited"
    if entry.prev_hash != prev_hash:
        before = "the start of the trail" if entry.seq == 1 else f"entry {entry.seq - 1}"
        return entry.seq, (
            f"it does not follow {before} (its link to the previous entry does not match); "
            "it was moved, or an entry before it was removed or rewritten"
        )
    if entry_hash(entry.hashed_fields()) != entry.hash:
        return entry.seq, "its contents were changed after it was written (its hash does not match)"
    return None


def _signed(entry: AuditEntry) -> AuditEntry:
    fields = {name: getattr(entry, name) for name in COLUMNS}
    fields["hash"] = entry_hash(entry.hashed_fields())
    return AuditEntry(**fields)


def _checked(
    *,
    user: str,
    role: str | None,
    project: str | None,
    action: str,
    object: str | None,
    outcome: str,
    client: str,
) -> dict[str, Any]:
    return {
        "user": _name(user, "user"),
        "role": None if role is None else _one_of(role, ROLES, "role"),
        "project": None if project is None else _name(project, "project"),
        "action": _one_of(action, ACTIONS, "action"),
        "object": _object(object),
        "outcome": _one_of(outcome, OUTCOMES, "outcome"),
        "client": _client(client),
    }


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{value!r} is not an audit {what}; use one of {quote_list(allowed)}.")
    return value


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value) or not value.strip():
        raise ConfigError(
            f"{value!r} cannot be recorded as the audit {what}: it must be 1 to 128 printable "
            "characters on one line."
        )
    return value


def _object(value: str | None) -> str | None:
    if value is None or _RUN_ID.match(value) or _CONTENT_HASH.match(value):
        return value
    # Never echo the value: it may be the very cell or file name that must not be written.
    raise PrivacyError(
        "the audit trail records only a run ID (such as 20260101-120000-000000-abc123) or a "
        "64-character content hash as the object acted on, never a value, a patient "
        "identifier or a file name; pass the run ID or the dataset's hash instead."
    )


def _client(value: str) -> str:
    if value in CLIENT_WORDS:
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(
            f"{value!r} is not a client address; give an IP address, or {quote_list(CLIENT_WORDS)}."
        ) from None


def _utc(value: datetime) -> datetime:
    # SQLite keeps no zone and every stored time is UTC; a naive filter time is read as UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _stored_time(value: datetime, dialect: str) -> datetime:
    # SQLite's driver writes the wall-clock digits and drops the zone, so give it UTC digits.
    return value.replace(tzinfo=None) if dialect == "sqlite" else value


def _time_text(value: datetime) -> str:
    return _utc(value).strftime(_TIME_FORMAT)
