"""Safe extraction of ZIP archives of images into the workspace.

ZIP archives are extracted only inside the workspace (``<workspace>/uploads/<hash>/``), after every
member has been checked (no ``..``, absolute paths, drive letters or symlinks; total unpacked size
and compression ratio capped), and DICOM members are de-identified before they are written.
Every member is written encrypted (:mod:`medimg_core.imaging.stored`): what lies on disk shows no
pixel, header value or label in clear. Members are written to a temporary folder that is moved
into place with a completion marker, so the same archive uploaded again is checked but not
unpacked twice; a folder unpacked in clear by an older medimg is unpacked again, encrypted.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from medimg_core.errors import ImageError, LimitError
from medimg_core.imaging import dicom
from medimg_core.imaging.pixels import ImageLimits, ImageProblem
from medimg_core.imaging.stored import store_upload_file

__all__ = ["SKIP_NAMES", "extract_zip", "is_upload_folder", "remove_upload"]

SKIP_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
"""System files and folders (macOS, Windows) left out of archives and folders, as are dot files."""

_COMPLETE_MARKER = ".medimg-complete"
# The marker's content says how the members were stored; it never holds the archive's name,
# which may carry a patient's.
_MARKER_TEXT = "members encrypted (medimg uploads v2)\n"
_BOMB_MIN_BYTES = 1 << 20


def _safe_member_path(raw: str, display: str) -> PurePosixPath | None:
    name = raw.replace("\\", "/")
    fix = "re-create the archive from the folder itself (relative paths only)"
    if "\x00" in name:
        raise ImageError(f"'{display}' has a member with a NUL byte in its name; {fix}.")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise ImageError(
            f"'{display}' has a member with an absolute path ('{raw}'); refusing to unpack; {fix}."
        )
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise ImageError(
            f"'{display}' has a member that points outside the archive folder ('{raw}'); "
            f"refusing to unpack; {fix}."
        )
    kept = [p for p in parts if p not in ("", ".")]
    if not kept or raw.endswith("/"):
        return None
    if any(p in SKIP_NAMES or p.startswith(".") for p in kept):
        return None
    return PurePosixPath(*kept)


def extract_zip(
    fh: Any, digest: str, display: str, home: Path, limits: ImageLimits, key: bytes
) -> tuple[Path, list[ImageProblem]]:
    """Check every member of a ZIP archive, then unpack it into ``<home>/uploads/<digest[:16]>/``.

    Parameters
    ----------
    fh : the archive's path or a binary file object.
    digest : sha256 of the archive's bytes; it names the folder, so an archive is unpacked once.
    display : how to name the archive in messages.
    home : the workspace.
    limits : caps on member count, unpacked size and compression ratio.
    key : pseudonymisation key for the patient key of DICOM members.

    Returns
    -------
    folder : the unpacked archive.
    problems : members that could not be unpacked or de-identified (left out).

    Raises
    ------
    ImageError
        Not a valid ZIP; a member with a NUL byte, an absolute path, ``..``, a symbolic link or a
        password (refused before anything is written).
    LimitError
        Too many members, too large once unpacked, or a member that looks like a zip bomb.
    EncryptionError
        When the encryption key is malformed or its file unsafe (nothing is left behind).
    """
    uploads = home / "uploads"
    dest = uploads / digest[:16]
    try:
        zf = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        raise ImageError(f"'{display}' is not a valid ZIP archive ({exc}).") from exc
    with zf:
        members = _checked_members(zf, display, limits)
        if _complete(dest):
            return dest, []
        uploads.mkdir(parents=True, exist_ok=True)
        tmp = uploads / f".tmp-{digest[:16]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            problems = _write_members(zf, members, tmp, key)
            (tmp / _COMPLETE_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return dest, problems


def is_upload_folder(folder: Path, home: Path) -> bool:
    """Whether ``folder`` is one upload medimg unpacked: ``<home>/uploads/<hash>`` (a ZIP) or
    ``<home>/uploads/single/<hash>`` (one image uploaded for prediction), not a link."""
    uploads = home / "uploads"
    parent = folder.parent
    if folder.is_symlink() or folder.name.startswith(".") or folder.name == "single":
        return False
    return parent == uploads or parent == uploads / "single"


def remove_upload(folder: Path, home: Path) -> bool:
    """Delete what one upload left in the workspace, once no session uses it any more.

    Parameters
    ----------
    folder : the upload's folder (the ``root`` of its image set may lie below it, when the
        archive wrapped its contents in a folder).
    home : the workspace.

    Returns
    -------
    bool
        True when a folder was removed; False when ``folder`` is not an upload folder of
        ``home`` (anything else is never deleted) or is already gone.
    """
    if not is_upload_folder(folder, home) or not folder.is_dir():
        return False
    # Renamed first, so that a reader never sees half a folder and a new upload of the same
    # archive unpacks afresh; the dot name also keeps it out of key rotation meanwhile.
    parked = folder.with_name(f".{folder.name}.removing-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(folder, parked)
    except OSError:
        return False
    shutil.rmtree(parked, ignore_errors=True)
    return True


def _complete(dest: Path) -> bool:
    try:
        return (dest / _COMPLETE_MARKER).read_text(encoding="utf-8") == _MARKER_TEXT
    except (OSError, UnicodeDecodeError):
        return False


def _checked_members(
    zf: zipfile.ZipFile, display: str, limits: ImageLimits
) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise LimitError(
            f"'{display}' has {len(infos):,} members, more than the cap of "
            f"{limits.max_members:,}; split the archive or raise ImageLimits.max_members."
        )
    total = 0
    members = []
    for info in infos:
        target = _safe_member_path(info.filename, display)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise ImageError(
                f"'{display}' contains a symbolic link ('{info.filename}'); refusing to unpack: "
                "replace links with the files themselves and re-create the archive."
            )
        if info.flag_bits & 0x1:
            raise ImageError(
                f"'{display}' member '{info.filename}' is encrypted; upload an archive without "
                "a password."
            )
        total += info.file_size
        if total > limits.max_unpacked_bytes:
            raise LimitError(
                f"'{display}' would unpack to more than {limits.max_unpacked_bytes / 2**30:.1f} "
                f"GiB (cap reached at member '{info.filename}'); split the archive, use a "
                "server-side folder, or raise ImageLimits.max_unpacked_bytes."
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _BOMB_MIN_BYTES and ratio > limits.max_ratio:
            raise LimitError(
                f"'{display}' member '{info.filename}' expands {ratio:,.0f}-fold "
                f"(cap {limits.max_ratio:g}); this looks like a zip bomb. Re-create the archive "
                "from the original files."
            )
        if target is not None:
            members.append((info, target))
    return members


def _write_members(
    zf: zipfile.ZipFile,
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    tmp: Path,
    key: bytes,
) -> list[ImageProblem]:
    problems: list[ImageProblem] = []
    base = tmp.resolve()
    for info, member in members:
        target = (tmp / member).resolve()
        if not target.is_relative_to(base):
            raise ImageError(
                f"Archive member '{info.filename}' resolves outside the upload folder; refusing "
                "to unpack."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with zf.open(info) as src:
                head = src.read(132)
                if member.suffix.lower() in {".dcm", ".dicom"} or head[128:132] == b"DICM":
                    raw = head + src.read()
                    try:
                        clean = dicom.deidentified_bytes(raw, key=key, name=member.as_posix())
                    except ImageError as exc:
                        problems.append(ImageProblem(member.as_posix(), str(exc)))
                        continue
                    store_upload_file(target, clean, atomic=False)
                    continue
                store_upload_file(target, head + src.read(), atomic=False)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            problems.append(
                ImageProblem(
                    member.as_posix(),
                    f"could not be unpacked ({exc}); the archive may be damaged",
                )
            )
    return problems
