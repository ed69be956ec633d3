"""A run's stated context (intended use, population, reference standard): who may state it,
how it is kept, and that it goes with the run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from medimg_core.access import Actor, Role
from medimg_core.errors import ConfigError, PermissionDenied, RegistryError
from medimg_core.modelling.training import TrainingResult
from medimg_core.store import guarded
from medimg_core.store.audit import AuditFilter, AuditTrail
from medimg_core.store.persistence import build_card, save_model
from medimg_core.store.registry import RUN_CONTEXT_LIMIT, Registry
from tests.unit.store.test_persistence import make_result, wdbc_frame

OWNER = Actor("ann", Role.ANALYST, frozenset({"a"}), "a")
OTHER = Actor("otto", Role.ANALYST, frozenset({"a"}), "a")
VIEWER = Actor("vera", Role.VIEWER, frozenset({"a"}), "a")
ADMIN = Actor("ada", Role.ADMIN, frozenset({"a"}), "a")
OUTSIDER = Actor("bea", Role.ADMIN, frozenset({"b"}), "b")


@pytest.fixture(scope="module")
def result() -> TrainingResult:
    return make_result()


@pytest.fixture
def registry(home: Path, database_url: str) -> Iterator[Registry]:
    reg = Registry(url=database_url)
    yield reg
    reg.close()


@pytest.fixture
def run_id(registry: Registry, result: TrainingResult, tmp_path: Path) -> str:
    model_dir = save_model(result, tmp_path / "m", dataset_name="wdbc")
    card = build_card(result, cleaning=None, dataset_name="wdbc")
    return registry.record_run(OWNER, result, data=wdbc_frame(), card=card, model_dir=model_dir)


def test_nothing_stated_is_none(registry: Registry, run_id: str) -> None:
    assert registry.get_run_context(VIEWER, run_id) is None


def test_the_owner_states_it_and_fields_not_given_are_kept(registry: Registry, run_id: str) -> None:
    first = registry.set_run_context(
        OWNER, run_id, intended_use="  Triage of\naspirates ", reference_standard="Histology"
    )
    assert first.intended_use == "Triage of aspirates"  # whitespace made plain
    assert first.updated_by == "ann" and first.updated_at is not None
    registry.set_run_context(OWNER, run_id, target_population="Women referred for FNA")
    stated = registry.get_run_context(VIEWER, run_id)
    assert stated is not None
    assert stated.intended_use == "Triage of aspirates"
    assert stated.reference_standard == "Histology"
    assert stated.target_population == "Women referred for FNA"
    assert stated.clinical_setting == ""
    cleared = registry.set_run_context(OWNER, run_id, reference_standard="")
    assert cleared.reference_standard == ""
    assert cleared.to_dict()["intended_use"] == "Triage of aspirates"


def test_only_the_owner_or_an_admin_may_state_it(registry: Registry, run_id: str) -> None:
    with pytest.raises(PermissionDenied, match="otto"):
        registry.set_run_context(OTHER, run_id, intended_use="x")
    with pytest.raises(PermissionDenied, match="vera"):
        registry.set_run_context(VIEWER, run_id, intended_use="x")
    with pytest.raises(RegistryError, match="no such run in your projects"):
        registry.set_run_context(OUTSIDER, run_id, intended_use="x")
    assert registry.get_run_context(OWNER, run_id) is None
    assert registry.set_run_context(ADMIN, run_id, intended_use="x").updated_by == "ada"


def test_unknown_fields_and_long_text_are_refused(registry: Registry, run_id: str) -> None:
    with pytest.raises(ConfigError, match="has no field 'purpose'"):
        registry.set_run_context(OWNER, run_id, purpose="x")
    with pytest.raises(ConfigError, match=f"keep it to {RUN_CONTEXT_LIMIT}"):
        registry.set_run_context(OWNER, run_id, intended_use="x" * (RUN_CONTEXT_LIMIT + 1))
    assert registry.get_run_context(OWNER, run_id) is None


def test_deleting_the_run_deletes_its_context(registry: Registry, run_id: str) -> None:
    registry.set_run_context(OWNER, run_id, intended_use="Triage")
    registry.delete_run(OWNER, run_id)
    from medimg_core.store.registry import _RunContext

    with registry._session("check") as session:
        assert session.get(_RunContext, run_id) is None


def test_stating_it_is_audited(registry: Registry, run_id: str) -> None:
    guarded.set_run_context(OWNER, run_id, client="cli", registry=registry, intended_use="x")
    with pytest.raises(PermissionDenied):
        guarded.set_run_context(OTHER, run_id, client="cli", registry=registry, intended_use="y")
    trail = AuditTrail(registry)
    try:
        entries = trail.entries(AuditFilter(action="run context"))
    finally:
        trail.close()
    assert list(entries["outcome"]) == ["ok", "refused"]
    assert list(entries["object"]) == [run_id, run_id]
