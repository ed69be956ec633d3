"""Roles and projects enforced in the core: every forbidden action refused through the store, and
every refused or allowed action audited. Runs on SQLite and PostgreSQL (``database_url``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect

from medimg_core.access import SINGLE_USER, Action, Actor, Role
from medimg_core.errors import ConfigError, PermissionDenied, RegistryError
from medimg_core.modelling.models import ModelConfig
from medimg_core.modelling.training import TrainingResult, train
from medimg_core.modelling.validation import ValidationConfig
from medimg_core.store import guarded
from medimg_core.store.accounts import Accounts
from medimg_core.store.audit import AuditTrail
from medimg_core.store.database import engine_url
from medimg_core.store.persistence import build_card, save_model
from medimg_core.store.registry import Registry
from medimg_core.store.runs import save_run
from medimg_core.tables.cleaning import CleaningPlan, clean
from medimg_core.tables.loading import frame_hash, load_sample
from medimg_core.tables.roles import propose_roles

VIEWER = Actor("vera", Role.VIEWER, frozenset({"a"}), "a")
ANALYST = Actor("ann", Role.ANALYST, frozenset({"a"}), "a")
OTHER_ANALYST = Actor("otto", Role.ANALYST, frozenset({"a"}), "a")
ADMIN = Actor("ada", Role.ADMIN, frozenset({"a"}), "a")
IN_B = Actor("bea", Role.ADMIN, frozenset({"b"}), "b")
CLIENT = "10.0.0.7"


@pytest.fixture(scope="module")
def trained() -> tuple[TrainingResult, pd.DataFrame]:
    frame = load_sample().frame
    roles = propose_roles(frame).to_roles()
    data = clean(frame, roles).data
    validation = ValidationConfig(cv=3, n_boot=20)
    return train(data, roles, config=ModelConfig(model="logreg"), validation=validation), data


@pytest.fixture(scope="module")
def result(trained: tuple[TrainingResult, pd.DataFrame]) -> TrainingResult:
    return trained[0]


def wdbc_frame() -> pd.DataFrame:
    """The cleaned sample the module's model was trained on."""
    return _DATA[0]


_DATA: list[pd.DataFrame] = []


@pytest.fixture(scope="module", autouse=True)
def _remember_data(trained: tuple[TrainingResult, pd.DataFrame]) -> None:
    _DATA[:] = [trained[1]]


@pytest.fixture
def registry(home: Path, database_url: str) -> Iterator[Registry]:
    reg = Registry(url=database_url, home=home)
    yield reg
    reg.close()


def _audit(registry: Registry) -> list[tuple[str, str | None, str, str | None, str, str]]:
    """(user, project, action, object, outcome, client) of every entry, oldest first."""
    frame = AuditTrail(registry).entries()
    columns = ["user", "project", "action", "object", "outcome", "client"]
    return [
        tuple(None if pd.isna(v) else v for v in row)  # type: ignore[misc]
        for row in frame[columns].itertuples(index=False)
    ]


def _train_as(
    actor: Actor, registry: Registry, result: TrainingResult, tmp_path: Path, name: str
) -> str:
    saved = guarded.save_run(
        actor,
        result,
        tmp_path / name,
        client=CLIENT,
        registry=registry,
        data=wdbc_frame(),
        cleaning=None,
        dataset_name=name,
    )
    assert saved.run_id is not None
    return saved.run_id


