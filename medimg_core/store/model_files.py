"""Reading a model directory's files within bounds, and the folders an interrupted save leaves.

A model directory is user-controlled input (it can be copied, edited or crafted), so nothing in it
is read without a bound first:

- JSON (``card.json``, the ``schema.json`` inside ``model.skops``) is refused when the file is
  larger than :data:`CARD_MAX_BYTES` (checked before reading) or nested deeper than
  :data:`JSON_MAX_DEPTH` (checked by a flat scan of the bytes before parsing: Python's parser
  recurses once per level and fails with a ``RecursionError`` near 1,000 levels);
- ``model.skops``, ``ood.skops`` and ``cases.parquet`` are refused when the file is larger than
  ``MEDIMG_MODEL_FILE_MB`` (:func:`model_file_limit`), checked with ``stat`` before reading, and
  a ``model.skops`` whose members claim to unpack to more than that is refused before skops
  opens it.

:func:`staging_dir` names the temporary folder a save writes into (``.NAME.saving-PID-xxxx``,
renamed into place at the end) and :func:`old_dir` the name a replaced model is moved to
meanwhile; :func:`remove_stale_staging` tidies what an interrupted save left beside the target:
staging folders are removed, a model moved aside is put back (or removed once replaced), and
nothing else is touched.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medimg_core.errors import ConfigError, MedimgError, ModelFileError

__all__ = [
    "CARD_MAX_BYTES",
    "JSON_MAX_DEPTH",
    "MODEL_FILE_DEFAULT_MB",
    "MODEL_FILE_SETTING",
    "STAGING_FILES",
    "STALE_STAGING_SECONDS",
    "check_file_size",
    "check_skops_archive",
    "json_depth",
    "model_file_limit",
    "old_dir",
    "parse_json_bounded",
    "read_json_file",
    "remove_stale_staging",
    "staging_dir",
]

CARD_MAX_BYTES = 16 << 20
"""Largest ``card.json`` read (16 MB). medimg's cards are tens of kB; categories are capped when
a model is trained, so only a damaged or crafted card comes near this."""

JSON_MAX_DEPTH = 200
"""Deepest nesting of arrays/objects accepted in a model directory's JSON. medimg's cards nest
about 8 levels and skops' schema of a pipeline about 30."""

MODEL_FILE_SETTING = "MEDIMG_MODEL_FILE_MB"
MODEL_FILE_DEFAULT_MB = 2048
"""Default bound on ``model.skops``, ``ood.skops`` and ``cases.parquet`` (and on what
``model.skops`` unpacks to): 2 GB. A k-NN model holds its training rows and a random forest of
large trees reaches hundreds of MB; several users loading models at once must still fit in the
memory of a 24 GB server."""

_SKOPS_MAX_MEMBERS = 100_000
"""A skops file has one member per array (a forest: a few per tree)."""

STALE_STAGING_SECONDS = 3600
"""A staging folder untouched for an hour belongs to a save that will never finish."""

_MIN_STAGING_AGE = 60
"""A staging folder younger than this is never removed, even when its process looks gone (the
process may run in another container, where its id means nothing here)."""

STAGING_FILES = frozenset({"model.skops", "ood.skops", "card.json", "cases.parquet"})
"""What a save writes into its staging folder (plus its own hidden ``.*.tmp`` files)."""

_STAGING = re.compile(r"^\.(?P<name>.+)\.saving-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old-(?:(?P<pid>\d+)-)?[A-Za-z0-9_]+$")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEPS = np.zeros(256, dtype=np.int8)
_STEPS[list(b"[{")] = 1
_STEPS[list(b"]}")] = -1


def model_file_limit() -> int:
    """The largest model file read, in bytes: ``MEDIMG_MODEL_FILE_MB`` (default 2048) MB.

    Raises
    ------
    ConfigError
        When the setting is not a whole number of at least 1.
    """
    text = os.environ.get(MODEL_FILE_SETTING, "").strip()
    if not text:
        return MODEL_FILE_DEFAULT_MB << 20
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"{MODEL_FILE_SETTING} must be a whole number of megabytes of at least 1, got {text!r}."
        )
    return value << 20


def _megabytes(n: int) -> str:
    return f"{n / (1 << 20):,.0f} MB" if n >= 1 << 20 else f"{n:,} bytes"


