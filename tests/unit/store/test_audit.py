from __future__ import annotations

import hashlib
import io
import itertools
import json
import multiprocessing
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from medimg_core.access import SINGLE_USER
from medimg_core.errors import ConfigError, PrivacyError, RegistryError
from medimg_core.store.audit import (
    ACTIONS,
    GENESIS_HASH,
    AuditEntry,
    AuditFilter,
    AuditTrail,
    audit_csv,
    entry_hash,
)
from medimg_core.store.registry import Registry, _new_run_id

HASH = "ab" * 32
RUN_ID = "20260301-101500-123456-0f1e2d"
T0 = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)


class Clock:
    """Returns T0, T0 + 1 h, T0 + 2 h ...: entries with known, distinct times."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return T0 + timedelta(hours=self.calls - 1)


@pytest.fixture
def open_trail(database_url: str, home: Path) -> Iterator[Callable[..., AuditTrail]]:
    opened: list[Registry] = []

    def make(**kwargs: object) -> AuditTrail:
        registry = Registry(url=database_url, home=home)
        opened.append(registry)
        return AuditTrail(registry, **kwargs)  # type: ignore[arg-type]

    yield make
    for registry in opened:
        registry.close()


@pytest.fixture
def trail(open_trail: Callable[..., AuditTrail]) -> AuditTrail:
    return open_trail(clock=Clock())


def _fill(trail: AuditTrail, n: int = 5) -> list[AuditEntry]:
    users = ["dr.ahmed", "dr.baker"]
    actions = ["sign-in", "open run", "train", "export", "delete"]
    return [
        trail.append(
            user=users[i % 2],
            role="analyst",
            project="breast",
            action=actions[i % len(actions)],
            object=None if i % len(actions) == 0 else (RUN_ID if i % 2 else HASH),
            outcome="ok",
            client="10.0.0.7",
        )
        for i in range(n)
    ]


def _tamper(url: str, *statements: str) -> None:
    """Change the table behind medimg's back: drop the guarding triggers, then run SQL."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path is not None
        with sqlite3.connect(path) as conn:
            conn.execute("DROP TRIGGER audit_refuse_update")
            conn.execute("DROP TRIGGER audit_refuse_delete")
            for statement in statements:
                conn.execute(statement)
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER audit_refuse_change ON audit")
            for statement in statements:
                conn.exec_driver_sql(statement.replace("user", '"user"'))
    finally:
        engine.dispose()


def test_the_chain_starts_from_zeros_and_links_every_entry(trail: AuditTrail) -> None:
    entries = _fill(trail, 4)
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].prev_hash == GENESIS_HASH == "0" * 64
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    for entry in entries:
        assert entry.hash == entry_hash(entry.hashed_fields())
    assert len({e.hash for e in entries}) == 4


def test_hash_is_sha256_of_the_canonical_json_of_the_fields(trail: AuditTrail) -> None:
    entry = trail.append(
        user="dr.ahmed", role="admin", action="key rotation", client="cli", object=HASH
    )
    canonical = (
        '{"action":"key rotation","client":"cli","object":"' + HASH + '","outcome":"ok",'
        '"prev_hash":"' + GENESIS_HASH + '","project":null,"role":"admin","seq":1,'
        '"time":"2026-03-01T09:00:00.123456Z","user":"dr.ahmed"}'
    )
    assert json.loads(canonical) == entry.hashed_fields()
    assert entry.hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_stored_entries_read_back_exactly(trail: AuditTrail) -> None:
    written = _fill(trail, 3)
    frame = trail.entries()
    assert frame["seq"].tolist() == [1, 2, 3]
    assert frame["time"].tolist() == [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert str(frame["time"].dt.tz) == "UTC"
    assert frame["hash"].tolist() == [e.hash for e in written]
    assert frame["object"].isna().tolist() == [True, False, False]
    assert frame["object"].tolist()[1:] == [RUN_ID, HASH]


def test_an_untouched_trail_verifies(trail: AuditTrail) -> None:
    empty = trail.verify()
    assert (empty.ok, empty.n_entries, empty.first_broken_seq) == (True, 0, None)
    assert empty.message == "audit trail intact: 0 entries"
    entries = _fill(trail, 6)
    result = trail.verify()
    assert result.ok
    assert result.n_entries == 6
    assert result.first_broken_seq is None and result.reason is None
    assert result.last_hash == entries[-1].hash
    assert result.message == "audit trail intact: 6 entries"


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit SET outcome = 'refused' WHERE seq = 2", "DELETE FROM audit WHERE seq = 2"],
    ids=["update", "delete"],
)
def test_the_database_refuses_to_change_or_remove_entries(
    trail: AuditTrail, database_url: str, statement: str
) -> None:
    _fill(trail, 3)
    engine = create_engine(database_url)
    try:
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    assert trail.entries()["outcome"].tolist() == ["ok", "ok", "ok"]
    assert trail.verify().ok


