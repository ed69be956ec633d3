"""Local accounts: users, projects and memberships in the registry database, and sign-in.

For sites without an identity provider. Passwords are hashed with argon2id (``argon2-cffi``),
never stored or shown in clear; an account is locked for a while after repeated failed sign-ins;
a signed-in session expires after an idle time (:func:`session_expired`, used by the UI).

The tables live in the same database as the run registry (``MEDIMG_DATABASE_URL``, else
``<MEDIMG_HOME>/registry.db``)::

    users        username (unique, case-insensitive), password hash, role, disabled,
                 failed_attempts, locked_until, created_at, last_sign_in
    projects     name (unique, case-insensitive)
    memberships  username, project

Settings (environment): ``MEDIMG_LOCKOUT_ATTEMPTS`` (default 5 consecutive failures),
``MEDIMG_LOCKOUT_MINUTES`` (default 15), ``MEDIMG_SESSION_IDLE_MINUTES`` (default 30).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from medimg_core.access import DEFAULT_PROJECT, Action, Actor, Role, require, same_user
from medimg_core.errors import AuthenticationError, ConfigError, RegistryError
from medimg_core.store.database import (
    create_tables,
    database_url,
    first_line,
    open_engine,
    safe_url,
    session_scope,
)

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "AccountSettings",
    "Accounts",
    "ProjectRecord",
    "UserRecord",
    "check_password",
    "session_expired",
]

MIN_PASSWORD_LENGTH = 12
_MAX_PASSWORD_LENGTH = (
    1024  # argon2 takes any length; a cap stops megabyte "passwords" tying a core
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")

SIGN_IN_FAILED = (
    "Sign-in failed: the user name or password is wrong, or the account is locked or disabled. "
    "After {attempts} failed attempts in a row an account is locked for {minutes} minutes; "
    "ask an admin if it keeps failing."
)


class _Base(DeclarativeBase):
    pass


class _User(_Base):
    __tablename__ = "users"

    username_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(512))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_sign_in: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class _Project(_Base):
    __tablename__ = "projects"

    name_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class _Membership(_Base):
    __tablename__ = "memberships"

    username: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.username_key", ondelete="CASCADE"), primary_key=True
    )
    project: Mapped[str] = mapped_column(
        String(64), ForeignKey("projects.name_key", ondelete="CASCADE"), primary_key=True
    )


@dataclass(frozen=True)
class AccountSettings:
    """Lock-out and session settings.

    Attributes
    ----------
    lockout_attempts : consecutive failed sign-ins that lock an account.
    lockout_minutes : how long a locked account stays locked.
    session_idle_minutes : idle time after which a signed-in session ends.
    """

    lockout_attempts: int = 5
    lockout_minutes: int = 15
    session_idle_minutes: int = 30

    def __post_init__(self) -> None:
        for name in ("lockout_attempts", "lockout_minutes", "session_idle_minutes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}.")

    @classmethod
    def from_env(cls) -> AccountSettings:
        """Read ``MEDIMG_LOCKOUT_ATTEMPTS``, ``MEDIMG_LOCKOUT_MINUTES`` and
        ``MEDIMG_SESSION_IDLE_MINUTES``, keeping the defaults for unset ones.

        Raises
        ------
        ConfigError
            When a variable is set to anything but a whole number of at least 1.
        """
        defaults = cls()
        return cls(
            lockout_attempts=_env_int("MEDIMG_LOCKOUT_ATTEMPTS", defaults.lockout_attempts),
            lockout_minutes=_env_int("MEDIMG_LOCKOUT_MINUTES", defaults.lockout_minutes),
            session_idle_minutes=_env_int(
                "MEDIMG_SESSION_IDLE_MINUTES", defaults.session_idle_minutes
            ),
        )


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {text!r}.")
    return value


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    # SQLite drops the zone; every stored time is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _now(now: datetime | None) -> datetime:
    return _utc(now) or datetime.now(UTC)


def session_expired(
    last_seen: datetime, now: datetime | None = None, idle_minutes: int | None = None
) -> bool:
    """Whether a signed-in session has been idle too long and must sign in again.

    Parameters
    ----------
    last_seen : when the session last did something.
    now : the current time (default: now, UTC). Naive times are taken as UTC.
    idle_minutes : the allowed idle time; default ``MEDIMG_SESSION_IDLE_MINUTES`` (30).

    Returns
    -------
    bool
        True once ``now - last_seen`` reaches ``idle_minutes``.
    """
    if idle_minutes is None:
        idle_minutes = AccountSettings.from_env().session_idle_minutes
    seen = _utc(last_seen)
    assert seen is not None
    return _now(now) - seen >= timedelta(minutes=idle_minutes)


def check_password(password: str, username: str) -> None:
    """Apply the minimum password policy.

    Raises
    ------
    ConfigError
        When the password is shorter than 12 characters, very long, or is the user name.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"the password is too short ({len(password)} characters); use at least "
            f"{MIN_PASSWORD_LENGTH} (a phrase of a few words is long and easy to remember)."
        )
    if len(password) > _MAX_PASSWORD_LENGTH:
        raise ConfigError(
            f"the password is too long ({len(password)} characters); use at most "
            f"{_MAX_PASSWORD_LENGTH}."
        )
    if password.strip().casefold() == username.strip().casefold():
        raise ConfigError("the password must not be the user name; choose another one.")


