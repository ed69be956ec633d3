"""Safe extraction of ZIP archives of images into the workspace.

ZIP archives are extracted only inside the workspace (``<workspace>/uploads/<hash>/``), after every
member has been checked (no ``..``, absolute paths, drive letters or symlinks; total unpacked size
and compression ratio capped), and DICOM members are de-identified before they are written.
Every member is written encrypted (:mod:`medimg_core.imaging.stored`): what lies on disk shows no
pixel, header value or label in clear. Members are written to a temporary folder that is moved
into place with a completion marker, so the same archive uploaded again is checked but not
unpacked twice; a folder unpacked in clear by an older medimg is unpacked again, encrypted.

Only members that will be used are unpacked: images (by their ending, or DICOM without one) and
a labels table (``labels.csv`` …); anything else is left out unread and listed as a problem.
What is unpacked is bounded per upload (``MEDIMG_MAX_UPLOAD_BYTES``) and for the whole
``uploads/`` folder of the workspace (``MEDIMG_MAX_WORKSPACE_UPLOAD_BYTES``).

Clean-up: the dashboard removes an upload's folder when it is replaced or its session ended
(:func:`remove_upload`, noticed at the next upload). Streamlit has no reliable session-end
callback and a killed process removes nothing, so every extraction first removes stale upload
folders (:func:`clean_stale_uploads`): unpacked folders not used for
``MEDIMG_UPLOAD_MAX_AGE_HOURS`` (24 by default), and the temporary folders of interrupted
extractions and removals. Re-using an unpacked archive marks its folder as used.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from medimg_core.errors import ConfigError, ImageError, LimitError
from medimg_core.imaging import dicom
from medimg_core.imaging.pixels import (
    IMAGE_SUFFIXES,
    UPLOAD_BYTES_ENV,
    ImageLimits,
    ImageProblem,
    human_bytes,
    parse_amount,
)
from medimg_core.imaging.stored import store_upload_file

__all__ = [
    "LABEL_FILES",
    "MANIFEST_FILES",
    "MAX_AGE_ENV",
    "SKIP_NAMES",
    "VOLUME_ENDINGS",
    "WORKSPACE_UPLOAD_BYTES_ENV",
    "UploadSettings",
    "clean_stale_uploads",
    "discard_new_upload",
    "extract_zip",
    "is_upload_folder",
    "remove_upload",
    "upload_names",
    "uploads_size",
]

LABEL_FILES = ("labels.csv", "labels.tsv", "labels.xlsx", "labels.parquet")
MANIFEST_FILES = ("manifest.csv", "manifest.tsv", "manifest.xlsx", "manifest.parquet")
"""The manifest of a 3D study (:mod:`medimg_core.imaging.studies`): case, image, mask, label."""
VOLUME_ENDINGS = (".nii.gz", ".nii", ".nrrd")
"""3D volumes and masks by ending (DICOM series are folders of DICOM files)."""
"""Names of the labels table an image set may hold (unpacked from an archive with the images)."""

WORKSPACE_UPLOAD_BYTES_ENV = "MEDIMG_MAX_WORKSPACE_UPLOAD_BYTES"
"""Setting: most bytes all unpacked uploads of the workspace may take together."""

MAX_AGE_ENV = "MEDIMG_UPLOAD_MAX_AGE_HOURS"
"""Setting: hours after its last use when an unpacked upload is removed as stale."""

DEFAULT_WORKSPACE_UPLOAD_BYTES = 20 * 2**30
DEFAULT_MAX_AGE_HOURS = 24.0


@dataclass(frozen=True)
class UploadSettings:
    """Caps on the ``uploads/`` folder of a workspace, from the settings.

    Attributes
    ----------
    max_workspace_bytes : ``MEDIMG_MAX_WORKSPACE_UPLOAD_BYTES`` (default 20 GiB): all unpacked
        uploads together; an upload that would pass it is refused after stale ones are removed.
    max_age_hours : ``MEDIMG_UPLOAD_MAX_AGE_HOURS`` (default 24): an unpacked upload not used
        for this long is removed at the next upload.
    """

    max_workspace_bytes: int = DEFAULT_WORKSPACE_UPLOAD_BYTES
    max_age_hours: float = DEFAULT_MAX_AGE_HOURS

    @classmethod
    def from_env(cls) -> UploadSettings:
        """The settings from the environment (defaults when unset).

        Raises
        ------
        ConfigError
            When a setting is not a positive amount.
        """
        text = os.environ.get(WORKSPACE_UPLOAD_BYTES_ENV, "").strip()
        total = (
            parse_amount(text, WORKSPACE_UPLOAD_BYTES_ENV)
            if text
            else DEFAULT_WORKSPACE_UPLOAD_BYTES
        )
        age_text = os.environ.get(MAX_AGE_ENV, "").strip()
        age = DEFAULT_MAX_AGE_HOURS
        if age_text:
            try:
                age = float(age_text)
            except ValueError:
                age = -1.0
            if not 0 < age < 1e6:
                raise ConfigError(
                    f"{MAX_AGE_ENV}={age_text!r} is not a positive number of hours; write for "
                    "example 24, or unset it for the default."
                )
        return cls(max_workspace_bytes=total, max_age_hours=age)


SKIP_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
"""System files and folders (macOS, Windows) left out of archives and folders, as are dot files."""

_DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
_COMPLETE_MARKER = ".medimg-complete"
# The marker's content says how the members were stored; it never holds the archive's name,
# which may carry a patient's.
_MARKER_TEXT = "members encrypted (medimg uploads v2)\n"
_BOMB_MIN_BYTES = 1 << 20
_NOT_USED = (
    "not an image (medimg reads PNG, JPEG, TIFF and DICOM files) nor a labels table; left out "
    "without unpacking"
)


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
    problems : members left out: not images nor a labels table (never unpacked), or that could
        not be unpacked or de-identified.

    Raises
    ------
    ImageError
        Not a valid ZIP; a member with a NUL byte, an absolute path, ``..``, a symbolic link or a
        password (refused before anything is written).
    LimitError
        Too many members, too large once unpacked (``MEDIMG_MAX_UPLOAD_BYTES``), a member that
        looks like a zip bomb, or no room left in the workspace's uploads
        (``MEDIMG_MAX_WORKSPACE_UPLOAD_BYTES``).
    ConfigError
        When an upload setting cannot be read.
    EncryptionError
        When the encryption key is malformed or its file unsafe (nothing is left behind).
    """
    uploads = home / "uploads"
    dest = uploads / digest[:16]
    settings = UploadSettings.from_env()
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ImageError(f"'{display}' is not a valid ZIP archive ({exc}).") from exc
    with zf:
        members, skipped = _checked_members(zf, display, limits)
        if _complete(dest):
            _touch(dest)
            return dest, list(skipped)
        clean_stale_uploads(home, settings.max_age_hours)
        needed = sum(info.file_size for info, _ in members)
        used = uploads_size(home)
        if used + needed > settings.max_workspace_bytes:
            raise LimitError(
                f"'{display}' would unpack to {human_bytes(needed)}, but the uploads of this "
                f"workspace already take {human_bytes(used)} of the "
                f"{human_bytes(settings.max_workspace_bytes)} allowed; try again when other "
                "uploads are released, or ask the administrator to raise "
                f"{WORKSPACE_UPLOAD_BYTES_ENV}."
            )
        uploads.mkdir(parents=True, exist_ok=True)
        tmp = uploads / f".tmp-{digest[:16]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            problems = list(skipped) + _write_members(zf, members, tmp, key)
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


