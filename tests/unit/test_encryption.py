"""Tests for medimg_core.encryption: AES-256-GCM blobs, the key's sources and checks, rotation."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import stat
from pathlib import Path

import pytest

from medimg_core import encryption
from medimg_core.encryption import (
    MAGIC,
    current_key_info,
    decrypt_bytes,
    encrypt_bytes,
    is_encrypted,
    key_file_path,
    read_decrypted,
    rotate_key,
    write_encrypted,
)
from medimg_core.errors import EncryptionError, MedimgError

SECRET = b"Patient 0042, MRN 771203, malignant"


def _key_text(secret: bytes) -> str:
    return base64.urlsafe_b64encode(secret).decode()


@pytest.fixture
def fresh_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A key file path that does not exist yet, outside the workspace."""
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    path = tmp_path / "config" / "medimg" / "key"
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(path))
    return path


def test_blob_has_the_versioned_header_and_round_trips(fresh_key: Path) -> None:
    blob = encrypt_bytes(SECRET)
    secret = base64.urlsafe_b64decode(fresh_key.read_text().strip())
    assert len(secret) == 32
    assert blob[:8] == MAGIC
    assert blob[8:16] == hashlib.sha256(secret).digest()[:8]
    assert len(blob) == 8 + 8 + 12 + len(SECRET) + 16
    assert SECRET not in blob and b"MRN" not in blob
    assert decrypt_bytes(blob) == SECRET
    # A fresh nonce every time: the same plaintext never gives the same bytes.
    assert encrypt_bytes(SECRET) != blob


def test_key_file_is_created_once_with_mode_600_and_a_note_without_the_key(
    fresh_key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="medimg_core.encryption"):
        encrypt_bytes(b"a")
        encrypt_bytes(b"b")
    assert stat.S_IMODE(fresh_key.stat().st_mode) == 0o600
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1
    assert str(fresh_key) in notes[0] and "Back it up" in notes[0]
    assert fresh_key.read_text().strip() not in notes[0]
    info = current_key_info()
    assert info is not None and info.source == str(fresh_key) and not info.created
    assert (
        info.key_id
        == hashlib.sha256(base64.urlsafe_b64decode(fresh_key.read_text().strip())).hexdigest()[:16]
    )


def test_default_key_file_is_in_the_user_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDIMG_KEY_FILE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert key_file_path() == tmp_path / "xdg" / "medimg" / "key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert key_file_path() == tmp_path / "home" / ".config" / "medimg" / "key"


def test_a_key_file_inside_the_workspace_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_HOME", str(tmp_path / "ws"))
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(tmp_path / "ws" / "keys" / "key"))
    with pytest.raises(EncryptionError, match=r"is inside the medimg workspace .*MEDIMG_KEY_FILE"):
        encrypt_bytes(b"x")
    assert not (tmp_path / "ws" / "keys").exists()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_key_file_others_can_read_is_refused_with_the_fix(fresh_key: Path) -> None:
    blob = encrypt_bytes(SECRET)
    fresh_key.chmod(0o644)
    with pytest.raises(
        EncryptionError, match=rf"can be read by other users \(mode 644\).*chmod 600 '{fresh_key}'"
    ):
        decrypt_bytes(blob)
    fresh_key.chmod(0o600)
    assert decrypt_bytes(blob) == SECRET