def _check_username(username: str) -> str:
    name = username.strip()
    if not _NAME.match(name):
        raise ConfigError(
            f"{username!r} is not a valid user name; use 1 to 64 letters, digits, '.', '_', "
            "'-' or '@', starting with a letter or digit."
        )
    return name


def _check_project(project: str) -> str:
    name = project.strip()
    if not _PROJECT.match(name):
        raise ConfigError(
            f"{project!r} is not a valid project name; use 1 to 64 letters, digits, spaces, "
            "'.', '_' or '-', starting with a letter or digit."
        )
    return name


def _key(name: str) -> str:
    return name.strip().casefold()


@dataclass(frozen=True)
class UserRecord:
    """One account as listed (never with its password hash).

    Attributes
    ----------
    username, role : the account.
    projects : the projects it is a member of, sorted.
    disabled : whether an admin has disabled it.
    failed_attempts : failed sign-ins since the last success or lock.
    locked_until : end of the current or last lock-out (UTC), or None.
    created_at, last_sign_in : UTC times (last_sign_in None if never).
    """

    username: str
    role: Role
    projects: tuple[str, ...]
    disabled: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    last_sign_in: datetime | None

    def locked(self, now: datetime | None = None) -> bool:
        """Whether the account is locked out at ``now``."""
        return self.locked_until is not None and self.locked_until > _now(now)


@dataclass(frozen=True)
class ProjectRecord:
    """One project and its members (sorted)."""

    name: str
    members: tuple[str, ...]


