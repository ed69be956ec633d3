"""Who may do what: roles, actions, the acting user and the one policy table.

Pure policy, no database: the store (accounts, and later every registry call) and the interfaces
ask :func:`allowed` or :func:`require` with an :class:`Actor`. Part of the ground layer so that
every layer above may check a permission.

Rules
-----
- Roles are cumulative: viewer < analyst < admin (:data:`POLICY`).
- Project-scoped actions (everything that touches data, runs or models) need membership of the
  project the object belongs to, for admins too: an admin who must see a project adds themselves
  to it, which leaves a record, rather than seeing every project silently.
- Site-wide actions (users, projects, audit, settings) need the role only.
- An analyst deletes only runs they own; an admin deletes any run of a project they belong to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from medimg_core.errors import ConfigError, PermissionDenied

__all__ = [
    "DEFAULT_PROJECT",
    "POLICY",
    "PROJECT_SCOPED",
    "SINGLE_USER",
    "Action",
    "Actor",
    "Role",
    "allowed",
    "require",
    "roles_allowed",
    "same_user",
]

DEFAULT_PROJECT = "default"


class Role(StrEnum):
    """What a user may do; ordered viewer < analyst < admin (each includes the one below)."""

    VIEWER = "viewer"
    ANALYST = "analyst"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """0 for viewer, 1 for analyst, 2 for admin."""
        return _RANKS[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def parse(cls, text: str) -> Role:
        """The role named by ``text`` (any case, surrounding spaces ignored).

        Raises
        ------
        ConfigError
            When ``text`` names no role.
        """
        key = str(text).strip().lower()
        for role in cls:
            if role.value == key:
                return role
        names = ", ".join(r.value for r in cls)
        raise ConfigError(f"{text!r} is not a role; choose one of {names}.")


_RANKS = {Role.VIEWER: 0, Role.ANALYST: 1, Role.ADMIN: 2}


class Action(StrEnum):
    """Everything a permission is asked for; the value is what the audit trail records."""

    OPEN_RUN = "open_run"
    EVALUATE = "evaluate"
    EXPLAIN = "explain"
    PREDICT = "predict"
    UPLOAD = "upload"
    CLEAN = "clean"
    TRAIN = "train"
    DELETE_OWN_RUN = "delete_own_run"
    DELETE_ANY_RUN = "delete_any_run"
    EXTERNAL_VALIDATION = "external_validation"
    OPEN_IMAGE_FOLDER = "open_image_folder"
    MANAGE_USERS = "manage_users"
    MANAGE_PROJECTS = "manage_projects"
    READ_AUDIT = "read_audit"
    CHANGE_SETTINGS = "change_settings"
    RECORD_FEEDBACK = "record_feedback"
    REPORT = "report"

    @property
    def description(self) -> str:
        """Plain words for messages: "train a model", "read the audit trail"."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Action.OPEN_RUN: "open a run",
    Action.EVALUATE: "evaluate a model",
    Action.EXPLAIN: "explain a model's predictions",
    Action.PREDICT: "score new cases",
    Action.UPLOAD: "upload data",
    Action.CLEAN: "clean data",
    Action.TRAIN: "train a model",
    Action.DELETE_OWN_RUN: "delete their own runs",
    Action.DELETE_ANY_RUN: "delete another user's run",
    Action.EXTERNAL_VALIDATION: "validate a model on external data",
    Action.OPEN_IMAGE_FOLDER: "open an image folder on the server",
    Action.MANAGE_USERS: "manage users",
    Action.MANAGE_PROJECTS: "manage projects",
    Action.READ_AUDIT: "read the audit trail",
    Action.CHANGE_SETTINGS: "change settings",
    Action.RECORD_FEEDBACK: "record a reader's judgement of a prediction",
    Action.REPORT: "produce a model report",
}

_VIEWER = frozenset(
    {
        Action.OPEN_RUN,
        Action.EVALUATE,
        Action.EXPLAIN,
        Action.PREDICT,
        Action.RECORD_FEEDBACK,
        Action.REPORT,
    }
)
_ANALYST = _VIEWER | {
    Action.UPLOAD,
    Action.CLEAN,
    Action.TRAIN,
    Action.DELETE_OWN_RUN,
    Action.EXTERNAL_VALIDATION,
    Action.OPEN_IMAGE_FOLDER,
}
_ADMIN = _ANALYST | {
    Action.DELETE_ANY_RUN,
    Action.MANAGE_USERS,
    Action.MANAGE_PROJECTS,
    Action.READ_AUDIT,
    Action.CHANGE_SETTINGS,
}

