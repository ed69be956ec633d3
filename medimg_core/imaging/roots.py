"""Image roots: the only server folders medimg may open as image sets.

Reading "a folder on this server" lets whoever reaches the dashboard read what the server
process can read. So an administrator names the folders that hold image studies in
``MEDIMG_IMAGE_ROOTS`` (several separated by ``os.pathsep``: ``:`` on Linux and macOS, ``;`` on
Windows), and a requested folder is opened only when, with every ``..`` and symbolic link
resolved, it lies inside one of them. Without any root the option is not offered and the core
refuses. A refusal never says whether a folder outside the roots exists, nor what it holds.

Who may open folders (analysts and admins) is decided by the caller, which passes the roots;
this module only decides where.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from medimg_core.errors import ImageError
from medimg_core.tables.sources import configured_roots, inside_roots

__all__ = ["IMAGE_ROOTS_ENV", "image_roots", "inside_roots", "resolve_image_folder"]

IMAGE_ROOTS_ENV = "MEDIMG_IMAGE_ROOTS"
"""Setting: the folders image studies may be read from, separated by ``os.pathsep``."""


def image_roots() -> tuple[Path, ...]:
    """The image roots configured by the administrator.

    Returns
    -------
    tuple of pathlib.Path
        The existing folders named in ``MEDIMG_IMAGE_ROOTS``, resolved (links followed), in
        the order given, without duplicates; empty when nothing usable is configured (a root
        that does not exist is ignored rather than trusted later, when it might be created by
        someone else). The same rules as the data roots
        (:func:`medimg_core.tables.sources.configured_roots`).
    """
    return configured_roots(IMAGE_ROOTS_ENV)


def resolve_image_folder(path: str | os.PathLike[str], roots: Sequence[Path]) -> Path:
    """The real location of a requested image folder, when it lies inside an image root.

    Parameters
    ----------
    path : the folder asked for: absolute, or relative to an image root (tried in order).
    roots : the allowed roots, normally :func:`image_roots` (resolved).

    Returns
    -------
    pathlib.Path
        The folder with every ``..`` and symbolic link resolved.

    Raises
    ------
    ImageError
        No root is configured; or the folder does not exist, is not a folder, or lies outside
        every root (after resolving ``..`` and links). The message is the same in all of these
        cases, so it reveals nothing about folders outside the roots.
    """
    if not roots:
        raise ImageError(
            "Reading image folders on this server is switched off: no image folder is "
            f"configured. An administrator can allow it by setting {IMAGE_ROOTS_ENV} to the "
            "folders that hold image studies; until then, upload a ZIP or .npz."
        )
    allowed = [Path(r).resolve() for r in roots]
    text = os.fspath(path).strip()
    requested = Path(text) if text else None
    candidates: list[Path] = []
    if requested is not None:
        candidates = [requested] if requested.is_absolute() else [r / requested for r in allowed]
    for candidate in candidates:
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if inside_roots(resolved, allowed) and resolved.is_dir():
            return resolved
    shown = ", ".join(str(r) for r in allowed)
    raise ImageError(
        f"'{text}' is not an image folder medimg may read. Give a folder inside the image "
        f"folders configured for this server ({shown}), as a full path or relative to one "
        "of them."
    )