def test_reopening_keeps_the_table_and_its_guards(
    open_trail: Callable[..., AuditTrail], database_url: str
) -> None:
    _fill(open_trail(), 2)
    again = open_trail()
    _fill(again, 1)
    assert again.verify().n_entries == 3
    engine = create_engine(database_url)
    try:
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM audit")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "change",
    [
        "user = 'dr.baker'",
        "action = 'export'",
        "object = NULL",
        "outcome = 'failed'",
        "client = '10.0.0.8'",
        "project = 'lung'",
        "hash = '" + "f" * 64 + "'",
    ],
)
def test_verify_names_the_entry_whose_field_was_changed(
    trail: AuditTrail, database_url: str, change: str
) -> None:
    _fill(trail, 5)
    _tamper(database_url, f"UPDATE audit SET {change} WHERE seq = 3")
    result = trail.verify()
    assert not result.ok
    assert result.first_broken_seq == 3
    assert result.n_entries == 5
    assert result.reason is not None and "changed" in result.reason
    assert result.message.startswith("audit trail broken at entry 3: ")


def test_verify_notices_a_changed_time(trail: AuditTrail, database_url: str) -> None:
    _fill(trail, 5)
    moved = "2026-03-01 09:30:00" if database_url.startswith("sqlite") else "2026-03-01 09:30Z"
    _tamper(database_url, f"UPDATE audit SET time = '{moved}' WHERE seq = 4")
    assert trail.verify().first_broken_seq == 4


@pytest.mark.parametrize("deleted", [1, 3, 4])
def test_verify_names_a_removed_entry(trail: AuditTrail, database_url: str, deleted: int) -> None:
    _fill(trail, 5)
    _tamper(database_url, f"DELETE FROM audit WHERE seq = {deleted}")
    result = trail.verify()
    assert (result.ok, result.first_broken_seq, result.n_entries) == (False, deleted, 4)
    assert result.reason is not None and f"entry {deleted} is missing" in result.reason


def test_verify_notices_removed_entries_renumbered_to_hide_the_gap(
    trail: AuditTrail, database_url: str
) -> None:
    _fill(trail, 5)
    _tamper(
        database_url,
        "DELETE FROM audit WHERE seq = 2",
        "UPDATE audit SET seq = seq - 1 WHERE seq = 3",
        "UPDATE audit SET seq = seq - 1 WHERE seq = 4",
        "UPDATE audit SET seq = seq - 1 WHERE seq = 5",
    )
    result = trail.verify()
    assert result.first_broken_seq == 2
    assert result.reason is not None and "does not follow entry 1" in result.reason


def test_verify_names_the_first_of_two_swapped_entries(
    trail: AuditTrail, database_url: str
) -> None:
    _fill(trail, 5)
    _tamper(
        database_url,
        "UPDATE audit SET seq = 100 WHERE seq = 3",
        "UPDATE audit SET seq = 3 WHERE seq = 4",
        "UPDATE audit SET seq = 4 WHERE seq = 100",
    )
    result = trail.verify()
    assert result.first_broken_seq == 3
    assert result.reason is not None and "does not follow entry 2" in result.reason


def test_a_rewritten_entry_with_a_recomputed_hash_breaks_the_next_link(
    trail: AuditTrail, database_url: str
) -> None:
    entries = _fill(trail, 5)
    forged = AuditEntry(**{**entries[1].__dict__, "outcome": "refused", "hash": ""})
    forged_hash = entry_hash(forged.hashed_fields())
    _tamper(
        database_url,
        f"UPDATE audit SET outcome = 'refused', hash = '{forged_hash}' WHERE seq = 2",
    )
    result = trail.verify()
    assert result.first_broken_seq == 3
    assert result.reason is not None and "does not follow entry 2" in result.reason


def test_cutting_off_the_newest_entries_shows_only_in_the_last_hash(
    trail: AuditTrail, database_url: str
) -> None:
    _fill(trail, 5)
    noted = trail.verify().last_hash
    _tamper(database_url, "DELETE FROM audit WHERE seq = 5")
    result = trail.verify()
    # No chain can show its own end was cut; the hash noted elsewhere does.
    assert result.ok and result.n_entries == 4
    assert result.last_hash != noted