def upload_names(home: Path) -> frozenset[str]:
    """The names in ``<home>/uploads`` now: compare with :func:`discard_new_upload`."""
    try:
        return frozenset(p.name for p in (home / "uploads").iterdir())
    except OSError:
        return frozenset()


def discard_new_upload(root: Path | None, home: Path, before: frozenset[str]) -> bool:
    """Remove the upload folder holding ``root`` (an image set's folder) when it was not in
    ``<home>/uploads`` ``before`` (:func:`upload_names`): what a refused input unpacked.

    Returns
    -------
    bool
        True when a folder was removed.
    """
    if root is None:
        return False
    base = home.absolute()
    for candidate in (root.absolute(), *root.absolute().parents):
        if candidate.parent == base / "uploads":
            if candidate.name in before:
                return False
            return remove_upload(candidate, base)
        if candidate == base:
            break
    return False


def uploads_size(home: Path) -> int:
    """Bytes taken by everything under ``<home>/uploads`` (links are not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(home / "uploads"):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def clean_stale_uploads(home: Path, max_age_hours: float | None = None) -> tuple[Path, ...]:
    """Remove what uploads left in ``<home>/uploads`` and nobody used for ``max_age_hours``.

    Streamlit does not reliably tell when a session ends, and a process that is killed removes
    nothing; so this runs before every extraction. It removes unpacked archives
    (``uploads/<hash>``) and single images (``uploads/single/<hash>``) whose folder was last used
    (unpacked, or re-used by the same archive) longer ago than ``max_age_hours`` (default
    ``MEDIMG_UPLOAD_MAX_AGE_HOURS``, 24), and the temporary folders of interrupted extractions
    and removals older than that. A session that kept an upload open for longer loses its
    images (its features are kept); it uploads them again.

    Returns
    -------
    tuple of Path
        The folders removed.
    """
    age = max_age_hours if max_age_hours is not None else UploadSettings.from_env().max_age_hours
    cutoff = time.time() - age * 3600
    uploads = home / "uploads"
    removed: list[Path] = []
    for parent in (uploads, uploads / "single"):
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for entry in entries:
            try:
                stat = entry.lstat()
            except OSError:
                continue
            if entry.is_symlink() or not entry.is_dir() or stat.st_mtime >= cutoff:
                continue
            leftover = entry.name.startswith(".tmp-") or ".removing-" in entry.name
            if leftover:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
            elif remove_upload(entry, home):
                removed.append(entry)
    return tuple(removed)


def _touch(folder: Path) -> None:
    # The folder's time says when an upload was last used (see clean_stale_uploads).
    with contextlib.suppress(OSError):
        os.utime(folder)


def _complete(dest: Path) -> bool:
    try:
        return (dest / _COMPLETE_MARKER).read_text(encoding="utf-8") == _MARKER_TEXT
    except (OSError, UnicodeDecodeError):
        return False


def _used(member: PurePosixPath) -> bool:
    """Whether a member will be read: an image (by ending, or possibly a DICOM file without one,
    checked when unpacked), a 3D volume or mask (NIfTI, NRRD), a labels table or a manifest."""
    suffix = member.suffix.lower()
    name = member.name.lower()
    return (
        suffix in IMAGE_SUFFIXES
        or suffix == ""
        or member.name in LABEL_FILES
        or name in MANIFEST_FILES
        or name.endswith(VOLUME_ENDINGS)
    )


def _checked_members(
    zf: zipfile.ZipFile, display: str, limits: ImageLimits
) -> tuple[list[tuple[zipfile.ZipInfo, PurePosixPath]], tuple[ImageProblem, ...]]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise LimitError(
            f"'{display}' has {len(infos):,} members, more than the cap of "
            f"{limits.max_members:,}; split the archive or raise ImageLimits.max_members."
        )
    total = 0
    members = []
    skipped: list[ImageProblem] = []
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
        if target is not None and not _used(target):
            # Never unpacked, so neither its size nor its compression matters.
            skipped.append(ImageProblem(target.as_posix(), _NOT_USED))
            continue
        if target is None:
            continue
        total += info.file_size
        if total > limits.max_unpacked_bytes:
            raise LimitError(
                f"'{display}' would unpack to more than {human_bytes(limits.max_unpacked_bytes)} "
                f"(cap reached at member '{info.filename}'); split the archive, use a "
                f"server-side folder, or ask the administrator to raise {UPLOAD_BYTES_ENV}."
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _BOMB_MIN_BYTES and ratio > limits.max_ratio:
            raise LimitError(
                f"'{display}' member '{info.filename}' expands {ratio:,.0f}-fold "
                f"(cap {limits.max_ratio:g}); this looks like a zip bomb. Re-create the archive "
                "from the original files."
            )
        members.append((info, target))
    return members, tuple(skipped)


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
                is_dicom = member.suffix.lower() in _DICOM_SUFFIXES or head[128:132] == b"DICM"
                if member.suffix == "" and not is_dicom and member.name not in LABEL_FILES:
                    problems.append(ImageProblem(member.as_posix(), _NOT_USED))
                    continue
                if is_dicom:
                    raw = head + src.read()
                    try:
                        clean = dicom.deidentified_bytes(raw, key=key, name=member.as_posix())
                    except ImageError as exc:
                        problems.append(ImageProblem(member.as_posix(), str(exc)))
                        continue
                    store_upload_file(target, clean, atomic=False)
                    continue
                store_upload_file(target, head + src.read(), atomic=False)
        except (
            zipfile.BadZipFile,
            OSError,
            EOFError,
            zlib.error,
            RuntimeError,
            NotImplementedError,
        ) as exc:
            problems.append(
                ImageProblem(
                    member.as_posix(),
                    f"could not be unpacked ({exc}); the archive may be damaged",
                )
            )
    return problems