def test_key_from_the_environment_needs_no_file(
    fresh_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = bytes(range(32))
    monkeypatch.setenv("MEDIMG_ENCRYPTION_KEY", _key_text(secret))
    blob = encrypt_bytes(SECRET)
    assert not fresh_key.exists()
    assert blob[8:16] == hashlib.sha256(secret).digest()[:8]
    assert decrypt_bytes(blob) == SECRET
    info = current_key_info()
    assert info is not None and "key from MEDIMG_ENCRYPTION_KEY" in info.describe()


@pytest.mark.parametrize("bad", ["not base64 at all!", _key_text(b"short")])
def test_a_malformed_key_is_one_clear_error(
    fresh_key: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("MEDIMG_ENCRYPTION_KEY", bad)
    with pytest.raises(
        EncryptionError, match=r"MEDIMG_ENCRYPTION_KEY is not a medimg encryption key"
    ):
        encrypt_bytes(b"x")


def test_a_wrong_key_names_the_file_and_what_to_set(
    fresh_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write_encrypted(tmp_path / "cases.parquet", SECRET)
    monkeypatch.setenv("MEDIMG_ENCRYPTION_KEY", _key_text(b"w" * 32))
    with pytest.raises(EncryptionError) as caught:
        read_decrypted(target, what="The stored cases")
    message = str(caught.value)
    assert message.startswith(f"The stored cases {target} was encrypted with another key")
    assert "MEDIMG_ENCRYPTION_KEY or MEDIMG_KEY_FILE" in message
    assert isinstance(caught.value, MedimgError)


def test_a_missing_key_names_the_file_and_what_to_set(
    fresh_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write_encrypted(tmp_path / "model.skops", SECRET)
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(tmp_path / "gone" / "key"))
    with pytest.raises(
        EncryptionError,
        match=r"The model file .*model.skops is encrypted \(key id [0-9a-f]{16}\) but no "
        r"encryption key is set. Set MEDIMG_ENCRYPTION_KEY",
    ):
        read_decrypted(target, what="The model file")
    # Reading never creates a key: a new one could not decrypt anything.
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("position", [20, 40, -1], ids=["nonce", "ciphertext", "tag"])
def test_any_changed_byte_fails_the_authentication(fresh_key: Path, position: int) -> None:
    blob = bytearray(encrypt_bytes(SECRET))
    blob[position] ^= 0x01
    with pytest.raises(EncryptionError, match=r"was modified or damaged after it was saved"):
        decrypt_bytes(bytes(blob))


def test_a_truncated_file_is_reported_as_damaged(fresh_key: Path, tmp_path: Path) -> None:
    target = write_encrypted(tmp_path / "d.parquet", SECRET)
    target.write_bytes(target.read_bytes()[:30])
    with pytest.raises(EncryptionError, match=r"is cut short \(30 bytes"):
        read_decrypted(target)


def test_files_in_clear_are_read_as_they_are(fresh_key: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.parquet"
    old.write_bytes(b"PAR1 written by an older medimg")
    assert not is_encrypted(old) and not is_encrypted(tmp_path / "missing")
    assert read_decrypted(old) == b"PAR1 written by an older medimg"
    assert not fresh_key.exists()
    with pytest.raises(EncryptionError, match="lacks the MEDIMGv1 header"):
        decrypt_bytes(old.read_bytes())


def test_write_is_atomic_and_leaves_nothing_behind_on_failure(
    fresh_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = write_encrypted(tmp_path / "model.skops", b"first version")
    assert is_encrypted(target) and stat.S_IMODE(target.stat().st_mode) == 0o600

    def full_disk(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encryption.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_encrypted(target, b"second version")
    monkeypatch.undo()
    monkeypatch.setenv("MEDIMG_KEY_FILE", str(fresh_key))
    assert read_decrypted(target) == b"first version"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config", "model.skops"]


def test_a_bad_key_writes_nothing(
    fresh_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_ENCRYPTION_KEY", "nonsense")
    with pytest.raises(EncryptionError):
        write_encrypted(tmp_path / "d.parquet", SECRET)
    assert not (tmp_path / "d.parquet").exists()


def _files(tmp_path: Path, n: int) -> list[Path]:
    folder = tmp_path / "ws" / "datasets"
    folder.mkdir(parents=True)
    return [write_encrypted(folder / f"{i}.parquet", f"table {i}".encode()) for i in range(n)]


def test_rotation_reencrypts_every_file_and_retires_the_old_key(
    fresh_key: Path, tmp_path: Path
) -> None:
    files = _files(tmp_path, 3)
    legacy = tmp_path / "ws" / "cases.parquet"
    legacy.write_bytes(b"cases in clear")
    old_text = fresh_key.read_text()
    rotation = rotate_key([*files, legacy, tmp_path / "ws" / "deleted.parquet"])
    assert (rotation.reencrypted, rotation.encrypted, rotation.already) == (3, 1, 0)
    assert not rotation.resumed and rotation.old_key_id != rotation.new_key_id
    assert "Rotated the key" in rotation.summary() and "4 file(s)" in rotation.summary()
    assert fresh_key.read_text() != old_text
    assert stat.S_IMODE(fresh_key.stat().st_mode) == 0o600
    assert not fresh_key.with_name("key.old").exists()
    new_id = bytes.fromhex(rotation.new_key_id)
    for i, path in enumerate(files):
        assert path.read_bytes()[8:16] == new_id
        assert read_decrypted(path) == f"table {i}".encode()
    assert is_encrypted(legacy) and read_decrypted(legacy) == b"cases in clear"
    # The retired key opens nothing any more.
    fresh_key.write_text(old_text)
    with pytest.raises(EncryptionError, match="encrypted with another key"):
        read_decrypted(files[0])


def test_an_interrupted_rotation_keeps_every_file_readable_and_can_be_finished(
    fresh_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _files(tmp_path, 4)
    old_id = files[0].read_bytes()[8:16]
    real_write = encryption._write_blob
    calls = 0

    def fail_on_second(path: Path, blob: bytes) -> Path:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(5, "Input/output error")
        return real_write(path, blob)

    monkeypatch.setattr(encryption, "_write_blob", fail_on_second)
    with pytest.raises(OSError, match="Input/output error"):
        rotate_key(files)
    monkeypatch.setattr(encryption, "_write_blob", real_write)
    assert fresh_key.with_name("key.old").exists()
    ids = [p.read_bytes()[8:16] for p in files]
    assert ids[0] != old_id and ids[1:] == [old_id] * 3
    # Mid-rotation both keys are read.
    assert [read_decrypted(p) for p in files] == [f"table {i}".encode() for i in range(4)]

    rotation = rotate_key(files)
    assert rotation.resumed and (rotation.reencrypted, rotation.already) == (3, 1)
    assert rotation.new_key_id == ids[0].hex() and rotation.old_key_id == old_id.hex()
    assert "Finished an interrupted key rotation" in rotation.summary()
    assert not fresh_key.with_name("key.old").exists()
    assert {p.read_bytes()[8:16] for p in files} == {ids[0]}
    assert [read_decrypted(p) for p in files] == [f"table {i}".encode() for i in range(4)]


def test_rotation_stopped_before_the_new_key_was_saved_makes_one(
    fresh_key: Path, tmp_path: Path
) -> None:
    files = _files(tmp_path, 2)
    old_id = files[0].read_bytes()[8:16]
    # What a crash right after saving key.old leaves: key.old and key hold the same key.
    old_copy = fresh_key.with_name("key.old")
    old_copy.write_bytes(fresh_key.read_bytes())
    old_copy.chmod(0o600)
    rotation = rotate_key(files)
    assert rotation.resumed and rotation.reencrypted == 2
    assert bytes.fromhex(rotation.new_key_id) != old_id
    assert [read_decrypted(p) for p in files] == [b"table 0", b"table 1"]


def test_rotation_refuses_a_key_from_the_environment(
    fresh_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIMG_ENCRYPTION_KEY", _key_text(b"e" * 32))
    files = _files(tmp_path, 1)
    before = files[0].read_bytes()
    with pytest.raises(EncryptionError, match=r"comes from MEDIMG_ENCRYPTION_KEY, which medimg"):
        rotate_key(files)
    assert files[0].read_bytes() == before
