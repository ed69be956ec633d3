"""Encryption at rest: stored data sets, cases and model files are AES-256-GCM blobs on disk.

Part of the ground layer, beside ``privacy``: ``store`` (and later ``imaging``) call
:func:`write_encrypted` / :func:`read_decrypted` instead of writing or reading the bytes
themselves. The registry database is not encrypted (see the README's list).

A blob is ``MEDIMGv1`` (8 bytes) + key id (8 bytes: the start of the key's SHA-256) + nonce
(12 random bytes) + ciphertext and GCM tag. The 28-byte header is authenticated as associated
data, so changing any byte of the file (header included) fails decryption. The key id says which
key a file needs, so a wrong key is told apart from a damaged file; it reveals nothing usable
about a random 256-bit key.

The key comes from ``MEDIMG_ENCRYPTION_KEY`` (32 bytes, url-safe base64) or from a key file:
``MEDIMG_KEY_FILE``, default ``$XDG_CONFIG_HOME/medimg/key`` (else ``~/.config/medimg/key``). The
key file must lie outside the workspace (a stolen workspace must not carry its own key), must be
readable by its owner only, and is created (mode 0600) the first time something is encrypted.
While a rotation is under way the previous key is kept beside it as ``key.old`` and still read.

Files written before encryption existed (no ``MEDIMGv1`` header) are read as they are;
:func:`rotate_key` encrypts them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medimg_core.errors import EncryptionError
from medimg_core.workspace import fsync_dir, workspace_path, write_private_file

__all__ = [
    "CIPHER",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "MAGIC",
    "KeyInfo",
    "Rotation",
    "current_key_info",
    "decrypt_bytes",
    "encrypt_bytes",
    "is_encrypted",
    "key_file_path",
    "read_decrypted",
    "rotate_key",
    "write_encrypted",
]

CIPHER = "AES-256-GCM"
MAGIC = b"MEDIMGv1"
KEY_ENV = "MEDIMG_ENCRYPTION_KEY"
KEY_FILE_ENV = "MEDIMG_KEY_FILE"

_KEY_BYTES = 32
_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER_BYTES = len(MAGIC) + _ID_BYTES + _NONCE_BYTES
_TAG_BYTES = 16
_NEW_KEY_HINT = (
    'python -c "import base64, secrets; '
    'print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Key:
    secret: bytes
    source: str

    def __repr__(self) -> str:  # never print the secret
        return f"_Key(id={self.key_id.hex()}, source={self.source!r})"

    @property
    def key_id(self) -> bytes:
        return _key_id(self.secret)


@dataclass(frozen=True)
class KeyInfo:
    """Where the key comes from, for messages and summaries (never the key itself).

    Attributes
    ----------
    source : ``"MEDIMG_ENCRYPTION_KEY"`` or the key file's path.
    key_id : the key id written into every file it encrypts (16 hex digits).
    created : True when this call created the key file.
    """

    source: str
    key_id: str
    created: bool = False

    def describe(self) -> str:
        """One line for a summary: cipher, where the key is, and its id."""
        where = f"key from {KEY_ENV}" if self.source == KEY_ENV else f"key file {self.source}"
        return f"{CIPHER}, {where} (key id {self.key_id})"


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate_key` did.

    Attributes
    ----------
    key_file : the key file now holding the new key.
    old_key_id, new_key_id : ids of the replaced key (None when there was none) and the new one.
    reencrypted : files moved from the old key to the new one.
    encrypted : files found in clear (written before encryption) and now encrypted.
    already : files already under the new key (left by an interrupted rotation).
    resumed : True when an interrupted rotation was finished.
    """

    key_file: Path
    old_key_id: str | None
    new_key_id: str
    reencrypted: int
    encrypted: int
    already: int
    resumed: bool

    def summary(self) -> str:
        """A few plain lines for the command line."""
        done = self.reencrypted + self.encrypted + self.already
        lines = [
            ("Finished an interrupted key rotation." if self.resumed else "Rotated the key.")
            + f" New key id {self.new_key_id}"
            + (f" (replaces {self.old_key_id})" if self.old_key_id else "")
            + f", in {self.key_file}.",
            f"{done} file(s) are now encrypted with it: {self.reencrypted} re-encrypted, "
            f"{self.encrypted} that were stored in clear, {self.already} already done.",
            "The old key was removed. Back up the new key file: without it the stored data sets, "
            "cases and models cannot be read.",
        ]
        return "\n".join(lines)


