from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medimg_core.errors import RegistryError
from medimg_core.modelling.training import TrainingResult
from medimg_core.store.persistence import build_card, save_model
from medimg_core.store.registry import Registry, RunRecord
from medimg_core.tables.loading import frame_hash
from tests.unit.store.test_persistence import make_result, wdbc_frame


@pytest.fixture(scope="module")
def result() -> TrainingResult:
    return make_result()


@pytest.fixture
def registry(home: Path) -> Iterator[Registry]:
    reg = Registry()
    yield reg
    reg.close()


def _record(registry: Registry, result: TrainingResult, tmp_path: Path, name: str) -> str:
    model_dir = save_model(result, tmp_path / name, dataset_name=name)
    card = build_card(result, cleaning=None, dataset_name=name)
    return registry.record_run(result, data=wdbc_frame(), card=card, model_dir=model_dir)


def test_default_database_is_sqlite_in_the_workspace(registry: Registry, home: Path) -> None:
    assert registry.url == f"sqlite:///{home}/registry.db"
    assert (home / "registry.db").exists()


def test_database_url_from_env(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIMG_DATABASE_URL", f"sqlite:///{tmp_path}/other.db")
    with Registry() as reg:
        assert reg.list_runs() == []
    assert (tmp_path / "other.db").exists()


def test_record_list_get_delete(
    registry: Registry, result: TrainingResult, tmp_path: Path, home: Path
) -> None:
    first = _record(registry, result, tmp_path, "first")
    second = _record(registry, result, tmp_path, "second")
    runs = registry.list_runs()
    assert [r.id for r in runs] == [second, first]
    assert second > first
    run = registry.get_run(first)
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
    assert list(summary) == ["id", "created", "dataset", "model", "CV AUC", "test AUC", "threshold"]
    assert summary["CV AUC"] == "0.900 (0.850–0.950)"
    assert summary["threshold"] == "0.420"

    registry.delete_run(first)
    assert [r.id for r in registry.list_runs()] == [second]
    assert not (tmp_path / "first").exists()
    assert (tmp_path / "second").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_runs_persist_across_instances(home: Path, result: TrainingResult, tmp_path: Path) -> None:
    with Registry() as reg:
        run_id = _record(reg, result, tmp_path, "m")
    with Registry() as reg:
        assert reg.get_run(run_id).dataset_name == "m"


def test_unknown_run(registry: Registry) -> None:
    with pytest.raises(RegistryError, match=r"no run with id 'nope' .*`medimg runs`"):
        registry.get_run("nope")
    with pytest.raises(RegistryError, match=r"no run with id 'nope'"):
        registry.delete_run("nope")


def test_delete_keeps_a_directory_that_is_not_a_model(
    registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    run_id = _record(registry, result, tmp_path, "m")
    model_dir = tmp_path / "m"
    for child in model_dir.iterdir():
        child.unlink()
    (model_dir / "notes.txt").write_text("mine")
    registry.delete_run(run_id)
    assert (model_dir / "notes.txt").exists()
    assert registry.list_runs() == []


def test_store_dataset_is_content_addressed(registry: Registry, home: Path) -> None:
    frame = wdbc_frame()
    path = registry.store_dataset(frame)
    assert path == home / "datasets" / f"{frame_hash(frame)}.parquet"
    mtime = path.stat().st_mtime_ns
    assert registry.store_dataset(frame.copy()) == path
    assert path.stat().st_mtime_ns == mtime
    back = registry.load_dataset(path.stem)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert [p.name for p in (home / "datasets").iterdir()] == [path.name]


def test_store_dataset_with_mixed_object_column(registry: Registry) -> None:
    frame = pd.DataFrame({"a": pd.Series([1, "x", None], dtype=object), "b": [1.0, 2.0, np.nan]})
    path = registry.store_dataset(frame)
    back = registry.load_dataset(path.stem)
    assert back["a"].tolist()[:2] == ["1", "x"]
    assert pd.isna(back["a"].iloc[2])


def test_load_dataset_errors(registry: Registry) -> None:
    with pytest.raises(RegistryError, match=r"'\.\./etc' is not a dataset hash"):
        registry.load_dataset("../etc")
    with pytest.raises(RegistryError, match=r"no stored dataset with hash abababababab"):
        registry.load_dataset("ab" * 32)


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
