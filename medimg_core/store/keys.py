"""Key rotation over everything medimg stores encrypted: ``medimg keys rotate``.

The cipher and the key live in :mod:`medimg_core.encryption`; this module knows which files
medimg keeps encrypted: the stored data sets (``<home>/datasets/*.parquet``), and in every model
directory ``model.skops``, ``ood.skops`` and ``cases.parquet``, plus any other file under the
workspace that carries medimg's encryption header. Model directories of recorded runs that lie
outside the workspace (``medimg train -o elsewhere``) are rotated too, since they would be
unreadable once the old key is gone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from medimg_core.encryption import Rotation, is_encrypted, rotate_key
from medimg_core.store.cases import CASES_NAME
from medimg_core.store.persistence import MODEL_NAME, OOD_NAME
from medimg_core.store.registry import Registry
from medimg_core.workspace import workspace_home

__all__ = ["PROTECTED_NAMES", "protected_files", "rotate_workspace_key"]

PROTECTED_NAMES = frozenset({MODEL_NAME, OOD_NAME, CASES_NAME})
"""File names medimg writes encrypted inside a model directory."""


def _protected(path: Path, home: Path) -> bool:
    if path.name in PROTECTED_NAMES:
        return True
    if path.parent == home / "datasets" and path.suffix == ".parquet":
        return True
    return is_encrypted(path)


def protected_files(
    home: str | os.PathLike[str] | None = None, *, model_dirs: tuple[Path, ...] = ()
) -> list[Path]:
    """Every file medimg keeps (or should keep) encrypted, in the workspace and ``model_dirs``.

    Hidden entries (temporary files, directories being saved or deleted) are skipped: they are
    either about to disappear or about to be renamed over a file that is listed.

    Parameters
    ----------
    home : the workspace; defaults to :func:`~medimg_core.workspace.workspace_home`.
    model_dirs : further model directories (recorded runs saved outside the workspace).

    Returns
    -------
    list of Path
        Sorted, without duplicates; plaintext files from older versions included.
    """
    root = Path(home).expanduser().absolute() if home is not None else workspace_home()
    found: set[Path] = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if not name.startswith(".") and _protected(path, root):
                found.add(path)
    for directory in model_dirs:
        found.update(p for name in PROTECTED_NAMES if (p := directory / name).is_file())
    return sorted(found)


def rotate_workspace_key(
    home: str | os.PathLike[str] | None = None,
    *,
    on_file: Callable[[Path], None] | None = None,
) -> Rotation:
    """Generate a new key and re-encrypt every protected file with it.

    The run registry is read for model directories outside the workspace. Running it again after
    an interruption finishes the rotation (see :func:`medimg_core.encryption.rotate_key`).

    Parameters
    ----------
    home : the workspace; defaults to :func:`~medimg_core.workspace.workspace_home`.
    on_file : called with each rewritten file.

    Returns
    -------
    Rotation

    Raises
    ------
    EncryptionError
        When the key cannot be rotated (it comes from ``MEDIMG_ENCRYPTION_KEY``, a file needs a
        key that is not at hand, or the key file cannot be written).
    RegistryError
        When the run registry cannot be read.
    """
    root = Path(home).expanduser().absolute() if home is not None else workspace_home()
    with Registry(home=root) as registry:
        outside = tuple(d for d in registry.model_dirs() if not d.is_relative_to(root))
    return rotate_key(protected_files(root, model_dirs=outside), on_file=on_file)