@pytest.fixture
def env_registry(
    registry: Registry, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Registry:
    """``registry``, also the default one (``save_run`` opens the configured registry)."""
    monkeypatch.setenv("MEDIMG_DATABASE_URL", database_url)
    return registry


def test_a_viewer_is_refused_every_forbidden_action_and_each_refusal_is_audited(
    env_registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    registry = env_registry
    run_id = _train_as(ADMIN, registry, result, tmp_path, "admins")
    data = wdbc_frame()
    digest = frame_hash(data)
    attempts = {
        "upload": lambda: guarded.record_upload(VIEWER, digest, client=CLIENT, registry=registry),
        "store dataset": lambda: registry.store_dataset(VIEWER, data),
        "clean": lambda: guarded.clean(
            VIEWER, data, result.model.roles, CleaningPlan(), client=CLIENT, registry=registry
        ),
        "train": lambda: guarded.train(
            VIEWER, data, result.model.roles, client=CLIENT, registry=registry
        ),
        "save run": lambda: guarded.save_run(
            VIEWER,
            result,
            tmp_path / "viewers",
            client=CLIENT,
            registry=registry,
            data=data,
            cleaning=None,
            dataset_name="v",
        ),
        "record run": lambda: registry.record_run(
            VIEWER, result, data=data, card={}, model_dir=tmp_path / "admins"
        ),
        "delete any run": lambda: guarded.delete_run(
            VIEWER, run_id, client=CLIENT, registry=registry
        ),
        "external validation": lambda: guarded.evaluate_external(
            VIEWER, result.model, data, client=CLIENT, run_id=run_id, registry=registry, n_boot=20
        ),
    }
    for what, attempt in attempts.items():
        with pytest.raises(PermissionDenied, match=r"vera \(viewer\) may not"):
            attempt()
        assert what  # named for the failure message above
    assert not (tmp_path / "viewers").exists()  # refused before anything was written
    assert [r.id for r in registry.list_runs(VIEWER)] == [run_id]
    refused = [e for e in _audit(registry) if e[4] == "refused"]
    assert [e[2] for e in refused] == [
        "upload",
        "clean",
        "train",
        "train",
        "delete",
        "evaluate",
    ]
    assert all(e[0] == "vera" and e[1] == "a" and e[5] == CLIENT for e in refused)
    assert refused[0][3] == digest and refused[4][3] == run_id and refused[5][3] == run_id


def test_a_viewer_may_not_delete_even_a_run_recorded_as_theirs(
    registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    run_id = registry.record_run(
        ANALYST,
        result,
        data=wdbc_frame(),
        card=build_card(result, cleaning=None, dataset_name="m"),
        model_dir=save_model(result, tmp_path / "m", dataset_name="m"),
    )
    demoted = Actor("ann", Role.VIEWER, frozenset({"a"}), "a")
    with pytest.raises(PermissionDenied, match="may not delete their own runs"):
        guarded.delete_run(demoted, run_id, client=CLIENT, registry=registry)
    assert registry.get_run(ANALYST, run_id).owner == "ann"
    assert _audit(registry)[-1][2:] == ("delete", run_id, "refused", CLIENT)


def test_a_viewer_may_not_manage_users_projects_or_read_the_audit(home: Path) -> None:
    with Accounts() as accounts:
        with pytest.raises(PermissionDenied, match="may not manage users"):
            accounts.add_user("x", "a long enough password", "viewer", by=VIEWER)
        with pytest.raises(PermissionDenied, match="may not manage projects"):
            accounts.add_project("c", by=VIEWER)
    from medimg_core.access import require

    with pytest.raises(PermissionDenied, match="may not read the audit trail"):
        require(VIEWER, Action.READ_AUDIT)


def test_analysts_delete_their_own_runs_only_admins_any(
    env_registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    registry = env_registry
    anns = _train_as(ANALYST, registry, result, tmp_path, "anns")
    ottos = _train_as(OTHER_ANALYST, registry, result, tmp_path, "ottos")
    record = registry.get_run(ANALYST, anns)
    assert (record.project, record.owner, record.card["owner"]) == ("a", "ann", "ann")
    with pytest.raises(PermissionDenied, match="may not delete otto's run"):
        guarded.delete_run(ANALYST, ottos, client=CLIENT, registry=registry)
    assert guarded.delete_run(ANALYST, anns, client=CLIENT, registry=registry).run_id == anns
    assert guarded.delete_run(ADMIN, ottos, client=CLIENT, registry=registry).run_id == ottos
    assert registry.list_runs(ADMIN) == []
    deletes = [e for e in _audit(registry) if e[2] == "delete"]
    assert [(e[0], e[3], e[4]) for e in deletes] == [
        ("ann", ottos, "refused"),
        ("ann", anns, "ok"),
        ("ada", ottos, "ok"),
    ]
    trains = [e for e in _audit(registry) if e[2] == "train"]
    assert [(e[0], e[1], e[3], e[4]) for e in trains] == [
        ("ann", "a", anns, "ok"),
        ("otto", "a", ottos, "ok"),
    ]


def test_projects_are_walls(env_registry: Registry, result: TrainingResult, tmp_path: Path) -> None:
    registry = env_registry
    in_a = _train_as(ADMIN, registry, result, tmp_path, "in_a")
    in_b = _train_as(IN_B, registry, result, tmp_path, "in_b")
    assert [r.id for r in registry.list_runs(ADMIN)] == [in_a]
    assert [r.id for r in registry.list_runs(IN_B)] == [in_b]
    for action in (
        lambda: guarded.open_run(ADMIN, in_b, client=CLIENT, registry=registry),
        lambda: guarded.delete_run(ADMIN, in_b, client=CLIENT, registry=registry),
    ):
        with pytest.raises(RegistryError) as refused:
            action()
        # Exactly what a missing run says: nothing tells that the run exists elsewhere.
        assert str(refused.value).startswith(f"no such run in your projects: {in_b!r}")
    with pytest.raises(RegistryError) as missing:
        registry.get_run(ADMIN, "20990101-000000-000000-abcdef")
    assert str(missing.value).replace("20990101-000000-000000-abcdef", in_b) == str(refused.value)
    stored = registry.get_run(IN_B, in_b).stored_dataset_hash
    pd.testing.assert_frame_equal(
        registry.load_dataset(IN_B, stored), registry.load_dataset(ADMIN, stored)
    )  # the same table was stored by both projects
    outsider = Actor("cy", Role.ADMIN, frozenset({"c"}), "c")
    with pytest.raises(RegistryError, match="no stored dataset"):
        registry.load_dataset(outsider, stored)
    assert registry.list_runs(outsider) == []
    assert registry.get_run(IN_B, in_b).model_dir.exists()
    opens = [e for e in _audit(registry) if e[2] in ("open run", "delete")]
    assert [(e[0], e[1], e[2], e[3], e[4]) for e in opens] == [
        ("ada", "a", "open run", in_b, "refused"),
        ("ada", "a", "delete", in_b, "refused"),
    ]
    assert guarded.open_run(IN_B, in_b, client="cli", registry=registry).id == in_b
    assert _audit(registry)[-1] == ("bea", "b", "open run", in_b, "ok", "cli")


def test_an_actor_without_a_project_lists_nothing(registry: Registry) -> None:
    homeless = Actor("hal", Role.ANALYST, frozenset(), None)
    with pytest.raises(PermissionDenied, match="no project is chosen"):
        registry.list_runs(homeless)


def test_allowed_work_is_done_and_audited_ok(registry: Registry, result: TrainingResult) -> None:
    data = wdbc_frame()
    report = guarded.clean(
        ANALYST,
        data,
        result.model.roles,
        CleaningPlan(),
        client=CLIENT,
        content_hash=frame_hash(data),
        registry=registry,
    )
    assert report.n_input == len(data)
    evaluation = guarded.evaluate_external(
        ANALYST,
        result.model,
        data,
        client=CLIENT,
        registry=registry,
        n_boot=20,
    )
    assert evaluation.n == len(data)
    with guarded.audited(VIEWER, Action.PREDICT, client=CLIENT, registry=registry) as entry:
        entry.object = "not a run id: left out"
    with guarded.audited(VIEWER, Action.EXPLAIN, client=CLIENT, registry=registry):
        pass
    with (
        pytest.raises(ValueError),
        guarded.audited(VIEWER, Action.EVALUATE, client=CLIENT, registry=registry),
    ):
        raise ValueError("the work failed")
    assert [e[2:] for e in _audit(registry)] == [
        ("clean", frame_hash(data), "ok", CLIENT),
        ("evaluate", None, "ok", CLIENT),
        ("predict", None, "ok", CLIENT),
        ("explain case", None, "ok", CLIENT),
        ("evaluate", None, "failed", CLIENT),
    ]


def test_save_run_refuses_before_writing(
    home: Path, result: TrainingResult, tmp_path: Path
) -> None:
    with pytest.raises(PermissionDenied):
        save_run(VIEWER, result, tmp_path / "m", data=wdbc_frame(), cleaning=None, dataset_name="m")
    assert not (tmp_path / "m").exists()


def test_old_registries_gain_project_and_owner_columns(
    home: Path,
    database_url: str,
    result: TrainingResult,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registry made before projects: its runs belong to "default", owner unknown; an
    analyst of "default" cannot delete them, an admin can."""
    monkeypatch.setenv("MEDIMG_DATABASE_URL", database_url)
    with Registry(url=database_url, home=home) as registry:
        run_id = _train_as(SINGLE_USER, registry, result, tmp_path, "old")
        stored = registry.get_run(SINGLE_USER, run_id).stored_dataset_hash
    engine = create_engine(engine_url(database_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE datasets")
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN owner")
            conn.exec_driver_sql("DROP INDEX ix_runs_project")
            conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN project")
        else:
            conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN owner, DROP COLUMN project")
    assert {"project", "owner"}.isdisjoint(c["name"] for c in inspect(engine).get_columns("runs"))
    engine.dispose()
    analyst = Actor("ann", Role.ANALYST, frozenset({"default"}), "default")
    with Registry(url=database_url, home=home) as registry:
        (record,) = registry.list_runs(analyst)
        assert (record.id, record.project, record.owner) == (run_id, "default", None)
        assert record.summary()["owner"] == "unknown"
        assert len(registry.load_dataset(analyst, stored)) == len(wdbc_frame())
        with pytest.raises(PermissionDenied, match="a run whose owner is not recorded"):
            registry.delete_run(analyst, run_id)
    with Registry(url=database_url, home=home) as registry:  # a second open changes nothing
        assert registry.delete_run(SINGLE_USER, run_id).run_id == run_id


def test_a_runs_history_keeps_evaluations_and_readers_judgements(
    env_registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    registry = env_registry
    run_id = _train_as(ANALYST, registry, result, tmp_path, "history")
    evaluation = guarded.record_evaluation(
        ANALYST,
        run_id,
        client=CLIENT,
        registry=registry,
        dataset_name="site B.csv",
        dataset_hash="b" * 64,
        n=120,
        result={"metrics": {"roc_auc": {"value": 0.91, "ci95": [0.85, 0.96]}}},
    )
    assert evaluation.username == ANALYST.username
    assert evaluation.recalibrated_run_id is None
    first = guarded.record_feedback(
        VIEWER,
        run_id,
        client=CLIENT,
        registry=registry,
        case_ref="case-7",
        verdict=" Disagree ",
        note="calcification missed",
        source="explain",
        predicted="benign",
        probability=0.31,
    )
    assert (first.verdict, first.username, first.probability) == ("disagree", "vera", 0.31)
    guarded.record_feedback(
        ANALYST,
        run_id,
        client=CLIENT,
        registry=registry,
        case_ref="c-9",
        verdict="agree",
        source="predict",
    )
    assert [f.verdict for f in guarded.list_feedback(VIEWER, run_id, registry=registry)] == [
        "disagree",
        "agree",
    ]
    [kept] = guarded.list_evaluations(VIEWER, run_id, registry=registry)
    assert kept.result["metrics"]["roc_auc"]["ci95"] == [0.85, 0.96]
    other = _train_as(ANALYST, registry, result, tmp_path, "recalibrated")
    linked = registry.link_recalibrated(ANALYST, kept.id, other)
    assert linked.recalibrated_run_id == other
    actions = [e[2:5] for e in _audit(registry)]
    assert ("evaluate", run_id, "ok") in actions
    assert actions.count(("reader feedback", run_id, "ok")) == 2
    # Deleting the run deletes its history; the other run keeps its own.
    guarded.delete_run(ANALYST, run_id, client=CLIENT, registry=registry)
    with pytest.raises(RegistryError):
        registry.list_feedback(ANALYST, run_id)
    assert registry.list_feedback(ANALYST, other) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"verdict": "maybe"}, "one of agree, disagree, unsure"),
        ({"note": "x" * 501}, "keep it to 500"),
        ({"case_ref": " "}, "names no case"),
    ],
)
def test_bad_judgements_are_refused_with_the_fix(
    env_registry: Registry,
    result: TrainingResult,
    tmp_path: Path,
    fields: dict[str, str],
    message: str,
) -> None:
    registry = env_registry
    run_id = _train_as(ANALYST, registry, result, tmp_path, "bad")
    values = {"case_ref": "c1", "verdict": "agree", "source": "explain", **fields}
    with pytest.raises(ConfigError, match=message):
        registry.record_feedback(VIEWER, run_id, **values)
    assert registry.list_feedback(VIEWER, run_id) == []


def test_viewers_may_judge_but_not_record_external_evaluations(
    env_registry: Registry, result: TrainingResult, tmp_path: Path
) -> None:
    registry = env_registry
    run_id = _train_as(ANALYST, registry, result, tmp_path, "viewer")
    with pytest.raises(PermissionDenied):
        guarded.record_evaluation(
            VIEWER,
            run_id,
            client=CLIENT,
            registry=registry,
            dataset_name="x",
            dataset_hash="c" * 64,
            n=3,
            result={},
        )
    assert registry.list_evaluations(VIEWER, run_id) == []
    assert ("evaluate", run_id, "refused") in [e[2:5] for e in _audit(registry)]
    stranger = Actor("sam", Role.ADMIN, frozenset({"other"}), "other")
    with pytest.raises(RegistryError, match="no such run"):
        registry.record_feedback(stranger, run_id, case_ref="c", verdict="agree", source="x")
