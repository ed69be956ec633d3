"""Where medimg keeps its files: the workspace folder (``MEDIMG_HOME``, default ``./medimg-workspace``).

Part of the ground layer: uploads (``imaging``), the pseudonym key (``privacy``), model files and the
registry (``store``) all live under this one folder, so every layer may ask where it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from medimg_core.errors import RegistryError

__all__ = ["workspace_home", "workspace_path"]

_DEFAULT = "medimg-workspace"


def workspace_path() -> Path:
    """The workspace directory as configured, without creating it."""
    return Path(os.environ.get("MEDIMG_HOME") or _DEFAULT).expanduser().absolute()


def workspace_home() -> Path:
    """The workspace directory: ``MEDIMG_HOME`` or ``./medimg-workspace``, created on demand.

    Returns
    -------
    Path
        An absolute path to an existing directory.

    Raises
    ------
    RegistryError
        When the directory cannot be created.
    """
    home = workspace_path()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryError(
            f"cannot create the medimg workspace {home}: {exc.strerror or exc}; set MEDIMG_HOME "
            "to a writable directory."
        ) from exc
    return home
