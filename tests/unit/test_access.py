"""Tests for medimg_core.access: the role → action policy, owners and project membership."""

from __future__ import annotations

import pytest

from medimg_core.access import (
    DEFAULT_PROJECT,
    POLICY,
    PROJECT_SCOPED,
    SINGLE_USER,
    Action,
    Actor,
    Role,
    allowed,
    require,
    roles_allowed,
)
from medimg_core.errors import ConfigError, MedimgError, PermissionDenied

V, A, D = "viewer", "analyst", "admin"

# Written out by hand from the issue, not derived from POLICY: each action and who may do it.
EXPECTED: dict[Action, set[str]] = {
    Action.OPEN_RUN: {V, A, D},
    Action.EVALUATE: {V, A, D},
    Action.EXPLAIN: {V, A, D},
    Action.PREDICT: {V, A, D},
    # Issue 11: a radiologist judges predictions and reads the model report.
    Action.RECORD_FEEDBACK: {V, A, D},
    Action.REPORT: {V, A, D},
    Action.UPLOAD: {A, D},
    Action.CLEAN: {A, D},
    Action.TRAIN: {A, D},
    Action.DELETE_OWN_RUN: {A, D},
    Action.EXTERNAL_VALIDATION: {A, D},
    Action.OPEN_IMAGE_FOLDER: {A, D},
    Action.DELETE_ANY_RUN: {D},
    Action.MANAGE_USERS: {D},
    Action.MANAGE_PROJECTS: {D},
    Action.READ_AUDIT: {D},
    Action.CHANGE_SETTINGS: {D},
}


def actor(role: str, *, name: str = "alice", projects: tuple[str, ...] = ("onco",)) -> Actor:
    return Actor(name, Role(role), frozenset(projects), projects[0] if projects else None)


def test_the_expected_table_covers_every_action() -> None:
    assert set(EXPECTED) == set(Action)


@pytest.mark.parametrize("role", [V, A, D])
@pytest.mark.parametrize("action", list(Action))
def test_each_role_and_action(role: str, action: Action) -> None:
    who = actor(role)
    expected = role in EXPECTED[action]
    # Deleting one's own run: the owner is the actor.
    assert allowed(who, action, owner="alice") is expected
    if expected:
        require(who, action, owner="alice")
    else:
        with pytest.raises(PermissionDenied, match=rf"alice \({role}\) may not") as info:
            require(who, action, owner="alice")
        # The message says who can do it.
        allowed_roles = sorted(EXPECTED[action], key=lambda r: Role(r).rank)
        assert f"only {allowed_roles[0]}s" in str(info.value)


def test_roles_are_ordered_and_cumulative() -> None:
    assert Role.VIEWER < Role.ANALYST < Role.ADMIN
    assert sorted([Role.ADMIN, Role.VIEWER, Role.ANALYST]) == [
        Role.VIEWER,
        Role.ANALYST,
        Role.ADMIN,
    ]
    assert POLICY[Role.VIEWER] < POLICY[Role.ANALYST] < POLICY[Role.ADMIN]
    assert roles_allowed(Action.TRAIN) == (Role.ANALYST, Role.ADMIN)


def test_policy_table_cannot_be_changed_at_run_time() -> None:
    with pytest.raises(TypeError):
        POLICY[Role.VIEWER] = frozenset(Action)  # type: ignore[index]


def test_refusal_names_every_role_that_can() -> None:
    with pytest.raises(PermissionDenied, match=r"only analysts and admins can") as info:
        require(actor(V), Action.TRAIN)
    assert "train a model" in str(info.value)
    assert isinstance(info.value, MedimgError)


def test_analyst_deletes_only_own_runs() -> None:
    analyst = actor(A)
    assert allowed(analyst, Action.DELETE_OWN_RUN, owner="alice")
    assert allowed(analyst, Action.DELETE_OWN_RUN, owner="ALICE")  # names are case-insensitive
    assert not allowed(analyst, Action.DELETE_OWN_RUN, owner="bob")
    assert not allowed(analyst, Action.DELETE_OWN_RUN)  # owner unknown: not provably theirs
    assert not allowed(analyst, Action.DELETE_ANY_RUN, owner="bob")
    with pytest.raises(PermissionDenied, match=r"may not delete bob's run: analysts delete only"):
        require(analyst, Action.DELETE_OWN_RUN, owner="bob")


def test_admin_deletes_any_run_of_their_projects() -> None:
    admin = actor(D)
    assert allowed(admin, Action.DELETE_OWN_RUN, owner="bob")
    assert allowed(admin, Action.DELETE_OWN_RUN)
    assert allowed(admin, Action.DELETE_ANY_RUN, owner="bob")
    assert not allowed(admin, Action.DELETE_ANY_RUN, owner="bob", project="cardio")


def test_viewer_never_deletes_even_own_run() -> None:
    assert not allowed(actor(V), Action.DELETE_OWN_RUN, owner="alice")


@pytest.mark.parametrize("role", [V, A, D])
@pytest.mark.parametrize("action", sorted(PROJECT_SCOPED))
def test_project_scoped_actions_need_membership(role: str, action: Action) -> None:
    who = actor(role, projects=("onco", "neuro"))
    if role not in EXPECTED[action]:
        return
    assert allowed(who, action, owner="alice", project="neuro")
    assert not allowed(who, action, owner="alice", project="cardio")
    with pytest.raises(PermissionDenied, match=r"alice is not a member of project 'cardio'"):
        require(who, action, owner="alice", project="cardio")


def test_project_defaults_to_the_current_one() -> None:
    who = Actor("alice", Role.ANALYST, frozenset({"onco", "neuro"}), "neuro")
    assert allowed(who, Action.TRAIN)
    nowhere = Actor("alice", Role.ANALYST, frozenset({"onco"}), None)
    assert not allowed(nowhere, Action.TRAIN)
    with pytest.raises(PermissionDenied, match="no project is chosen"):
        require(nowhere, Action.TRAIN)
    assert allowed(nowhere, Action.TRAIN, project="onco")


def test_site_wide_actions_do_not_need_membership() -> None:
    admin = Actor("root", Role.ADMIN, frozenset(), None)
    for action in (Action.MANAGE_USERS, Action.MANAGE_PROJECTS, Action.READ_AUDIT):
        assert allowed(admin, action)
        assert allowed(admin, action, project="cardio")
    assert not allowed(admin, Action.OPEN_RUN, project="cardio")


def test_current_project_must_be_one_of_the_users() -> None:
    with pytest.raises(PermissionDenied, match="not a member of project 'cardio'"):
        Actor("alice", Role.ADMIN, frozenset({"onco"}), "cardio")
    who = actor(V).in_project("onco")
    assert who.project == "onco"
    with pytest.raises(PermissionDenied):
        who.in_project("cardio")


def test_role_parse() -> None:
    assert Role.parse(" Analyst ") is Role.ANALYST
    with pytest.raises(ConfigError, match=r"'owner' is not a role; choose one of viewer, analyst"):
        Role.parse("owner")


def test_single_user_is_admin_of_the_default_project() -> None:
    assert SINGLE_USER.role is Role.ADMIN
    assert SINGLE_USER.project == DEFAULT_PROJECT == "default"
    assert SINGLE_USER.projects == frozenset({"default"})
    assert all(allowed(SINGLE_USER, a) for a in Action)
    assert not allowed(SINGLE_USER, Action.OPEN_RUN, project="other")