@pytest.mark.parametrize("shared", [False, True], ids=["own-connections", "one-trail"])
def test_concurrent_appends_never_fork_the_chain(
    open_trail: Callable[..., AuditTrail], shared: bool
) -> None:
    # Separate engines stand for separate processes; one trail for a server's session threads.
    trails = [open_trail()] * 4 if shared else [open_trail() for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(trails))

    def write(trail: AuditTrail, name: str) -> None:
        try:
            start.wait()
            for _ in range(40):
                trail.append(user=name, action="open run", object=RUN_ID, client="10.1.1.1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t, f"user{i}")) for i, t in enumerate(trails)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    result = trails[0].verify()
    assert (result.ok, result.n_entries) == (True, 160)
    frame = trails[0].entries()
    assert frame["seq"].tolist() == list(range(1, 161))
    assert frame["prev_hash"].is_unique
    assert frame["user"].value_counts().tolist() == [40, 40, 40, 40]


def _append_from_another_process(url: str, home: str, name: str, n: int) -> None:
    with Registry(url=url, home=home) as registry:
        trail = AuditTrail(registry)
        for _ in range(n):
            trail.append(user=name, action="predict", object=RUN_ID, client="cli")


def test_two_processes_appending_at_once_keep_one_chain(database_url: str, home: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=_append_from_another_process, args=(database_url, str(home), f"p{i}", 30)
        )
        for i in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0, 0]
    with Registry(url=database_url, home=home) as registry:
        trail = AuditTrail(registry)
        result = trail.verify()
        assert (result.ok, result.n_entries) == (True, 60)
        assert trail.entries()["user"].value_counts().to_dict() == {"p0": 30, "p1": 30}


@pytest.mark.parametrize(
    "value",
    [
        "scan_0001.dcm",
        "/data/uploads/smith_john.csv",
        "John Smith",
        "MRN 0012345",
        "malignant",
        "0.731",
        "AB" * 32,
        "ab" * 31,
        "sha256:" + "ab" * 32,
        RUN_ID + ".csv",
        "",
    ],
)
def test_object_is_a_run_id_or_a_content_hash_and_nothing_else(
    trail: AuditTrail, value: str
) -> None:
    with pytest.raises(PrivacyError, match=r"only a run ID .* or a 64-character content hash") as e:
        trail.append(user="dr.ahmed", action="export", object=value, client="cli")
    if value:
        assert value not in str(e.value)
    assert trail.verify().n_entries == 0


def test_object_accepts_the_registrys_run_ids_and_hashes(trail: AuditTrail) -> None:
    run_id = _new_run_id(datetime.now(UTC))
    content = hashlib.sha256(b"table").hexdigest()
    for value in (run_id, content, None):
        trail.append(user="dr.ahmed", action="open run", object=value, client="local")
    objects = trail.entries()["object"]
    assert objects.tolist()[:2] == [run_id, content]
    assert objects.isna().tolist() == [False, False, True]


@pytest.mark.parametrize(
    ("client", "stored"),
    [("cli", "cli"), ("local", "local"), ("192.168.1.20", "192.168.1.20"), ("::0001", "::1")],
)
def test_client_is_an_ip_address_or_cli_or_local(
    trail: AuditTrail, client: str, stored: str
) -> None:
    assert trail.append(user="u", action="sign-in", client=client).client == stored


@pytest.mark.parametrize("client", ["localhost", "10.0.0.300", "", "ward-3 pc", "John Smith"])
def test_other_clients_are_refused(trail: AuditTrail, client: str) -> None:
    with pytest.raises(ConfigError, match="is not a client address"):
        trail.append(user="u", action="sign-in", client=client)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("action", "download", "is not an audit action"),
        ("action", "Train", "is not an audit action"),
        ("outcome", "success", "is not an audit outcome"),
        ("role", "superuser", "is not an audit role"),
        ("user", "", "cannot be recorded as the audit user"),
        ("user", "dr.a\nseq 7 ok", "cannot be recorded as the audit user"),
        ("user", "x" * 129, "cannot be recorded as the audit user"),
        ("project", "   ", "cannot be recorded as the audit project"),
    ],
)
def test_fields_outside_their_allowed_values_are_refused(
    trail: AuditTrail, field: str, value: str, message: str
) -> None:
    fields: dict[str, str] = {"user": "dr.ahmed", "action": "train", "client": "cli"}
    fields[field] = value
    with pytest.raises(ConfigError, match=message):
        trail.append(**fields)  # type: ignore[arg-type]
    assert trail.verify().n_entries == 0


def test_the_closed_list_of_actions() -> None:
    assert ACTIONS == (
        "sign-in",
        "sign-in failed",
        "sign-out",
        "upload",
        "clean",
        "train",
        "evaluate",
        "explain case",
        "export",
        "predict",
        "open run",
        "delete",
        "reader feedback",
        "report",
        "run context",
        "user change",
        "role change",
        "project change",
        "settings change",
        "key rotation",
    )