def check_file_size(path: Path, limit: int, *, setting: str | None = MODEL_FILE_SETTING) -> int:
    """The size of ``path``, a regular file no larger than ``limit`` bytes.

    Raises
    ------
    ModelFileError
        When it is missing, not a regular file (a device or a pipe has no size to check), or
        too large; the message names ``setting`` when an administrator can raise the bound.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelFileError(
            f"cannot read {path}: {exc.strerror or exc}; restore the model directory or "
            "re-train the model."
        ) from exc
    if not path.is_file():
        raise ModelFileError(
            f"{path} is not a regular file; a model directory holds only the files medimg "
            "wrote. Restore the model directory or re-train the model."
        )
    if st.st_size > limit:
        raise_hint = (
            f" If the model is genuine, an administrator can raise {setting} "
            f"(now {limit >> 20} MB)."
            if setting
            else ""
        )
        raise ModelFileError(
            f"{path} is {_megabytes(st.st_size)}, more than the {_megabytes(limit)} medimg "
            f"reads; it is damaged or was not written by medimg.{raise_hint}"
        )
    return st.st_size


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON text, without parsing it.

    Strings are removed first (brackets inside them do not count); the rest is counted with
    numpy, so a file of any depth costs one pass and no recursion. For text that is not valid
    JSON the count is at least the depth a parser reaches before its first error.
    """
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    steps = _STEPS[np.frombuffer(brackets, dtype=np.uint8)]
    return max(int(np.cumsum(steps, dtype=np.int64).max()), 0)


def parse_json_bounded(
    data: bytes,
    what: str,
    *,
    max_depth: int = JSON_MAX_DEPTH,
    error: type[MedimgError] = ModelFileError,
    fix: str = "Restore the file or re-train the model.",
) -> Any:
    """``data`` parsed as UTF-8 JSON, refused when nested deeper than ``max_depth``.

    Parameters
    ----------
    data : the JSON bytes (already bounded in size by the caller).
    what : how the source is named in messages (its path).
    max_depth : the deepest nesting accepted.
    error, fix : the error raised and the sentence that ends its message.

    Raises
    ------
    ModelFileError
        (or ``error``) When the text is not UTF-8 JSON, is too deeply nested, or holds a number
        Python will not convert (an integer of thousands of digits).
    """
    # At most one level per opening bracket: most small JSON needs no scan.
    opened = data.count(b"[") + data.count(b"{")
    depth = json_depth(data) if opened > max_depth else 0
    if depth > max_depth:
        raise error(
            f"{what} is nested {depth} levels deep (medimg writes fewer than {max_depth}); it "
            f"is damaged or was not written by medimg. {fix}"
        )
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: invalid JSON, and integers longer than Python converts.
        raise error(
            f"{what} cannot be read as JSON ({str(exc).splitlines()[0][:200]}). {fix}"
        ) from exc


def read_json_file(path: Path, *, max_bytes: int = CARD_MAX_BYTES) -> Any:
    """A JSON file of a model directory, bounded in size (before reading) and depth.

    Raises
    ------
    ModelFileError
        As :func:`check_file_size` (without a setting: :data:`CARD_MAX_BYTES` is fixed) and
        :func:`parse_json_bounded`.
    """
    check_file_size(path, max_bytes, setting=None)
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise ModelFileError(
            f"cannot read {path}: {exc.strerror or exc}; check the model directory's "
            "permissions or restore it."
        ) from exc
    if len(data) > max_bytes:  # grew after the size check
        check_file_size(path, max_bytes, setting=None)
        raise ModelFileError(f"{path} changed while it was read; try again.")
    return parse_json_bounded(data, str(path))


