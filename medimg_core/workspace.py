"""Where medimg keeps its files: the workspace folder (``MEDIMG_HOME``, default ``./medimg-workspace``).

Part of the ground layer: uploads (``imaging``), the pseudonym key (``privacy``), model files and the
registry (``store``) all live under this one folder, so every layer may ask where it is.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from medimg_core.errors import RegistryError

__all__ = ["fsync_dir", "workspace_home", "workspace_path", "write_private_file"]

_DEFAULT = "medimg-workspace"


def workspace_path() -> Path:
    """The workspace directory as configured, without creating it."""
    return Path(os.environ.get("MEDIMG_HOME") or _DEFAULT).expanduser().absolute()


def workspace_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The workspace directory: ``home`` if given, else ``MEDIMG_HOME`` or ``./medimg-workspace``;
    created on demand.

    Returns
    -------
    Path
        An absolute path to an existing directory.

    Raises
    ------
    RegistryError
        When the directory cannot be created.
    """
    folder = Path(home).expanduser().absolute() if home is not None else workspace_path()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryError(
            f"cannot create the medimg workspace {folder}: {exc.strerror or exc}; set MEDIMG_HOME "
            "to a writable directory."
        ) from exc
    return folder


def fsync_dir(path: Path) -> None:
    """Make renames into ``path`` durable (not every platform allows opening a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_private_file(path: Path, data: bytes, *, replace: bool) -> bool:
    """Write ``data`` to ``path`` atomically with mode 0600 (a key file); the folder must exist.

    Without ``replace`` an existing file is kept and False returned: the file is hard-linked into
    place, and a hard link never replaces a file, so when another process created it meanwhile,
    its content wins and every writer ends up with the same. Where hard links are not supported,
    it is renamed into place unless the file exists by then.

    Raises
    ------
    OSError
        When the file cannot be written.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
            except OSError:
                if path.exists():
                    return False
                os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    fsync_dir(path.parent)
    return True