def test_entries_filter_by_user_action_and_time(trail: AuditTrail) -> None:
    _fill(trail, 6)  # times T0 .. T0 + 5 h; users alternate; actions cycle
    assert trail.entries(AuditFilter(user="dr.baker"))["seq"].tolist() == [2, 4, 6]
    assert trail.entries(AuditFilter(action="sign-in"))["seq"].tolist() == [1, 6]
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    assert trail.entries(AuditFilter(since=since, until=until))["seq"].tolist() == [2, 3, 4]
    both = AuditFilter(user="dr.ahmed", since=since)
    assert trail.entries(both)["seq"].tolist() == [3, 5]
    assert trail.entries(AuditFilter(user="nobody")).empty
    with pytest.raises(ConfigError, match="'download' is not an audit action"):
        trail.entries(AuditFilter(action="download"))


def test_time_filters_compare_instants_whatever_the_zone(trail: AuditTrail) -> None:
    _fill(trail, 4)
    in_paris = (T0 + timedelta(hours=2)).astimezone(ZoneInfo("Europe/Paris"))
    assert in_paris.hour == 12
    assert trail.entries(AuditFilter(since=in_paris))["seq"].tolist() == [3, 4]
    naive_utc = (T0 + timedelta(hours=2)).replace(tzinfo=None)
    assert trail.entries(AuditFilter(until=naive_utc))["seq"].tolist() == [1, 2, 3]


def test_csv_export_defuses_formulas_and_keeps_the_chain_readable(trail: AuditTrail) -> None:
    trail.append(user='=HYPERLINK("http://x")', action="sign-in failed", client="10.0.0.9")
    trail.append(user="dr.ahmed", action="sign-in", role="viewer", client="10.0.0.9")
    frame = trail.entries()
    text = audit_csv(frame).decode("utf-8")
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert back["user"].tolist() == ['\'=HYPERLINK("http://x")', "dr.ahmed"]
    assert back["time"].tolist() == ["2026-03-01T09:00:00.123456Z", "2026-03-01T10:00:00.123456Z"]
    assert back["hash"].tolist() == frame["hash"].tolist()
    assert back.columns.tolist() == [
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
    ]


def test_by_default_the_trail_lives_in_the_registry_database(home: Path) -> None:
    with AuditTrail() as trail:
        trail.append(user="dr.ahmed", action="settings change", client="local")
        assert trail.url == f"sqlite:///{home}/registry.db"
    with sqlite3.connect(home / "registry.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "audit"} <= tables
    with Registry() as registry:
        assert registry.list_runs(SINGLE_USER) == []
        assert AuditTrail(registry).verify().n_entries == 1


def test_an_unreachable_database_is_a_registry_error(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RegistryError, match="cannot open the run registry"):
        AuditTrail(Registry(url=f"sqlite:///{blocker}/sub/registry.db", home=home))


def test_only_those_allowed_read_or_verify_the_trail(trail: AuditTrail) -> None:
    from medimg_core.access import Actor, Role
    from medimg_core.errors import PermissionDenied
    from medimg_core.store.audit import read_entries, verify_trail

    _fill(trail, 3)
    for role in (Role.VIEWER, Role.ANALYST):
        actor = Actor("vic", role, frozenset({"default"}), "default")
        with pytest.raises(PermissionDenied, match="may not read the audit trail"):
            read_entries(actor, trail=trail)
        with pytest.raises(PermissionDenied, match="may not read the audit trail"):
            verify_trail(actor, trail=trail)
    admin = Actor("ada", Role.ADMIN)
    assert len(read_entries(admin, trail=trail)) == 3
    assert len(read_entries(admin, AuditFilter(action="train"), trail=trail)) == len(
        trail.entries(AuditFilter(action="train"))
    )
    result = verify_trail(admin, trail=trail)
    assert result.ok and result.n_entries == 3


def test_a_viewer_is_refused_before_the_database_is_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from medimg_core.access import Actor, Role
    from medimg_core.errors import PermissionDenied
    from medimg_core.store import audit

    def no_database(*_a: object, **_k: object) -> None:
        raise AssertionError("the database was opened for a refused reader")

    monkeypatch.setattr(audit, "AuditTrail", no_database)
    viewer = Actor("vic", Role.VIEWER)
    with pytest.raises(PermissionDenied):
        audit.read_entries(viewer)
    with pytest.raises(PermissionDenied):
        audit.verify_trail(viewer)