class Accounts:
    """Local accounts, projects and memberships, and sign-in.

    Parameters
    ----------
    url : SQLAlchemy database URL; defaults, like the run registry, to ``MEDIMG_DATABASE_URL``,
        else ``sqlite:///<home>/registry.db``.
    home : the workspace; defaults to :func:`~medimg_core.workspace.workspace_home`.
    engine : an open engine to share (for example the run registry's); ``url`` is then ignored
        and :meth:`close` leaves the engine open.
    hasher : the argon2id hasher; the library's defaults (RFC 9106 low-memory profile) unless
        given. Hashes made with other parameters are upgraded at the next sign-in.
    settings : lock-out and session settings; default from the environment.

    Raises
    ------
    RegistryError
        When the database cannot be opened or its tables created.
    ConfigError
        When a setting in the environment is invalid.
    """

    def __init__(
        self,
        url: str | None = None,
        home: str | os.PathLike[str] | None = None,
        *,
        engine: Engine | None = None,
        hasher: PasswordHasher | None = None,
        settings: AccountSettings | None = None,
    ) -> None:
        self.settings = settings if settings is not None else AccountSettings.from_env()
        self._hasher = hasher if hasher is not None else PasswordHasher()
        self._dummy_hash: str | None = None
        self._owns_engine = engine is None
        if engine is None:
            # The same rule as the run registry, so both live in one database.
            url = database_url(url, home)
            try:
                engine = open_engine(url)
            except (SQLAlchemyError, ImportError) as exc:
                raise RegistryError(_open_failed(url, exc)) from exc
        self._engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        try:
            create_tables(engine, _Base.metadata)
        except SQLAlchemyError as exc:
            raise RegistryError(_open_failed(self.url, exc)) from exc
        self._ensure_default_project()

    def close(self) -> None:
        """Release the database connections (unless the engine was shared)."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Accounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self, action: str) -> contextlib.AbstractContextManager[Session]:
        # A unique-key clash is the caller's to explain (a name already taken).
        return session_scope(
            self._engine,
            f"{action} in the account database at {self.url}",
            passthrough=(IntegrityError,),
        )

    def _ensure_default_project(self) -> None:
        with contextlib.suppress(IntegrityError), self._session("create the default project") as s:
            if s.get(_Project, _key(DEFAULT_PROJECT)) is None:
                s.add(
                    _Project(
                        name_key=_key(DEFAULT_PROJECT),
                        name=DEFAULT_PROJECT,
                        created_at=datetime.now(UTC),
                    )
                )

    @staticmethod
    def _user(session: Session, username: str, *, lock: bool = False) -> _User:
        query = select(_User).where(_User.username_key == _key(username))
        if lock:
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            raise ConfigError(
                f"there is no user named {username!r}; see the accounts with `medimg users list`."
            )
        return row

    @staticmethod
    def _project(session: Session, project: str) -> _Project:
        row = session.get(_Project, _key(project))
        if row is None:
            raise ConfigError(
                f"there is no project named {project!r}; create it with "
                f"`medimg projects add {project!r}` or see `medimg projects list`."
            )
        return row

    def add_user(
        self,
        username: str,
        password: str,
        role: Role | str,
        *,
        projects: Iterable[str] = (),
        by: Actor | None = None,
        now: datetime | None = None,
    ) -> UserRecord:
        """Create an account.

        Parameters
        ----------
        username : 1 to 64 letters, digits, ``. _ - @``; unique regardless of case.
        password : checked by :func:`check_password`, then hashed (never stored in clear).
        role : viewer, analyst or admin.
        projects : existing projects the user joins.
        by : the acting user, who must be allowed to manage users; None for the site's own
            command line.

        Raises
        ------
        ConfigError
            Invalid name, weak password, unknown role or project, or the name is taken.
        PermissionDenied
            When ``by`` may not manage users.
        """
        if by is not None:
            require(by, Action.MANAGE_USERS)
        name = _check_username(username)
        role = role if isinstance(role, Role) else Role.parse(role)
        check_password(password, name)
        digest = self._hasher.hash(password)
        moment = _now(now)
        try:
            with self._session("add the user") as session:
                if session.get(_User, _key(name)) is not None:
                    raise ConfigError(
                        f"a user named {name!r} already exists (names ignore case); choose "
                        "another name."
                    )
                keys = sorted({self._project(session, p).name_key for p in projects})
                session.add(
                    _User(
                        username_key=_key(name),
                        username=name,
                        password_hash=digest,
                        role=role.value,
                        disabled=False,
                        failed_attempts=0,
                        locked_until=None,
                        created_at=moment,
                        last_sign_in=None,
                    )
                )
                session.flush()
                session.add_all(_Membership(username=_key(name), project=k) for k in keys)
        except IntegrityError as exc:
            raise ConfigError(
                f"a user named {name!r} already exists (names ignore case); choose another name."
            ) from exc
        return self.get_user(name)

    def get_user(self, username: str) -> UserRecord:
        """One account, without its password hash.

        Raises
        ------
        ConfigError
            When there is no such user.
        """
        with self._session("read the user") as session:
            row = self._user(session, username)
            projects = self._memberships(session).get(row.username_key, [])
            return _user_record(row, projects)

    def list_users(self) -> list[UserRecord]:
        """Every account, sorted by name, without password hashes."""
        with self._session("list the users") as session:
            memberships = self._memberships(session)
            rows = session.scalars(select(_User).order_by(_User.username_key)).all()
            return [_user_record(r, memberships.get(r.username_key, [])) for r in rows]

    @staticmethod
    def _memberships(session: Session) -> dict[str, list[str]]:
        query = select(_Membership.username, _Project.name).join(
            _Project, _Project.name_key == _Membership.project
        )
        found: dict[str, list[str]] = {}
        for user_key, project in session.execute(query).all():
            found.setdefault(user_key, []).append(project)
        return {k: sorted(v, key=str.casefold) for k, v in found.items()}

    def _last_admin_guard(self, session: Session, row: _User, what: str) -> None:
        if row.role != Role.ADMIN.value or row.disabled:
            return
        others = session.scalars(
            select(_User.username_key).where(
                _User.role == Role.ADMIN.value,
                _User.disabled.is_(False),
                _User.username_key != row.username_key,
            )
        ).first()
        if others is None:
            raise ConfigError(
                f"cannot {what} {row.username}: it is the only enabled admin, and nobody could "
                "manage accounts afterwards; make another user admin first."
            )

    def disable(self, username: str, *, by: Actor | None = None) -> UserRecord:
        """Stop an account from signing in (its runs and records stay).

        Raises
        ------
        ConfigError
            Unknown user, or the only enabled admin.
        """
        if by is not None:
            require(by, Action.MANAGE_USERS)
        with self._session("disable the user") as session:
            row = self._user(session, username, lock=True)
            self._last_admin_guard(session, row, "disable")
            row.disabled = True
        return self.get_user(username)

    def enable(self, username: str, *, by: Actor | None = None) -> UserRecord:
        """Let a disabled account sign in again; also lifts a lock-out."""
        if by is not None:
            require(by, Action.MANAGE_USERS)
        with self._session("enable the user") as session:
            row = self._user(session, username, lock=True)
            row.disabled = False
            row.failed_attempts = 0
            row.locked_until = None
        return self.get_user(username)

    def set_role(self, username: str, role: Role | str, *, by: Actor | None = None) -> UserRecord:
        """Change an account's role (it applies from the user's next sign-in).

        Raises
        ------
        ConfigError
            Unknown user or role, or demoting the only enabled admin.
        """
        if by is not None:
            require(by, Action.MANAGE_USERS)
        role = role if isinstance(role, Role) else Role.parse(role)
        with self._session("change the role") as session:
            row = self._user(session, username, lock=True)
            if role is not Role.ADMIN:
                self._last_admin_guard(session, row, "demote")
            row.role = role.value
        return self.get_user(username)

    def set_password(self, username: str, password: str, *, by: Actor | None = None) -> None:
        """Replace an account's password (checked by :func:`check_password`); lifts a lock-out.

        Raises
        ------
        ConfigError
            Unknown user or a weak password.
        """
        if by is not None and not same_user(by.username, username):
            # Anyone may change their own password; only admins change another's.
            require(by, Action.MANAGE_USERS)
        with self._session("read the user") as session:
            name = self._user(session, username).username
        check_password(password, name)
        digest = self._hasher.hash(password)
        with self._session("change the password") as session:
            row = self._user(session, username, lock=True)
            row.password_hash = digest
            row.failed_attempts = 0
            row.locked_until = None

    def add_project(self, name: str, *, by: Actor | None = None) -> ProjectRecord:
        """Create a project.

        Raises
        ------
        ConfigError
            An invalid name, or a project with this name (in any case) exists.
        """
        if by is not None:
            require(by, Action.MANAGE_PROJECTS)
        project = _check_project(name)
        taken = ConfigError(
            f"a project named {project!r} already exists (names ignore case); choose another name."
        )
        try:
            with self._session("add the project") as session:
                if session.get(_Project, _key(project)) is not None:
                    raise taken
                session.add(
                    _Project(name_key=_key(project), name=project, created_at=datetime.now(UTC))
                )
        except IntegrityError as exc:
            raise taken from exc
        return ProjectRecord(project, ())

    def list_projects(self) -> list[ProjectRecord]:
        """Every project with its members, sorted by name."""
        with self._session("list the projects") as session:
            names = {
                k: n for k, n in session.execute(select(_User.username_key, _User.username)).all()
            }
            members: dict[str, list[str]] = {}
            for user_key, project_key in session.execute(
                select(_Membership.username, _Membership.project)
            ).all():
                members.setdefault(project_key, []).append(names[user_key])
            rows = session.scalars(select(_Project).order_by(_Project.name_key)).all()
            return [
                ProjectRecord(r.name, tuple(sorted(members.get(r.name_key, []), key=str.casefold)))
                for r in rows
            ]

    def add_member(self, project: str, username: str, *, by: Actor | None = None) -> ProjectRecord:
        """Make a user a member of a project (nothing changes if they already are).

        Raises
        ------
        ConfigError
            Unknown project or user.
        """
        if by is not None:
            require(by, Action.MANAGE_PROJECTS)
        with contextlib.suppress(IntegrityError), self._session("add the member") as session:
            user = self._user(session, username)
            target = self._project(session, project)
            if session.get(_Membership, (user.username_key, target.name_key)) is None:
                session.add(_Membership(username=user.username_key, project=target.name_key))
        return self._project_record(project)

    def remove_member(
        self, project: str, username: str, *, by: Actor | None = None
    ) -> ProjectRecord:
        """Take a user out of a project (their runs stay in the project).

        Raises
        ------
        ConfigError
            Unknown project or user, or the user is not a member.
        """
        if by is not None:
            require(by, Action.MANAGE_PROJECTS)
        with self._session("remove the member") as session:
            user = self._user(session, username)
            target = self._project(session, project)
            row = session.get(_Membership, (user.username_key, target.name_key))
            if row is None:
                raise ConfigError(f"{user.username} is not a member of project {target.name!r}.")
            session.delete(row)
        return self._project_record(project)

    def _project_record(self, project: str) -> ProjectRecord:
        for record in self.list_projects():
            if _key(record.name) == _key(project):
                return record
        raise ConfigError(f"there is no project named {project!r}.")

    def _failed(self) -> AuthenticationError:
        return AuthenticationError(
            SIGN_IN_FAILED.format(
                attempts=self.settings.lockout_attempts, minutes=self.settings.lockout_minutes
            )
        )

    def _verify(self, digest: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(digest, password))
        except (VerificationError, InvalidHashError):
            return False

    def _burn(self, password: str) -> None:
        """Spend the time of one verification, so an unknown or locked account answers as
        slowly as a real one and timing does not tell which names exist."""
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash("medimg-not-a-password")
        self._verify(self._dummy_hash, password)

    def authenticate(self, username: str, password: str, *, now: datetime | None = None) -> Actor:
        """Sign a user in.

        Parameters
        ----------
        username : the account name (any case).
        password : the password typed.
        now : the time of the attempt (default now, UTC); for tests of the lock-out.

        Returns
        -------
        Actor
            The user with their role and projects; the current project is "default" when they
            are a member of it, else their first project by name, else None.

        Raises
        ------
        AuthenticationError
            With one message whatever the cause (unknown user, wrong password, locked or
            disabled account), so the answer does not tell whether a user exists. After
            ``lockout_attempts`` consecutive failures the account is locked for
            ``lockout_minutes``; while locked, not even the right password signs in.
        """
        moment = _now(now)
        with self._session("read the user") as session:
            row = session.get(_User, _key(username))
            found = None if row is None else (row.password_hash, _utc(row.locked_until))
        if found is None:
            self._burn(password)
            raise self._failed()
        digest, locked_until = found
        if locked_until is not None and locked_until > moment:
            self._burn(password)
            raise self._failed()
        if not self._verify(digest, password):
            with self._session("record the failed sign-in") as session:
                row = self._user(session, username, lock=True)
                row.failed_attempts = (row.failed_attempts or 0) + 1
                if row.failed_attempts >= self.settings.lockout_attempts:
                    row.locked_until = moment + timedelta(minutes=self.settings.lockout_minutes)
                    row.failed_attempts = 0
            raise self._failed()
        rehash = self._hasher.check_needs_rehash(digest)
        new_digest = self._hasher.hash(password) if rehash else None
        with self._session("record the sign-in") as session:
            row = self._user(session, username, lock=True)
            if row.disabled:
                raise self._failed()
            row.failed_attempts = 0
            row.locked_until = None
            row.last_sign_in = moment
            if new_digest is not None and row.password_hash == digest:
                row.password_hash = new_digest
            projects = frozenset(self._memberships(session).get(row.username_key, []))
            actor_name, role = row.username, Role(row.role)
        if DEFAULT_PROJECT in projects:
            current: str | None = DEFAULT_PROJECT
        else:
            current = min(projects, key=str.casefold, default=None)
        return Actor(actor_name, role, projects, current)


def _user_record(row: _User, projects: list[str]) -> UserRecord:
    return UserRecord(
        username=row.username,
        role=Role(row.role),
        projects=tuple(projects),
        disabled=bool(row.disabled),
        failed_attempts=int(row.failed_attempts or 0),
        locked_until=_utc(row.locked_until),
        created_at=_utc(row.created_at) or datetime.now(UTC),
        last_sign_in=_utc(row.last_sign_in),
    )


def _open_failed(url: str, exc: BaseException) -> str:
    return (
        f"cannot open the account database at {safe_url(url)}: {first_line(exc)}; check "
        "MEDIMG_DATABASE_URL (or unset it to use the SQLite file in the workspace)."
    )
