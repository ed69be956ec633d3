from __future__ import annotations

import base64
import io
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from medimg_core.access import SINGLE_USER
from medimg_core.encryption import MAGIC, is_encrypted, read_decrypted
from medimg_core.errors import EncryptionError, RegistryError
from medimg_core.modelling.training import TrainingResult
from medimg_core.store.database import engine_url
from medimg_core.store.persistence import build_card, save_model
from medimg_core.store.registry import Registry, RunRecord
from medimg_core.tables.loading import frame_hash
from tests.unit.store.test_persistence import make_result, wdbc_frame


@pytest.fixture(scope="module")
def result() -> TrainingResult:
    return make_result()


@pytest.fixture
def registry(home: Path, database_url: str) -> Iterator[Registry]:
    """A registry on an empty database: every test that takes it runs on SQLite and PostgreSQL."""
    reg = Registry(url=database_url)
    yield reg
    reg.close()


def _record(
    registry: Registry,
    result: TrainingResult,
    tmp_path: Path,
    name: str,
    card_changes: dict[str, Any] | None = None,
) -> str:
    model_dir = save_model(result, tmp_path / name, dataset_name=name)
    card = build_card(result, cleaning=None, dataset_name=name)
    card.update(card_changes or {})
    return registry.record_run(
        SINGLE_USER, result, data=wdbc_frame(), card=card, model_dir=model_dir
    )


def test_default_database_is_sqlite_in_the_workspace(home: Path) -> None:
    with Registry() as registry:
        assert registry.url == f"sqlite:///{home}/registry.db"
    assert (home / "registry.db").exists()


