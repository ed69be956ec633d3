"""``medimg audit verify`` and ``medimg audit list``, on the database users point medimg at."""

from __future__ import annotations

import getpass
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from medimg_core.store.audit import AuditTrail
from medimg_core.store.registry import Registry
from tests.unit.store.test_audit import HASH, RUN_ID, _tamper
from tests.unit.test_cli import run

TIMES = [
    datetime(2026, 3, 1, 8, 0, tzinfo=UTC),
    datetime(2026, 3, 1, 23, 30, tzinfo=UTC),
    datetime(2026, 3, 2, 0, 30, tzinfo=UTC),
    datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
]


@pytest.fixture
def database(database_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``MEDIMG_DATABASE_URL`` set, as a site keeping its registry there would."""
    monkeypatch.setenv("MEDIMG_DATABASE_URL", database_url)
    return database_url


@pytest.fixture
def filled(database: str) -> Iterator[str]:
    times = iter(TIMES)
    with Registry() as registry:
        trail = AuditTrail(registry, clock=lambda: next(times))
        trail.append(user="dr.ahmed", role="analyst", action="train", object=HASH, client="cli")
        trail.append(user="dr.baker", role="viewer", action="open run", object=RUN_ID, client="::1")
        trail.append(user='=cmd|"/c calc"!A1', action="sign-in failed", client="10.2.0.4")
        trail.append(
            user="dr.ahmed", role="analyst", action="train", outcome="failed", client="local"
        )
    yield database


def test_verify_an_intact_trail(filled: str) -> None:
    status, out, err = run(["audit", "verify"])
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "audit trail intact: 4 entries"
    with Registry() as registry:
        last = AuditTrail(registry).verify().last_hash
    assert f"Newest entry's hash: {last}." in lines[1]


def test_verify_an_empty_trail(database: str) -> None:
    status, out, _ = run(["audit", "verify"])
    assert (status, out) == (0, "audit trail intact: 0 entries\n")


def test_verify_a_tampered_trail_exits_1_naming_the_entry(filled: str) -> None:
    _tamper(filled, "UPDATE audit SET outcome = 'ok' WHERE seq = 4")
    status, out, _ = run(["audit", "verify"])
    assert status == 1
    assert out.splitlines()[0] == (
        "audit trail broken at entry 4: its contents were changed after it was written "
        "(its hash does not match)"
    )
    assert "Entries from number 4 on cannot be trusted" in out


def test_verify_a_trail_with_a_removed_entry(filled: str) -> None:
    _tamper(filled, "DELETE FROM audit WHERE seq = 2")
    status, out, _ = run(["audit", "verify"])
    assert status == 1
    assert out.startswith("audit trail broken at entry 2: entry 2 is missing")


def _csv(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def test_list_writes_every_entry_as_formula_safe_csv(filled: str) -> None:
    status, out, err = run(["audit", "list"])
    assert status == 0, err
    frame = _csv(out)
    assert frame["seq"].tolist() == ["1", "2", "3", "4"]
    assert frame["user"].tolist() == ["dr.ahmed", "dr.baker", '\'=cmd|"/c calc"!A1', "dr.ahmed"]
    assert frame["time"].tolist()[0] == "2026-03-01T08:00:00.000000Z"
    assert frame["object"].tolist() == [HASH, RUN_ID, "", ""]


@pytest.mark.parametrize(
    ("options", "seqs"),
    [
        (["--user", "dr.ahmed"], ["1", "4"]),
        (["--action", "sign-in failed"], ["3"]),
        (["--action", "train", "--user", "dr.ahmed"], ["1", "4"]),
        (["--since", "2026-03-02"], ["3", "4"]),
        (["--until", "2026-03-01"], ["1", "2"]),
        (["--since", "2026-03-01T23:30", "--until", "2026-03-02T00:30:00Z"], ["2", "3"]),
        (["--since", "2026-03-02T01:30+01:00"], ["3", "4"]),
        (["--user", "nobody"], []),
    ],
)
def test_list_filters(filled: str, options: list[str], seqs: list[str]) -> None:
    status, out, err = run(["audit", "list", *options])
    assert status == 0, err
    assert _csv(out)["seq"].tolist() == seqs


def test_list_to_a_file(filled: str, tmp_path: Path) -> None:
    target = tmp_path / "exports" / "audit.csv"
    status, out, err = run(["audit", "list", "--user", "dr.baker", "-o", str(target)])
    assert status == 0, err
    assert out == f"Wrote 1 audit entry to {target} (oldest first, times in UTC).\n"
    assert _csv(target.read_text(encoding="utf-8"))["action"].tolist() == ["open run"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--action", "download"], "invalid choice: 'download'"),
        (["--since", "last week"], "expected a date such as 2026-03-01"),
        (["--until", "2026-02-30"], "expected a date such as 2026-03-01"),
    ],
)
def test_list_refuses_unknown_options(database: str, options: list[str], message: str) -> None:
    status, _, err = run(["audit", "list", *options])
    assert status == 2
    assert message in err


def test_audit_needs_an_action(database: str) -> None:
    status, _, err = run(["audit"])
    assert status == 2
    assert "verify" in err and "list" in err


def test_key_rotation_is_recorded_as_the_local_user(database: str) -> None:
    status, _, err = run(["keys", "rotate"])
    assert status == 0, err
    with Registry() as registry:
        trail = AuditTrail(registry)
        frame = trail.entries()
        assert trail.verify().ok
    assert frame[["user", "action", "outcome", "client"]].values.tolist() == [
        [getpass.getuser(), "key rotation", "ok", "cli"]
    ]


def test_a_failed_key_rotation_is_recorded_as_failed(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_ENCRYPTION_KEY", "not a key")
    status, _, _ = run(["keys", "rotate"])
    assert status == 2
    with Registry() as registry:
        frame = AuditTrail(registry).entries()
    assert frame[["action", "outcome"]].values.tolist() == [["key rotation", "failed"]]