def _key_id(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()[:_ID_BYTES]


def _decode_key(text: str, where: str) -> bytes:
    cleaned = text.strip()
    try:
        secret = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != _KEY_BYTES:
        raise EncryptionError(
            f"{where} is not a medimg encryption key: expected 32 bytes written as url-safe "
            f"base64 (44 characters). Make a new one with {_NEW_KEY_HINT}, or point "
            f"{KEY_FILE_ENV} at the key file the workspace was written with."
        )
    return secret


def _encode_key(secret: bytes) -> bytes:
    return base64.urlsafe_b64encode(secret) + b"\n"


def key_file_path() -> Path:
    """The key file: ``MEDIMG_KEY_FILE``, else ``$XDG_CONFIG_HOME/medimg/key``, else
    ``~/.config/medimg/key``. Not created, not checked."""
    configured = os.environ.get(KEY_FILE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().absolute()
    config_home = os.environ.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home).expanduser() if config_home else Path.home() / ".config"
    return (base / "medimg" / "key").absolute()


def _old_key_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.old")


def _refuse_inside_workspace(path: Path) -> None:
    workspace = workspace_path().resolve()
    if path.resolve().is_relative_to(workspace):
        raise EncryptionError(
            f"The encryption key file {path} is inside the medimg workspace {workspace}: "
            "anyone who copies the workspace would get the key with it. Move the key file "
            f"elsewhere and set {KEY_FILE_ENV} to its new path (the default is "
            "~/.config/medimg/key)."
        )


def _read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise EncryptionError(
            f"The encryption key file {path} cannot be read ({reason}). Make it readable by "
            f"you, or set {KEY_FILE_ENV} to the right key file."
        ) from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise EncryptionError(
            f"The encryption key file {path} can be read by other users (mode "
            f"{stat.S_IMODE(mode):o}); medimg refuses to use it. Restrict it with: "
            f"chmod 600 '{path}'"
        )
    return _decode_key(text, f"The key file {path}")


def _write_key_file(path: Path, secret: bytes, *, replace: bool) -> bool:
    """Write a key file with mode 0600; returns False when ``replace`` is off and one exists."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return write_private_file(path, _encode_key(secret), replace=replace)
    except OSError as exc:
        raise EncryptionError(
            f"The encryption key file {path} could not be written ({exc.strerror or exc}). "
            f"Make {path.parent} writable, or set {KEY_FILE_ENV} to a writable path outside "
            "the workspace."
        ) from exc


def _current_key(*, create: bool) -> tuple[_Key | None, bool]:
    """The key new files are encrypted with, and whether this call created its file."""
    from_env = os.environ.get(KEY_ENV, "").strip()
    if from_env:
        return _Key(_decode_key(from_env, KEY_ENV), KEY_ENV), False
    path = key_file_path()
    _refuse_inside_workspace(path)
    created = False
    if not path.exists():
        if not create:
            return None, False
        created = _write_key_file(path, secrets.token_bytes(_KEY_BYTES), replace=False)
        if created:
            _log.warning(
                "medimg created a new encryption key file at %s (readable by you only). Back "
                "it up somewhere safe: without it the stored data sets, cases and models "
                "cannot be read.",
                path,
            )
    return _Key(_read_key_file(path), str(path)), created


def _reading_keys() -> list[_Key]:
    """Every key a file may be encrypted with: the current one and, mid-rotation, the old one."""
    key, _ = _current_key(create=False)
    keys = [] if key is None else [key]
    if key is None or key.source != KEY_ENV:
        old = _old_key_path(key_file_path())
        if old.exists():
            keys.append(_Key(_read_key_file(old), str(old)))
    return keys


def current_key_info(*, create: bool = True) -> KeyInfo | None:
    """Where the encryption key comes from and its id; creates the key file when asked.

    Raises
    ------
    EncryptionError
        When the key is malformed, the key file is unsafe, inside the workspace or unreadable.
    """
    key, created = _current_key(create=create)
    if key is None:
        return None
    return KeyInfo(source=key.source, key_id=key.key_id.hex(), created=created)


def _encrypt_with(key: _Key, data: bytes) -> bytes:
    header = MAGIC + key.key_id + secrets.token_bytes(_NONCE_BYTES)
    return header + AESGCM(key.secret).encrypt(header[-_NONCE_BYTES:], data, header)


def encrypt_bytes(data: bytes) -> bytes:
    """Encrypt ``data`` with the current key (creating the key file on first use).

    Returns
    -------
    bytes
        ``MEDIMGv1`` + key id + nonce + ciphertext with its 16-byte GCM tag.
    """
    key, _ = _current_key(create=True)
    assert key is not None
    return _encrypt_with(key, data)


def _decrypt_with(keys: Iterable[_Key], blob: bytes, what: str) -> bytes:
    if len(blob) < _HEADER_BYTES + _TAG_BYTES:
        raise EncryptionError(
            f"{what} is cut short ({len(blob)} bytes, too few for an encrypted medimg file): it "
            "was damaged after it was saved. Restore it from a backup or save it again."
        )
    header = blob[:_HEADER_BYTES]
    wanted = header[len(MAGIC) : len(MAGIC) + _ID_BYTES]
    keys = list(keys)
    key = next((k for k in keys if k.key_id == wanted), None)
    if key is None:
        if not keys:
            raise EncryptionError(
                f"{what} is encrypted (key id {wanted.hex()}) but no encryption key is set. "
                f"Set {KEY_ENV} to the workspace's key, or {KEY_FILE_ENV} to the key file it "
                f"was written with (looked for {key_file_path()})."
            )
        have = ", ".join(f"{k.key_id.hex()} from {k.source}" for k in keys)
        raise EncryptionError(
            f"{what} was encrypted with another key (key id {wanted.hex()}); the key at hand "
            f"is {have}. Set {KEY_ENV} or {KEY_FILE_ENV} to the key it was written with."
        )
    try:
        return AESGCM(key.secret).decrypt(header[-_NONCE_BYTES:], blob[_HEADER_BYTES:], header)
    except InvalidTag as exc:
        raise EncryptionError(
            f"{what} was modified or damaged after it was saved (checksum mismatch: its "
            "encryption's authentication check failed). Restore it from a backup or save it "
            "again."
        ) from exc


def decrypt_bytes(blob: bytes, *, what: str = "The file") -> bytes:
    """Decrypt a blob written by :func:`encrypt_bytes`.

    Parameters
    ----------
    blob : the encrypted bytes (must start with ``MEDIMGv1``).
    what : how the file is named in messages, e.g. ``"The model file /x/model.skops"``.

    Raises
    ------
    EncryptionError
        No key is set, the key at hand is not the one the blob was written with, or the blob
        was altered (authentication tag mismatch).
    """
    if not blob.startswith(MAGIC):
        raise EncryptionError(
            f"{what} is not an encrypted medimg file (it lacks the {MAGIC.decode()} header)."
        )
    return _decrypt_with(_reading_keys(), blob, what)


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    """True when the file starts with the ``MEDIMGv1`` header (False for a missing file)."""
    try:
        with Path(path).open("rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_decrypted(path: str | os.PathLike[str], *, what: str = "The file") -> bytes:
    """The plaintext of a file: decrypted when it is encrypted, as stored otherwise.

    Files from workspaces older than encryption have no header and are returned as they are.

    Parameters
    ----------
    path : the file.
    what : how the file is named in messages, e.g. ``"The stored cases"``; the path is added.

    Raises
    ------
    OSError
        When the file cannot be read (callers say what to do in their own terms).
    EncryptionError
        As :func:`decrypt_bytes`.
    """
    file = Path(path)
    blob = file.read_bytes()
    if not blob.startswith(MAGIC):
        return blob
    return _decrypt_with(_reading_keys(), blob, f"{what} {file}")


def _write_blob(path: Path, blob: bytes) -> Path:
    target = path.expanduser().absolute()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def write_encrypted(path: str | os.PathLike[str], data: bytes) -> Path:
    """Encrypt ``data`` and write it to ``path`` atomically.

    The blob goes to a temporary file in the same folder, is flushed to disk and renamed over
    ``path``: a reader sees the old file or the new one, never part of one, and the plaintext
    never touches the disk.

    Raises
    ------
    OSError
        When the folder cannot be written (nothing is left behind).
    EncryptionError
        When the key is malformed or its file unsafe.
    """
    return _write_blob(Path(path), encrypt_bytes(data))


def rotate_key(files: Iterable[Path], *, on_file: Callable[[Path], None] | None = None) -> Rotation:
    """Replace the key file's key with a new one and re-encrypt ``files`` with it.

    The new key is saved first, with the old one kept as ``key.old``; each file is then
    re-encrypted atomically (plaintext files from older workspaces are encrypted too), and
    ``key.old`` is deleted only when every file is done. Until then both keys are read, so an
    interrupted rotation leaves every file readable and is finished by running it again.

    Parameters
    ----------
    files : the files to bring under the new key (missing ones are skipped).
    on_file : called with each file after it is rewritten (progress).

    Raises
    ------
    EncryptionError
        When the key comes from ``MEDIMG_ENCRYPTION_KEY`` (medimg cannot change a variable), a
        file needs a key that is not at hand, or the key file cannot be written.
    """
    if os.environ.get(KEY_ENV, "").strip():
        raise EncryptionError(
            f"The encryption key comes from {KEY_ENV}, which medimg cannot change. To rotate, "
            f"save that key in a key file outside the workspace (mode 600), set {KEY_FILE_ENV} "
            f"to it, unset {KEY_ENV} and run `medimg keys rotate` again."
        )
    path = key_file_path()
    _refuse_inside_workspace(path)
    old_path = _old_key_path(path)
    resumed = old_path.exists()
    old: _Key | None
    if resumed:
        old = _Key(_read_key_file(old_path), str(old_path))
        saved = _Key(_read_key_file(path), str(path)) if path.exists() else None
        if saved is None or saved.key_id == old.key_id:
            # Stopped between saving key.old and the new key: no file uses a new key yet.
            new = _Key(secrets.token_bytes(_KEY_BYTES), str(path))
            _write_key_file(path, new.secret, replace=True)
        else:
            new = saved
    else:
        old = _Key(_read_key_file(path), str(path)) if path.exists() else None
        if old is not None:
            _write_key_file(old_path, old.secret, replace=True)
        new = _Key(secrets.token_bytes(_KEY_BYTES), str(path))
        _write_key_file(path, new.secret, replace=True)
    keys = [new] if old is None else [new, old]
    reencrypted = encrypted = already = 0
    for file in files:
        if not file.is_file():
            continue
        blob = file.read_bytes()
        if not blob.startswith(MAGIC):
            encrypted += 1
            data = blob
        elif blob[len(MAGIC) : len(MAGIC) + _ID_BYTES] == new.key_id:
            already += 1
            continue
        else:
            reencrypted += 1
            data = _decrypt_with(keys, blob, f"The file {file}")
        _write_blob(file, _encrypt_with(new, data))
        if on_file is not None:
            on_file(file)
    old_path.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return Rotation(
        key_file=path,
        old_key_id=None if old is None else old.key_id.hex(),
        new_key_id=new.key_id.hex(),
        reencrypted=reencrypted,
        encrypted=encrypted,
        already=already,
        resumed=resumed,
    )