def test_database_url_from_env(
    database_url: str,
    home: Path,
    result: TrainingResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEDIMG_DATABASE_URL", database_url)
    with Registry() as reg:
        assert reg.list_runs(SINGLE_USER) == []
        run_id = _record(reg, result, tmp_path, "m")
        assert reg.url.split("://")[0] in ("sqlite", "postgresql+psycopg")
    with Registry() as reg:
        assert [r.id for r in reg.list_runs(SINGLE_USER)] == [run_id]
    assert not (home / "registry.db").exists()  # nothing went to the default SQLite file


def test_plain_postgresql_urls_use_the_installed_driver() -> None:
    # psycopg 3 is what medimg installs; SQLAlchemy 2.0 would look for psycopg2 instead.
    for url in ("postgresql://u:p@db.hospital:5432/medimg", "postgres://u:p@db.hospital/medimg"):
        parsed = engine_url(url)
        assert parsed.drivername == "postgresql+psycopg"
        assert (parsed.host, parsed.database, parsed.password) == ("db.hospital", "medimg", "p")
    assert engine_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"
    assert engine_url("sqlite:////tmp/r.db").drivername == "sqlite"


@pytest.mark.postgres
def test_postgresql_url_as_users_write_it(
    postgres_database_url: str, home: Path, result: TrainingResult, tmp_path: Path
) -> None:
    assert postgres_database_url.startswith("postgresql://")
    with Registry(url=postgres_database_url) as reg:
        run_id = _record(reg, result, tmp_path, "m")
        assert reg.get_run(SINGLE_USER, run_id).dataset_name == "m"
        shown = reg.url
    assert shown == engine_url(postgres_database_url).render_as_string(hide_password=True)
    assert shown.startswith("postgresql+psycopg://")
    password = engine_url(postgres_database_url).password
    assert not password or f":{password}@" not in shown


def test_unreachable_postgresql_server(home: Path) -> None:
    with pytest.raises(RegistryError) as info:
        Registry(url="postgresql://medimg:secret@127.0.0.1:1/medimg?connect_timeout=5")
    message = str(info.value)
    assert message.startswith("cannot open the run registry at postgresql://medimg:***@127.0.0.1:1")
    assert "MEDIMG_DATABASE_URL" in message
    assert "secret" not in message


def test_record_list_get_delete(
    registry: Registry, result: TrainingResult, tmp_path: Path, home: Path
) -> None:
    # Model directories inside the workspace, where deleting a run deletes them.
    tmp_path = home / "models"
    first = _record(registry, result, tmp_path, "first")
    second = _record(registry, result, tmp_path, "second")
    runs = registry.list_runs(SINGLE_USER)
    assert [r.id for r in runs] == [second, first]
    assert second > first
    run = registry.get_run(SINGLE_USER, first)
    assert isinstance(run, RunRecord)
    assert run.dataset_name == "first"
    assert run.dataset_hash == frame_hash(wdbc_frame())
    assert run.label == "diagnosis"
    assert run.model_kind == "logreg"
    assert run.positive_class == "malignant"
    assert run.n_rows == 569
    assert run.seed == 7
    assert run.config["pca"] is None
    assert run.plan["missing"] == "impute"  # the default: imputation inside the pipeline
    assert run.metrics["cv"]["roc_auc"] == {"value": 0.9, "ci95": [0.85, 0.95]}
    assert run.card["format"] == "medimg-model-card/1"
    assert run.created_at.tzinfo == UTC
    assert run.model_dir == tmp_path / "first"
    assert run.threshold == pytest.approx(0.42)

    summary = run.summary()
    assert list(summary) == [
        "id",
        "created",
        "owner",
        "dataset",
        "model",
        "CV AUC",
        "test AUC",
        "threshold",
    ]
    assert summary["owner"] == SINGLE_USER.username
    assert (run.project, run.owner) == ("default", SINGLE_USER.username)
    assert summary["CV AUC"] == "0.900 (0.850–0.950)"
    assert summary["threshold"] == "0.420"

    registry.delete_run(SINGLE_USER, first)
    assert [r.id for r in registry.list_runs(SINGLE_USER)] == [second]
    assert not (tmp_path / "first").exists()
    assert (tmp_path / "second").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_runs_persist_across_instances(
    home: Path, database_url: str, result: TrainingResult, tmp_path: Path
) -> None:
    with Registry(url=database_url) as reg:
        run_id = _record(reg, result, tmp_path, "m")
    with Registry(url=database_url) as reg:
        assert reg.get_run(SINGLE_USER, run_id).dataset_name == "m"


def test_metrics_that_could_not_be_computed_are_stored_as_missing(
    registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    # An AUC on a partition with one class is NaN; PostgreSQL's JSON refuses NaN, so every
    # database stores null, shown as "n/a" (as the model card on disk does).
    metrics = {
        "cv": {"roc_auc": {"value": float("nan"), "ci95": [float("nan"), float("inf")]}},
        "test": {"roc_auc": {"value": 0.91, "ci95": [0.88, float("-inf")]}},
    }
    run_id = _record(registry, result, tmp_path, "m", {"metrics": metrics})
    run = registry.get_run(SINGLE_USER, run_id)
    assert run.metrics["cv"]["roc_auc"] == {"value": None, "ci95": [None, None]}
    assert run.metrics["test"]["roc_auc"] == {"value": 0.91, "ci95": [0.88, None]}
    assert run.card["metrics"]["cv"]["roc_auc"]["value"] is None
    summary = registry.list_runs(SINGLE_USER)[0].summary()
    assert summary["CV AUC"] == "n/a"
    assert summary["test AUC"] == "0.910"


def test_long_names_are_kept_whole(
    registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    # PostgreSQL refuses text longer than a VARCHAR's length, where SQLite keeps it.
    name = "scan export " * 60 + "é"
    model_dir = save_model(result, tmp_path / ("d" * 200) / ("e" * 200), dataset_name=name)
    card = build_card(result, cleaning=None, dataset_name=name)
    run_id = registry.record_run(
        SINGLE_USER, result, data=wdbc_frame(), card=card, model_dir=model_dir
    )
    run = registry.get_run(SINGLE_USER, run_id)
    assert run.dataset_name == name
    assert run.model_dir == model_dir


@pytest.mark.postgres
def test_times_are_utc_whatever_the_server_time_zone(
    postgres_database_url: str, home: Path, result: TrainingResult, tmp_path: Path
) -> None:
    # PostgreSQL answers in the session's time zone; the registry shows UTC everywhere.
    auckland = engine_url(postgres_database_url).update_query_dict(
        {"options": "-c timezone=Pacific/Auckland"}
    )
    before = datetime.now(UTC)
    with Registry(url=auckland.render_as_string(hide_password=False)) as reg:
        run_id = _record(reg, result, tmp_path, "m")
        run = reg.get_run(SINGLE_USER, run_id)
        listed = reg.list_runs(SINGLE_USER)[0]
    assert run.created_at.tzinfo is UTC
    assert listed.created_at.tzinfo is UTC
    assert before - timedelta(seconds=1) <= run.created_at <= datetime.now(UTC)
    assert run.summary()["created"] == f"{run.created_at:%Y-%m-%d %H:%M} UTC"


def test_many_runs_listed_newest_first(
    registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    model_dir = save_model(result, tmp_path / "m", dataset_name="m")
    card = build_card(result, cleaning=None, dataset_name="m")
    data = wdbc_frame()
    ids = [
        registry.record_run(SINGLE_USER, result, data=data, card=card, model_dir=model_dir)
        for _ in range(20)
    ]
    runs = registry.list_runs(SINGLE_USER)
    assert [r.id for r in runs] == sorted(ids, reverse=True)
    assert [r.created_at for r in runs] == sorted((r.created_at for r in runs), reverse=True)
    assert all(r.created_at.tzinfo is UTC and r.threshold == pytest.approx(0.42) for r in runs)


def test_unknown_run(registry: Registry) -> None:
    with pytest.raises(
        RegistryError, match=r"no such run in your projects: 'nope' .*`medimg runs`"
    ):
        registry.get_run(SINGLE_USER, "nope")
    with pytest.raises(RegistryError, match=r"no such run in your projects: 'nope'"):
        registry.delete_run(SINGLE_USER, "nope")


def test_delete_keeps_a_directory_that_is_not_a_model(
    registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    run_id = _record(registry, result, tmp_path, "m")
    model_dir = tmp_path / "m"
    for child in model_dir.iterdir():
        child.unlink()
    (model_dir / "notes.txt").write_text("mine")
    registry.delete_run(SINGLE_USER, run_id)
    assert (model_dir / "notes.txt").exists()
    assert registry.list_runs(SINGLE_USER) == []


def test_store_dataset_is_content_addressed(registry: Registry, home: Path) -> None:
    frame = wdbc_frame()
    path = registry.store_dataset(SINGLE_USER, frame)
    assert path == home / "datasets" / f"{frame_hash(frame)}.parquet"
    mtime = path.stat().st_mtime_ns
    assert registry.store_dataset(SINGLE_USER, frame.copy()) == path
    assert path.stat().st_mtime_ns == mtime
    back = registry.load_dataset(SINGLE_USER, path.stem)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert [p.name for p in (home / "datasets").iterdir()] == [path.name]


def test_store_dataset_with_mixed_object_column(registry: Registry) -> None:
    frame = pd.DataFrame({"a": pd.Series([1, "x", None], dtype=object), "b": [1.0, 2.0, np.nan]})
    path = registry.store_dataset(SINGLE_USER, frame)
    back = registry.load_dataset(SINGLE_USER, path.stem)
    assert back["a"].tolist()[:2] == ["1", "x"]
    assert pd.isna(back["a"].iloc[2])


def test_stored_dataset_is_encrypted_on_disk(
    registry: Registry, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = wdbc_frame()
    path = registry.store_dataset(SINGLE_USER, frame)
    stored = path.read_bytes()
    assert stored.startswith(MAGIC)
    assert b"PAR1" not in stored and b"mean radius" not in stored
    pd.testing.assert_frame_equal(
        pd.read_parquet(io.BytesIO(read_decrypted(path))), frame, check_dtype=False
    )
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(home.parent / "other-key"))
    monkeypatch.setenv("MEDIMG_ENCRYPTION_KEY", base64.urlsafe_b64encode(b"k" * 32).decode())
    with pytest.raises(
        EncryptionError, match=r"The stored data set .*\.parquet was encrypted with another key"
    ):
        registry.load_dataset(SINGLE_USER, path.stem)


def test_a_dataset_stored_in_clear_by_an_older_medimg_is_read_then_encrypted(
    registry: Registry, home: Path
) -> None:
    frame = wdbc_frame()
    path = home / "datasets" / f"{frame_hash(frame)}.parquet"
    path.parent.mkdir(parents=True)
    frame.to_parquet(path)
    pd.testing.assert_frame_equal(
        registry.load_dataset(SINGLE_USER, path.stem), frame, check_dtype=False
    )
    assert registry.store_dataset(SINGLE_USER, frame) == path
    assert is_encrypted(path)
    pd.testing.assert_frame_equal(
        registry.load_dataset(SINGLE_USER, path.stem), frame, check_dtype=False
    )


def test_load_dataset_errors(registry: Registry) -> None:
    with pytest.raises(RegistryError, match=r"'\.\./etc' is not a dataset hash"):
        registry.load_dataset(SINGLE_USER, "../etc")
    with pytest.raises(RegistryError, match=r"no stored dataset with hash abababababab"):
        registry.load_dataset(SINGLE_USER, "ab" * 32)


def test_unusable_database_url(home: Path) -> None:
    with pytest.raises(RegistryError, match=r"cannot open the run registry at nosuchdb://"):
        Registry(url="nosuchdb://user:secret@host/db")
    with pytest.raises(RegistryError) as info:
        Registry(url="nosuchdb://user:secret@host/db")
    assert "secret" not in str(info.value)


def test_unreachable_sqlite_file(tmp_path: Path, home: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RegistryError, match=r"cannot open the run registry .*MEDIMG_DATABASE_URL"):
        Registry(url=f"sqlite:///{blocker}/registry.db")


IDENTIFYING = {
    "patient_name": "Jane Sentinel-Doe",
    "dob": "1947-03-15",
    "phone": "+44 20 7946 0958",
    "notes": "Seen by Dr Sentinel, follow up in 2 weeks",
}


def identifying_frame() -> pd.DataFrame:
    frame = wdbc_frame()
    for column, value in IDENTIFYING.items():
        frame[column] = [f"{value} #{i}" for i in range(len(frame))]
    return frame


def test_a_run_outside_the_workspace_is_unregistered_not_deleted(
    registry: Registry, result: TrainingResult, tmp_path: Path, home: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"  # as `medimg train -o /elsewhere` would write it
    run_id = _record(registry, result, elsewhere, "m")
    deleted = registry.delete_run(SINGLE_USER, run_id)
    assert registry.list_runs(SINGLE_USER) == []
    assert (elsewhere / "m" / "model.skops").is_file()
    assert (elsewhere / "m" / "card.json").is_file()
    assert not deleted.model_deleted
    assert "outside medimg's workspace" in deleted.note
    assert "left untouched" in deleted.note


def test_a_run_inside_the_workspace_is_deleted_with_its_files(
    registry: Registry, result: TrainingResult, home: Path
) -> None:
    run_id = _record(registry, result, home / "models", "m")
    deleted = registry.delete_run(SINGLE_USER, run_id)
    assert deleted.model_deleted
    assert not (home / "models" / "m").exists()
    assert deleted.note.startswith(f"Run {run_id} and its model files were deleted.")


def test_a_link_into_the_workspace_from_outside_is_not_followed(
    registry: Registry, result: TrainingResult, tmp_path: Path, home: Path
) -> None:
    real = save_model(result, tmp_path / "outside" / "m", dataset_name="m")
    (home / "models").mkdir(parents=True)
    link = home / "models" / "m"
    link.symlink_to(real, target_is_directory=True)
    card = build_card(result, cleaning=None, dataset_name="m")
    run_id = registry.record_run(SINGLE_USER, result, data=wdbc_frame(), card=card, model_dir=link)
    assert not registry.delete_run(SINGLE_USER, run_id).model_deleted
    assert (real / "model.skops").is_file()


def test_stored_dataset_keeps_no_identifying_column(
    registry: Registry, result: TrainingResult, home: Path
) -> None:
    data = identifying_frame()
    model_dir = save_model(result, home / "models" / "m", dataset_name="m")
    card = build_card(result, cleaning=None, dataset_name="m")
    run_id = registry.record_run(SINGLE_USER, result, data=data, card=card, model_dir=model_dir)
    record = registry.get_run(SINGLE_USER, run_id)
    stored = registry.load_dataset(SINGLE_USER, record.stored_dataset_hash)
    assert list(stored.columns) == ["case_id", "diagnosis", *result.model.feature_columns]
    for column, value in IDENTIFYING.items():
        assert column not in stored.columns
        word = value.split()[0]
        assert (
            not stored.astype(str)
            .apply(lambda c, w=word: c.str.contains(w, regex=False))
            .any()
            .any()
        )
    # The patient ID is a keyed pseudonym: one per patient, never the uploaded ID.
    assert not set(stored["case_id"]) & set(data["case_id"])
    assert stored["case_id"].nunique() == data["case_id"].nunique()
    # Nor do the raw bytes of any stored file hold an identifying value.
    for path in (home / "datasets").iterdir():
        raw = path.read_bytes()
        for value in (*IDENTIFYING.values(), "P0001"):
            assert value.encode() not in raw
    mapping = record.card["stored_dataset"]
    assert mapping["id"] == "case_id" and mapping["id_pseudonymised"] is True
    assert mapping["label"] == "diagnosis"
    assert mapping["features"] == list(result.model.feature_columns)
    assert set(IDENTIFYING) <= set(mapping["left_out"])
    # The run still names its data by the whole cleaned table, so runs on the same data match.
    assert record.dataset_hash == frame_hash(data)


def test_the_stored_dataset_goes_with_its_last_run(
    registry: Registry, result: TrainingResult, home: Path
) -> None:
    first = _record(registry, result, home / "models", "first")
    second = _record(registry, result, home / "models", "second")
    stored = registry.get_run(SINGLE_USER, first).stored_dataset_hash
    assert registry.get_run(SINGLE_USER, second).stored_dataset_hash == stored

    assert not registry.delete_run(SINGLE_USER, first).dataset_deleted
    registry.load_dataset(SINGLE_USER, stored)  # still there for the other run

    last = registry.delete_run(SINGLE_USER, second)
    assert last.dataset_deleted
    assert "copy of its training data was deleted" in last.note
    assert not list((home / "datasets").glob(f"{stored}*"))
    with pytest.raises(RegistryError, match="no stored dataset"):
        registry.load_dataset(SINGLE_USER, stored)


def test_only_run_deleted_removes_its_dataset(
    registry: Registry, result: TrainingResult, tmp_path: Path, home: Path
) -> None:
    run_id = _record(registry, result, tmp_path / "elsewhere", "m")
    stored = registry.get_run(SINGLE_USER, run_id).stored_dataset_hash
    assert registry.delete_run(SINGLE_USER, run_id).dataset_deleted
    assert not list((home / "datasets").iterdir())
    assert stored


@pytest.mark.parametrize("column", ["card", "metrics"])
def test_a_registry_entry_nested_5000_levels_is_one_registry_error(
    home: Path, result: TrainingResult, tmp_path: Path, column: str
) -> None:
    with Registry() as registry:
        run_id = _record(registry, result, tmp_path, "deep")
    with sqlite3.connect(home / "registry.db") as db:
        db.execute(
            f"UPDATE runs SET {column} = ? WHERE id = ?",
            ("[" * 5000 + "]" * 5000, run_id),
        )
    with (
        Registry() as registry,
        pytest.raises(RegistryError, match=r"registry is nested 5000 levels deep.*backup"),
    ):
        registry.list_runs(SINGLE_USER)
