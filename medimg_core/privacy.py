"""Privacy for tables: spreadsheet-safe CSV export and keyed pseudonyms.

``csv_safe`` defuses formula injection: a cell such as ``=HYPERLINK(...)`` in an exported CSV
runs as a formula when a colleague opens the file in Excel or LibreOffice. ``pseudonymise``
replaces an identifier by a keyed HMAC, so the same patient gets the same pseudonym in every
file while nobody without the key can recompute (or confirm a guess of) the original ID.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import pandas as pd

from medimg_core.errors import PrivacyError
from medimg_core.workspace import workspace_path, write_private_file

__all__ = [
    "FORMULA_PREFIXES",
    "PSEUDONYMISE_IDS_ENV",
    "csv_safe",
    "pseudonym_key",
    "pseudonymise",
    "pseudonymise_ids",
    "pseudonymise_ids_on_display",
    "to_safe_csv",
]

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is read as a formula by spreadsheet programs."""

_KEY_ENV = "MEDIMG_PSEUDONYM_KEY"
_KEY_FILE = "pseudonym.key"
_KEY_BYTES = 32
_PSEUDONYM_CHARS = 16

PSEUDONYMISE_IDS_ENV = "MEDIMG_PSEUDONYMISE_IDS"
"""Setting: show patient IDs as keyed pseudonyms on screen too (``1``/``on`` or ``0``/``off``)."""
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cannot run as a spreadsheet formula.

    Parameters
    ----------
    df : pandas.DataFrame
        Any frame.

    Returns
    -------
    pandas.DataFrame
        Text cells (and text column names) that start with ``= + - @``, a tab or a carriage
        return get a leading single quote, which spreadsheets show as text. Numbers, including
        negative ones, stay numbers.
    """
    safe = df.copy()
    safe.columns = pd.Index([_defuse(c) for c in safe.columns])
    for position in range(safe.shape[1]):
        column = safe.iloc[:, position]
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object)
        elif not (pd.api.types.is_string_dtype(column.dtype) or column.dtype == object):
            continue
        safe.isetitem(position, _defuse_series(column).array)
    if safe.index.dtype == object or pd.api.types.is_string_dtype(safe.index.dtype):
        safe.index = pd.Index([_defuse(v) for v in safe.index], name=safe.index.name)
    return safe


def to_safe_csv(df: pd.DataFrame, index: bool = False) -> bytes:
    """UTF-8 CSV bytes of :func:`csv_safe` of ``df``.

    Parameters
    ----------
    df : pandas.DataFrame
    index : bool
        Write the index as the first column.

    Returns
    -------
    bytes
    """
    text = csv_safe(df).to_csv(index=index, lineterminator="\n")
    return text.encode("utf-8")


def pseudonymise(value: Any, key: bytes) -> str:
    """A keyed pseudonym for an identifier.

    Parameters
    ----------
    value : str
        The identifier (other values are used by their text, so ``123`` and ``"123"`` agree).
    key : bytes
        The secret key, for example :func:`pseudonym_key`.

    Returns
    -------
    str
        The first 16 hex characters of HMAC-SHA256(key, value): the same for the same value and
        key, unrelated across keys.

    Raises
    ------
    PrivacyError
        ``key`` is empty or not bytes.
    """
    if not isinstance(key, bytes | bytearray) or not key:
        raise PrivacyError(
            f"A pseudonymisation key must be non-empty bytes, got {type(key).__name__} of "
            f"length {len(key) if hasattr(key, '__len__') else 'unknown'}; use "
            "medimg_core.privacy.pseudonym_key()."
        )
    digest = hmac.new(bytes(key), str(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:_PSEUDONYM_CHARS]


def pseudonymise_ids(series: pd.Series, key: bytes) -> pd.Series:
    """The keyed pseudonyms of a column of patient IDs.

    Parameters
    ----------
    series : pandas.Series
        Patient IDs (numbers and text alike: ``123`` and ``"123"`` get the same pseudonym).
    key : bytes
        The secret key, for example :func:`pseudonym_key`.

    Returns
    -------
    pandas.Series
        Text pseudonyms (16 hex characters, see :func:`pseudonymise`) with the same index and
        name; a missing ID stays missing. The same patient keeps one pseudonym, so rows of one
        patient stay together in patient-level splits and bootstraps.

    Raises
    ------
    PrivacyError
        ``key`` is empty or not bytes.
    """
    pseudonymise("", key)  # validates the key once, even for an empty column
    mapping = {value: pseudonymise(_plain_id(value), key) for value in series.dropna().unique()}
    out = series.map(mapping).astype(object)
    return out.where(series.notna(), None)


def pseudonymise_ids_on_display(*, sign_in: bool = False) -> bool:
    """Whether patient IDs are shown as keyed pseudonyms on screen and in exports.

    Stored data (the dataset kept for a run, ``cases.parquet``) always hold pseudonyms; this
    setting is about what people see outside the upload itself (case lists, predictions and
    their CSV, case reports).

    Parameters
    ----------
    sign_in : whether the dashboard runs with sign-in (local accounts or single sign-on). Then
        several people share the server, and IDs are shown as pseudonyms unless the setting
        says otherwise; in single-user mode they are shown as uploaded.

    Returns
    -------
    bool
        ``MEDIMG_PSEUDONYMISE_IDS`` = ``1``/``on`` or ``0``/``off`` when set; otherwise
        ``sign_in``.

    Raises
    ------
    PrivacyError
        The setting holds something other than on/off.
    """
    raw = os.environ.get(PSEUDONYMISE_IDS_ENV, "").strip().lower()
    if not raw:
        return sign_in
    if raw in _ON:
        return True
    if raw in _OFF:
        return False
    raise PrivacyError(
        f"{PSEUDONYMISE_IDS_ENV} is {raw!r}; set it to 1 (show patient IDs as pseudonyms) or "
        "0 (show them as uploaded), or unset it."
    )


def pseudonym_key(home: Path | None = None) -> bytes:
    """The pseudonymisation key of this installation.

    Parameters
    ----------
    home : pathlib.Path, optional
        The workspace folder; defaults to ``$MEDIMG_HOME`` or ``./medimg-workspace``.

    Returns
    -------
    bytes
        ``$MEDIMG_PSEUDONYM_KEY`` when set (hex is decoded, anything else is used as UTF-8
        text); otherwise the 32 random bytes in ``<home>/pseudonym.key``, created on first use
        with permissions 0600. Keep that file: without it, pseudonyms cannot be reproduced.

    Raises
    ------
    PrivacyError
        The key file is unreadable, has the wrong length, or can be read by other users.
    """
    from_env = os.environ.get(_KEY_ENV, "").strip()
    if from_env:
        try:
            return bytes.fromhex(from_env)
        except ValueError:
            return from_env.encode("utf-8")
    folder = Path(home) if home is not None else workspace_path()
    path = folder / _KEY_FILE
    if not path.exists():
        _create_key(path)
    return _read_key(path)


def _plain_id(value: Any) -> Any:
    # 123.0 (an integer ID read into a float column because of a gap) is patient "123".
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _defuse(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _defuse_series(column: pd.Series) -> pd.Series:
    if pd.api.types.is_string_dtype(column.dtype) and column.dtype != object:
        risky = column.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
        return column.mask(risky, "'" + column)
    return column.map(_defuse)


def _create_key(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # When another process created the key meanwhile, its key wins.
        write_private_file(path, secrets.token_bytes(_KEY_BYTES), replace=False)
    except OSError as exc:
        raise PrivacyError(
            f"The pseudonymisation key file '{path}' could not be created ({exc.strerror}). "
            f"Make '{path.parent}' writable, or set {_KEY_ENV}."
        ) from exc


def _read_key(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        key = path.read_bytes()
    except OSError as exc:
        raise PrivacyError(
            f"The pseudonymisation key file '{path}' could not be read ({exc.strerror}). "
            f"Make it readable by you, or set {_KEY_ENV}."
        ) from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PrivacyError(
            f"The pseudonymisation key file '{path}' can be read by other users (mode "
            f"{stat.S_IMODE(mode):o}). Restrict it with: chmod 600 '{path}'."
        )
    if len(key) != _KEY_BYTES:
        raise PrivacyError(
            f"The pseudonymisation key file '{path}' holds {len(key)} bytes, not {_KEY_BYTES}; "
            "it is damaged. Restore it from a backup (a new key changes every pseudonym), or "
            "delete it to start a new key."
        )
    return key