POLICY: Mapping[Role, frozenset[Action]] = MappingProxyType(
    {Role.VIEWER: _VIEWER, Role.ANALYST: _ANALYST, Role.ADMIN: _ADMIN}
)
"""The one role → actions table (read-only)."""

PROJECT_SCOPED: frozenset[Action] = frozenset(Action) - {
    Action.MANAGE_USERS,
    Action.MANAGE_PROJECTS,
    Action.READ_AUDIT,
    Action.CHANGE_SETTINGS,
}
"""Actions on data, runs or models, which need membership of the object's project."""


def same_user(a: str, b: str) -> bool:
    """Whether two user names are the same account (names are case-insensitive)."""
    return a.strip().casefold() == b.strip().casefold()


@dataclass(frozen=True)
class Actor:
    """The user on whose behalf the core acts.

    Attributes
    ----------
    username : the account name.
    role : the account's role.
    projects : the projects the user is a member of.
    project : the current project (the sidebar's choice); one of ``projects``, or None.
    """

    username: str
    role: Role
    projects: frozenset[str] = field(default_factory=frozenset)
    project: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            object.__setattr__(self, "role", Role.parse(self.role))
        object.__setattr__(self, "projects", frozenset(self.projects))
        if self.project is not None and self.project not in self.projects:
            raise PermissionDenied(_not_member(self, self.project))

    def in_project(self, project: str) -> Actor:
        """The same user working in ``project``.

        Raises
        ------
        PermissionDenied
            When the user is not a member of ``project``.
        """
        return Actor(self.username, self.role, self.projects, project)

    def describe(self) -> str:
        """``"alice (analyst)"``."""
        return f"{self.username} ({self.role.value})"


SINGLE_USER = Actor("local", Role.ADMIN, frozenset({DEFAULT_PROJECT}), DEFAULT_PROJECT)
"""The one user of single-user mode (no sign-in, server on localhost): admin of "default"."""


def roles_allowed(action: Action) -> tuple[Role, ...]:
    """The roles whose policy includes ``action``, lowest first."""
    return tuple(role for role in sorted(Role) if action in POLICY[role])


def _refusal(actor: Actor, action: Action, owner: str | None, project: str | None) -> str | None:
    """Why ``actor`` may not do ``action``, or None when it is allowed."""
    action = Action(action)
    granted = POLICY[actor.role]
    if action not in granted:
        return (
            f"{actor.describe()} may not {action.description}: only "
            f"{_plural_roles(roles_allowed(action))} can; ask an admin if your role should change."
        )
    if action in PROJECT_SCOPED:
        target = project if project is not None else actor.project
        if target is None:
            return (
                f"{actor.describe()} may not {action.description}: no project is chosen; choose "
                "one of your projects first (an admin can add you to one)."
            )
        if target not in actor.projects:
            return _not_member(actor, target)
    own = owner is not None and same_user(owner, actor.username)
    if action is Action.DELETE_OWN_RUN and Action.DELETE_ANY_RUN not in granted and not own:
        whose = "a run whose owner is not recorded" if owner is None else f"{owner}'s run"
        return (
            f"{actor.describe()} may not delete {whose}: {_plural_roles((actor.role,))} "
            "delete only their own runs; an admin can delete any run."
        )
    return None


def _plural_roles(roles: tuple[Role, ...]) -> str:
    names = [f"{r.value}s" for r in roles]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _not_member(actor: Actor, project: str) -> str:
    return (
        f"{actor.username} is not a member of project {project!r}; ask an admin to add you to "
        "it (`medimg projects add-member`)."
    )


def allowed(
    actor: Actor, action: Action, *, owner: str | None = None, project: str | None = None
) -> bool:
    """Whether ``actor`` may do ``action``.

    Parameters
    ----------
    actor : who acts.
    action : what they want to do. To delete a run, ask for ``Action.DELETE_OWN_RUN`` with the
        run's ``owner``: analysts may delete only their own runs, admins any run.
    owner : the user who created the object (for deleting runs).
    project : the project the object belongs to; defaults to the actor's current project.

    Returns
    -------
    bool
    """
    return _refusal(actor, action, owner, project) is None


def require(
    actor: Actor, action: Action, *, owner: str | None = None, project: str | None = None
) -> None:
    """Like :func:`allowed`, but refuse with a message for the user.

    Raises
    ------
    PermissionDenied
        Naming who asked, what for, and who can do it.
    """
    reason = _refusal(actor, action, owner, project)
    if reason is not None:
        raise PermissionDenied(reason)