def check_skops_archive(data: bytes, what: str, *, limit: int | None = None) -> None:
    """Refuse a skops file (a ZIP) that would unpack to more than ``limit`` bytes, has more
    members than any model, or whose ``schema.json`` is too deeply nested, before skops opens it.

    Member sizes are the ones the ZIP declares; Python's ZIP reader never returns more than the
    declared size, so the bound holds even for a lying header.

    Raises
    ------
    ModelFileError
        When any bound is exceeded or the data is not a ZIP file.
    """
    limit = model_file_limit() if limit is None else limit
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > _SKOPS_MAX_MEMBERS:
                raise ModelFileError(
                    f"{what} has {len(members):,} members, more than any model medimg saves; "
                    "it is damaged or was not written by medimg. Re-train the model."
                )
            unpacked = sum(m.file_size for m in members)
            if unpacked > limit:
                raise ModelFileError(
                    f"{what} unpacks to {_megabytes(unpacked)}, more than the "
                    f"{_megabytes(limit)} medimg reads; it is damaged or was not written by "
                    f"medimg. If the model is genuine, an administrator can raise "
                    f"{MODEL_FILE_SETTING} (now {limit >> 20} MB)."
                )
            schema = next((m for m in members if m.filename == "schema.json"), None)
            if schema is not None:
                if schema.file_size > CARD_MAX_BYTES:
                    raise ModelFileError(
                        f"{what} has a {_megabytes(schema.file_size)} schema, more than any "
                        "model medimg saves; it was not written by medimg. Re-train the model."
                    )
                parse_json_bounded(archive.read(schema), f"{what} (its schema.json)")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as exc:
        # A truncated file is a BadZipFile; a damaged member a BadZipFile (CRC) or zlib.error.
        raise ModelFileError(
            f"{what} is not a skops model file, or it is truncated or damaged ({exc}); medimg "
            "only loads models it saved itself. Restore the model directory or re-train the model."
        ) from exc
    except NotImplementedError as exc:
        raise ModelFileError(
            f"{what} uses a compression medimg never writes ({exc}); re-train the model."
        ) from exc


def staging_dir(target: Path) -> Path:
    """A new, empty folder beside ``target`` to write a model into before renaming it into
    place: ``.NAME.saving-PID-xxxxxxxx`` (the process id lets a later save tell whether the
    save that made it is still running)."""
    prefix = f".{target.name}.saving-{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))


def old_dir(target: Path) -> Path:
    """A free name beside ``target`` to move an existing model to while a new one replaces it:
    ``.NAME.old-PID-xxxxxxxx`` (not created: the model folder is renamed to it)."""
    reserved = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent)
    )
    reserved.rmdir()
    return reserved


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # exists (another user's) or cannot tell: treat as running
    return True


def _only_staging_files(folder: Path) -> bool:
    for entry in folder.iterdir():
        if entry.is_symlink() or not entry.is_file():
            return False
        name = entry.name
        if name not in STAGING_FILES and not (name.startswith(".") and name.endswith(".tmp")):
            return False
    return True


def _stale(match: re.Match[str], age: float) -> bool:
    """Whether a save's folder of this age, named by ``match``, belongs to a finished process."""
    if age < _MIN_STAGING_AGE:
        return False
    pid = match.group("pid")
    owner_gone = pid is not None and not _process_alive(int(pid))
    return owner_gone or age > STALE_STAGING_SECONDS


def _is_model_dir(path: Path) -> bool:
    return (path / "model.skops").is_file() and (path / "card.json").is_file()


def remove_stale_staging(parent: Path, *, now: float | None = None) -> list[Path]:
    """Tidy what interrupted saves left in ``parent``; the paths removed.

    A staging folder (``.NAME.saving-...``, as :func:`staging_dir` or an older medimg makes it)
    is removed only when all of these hold: it is a real folder, not a link; it holds nothing
    but the files a save writes (:data:`STAGING_FILES` and hidden ``.tmp`` files); it was last
    changed more than a minute ago; and either the process that made it is gone or it was last
    changed more than :data:`STALE_STAGING_SECONDS` ago.

    A replaced model moved aside (``.NAME.old-...``, :func:`old_dir`) under the same age and
    process rules (its age counted from the move): when ``NAME`` is missing, the save stopped
    between moving the old model aside and renaming the new one in, and the old model is put
    back (nothing is lost); when ``NAME`` is a model directory, the save finished and the old
    folder is removed if it holds only model files. Anything else is left alone, and a folder
    that cannot be examined, moved or removed is skipped silently.
    """
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    for folder in entries:
        staging = _STAGING.match(folder.name)
        old = None if staging is not None else _OLD.match(folder.name)
        if staging is None and old is None:
            continue
        with contextlib.suppress(OSError):
            if folder.is_symlink() or not folder.is_dir():
                continue
            st = folder.stat()
            if staging is not None:
                if _stale(staging, now - st.st_mtime) and _only_staging_files(folder):
                    shutil.rmtree(folder)
                    removed.append(folder)
                continue
            assert old is not None
            # The folder's own mtime is the model's; the move aside shows in its ctime.
            if not _stale(old, now - st.st_ctime):
                continue
            target = parent / old.group("name")
            if not target.exists() and not target.is_symlink():
                os.rename(folder, target)
            elif _is_model_dir(target) and _only_staging_files(folder):
                shutil.rmtree(folder)
                removed.append(folder)
    return removed
